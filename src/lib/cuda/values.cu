/* dtaudit: the CUDA kernel of audit --values (see values_cuda.h) and its host layer.
 *
 * k_values<W>: a grid-stride loop over the elements of one chunk; each element's |x| bits
 * are classified by the plan's thresholds (W = 2, 4, 8) or its class table (W = 1), as in
 * values_scan.c's scalar kernels:
 *     |x| > inf: NaN; == inf: +-inf by the sign; 0: zero; else overflow (>= ovf_lo),
 *     underflow (< unf_hi), subnormal ([unf_hi, sub_hi)), and max / min of |x|.
 * Counts: per-thread 64-bit counters, a warp reduction with __shfl_down_sync, one atomicAdd
 * per counter and warp (skipped when zero); max |x| by atomicMax, min |x| by atomicMax of
 * its complement (so a zeroed buffer means "none"). Launch: 256 threads, at most 8 blocks
 * per SM. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/values_cuda.h"

#define VTHREADS 256
#define VBLOCKS_PER_SM 8

/* The device copy of the counts: 7 sums, max |x|, ~min |x|. */
struct VOut {
    unsigned long long sum[7];
    unsigned long long max_abs, min_inv;
};

template <int W> struct VT;
template <> struct VT<2> { typedef unsigned short T; };
template <> struct VT<4> { typedef unsigned int T; };
template <> struct VT<8> { typedef unsigned long long T; };

/* c[0..6]: nan, pos_inf, neg_inf, zero, overflow, underflow, subnormal */
__device__ __forceinline__ void flush(unsigned long long c[7], unsigned long long mx,
                                      unsigned long long mn_inv, VOut *out)
{
#pragma unroll
    for (int k = 0; k < 7; k++) {
        unsigned long long s = warp_sum(c[k]);
        if ((threadIdx.x & 31) == 0 && s)
            atomicAdd(&out->sum[k], s);
    }
    mx = warp_max_u(mx);
    mn_inv = warp_max_u(mn_inv);
    if ((threadIdx.x & 31) == 0) {
        if (mx)
            atomicMax(&out->max_abs, mx);
        if (mn_inv)
            atomicMax(&out->min_inv, mn_inv);
    }
}

template <int W>
__global__ void __launch_bounds__(VTHREADS)
k_values(const unsigned char *__restrict__ src, size_t n, dtap_cu_vplan p, VOut *out)
{
    typedef typename VT<W>::T T;
    const T *s = reinterpret_cast<const T *>(src);
    const T sign = (T)((T)1 << (8 * W - 1)), inf = (T)p.inf, ovf = (T)p.ovf_lo,
            unf = (T)p.unf_hi, sub = (T)p.sub_hi;
    unsigned long long c[7] = {0, 0, 0, 0, 0, 0, 0}, mx = 0, mn_inv = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = __ldcs(s + i);
        T a = (T)(v & (T)(sign - 1));
        if (a >= inf) {
            c[0] += a > inf;
            c[1] += a == inf && !(v & sign);
            c[2] += a == inf && (v & sign);
            continue;
        }
        if (a == 0) {
            c[3]++;
            continue;
        }
        c[4] += a >= ovf;
        c[5] += a < unf;
        c[6] += a >= unf && a < sub;
        mx = (unsigned long long)a > mx ? (unsigned long long)a : mx;
        mn_inv = ~(unsigned long long)a > mn_inv ? ~(unsigned long long)a : mn_inv;
    }
    flush(c, mx, mn_inv, out);
}

__global__ void __launch_bounds__(VTHREADS)
k_values8(const unsigned char *__restrict__ src, size_t n, dtap_cu_vplan p, VOut *out)
{
    __shared__ unsigned char cls[256];
    __shared__ uint32_t abs8[256];
    for (int k = threadIdx.x; k < 256; k += blockDim.x) {
        cls[k] = p.cls[k];
        abs8[k] = p.abs8[k];
    }
    __syncthreads();
    unsigned long long c[7] = {0, 0, 0, 0, 0, 0, 0}, mx = 0, mn_inv = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned char code = src[i];
        int k = cls[code];
        switch (k) {
        case DTAP_CU_VK_NAN: c[0]++; continue;
        case DTAP_CU_VK_PINF: c[1]++; continue;
        case DTAP_CU_VK_NINF: c[2]++; continue;
        case DTAP_CU_VK_ZERO: c[3]++; continue;
        case DTAP_CU_VK_OVF: c[4]++; break;
        case DTAP_CU_VK_UNF: c[5]++; break;
        case DTAP_CU_VK_SUB: c[6]++; break;
        default: break;
        }
        unsigned long long a = abs8[code];
        mx = a > mx ? a : mx;
        mn_inv = ~a > mn_inv ? ~a : mn_inv;
    }
    flush(c, mx, mn_inv, out);
}

static int vsm_count(int dev)
{
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        v = 16;
    return v;
}

