/* Dequantization of FP4 (E2M1) schemes (dequant_scheme.h): gpt-oss MXFP4 expert stacks,
 * ModelOpt NVFP4 and compressed-tensors nvfp4-pack-quantized.
 *
 * Element: E2M1, bit 3 the sign, bits 2..0 index [0, 0.5, 1, 1.5, 2, 3, 4, 6]; code 8 is
 * -0.0 (shared/quant.md 1.2). Every value is exact in f32.
 *
 * MXFP4 (gpt-oss, shared/quant.md 8.2-8.3): "<p>_blocks" U8 [E, out, in/32, 16] and
 * "<p>_scales" U8 (or F8_E8M0) [E, out, in/32]; block byte k of block g in row r holds
 * element 32g + 2k in its low nibble and 32g + 2k + 1 in its high nibble; the scale byte u
 * is 2^(u - 127) (u = 0: the f32 subnormal 2^-127; u = 255: NaN, the OCP reading; gpt-oss
 * itself computes 2^128 = inf, so either way the values are not finite and convert
 * refuses them unless told otherwise). The products are exact (powers of two) except
 * when they leave f32. The output is HF's BF16 layout: dequantize, then swap the last two
 * dims, [E, out, in] -> [E, in, out], written under "<p>" (shared/quant.md 8.3, 15.4).
 *
 * ModelOpt NVFP4 (shared/quant.md 9.2): weight U8 [out, in/2] (even element in the low
 * nibble), weight_scale F8_E4M3 [out, in/16], weight_scale_2 F32 []: s = f32(f32(bs) *
 * weight_scale_2) first, then y = f32(E2M1 * s) (NVFP4QTensor.dequantize). A checkpoint
 * with pre_quant_scale (NVFP4_AWQ) is refused: its dense weight is not the dequantized
 * one.
 *
 * ModelOpt NVFP4 expert stacks (the bmm experts Llama4TextExperts and GptOssExperts, held
 * [E, in, out] in memory): the exporter transposes each stack to [E, out, in], quantizes
 * it and transposes the codes and block scales back (Model-Optimizer
 * modelopt/torch/export/unified_export_hf.py _export_quantized_weight and
 * quant_utils.py maybe_transpose_expert_weight_dimensions), under quantizer_attr_names'
 * names: "<p>" U8 [E, in/2, out] (byte (e, j, o) holds input 2j in its low nibble, 2j + 1
 * in its high one), "<p>_weight_scale" F8_E4M3 [E, in/16, out], "<p>_weight_scale_2" F32,
 * one value (one weight quantizer per stack) or one per expert, "<p>_input_scale" dropped.
 * vLLM's llama4.py and TensorRT-LLM's fused-MoE loader read them so (transpose(-1, -2)).
 * The value of input i, output o of expert e is the element (e, o, i) of the transposed
 * quantized tensor: s = f32(f32(bs[e][i/16][o]) * g[e]), y = f32(E2M1 * s); written under
 * "<p>" in the stored (and the unquantized model's) layout [E, in, out]. A stack stored
 * [E, out, in/2] (no ModelOpt export writes one; its plain layout is unknown) is refused.
 *
 * compressed-tensors nvfp4-pack-quantized (shared/quant.md 3.5): weight_packed U8
 * [out, ceil(in/2)] (low nibble even, rows padded to whole bytes), weight_scale F8_E4M3
 * [out, ceil(in/16)], weight_global_scale F32 [1], optional weight_shape [out, in]: the
 * global scale divides, s = f32(bs) / global (f32 division), y = f32(E2M1 * s). Written
 * under "<p>.weight". An asymmetric variant (weight_zero_point) is refused.
 *
 * compressed-tensors mxfp4-pack-quantized (compressed-tensors 0.20.1
 * compressors/mxfp4/base.py, read in source): weight_packed U8 [out, in/2] as NVFP4,
 * weight_scale U8 (or F8_E8M0) [out, ceil(in/32)] E8M0 exponents, no global scale:
 * decompress_mx_scale gives 2^(u - 127) (u = 255: 2^128 = inf, as that code computes it;
 * u = 0: 2^-127), y = f32(E2M1 * s), exact unless it leaves f32 (the library's BF16
 * product is the same value). A weight_shape other than [out, 2 * packed columns] (the
 * library does not crop) is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_bits.h"
#include "dequant_scheme.h"

/* The element decoding (E2M1 codes, E8M0 and NVFP4 block scales) is dequant_unpack.h's,
 * which the CUDA kernel runs too. */

