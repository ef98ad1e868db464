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
 *   DQB_PACKED  a packed scheme's stored bytes (codes, scales, zero points, absmax, g_idx)
 *               for the range, as dequant_packed.c gathers them for the device: dqp_xs /
 *               dqp_values unpack and decode element k with dequant_unpack.h's functions,
 *               the ones the CPU modules' fill() / values() call (MXFP4, NVFP4,
 *               bitsandbytes, GPTQ, AWQ, pack-quantized, ComfyUI comfy_quant nvfp4 /
 *               mxfp8 / int8_tensorwise).
 * dqb_elem computes element k of a job; the kernels run it per thread, the host tests run
 * it in a loop against dtap_dq_run.
 *
 * C11 and CUDA C++ compatible (no designated initialisers, explicit casts). */
#ifndef DTAUDIT_DEQUANT_BITS_H
#define DTAUDIT_DEQUANT_BITS_H

#include <stdint.h>

#include "convert_bits.h"
#include "dequant_unpack.h"

enum { DQB_GRID = 1, DQB_XS = 2, DQB_VALUES = 3, DQB_PACKED = 4 };

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
    /* DQB_PACKED: a packed scheme's stored bytes for the range (raw[0..3], gathered by
     * dequant_packed.c), decoded per element by dqp_xs / dqp_values with the functions of
     * dequant_unpack.h. Element k is output element e = first + k. Per family (pk):
     *  MXFP4   raw0 codes [R][wid0 blocks][16] and raw1 E8M0 scales [R][wid0] of rows
     *          o = lo .. lo + R - 1 and blocks base0 .. of one matrix; rem0 = e's index in
     *          that matrix for k = 0 (i = rem / pout, o = rem % pout).
     *  FP4     raw0 code bytes from byte base0 (row r at r * cols), raw1 scale bytes
     *          from entry base1 (row r at r * ng, one per grp elements); gbits the global.
     *          DQP_F_STACK (ModelOpt expert stacks): raw0 codes [E][cols][pout] from byte
     *          base0, raw1 block scales [E][ng][pout] from base1, raw2 the F32 global
     *          scales from expert base2 (one for all unless DQP_F_PER_EXPERT).
     *  BNB4    raw0 code bytes from base0; raw1 absmax (sdt, or U8 when DQP_F_NESTED) from
     *          block base1 (blocks of grp); raw2 nested absmax F32 from base2 (blocks of
     *          ngrp blocks), raw3 the nested map F32 [256], gbits the offset; lut16 codes.
     *  BNB8    raw0 the I8 codes of the range, raw1 SCB (sdt) from row base1.
     *  GPTQ    raw0 qweight words [rows][wid0] of packed rows lo .. and columns base0 ..,
 *          raw1 scales (sdt)
     *  AWQ     [ng][wid1] of columns base1 .., raw2 qzeros words [ng][wid2] of columns
     *          base2 .., raw3 g_idx (gdt, I32 / I64, checked) from base3 when DQP_F_GIDX,
     *          else group i / grp. AWQ's word columns hold 8 outputs.
     *  CTPACK  raw0 code words from word base0 (row R at R * cols), raw1 scales (sdt)
     *          from entry base1 (row R at R * ng), raw2 zero-point words from base2
     *          (I32 [(E,) zrows, ng]) when nraw[2], raw3 g_idx I32 from base3 when
     *          DQP_F_GIDX.
     *  CQ_*    ComfyUI comfy_quant, rows of pin columns: raw0 code bytes from byte base0
     *          (row r at r * cols); NVFP4 / MXFP8: raw1 the 128x4-swizzled block scales
     *          (one per grp columns, ng 4-block tiles per row) from byte base1 (whole
     *          128-row bands), gbits nvfp4's global scale; INT8: raw1 the row scales
     *          (sdt) from row base1 when DQP_F_PER_ROW, else gbits the one scale. */
    int pk, pf, sdt, gdt;    /* DQP_*, DQP_F_*, dtypes of raw1 and raw3 */
    unsigned bits;
    uint64_t pin, pout, cols, ng, grp, ngrp, zrows, lo, rem0;
    uint64_t base[4], wid[4];
    uint32_t gbits;
    uint32_t lut16[16];
    const uint8_t *raw[4];
    uint64_t nraw[4];        /* bytes of raw[k] (what goes to the device) */
} dqb_job;

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

/* g_idx entry k of raw (I32 or I64, checked on the host: in [0, groups)). */
DTAB_FN uint64_t dqp_gidx(int gdt, const uint8_t *raw, uint64_t k)
{
    return dqp_le32(raw + (gdt == DTA_I64 ? 8 : 4) * k);
}

