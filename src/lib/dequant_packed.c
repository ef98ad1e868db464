/* The device path's reading of packed dequantization schemes (dequant_dev.h
 * dtap_dq_packed_job): for a range of output elements, the stored bytes each family's
 * element function (dequant_bits.h dqp_xs / dqp_values) needs, read through dequant_src.c
 * into per-run buffers, exactly as stored (codes, scales, zero points, absmax, g_idx: no
 * decoding here), and the indices that locate them. The CUDA back end copies them to the
 * device; the unit tests run dqb_elem over them on the host against the modules' fill().
 *
 * What is gathered per family mirrors the module's own reads (dequant_fp4.c,
 * dequant_bnb.c, dequant_gptq.c, dequant_pack.c, dequant_comfy.c), so memory stays
 * bounded the same way: about the range's share of each tensor, plus one row or column of
 * the layout (comfy_quant: the 128-row bands of swizzled block scales the range's rows
 * touch, at most 8 MiB each by dequant_comfy.c's cap, read ahead up to DQP_CQ_SLAB). Hostile
 * input is refused here, before anything reaches a device: a g_idx entry outside its
 * groups (the modules' message), and any gather above DQP_MAX_GATHER bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant_dev.h"
#include "dequant_scheme.h"

#define DQP_MAX_GATHER (256u << 20) /* bytes of one gathered buffer */
#define DQP_MX_SLAB (8u << 20)      /* MXFP4: bytes of blocks + scales kept per slab */
#define DQP_CQ_SLAB (8u << 20)      /* comfy_quant: bytes of swizzled scale bands read ahead */

typedef struct {
    size_t gpar;              /* parameter whose g_idx was checked, SIZE_MAX none */
    bool gused;               /* ... and whether its map is used (compressed-tensors: no -1) */
    size_t mpar;              /* MXFP4: parameter of the cached slab, SIZE_MAX none */
    uint64_t mmat, mlo, mhi, mb0, mw;
    size_t cqpar;             /* comfy_quant: parameter of the bands held, SIZE_MAX: none */
    uint64_t cqb0, cqb1;      /* ... bands [cqb0, cqb1] in buffer 1 */
    unsigned char *buf[4];
    size_t cap[4];
} pk_cache;

void dtap_dq_packed_free(void *cache)
{
    pk_cache *c = cache;
    if (!c)
        return;
    for (int k = 0; k < 4; k++)
        free(c->buf[k]);
    free(c);
}

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

/* Buffer k of at least `need` bytes (need checked against the cap). */
static unsigned char *slot(pk_cache *c, int k, uint64_t need, const char *what,
                           dta_status *st, dta_error *err)
{
    if (need > DQP_MAX_GATHER) {
        *st = dta_error_set(err, DTA_E_LIMIT, 0, "dequantize on the GPU: %s of %llu bytes "
                            "for one run (at most %u)", what, (unsigned long long)need,
                            DQP_MAX_GATHER);
        return NULL;
    }
    if (c->cap[k] < need || !c->buf[k]) {
        unsigned char *b = realloc(c->buf[k], need ? (size_t)need : 1);
        if (!b) {
            *st = nomem(err);
            return NULL;
        }
        c->buf[k] = b;
        c->cap[k] = need ? (size_t)need : 1;
    }
    return c->buf[k];
}

/* n bytes of tensor ti from byte off into buffer k: job->raw[k]. */
static dta_status gather(dtap_dq_src *d, pk_cache *c, int k, size_t ti, uint64_t off,
                         uint64_t n, const char *what, dqb_job *j, dta_error *err)
{
    dta_status st = DTA_OK;
    unsigned char *b = slot(c, k, n, what, &st, err);
    if (!b)
        return st;
    if (n && (st = dtap_dq_read(d, ti, off, (size_t)n, b, err)) != DTA_OK)
        return st;
    j->raw[k] = b;
    j->nraw[k] = n;
    return DTA_OK;
}