static dta_status refuse(dta_error *err, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s': %s; nothing written",
                         name, why);
}

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

static char *dup_name(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---- MXFP4 (gpt-oss) -------------------------------------------------------------------- */

#define MX_SLAB (8u << 20)   /* bytes of codes + scales kept per matrix column slab */
#define MX_MAX_ROWS (1u << 22)

typedef struct {
    size_t blocks, scales;
    uint64_t mats, out, nb, in;
} mx_state;

typedef struct {
    uint64_t mat, b0, w; /* blocks [b0, b0 + w) of every row of matrix mat */
    size_t cap;          /* bytes after the header */
    unsigned char data[]; /* codes [out][w * 16], then scales [out][w] */
} mx_cache;

static dta_status mx_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                          dtap_dq_plan *o, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *b = &w->tensors[qp->weight];
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE);
    if (si == SIZE_MAX)
        return refuse(err, qp->name, "MXFP4 blocks without their _scales");
    const dta_tensor *s = &w->tensors[si];
    if (b->dtype != DTA_U8 || b->rank != 4 || b->shape[3] != 16)
        return refuse(err, qp->name, "MXFP4 blocks other than gpt-oss expert stacks "
                                     "(U8 [E, out, in/32, 16]) are not supported");
    if (s->dtype != DTA_U8 && s->dtype != DTA_F8_E8M0)
        return refuse(err, qp->name, "MXFP4 scales that are not E8M0 bytes (U8 or F8_E8M0)");
    if (s->rank != 3 || s->shape[0] != b->shape[0] || s->shape[1] != b->shape[1] ||
        s->shape[2] != b->shape[2])
        return refuse(err, qp->name, "MXFP4 scales that do not fit the blocks "
                                     "([E, out, in/32])");
    if (!dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si))
        return refuse(err, qp->name, "MXFP4 blocks or scales not stored plainly (a "
                                     "safetensors input is needed)");
    if (b->shape[1] > MX_MAX_ROWS)
        return refuse(err, qp->name, "MXFP4 matrices of more than 4194304 rows");
    if (!strcmp(qp->name, b->name))
        return refuse(err, qp->name, "MXFP4 blocks whose name does not end in _blocks");
    mx_state *st = malloc(sizeof *st);
    if (!st || !(o->oname = dup_name(qp->name))) {
        free(st);
        return nomem(err);
    }
    st->blocks = qp->weight;
    st->scales = si;
    st->mats = b->shape[0];
    st->out = b->shape[1];
    st->nb = b->shape[2];
    st->in = b->shape[2] * 32;
    o->state = st;
    o->scale = si;
    o->rank = 3;
    o->shape[0] = st->mats;
    o->shape[1] = st->in;  /* HF layout: [E, in, out] */
    o->shape[2] = st->out;
    o->numel = st->mats * st->in * st->out;
    o->packed = (dtap_dq_packed){.kind = DQP_MXFP4, .t = {qp->weight, si, SIZE_MAX, SIZE_MAX},
                                 .mats = st->mats, .out = st->out, .in = st->in,
                                 .cols = st->nb}; /* the device path (dequant_packed.c) */
    return DTA_OK;
}

