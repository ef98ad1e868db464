/* dtaudit: CUDA conversion and verification kernels, and the thin host layer around the
 * CUDA runtime (the only file that includes a CUDA header; see convert_cuda.h).
 *
 * Kernels
 *   k_convert<FROM, TO>  one pass: loads, converts with the integer bit math of
 *                        convert_bits.h (shared with the host tests; identical to
 *                        convert_cpu.c), stores, and counts NaN / inf / overflow / underflow.
 *   k_verify<FROM, TO>   recomputes the exact conversion of the source and compares it with
 *                        a converted buffer: mismatches (NaN matches NaN), the first one,
 *                        non-finite values introduced, max abs/rel error in double.
 *   FROM is F64, F32, F16, BF16, or F8_E4M3 standing for every float8 dtype: the real one
 *   is a run-time argument and is decoded through a 256-entry table in shared memory that
 *   each block builds with dtab_f8_to_f32. TO is F32, F16 or BF16 (12 pairs).
 *
 * Vector access: a thread handles groups of 8 elements, so every load and store is 8 or 16
 * bytes (f32 -> bf16: two 16-byte float4-sized loads, one 16-byte store of 8 bf16; f64:
 * four 16-byte loads). Loads and stores use the streaming cache hints (__ldcs / __stcs):
 * the data is touched once. The group loop is a grid-stride loop; the n % 8 tail, and the
 * whole buffer when a pointer is not 16-byte aligned (8 for float8 sources), go through a
 * per-element loop that assembles each element from bytes. The pipeline's buffers come
 * from cudaMalloc (256-byte aligned), so it always takes the vector path.
 *
 * Counting: per-thread 32-bit counters, a warp reduction with __shfl_down_sync, a block
 * reduction in shared memory, then one 64-bit atomicAdd per counter and block (skipped when
 * zero). Maxima of non-negative doubles use atomicMax on their bits (same order); the first
 * mismatch is atomicMax of ~index, so a zeroed buffer means "none".
 *
 * Launch: 256 threads per block, at most 8 blocks per SM (grid-stride beyond that).
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_bits.h"
#include "cuda/common.cuh"
#include "cuda/convert_cuda.h"
#include "dtaudit/convert.h"
#include "dtaudit/dtype.h"

#define THREADS DTAP_CU_THREADS
#define BLOCKS_PER_SM 8
#define DTA_F8_ANY DTA_F8_E4M3 /* template stand-in for every float8 source */

/* ---- loads and stores ---------------------------------------------------------------- */

template <int SZ> struct Vec; /* 8 elements of SZ bytes */

template <> struct Vec<8> {
    static __device__ __forceinline__ void load(const unsigned char *p, size_t g, uint64_t c[8])
    {
        const ulonglong2 *q = reinterpret_cast<const ulonglong2 *>(p) + 4 * g;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            ulonglong2 v = __ldcs(q + k);
            c[2 * k] = v.x;
            c[2 * k + 1] = v.y;
        }
    }
};

template <> struct Vec<4> {
    static __device__ __forceinline__ void load(const unsigned char *p, size_t g, uint64_t c[8])
    {
        const uint4 *q = reinterpret_cast<const uint4 *>(p) + 2 * g;
        uint4 a = __ldcs(q), b = __ldcs(q + 1);
        c[0] = a.x, c[1] = a.y, c[2] = a.z, c[3] = a.w;
        c[4] = b.x, c[5] = b.y, c[6] = b.z, c[7] = b.w;
    }
    static __device__ __forceinline__ void store(unsigned char *p, size_t g, const uint32_t r[8])
    {
        uint4 *q = reinterpret_cast<uint4 *>(p) + 2 * g;
        __stcs(q, make_uint4(r[0], r[1], r[2], r[3]));
        __stcs(q + 1, make_uint4(r[4], r[5], r[6], r[7]));
    }
};