/* rows rows of width bytes each, row r from byte off + r * stride, into buffer k. */
static dta_status gather_rows(dtap_dq_src *d, pk_cache *c, int k, size_t ti, uint64_t off,
                              uint64_t stride, uint64_t width, uint64_t rows, const char *what,
                              dqb_job *j, dta_error *err)
{
    dta_status st = DTA_OK;
    if (rows && width > DQP_MAX_GATHER / rows)
        width = DQP_MAX_GATHER + (uint64_t)1; /* refused by slot() */
    unsigned char *b = slot(c, k, rows * width, what, &st, err);
    if (!b)
        return st;
    if (width == stride)
        st = rows ? dtap_dq_read(d, ti, off, (size_t)(rows * width), b, err) : DTA_OK;
    else
        for (uint64_t r = 0; r < rows && st == DTA_OK; r++)
            st = dtap_dq_read(d, ti, off + r * stride, (size_t)width, b + r * width, err);
    if (st != DTA_OK)
        return st;
    j->raw[k] = b;
    j->nraw[k] = rows * width;
    return DTA_OK;
}

static const dta_tensor *tensor(dtap_dq_src *d, size_t ti)
{
    return &dtap_dq_model(d)->tensors[ti];
}

/* ---- g_idx: checked once per parameter, as the modules check it ------------------------- */

static dta_status check_gidx(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi,
                             pk_cache *c, dta_error *err)
{
    if (c->gpar == pi)
        return DTA_OK;
    const dta_tensor *t = tensor(d, pd->t[3]);
    unsigned ge = t->dtype == DTA_I64 ? 8 : 4;
    uint64_t in = pd->in, G = pd->groups;
    bool minus = false;
    unsigned char buf[4096 * 8];
    const char *qname = tensor(d, pd->t[0])->name;
    for (uint64_t i0 = 0; i0 < in; i0 += 4096) {
        size_t k = (size_t)(in - i0 < 4096 ? in - i0 : 4096);
        dta_status st = dtap_dq_read(d, pd->t[3], i0 * ge, k * ge, buf, err);
        if (st != DTA_OK)
            return st;
        for (size_t m = 0; m < k; m++) {
            uint64_t v = dqp_le32(buf + m * ge);
            uint32_t hi = ge == 8 ? dqp_le32(buf + m * ge + 4) : 0;
            if (pd->kind == DQP_CTPACK) {
                int32_t s = (int32_t)(uint32_t)v;
                if (s == -1)
                    minus = true;
                else if (s < 0 || (uint64_t)s >= G)
                    return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' maps "
                                         "input %llu to group %ld of %llu", t->name,
                                         (unsigned long long)(i0 + m), (long)s,
                                         (unsigned long long)G);
            } else if (hi || v >= G) {
                return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' (%s): its "
                                     "g_idx[%llu] is %s%llu, outside [0, %llu)", qname,
                                     pd->kind == DQP_AWQ ? "awq" : "gptq",
                                     (unsigned long long)(i0 + m), hi ? "beyond " : "",
                                     (unsigned long long)v, (unsigned long long)G);
            }
        }
    }
    c->gpar = pi;
    c->gused = !minus;
    return DTA_OK;
}

/* ---- the families ------------------------------------------------------------------------ */

static dta_status job_mxfp4(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi, pk_cache *c,
                            uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    uint64_t out = pd->out, nb = pd->cols, M = pd->in * out;
    uint64_t mat = first / M, rem = first % M, seg = M - rem < n ? M - rem : n;
    uint64_t i0 = rem / out, i1 = (rem + seg - 1) / out;
    if (i1 > i0 && out * (i1 / 32 - i0 / 32 + 1) * 17 > DQP_MX_SLAB) {
        seg = out - rem % out; /* a long column: this input index alone */
        i1 = i0;
    }
    uint64_t lo = i1 > i0 ? 0 : rem % out, hi = i1 > i0 ? out - 1 : (rem + seg - 1) % out;
    uint64_t cb0 = i0 / 32, cb1 = i1 / 32;
    if (!(c->mpar == pi && c->mmat == mat && c->mlo <= lo && hi <= c->mhi && c->mb0 <= cb0 &&
          cb1 < c->mb0 + c->mw)) {
        /* a slab of whole rows' blocks from cb0, as wide as DQP_MX_SLAB allows */
        uint64_t R = hi - lo + 1, w = DQP_MX_SLAB / (R * 17);
        if (w < cb1 - cb0 + 1)
            w = cb1 - cb0 + 1;
        if (w > nb - cb0)
            w = nb - cb0;
        c->mpar = SIZE_MAX;
        uint64_t row0 = mat * out + lo;
        dta_status st = gather_rows(d, c, 0, pd->t[0], (row0 * nb + cb0) * 16, nb * 16, w * 16,
                                    R, "MXFP4 blocks", j, err);
        if (st == DTA_OK)
            st = gather_rows(d, c, 1, pd->t[1], row0 * nb + cb0, nb, w, R, "MXFP4 scales", j,
                             err);
        if (st != DTA_OK)
            return st;
        c->mpar = pi;
        c->mmat = mat;
        c->mlo = lo;
        c->mhi = hi;
        c->mb0 = cb0;
        c->mw = w;
    }
    uint64_t R = c->mhi - c->mlo + 1;
    j->raw[0] = c->buf[0];
    j->nraw[0] = R * c->mw * 16;
    j->raw[1] = c->buf[1];
    j->nraw[1] = R * c->mw;
    j->n = seg;
    j->pout = out;
    j->rem0 = rem;
    j->lo = c->mlo;
    j->base[0] = c->mb0;
    j->wid[0] = c->mw;
    return DTA_OK;
}