static cudaError_t vlaunch(const dtap_cu_vplan *p, const void *src, size_t n, VOut *out,
                           cudaStream_t s, int sm)
{
    size_t want = (n + VTHREADS - 1) / VTHREADS, cap = (size_t)sm * VBLOCKS_PER_SM;
    unsigned blocks = (unsigned)(want < cap ? (want ? want : 1) : cap);
    const unsigned char *a = static_cast<const unsigned char *>(src);
    switch (p->width) {
    case 1: k_values8<<<blocks, VTHREADS, 0, s>>>(a, n, *p, out); break;
    case 2: k_values<2><<<blocks, VTHREADS, 0, s>>>(a, n, *p, out); break;
    case 4: k_values<4><<<blocks, VTHREADS, 0, s>>>(a, n, *p, out); break;
    case 8: k_values<8><<<blocks, VTHREADS, 0, s>>>(a, n, *p, out); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

struct dtap_cu_vctx {
    int dev, sm;
    size_t bytes;
    cudaStream_t stream;
    void *host, *dev_buf;
    VOut *hout, *dout;
};

extern "C" void dtap_cu_values_close(dtap_cu_vctx *x)
{
    if (!x)
        return;
    cudaSetDevice(x->dev);
    if (x->stream)
        cudaStreamSynchronize(x->stream);
    cudaFreeHost(x->host);
    cudaFreeHost(x->hout);
    cudaFree(x->dev_buf);
    cudaFree(x->dout);
    if (x->stream)
        cudaStreamDestroy(x->stream);
    (void)cudaGetLastError();
    free(x);
}

static int vctx_init(dtap_cu_vctx *x, char *msg, size_t msg_n)
{
    CK(cudaSetDevice(x->dev), "cudaSetDevice");
    CK(cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    CK(cudaHostAlloc(&x->host, x->bytes, cudaHostAllocDefault), "cudaHostAlloc (values chunk)");
    CK(cudaHostAlloc(reinterpret_cast<void **>(&x->hout), sizeof *x->hout, cudaHostAllocDefault),
        "cudaHostAlloc (value counts)");
    CK(cudaMalloc(&x->dev_buf, x->bytes), "cudaMalloc (values chunk)");
    CK(cudaMalloc(reinterpret_cast<void **>(&x->dout), sizeof *x->dout),
        "cudaMalloc (value counts)");
    return 0;
}

extern "C" int dtap_cu_values_open(int dev, size_t bytes, dtap_cu_vctx **out, void **host,
                                   char *msg, size_t msg_n)
{
    dtap_cu_vctx *x = static_cast<dtap_cu_vctx *>(calloc(1, sizeof(dtap_cu_vctx)));
    *out = NULL;
    if (!x) {
        snprintf(msg, msg_n, "out of memory");
        return -1;
    }
    x->dev = dev;
    x->bytes = bytes ? bytes : 1;
    x->sm = vsm_count(dev);
    if (vctx_init(x, msg, msg_n) != 0) {
        dtap_cu_values_close(x);
        return -1;
    }
    *out = x;
    *host = x->host;
    return 0;
}

extern "C" int dtap_cu_values_run(dtap_cu_vctx *x, const dtap_cu_vplan *p, size_t n,
                                  dtap_cu_vcounts *c, char *msg, size_t msg_n)
{
    size_t b = n * p->width;
    if (b > x->bytes || (p->width != 1 && p->width != 2 && p->width != 4 && p->width != 8)) {
        snprintf(msg, msg_n, "values chunk of %zu elements of %u bytes exceeds the %zu-byte buffer",
                 n, p->width, x->bytes);
        return -1;
    }
    CK(cudaSetDevice(x->dev), "cudaSetDevice");
    CK(cudaMemcpyAsync(x->dev_buf, x->host, b, cudaMemcpyHostToDevice, x->stream),
        "cudaMemcpyAsync (values chunk, host to device)");
    CK(cudaMemsetAsync(x->dout, 0, sizeof *x->dout, x->stream), "cudaMemsetAsync (value counts)");
    if (n)
        CK(vlaunch(p, x->dev_buf, n, x->dout, x->stream, x->sm), "k_values launch");
    CK(cudaMemcpyAsync(x->hout, x->dout, sizeof *x->dout, cudaMemcpyDeviceToHost, x->stream),
        "cudaMemcpyAsync (value counts, device to host)");
    /* kernel faults surface here */
    CK(cudaStreamSynchronize(x->stream), "cudaStreamSynchronize (values chunk)");
    c->nan = x->hout->sum[0];
    c->pos_inf = x->hout->sum[1];
    c->neg_inf = x->hout->sum[2];
    c->zero = x->hout->sum[3];
    c->overflow = x->hout->sum[4];
    c->underflow = x->hout->sum[5];
    c->subnormal = x->hout->sum[6];
    c->max_abs_bits = x->hout->max_abs;
    c->min_abs_bits = x->hout->min_inv ? ~x->hout->min_inv : UINT64_MAX;
    return 0;
}
