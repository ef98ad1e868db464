/* dtaudit (private): the interface between dequant.c and the per-scheme dequantization
 * modules (dequant_fp4.c, dequant_pack.c, dequant_comfy.c, ...).
 *
 * dequant.c owns the plan over the checkpoint, the reading of tensor bytes and the element
 * math every scheme shares: an output element is p = x * s, one f32 multiply rounded to
 * nearest even, then rounded once to the target and classified (NaN / inf from a
 * non-finite operand, overflow of finite operands, a nonzero product lost to zero) exactly
 * as the built-in FP8 path does. A scheme module only says, per output element, what x
 * (the decoded code, with any zero point already subtracted, exact in f32) and s (the
 * scale, as the reference computes it in f32) are.
 *
 * A module is one dtap_dq_ops registered in the scheme table (dequant_schemes.c, one line
 * per module). plan() checks a parameter and refuses what it cannot dequantize exactly
 * (DTA_E_REFUSED, naming the parameter and what is unsupported); fill() produces x and s
 * for output elements [first, first + n) in C order of the output shape. A module reads
 * the checkpoint only through the dtap_dq_src it is given (dequant_src.c), never through
 * dequant.c: the calls go one way, dequant.c -> table -> modules -> dequant_src.c. */
#ifndef DTAUDIT_DEQUANT_SCHEME_H
#define DTAUDIT_DEQUANT_SCHEME_H

#include <stddef.h>
#include <stdint.h>

#include "dequant.h"
#include "dequant_unpack.h"
#include "dtaudit/quant.h"

/* Small helpers every scheme module uses. */
static inline uint64_t dtap_cdiv(uint64_t a, uint64_t b) { return b ? a / b + (a % b != 0) : 0; }

/* An f32 and its bits: dqb_bitsf / dqb_fbits (dequant_unpack.h, shared with the kernels). */

/* The checkpoint's tensors as the modules read them (dequant_src.c). */
typedef struct dtap_dq_src dtap_dq_src;

/* Optional, filled by plan() for the device path: the stored tensors and the layout of a
 * packed parameter, so that dequant_packed.c can send its stored bytes to the GPU as they
 * are and the kernel decodes them with dequant_unpack.h, the functions fill() / values()
 * call. kind 0: none (the device then gets fill()'s x and s). Tensor indices t[]: codes,
 * scales, zeros (bitsandbytes: nested absmax), g_idx (bitsandbytes: nested map); SIZE_MAX
 * when absent. The other fields as the module's own state names them:
 *   DQP_MXFP4   mats, out, in (nb * 32), cols = nb
 *   DQP_FP4     out, in, cols (packed bytes per row), groups (scales per row), group (16
 *               or 32), gbits (the global scale), flags DQP_F_DIVIDE / DQP_F_E8M0
 *   DQP_BNB4    in = numel, group = blocksize, nested_bs, gbits = offset, lut, DQP_F_NESTED
 *   DQP_BNB8    out, in
 *   DQP_GPTQ/AWQ bits, out, in, groups (G), group (group size), rows (packed rows), cols
 *               (packed columns), zcols, DQP_F_V1, DQP_F_GIDX
 *   DQP_CTPACK  bits, mats, out, in, cols (words per row), groups, group, zrows,
 *               DQP_F_PER_TENSOR, DQP_F_GIDX */
typedef struct dtap_dq_packed {
    int kind;                     /* DQP_* */
    int flags;                    /* DQP_F_* */
    unsigned bits;
    size_t t[4];
    uint64_t mats, out, in, cols, rows, zcols, zrows, groups, group, nested_bs;
    uint32_t gbits;
    uint32_t lut[16];
} dtap_dq_packed;

