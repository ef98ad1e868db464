/* dtaudit: the element math of dequantization, shared by the CPU path (dequant.c) and the
 * CUDA kernels (cuda/dequant.cu): both compile these functions, so the GPU's bytes and
 * statistics are the CPU's by construction (as convert_bits.h does for conversion).
 *
 * An output element is p = x * s: x the decoded code (zero point already subtracted),
 * s the scale, both exact f32; one f32 multiply rounded to nearest even (on the device
 * __fmul_rn, which nvcc never contracts into an FMA and which keeps subnormals unless
 * -ftz=true, which this build does not use; NaN results fixed by dqb_mul, not by the
 * hardware); then p rounded once to the target (or, for
 * a reference that returns a 16-bit dtype, first to that "mid" dtype and then cast) and
 * classified as dta_convert counts: NaN / inf from a non-finite operand, overflow of
 * finite operands (p beyond f32, or beyond the target), underflow (a nonzero product
 * lost to zero).
 *
 * A dqb_job describes the operands of a range of output elements, as dequant.c prepares
 * them (dtap_dq_job, dequant_dev.h):
 *   DQB_GRID    codes (one byte each, decoded through the 256-entry lut of f32 bits) times
 *               a scale broadcast from a block grid (per tensor, per row, groups, 2-D
 *               blocks, ragged edges): the decoded grid rows g0.. of the range.
 *   DQB_XS      x and s per element (the scheme modules' fill()).
 *   DQB_VALUES  the f32 result per element and a DTAP_DQF_* flag byte (a reference that
 *               is not one product, e.g. bitsandbytes int8).
 * dqb_elem computes element k of a job; the kernels run it per thread, the host tests run
 * it in a loop against dtap_dq_run.
 *
 * C11 and CUDA C++ compatible (no designated initialisers, explicit casts). */
#ifndef DTAUDIT_DEQUANT_BITS_H
#define DTAUDIT_DEQUANT_BITS_H

#include <stdint.h>

#include "convert_bits.h"

enum { DQB_GRID = 1, DQB_XS = 2, DQB_VALUES = 3 };

/* Flags of DQB_VALUES (the values of dequant_scheme.h's DTAP_DQF_*). */
enum { DQB_F_NONFINITE = 1, DQB_F_NONZERO = 2 };

typedef struct {
    int kind;                /* DQB_* */
    int to;                  /* dta_dtype: F32, F16, BF16 */
    int mid;                 /* dta_dtype BF16 / F16: rounded to it first; else none */
    int sat;                 /* DTA_OVERFLOW_SATURATE */
    uint64_t n;              /* elements of the range */
    /* DQB_GRID: element k is output element first + k of `mats` matrices of out x in;
     * its scale is scales[(g - g0) * gc + i / bn], g = mat * gr + r / bm the grid row. */
    uint64_t first, in, out, bm, bn, gr, gc, g0, nscales;
    /* set by dqb_grid_prepare: where `first` is (element i0 of row rr0 of matrix mat0),
     * and whether every index of the range fits 32-bit arithmetic (narrow) */
    uint64_t i0, rr0, mat0;
    int narrow;
    const uint8_t *codes;    /* n */
    const uint32_t *lut;     /* 256 f32 bits */
    const float *scales;     /* nscales */
    /* DQB_XS */
    const float *x, *s;      /* n each */
    /* DQB_VALUES */
    const uint32_t *v;       /* n f32 bits */
    const uint8_t *fl;       /* n DQB_F_* */
} dqb_job;

DTAB_FN int dqb_nonfinite(uint32_t b) { return (b & 0x7F800000u) == 0x7F800000u; }

DTAB_FN uint32_t dqb_fbits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
#endif
}

/* The f32 product of two f32 bit patterns, rounded to nearest even, as bits. A NaN
 * result is fixed here rather than left to the hardware, so that it is the same on every
 * CPU and on the GPU (a GPU multiply returns one canonical NaN): x86 SSE's rule, which the
 * CPU path followed before, made explicit: a NaN operand, x first, is returned quieted
 * (sign and payload kept); inf * 0 is the "indefinite" NaN 0xFFC00000. Any other product
 * is one IEEE multiply (nothing fused; subnormals kept: no FTZ/DAZ here, no -ftz=true in
 * the CUDA build). */
DTAB_FN uint32_t dqb_mul(uint32_t xb, uint32_t sb)
{
    uint32_t xa = xb & 0x7FFFFFFFu, sa = sb & 0x7FFFFFFFu;
    if (xa > 0x7F800000u)
        return xb | 0x00400000u;
    if (sa > 0x7F800000u)
        return sb | 0x00400000u;
    if ((xa == 0x7F800000u && sa == 0) || (sa == 0x7F800000u && xa == 0))
        return 0xFFC00000u;
#ifdef __CUDA_ARCH__
    return __float_as_uint(__fmul_rn(__uint_as_float(xb), __uint_as_float(sb)));
#else
    float x, s, p;
    uint32_t pb;
    memcpy(&x, &xb, 4);
    memcpy(&s, &sb, 4);
    p = x * s; /* one multiply: nothing to contract; FLT_EVAL_METHOD 0 (dequant.c checks) */
    memcpy(&pb, &p, 4);
    return pb;
#endif
}