/* Blocks [b0, b0 + w) of every row of matrix mat into the cache. */
static dta_status mx_load(dtap_dq_src *d, const mx_state *m, mx_cache **cp, uint64_t mat,
                          uint64_t b0, uint64_t w, dta_error *err)
{
    mx_cache *c = *cp;
    size_t need = (size_t)(m->out * w * 17);
    if (!c || c->cap < need) {
        mx_cache *n = realloc(c, sizeof *c + need);
        if (!n)
            return nomem(err);
        *cp = c = n;
        c->cap = need;
    }
    c->w = 0; /* invalid until loaded */
    unsigned char *codes = c->data, *sc = c->data + m->out * w * 16;
    uint64_t row0 = mat * m->out;
    dta_status st = DTA_OK;
    if (b0 == 0 && w == m->nb) { /* the whole matrix: two reads */
        st = dtap_dq_read(d, m->blocks, row0 * m->nb * 16, (size_t)(m->out * m->nb * 16),
                          codes, err);
        if (st == DTA_OK)
            st = dtap_dq_read(d, m->scales, row0 * m->nb, (size_t)(m->out * m->nb), sc, err);
    } else {
        for (uint64_t o = 0; o < m->out && st == DTA_OK; o++) {
            st = dtap_dq_read(d, m->blocks, ((row0 + o) * m->nb + b0) * 16, (size_t)(w * 16),
                              codes + o * w * 16, err);
            if (st == DTA_OK)
                st = dtap_dq_read(d, m->scales, (row0 + o) * m->nb + b0, (size_t)w,
                                  sc + o * w, err);
        }
    }
    if (st == DTA_OK) {
        c->mat = mat;
        c->b0 = b0;
        c->w = w;
    }
    return st;
}

static dta_status mx_fill(dtap_dq_src *d, const dtap_dq_plan *p, void **cache, uint64_t first,
                          size_t n, float *x, float *s, dta_error *err)
{
    const mx_state *m = p->state;
    uint64_t M = m->in * m->out;
    size_t k = 0;
    while (k < n) {
        uint64_t e = first + k, mat = e / M, rem = e % M;
        uint64_t seg = M - rem < n - k ? M - rem : n - k;
        uint64_t i0 = rem / m->out, i1 = (rem + seg - 1) / m->out;
        uint64_t cb0 = i0 / 32, cb1 = i1 / 32;
        mx_cache *c = *cache;
        if (!c || c->w == 0 || c->mat != mat || cb0 < c->b0 || cb1 >= c->b0 + c->w) {
            uint64_t w = MX_SLAB / (m->out * 17);
            if (w < cb1 - cb0 + 1)
                w = cb1 - cb0 + 1;
            if (w > m->nb - cb0)
                w = m->nb - cb0;
            uint64_t b0 = cb0;
            if (w == m->nb - cb0 && cb0 > 0 && MX_SLAB / (m->out * 17) >= m->nb)
                b0 = 0, w = m->nb; /* the whole matrix fits: one read */
            dta_status st = mx_load(d, m, (mx_cache **)cache, mat, b0, w, err);
            if (st != DTA_OK)
                return st;
            c = *cache;
        }
        const unsigned char *codes = c->data, *sc = c->data + m->out * c->w * 16;
        uint64_t i = i0, o = rem % m->out, rw = c->w * 16;
        for (uint64_t j = 0; j < seg; j++) {
            uint64_t blk = i / 32 - c->b0;
            unsigned char byte = codes[o * rw + blk * 16 + (i % 32) / 2];
            x[k + j] = dqb_bitsf(dqp_e2m1(dqp_nib_lo_first(byte, i)));
            s[k + j] = dqb_bitsf(dqp_e8m0(sc[o * c->w + blk], 0));
            if (++o == m->out) {
                o = 0;
                i++;
            }
        }
        k += (size_t)seg;
    }
    return DTA_OK;
}

const dtap_dq_ops dtap_dq_mxfp4_ops = {
    .scheme = DTA_QS_MXFP4, .plan = mx_plan, .fill = mx_fill, .release = free};

/* ---- NVFP4 (ModelOpt, compressed-tensors) ----------------------------------------------- */

enum { NV_MODELOPT, NV_CT, NV_CT_MX };