template <> struct Vec<2> {
    static __device__ __forceinline__ void load(const unsigned char *p, size_t g, uint64_t c[8])
    {
        uint4 a = __ldcs(reinterpret_cast<const uint4 *>(p) + g);
        uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            c[2 * k] = w[k] & 0xFFFFu;
            c[2 * k + 1] = w[k] >> 16;
        }
    }
    static __device__ __forceinline__ void store(unsigned char *p, size_t g, const uint32_t r[8])
    {
        __stcs(reinterpret_cast<uint4 *>(p) + g,
               make_uint4(r[0] | (r[1] << 16), r[2] | (r[3] << 16), r[4] | (r[5] << 16),
                          r[6] | (r[7] << 16)));
    }
};

template <> struct Vec<1> {
    static __device__ __forceinline__ void load(const unsigned char *p, size_t g, uint64_t c[8])
    {
        uint2 a = __ldcs(reinterpret_cast<const uint2 *>(p) + g);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            c[k] = (a.x >> (8 * k)) & 0xFFu;
            c[4 + k] = (a.y >> (8 * k)) & 0xFFu;
        }
    }
};

/* One element at any alignment (tails, unaligned buffers). */
template <int SZ> __device__ __forceinline__ uint64_t load1(const unsigned char *p, size_t i)
{
    uint64_t v = 0;
#pragma unroll
    for (int k = 0; k < SZ; k++)
        v |= (uint64_t)p[i * SZ + k] << (8 * k);
    return v;
}
template <int SZ> __device__ __forceinline__ void store1(unsigned char *p, size_t i, uint32_t v)
{
#pragma unroll
    for (int k = 0; k < SZ; k++)
        p[i * SZ + k] = (unsigned char)(v >> (8 * k));
}

template <int T> struct Size { enum { v = T == DTA_F64 ? 8 : T == DTA_F32 ? 4 : T == DTA_F8_ANY ? 1 : 2 }; };

/* ---- element conversion ---------------------------------------------------------------- */

template <int FROM, int TO>
__device__ __forceinline__ uint32_t conv1(uint64_t code, int sat, const uint32_t *tbl, int *cls)
{
    if (FROM == DTA_F64)
        return dtab_convert_f64(TO, code, sat, cls);
    uint32_t u;
    if (FROM == DTA_F32)
        u = (uint32_t)code;
    else if (FROM == DTA_F16)
        u = dtab_f16_to_f32((uint16_t)code);
    else if (FROM == DTA_BF16)
        u = dtab_bf16_to_f32((uint16_t)code);
    else
        u = tbl[code & 0xFF];
    return dtab_encode(TO, u, sat, cls);
}

struct Cnt {
    unsigned nan, inf, ovf, unf;
};

__device__ __forceinline__ void tally(Cnt &c, int cls)
{
    c.nan += cls == DTAB_NAN;
    c.inf += cls == DTAB_INF;
    c.ovf += cls == DTAB_OVF;
    c.unf += cls == DTAB_UNF;
}

template <int FROM>
__device__ __forceinline__ void build_table(uint32_t *tbl, int f8)
{
    if (FROM == DTA_F8_ANY) {
        for (int k = threadIdx.x; k < 256; k += blockDim.x)
            tbl[k] = dtab_f8_to_f32(f8, (uint8_t)k);
        __syncthreads();
    }
}

/* ---- kernels ----------------------------------------------------------------------------- */

