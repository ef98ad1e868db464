/* dtaudit: value statistics of tensor data (audit --values).
 *
 * dta_values_scan reads the data of every floating tensor of a model (the readers and the
 * chunked pread path convert uses) and counts, per tensor: NaN, +inf, -inf, zeros, and
 * against a target dtype (F32, F16 or BF16) the finite values convert would refuse
 * (overflow: the rounded result is not finite), the nonzero values that become +-0
 * (underflow) and the values that become subnormal. A value counts exactly as
 * dta_convert counts it: the thresholds are derived from convert_bits.h, the conversion's
 * own bit math, and the vector kernels are tested against it element by element.
 *
 * Ownership: a dta_values owns its arrays; it refers to tensors by their index in the
 * model it was built from. */
#ifndef DTAUDIT_VALUES_H
#define DTAUDIT_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/convert.h"
#include "dtaudit/dtype.h"
#include "dtaudit/error.h"
#include "dtaudit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* precision-underflow fires above this share of a tensor's nonzero values by default. */
#define DTA_UNDERFLOW_SHARE_DEFAULT 0.001

/* Fields may be added at the end: initialise with designated initialisers. */
typedef struct {
    dta_dtype target;     /* F32, F16 or BF16; DTA_DTYPE_NONE: each tensor's own dtype
                           * (no overflow or underflow then; subnormal counts its own) */
    unsigned threads;     /* worker threads; 0: the online CPUs, at most 8 */
    size_t chunk_bytes;   /* read size per worker (0: 1 MiB) */
    volatile int *cancel; /* polled between chunks (may be NULL): nonzero stops the scan
                           * with DTA_E_IO "cancelled" */
    dta_device device;    /* DTA_DEVICE_AUTO (0): the GPU when CUDA is built in, a device
                           * is usable and the data to count reaches
                           * DTA_CUDA_AUTO_MIN_BYTES (backend.h), else the CPU kernels;
                           * DTA_DEVICE_CPU; DTA_DEVICE_CUDA: the GPU, or DTA_E_DEVICE /
                           * DTA_E_UNSUPPORTED with the reason. Same counts everywhere. */
} dta_values_options;

/* What the scan saw in one tensor. */
typedef struct {
    const char *skipped;  /* static reason when the data was not scanned, else NULL */
    dta_dtype target;     /* what overflow/underflow/subnormal refer to (the tensor's own
                           * dtype when no target applies) */
    uint64_t elements;
    uint64_t nan, pos_inf, neg_inf;
    uint64_t zero;        /* +-0 in the source */
    uint64_t overflow;    /* finite values that round to +-inf in target */
    uint64_t underflow;   /* nonzero finite values that round to +-0 in target */
    uint64_t subnormal;   /* finite values whose result in target is subnormal */
    double max_abs;       /* largest finite |x| (0 when there is no finite value) */
    double min_nonzero_abs; /* smallest finite nonzero |x| (0 when none) */
    const char *dequantized; /* a quantized parameter's codes: its scheme ("fp8-block", ...,
                              * static), and every count above is of its dequantized values
                              * (elements: its logical count); NULL for a plain tensor */
} dta_values_tensor;

typedef struct dta_values {
    dta_dtype target;            /* the option given */
    size_t ntensors;             /* the model's tensor count */
    dta_values_tensor *tensors;  /* indexed like model->tensors */
    size_t scanned;              /* tensors whose data was scanned */
    uint64_t bytes_read;
    unsigned threads;            /* workers used */
    const char *backend;         /* "avx2", "scalar" or "cuda" (static) */
} dta_values;

/* Finite nonzero values of a scanned tensor: elements - nan - inf - zero. */
uint64_t dta_values_nonzero(const dta_values_tensor *v);

/* Scans m's tensor data. Errors name the file and the tensor ("model.safetensors: tensor
 * 'w': file shrank while being read"); nothing is returned on error. Tensors that are not
 * scanned get a reason: not a floating dtype dtaudit converts, meta (no data), a quantized
 * parameter dtaudit does not dequantize, a companion (scale, ...) of one it does.
 * Quantized parameters that convert --dequantize dequantizes are counted on their
 * dequantized values, exactly as that conversion counts them (overflow: a value it
 * refuses); without a target, against the dtype they dequantize to. */
dta_status dta_values_scan(const dta_model *m, const dta_values_options *o, dta_values **out,
                           dta_error *err);
void dta_values_free(dta_values *v);

/* Forces the portable scalar kernels (tests compare them with the vector ones). */
void dta_values_force_scalar(bool on);
/* "avx2" or "scalar": the kernels dta_values_scan uses now. */
const char *dta_values_backend(void);

/* ---- kernels (values_scan.c), public for the tests ------------------------------------ */

/* Counts over raw little-endian elements of one source dtype against one target. */
typedef struct {
    uint64_t nan, pos_inf, neg_inf, zero, overflow, underflow, subnormal;
    uint64_t max_abs_bits;    /* |x| bits (source encoding) of the largest finite value */
    uint64_t min_abs_bits;    /* ... of the smallest finite nonzero one, UINT64_MAX: none */
} dta_values_counts;

/* Per (source, target) pair: the thresholds on |x| bits that classify an element. */
typedef struct {
    dta_dtype from, to;
    unsigned width;          /* bytes per element: 1, 2, 4 or 8 */
    uint64_t inf;            /* |x| bits of inf (NaN above; 8-bit types use lut) */
    uint64_t ovf_lo;         /* |x| in [ovf_lo, inf): overflow (ovf_lo == inf: none) */
    uint64_t unf_hi;         /* |x| in [1, unf_hi): underflow (1: none) */
    uint64_t sub_hi;         /* |x| in [unf_hi, sub_hi): subnormal in the target */
    unsigned char lut[256];  /* 8-bit sources: class per code */
} dta_values_plan;

/* false when from is not a dtype the scan reads (dta_convert_supported) or to is not F32,
 * F16, BF16 (or from itself). */
bool dta_values_plan_make(dta_dtype from, dta_dtype to, dta_values_plan *p);
/* Adds what n elements at src hold to *c (initialise c with dta_values_counts_init). */
void dta_values_count(const dta_values_plan *p, const void *src, size_t n, dta_values_counts *c);
void dta_values_counts_init(dta_values_counts *c);
/* The reference: one element classified through convert_bits.h (no thresholds). */
void dta_values_count_reference(const dta_values_plan *p, const void *src, size_t n,
                                dta_values_counts *c);
/* The same counts on the GPU (the CUDA backend, backend_cuda.c + cuda/values.cu), added
 * to *c like dta_values_count: identical for every input. DTA_E_UNSUPPORTED "built without
 * CUDA", DTA_E_DEVICE when there is no usable device or the runtime fails (the message
 * names the CUDA call). Thread-safe (one cached device context under a mutex). */
dta_status dta_values_count_cuda(const dta_values_plan *p, const void *src, size_t n,
                                 dta_values_counts *c, dta_error *err);
/* |x| bits of the source dtype as a double (for max_abs / min_nonzero_abs). */
double dta_values_abs_to_double(dta_dtype from, uint64_t abs_bits);

#ifdef __cplusplus
}
#endif
#endif
