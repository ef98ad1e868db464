/* dtaudit: what the CUDA files share (convert.cu, values.cu, dequant.cu): the error message
 * of a failed runtime call (CK), the buffers of the test and benchmark hooks, and the warp
 * and block reductions of the kernels' counters.
 * Included by .cu files only. */
#ifndef DTAUDIT_CUDA_COMMON_CUH
#define DTAUDIT_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdio.h>

#define DTAP_CU_THREADS 256 /* threads per block of every kernel using block_add/block_max */

/* ---- errors -------------------------------------------------------------------------- */

static inline int fail(char *msg, size_t n, const char *call, cudaError_t e)
{
    if (msg && n)
        snprintf(msg, n, "%s: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

#define CK(call, what)                                                                      \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess)                                                              \
            return fail(msg, msg_n, what, e_);                                              \
    } while (0)

/* ---- test and benchmark hooks -------------------------------------------------------- */

/* Device buffers and events of a hook, freed by hook_free whatever happened. */
struct Hook {
    void *a, *b, *c, *s, *x;
    cudaEvent_t e0, e1;
};

static inline void hook_free(Hook *h)
{
    cudaFree(h->a);
    cudaFree(h->b);
    cudaFree(h->c);
    cudaFree(h->s);
    cudaFree(h->x);
    if (h->e0)
        cudaEventDestroy(h->e0);
    if (h->e1)
        cudaEventDestroy(h->e1);
    (void)cudaGetLastError();
}

/* ---- reductions ----------------------------------------------------------------------- */

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xFFFFFFFFu, v, o);
    return v;
}
__device__ __forceinline__ unsigned long long warp_max_u(unsigned long long v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long w = __shfl_down_sync(0xFFFFFFFFu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

/* Block sum of K counters into out[0..K-1] (one atomicAdd each, when nonzero). */
template <int K>
__device__ __forceinline__ void block_add(unsigned long long v[K], unsigned long long *out)
{
    __shared__ unsigned long long s[K][DTAP_CU_THREADS / 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int k = 0; k < K; k++) {
        v[k] = warp_sum(v[k]);
        if (lane == 0)
            s[k][warp] = v[k];
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int k = 0; k < K; k++) {
            unsigned long long x = lane < (int)(blockDim.x >> 5) ? s[k][lane] : 0;
            x = warp_sum(x);
            if (lane == 0 && x)
                atomicAdd(out + k, x);
        }
    }
}

/* Block maximum of K unsigned 64-bit values into out[0..K-1]. */
template <int K>
__device__ __forceinline__ void block_max(unsigned long long v[K], unsigned long long *out)
{
    __shared__ unsigned long long s[K][DTAP_CU_THREADS / 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* s may share storage with a previous reduction */
#pragma unroll
    for (int k = 0; k < K; k++) {
        v[k] = warp_max_u(v[k]);
        if (lane == 0)
            s[k][warp] = v[k];
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int k = 0; k < K; k++) {
            unsigned long long x = lane < (int)(blockDim.x >> 5) ? s[k][lane] : 0;
            x = warp_max_u(x);
            if (lane == 0 && x)
                atomicMax(out + k, x);
        }
    }
}

#endif