#define NV_SLAB (8u << 20)        /* bytes of an expert stack's codes + scales read at once */
#define NV_MAX_COLS (1u << 20)    /* an expert stack's out: 9 rows of it fit the slab */
#define NV_MAX_EXPERTS (1u << 20) /* per-expert global scales kept */

typedef struct {
    bool ct;             /* compressed-tensors: the global scale divides */
    bool mx;             /* compressed-tensors MXFP4: E8M0 scales per 32, no global */
    bool stack;          /* a ModelOpt expert stack: codes [E, in/2, out], scales [E, gc, out] */
    size_t codes, scales;
    uint64_t out, in, cols, gc, mats;
    float global;
    float *globals;      /* stack: one per expert, NULL: global for all */
} nv_state;

static void nv_release(void *state)
{
    nv_state *st = state;
    if (st)
        free(st->globals);
    free(st);
}

/* F32 values of tensor ti, n of them (n * 4 bytes read). */
static dta_status read_f32s(dtap_dq_src *d, size_t ti, uint64_t n, float *v, dta_error *err)
{
    unsigned char b[256];
    for (uint64_t k = 0; k < n;) {
        size_t m = n - k < 64 ? (size_t)(n - k) : 64;
        dta_status st = dtap_dq_read(d, ti, k * 4, m * 4, b, err);
        if (st != DTA_OK)
            return st;
        for (size_t j = 0; j < m; j++)
            v[k + j] = dqb_bitsf((uint32_t)b[4 * j] | (uint32_t)b[4 * j + 1] << 8 |
                                   (uint32_t)b[4 * j + 2] << 16 | (uint32_t)b[4 * j + 3] << 24);
        k += m;
    }
    return DTA_OK;
}

/* Reads one F32 scalar tensor. */
static dta_status read_f32_scalar(dtap_dq_src *d, size_t ti, float *v, dta_error *err)
{
    unsigned char b[4];
    dta_status st = dtap_dq_read(d, ti, 0, 4, b, err);
    if (st == DTA_OK)
        *v = dqb_bitsf((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                    (uint32_t)b[3] << 24);
    return st;
}

/* compressed-tensors weight_shape: two integers (I64 or I32). */
static dta_status read_shape2(dtap_dq_src *d, size_t ti, uint64_t v[2], dta_error *err)
{
    const dta_tensor *t = &dtap_dq_model(d)->tensors[ti];
    unsigned char b[16];
    unsigned es = t->dtype == DTA_I64 ? 8 : t->dtype == DTA_I32 ? 4 : 0;
    if (!es || t->numel != 2 || !dtap_dq_stored_plain(d, ti))
        return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' is not two I64 or "
                             "I32 values; nothing written", t->name);
    dta_status st = dtap_dq_read(d, ti, 0, 2 * es, b, err);
    for (int k = 0; k < 2 && st == DTA_OK; k++) {
        uint64_t u = 0;
        for (unsigned j = 0; j < es; j++)
            u |= (uint64_t)b[k * es + j] << (8 * j);
        if (es == 4 && (u & 0x80000000u))
            u |= 0xFFFFFFFF00000000ull;
        if (u >> 62)
            return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' holds a "
                                 "negative or huge dimension; nothing written", t->name);
        v[k] = u;
    }
    return st;
}

/* The plan of a ModelOpt NVFP4 expert stack (c U8 rank 3, its block scale s F8_E4M3, its
 * global scale g F32), all three stored plainly. */