/* The target's bits of the f32 result pb (and its class, DTAB_*): nonfin when an operand
 * is NaN or inf, nonzero when every operand is nonzero. */
DTAB_FN uint32_t dqb_finish(int to, int mid, int sat, uint32_t pb, int nonfin, int nonzero,
                            int *cls)
{
    uint32_t mx = to == DTA_F32 ? 0x7F7FFFFFu : to == DTA_BF16 ? 0x7F7Fu : 0x7BFFu;
    uint32_t inf = to == DTA_F32 ? 0x7F800000u : to == DTA_BF16 ? 0x7F80u : 0x7C00u;
    uint32_t sgn = to == DTA_F32 ? 0x80000000u : 0x8000u, r;
    if (nonfin) {
        /* a non-finite code or scale: the product is NaN or inf */
        int ignored;
        *cls = (pb & 0x7FFFFFFFu) > 0x7F800000u ? DTAB_NAN : DTAB_INF;
        return dtab_encode(to, pb, 0, &ignored);
    }
    if ((pb & 0x7FFFFFFFu) == 0x7F800000u) {
        /* finite operands, product beyond f32 */
        *cls = DTAB_OVF;
        return (pb & 0x80000000u ? sgn : 0) | (sat ? mx : inf);
    }
    if (mid == DTA_BF16 || mid == DTA_F16) {
        /* rounded to the reference's own dtype, then cast: an overflow in either step is
         * an overflow */
        int c2;
        uint32_t m = dtab_encode(mid, pb, sat, cls);
        r = dtab_encode(to, dtab_decode(mid, m), sat, &c2);
        if (*cls == DTAB_FINE)
            *cls = c2 == DTAB_INF ? DTAB_OVF : c2;
    } else {
        r = dtab_encode(to, pb, sat, cls);
    }
    if (*cls == DTAB_FINE && !(pb & 0x7FFFFFFFu) && nonzero)
        *cls = DTAB_UNF; /* the f32 product itself underflowed */
    return r;
}

/* One product x * s to the target (dequant.c's one_value). */
DTAB_FN uint32_t dqb_one(int to, int mid, int sat, uint32_t xb, uint32_t sb, int *cls)
{
    return dqb_finish(to, mid, sat, dqb_mul(xb, sb), dqb_nonfinite(sb) || dqb_nonfinite(xb),
                      (sb & 0x7FFFFFFFu) && (xb & 0x7FFFFFFFu), cls);
}

/* Completes a DQB_GRID job whose first, in, out, bm, bn, gr, gc and g0 are set. */
static inline void dqb_grid_prepare(dqb_job *j)
{
    uint64_t R0 = j->first / j->in;
    j->i0 = j->first % j->in;
    j->mat0 = R0 / j->out;
    j->rr0 = R0 % j->out;
    /* i0 + k < in + 2^32 - in, rr0 + (i0 + k) / in < out + 2^31 - out */
    j->narrow = j->in < (UINT64_C(1) << 31) && j->out < (UINT64_C(1) << 31) &&
                j->n < (UINT64_C(1) << 31) - j->in && j->bm && j->bn &&
                j->bm <= UINT32_MAX && j->bn <= UINT32_MAX;
}

/* The scale of element k of a DQB_GRID job, as f32 bits: element i of row r of matrix
 * mat reads grid entry (mat * gr + r / bm, i / bn). Narrow jobs (every real one: a run is
 * at most 2^20 elements) divide in 32 bits, from where the range starts; the others in
 * 64 bits from the absolute index. */
DTAB_FN uint32_t dqb_grid_scale(const dqb_job *j, uint64_t k)
{
    uint64_t mat, rb, cb;
    if (j->narrow) {
        uint32_t in = (uint32_t)j->in, out = (uint32_t)j->out;
        uint32_t t = (uint32_t)(j->i0 + k), dr = t / in, rr = (uint32_t)j->rr0 + dr;
        uint32_t i = t - dr * in, r = rr % out;
        mat = j->mat0 + rr / out;
        rb = r / (uint32_t)j->bm;
        cb = i / (uint32_t)j->bn;
    } else {
        uint64_t e = j->first + k, R = e / j->in;
        mat = R / j->out;
        rb = R % j->out / j->bm;
        cb = e % j->in / j->bn;
    }
    return dqb_fbits(j->scales[(mat * j->gr + rb - j->g0) * j->gc + cb]);
}

/* Element k (< j->n) of a job: the target's bits, and its class in *cls. */
DTAB_FN uint32_t dqb_elem(const dqb_job *j, uint64_t k, int *cls)
{
    switch (j->kind) {
    case DQB_GRID:
        return dqb_one(j->to, j->mid, j->sat, j->lut[j->codes[k]], dqb_grid_scale(j, k), cls);
    case DQB_XS:
        return dqb_one(j->to, j->mid, j->sat, dqb_fbits(j->x[k]), dqb_fbits(j->s[k]), cls);
    default:
        return dqb_finish(j->to, j->mid, j->sat, j->v[k], (j->fl[k] & DQB_F_NONFINITE) != 0,
                          (j->fl[k] & DQB_F_NONZERO) != 0, cls);
    }
}

#endif
