/* dtaudit: element conversion (bit-exact with PyTorch CPU Tensor.to) and verification.
 *
 * The kernels work on raw little-endian buffers, any alignment. Results are identical to
 * torch's CPU `tensor.to(dtype)` for every non-NaN value (round to nearest even,
 * subnormals kept, float64 rounded via float32 like torch); a NaN stays a quiet NaN
 * (docs/formats.md 5). The scalar path is the reference; vector paths (F16C/AVX2, chosen at
 * run time) give identical bytes. */
#ifndef DTAUDIT_CONVERT_H
#define DTAUDIT_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/dtype.h"
#include "dtaudit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DTA_OVERFLOW_ERROR = 0, /* count overflows; the caller refuses to write (values as INF) */
    DTA_OVERFLOW_INF,       /* finite values beyond the target range become +-inf (torch) */
    DTA_OVERFLOW_SATURATE   /* ... become +-max finite of the target */
} dta_overflow_mode;

/* What one conversion pass saw in the source. */
typedef struct {
    uint64_t elements;
    uint64_t overflow;  /* finite source values whose rounded result is not finite */
    uint64_t nan;       /* NaN in the source (stays NaN) */
    uint64_t inf;       /* +-inf in the source (stays inf; NaN for e4m3fn, which has no inf) */
    uint64_t underflow; /* nonzero finite source values that became +-0 */
} dta_convert_stats;

/* True when `from -> to` is a conversion dtaudit performs: from F64, F32, F16, BF16,
 * F8_E4M3, F8_E5M2, F8_E4M3FNUZ, F8_E5M2FNUZ, F8_E8M0 to F32, F16 or BF16, and any
 * dtype to itself (a copy). */
bool dta_convert_supported(dta_dtype from, dta_dtype to);

/* Converts n elements from src (dtype from) to dst (dtype to); the buffers must not
 * overlap. Adds what it saw to *stats (may be NULL). With DTA_OVERFLOW_ERROR the output
 * holds the DTA_OVERFLOW_INF result: callers check stats->overflow before using it. */
dta_status dta_convert(dta_dtype from, dta_dtype to, const void *src, void *dst, size_t n,
                       dta_overflow_mode mode, dta_convert_stats *stats, dta_error *err);

/* Forces the portable scalar path (tests compare it with the vector path). */
void dta_convert_force_scalar(bool on);
/* "avx2+f16c" or "scalar": the path dta_convert uses now. */
const char *dta_convert_backend(void);

/* Scalar references on raw bits (docs/formats.md 5). */
uint16_t dta_f32_to_bf16_bits(uint32_t f);
uint16_t dta_f32_to_f16_bits(uint32_t f);
uint32_t dta_bf16_to_f32_bits(uint16_t h);
uint32_t dta_f16_to_f32_bits(uint16_t h);
uint32_t dta_f64_to_f32_bits(uint64_t d); /* round to nearest even, like a C cast */

/* Verification of a converted buffer against its source. */
typedef struct {
    uint64_t elements;
    uint64_t mismatches;       /* elements whose bytes differ from dta_convert's output
                                * (any NaN matches any NaN) */
    uint64_t nonfinite_added;  /* NaN/inf in the result where the source was finite */
    double max_abs_err;        /* |result - source| over finite pairs */
    double max_rel_err;        /* |result - source| / |source| over finite, nonzero sources */
    uint64_t first_mismatch;   /* element index, valid when mismatches > 0 */
} dta_verify_stats;

/* Compares n elements of conv (dtype to) with the conversion of src (dtype from) under
 * mode, accumulating into *stats. */
dta_status dta_verify(dta_dtype from, dta_dtype to, const void *src, const void *conv, size_t n,
                      dta_overflow_mode mode, dta_verify_stats *stats, dta_error *err);

/* ---- whole checkpoints (convert.c) ------------------------------------------------- */

typedef enum { DTA_OUT_SAME = 0, DTA_OUT_SAFETENSORS, DTA_OUT_TORCH } dta_out_format;

/* Where conversions and verification run: auto = CUDA when built in, a device is usable
 * and the job is large enough (backend.h); cpu; cuda (callers check dta_cuda_available
 * first). Both paths give identical bytes. */
typedef enum { DTA_DEVICE_AUTO = 0, DTA_DEVICE_CPU, DTA_DEVICE_CUDA } dta_device;