template <int FROM, int TO>
__global__ void __launch_bounds__(THREADS)
k_convert(const unsigned char *__restrict__ src, unsigned char *__restrict__ dst, size_t n,
          int vec, int sat, int f8, dtap_cu_counts *out)
{
    enum { IS = Size<FROM>::v, OS = Size<TO>::v };
    __shared__ uint32_t tbl[FROM == DTA_F8_ANY ? 256 : 1];
    build_table<FROM>(tbl, f8);
    Cnt c = {0, 0, 0, 0};
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t ng = vec ? n / 8 : 0;
    for (size_t g = tid; g < ng; g += stride) {
        uint64_t in[8];
        uint32_t r[8];
        Vec<IS>::load(src, g, in);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            int cls;
            r[k] = conv1<FROM, TO>(in[k], sat, tbl, &cls);
            tally(c, cls);
        }
        Vec<OS>::store(dst, g, r);
    }
    for (size_t i = ng * 8 + tid; i < n; i += stride) {
        int cls;
        store1<OS>(dst, i, conv1<FROM, TO>(load1<IS>(src, i), sat, tbl, &cls));
        tally(c, cls);
    }
    unsigned long long v[4] = {c.nan, c.inf, c.ovf, c.unf};
    block_add<4>(v, reinterpret_cast<unsigned long long *>(&out->nan));
}

struct VAcc {
    unsigned mism, added;
    unsigned long long first_inv;
    double maxabs, maxrel;
};

template <int FROM, int TO>
__device__ __forceinline__ void verify1(uint64_t s, uint32_t got, int sat, int f8, size_t i,
                                        VAcc &a)
{
    int mism, added;
    double ea, er;
    dtab_verify(FROM == DTA_F8_ANY ? f8 : FROM, TO, s, got, sat, &mism, &added, &ea, &er);
    a.mism += mism;
    a.added += added;
    if (mism && ~(unsigned long long)i > a.first_inv)
        a.first_inv = ~(unsigned long long)i;
    a.maxabs = ea > a.maxabs ? ea : a.maxabs;
    a.maxrel = er > a.maxrel ? er : a.maxrel;
}