/* x and s (f32 bits) of element k of a DQB_PACKED job (every family but BNB8). */
DTAB_FN void dqp_xs(const dqb_job *j, uint64_t k, uint32_t *xb, uint32_t *sb)
{
    const uint8_t *r0 = j->raw[0], *r1 = j->raw[1], *r2 = j->raw[2], *r3 = j->raw[3];
    uint64_t e = j->first + k;
    switch (j->pk) {
    case DQP_MXFP4: {
        uint64_t rem = j->rem0 + k, i = rem / j->pout, row = rem % j->pout - j->lo;
        uint64_t at = row * j->wid[0] + (i / 32 - j->base[0]);
        *xb = dqp_e2m1(dqp_nib_lo_first(r0[at * 16 + (i % 32) / 2], i));
        *sb = dqp_e8m0(r1[at], 0);
        return;
    }
    case DQP_FP4: {
        if (j->pf & DQP_F_STACK) {
            /* expert mat, input i, output o of [E, in, out]; codes row i / 2 (even i in
             * the low nibble), block-scale row i / 16, both [.., out] */
            uint64_t M = j->pin * j->pout, mat = e / M, rem = e % M;
            uint64_t i = rem / j->pout, o = rem % j->pout;
            uint32_t g = dqp_load(DTA_F32, r2, j->pf & DQP_F_PER_EXPERT ? mat - j->base[2] : 0);
            *xb = dqp_e2m1(dqp_nib_lo_first(r0[(mat * j->cols + i / 2) * j->pout + o - j->base[0]],
                                            i));
            *sb = dqp_nvfp4_scale(r1[(mat * j->ng + i / 16) * j->pout + o - j->base[1]], g, 0);
            return;
        }
        uint64_t r = e / j->pin, i = e % j->pin;
        uint8_t u = r1[r * j->ng + i / j->grp - j->base[1]];
        *xb = dqp_e2m1(dqp_nib_lo_first(r0[r * j->cols + i / 2 - j->base[0]], i));
        *sb = j->pf & DQP_F_E8M0 ? dqp_e8m0(u, 1)
                                 : dqp_nvfp4_scale(u, j->gbits, (j->pf & DQP_F_DIVIDE) != 0);
        return;
    }
    case DQP_BNB4: {
        uint64_t b = e / j->grp;
        *xb = j->lut16[dqp_nib_hi_first(r0[e / 2 - j->base[0]], e)];
        if (j->pf & DQP_F_NESTED)
            *sb = dqp_bnb_absmax(dqp_load(DTA_F32, r3, r1[b - j->base[1]]),
                                 dqp_load(DTA_F32, r2, b / j->ngrp - j->base[2]), j->gbits);
        else
            *sb = dqp_load(j->sdt, r1, b - j->base[1]);
        return;
    }
    case DQP_GPTQ:
    case DQP_AWQ: {
        uint64_t o = e / j->pin, i = e % j->pin;
        uint64_t g = j->pf & DQP_F_GIDX ? dqp_gidx(j->gdt, r3, i - j->base[3]) : i / j->grp;
        unsigned b = j->bits, q, z;
        if (j->pk == DQP_AWQ) {
            q = dqp_awq_nib(dqp_le32(r0 + ((i - j->lo) * j->wid[0] + o / 8 - j->base[0]) * 4),
                            o);
            z = dqp_awq_nib(dqp_le32(r2 + (g * j->wid[2] + o / 8 - j->base[2]) * 4), o);
        } else {
            /* column o's stream along the input; the zero row's along the output */
            uint64_t pos = i * b, w = pos / 32 - j->lo, c = o - j->base[0];
            unsigned sh = (unsigned)(pos % 32);
            uint32_t hi = sh + b > 32 ? dqp_le32(r0 + ((w + 1) * j->wid[0] + c) * 4) : 0;
            q = dqp_bits2(dqp_le32(r0 + (w * j->wid[0] + c) * 4), hi, sh, b);
            uint64_t zp = o * b - j->base[2] * 32, zw = zp / 32;
            unsigned zs = (unsigned)(zp % 32);
            const uint8_t *zr = r2 + (g * j->wid[2] + zw) * 4;
            z = dqp_gptq_zero(dqp_bits2(dqp_le32(zr), zs + b > 32 ? dqp_le32(zr + 4) : 0, zs, b),
                              (j->pf & DQP_F_V1) != 0, b);
        }
        *xb = dqp_qz((int)q, (int)z);
        *sb = dqp_load(j->sdt, r1, g * j->wid[1] + o - j->base[1]);
        return;
    }
    case DQP_CQ_NVFP4:
    case DQP_CQ_MXFP8:
    case DQP_CQ_INT8: {
        /* row r, column i; the block scale at its swizzled place in the bands from byte
         * base1, or int8's scale (of row r from base1, or gbits) */
        uint64_t r = e / j->pin, i = e % j->pin;
        *xb = dqp_cq_code(j->pk, r0[r * j->cols + dqp_cq_byte(j->pk, i) - j->base[0]], i);
        if (j->pk != DQP_CQ_INT8)
            *sb = dqp_cq_block_scale(j->pk, r1[dqp_swizzled(r, i / j->grp, j->ng) - j->base[1]],
                                     j->gbits);
        else
            *sb = j->pf & DQP_F_PER_ROW ? dqp_load(j->sdt, r1, r - j->base[1]) : j->gbits;
        return;
    }
    default: { /* DQP_CTPACK */
        uint64_t R = e / j->pin, i = e % j->pin, bit = i * j->bits;
        unsigned b = j->bits, mask = (1u << b) - 1, off = 1u << (b - 1);
        int q = (int)((dqp_le32(r0 + (R * j->cols + bit / 32 - j->base[0]) * 4) >> (bit % 32)) &
                      mask) - (int)off, z = 0;
        uint64_t g = j->pf & DQP_F_PER_TENSOR ? 0
                     : j->pf & DQP_F_GIDX     ? dqp_gidx(DTA_I32, r3, i - j->base[3])
                                              : i / j->grp;
        if (j->nraw[2]) {
            uint64_t r = R % j->pout, zbit = r * b;
            uint64_t zw = ((R / j->pout) * j->zrows + zbit / 32) * j->ng + g - j->base[2];
            z = (int)((dqp_le32(r2 + zw * 4) >> (zbit % 32)) & mask) - (int)off;
        }
        *xb = dqp_qz(q, z);
        *sb = dqp_load(j->sdt, r1, j->pf & DQP_F_PER_TENSOR ? 0 : R * j->ng + g - j->base[1]);
        return;
    }
    }
}