/* A ModelOpt NVFP4 expert stack: codes [E, cols, out] and block scales [E, groups, out]
 * read in the output's order [E, in, out]: the rows the range touches are one span each
 * (about n / 2 and n / 16 bytes plus two rows); the global scales of the experts it
 * touches (or the one). */
static dta_status job_fp4_stack(dtap_dq_src *d, const dtap_dq_packed *pd, pk_cache *c,
                                uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    uint64_t last = first + n - 1, out = pd->out, M = pd->in * out;
    uint64_t m0 = first / M, m1 = last / M, i0 = first % M / out, i1 = last % M / out;
    /* a codes row serves two inputs and a scale row 16: whole rows unless the range
     * stays within one input's row */
    bool one = m0 == m1 && i0 == i1;
    uint64_t o0 = one ? first % out : 0, o1 = one ? last % out : out - 1;
    uint64_t c0 = (m0 * pd->cols + i0 / 2) * out + o0, c1 = (m1 * pd->cols + i1 / 2) * out + o1;
    uint64_t s0 = (m0 * pd->groups + i0 / 16) * out + o0;
    uint64_t s1 = (m1 * pd->groups + i1 / 16) * out + o1;
    bool per = pd->flags & DQP_F_PER_EXPERT;
    dta_status st = gather(d, c, 0, pd->t[0], c0, c1 - c0 + 1, "FP4 stack codes", j, err);
    if (st == DTA_OK)
        st = gather(d, c, 1, pd->t[1], s0, s1 - s0 + 1, "FP4 stack scales", j, err);
    if (st == DTA_OK)
        st = gather(d, c, 2, pd->t[2], per ? m0 * 4 : 0, per ? (m1 - m0 + 1) * 4 : 4,
                    "global scales", j, err);
    j->pin = pd->in;
    j->pout = out;
    j->cols = pd->cols;
    j->ng = pd->groups;
    j->base[0] = c0;
    j->base[1] = s0;
    j->base[2] = per ? m0 : 0;
    return st;
}

static dta_status job_fp4(dtap_dq_src *d, const dtap_dq_packed *pd, pk_cache *c,
                          uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    if (pd->flags & DQP_F_STACK)
        return job_fp4_stack(d, pd, c, first, n, j, err);
    uint64_t last = first + n - 1, in = pd->in, r0 = first / in, r1 = last / in;
    uint64_t cb0 = r0 * pd->cols + first % in / 2, cb1 = r1 * pd->cols + last % in / 2;
    uint64_t sb0 = r0 * pd->groups + first % in / pd->group;
    uint64_t sb1 = r1 * pd->groups + last % in / pd->group;
    dta_status st = gather(d, c, 0, pd->t[0], cb0, cb1 - cb0 + 1, "FP4 codes", j, err);
    if (st == DTA_OK)
        st = gather(d, c, 1, pd->t[1], sb0, sb1 - sb0 + 1, "FP4 scales", j, err);
    j->pin = in;
    j->cols = pd->cols;
    j->ng = pd->groups;
    j->grp = pd->group;
    j->gbits = pd->gbits;
    j->base[0] = cb0;
    j->base[1] = sb0;
    return st;
}