template <int FROM, int TO>
__global__ void __launch_bounds__(THREADS)
k_verify(const unsigned char *__restrict__ src, const unsigned char *__restrict__ conv,
         size_t n, int vec, int sat, int f8, dtap_cu_counts *out)
{
    enum { IS = Size<FROM>::v, OS = Size<TO>::v };
    VAcc a = {0, 0, 0, 0.0, 0.0};
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t ng = vec ? n / 8 : 0;
    for (size_t g = tid; g < ng; g += stride) {
        uint64_t in[8], got[8];
        Vec<IS>::load(src, g, in);
        Vec<OS>::load(conv, g, got);
#pragma unroll
        for (int k = 0; k < 8; k++)
            verify1<FROM, TO>(in[k], (uint32_t)got[k], sat, f8, g * 8 + k, a);
    }
    for (size_t i = ng * 8 + tid; i < n; i += stride)
        verify1<FROM, TO>(load1<IS>(src, i), (uint32_t)load1<OS>(conv, i), sat, f8, i, a);
    unsigned long long v[2] = {a.mism, a.added};
    block_add<2>(v, reinterpret_cast<unsigned long long *>(&out->mism));
    /* first_inv, maxabs_bits, maxrel_bits are consecutive in dtap_cu_counts */
    unsigned long long m[3] = {a.first_inv, (unsigned long long)__double_as_longlong(a.maxabs),
                               (unsigned long long)__double_as_longlong(a.maxrel)};
    block_max<3>(m, reinterpret_cast<unsigned long long *>(&out->first_inv));
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

template <int FROM, int TO>
static cudaError_t launch2(int job, const void *src, void *dst, size_t n, int sat, int f8,
                           dtap_cu_counts *out, cudaStream_t s, int sm)
{
    size_t ia = Size<FROM>::v == 1 ? 8 : 16;
    int vec = aligned(src, ia) && aligned(dst, 16);
    size_t work = vec ? n / 8 + n % 8 : n;
    size_t blocks = (work + THREADS - 1) / THREADS, cap = (size_t)(sm > 0 ? sm : 1) * BLOCKS_PER_SM;
    if (blocks > cap)
        blocks = cap;
    if (blocks == 0)
        return cudaSuccess;
    if (job == DTAP_CU_CONVERT)
        k_convert<FROM, TO><<<(unsigned)blocks, THREADS, 0, s>>>(
            static_cast<const unsigned char *>(src), static_cast<unsigned char *>(dst), n, vec,
            sat, f8, out);
    else
        k_verify<FROM, TO><<<(unsigned)blocks, THREADS, 0, s>>>(
            static_cast<const unsigned char *>(src), static_cast<const unsigned char *>(dst), n,
            vec, sat, f8, out);
    return cudaGetLastError();
}

template <int FROM>
static cudaError_t launch1(int job, int to, const void *src, void *dst, size_t n, int sat,
                           int f8, dtap_cu_counts *out, cudaStream_t s, int sm)
{
    switch (to) {
    case DTA_F32:
        if (FROM != DTA_F32)
            return launch2<FROM, (FROM == DTA_F32 ? DTA_F16 : DTA_F32)>(job, src, dst, n, sat,
                                                                      f8, out, s, sm);
        break;
    case DTA_F16:
        if (FROM != DTA_F16)
            return launch2<FROM, (FROM == DTA_F16 ? DTA_BF16 : DTA_F16)>(job, src, dst, n, sat,
                                                                       f8, out, s, sm);
        break;
    case DTA_BF16:
        if (FROM != DTA_BF16)
            return launch2<FROM, (FROM == DTA_BF16 ? DTA_F16 : DTA_BF16)>(job, src, dst, n, sat,
                                                                        f8, out, s, sm);
        break;
    default:
        break;
    }
    return cudaErrorInvalidValue;
}

/* The kernels of every (from, to) pair with from != to of dta_convert_supported. */
static cudaError_t launch(int job, int from, int to, int mode, const void *src, void *dst,
                          size_t n, dtap_cu_counts *out, cudaStream_t s, int sm)
{
    int sat = mode == DTA_OVERFLOW_SATURATE;
    switch (from) {
    case DTA_F64:
        return launch1<DTA_F64>(job, to, src, dst, n, sat, from, out, s, sm);
    case DTA_F32:
        return launch1<DTA_F32>(job, to, src, dst, n, sat, from, out, s, sm);
    case DTA_F16:
        return launch1<DTA_F16>(job, to, src, dst, n, sat, from, out, s, sm);
    case DTA_BF16:
        return launch1<DTA_BF16>(job, to, src, dst, n, sat, from, out, s, sm);
    case DTA_F8_E4M3: case DTA_F8_E5M2: case DTA_F8_E4M3FNUZ: case DTA_F8_E5M2FNUZ:
    case DTA_F8_E8M0:
        return launch1<DTA_F8_ANY>(job, to, src, dst, n, sat, from, out, s, sm);
    default:
        return cudaErrorInvalidValue;
    }
}

static size_t elsize(int t) { return dta_dtype_elem_size((dta_dtype)t); } /* byte types only */

/* ---- devices ----------------------------------------------------------------------------- */

extern "C" int dtap_cu_device_count(int *count, char *msg, size_t msg_n)
{
    *count = 0;
    CK(cudaGetDeviceCount(count), "cudaGetDeviceCount");
    if (*count == 0) {
        snprintf(msg, msg_n, "cudaGetDeviceCount: no CUDA device");
        return -1;
    }
    return 0;
}

static int sm_count(int dev)
{
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        v = 16;
    return v;
}

extern "C" int dtap_cu_probe(int dev, dtap_cu_devinfo *info, char *msg, size_t msg_n)
{
    cudaDeviceProp p;
    cudaFuncAttributes fa;
    int clock = 0, bus = 0;
    memset(info, 0, sizeof *info);
    CK(cudaSetDevice(dev), "cudaSetDevice");
    CK(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->major = p.major;
    info->minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->global_mem = p.totalGlobalMem;
    if (cudaDeviceGetAttribute(&clock, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess)
        info->mem_bw_gbs = 2.0 * clock * 1e3 * (bus / 8.0) / 1e9;
    (void)cudaGetLastError(); /* an attribute this device lacks is not an error */
    CK(cudaRuntimeGetVersion(&info->runtime_version), "cudaRuntimeGetVersion");
    CK(cudaDriverGetVersion(&info->driver_version), "cudaDriverGetVersion");
    /* Fails with cudaErrorNoKernelImageForDevice when the fat binary (sm_80, sm_90,
     * compute_90 PTX) has nothing this device can run. */
    CK(cudaFuncGetAttributes(&fa, k_convert<DTA_F32, DTA_BF16>),
       "cudaFuncGetAttributes (kernel image for this device)");
    return 0;
}

/* ---- lanes -------------------------------------------------------------------------------- */

struct dtap_cu_lane {
    int dev, sm;
    size_t bytes;
    cudaStream_t stream;
    cudaEvent_t done;
    void *ha, *hb, *da, *db;
    dtap_cu_counts *hc, *dc;
};

extern "C" void dtap_cu_lane_close(dtap_cu_lane *l)
{
    if (!l)
        return;
    cudaSetDevice(l->dev);
    if (l->stream)
        cudaStreamSynchronize(l->stream);
    cudaFreeHost(l->ha);
    cudaFreeHost(l->hb);
    cudaFreeHost(l->hc);
    cudaFree(l->da);
    cudaFree(l->db);
    cudaFree(l->dc);
    if (l->done)
        cudaEventDestroy(l->done);
    if (l->stream)
        cudaStreamDestroy(l->stream);
    (void)cudaGetLastError();
    free(l);
}

static int lane_init(dtap_cu_lane *l, char *msg, size_t msg_n)
{
    CK(cudaSetDevice(l->dev), "cudaSetDevice");
    CK(cudaStreamCreateWithFlags(&l->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    CK(cudaEventCreateWithFlags(&l->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    CK(cudaHostAlloc(&l->ha, l->bytes, cudaHostAllocDefault), "cudaHostAlloc (source chunk)");
    CK(cudaHostAlloc(&l->hb, l->bytes, cudaHostAllocDefault), "cudaHostAlloc (result chunk)");
    CK(cudaHostAlloc(reinterpret_cast<void **>(&l->hc), sizeof *l->hc, cudaHostAllocDefault),
       "cudaHostAlloc (statistics)");
    CK(cudaMalloc(&l->da, l->bytes), "cudaMalloc (source chunk)");
    CK(cudaMalloc(&l->db, l->bytes), "cudaMalloc (result chunk)");
    CK(cudaMalloc(reinterpret_cast<void **>(&l->dc), sizeof *l->dc), "cudaMalloc (statistics)");
    return 0;
}

extern "C" int dtap_cu_lane_open(int dev, size_t bytes, dtap_cu_lane **out, void **host_a,
                                 void **host_b, char *msg, size_t msg_n)
{
    dtap_cu_lane *l = static_cast<dtap_cu_lane *>(calloc(1, sizeof(dtap_cu_lane)));
    *out = NULL;
    if (!l) {
        snprintf(msg, msg_n, "out of memory");
        return -1;
    }
    l->dev = dev;
    l->bytes = bytes ? bytes : 1;
    l->sm = sm_count(dev);
    if (lane_init(l, msg, msg_n) != 0) {
        dtap_cu_lane_close(l);
        return -1;
    }
    *out = l;
    *host_a = l->ha;
    *host_b = l->hb;
    return 0;
}

extern "C" int dtap_cu_lane_submit(dtap_cu_lane *l, int job, int from, int to, int mode,
                                   size_t n, char *msg, size_t msg_n)
{
    size_t ib = n * elsize(from), ob = n * elsize(to);
    if (ib > l->bytes || ob > l->bytes) {
        snprintf(msg, msg_n, "chunk of %zu elements exceeds the lane's %zu-byte buffers", n,
                 l->bytes);
        return -1;
    }
    CK(cudaSetDevice(l->dev), "cudaSetDevice");
    CK(cudaMemcpyAsync(l->da, l->ha, ib, cudaMemcpyHostToDevice, l->stream),
       "cudaMemcpyAsync (source chunk, host to device)");
    if (job == DTAP_CU_VERIFY)
        CK(cudaMemcpyAsync(l->db, l->hb, ob, cudaMemcpyHostToDevice, l->stream),
           "cudaMemcpyAsync (converted chunk, host to device)");
    CK(cudaMemsetAsync(l->dc, 0, sizeof *l->dc, l->stream), "cudaMemsetAsync (statistics)");
    CK(launch(job, from, to, mode, l->da, l->db, n, l->dc, l->stream, l->sm),
       job == DTAP_CU_CONVERT ? "k_convert launch" : "k_verify launch");
    if (job == DTAP_CU_CONVERT)
        CK(cudaMemcpyAsync(l->hb, l->db, ob, cudaMemcpyDeviceToHost, l->stream),
           "cudaMemcpyAsync (result chunk, device to host)");
    CK(cudaMemcpyAsync(l->hc, l->dc, sizeof *l->dc, cudaMemcpyDeviceToHost, l->stream),
       "cudaMemcpyAsync (statistics, device to host)");
    CK(cudaEventRecord(l->done, l->stream), "cudaEventRecord");
    return 0;
}

extern "C" int dtap_cu_lane_wait(dtap_cu_lane *l, dtap_cu_counts *c, char *msg, size_t msg_n)
{
    CK(cudaSetDevice(l->dev), "cudaSetDevice");
    /* kernel faults surface here, as the error of the call that waits */
    CK(cudaEventSynchronize(l->done), "cudaEventSynchronize (chunk)");
    *c = *l->hc;
    return 0;
}

/* ---- test and benchmark hooks ------------------------------------------------------------- */

static int dev_run(Hook *h, int dev, int job, int from, int to, int mode, const void *src,
                   size_t src_off, void *dst, size_t dst_off, size_t n, dtap_cu_counts *c,
                   char *msg, size_t msg_n)
{
    size_t ib = n * elsize(from), ob = n * elsize(to);
    CK(cudaSetDevice(dev), "cudaSetDevice");
    CK(cudaMalloc(&h->a, src_off + ib + 1), "cudaMalloc (source)");
    CK(cudaMalloc(&h->b, dst_off + ob + 1), "cudaMalloc (result)");
    CK(cudaMalloc(&h->s, sizeof *c), "cudaMalloc (statistics)");
    unsigned char *da = static_cast<unsigned char *>(h->a) + src_off;
    unsigned char *db = static_cast<unsigned char *>(h->b) + dst_off;
    CK(cudaMemcpy(da, src, ib, cudaMemcpyHostToDevice), "cudaMemcpy (source)");
    if (job == DTAP_CU_VERIFY)
        CK(cudaMemcpy(db, dst, ob, cudaMemcpyHostToDevice), "cudaMemcpy (converted)");
    CK(cudaMemset(h->s, 0, sizeof *c), "cudaMemset (statistics)");
    CK(launch(job, from, to, mode, da, db, n, static_cast<dtap_cu_counts *>(h->s), 0,
              sm_count(dev)),
       "kernel launch");
    CK(cudaDeviceSynchronize(), "cudaDeviceSynchronize (kernel)");
    if (job == DTAP_CU_CONVERT)
        CK(cudaMemcpy(dst, db, ob, cudaMemcpyDeviceToHost), "cudaMemcpy (result)");
    CK(cudaMemcpy(c, h->s, sizeof *c, cudaMemcpyDeviceToHost), "cudaMemcpy (statistics)");
    return 0;
}

extern "C" int dtap_cu_dev_run(int dev, int job, int from, int to, int mode, const void *src,
                               size_t src_off, void *dst, size_t dst_off, size_t n,
                               dtap_cu_counts *c, char *msg, size_t msg_n)
{
    Hook h;
    memset(&h, 0, sizeof h);
    int rc = dev_run(&h, dev, job, from, to, mode, src, src_off, dst, dst_off, n, c, msg, msg_n);
    hook_free(&h);
    return rc;
}

static int bench(Hook *h, int dev, int from, int to, size_t n, int iters, double *kernel_ms,
                 double *copy_ms, char *msg, size_t msg_n)
{
    size_t ib = n * elsize(from), ob = n * elsize(to), cb = (ib + ob) / 2;
    size_t ab = ib > cb ? ib : cb;
    float ms = 0;
    int sm = sm_count(dev);
    CK(cudaSetDevice(dev), "cudaSetDevice");
    CK(cudaMalloc(&h->a, ab), "cudaMalloc (source)");
    CK(cudaMalloc(&h->b, ob), "cudaMalloc (result)");
    CK(cudaMalloc(&h->c, cb), "cudaMalloc (copy target)");
    CK(cudaMalloc(&h->s, sizeof(dtap_cu_counts)), "cudaMalloc (statistics)");
    CK(cudaMemset(h->a, 0x3E, ab), "cudaMemset (source)"); /* finite, normal values */
    CK(cudaMemset(h->s, 0, sizeof(dtap_cu_counts)), "cudaMemset (statistics)");
    CK(cudaEventCreate(&h->e0), "cudaEventCreate");
    CK(cudaEventCreate(&h->e1), "cudaEventCreate");
    dtap_cu_counts *st = static_cast<dtap_cu_counts *>(h->s);
    for (int w = 0; w < 2; w++)
        CK(launch(DTAP_CU_CONVERT, from, to, DTA_OVERFLOW_INF, h->a, h->b, n, st, 0, sm),
           "kernel launch (warm-up)");
    CK(cudaEventRecord(h->e0, 0), "cudaEventRecord");
    for (int i = 0; i < iters; i++)
        CK(launch(DTAP_CU_CONVERT, from, to, DTA_OVERFLOW_INF, h->a, h->b, n, st, 0, sm),
           "kernel launch");
    CK(cudaEventRecord(h->e1, 0), "cudaEventRecord");
    CK(cudaEventSynchronize(h->e1), "cudaEventSynchronize (kernels)");
    CK(cudaEventElapsedTime(&ms, h->e0, h->e1), "cudaEventElapsedTime");
    *kernel_ms = ms / iters;
    CK(cudaMemcpy(h->c, h->a, cb, cudaMemcpyDeviceToDevice), "cudaMemcpy (warm-up)");
    CK(cudaEventRecord(h->e0, 0), "cudaEventRecord");
    for (int i = 0; i < iters; i++)
        CK(cudaMemcpyAsync(h->c, h->a, cb, cudaMemcpyDeviceToDevice, 0), "cudaMemcpyAsync");
    CK(cudaEventRecord(h->e1, 0), "cudaEventRecord");
    CK(cudaEventSynchronize(h->e1), "cudaEventSynchronize (copies)");
    CK(cudaEventElapsedTime(&ms, h->e0, h->e1), "cudaEventElapsedTime");
    *copy_ms = ms / iters;
    return 0;
}

extern "C" int dtap_cu_bench_kernel(int dev, int from, int to, size_t n, int iters,
                                    double *kernel_ms, double *copy_ms, char *msg, size_t msg_n)
{
    Hook h;
    memset(&h, 0, sizeof h);
    int rc = bench(&h, dev, from, to, n, iters < 1 ? 1 : iters, kernel_ms, copy_ms, msg, msg_n);
    hook_free(&h);
    return rc;
}

#define DTA_STR2(x) #x
#define DTA_STR(x) DTA_STR2(x)

extern "C" const char *dtap_cu_compiler_version(void)
{
    return DTA_STR(__CUDACC_VER_MAJOR__) "." DTA_STR(__CUDACC_VER_MINOR__);
}
