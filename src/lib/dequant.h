/* dtaudit (private): dequantization of quantized parameters to a plain dtype, for
 * `convert --dequantize` and for verify (docs/design.md "Dequantization").
 *
 * A dtap_dq is built over a whole checkpoint (every shard: a scale may live in another
 * shard than its codes) from its quant analysis (quant.h). It says, per tensor name,
 * whether the tensor is the codes of a parameter dtaudit dequantizes (written under the
 * weight's name and logical shape), a companion that the plain checkpoint drops (scales,
 * input/kv scales, markers), or an ordinary tensor; and it computes any range of a
 * parameter's plain values, reading codes and scales straight from the files (scales one
 * grid row at a time, never a whole tensor).
 *
 * Supported (exact, shared/quant.md 1.2-1.4, 2.4, 2.6, 3.2, 3.3, 4, 9.3): block FP8
 * (weight_scale_inv grid, F32/BF16/F16/E8M0 scales, ragged edge blocks, expert stacks),
 * per-tensor / per-row / group / block FP8 weight_scale (AutoFP8, FBGEMM, ModelOpt FP8,
 * compressed-tensors float-quantized) and symmetric compressed-tensors int-quantized int8.
 * value = RNE_target(f32(decode(code)) * f32(scale)). Anything else is refused. */
#ifndef DTAUDIT_DEQUANT_H
#define DTAUDIT_DEQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/convert.h"
#include "dtaudit/model.h"

typedef struct dtap_dq dtap_dq;

enum { DTAP_DQ_PLAIN = 0, DTAP_DQ_WEIGHT = 1, DTAP_DQ_DROP = 2 };

/* Plans the dequantization of w (kept borrowed: it must outlive the plan). *out is NULL
 * when w holds nothing quantized. A scheme or parameter dtaudit cannot dequantize gives
 * DTA_E_REFUSED with a message naming the scheme and a tensor. */
dta_status dtap_dq_open(const dta_model *w, dtap_dq **out, dta_error *err);
void dtap_dq_free(dtap_dq *d);

/* What the tensor named `name` becomes: DTAP_DQ_*; for DTAP_DQ_WEIGHT *param gets the
 * parameter's index. */
int dtap_dq_role(const dtap_dq *d, const char *name, size_t *param);
/* Logical shape and element count of parameter p (the codes' name stays its name). */
void dtap_dq_shape(const dtap_dq *d, size_t p, int *rank, const uint64_t **shape,
                   uint64_t *numel);
/* The name of parameter p's scale tensor. */
const char *dtap_dq_scale_name(const dtap_dq *d, size_t p);
/* The scheme's name ("fp8-block", ...) of parameter p. */
const char *dtap_dq_scheme(const dtap_dq *d, size_t p);
/* The name parameter p is written under: the codes' name, or for schemes whose codes
 * have their own name (gpt-oss "*_blocks", compressed-tensors "weight_packed") the plain
 * weight's name. */
const char *dtap_dq_out_name(const dtap_dq *d, size_t p);
/* Whether `name` is the renamed output of a parameter (*param gets it); false for a
 * parameter written under its codes' name. */
bool dtap_dq_find_out(const dtap_dq *d, const char *name, size_t *param);
/* The number of parameters, and the companion tensor names of every one (for index
 * rewriting): true when `name` is dropped. */
bool dtap_dq_dropped(const dtap_dq *d, const char *name);

/* Whether the safetensors __metadata__ entry `key` describes the quantization and is left
 * out of a dequantized output (ComfyUI's _quantization_metadata, shared/quant.md 15.5). */
bool dtap_dq_drops_metadata(const char *key);

/* Plain values [first, first + n) (C order) of parameter p in dtype to (F32, F16, BF16)
 * into dst (n elements); counts into *st as dta_convert does (overflow: finite codes and
 * scales whose product the target cannot hold; NaN/inf: a non-finite code or scale). n is
 * at most dtap_dq_max_elems(). */
dta_status dtap_dq_run(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                       dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                       dta_error *err);
size_t dtap_dq_max_elems(void);

#endif