static dta_status stack_plan(dtap_dq_src *d, const dta_quant_param *qp, const dta_tensor *c,
                             size_t si, size_t gi, dtap_dq_plan *o, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *s = &w->tensors[si], *g = &w->tensors[gi];
    uint64_t E = c->shape[0], C = c->shape[1], out = c->shape[2];
    if (C > UINT64_MAX / 2 || c->numel > UINT64_MAX / 2)
        return refuse(err, qp->name, "an NVFP4 expert stack too large to count");
    if (s->rank != 3 || s->shape[0] != E)
        return refuse(err, qp->name, "an NVFP4 expert stack whose block scale is not "
                                     "[E, in/16, out]");
    uint64_t in = C * 2, gc = dtap_cdiv(in, 16);
    bool im = s->shape[1] == gc && s->shape[2] == out;
    bool om = s->shape[1] == C && s->shape[2] == dtap_cdiv(out * 2, 16);
    if (im && om)
        return refuse(err, qp->name, "an NVFP4 expert stack whose orientation its shapes do "
                                     "not tell ([E, 1, 1])");
    if (om)
        return refuse(err, qp->name, "an NVFP4 expert stack stored [E, out, in/2] (ModelOpt "
                                     "writes its bmm experts [E, in/2, out]; the unquantized "
                                     "layout of this one is not known)");
    if (!im)
        return refuse(err, qp->name, "an NVFP4 expert stack whose block scale is not "
                                     "[E, in/16, out]");
    if (g->numel != 1 && g->numel != E)
        return refuse(err, qp->name, "an NVFP4 expert stack whose weight_scale_2 is neither "
                                     "one value nor one per expert");
    if (out > NV_MAX_COLS || (g->numel != 1 && E > NV_MAX_EXPERTS))
        return refuse(err, qp->name, "an NVFP4 expert stack of more than 1048576 outputs or "
                                     "experts");
    nv_state *st = calloc(1, sizeof *st);
    if (!st || (g->numel != 1 && !(st->globals = malloc((size_t)E * sizeof *st->globals)))) {
        free(st);
        return nomem(err);
    }
    st->stack = true;
    st->codes = qp->weight;
    st->scales = si;
    st->out = out;
    st->in = in;
    st->cols = C;
    st->gc = gc;
    st->mats = E;
    dta_status r = st->globals ? read_f32s(d, gi, E, st->globals, err)
                               : read_f32_scalar(d, gi, &st->global, err);
    if (r != DTA_OK) {
        nv_release(st);
        return r;
    }
    o->state = st;
    o->scale = si;
    o->rank = 3;
    o->shape[0] = E;
    o->shape[1] = in; /* the stored layout, the unquantized model's: [E, in, out] */
    o->shape[2] = out;
    o->numel = c->numel * 2;
    o->packed = (dtap_dq_packed){.kind = DQP_FP4,
                                 .flags = DQP_F_STACK | (st->globals ? DQP_F_PER_EXPERT : 0),
                                 .t = {qp->weight, si, gi, SIZE_MAX}, .mats = E, .out = out,
                                 .in = in, .cols = C, .groups = gc,
                                 .group = 16}; /* the device path (dequant_packed.c) */
    return DTA_OK;
}