static dta_status job_bnb4(dtap_dq_src *d, const dtap_dq_packed *pd, pk_cache *c,
                           uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    uint64_t last = first + n - 1, b0 = first / pd->group, b1 = last / pd->group;
    bool nested = pd->flags & DQP_F_NESTED;
    const dta_tensor *A = tensor(d, pd->t[1]);
    unsigned es = nested ? 1 : (unsigned)dta_dtype_elem_size(A->dtype);
    dta_status st = gather(d, c, 0, pd->t[0], first / 2, last / 2 - first / 2 + 1,
                           "bitsandbytes codes", j, err);
    if (st == DTA_OK)
        st = gather(d, c, 1, pd->t[1], b0 * es, (b1 - b0 + 1) * es, "bitsandbytes absmax", j,
                    err);
    if (st == DTA_OK && nested) {
        uint64_t n0 = b0 / pd->nested_bs, n1 = b1 / pd->nested_bs;
        st = gather(d, c, 2, pd->t[2], n0 * 4, (n1 - n0 + 1) * 4, "nested absmax", j, err);
        if (st == DTA_OK)
            st = gather(d, c, 3, pd->t[3], 0, 256 * 4, "nested map", j, err);
        j->base[2] = n0;
        j->ngrp = pd->nested_bs;
        j->gbits = pd->gbits;
    }
    j->sdt = (int)A->dtype;
    j->grp = pd->group;
    j->base[0] = first / 2;
    j->base[1] = b0;
    memcpy(j->lut16, pd->lut, sizeof j->lut16);
    return st;
}

static dta_status job_bnb8(dtap_dq_src *d, const dtap_dq_packed *pd, pk_cache *c,
                           uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    const dta_tensor *S = tensor(d, pd->t[1]);
    unsigned es = (unsigned)dta_dtype_elem_size(S->dtype);
    uint64_t r0 = first / pd->in, r1 = (first + n - 1) / pd->in;
    dta_status st = gather(d, c, 0, pd->t[0], first, n, "int8 codes", j, err);
    if (st == DTA_OK)
        st = gather(d, c, 1, pd->t[1], r0 * es, (r1 - r0 + 1) * es, "SCB", j, err);
    j->sdt = (int)S->dtype;
    j->pin = pd->in;
    j->base[1] = r0;
    return st;
}

static dta_status job_gptq(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi, pk_cache *c,
                           uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    bool awq = pd->kind == DQP_AWQ;
    unsigned b = pd->bits;
    const dta_tensor *S = tensor(d, pd->t[1]);
    unsigned es = (unsigned)dta_dtype_elem_size(S->dtype);
    uint64_t in = pd->in, o0 = first / in, o1 = (first + n - 1) / in, C = o1 - o0 + 1;
    uint64_t wc0, wc1, zc0, zc1;
    dqp_gptq_cols(awq, b, o0, o1, &wc0, &wc1, &zc0, &zc1);
    uint64_t wn = wc1 - wc0 + 1, zn = zc1 - zc0 + 1;
    dta_status st = DTA_OK;
    if (pd->t[3] != SIZE_MAX && (st = check_gidx(d, pd, pi, c, err)) != DTA_OK)
        return st;
    /* the input indices of the range: all, unless it stays in one output row */
    uint64_t ilo = o0 == o1 ? first % in : 0, ihi = o0 == o1 ? (first + n - 1) % in : in - 1;
    /* the packed rows holding them (GPTQ: a 3-bit field may reach into the next word) */
    uint64_t pr0 = awq ? ilo : ilo * b / 32, pr1 = awq ? ihi : (ihi * b + b - 1) / 32;
    if (pr1 >= pd->rows)
        pr1 = pd->rows - 1;
    st = gather_rows(d, c, 0, pd->t[0], (pr0 * pd->cols + wc0) * 4, pd->cols * 4, wn * 4,
                     pr1 - pr0 + 1, "packed weight columns", j, err);
    if (st == DTA_OK)
        st = gather_rows(d, c, 2, pd->t[2], zc0 * 4, pd->zcols * 4, zn * 4, pd->groups,
                         "packed zero columns", j, err);
    if (st == DTA_OK)
        st = gather_rows(d, c, 1, pd->t[1], o0 * es, pd->out * es, C * es, pd->groups,
                         "scale columns", j, err);
    if (st == DTA_OK && pd->t[3] != SIZE_MAX) {
        const dta_tensor *G = tensor(d, pd->t[3]);
        unsigned ge = G->dtype == DTA_I64 ? 8 : 4;
        st = gather(d, c, 3, pd->t[3], ilo * ge, (ihi - ilo + 1) * ge, "g_idx", j, err);
        j->gdt = (int)G->dtype;
        j->pf |= DQP_F_GIDX;
        j->base[3] = ilo;
    }
    if (st != DTA_OK)
        return st;
    j->bits = b;
    j->sdt = (int)S->dtype;
    j->pin = in;
    j->grp = pd->group;
    j->pf |= pd->flags & DQP_F_V1;
    j->base[0] = wc0;
    j->wid[0] = wn;
    j->lo = pr0;
    j->base[1] = o0;
    j->wid[1] = C;
    j->base[2] = zc0;
    j->wid[2] = zn;
    return DTA_OK;
}

