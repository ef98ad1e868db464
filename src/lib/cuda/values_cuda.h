/* dtaudit: the C interface of the CUDA value-statistics kernel (src/lib/cuda/values.cu), for
 * audit --values (include/dtaudit/values.h). Plain C; includes no CUDA header.
 * backend_cuda.c builds dta_values_count_cuda (include/dtaudit/backend.h) on these calls.
 *
 * The kernel classifies raw little-endian elements exactly as values_scan.c's scalar
 * kernels do, from the same plan: the |x| thresholds of a 2-, 4- or 8-byte source, or the
 * class table and |x| table of an 8-bit source. Every call returns 0, or -1 after writing
 * "cudaCall: what the runtime said (cudaErrorName)" to msg. */
#ifndef DTAUDIT_CUDA_VALUES_CUDA_H
#define DTAUDIT_CUDA_VALUES_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Classes of an 8-bit code, the numbering of values_scan.c's class table (lut). */
enum {
    DTAP_CU_VK_NORMAL = 0, DTAP_CU_VK_NAN, DTAP_CU_VK_PINF, DTAP_CU_VK_NINF, DTAP_CU_VK_ZERO,
    DTAP_CU_VK_OVF, DTAP_CU_VK_UNF, DTAP_CU_VK_SUB
};

/* A dta_values_plan as the kernel takes it (by value). */
typedef struct {
    unsigned width;             /* bytes per element: 1, 2, 4 or 8 */
    uint64_t inf, ovf_lo, unf_hi, sub_hi; /* |x| thresholds (width >= 2) */
    unsigned char cls[256];     /* width 1: class per code (DTAP_CU_VK_*) */
    uint32_t abs8[256];         /* width 1: |x| as f32 bits per code */
} dtap_cu_vplan;

/* Counts of one run (dta_values_counts; min_abs_bits is UINT64_MAX when no finite nonzero
 * value was seen). */
typedef struct {
    uint64_t nan, pos_inf, neg_inf, zero, overflow, underflow, subnormal;
    uint64_t max_abs_bits, min_abs_bits;
} dtap_cu_vcounts;

typedef struct dtap_cu_vctx dtap_cu_vctx;

/* A context on device dev: one stream, a pinned host buffer of bytes (*host: fill it, then
 * run) and a device buffer of the same size. */
int dtap_cu_values_open(int dev, size_t bytes, dtap_cu_vctx **out, void **host, char *msg,
                        size_t msg_n);
/* Counts the n elements in the host buffer (n * p->width <= bytes) into *c (overwritten);
 * synchronous. */
int dtap_cu_values_run(dtap_cu_vctx *x, const dtap_cu_vplan *p, size_t n, dtap_cu_vcounts *c,
                       char *msg, size_t msg_n);
void dtap_cu_values_close(dtap_cu_vctx *x);

#ifdef __cplusplus
}
#endif
#endif