static dta_status nv_plan_common(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                                 dtap_dq_plan *o, int kind, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *c = &w->tensors[qp->weight];
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE), gi = dtap_dq_comp(q, qp, DTA_QR_GLOBAL_SCALE);
    bool ct = kind != NV_MODELOPT, mx = kind == NV_CT_MX;
    const char *gname = ct ? "weight_global_scale" : "weight_scale_2";
    const char *fp4 = mx ? "MXFP4" : "NVFP4";
    char why[160];
    for (size_t k = 0; k < qp->ntensors; k++) {
        const char *nm = w->tensors[qp->tensors[k]].name;
        size_t l = strlen(nm);
        if (l >= 16 && !strcmp(nm + l - 16, ".pre_quant_scale"))
            return refuse(err, qp->name, "NVFP4 with pre_quant_scale (AWQ-smoothed) needs the "
                                         "scale folded into the weight, which dequantizing "
                                         "alone does not do");
    }
    if (q->method && strstr(q->method, "AWQ"))
        return refuse(err, qp->name, "NVFP4_AWQ checkpoints (pre_quant_scale) are not "
                                     "supported");
    if (dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_G_IDX) != SIZE_MAX) {
        snprintf(why, sizeof why, "%s with a zero point or g_idx is not supported", fp4);
        return refuse(err, qp->name, why);
    }
    if (mx && gi != SIZE_MAX)
        return refuse(err, qp->name, "compressed-tensors MXFP4 with a global scale (the "
                                     "mxfp4-pack-quantized format has none) is not supported");
    if (si == SIZE_MAX || (!mx && gi == SIZE_MAX))
        return refuse(err, qp->name, mx ? "MXFP4 without weight_scale"
                                     : ct ? "NVFP4 without weight_scale and weight_global_scale"
                                          : "NVFP4 without weight_scale and weight_scale_2");
    const dta_tensor *s = &w->tensors[si], *g = mx ? NULL : &w->tensors[gi];
    bool stack = c->dtype == DTA_U8 && c->rank == 3;
    if (stack && ct) {
        snprintf(why, sizeof why, "compressed-tensors %s expert stacks (3-D weight_packed): "
                 "compressed-tensors 0.20.1 packs 2-D Linear weights only, so their layout is "
                 "not known", fp4);
        return refuse(err, qp->name, why);
    }
    if (c->dtype != DTA_U8 || (c->rank != 2 && !stack)) {
        snprintf(why, sizeof why, "%s codes other than U8 [out, in/2] or expert stacks "
                 "[E, in/2, out]", fp4);
        return refuse(err, qp->name, why);
    }
    if (!mx && s->dtype != DTA_F8_E4M3)
        return refuse(err, qp->name, "NVFP4 block scales that are not F8_E4M3");
    if (mx && s->dtype != DTA_U8 && s->dtype != DTA_F8_E8M0)
        return refuse(err, qp->name, "MXFP4 block scales that are not U8 or F8_E8M0 exponents");
    if (g && (g->dtype != DTA_F32 || (g->numel != 1 && !stack))) {
        snprintf(why, sizeof why, "an NVFP4 %s that is not one F32 value", gname);
        return refuse(err, qp->name, why);
    }
    if (!dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si) ||
        (g && !dtap_dq_stored_plain(d, gi))) {
        snprintf(why, sizeof why, "%s tensors not stored plainly (a safetensors input is "
                 "needed)", fp4);
        return refuse(err, qp->name, why);
    }
    if (stack)
        return stack_plan(d, qp, c, si, gi, o, err);
    uint64_t out = c->shape[0], cols = c->shape[1], in = cols * 2;
    size_t shi = dtap_dq_comp(q, qp, DTA_QR_SHAPE);
    if (shi != SIZE_MAX) {
        uint64_t v[2];
        dta_status st = read_shape2(d, shi, v, err);
        if (st != DTA_OK)
            return st;
        if (v[0] != out || dtap_cdiv(v[1], 2) != cols)
            return refuse(err, qp->name, "its weight_shape does not fit the packed codes");
        if (mx && v[1] != in)
            return refuse(err, qp->name, "MXFP4 with an odd weight_shape (compressed-tensors' "
                                         "decompressor does not crop the packed width)");
        in = v[1];
    }
    uint64_t gc = dtap_cdiv(in, mx ? 32 : 16);
    if (s->rank != 2 || s->shape[0] != out || s->shape[1] != gc) {
        snprintf(why, sizeof why, "%s block scales that are not [out, ceil(in/%d)]", fp4,
                 mx ? 32 : 16);
        return refuse(err, qp->name, why);
    }
    nv_state *st = malloc(sizeof *st);
    if (!st)
        return nomem(err);
    *st = (nv_state){.ct = ct, .mx = mx, .codes = qp->weight, .scales = si, .out = out, .in = in,
                     .cols = cols, .gc = gc, .global = 1.0f};
    dta_status r = mx ? DTA_OK : read_f32_scalar(d, gi, &st->global, err);
    if (r == DTA_OK && strcmp(qp->name, c->name) && !(o->oname = dup_name(qp->name)))
        r = nomem(err);
    if (r != DTA_OK) {
        free(st);
        return r;
    }
    o->state = st;
    o->scale = si;
    o->rank = 2;
    o->shape[0] = out;
    o->shape[1] = in;
    o->numel = out * in;
    o->packed = (dtap_dq_packed){.kind = DQP_FP4, .flags = mx ? DQP_F_E8M0 : ct ? DQP_F_DIVIDE : 0,
                                 .t = {qp->weight, si, SIZE_MAX, SIZE_MAX}, .out = out,
                                 .in = in, .cols = cols, .groups = gc, .group = mx ? 32 : 16,
                                 .gbits = dqb_fbits(st->global)}; /* the device path */
    return DTA_OK;
}