static dta_status job_ctpack(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi, pk_cache *c,
                             uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    unsigned b = pd->bits;
    uint64_t last = first + n - 1, in = pd->in, out = pd->out;
    uint64_t R0 = first / in, R1 = last / in;
    const dta_tensor *S = tensor(d, pd->t[1]);
    unsigned es = (unsigned)dta_dtype_elem_size(S->dtype);
    bool pt = pd->flags & DQP_F_PER_TENSOR;
    dta_status st = DTA_OK;
    if (pd->t[3] != SIZE_MAX && (st = check_gidx(d, pd, pi, c, err)) != DTA_OK)
        return st;
    uint64_t w0 = R0 * pd->cols + first % in * b / 32, w1 = R1 * pd->cols + last % in * b / 32;
    st = gather(d, c, 0, pd->t[0], w0 * 4, (w1 - w0 + 1) * 4, "packed codes", j, err);
    uint64_t s0 = pt ? 0 : R0 * pd->groups, s1 = pt ? 0 : R1 * pd->groups + pd->groups - 1;
    if (st == DTA_OK)
        st = gather(d, c, 1, pd->t[1], s0 * es, (s1 - s0 + 1) * es, "scales", j, err);
    if (st == DTA_OK && pd->t[2] != SIZE_MAX) {
        uint64_t z0 = (R0 / out * pd->zrows + R0 % out * b / 32) * pd->groups;
        uint64_t z1 = (R1 / out * pd->zrows + R1 % out * b / 32) * pd->groups + pd->groups - 1;
        st = gather(d, c, 2, pd->t[2], z0 * 4, (z1 - z0 + 1) * 4, "zero points", j, err);
        j->base[2] = z0;
    }
    if (st == DTA_OK && pd->t[3] != SIZE_MAX && c->gused) {
        uint64_t ilo = R0 == R1 ? first % in : 0, ihi = R0 == R1 ? last % in : in - 1;
        st = gather(d, c, 3, pd->t[3], ilo * 4, (ihi - ilo + 1) * 4, "g_idx", j, err);
        j->pf |= DQP_F_GIDX;
        j->base[3] = ilo;
    }
    j->pf |= pd->flags & DQP_F_PER_TENSOR;
    j->bits = b;
    j->sdt = (int)S->dtype;
    j->pin = in;
    j->pout = out;
    j->cols = pd->cols;
    j->ng = pd->groups;
    j->grp = pd->group;
    j->zrows = pd->zrows;
    j->base[0] = w0;
    j->base[1] = s0;
    return st;
}

/* ComfyUI comfy_quant nvfp4 / mxfp8 / int8_tensorwise, rows of `in` columns: the code
 * bytes of the range, and the whole 128-row bands of swizzled block scales its rows touch
 * (read ahead while they fit DQP_CQ_SLAB and kept for the next ranges; only those the range
 * touches go in the job), or int8's row scales (per tensor: the one scale is gbits). */