typedef struct {
    dta_dtype to;                /* F32, F16 or BF16 */
    const char *const *only;     /* globs (tensor or module names); none: every tensor */
    size_t nonly;
    const char *const *keep;     /* globs of tensors that keep their dtype */
    size_t nkeep;
    bool optimizer;              /* also convert roots named optimizer* */
    dta_overflow_mode overflow;
    dta_out_format out_format;
    dta_device device;
    bool force;                  /* replace an existing output */
    bool verify;                 /* verify the written data before it is renamed into place */
    /* Quantized input (quant.h) is refused (DTA_E_REFUSED, nothing written) unless this is
     * set: then only the unquantized floating tensors are converted, every quantized
     * parameter and its companions are copied byte-identical, and config.json keeps its
     * quantization_config (only torch_dtype / dtype change). */
    bool keep_quantized;
    size_t chunk_bytes;          /* streaming buffer size (0: 4 MiB) */
    /* called between chunks (may be NULL): bytes done and total to write */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* polled between chunks (may be NULL): nonzero cancels the job; the temporary output
     * is removed and DTA_E_IO ("cancelled") returned. A signal handler may set it. */
    volatile int *cancel;
    /* --to auto: each root to its compute dtype (its dominant floating dtype; a root whose
     * dominant dtype is not F32/F16/BF16 is left as it is); `to` is then ignored. */
    bool to_auto;
    /* --keep-intended: tensors this intended-precision table matches (intended.h) keep
     * their dtype (NULL: none kept). */
    const struct dta_intended *keep_intended;
    /* dequantize quantized parameters (quant.h) to `to`: each becomes one plain tensor under
     * the weight's name and logical shape, its companions dropped; config.json loses
     * quantization_config, quantization sidecars are not copied, the index is rebuilt.
     * Schemes dtaudit cannot dequantize are refused (DTA_E_REFUSED), nothing written. */
    bool dequantize;
    /* Directory or sharded input: shards converted at once, one thread each with its own
     * chunk buffers (memory bounded per job). 0: the number of online CPUs; 1: one after
     * the other. Capped at the number of shards; CUDA conversions use one. The output is
     * the same whatever the number; the first failure stops the others. */
    unsigned jobs;
    /* Scale-out (docs/design.md "Parts"): nparts > 0 converts only the part-th (1-based)
     * of nparts disjoint sets of shards into a staging directory beside out (shards
     * assigned by size, largest first, to the least-loaded part; ties by name and part
     * number), and the part that finds every shard staged publishes out. Any order of
     * completion, and a rerun of an interrupted part, give the same bytes as nparts 0.
     * Needs a directory or sharded input; force is refused. */
    unsigned part, nparts;
} dta_convert_options;

/* A tensor whose values the target cannot hold (overflow), or that holds NaN/Inf. */
typedef struct {
    char *name;
    uint64_t overflow, nan, inf;
} dta_convert_issue;

typedef struct {
    bool refused;                /* overflow with DTA_OVERFLOW_ERROR: nothing was written */
    size_t tensors, tensors_converted, storages_converted;
    uint64_t bytes_in, bytes_out; /* tensor data read and written */
    dta_convert_stats stats;     /* over every converted element */
    dta_convert_issue *issues;   /* tensors with overflow, NaN or Inf in the source */
    size_t nissues;
    dta_verify_stats verify;     /* when options.verify */
    char *written;               /* the output path (file or directory) */
    char *out_format;            /* "safetensors", "torch-zip", "directory" */
    /* directory input: what was copied as it is, and what was not */
    size_t files_copied;         /* files and links copied (not converted) */
    char **left_out;             /* "NAME (why)" of each entry not in the output */
    size_t nleft_out;
    char **copied_weights;       /* weight-like files copied without conversion */
    size_t ncopied_weights;
    size_t kept_intended;        /* floating tensors kept as intended islands (--keep-intended) */
    dta_dtype auto_to;           /* --to auto: config.json's new dtype (the first root's), else NONE */
    size_t params_dequantized;   /* options.dequantize: quantized parameters made plain */
    size_t companions_dropped;   /* ... and the companion tensors left out */
    /* sharded input: shards in it, converted by this run, and threads used (options.jobs) */
    size_t shards, shards_converted;
    unsigned jobs;
    /* options.nparts: shards staged so far by every part, and whether this run published
     * out (written is then set; otherwise NULL and the other parts' runs will) */
    size_t shards_staged;
    bool published;
} dta_convert_result;

/* Converts the checkpoint at in (file, index or directory) to out, atomically: the data
 * goes to a temporary name next to out, is fsynced and renamed; on any error, refusal or
 * cancellation nothing is left behind and in is never modified. An overflow refusal
 * returns DTA_OK with res->refused set; views of one storage selected only in part give
 * DTA_E_REFUSED. */
dta_status dta_convert_checkpoint(const char *in, const char *out, const dta_convert_options *o,
                                  dta_convert_result **res, dta_error *err);
void dta_convert_result_free(dta_convert_result *r);

/* Verifies that every tensor of converted equals the conversion of the same-named tensor
 * of source (dtype-aware; same dtype: identical bytes). Tensors only in one of them are
 * reported through *missing / *extra counts. */
typedef struct {
    dta_verify_stats total;
    size_t tensors, tensors_bad, missing, extra, shape_changed;
    char *first_bad;             /* name of the first mismatching tensor, or NULL */
    char *first_missing;         /* name of the first source tensor missing, or NULL */
} dta_verify_result;

dta_status dta_verify_checkpoints(const char *source, const char *converted,
                                  dta_overflow_mode mode, dta_device device,
                                  dta_verify_result *res, dta_error *err);

#ifdef __cplusplus
}
#endif
#endif