/* The f32 result and DQB_F_* flags of element k of a BNB8 job. */
DTAB_FN uint32_t dqp_values(const dqb_job *j, uint64_t k, uint8_t *fl)
{
    uint64_t e = j->first + k;
    return dqp_bnb8((int)(int8_t)j->raw[0][k],
                    dqp_load(j->sdt, j->raw[1], e / j->pin - j->base[1]), fl);
}

/* Element k of a DQB_PACKED job (the CUDA back end runs it in its own kernel, so that the
 * grid kernel keeps its few registers). */
DTAB_FN uint32_t dqb_elem_packed(const dqb_job *j, uint64_t k, int *cls)
{
    uint32_t xb, sb;
    if (j->pk == DQP_BNB8) {
        uint8_t fl;
        uint32_t v = dqp_values(j, k, &fl);
        return dqb_finish(j->to, j->mid, j->sat, v, (fl & DQB_F_NONFINITE) != 0,
                          (fl & DQB_F_NONZERO) != 0, cls);
    }
    dqp_xs(j, k, &xb, &sb);
    return dqb_one(j->to, j->mid, j->sat, xb, sb, cls);
}

/* Element k of a DQB_GRID, DQB_XS or DQB_VALUES job. */
DTAB_FN uint32_t dqb_elem_plain(const dqb_job *j, uint64_t k, int *cls)
{
    switch (j->kind) {
    case DQB_GRID:
        return dqb_one(j->to, j->mid, j->sat, j->lut[j->codes[k]], dqb_grid_scale(j, k), cls);
    case DQB_XS:
        return dqb_one(j->to, j->mid, j->sat, dqb_fbits(j->x[k]), dqb_fbits(j->s[k]), cls);
    default: /* DQB_VALUES */
        return dqb_finish(j->to, j->mid, j->sat, j->v[k], (j->fl[k] & DQB_F_NONFINITE) != 0,
                          (j->fl[k] & DQB_F_NONZERO) != 0, cls);
    }
}

/* Element k (< j->n) of a job: the target's bits, and its class in *cls. */
DTAB_FN uint32_t dqb_elem(const dqb_job *j, uint64_t k, int *cls)
{
    return j->kind == DQB_PACKED ? dqb_elem_packed(j, k, cls) : dqb_elem_plain(j, k, cls);
}

#endif