static dta_status job_comfy(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi, pk_cache *c,
                           uint64_t first, size_t n, dqb_job *j, dta_error *err)
{
    uint64_t in = pd->in, last = first + n - 1, r0 = first / in, r1 = last / in;
    dta_status st = DTA_OK;
    if (pd->kind != DQP_CQ_INT8) {
        uint64_t band = pd->groups * 512, b0 = r0 / 128, b1 = r1 / 128;
        if (!(c->cqpar == pi && c->cqb0 <= b0 && b1 <= c->cqb1)) {
            uint64_t nb = tensor(d, pd->t[1])->shape[0] / 128, w = DQP_CQ_SLAB / band;
            uint64_t e = b0 + (w > 1 ? w : 1) - 1;
            if (e < b1)
                e = b1;
            if (e >= nb)
                e = nb - 1;
            c->cqpar = SIZE_MAX;
            if ((st = gather(d, c, 1, pd->t[1], b0 * band, (e - b0 + 1) * band,
                             "comfy_quant block scales", j, err)) != DTA_OK)
                return st;
            c->cqpar = pi;
            c->cqb0 = b0;
            c->cqb1 = e;
        }
        j->raw[1] = c->buf[1] + (b0 - c->cqb0) * band;
        j->nraw[1] = (b1 - b0 + 1) * band;
        j->base[1] = b0 * band;
        j->grp = pd->group;
        j->ng = pd->groups;
    } else if (pd->flags & DQP_F_PER_ROW) {
        const dta_tensor *S = tensor(d, pd->t[1]);
        unsigned es = (unsigned)dta_dtype_elem_size(S->dtype);
        if ((st = gather(d, c, 1, pd->t[1], r0 * es, (r1 - r0 + 1) * es, "int8 row scales", j,
                         err)) != DTA_OK)
            return st;
        j->sdt = (int)S->dtype;
        j->base[1] = r0;
    }
    uint64_t cb0 = r0 * pd->cols + dqp_cq_byte(pd->kind, first % in);
    uint64_t cb1 = r1 * pd->cols + dqp_cq_byte(pd->kind, last % in);
    j->pf = pd->flags & DQP_F_PER_ROW;
    j->pin = in;
    j->cols = pd->cols;
    j->gbits = pd->gbits;
    j->base[0] = cb0;
    return gather(d, c, 0, pd->t[0], cb0, cb1 - cb0 + 1, "comfy_quant codes", j, err);
}

dta_status dtap_dq_packed_job(dtap_dq_src *d, const dtap_dq_packed *pd, size_t pi,
                              void **cache, uint64_t first, size_t n, dqb_job *j,
                              dta_error *err)
{
    pk_cache *c = *cache;
    if (!c) {
        if (!(c = calloc(1, sizeof *c)))
            return nomem(err);
        c->gpar = SIZE_MAX;
        c->mpar = SIZE_MAX;
        c->cqpar = SIZE_MAX;
        *cache = c;
    }
    /* buffers 0 and 1 are about to hold something else */
    if (pd->kind != DQP_MXFP4)
        c->mpar = SIZE_MAX;
    if (pd->kind != DQP_CQ_NVFP4 && pd->kind != DQP_CQ_MXFP8)
        c->cqpar = SIZE_MAX;
    j->pk = pd->kind;
    j->first = first;
    j->n = n;
    switch (pd->kind) {
    case DQP_MXFP4:
        return job_mxfp4(d, pd, pi, c, first, n, j, err);
    case DQP_FP4:
        j->pf = pd->flags & (DQP_F_DIVIDE | DQP_F_E8M0 | DQP_F_STACK | DQP_F_PER_EXPERT);
        return job_fp4(d, pd, c, first, n, j, err);
    case DQP_BNB4:
        j->pf = pd->flags & DQP_F_NESTED;
        return job_bnb4(d, pd, c, first, n, j, err);
    case DQP_BNB8:
        return job_bnb8(d, pd, c, first, n, j, err);
    case DQP_GPTQ:
    case DQP_AWQ:
        return job_gptq(d, pd, pi, c, first, n, j, err);
    case DQP_CTPACK:
        return job_ctpack(d, pd, pi, c, first, n, j, err);
    case DQP_CQ_NVFP4:
    case DQP_CQ_MXFP8:
    case DQP_CQ_INT8:
        return job_comfy(d, pd, pi, c, first, n, j, err);
    default:
        return dta_error_set(err, DTA_E_ARG, 0, "dequantize: unknown packed family %d",
                             pd->kind);
    }
}