static dta_status modelopt_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                                dtap_dq_plan *o, dta_error *err)
{
    return nv_plan_common(d, q, qp, o, NV_MODELOPT, err);
}

static dta_status ct_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                          dtap_dq_plan *o, dta_error *err)
{
    return nv_plan_common(d, q, qp, o, NV_CT, err);
}

static dta_status ct_mx_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                             dtap_dq_plan *o, dta_error *err)
{
    return nv_plan_common(d, q, qp, o, NV_CT_MX, err);
}

typedef struct {
    size_t cap;
    unsigned char data[];
} byte_cache;

static unsigned char *cache_bytes(void **cache, size_t need)
{
    byte_cache *c = *cache;
    if (!c || c->cap < need) {
        byte_cache *n = realloc(c, sizeof *c + need);
        if (!n)
            return NULL;
        *cache = c = n;
        c->cap = need;
    }
    return c->data;
}

/* An expert stack's cache: the codes rows [8 g0, min(8 (g0 + ng), cols)) and the block
 * scale rows [g0, g0 + ng) of expert mat, whole rows (out bytes each). */
typedef struct {
    uint64_t mat, g0, ng; /* ng 0: nothing loaded */
    size_t cap;
    unsigned char data[];
} stack_cache;

static dta_status stack_load(dtap_dq_src *d, const nv_state *m, void **cache, uint64_t mat,
                             uint64_t g0, dta_error *err)
{
    uint64_t per = NV_SLAB / (9 * m->out); /* scale rows a load holds; out <= NV_MAX_COLS */
    uint64_t ng = per ? per : 1;
    if (ng > m->gc - g0)
        ng = m->gc - g0;
    uint64_t r0 = g0 * 8, r1 = (g0 + ng) * 8 < m->cols ? (g0 + ng) * 8 : m->cols;
    size_t nc = (size_t)((r1 - r0) * m->out), ns = (size_t)(ng * m->out);
    stack_cache *c = *cache;
    if (!c || c->cap < nc + ns) {
        stack_cache *n = realloc(c, sizeof *c + nc + ns);
        if (!n)
            return nomem(err);
        *cache = c = n;
        c->cap = nc + ns;
    }
    c->ng = 0; /* invalid until loaded */
    dta_status st = dtap_dq_read(d, m->codes, (mat * m->cols + r0) * m->out, nc, c->data, err);
    if (st == DTA_OK)
        st = dtap_dq_read(d, m->scales, (mat * m->gc + g0) * m->out, ns, c->data + nc, err);
    if (st == DTA_OK) {
        c->mat = mat;
        c->g0 = g0;
        c->ng = ng;
    }
    return st;
}

