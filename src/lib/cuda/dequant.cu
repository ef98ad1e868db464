/* dtaudit: the dequantization kernel of the CUDA back end and its host layer (see
 * dequant_cuda.h).
 *
 * k_dequant<OS>: a grid-stride loop over the elements of one job; element k is
 * dqb_elem(job, k) of dequant_bits.h, the function dequant.c runs on the CPU (decode
 * through the codes' 256-entry table, the scale broadcast from its grid, one f32 multiply
 * with __fmul_rn, the rounding to the target with convert_bits.h's integer bit math, the
 * classification). The result is stored as OS bytes (2: F16/BF16, 4: F32); the classes are
 * counted per thread, summed per warp and block (common.cuh) and added with one atomicAdd
 * per counter and block. For a grid job the 256-entry table is first copied to shared
 * memory. The scale grid rows, x and s, or the values and flags of the job are copied
 * to the device as dequant.c prepared them. FP8 / int8 codes and their scale grid go to
 * the device as stored (one byte per element) and are decoded there (ComfyUI scaled FP8
 * and comfy_quant float8 among them); so do the packed schemes (DQB_PACKED: MXFP4, NVFP4,
 * bitsandbytes, GPTQ, AWQ, pack-quantized, ComfyUI comfy_quant nvfp4 / mxfp8 /
 * int8_tensorwise): their stored codes, scales (comfy_quant: whole 128-row bands of
 * swizzled block scales), zero points, absmax and g_idx bytes for the range, as
 * dequant_packed.c gathers them, are unpacked and decoded per element by dqp_xs /
 * dqp_values (dequant_bits.h) with dequant_unpack.h's functions, the ones the CPU
 * modules call. Every scheme dequantize supports has a packed description or a grid, so
 * DQB_XS / DQB_VALUES jobs (operands decoded on the host) no longer come from
 * dtap_dq_job_dev; the kernel still runs them.
 *
 * Launch: 256 threads per block, at most 8 blocks per SM. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/dequant_cuda.h"
#include "dequant_bits.h"
#include "dtaudit/dtype.h"

#define DQ_BLOCKS_PER_SM 8

/* One grid-stride loop for both kernels: each element's bits and class, the class counts
 * summed per block. */
template <int OS, bool PACKED>
__device__ __forceinline__ void dequant_loop(const dqb_job *j, unsigned char *__restrict__ dst,
                                             unsigned long long *cnt)
{
    unsigned long long c[4] = {0, 0, 0, 0};
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t k = tid; k < j->n; k += stride) {
        int cls;
        uint32_t r = PACKED ? dqb_elem_packed(j, k, &cls) : dqb_elem_plain(j, k, &cls);
        if (OS == 4)
            reinterpret_cast<uint32_t *>(dst)[k] = r;
        else
            reinterpret_cast<uint16_t *>(dst)[k] = (uint16_t)r;
        if (cls != DTAB_FINE)
            c[cls - 1]++; /* DTAB_NAN .. DTAB_UNF are 1 .. 4 */
    }
    block_add<4>(c, cnt);
}

/* DQB_PACKED jobs: a kernel of their own, so that the FP8 grid kernel below keeps its
 * registers and occupancy (the packed decoding needs many more). */
template <int OS>
__global__ void __launch_bounds__(DTAP_CU_THREADS)
k_dequant_packed(const dqb_job j, unsigned char *__restrict__ dst, unsigned long long *cnt)
{
    dequant_loop<OS, true>(&j, dst, cnt);
}

template <int OS>
__global__ void __launch_bounds__(DTAP_CU_THREADS)
k_dequant(dqb_job j, unsigned char *__restrict__ dst, unsigned long long *cnt)
{
    __shared__ uint32_t lut[256];
    if (j.kind == DQB_GRID) { /* uniform across the grid */
        for (int k = threadIdx.x; k < 256; k += blockDim.x)
            lut[k] = j.lut[k];
        __syncthreads();
        j.lut = lut;
    }
    dequant_loop<OS, false>(&j, dst, cnt);
}

/* ---- host layer ------------------------------------------------------------------------- */

/* A device buffer grown on use. */
struct Buf {
    void *p;
    size_t cap;
};

