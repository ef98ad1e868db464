/* dtaudit: the C interface of the dequantization kernels (src/lib/cuda/dequant.cu).
 *
 * Plain C; includes no CUDA header. backend_cuda.c builds dtap_dq_run_cuda
 * (dequant_dev.h) on these calls. Every call returns 0 on success, or -1 after writing
 * "cudaCall: what the runtime said (cudaErrorName)" to msg (msg_n bytes). */
#ifndef DTAUDIT_CUDA_DEQUANT_CUDA_H
#define DTAUDIT_CUDA_DEQUANT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "dequant_bits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dtap_cu_dq dtap_cu_dq;

/* A context on device dev (a stream; device buffers grown on use). Checks that this
 * build's dequantization kernels have an image for the device. */
int dtap_cu_dq_open(int dev, dtap_cu_dq **out, char *msg, size_t msg_n);
/* Waits for pending work and frees everything; NULL is accepted. */
void dtap_cu_dq_close(dtap_cu_dq *c);
/* Runs dqb_elem over job j (host pointers, as dtap_dq_job fills them) on the device:
 * j->n results of dtype j->to into dst (host), and the number of elements of each class
 * DTAB_NAN, DTAB_INF, DTAB_OVF, DTAB_UNF into cnt[1..4] (cnt[0]: the rest). Synchronous. */
int dtap_cu_dq_run(dtap_cu_dq *c, const dqb_job *j, void *dst, uint64_t cnt[5], char *msg,
                   size_t msg_n);

/* Benchmark hook (scripts/gpu-bench.sh): the kernel alone on a DeepSeek-shaped block-FP8
 * job (rows of 7168 F8_E4M3 codes, 128 x 128 blocks of F32 scales, about n elements) to
 * BF16 between device buffers, iters times; *kernel_ms the mean time of one run, *elems
 * the elements of a run (n rounded down to whole rows, at least one). */
int dtap_cu_dq_bench(int dev, size_t n, int iters, double *kernel_ms, size_t *elems,
                     char *msg, size_t msg_n);

#ifdef __cplusplus
}
#endif
#endif