static dta_status stack_fill(dtap_dq_src *d, const nv_state *m, void **cache, uint64_t first,
                             size_t n, float *x, float *s, dta_error *err)
{
    uint64_t M = m->in * m->out;
    if (!n || !M)
        return DTA_OK;
    uint64_t mat = first / M, i = first % M / m->out, o = first % m->out;
    for (size_t k = 0; k < n;) {
        stack_cache *c = *cache;
        uint64_t g = i / 16;
        if (!c || c->ng == 0 || c->mat != mat || g < c->g0 || g >= c->g0 + c->ng) {
            dta_status st = stack_load(d, m, cache, mat, g, err);
            if (st != DTA_OK)
                return st;
            c = *cache;
        }
        uint64_t r0 = c->g0 * 8, r1 = (c->g0 + c->ng) * 8;
        if (r1 > m->cols)
            r1 = m->cols;
        const unsigned char *codes = c->data, *sc = c->data + (r1 - r0) * m->out;
        float gl = m->globals ? m->globals[mat] : m->global;
        /* the rest of row i of matrix mat, or of the range */
        size_t seg = m->out - o < n - k ? (size_t)(m->out - o) : n - k;
        const unsigned char *crow = codes + (i / 2 - r0) * m->out, *srow = sc + (g - c->g0) * m->out;
        unsigned shift = i & 1 ? 4 : 0;
        for (size_t j = 0; j < seg; j++) {
            x[k + j] = dqb_bitsf(dqp_e2m1((crow[o + j] >> shift) & 15));
            s[k + j] = dqb_bitsf(dqp_nvfp4_scale(srow[o + j], dqb_fbits(gl), 0));
        }
        k += seg;
        o += seg;
        if (o == m->out) {
            o = 0;
            if (++i == m->in) {
                i = 0;
                mat++;
            }
        }
    }
    return DTA_OK;
}

static dta_status nv_fill(dtap_dq_src *d, const dtap_dq_plan *p, void **cache, uint64_t first,
                          size_t n, float *x, float *s, dta_error *err)
{
    const nv_state *m = p->state;
    if (m->stack)
        return stack_fill(d, m, cache, first, n, x, s, err);
    uint64_t last = first + n - 1;
    uint64_t r0 = first / m->in, r1 = last / m->in;
    uint64_t cb0 = r0 * m->cols + (first % m->in) / 2, cb1 = r1 * m->cols + (last % m->in) / 2;
    unsigned bl = m->mx ? 32 : 16;
    uint64_t sb0 = r0 * m->gc + (first % m->in) / bl, sb1 = r1 * m->gc + (last % m->in) / bl;
    size_t nc = (size_t)(cb1 - cb0 + 1), ns = (size_t)(sb1 - sb0 + 1);
    unsigned char *buf = cache_bytes(cache, nc + ns);
    if (!buf)
        return nomem(err);
    dta_status st = dtap_dq_read(d, m->codes, cb0, nc, buf, err);
    if (st == DTA_OK)
        st = dtap_dq_read(d, m->scales, sb0, ns, buf + nc, err);
    if (st != DTA_OK)
        return st;
    /* the scales of the range, decoded once each: reused for x's 16 elements */
    uint64_t r = r0, i = first % m->in;
    float sc = 0.0f;
    uint64_t sc_at = UINT64_MAX;
    for (size_t k = 0; k < n; k++) {
        uint64_t cb = r * m->cols + i / 2 - cb0, sb = r * m->gc + i / bl - sb0;
        unsigned char byte = buf[cb];
        x[k] = dqb_bitsf(dqp_e2m1(dqp_nib_lo_first(byte, i)));
        if (sb != sc_at) {
            unsigned char u = buf[nc + sb];
            if (m->mx) /* 2^(u - 127) as compressed-tensors computes it: 255 is inf */
                sc = dqb_bitsf(dqp_e8m0(u, 1));
            else /* one f32 multiply (ModelOpt) or division (compressed-tensors) */
                sc = dqb_bitsf(dqp_nvfp4_scale(u, dqb_fbits(m->global), m->ct));
            sc_at = sb;
        }
        s[k] = sc;
        if (++i == m->in) {
            i = 0;
            r++;
        }
    }
    return DTA_OK;
}

const dtap_dq_ops dtap_dq_modelopt_nvfp4_ops = {
    .scheme = DTA_QS_MODELOPT_NVFP4, .plan = modelopt_plan, .fill = nv_fill, .release = nv_release};
const dtap_dq_ops dtap_dq_ct_nvfp4_ops = {
    .scheme = DTA_QS_CT_NVFP4, .plan = ct_plan, .fill = nv_fill, .release = nv_release};
const dtap_dq_ops dtap_dq_ct_mxfp4_ops = {
    .scheme = DTA_QS_CT_MXFP4, .plan = ct_mx_plan, .fill = nv_fill, .release = nv_release};