/* What plan() fills in for one parameter. */
typedef struct dtap_dq_plan {
    size_t scale;                 /* the companion whose absence in an output marks the
                                   * parameter as dequantized (verify), a tensor index */
    char *oname;                  /* malloc'd output tensor name, NULL: the codes' name */
    int rank;                     /* the output (logical) shape */
    uint64_t shape[DTA_MAX_RANK];
    uint64_t numel;
    void *state;                  /* the module's, released by ops->release */
    dta_dtype mid;                /* DTA_BOOL (0, the default): none; DTA_BF16 / DTA_F16:
                                   * the reference returns p rounded to this dtype, which
                                   * is then cast to the target (bitsandbytes 4-bit) */
    /* Optional, set by plan() and used instead of ops->fill: for a reference that is not
     * one product x * s (bitsandbytes int8 rounds twice): the f32 results (bits) of output
     * elements [first, first + n) and a DTAP_DQF_* flag byte per element. */
    dta_status (*values)(dtap_dq_src *d, const struct dtap_dq_plan *p, void **cache,
                         uint64_t first, size_t n, uint32_t *v, uint8_t *fl, dta_error *err);
    /* Optional, set by plan() and used instead of ops->fill / values: the parameter is
     * float8 codes (its codes tensor, F8_E4M3 / F8_E5M2, in the output's shape and order)
     * times a scale broadcast from a grid, which dequant.c computes on its block-FP8 path
     * (x = the decoded code, s = the scale tensor `scale`'s entry, F32 / BF16 / F16):
     * the codes seen as rows of grid_in elements, one scale entry per block of grid_bm
     * rows x grid_bn elements, row-major. grid_in 0: not a grid. */
    uint64_t grid_in, grid_bm, grid_bn;
    dtap_dq_packed packed;        /* optional, above */
} dtap_dq_plan;

/* Flags per element of ops->values (fl): */
enum {
    DTAP_DQF_NONFINITE = 1, /* an operand (code, scale) is NaN or inf */
    DTAP_DQF_NONZERO = 2    /* every operand is nonzero: a zero result is an underflow */
};

typedef struct dtap_dq_ops {
    dta_quant_scheme scheme;
    dta_status (*plan)(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                       dtap_dq_plan *out, dta_error *err);
    /* x and s (n floats each, n <= dtap_dq_max_elems()) of output elements
     * [first, first + n). *cache is the module's per-run scratch, one block: dequant.c
     * frees it with free() when fill() is next called for another parameter, and at the
     * end. */
    dta_status (*fill)(dtap_dq_src *d, const dtap_dq_plan *p, void **cache, uint64_t first,
                       size_t n, float *x, float *s, dta_error *err);
    void (*release)(void *state);
} dtap_dq_ops;

/* Registered modules (dequant_schemes.c lists them). */
extern const dtap_dq_ops dtap_dq_mxfp4_ops;         /* dequant_fp4.c */
extern const dtap_dq_ops dtap_dq_modelopt_nvfp4_ops; /* dequant_fp4.c */
extern const dtap_dq_ops dtap_dq_ct_nvfp4_ops;      /* dequant_fp4.c */
extern const dtap_dq_ops dtap_dq_ct_mxfp4_ops;      /* dequant_fp4.c */
extern const dtap_dq_ops dtap_dq_bnb4_ops;          /* dequant_bnb.c */
extern const dtap_dq_ops dtap_dq_bnb8_ops;          /* dequant_bnb.c */
extern const dtap_dq_ops dtap_dq_gptq_ops;          /* dequant_gptq.c */
extern const dtap_dq_ops dtap_dq_awq_ops;           /* dequant_gptq.c */
extern const dtap_dq_ops dtap_dq_ct_pack_ops;       /* dequant_pack.c */
extern const dtap_dq_ops dtap_dq_comfy_fp8_ops;     /* dequant_comfy.c */
extern const dtap_dq_ops dtap_dq_comfy_quant_ops;   /* dequant_comfy.c */

/* The registry (dequant_schemes.c): the module of scheme s, NULL when none; the modules
 * in table order (i < dtap_dq_nops()). */
const dtap_dq_ops *dtap_dq_find_ops(dta_quant_scheme s);
size_t dtap_dq_nops(void);
const dtap_dq_ops *dtap_dq_ops_at(size_t i);

/* The checkpoint side (dequant_src.c). A dtap_dq_src reads tensor data of w (borrowed),
 * one descriptor per file opened on first use. */
dta_status dtap_dq_src_new(const dta_model *w, dtap_dq_src **out, dta_error *err);
void dtap_dq_src_free(dtap_dq_src *s);
const dta_model *dtap_dq_model(const dtap_dq_src *d);
/* Bytes [off, off + n) of tensor ti's data (a plain stored tensor). */
dta_status dtap_dq_read(dtap_dq_src *d, size_t ti, uint64_t off, size_t n, void *buf,
                        dta_error *err);
/* The same for a tensor of the model given by pointer. */
dta_status dtap_dq_read_tensor(dtap_dq_src *d, const dta_tensor *t, uint64_t off, size_t n,
                               void *buf, dta_error *err);
/* The companion of role r of parameter p, SIZE_MAX when absent. */
size_t dtap_dq_comp(const dta_quant *q, const dta_quant_param *p, dta_quant_role r);
/* Whether tensor ti is stored plainly (safetensors-like: contiguous, with data). */
bool dtap_dq_stored_plain(const dtap_dq_src *d, size_t ti);

#endif