struct dtap_cu_dq {
    int dev, sm;
    cudaStream_t stream;
    Buf a, b, lut, out, c, d;
    unsigned long long *dcnt;
};

static int grow(Buf *b, size_t need, const char *what, char *msg, size_t msg_n)
{
    if (need <= b->cap)
        return 0;
    cudaFree(b->p);
    b->p = NULL;
    b->cap = 0;
    CK(cudaMalloc(&b->p, need), what);
    b->cap = need;
    return 0;
}

extern "C" void dtap_cu_dq_close(dtap_cu_dq *c)
{
    if (!c)
        return;
    cudaSetDevice(c->dev);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    cudaFree(c->a.p);
    cudaFree(c->b.p);
    cudaFree(c->lut.p);
    cudaFree(c->out.p);
    cudaFree(c->c.p);
    cudaFree(c->d.p);
    cudaFree(c->dcnt);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

static int dq_init(dtap_cu_dq *c, char *msg, size_t msg_n)
{
    cudaFuncAttributes fa;
    CK(cudaSetDevice(c->dev), "cudaSetDevice");
    /* cudaErrorNoKernelImageForDevice when the fat binary has nothing this device runs */
    CK(cudaFuncGetAttributes(&fa, k_dequant<2>), "cudaFuncGetAttributes (dequantization kernel image for this device)");
    CK(cudaFuncGetAttributes(&fa, k_dequant_packed<2>), "cudaFuncGetAttributes (packed dequantization kernel image for this device)");
    CK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    CK(cudaMalloc(reinterpret_cast<void **>(&c->dcnt), 4 * sizeof *c->dcnt),
       "cudaMalloc (dequantization counts)");
    if (cudaDeviceGetAttribute(&c->sm, cudaDevAttrMultiProcessorCount, c->dev) != cudaSuccess)
        c->sm = 16;
    return 0;
}

extern "C" int dtap_cu_dq_open(int dev, dtap_cu_dq **out, char *msg, size_t msg_n)
{
    dtap_cu_dq *c = static_cast<dtap_cu_dq *>(calloc(1, sizeof(dtap_cu_dq)));
    *out = NULL;
    if (!c) {
        snprintf(msg, msg_n, "out of memory");
        return -1;
    }
    c->dev = dev;
    if (dq_init(c, msg, msg_n) != 0) {
        dtap_cu_dq_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* Copies n bytes of host src into buffer b (grown) on c's stream; *dev gets the copy. */
static int put(dtap_cu_dq *c, Buf *b, const void *src, size_t n, const char *what,
               const void **dev, char *msg, size_t msg_n)
{
    if (grow(b, n ? n : 1, what, msg, msg_n) != 0)
        return -1;
    if (n)
        CK(cudaMemcpyAsync(b->p, src, n, cudaMemcpyHostToDevice, c->stream), what);
    *dev = b->p;
    return 0;
}

extern "C" int dtap_cu_dq_run(dtap_cu_dq *c, const dqb_job *j, void *dst, uint64_t cnt[5],
                              char *msg, size_t msg_n)
{
    dqb_job dj = *j;
    size_t n = (size_t)j->n, os = j->to == DTA_F32 ? 4 : 2;
    unsigned long long h[4] = {0, 0, 0, 0};
    const void *p;
    for (int k = 0; k < 5; k++)
        cnt[k] = 0;
    if (n == 0)
        return 0;
    CK(cudaSetDevice(c->dev), "cudaSetDevice");
    switch (j->kind) {
    case DQB_GRID:
        if (put(c, &c->a, j->codes, n, "cudaMemcpyAsync (codes)", &p, msg, msg_n) != 0)
            return -1;
        dj.codes = static_cast<const uint8_t *>(p);
        if (put(c, &c->lut, j->lut, 256 * sizeof *j->lut, "cudaMemcpyAsync (code table)", &p,
                msg, msg_n) != 0)
            return -1;
        dj.lut = static_cast<const uint32_t *>(p);
        if (put(c, &c->b, j->scales, (size_t)j->nscales * sizeof *j->scales,
                "cudaMemcpyAsync (scale grid rows)", &p, msg, msg_n) != 0)
            return -1;
        dj.scales = static_cast<const float *>(p);
        break;
    case DQB_XS:
        if (put(c, &c->a, j->x, n * sizeof *j->x, "cudaMemcpyAsync (decoded codes)", &p, msg,
                msg_n) != 0)
            return -1;
        dj.x = static_cast<const float *>(p);
        if (put(c, &c->b, j->s, n * sizeof *j->s, "cudaMemcpyAsync (scales)", &p, msg,
                msg_n) != 0)
            return -1;
        dj.s = static_cast<const float *>(p);
        break;
    case DQB_VALUES:
        if (put(c, &c->a, j->v, n * sizeof *j->v, "cudaMemcpyAsync (values)", &p, msg,
                msg_n) != 0)
            return -1;
        dj.v = static_cast<const uint32_t *>(p);
        if (put(c, &c->b, j->fl, n, "cudaMemcpyAsync (flags)", &p, msg, msg_n) != 0)
            return -1;
        dj.fl = static_cast<const uint8_t *>(p);
        break;
    case DQB_PACKED: {
        /* a packed scheme's stored bytes (dequant_packed.c), decoded by the kernel */
        static const char *const what[4] = {
            "cudaMemcpyAsync (packed codes)", "cudaMemcpyAsync (packed scales)",
            "cudaMemcpyAsync (packed zero points / nested absmax)",
            "cudaMemcpyAsync (packed g_idx / nested map)"};
        Buf *bufs[4] = {&c->a, &c->b, &c->c, &c->d};
        for (int k = 0; k < 4; k++) {
            if (put(c, bufs[k], j->raw[k], (size_t)j->nraw[k], what[k], &p, msg, msg_n) != 0)
                return -1;
            dj.raw[k] = static_cast<const uint8_t *>(p);
        }
        break;
    }
    default:
        snprintf(msg, msg_n, "dequantization job of unknown kind %d", j->kind);
        return -1;
    }
    if (grow(&c->out, n * os, "cudaMalloc (dequantized values)", msg, msg_n) != 0)
        return -1;
    CK(cudaMemsetAsync(c->dcnt, 0, 4 * sizeof *c->dcnt, c->stream),
       "cudaMemsetAsync (dequantization counts)");
    size_t blocks = (n + DTAP_CU_THREADS - 1) / DTAP_CU_THREADS;
    size_t cap = (size_t)(c->sm > 0 ? c->sm : 1) * DQ_BLOCKS_PER_SM;
    if (blocks > cap)
        blocks = cap;
    unsigned char *o = static_cast<unsigned char *>(c->out.p);
    if (j->kind == DQB_PACKED && os == 4)
        k_dequant_packed<4><<<(unsigned)blocks, DTAP_CU_THREADS, 0, c->stream>>>(dj, o, c->dcnt);
    else if (j->kind == DQB_PACKED)
        k_dequant_packed<2><<<(unsigned)blocks, DTAP_CU_THREADS, 0, c->stream>>>(dj, o, c->dcnt);
    else if (os == 4)
        k_dequant<4><<<(unsigned)blocks, DTAP_CU_THREADS, 0, c->stream>>>(dj, o, c->dcnt);
    else
        k_dequant<2><<<(unsigned)blocks, DTAP_CU_THREADS, 0, c->stream>>>(dj, o, c->dcnt);
    CK(cudaGetLastError(), "k_dequant launch");
    CK(cudaMemcpyAsync(dst, o, n * os, cudaMemcpyDeviceToHost, c->stream),
       "cudaMemcpyAsync (dequantized values, device to host)");
    CK(cudaMemcpyAsync(h, c->dcnt, sizeof h, cudaMemcpyDeviceToHost, c->stream),
       "cudaMemcpyAsync (dequantization counts, device to host)");
    /* kernel faults surface here */
    CK(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize (dequantization)");
    cnt[DTAB_NAN] = h[DTAB_NAN - 1];
    cnt[DTAB_INF] = h[DTAB_INF - 1];
    cnt[DTAB_OVF] = h[DTAB_OVF - 1];
    cnt[DTAB_UNF] = h[DTAB_UNF - 1];
    cnt[DTAB_FINE] = n - cnt[DTAB_NAN] - cnt[DTAB_INF] - cnt[DTAB_OVF] - cnt[DTAB_UNF];
    return 0;
}

/* ---- benchmark hook ---------------------------------------------------------------------- */

static int bench(Hook *b, int dev, size_t n, int iters, double *kernel_ms, size_t *elems,
                 char *msg, size_t msg_n)
{
    const uint64_t in = 7168, blk = 128;
    uint64_t rows = n / in ? n / in : 1, gr = (rows + blk - 1) / blk, gc = (in + blk - 1) / blk;
    uint32_t lut[256];
    int sm = 16;
    float ms = 0;
    dqb_job j;
    memset(&j, 0, sizeof j);
    j.kind = DQB_GRID;
    j.to = DTA_BF16;
    j.mid = DTA_BOOL;
    j.n = rows * in;
    j.in = in;
    j.out = rows;
    j.bm = blk;
    j.bn = blk;
    j.gr = gr;
    j.gc = gc;
    j.nscales = gr * gc;
    dqb_grid_prepare(&j);
    for (unsigned c = 0; c < 256; c++)
        lut[c] = dtab_f8_to_f32(DTA_F8_E4M3, (uint8_t)c);
    CK(cudaSetDevice(dev), "cudaSetDevice");
    if (cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sm = 16;
    /* a: codes, b: scales, c: code table, s: result, x: counts */
    CK(cudaMalloc(&b->a, j.n), "cudaMalloc (codes)");
    CK(cudaMalloc(&b->b, j.nscales * 4), "cudaMalloc (scales)");
    CK(cudaMalloc(&b->c, sizeof lut), "cudaMalloc (code table)");
    CK(cudaMalloc(&b->s, j.n * 2), "cudaMalloc (result)");
    CK(cudaMalloc(&b->x, 4 * sizeof(unsigned long long)), "cudaMalloc (counts)");
    CK(cudaMemset(b->a, 0x3A, j.n), "cudaMemset (codes)");           /* E4M3 1.25 */
    CK(cudaMemset(b->b, 0x3A, j.nscales * 4), "cudaMemset (scales)"); /* ~7.1e-4 */
    CK(cudaMemset(b->x, 0, 4 * sizeof(unsigned long long)), "cudaMemset (counts)");
    CK(cudaMemcpy(b->c, lut, sizeof lut, cudaMemcpyHostToDevice), "cudaMemcpy (code table)");
    j.codes = static_cast<const uint8_t *>(b->a);
    j.scales = static_cast<const float *>(b->b);
    j.lut = static_cast<const uint32_t *>(b->c);
    unsigned long long *cnt = static_cast<unsigned long long *>(b->x);
    size_t blocks = (j.n + DTAP_CU_THREADS - 1) / DTAP_CU_THREADS,
           cap = (size_t)sm * DQ_BLOCKS_PER_SM;
    unsigned nb = (unsigned)(blocks > cap ? cap : blocks);
    unsigned char *o = static_cast<unsigned char *>(b->s);
    CK(cudaEventCreate(&b->e0), "cudaEventCreate");
    CK(cudaEventCreate(&b->e1), "cudaEventCreate");
    k_dequant<2><<<nb, DTAP_CU_THREADS>>>(j, o, cnt); /* warm-up */
    CK(cudaGetLastError(), "k_dequant launch (warm-up)");
    CK(cudaEventRecord(b->e0, 0), "cudaEventRecord");
    for (int i = 0; i < iters; i++)
        k_dequant<2><<<nb, DTAP_CU_THREADS>>>(j, o, cnt);
    CK(cudaGetLastError(), "k_dequant launch");
    CK(cudaEventRecord(b->e1, 0), "cudaEventRecord");
    CK(cudaEventSynchronize(b->e1), "cudaEventSynchronize (kernels)");
    CK(cudaEventElapsedTime(&ms, b->e0, b->e1), "cudaEventElapsedTime");
    *kernel_ms = ms / iters;
    *elems = (size_t)j.n;
    return 0;
}

extern "C" int dtap_cu_dq_bench(int dev, size_t n, int iters, double *kernel_ms, size_t *elems,
                                char *msg, size_t msg_n)
{
    Hook b;
    memset(&b, 0, sizeof b);
    int rc = bench(&b, dev, n, iters < 1 ? 1 : iters, kernel_ms, elems, msg, msg_n);
    hook_free(&b);
    return rc;
}
