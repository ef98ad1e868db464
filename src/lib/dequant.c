/* Dequantization of quantized parameters (dequant.h): the plan over a whole checkpoint,
 * and the exact element math.
 *
 * Every supported scheme is "codes times a scale broadcast from a grid": the codes of a
 * parameter are rows of `in` elements (the last dimension), stacked in `mats` matrices of
 * `out` rows; the scale grid has ceil(out/bm) x ceil(in/bn) entries per matrix. Per-tensor
 * scales are one block of the whole tensor, per-row scales blocks of 1 x in, groups blocks
 * of 1 x g, fine-grained FP8 blocks of 128 x 128 (ragged at the edges: integer division
 * of the index, shared/quant.md 1.6 and 2.4).
 *
 * Element math (shared/quant.md 1.3-1.4, 2.4): x = decode(code) exactly in f32 (float8
 * as c10 decodes it, int8 as its integer), s = the scale exactly in f32 (F32, BF16, F16;
 * an E8M0 exponent byte as 2^(u-127)), p = x * s in one f32 multiply (round to nearest
 * even), then p rounded once to the target (convert_bits.h). The f32 multiply is plain C
 * `float` arithmetic: FLT_EVAL_METHOD must be 0 (checked below), and nothing is fused
 * (a single multiply). */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "convert_bits.h"
#include "dequant.h"
#include "dequant_dev.h"
#include "dequant_scheme.h"
#include "dtaudit/quant.h"
#include "src.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "dequant.c needs FLT_EVAL_METHOD == 0 (f32 products rounded as f32)"
#endif

#define DQ_MAX_ELEMS (1u << 20)   /* elements per dtap_dq_run */
#define DQ_SCALE_WINDOW 4096u     /* decoded scale entries kept at a time (at least a row) */
#define DQ_MAX_SCALE_ROW (1u << 22) /* entries of one grid row we agree to hold */
#define DQ_PT_COLS 256u           /* product tables: at most this many column blocks */
#define DQ_PT_MIN_ROWS 16u        /* ... and only when a scale covers this many rows */

typedef struct {
    size_t weight, scale;      /* tensor indices in w (scale: SIZE_MAX never for supported) */
    dta_quant_scheme scheme;
    dta_dtype code, sdt;       /* codes' and scale's dtypes */
    bool e8m0_u8;              /* scale is U8 exponent bytes */
    int rank;
    uint64_t shape[DTA_MAX_RANK];
    uint64_t numel, in, out, mats, bm, bn, gr, gc;
    const dtap_dq_ops *ops;    /* a scheme module's parameter (dequant_scheme.h), else NULL */
    dtap_dq_plan xp;
} dq_param;

typedef struct {
    const char *name;
    int kind;
    size_t param;
} dq_name;

struct dtap_dq {
    const dta_model *w;
    dq_param *p;
    size_t np;
    dq_name *names;            /* sorted by name */
    size_t nnames;
    dtap_dq_src *src;          /* the files (dequant_src.c) */
    unsigned char *codes;      /* DQ_MAX_ELEMS code bytes */
    unsigned char *sraw;       /* raw scale bytes of the window */
    float *sdec;               /* decoded window */
    size_t scap;               /* entries of sraw/sdec */
    size_t spar;               /* parameter whose window is cached, SIZE_MAX none */
    uint64_t s0, s1;           /* cached grid entries [s0, s1) */
    uint32_t lut[256];         /* code -> f32 bits of the codes' dtype */
    dta_dtype lut_dtype;
    /* scheme modules (dequant_scheme.h) */
    float *xbuf, *sbuf;        /* x and s of a run, DQ_MAX_ELEMS each, allocated on use */
    size_t xpar;               /* parameter owning xcache, SIZE_MAX none */
    void *xcache;
    void *pkcache;             /* dequant_packed.c's gathered bytes (device jobs) */
    dq_name *onames;           /* renamed outputs (xp.oname), sorted by name */
    size_t nonames;
    /* Product tables (block and per-tensor scales, where a scale covers many rows): per
     * column block c of the current grid row, the encoded result and class of every code
     * times that block's scale, computed by the per-element code (one_value), built when
     * first needed and kept while the grid row, target and mode stay the same. */
    uint32_t *pres;            /* [DQ_PT_COLS][256] */
    uint8_t *pcls;             /* [DQ_PT_COLS][256] DTAB_* */
    uint8_t *pbuilt;           /* [DQ_PT_COLS] */
    size_t ppar;               /* key: parameter (SIZE_MAX none), grid entry, target, mode */
    uint64_t prow;
    dta_dtype pto;
    int psat;
};

size_t dtap_dq_max_elems(void) { return DQ_MAX_ELEMS; }

/* scheme modules (dequant_scheme.h), defined at the end of this file */
static dta_status plan_ext(dtap_dq *d, const dta_quant *q, const dta_quant_param *qp,
                           const dtap_dq_ops *ops, dq_param *o, dta_error *err);
static dta_status index_onames(dtap_dq *d, dta_error *err);
static void drop_xcache(dtap_dq *d);
static dta_status run_ext(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                          dta_overflow_mode mode, void *dst, dta_convert_stats *stats,
                          dta_error *err);

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const dq_name *)a)->name, ((const dq_name *)b)->name);
}

static const dq_name *find_name(const dtap_dq *d, const char *name)
{
    dq_name key = {name, 0, 0};
    return bsearch(&key, d->names, d->nnames, sizeof key, cmp_name);
}

int dtap_dq_role(const dtap_dq *d, const char *name, size_t *param)
{
    const dq_name *n = d ? find_name(d, name) : NULL;
    if (!n)
        return DTAP_DQ_PLAIN;
    if (param)
        *param = n->param;
    return n->kind;
}

bool dtap_dq_dropped(const dtap_dq *d, const char *name)
{
    return dtap_dq_role(d, name, NULL) == DTAP_DQ_DROP;
}

bool dtap_dq_drops_metadata(const char *key)
{
    return !strcmp(key, "_quantization_metadata");
}

void dtap_dq_shape(const dtap_dq *d, size_t p, int *rank, const uint64_t **shape,
                   uint64_t *numel)
{
    *rank = d->p[p].rank;
    *shape = d->p[p].shape;
    *numel = d->p[p].numel;
}

const char *dtap_dq_scale_name(const dtap_dq *d, size_t p)
{
    return d->w->tensors[d->p[p].scale].name;
}

const char *dtap_dq_scheme(const dtap_dq *d, size_t p)
{
    return dta_quant_scheme_name(d->p[p].scheme);
}

void dtap_dq_free(dtap_dq *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->p && i < d->np; i++)
        if (d->p[i].ops) {
            if (d->p[i].ops->release)
                d->p[i].ops->release(d->p[i].xp.state);
            free(d->p[i].xp.oname);
        }
    free(d->xbuf);
    free(d->sbuf);
    drop_xcache(d);
    dtap_dq_packed_free(d->pkcache);
    free(d->onames);
    dtap_dq_src_free(d->src);
    free(d->p);
    free(d->names);
    free(d->codes);
    free(d->sraw);
    free(d->sdec);
    free(d->pres);
    free(d->pcls);
    free(d->pbuilt);
    free(d);
}

/* ---- the plan --------------------------------------------------------------------------- */

static bool supported_scheme(dta_quant_scheme s)
{
    return s == DTA_QS_FP8_BLOCK || s == DTA_QS_FP8 || s == DTA_QS_FBGEMM_FP8 ||
           s == DTA_QS_MODELOPT_FP8 || s == DTA_QS_CT_FLOAT || s == DTA_QS_CT_INT;
}

static const char *SUPPORTED =
    "dtaudit dequantizes fp8-block, fp8, fbgemm-fp8, modelopt-fp8, compressed-tensors-float, "
    "compressed-tensors-int (symmetric)";
static void supported_list(char *buf, size_t cap); /* SUPPORTED and the scheme modules' */

static dta_status refuse(dta_error *err, const char *fmt, const char *a, const char *b)
{
    return dta_error_set(err, DTA_E_REFUSED, 0, fmt, a, b);
}

/* A compressed-tensors config whose weights are not just quantized (rotations, sparsity):
 * dequantizing alone does not give the plain weights (shared/quant.md 3.6). */
static dta_status config_refusals(const dta_model *w, dta_error *err)
{
    if (!w->quant_config)
        return DTA_OK;
    cJSON *doc = cJSON_Parse(w->quant_config);
    if (!doc)
        return DTA_OK; /* quant.c already judged the config */
    const char *why = NULL;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(doc, "transform_config");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(doc, "sparsity_config");
    if (tc && !cJSON_IsNull(tc) && !(cJSON_IsObject(tc) && !tc->child))
        why = "transform_config (rotated / Hadamard-transformed weights)";
    else if (sc && !cJSON_IsNull(sc) && !(cJSON_IsObject(sc) && !sc->child))
        why = "sparsity_config (sparse weights)";
    else if (cJSON_GetObjectItemCaseSensitive(doc, "rotation"))
        why = "rotation (rotated weights)";
    dta_status st = DTA_OK;
    if (why)
        st = refuse(err, "dequantize: the quantization config has %s, which dequantizing alone "
                    "cannot undo; nothing written%s", why, "");
    cJSON_Delete(doc);
    return st;
}

static dta_status plan_param(const dtap_dq *d, const dta_quant *q, const dta_quant_param *qp,
                             dq_param *o, dta_error *err)
{
    const dta_model *w = d->w;
    const dta_tensor *t = &w->tensors[qp->weight];
    char what[96];
    snprintf(what, sizeof what, "%s", dta_quant_scheme_name(qp->scheme));
    memset(o, 0, sizeof *o);
    o->weight = qp->weight;
    o->scheme = qp->scheme;
    o->code = t->dtype;
    if (!supported_scheme(qp->scheme)) {
        char sup[512];
        supported_list(sup, sizeof sup);
        return dta_error_set(err, DTA_E_REFUSED, 0,
                             "dequantize: '%.200s' is quantized as %s, which dtaudit does not "
                             "dequantize (%s); nothing written",
                             qp->name, what, sup);
    }
    if (qp->broken || qp->cast)
        return refuse(err, "dequantize: '%.200s' is %s; see 'dtaudit audit' (rules "
                      "quant-incomplete, quant-cast); nothing written", qp->name,
                      qp->broken ? "incomplete" : "high-precision codes beside quantization "
                                                  "companions");
    bool fp8 = t->dtype == DTA_F8_E4M3 || t->dtype == DTA_F8_E5M2 ||
               t->dtype == DTA_F8_E4M3FNUZ || t->dtype == DTA_F8_E5M2FNUZ;
    if (!(fp8 || (qp->scheme == DTA_QS_CT_INT && t->dtype == DTA_I8)))
        return refuse(err, "dequantize: '%.200s' holds %s codes, which its scheme does not "
                      "store; nothing written", qp->name, dta_dtype_name(t->dtype));
    if (dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_G_IDX) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_GLOBAL_SCALE) != SIZE_MAX)
        return refuse(err, "dequantize: '%.200s' has a zero point, g_idx or global scale, "
                      "which dtaudit does not apply for %s; nothing written", qp->name, what);
    size_t si = dtap_dq_comp(q, qp, qp->scheme == DTA_QS_FP8_BLOCK ? DTA_QR_SCALE_INV
                                                                   : DTA_QR_SCALE);
    if (si == SIZE_MAX)
        return refuse(err, "dequantize: '%.200s' has no scale (%s); nothing written", qp->name,
                      what);
    const dta_tensor *s = &w->tensors[si];
    if (!dtap_dq_stored_plain(d->src, qp->weight) || !dtap_dq_stored_plain(d->src, si))
        return refuse(err, "dequantize: '%.200s' or its scale is not a plain stored tensor "
                      "(%s); nothing written", qp->name, "a safetensors input is needed");
    o->scale = si;
    o->sdt = s->dtype;
    if (s->dtype == DTA_U8 && qp->scheme == DTA_QS_FP8_BLOCK)
        o->e8m0_u8 = true;
    else if (s->dtype != DTA_F32 && s->dtype != DTA_BF16 && s->dtype != DTA_F16 &&
             s->dtype != DTA_F8_E8M0)
        return refuse(err, "dequantize: the scale of '%.200s' is %s, not F32, BF16, F16 or "
                      "E8M0; nothing written", qp->name, dta_dtype_name(s->dtype));
    if (t->rank < 1 || t->rank > DTA_MAX_RANK)
        return refuse(err, "dequantize: '%.200s' has rank 0%s; nothing written", qp->name, "");
    o->rank = t->rank;
    for (int k = 0; k < t->rank; k++)
        o->shape[k] = t->shape[k];
    o->numel = t->numel;
    o->in = t->shape[t->rank - 1];
    uint64_t rows = o->in ? t->numel / o->in : 0;
    /* the grid */
    bool ok = false;
    if (qp->scheme == DTA_QS_FP8_BLOCK) {
        o->bm = q->block[0] ? q->block[0] : 128;
        o->bn = q->block[1] ? q->block[1] : 128;
        if (t->rank >= 2 && s->rank == t->rank) {
            o->out = t->shape[t->rank - 2];
            o->mats = o->out ? rows / o->out : 0;
            ok = s->shape[s->rank - 2] == dtap_cdiv(o->out, o->bm) &&
                 s->shape[s->rank - 1] == dtap_cdiv(o->in, o->bn);
            for (int k = 0; ok && k < t->rank - 2; k++)
                ok = s->shape[k] == t->shape[k];
        }
    } else if (s->numel == 1) { /* per tensor */
        o->out = rows;
        o->mats = 1;
        o->bm = rows ? rows : 1;
        o->bn = o->in ? o->in : 1;
        ok = true;
    } else if (t->rank == 2) {
        o->out = rows;
        o->mats = 1;
        uint64_t sr = s->rank >= 1 ? s->shape[0] : 0, sc = s->rank == 2 ? s->shape[1] : 1;
        if (s->rank > 2)
            ok = false;
        else if (sr == rows && sc == 1) { /* per row: [out] or [out, 1] */
            o->bm = 1;
            o->bn = o->in ? o->in : 1;
            ok = true;
        } else if (s->rank == 2 && q->block[0] && q->block[1]) { /* block grid */
            o->bm = q->block[0];
            o->bn = q->block[1];
            ok = sr == dtap_cdiv(rows, o->bm) && sc == dtap_cdiv(o->in, o->bn);
        } else if (s->rank == 2 && q->group && sr == rows) { /* groups along the input */
            o->bm = 1;
            o->bn = q->group;
            ok = sc == dtap_cdiv(o->in, o->bn);
        }
    }
    if (!ok || !o->bm || !o->bn)
        return refuse(err, "dequantize: the scale of '%.200s' does not fit its codes as a "
                      "per-tensor, per-row, group or block scale (%s); nothing written",
                      qp->name, what);
    o->gr = dtap_cdiv(o->out, o->bm);
    o->gc = dtap_cdiv(o->in, o->bn);
    if (o->gc > DQ_MAX_SCALE_ROW)
        return refuse(err, "dequantize: the scale grid of '%.200s' has rows of more than "
                      "4194304 entries%s; nothing written", qp->name, "");
    return DTA_OK;
}

dta_status dtap_dq_open(const dta_model *w, dtap_dq **out, dta_error *err)
{
    dta_quant *q = NULL;
    *out = NULL;
    dta_status st = dta_quant_analyse(w, &q, err);
    if (st != DTA_OK)
        return st;
    if (q->scheme == DTA_QS_NONE && q->nparams == 0) {
        dta_quant_free(q);
        return DTA_OK;
    }
    if (q->scheme == DTA_QS_UNKNOWN && q->nparams == 0) {
        st = dta_error_set(err, DTA_E_REFUSED, 0,
                           "dequantize: the quantization config names '%.100s', a method "
                           "dtaudit does not know; nothing written",
                           q->method ? q->method : "?");
        dta_quant_free(q);
        return st;
    }
    dtap_dq *d = calloc(1, sizeof *d);
    if (!d) {
        dta_quant_free(q);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    d->w = w;
    d->spar = SIZE_MAX;
    d->xpar = SIZE_MAX;
    d->ppar = SIZE_MAX;
    d->p = calloc(q->nparams ? q->nparams : 1, sizeof *d->p);
    d->names = calloc(w->ntensors ? w->ntensors : 1, sizeof *d->names);
    size_t *pmap = malloc((q->nparams ? q->nparams : 1) * sizeof *pmap);
    if (!d->p || !d->names || !pmap) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    if ((st = dtap_dq_src_new(w, &d->src, err)) != DTA_OK)
        goto fail;
    if ((st = config_refusals(w, err)) != DTA_OK)
        goto fail;
    for (size_t i = 0; i < q->nparams; i++) {
        const dta_quant_param *qp = &q->params[i];
        pmap[i] = SIZE_MAX;
        if (qp->weight == SIZE_MAX) {
            /* activation / kv-cache scales alone are dropped; other orphans refused */
            bool only_act = true;
            for (size_t k = 0; k < qp->ntensors; k++) {
                dta_quant_role r = q->tensor_role[qp->tensors[k]];
                only_act = only_act && (r == DTA_QR_INPUT_SCALE || r == DTA_QR_KV_SCALE);
            }
            if (!only_act) {
                st = refuse(err, "dequantize: '%.200s' has quantization companions but no "
                            "codes (%s); nothing written", qp->name,
                            dta_quant_scheme_name(qp->scheme));
                goto fail;
            }
            continue;
        }
        const dtap_dq_ops *ops = dtap_dq_find_ops(qp->scheme);
        if ((st = ops ? plan_ext(d, q, qp, ops, &d->p[d->np], err)
                      : plan_param(d, q, qp, &d->p[d->np], err)) != DTA_OK) {
            goto fail;
        }
        pmap[i] = d->np++;
    }
    for (size_t i = 0; i < w->ntensors; i++) {
        const dta_tensor *t = &w->tensors[i];
        int32_t pi = q->tensor_param[i];
        dq_name *n = &d->names[d->nnames];
        n->name = t->name;
        if (pi >= 0 && pmap[pi] != SIZE_MAX && q->params[pi].weight == i) {
            n->kind = DTAP_DQ_WEIGHT;
            n->param = pmap[pi];
        } else if (pi >= 0 || q->tensor_role[i] != DTA_QR_NONE) {
            n->kind = DTAP_DQ_DROP;
        } else {
            if (t->dtype == DTA_F8_E4M3 || t->dtype == DTA_F8_E5M2 ||
                t->dtype == DTA_F8_E4M3FNUZ || t->dtype == DTA_F8_E5M2FNUZ) {
                /* fp8_cast_bf16.py's bug: raw codes written as if they were values */
                st = refuse(err, "dequantize: '%.200s' is %s with no scale in a quantized "
                            "checkpoint; its values are unknown; nothing written", t->name,
                            dta_dtype_name(t->dtype));
                goto fail;
            }
            continue;
        }
        d->nnames++;
    }
    qsort(d->names, d->nnames, sizeof *d->names, cmp_name);
    if ((st = index_onames(d, err)) != DTA_OK)
        goto fail;
    d->codes = malloc(DQ_MAX_ELEMS);
    if (!d->codes) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    free(pmap);
    dta_quant_free(q);
    *out = d;
    return DTA_OK;
fail:
    free(pmap);
    dta_quant_free(q);
    dtap_dq_free(d);
    return st;
}

/* ---- data ------------------------------------------------------------------------------- */

/* Bytes [off, off + n) of tensor t's data. */
static dta_status read_tensor(dtap_dq *d, const dta_tensor *t, uint64_t off, size_t n, void *buf,
                              dta_error *err)
{
    return dtap_dq_read_tensor(d->src, t, off, n, buf, err);
}

/* Decoded scale entries [e, ...) of parameter pi's grid into the window; at least
 * through e + need - 1. */
static dta_status load_scales(dtap_dq *d, size_t pi, uint64_t e, uint64_t need, dta_error *err)
{
    const dq_param *p = &d->p[pi];
    const dta_tensor *s = &d->w->tensors[p->scale];
    if (d->spar == pi && e >= d->s0 && e + need <= d->s1)
        return DTA_OK;
    size_t want = need > DQ_SCALE_WINDOW ? (size_t)need : DQ_SCALE_WINDOW;
    if (want > s->numel - e)
        want = (size_t)(s->numel - e);
    if (want < need)
        return dta_error_set(err, DTA_E_FORMAT, 0, "scale of '%.200s' is shorter than its grid",
                             d->w->tensors[p->weight].name);
    unsigned es = (unsigned)dta_dtype_elem_size(s->dtype);
    if (want > d->scap) {
        unsigned char *r = realloc(d->sraw, want * 4);
        if (r)
            d->sraw = r;
        float *f = r ? realloc(d->sdec, want * sizeof *f) : NULL;
        if (f)
            d->sdec = f;
        if (!r || !f)
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        d->scap = want;
    }
    d->spar = SIZE_MAX;
    dta_status st = read_tensor(d, s, e * es, want * es, d->sraw, err);
    if (st != DTA_OK)
        return st;
    for (size_t k = 0; k < want; k++) {
        const unsigned char *b = d->sraw + k * es;
        uint32_t bits;
        switch (es) {
        case 4:
            bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                   (uint32_t)b[3] << 24;
            break;
        case 2:
            bits = dtab_decode(p->sdt, (uint32_t)b[0] | (uint32_t)b[1] << 8);
            break;
        default:
            if (p->e8m0_u8) /* transformers: exp2(u - 127) in f32; 255 is 2^128 = inf */
                bits = b[0] == 255 ? 0x7F800000u : b[0] ? (uint32_t)b[0] << 23 : 0x00400000u;
            else
                bits = dtab_f8_to_f32(DTA_F8_E8M0, b[0]);
            break;
        }
        memcpy(&d->sdec[k], &bits, 4);
    }
    d->spar = pi;
    d->s0 = e;
    d->s1 = e + want;
    return DTA_OK;
}

static void build_lut(dtap_dq *d, dta_dtype code)
{
    if (d->lut_dtype == code)
        return;
    for (unsigned c = 0; c < 256; c++) {
        if (code == DTA_I8) {
            float f = (float)(int8_t)(uint8_t)c;
            memcpy(&d->lut[c], &f, 4);
        } else {
            d->lut[c] = dtab_f8_to_f32(code, (uint8_t)c);
        }
    }
    d->lut_dtype = code;
}

static inline int is_nonfinite(uint32_t b) { return (b & 0x7F800000u) == 0x7F800000u; }

/* One element: the target's bits of RNE_to(f32(code) * s) for the code's f32 bits xb, and
 * its class (*cls, DTAB_*) as dta_convert counts it (dequant_bits.h, shared with the CUDA
 * kernels). */
static inline uint32_t one_value(uint32_t xb, float s, dta_dtype to, int sat, int *cls)
{
    uint32_t sb;
    memcpy(&sb, &s, 4);
    return dqb_one((int)to, DTA_BOOL, sat, xb, sb, cls);
}

/* The product table of column block c (scale s) for the grid row at entry row. NULL when
 * the tables do not pay (scales covering few rows, wide grids) or memory is short. */
static const uint32_t *product_table(dtap_dq *d, size_t pi, uint64_t row, uint64_t c, float s,
                                     dta_dtype to, int sat, const uint8_t **cls)
{
    const dq_param *p = &d->p[pi];
    if (p->gc > DQ_PT_COLS || p->bm < DQ_PT_MIN_ROWS || c >= DQ_PT_COLS)
        return NULL;
    if (!d->pres) {
        d->pres = malloc((size_t)DQ_PT_COLS * 256 * sizeof *d->pres);
        d->pcls = malloc((size_t)DQ_PT_COLS * 256);
        d->pbuilt = calloc(DQ_PT_COLS, 1);
        if (!d->pres || !d->pcls || !d->pbuilt) {
            free(d->pres);
            free(d->pcls);
            free(d->pbuilt);
            d->pres = NULL;
            d->pcls = d->pbuilt = NULL;
            return NULL;
        }
    }
    if (d->ppar != pi || d->prow != row || d->pto != to || d->psat != sat) {
        memset(d->pbuilt, 0, DQ_PT_COLS);
        d->ppar = pi;
        d->prow = row;
        d->pto = to;
        d->psat = sat;
    }
    uint32_t *res = d->pres + c * 256;
    uint8_t *cl = d->pcls + c * 256;
    if (!d->pbuilt[c]) {
        for (unsigned k = 0; k < 256; k++) {
            int x;
            res[k] = one_value(d->lut[k], s, to, sat, &x);
            cl[k] = (uint8_t)x;
        }
        d->pbuilt[c] = 1;
    }
    *cls = cl;
    return res;
}

/* The arguments of a run: elements [first, first + n) of p, at most DQ_MAX_ELEMS, to a
 * target dtaudit dequantizes to. */
static dta_status check_range(const dq_param *p, uint64_t first, size_t n, dta_dtype to,
                              dta_error *err)
{
    if (n > DQ_MAX_ELEMS || first > p->numel || n > p->numel - first)
        return dta_error_set(err, DTA_E_ARG, 0, "dequantize: range out of bounds");
    if (to != DTA_F32 && to != DTA_F16 && to != DTA_BF16)
        return dta_error_set(err, DTA_E_ARG, 0, "dequantize: target must be F32, F16 or BF16");
    return DTA_OK;
}

dta_status dtap_dq_run(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                       dta_overflow_mode mode, void *dst, dta_convert_stats *stats,
                       dta_error *err)
{
    const dq_param *p = &d->p[pi];
    if (p->ops && !p->xp.grid_in)
        return run_ext(d, pi, first, n, to, mode, dst, stats, err);
    const dta_tensor *t = &d->w->tensors[p->weight];
    unsigned char *o = dst;
    unsigned eo = (unsigned)dta_dtype_elem_size(to);
    int sat = mode == DTA_OVERFLOW_SATURATE;
    uint64_t cnt[5] = {0};
    dta_status st = check_range(p, first, n, to, err);
    if (st == DTA_OK)
        st = read_tensor(d, t, first, n, d->codes, err);
    if (st != DTA_OK)
        return st;
    build_lut(d, p->code);
    size_t k = 0;
    while (k < n) {
        uint64_t e = first + k, R = e / p->in, i = e % p->in;
        uint64_t seg = p->in - i < n - k ? p->in - i : n - k;
        uint64_t mat = R / p->out, r = R % p->out;
        uint64_t srow = (mat * p->gr + r / p->bm) * p->gc;
        uint64_t c0 = i / p->bn, c1 = (i + seg - 1) / p->bn;
        if ((st = load_scales(d, pi, srow + c0, c1 - c0 + 1, err)) != DTA_OK)
            return st;
        const float *srowp = d->sdec + (srow + c0 - d->s0);
        for (uint64_t c = c0; c <= c1; c++) {
            uint64_t a = c * p->bn > i ? c * p->bn : i;
            uint64_t b = (c + 1) * p->bn < i + seg ? (c + 1) * p->bn : i + seg;
            float s = srowp[c - c0];
            uint32_t sb;
            memcpy(&sb, &s, 4);
            int sfin = !is_nonfinite(sb), snz = (sb & 0x7FFFFFFFu) != 0;
            const uint8_t *pcl;
            const uint32_t *pt = product_table(d, pi, srow, c, s, to, sat, &pcl);
            if (pt) {
                /* a table lookup per element; the classes counted only when one is not
                 * fine (the results are the table's either way) */
                unsigned sus = 0;
                unsigned char *q = o + (size_t)(k + (a - i)) * eo;
                const unsigned char *cp = d->codes + (size_t)(k + (a - i));
                size_t len = (size_t)(b - a);
                if (eo == 2) {
                    for (size_t jj = 0; jj < len; jj++) {
                        unsigned cc = cp[jj];
                        uint32_t r = pt[cc];
                        sus |= pcl[cc];
                        q[2 * jj] = (unsigned char)r;
                        q[2 * jj + 1] = (unsigned char)(r >> 8);
                    }
                } else {
                    for (size_t jj = 0; jj < len; jj++) {
                        unsigned cc = cp[jj];
                        uint32_t r = pt[cc];
                        sus |= pcl[cc];
                        q[4 * jj] = (unsigned char)r;
                        q[4 * jj + 1] = (unsigned char)(r >> 8);
                        q[4 * jj + 2] = (unsigned char)(r >> 16);
                        q[4 * jj + 3] = (unsigned char)(r >> 24);
                    }
                }
                if (!sus)
                    cnt[DTAB_FINE] += len;
                else
                    for (size_t jj = 0; jj < len; jj++)
                        cnt[pcl[cp[jj]]]++;
                continue;
            }
            if (to == DTA_BF16 && sfin) {
                /* fast path: branch-free products and RNE; any element that needs a class
                 * (NaN, inf, overflow, a nonzero product lost to zero) sends the run to the
                 * careful loop below, which rewrites it */
                unsigned sus = 0;
                unsigned char *q = o + (size_t)(k + (a - i)) * 2;
                const unsigned char *cp = d->codes + (size_t)(k + (a - i));
                for (uint64_t j = 0; j < b - a; j++) {
                    uint32_t xb = d->lut[cp[j]], pb, r;
                    float x, prod;
                    memcpy(&x, &xb, 4);
                    prod = x * s;
                    memcpy(&pb, &prod, 4);
                    r = (pb + 0x7FFFu + ((pb >> 16) & 1u)) >> 16;
                    sus |= ((r & 0x7F80u) == 0x7F80u) |
                            (((r & 0x7FFFu) == 0) &
                             (((pb & 0x7FFFFFFFu) != 0) | (snz & ((xb & 0x7FFFFFFFu) != 0))));
                    q[2 * j] = (unsigned char)r;
                    q[2 * j + 1] = (unsigned char)(r >> 8);
                }
                if (!sus) {
                    cnt[DTAB_FINE] += b - a;
                    continue;
                }
            }
            for (uint64_t j = a; j < b; j++) {
                size_t at = (size_t)(k + (j - i));
                int cls;
                uint32_t r16 = one_value(d->lut[d->codes[at]], s, to, sat, &cls);
                cnt[cls]++;
                unsigned char *q = o + at * eo;
                if (eo == 4) {
                    q[0] = (unsigned char)r16;
                    q[1] = (unsigned char)(r16 >> 8);
                    q[2] = (unsigned char)(r16 >> 16);
                    q[3] = (unsigned char)(r16 >> 24);
                } else {
                    q[0] = (unsigned char)r16;
                    q[1] = (unsigned char)(r16 >> 8);
                }
            }
        }
        k += (size_t)seg;
    }
    dtap_dq_stats_add(stats, n, cnt);
    return DTA_OK;
}

/* ---- scheme modules (dequant_scheme.h) -------------------------------------------------- */

static void supported_list(char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "%s", SUPPORTED);
    size_t nops = dtap_dq_nops();
    for (size_t i = 0; i < nops && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s %s", i + 1 == nops ? " and" : ",",
                              dta_quant_scheme_name(dtap_dq_ops_at(i)->scheme));
}

static void drop_xcache(dtap_dq *d)
{
    free(d->xcache);
    d->xcache = NULL;
}

const char *dtap_dq_out_name(const dtap_dq *d, size_t p)
{
    return d->p[p].ops && d->p[p].xp.oname ? d->p[p].xp.oname
                                            : d->w->tensors[d->p[p].weight].name;
}

bool dtap_dq_find_out(const dtap_dq *d, const char *name, size_t *param)
{
    if (!d || !d->nonames)
        return false;
    dq_name key = {name, 0, 0};
    const dq_name *n = bsearch(&key, d->onames, d->nonames, sizeof key, cmp_name);
    if (n && param)
        *param = n->param;
    return n != NULL;
}

static dta_status plan_ext(dtap_dq *d, const dta_quant *q, const dta_quant_param *qp,
                           const dtap_dq_ops *ops, dq_param *o, dta_error *err)
{
    memset(o, 0, sizeof *o);
    o->weight = qp->weight;
    o->scheme = qp->scheme;
    o->code = d->w->tensors[qp->weight].dtype;
    if (qp->broken || qp->cast)
        return refuse(err, "dequantize: '%.200s' is %s; see 'dtaudit audit' (rules "
                      "quant-incomplete, quant-cast); nothing written", qp->name,
                      qp->broken ? "incomplete" : "high-precision codes beside quantization "
                                                  "companions");
    dtap_dq_plan xp;
    memset(&xp, 0, sizeof xp);
    xp.scale = SIZE_MAX;
    dta_status st = ops->plan(d->src, q, qp, &xp, err);
    if (st == DTA_OK && (xp.scale == SIZE_MAX || xp.rank < 1 || xp.rank > DTA_MAX_RANK))
        st = dta_error_set(err, DTA_E_ARG, 0, "dequantize: bad plan for '%.200s'",
                           qp->name);
    if (st != DTA_OK) {
        if (ops->release)
            ops->release(xp.state);
        free(xp.oname);
        return st;
    }
    if (xp.grid_in) { /* codes times a scale grid: the block-FP8 path below */
        const dta_tensor *t = &d->w->tensors[qp->weight], *s = &d->w->tensors[xp.scale];
        uint64_t rows = t->numel / xp.grid_in;
        bool f8 = t->dtype == DTA_F8_E4M3 || t->dtype == DTA_F8_E5M2;
        if (!f8 || (s->dtype != DTA_F32 && s->dtype != DTA_BF16 && s->dtype != DTA_F16) ||
            !xp.grid_bm || !xp.grid_bn || xp.numel != t->numel || t->numel % xp.grid_in ||
            dtap_cdiv(rows, xp.grid_bm) * dtap_cdiv(xp.grid_in, xp.grid_bn) > s->numel ||
            dtap_cdiv(xp.grid_in, xp.grid_bn) > DQ_MAX_SCALE_ROW) {
            if (ops->release)
                ops->release(xp.state);
            free(xp.oname);
            return dta_error_set(err, DTA_E_ARG, 0, "dequantize: bad grid plan for '%.200s'",
                                 qp->name);
        }
        o->code = t->dtype;
        o->sdt = s->dtype;
        o->in = xp.grid_in;
        o->out = rows;
        o->mats = 1;
        o->bm = xp.grid_bm;
        o->bn = xp.grid_bn;
        o->gr = dtap_cdiv(rows, o->bm);
        o->gc = dtap_cdiv(o->in, o->bn);
    }
    o->ops = ops;
    o->xp = xp;
    o->scale = xp.scale;
    o->rank = xp.rank;
    for (int k = 0; k < xp.rank; k++)
        o->shape[k] = xp.shape[k];
    o->numel = xp.numel;
    return DTA_OK;
}

static dta_status index_onames(dtap_dq *d, dta_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < d->np; i++)
        n += d->p[i].ops && d->p[i].xp.oname;
    if (!n)
        return DTA_OK;
    if (!(d->onames = calloc(n, sizeof *d->onames)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < d->np; i++)
        if (d->p[i].ops && d->p[i].xp.oname)
            d->onames[d->nonames++] = (dq_name){d->p[i].xp.oname, DTAP_DQ_WEIGHT, i};
    qsort(d->onames, d->nonames, sizeof *d->onames, cmp_name);
    /* an output name that is also a tensor the output keeps, or twice an output */
    const dta_model *w = d->w;
    dq_name *all = malloc((w->ntensors ? w->ntensors : 1) * sizeof *all);
    if (!all)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < w->ntensors; i++)
        all[i] = (dq_name){w->tensors[i].name, 0, i};
    qsort(all, w->ntensors, sizeof *all, cmp_name);
    dta_status st = DTA_OK;
    for (size_t i = 0; i < d->nonames && st == DTA_OK; i++) {
        const char *nm = d->onames[i].name;
        dq_name key = {nm, 0, 0};
        bool input = bsearch(&key, all, w->ntensors, sizeof key, cmp_name) != NULL &&
                     dtap_dq_role(d, nm, NULL) != DTAP_DQ_DROP;
        if (input || (i && !strcmp(nm, d->onames[i - 1].name)))
            st = refuse(err, "dequantize: the plain tensor '%.200s' would be written twice "
                        "(it is also %s); nothing written", nm,
                        input ? "an input tensor" : "another parameter's output");
    }
    free(all);
    return st;
}

/* The operands of elements [first, first + n) of a scheme module's parameter: x and s
 * (ops->fill), or the f32 results and flags (ops->values), in xbuf and sbuf. */
static dta_status ext_job(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                          dta_overflow_mode mode, dqb_job *j, dta_error *err)
{
    const dq_param *p = &d->p[pi];
    dta_status st = check_range(p, first, n, to, err);
    if (st != DTA_OK)
        return st;
    if (!d->xbuf && !(d->xbuf = malloc(DQ_MAX_ELEMS * sizeof *d->xbuf)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (!d->sbuf && !(d->sbuf = malloc(DQ_MAX_ELEMS * sizeof *d->sbuf)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (d->xpar != pi) {
        drop_xcache(d);
        d->xpar = pi;
    }
    memset(j, 0, sizeof *j);
    j->to = (int)to;
    j->sat = mode == DTA_OVERFLOW_SATURATE;
    j->mid = p->xp.mid == DTA_BF16 || p->xp.mid == DTA_F16 ? (int)p->xp.mid : DTA_BOOL;
    if (n == 0)
        return DTA_OK;
    j->n = n;
    if (p->xp.values) {
        /* the f32 results (in xbuf's bytes) and flags (in sbuf's) */
        _Static_assert((int)DQB_F_NONFINITE == (int)DTAP_DQF_NONFINITE &&
                           (int)DQB_F_NONZERO == (int)DTAP_DQF_NONZERO, "flag values");
        j->kind = DQB_VALUES;
        j->v = (uint32_t *)(void *)d->xbuf;
        j->fl = (uint8_t *)d->sbuf;
        return p->xp.values(d->src, &p->xp, &d->xcache, first, n, (uint32_t *)(void *)d->xbuf,
                            (uint8_t *)d->sbuf, err);
    }
    j->kind = DQB_XS;
    j->x = d->xbuf;
    j->s = d->sbuf;
    return p->ops->fill(d->src, &p->xp, &d->xcache, first, n, d->xbuf, d->sbuf, err);
}

/* The operands of elements [first, first + n) of a built-in (grid) parameter: the codes,
 * the lut and the decoded scale-grid rows the range touches. */
static dta_status grid_job(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                           dta_overflow_mode mode, dqb_job *j, dta_error *err)
{
    const dq_param *p = &d->p[pi];
    dta_status st = check_range(p, first, n, to, err);
    if (st != DTA_OK)
        return st;
    memset(j, 0, sizeof *j);
    j->kind = DQB_GRID;
    j->to = (int)to;
    j->sat = mode == DTA_OVERFLOW_SATURATE;
    j->mid = DTA_BOOL;
    if (n == 0)
        return DTA_OK;
    if ((st = read_tensor(d, &d->w->tensors[p->weight], first, n, d->codes, err)) != DTA_OK)
        return st;
    build_lut(d, p->code);
    uint64_t r0 = first / p->in, r1 = (first + n - 1) / p->in;
    uint64_t g0 = r0 / p->out * p->gr + r0 % p->out / p->bm;
    uint64_t g1 = r1 / p->out * p->gr + r1 % p->out / p->bm;
    if ((st = load_scales(d, pi, g0 * p->gc, (g1 - g0 + 1) * p->gc, err)) != DTA_OK)
        return st;
    j->n = n;
    j->first = first;
    j->in = p->in;
    j->out = p->out;
    j->bm = p->bm;
    j->bn = p->bn;
    j->gr = p->gr;
    j->gc = p->gc;
    j->g0 = g0;
    j->nscales = (g1 - g0 + 1) * p->gc;
    j->codes = d->codes;
    j->lut = d->lut;
    j->scales = d->sdec + (g0 * p->gc - d->s0);
    dqb_grid_prepare(j);
    return DTA_OK;
}

dta_status dtap_dq_job(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                       dta_overflow_mode mode, dqb_job *job, dta_error *err)
{
    /* a module's grid parameter (plan grid_in: ComfyUI FP8) is a grid one here too */
    return d->p[p].ops && !d->p[p].xp.grid_in ? ext_job(d, p, first, n, to, mode, job, err)
                                               : grid_job(d, p, first, n, to, mode, job, err);
}

dta_status dtap_dq_job_dev(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                           dta_overflow_mode mode, dqb_job *j, dta_error *err)
{
    const dq_param *p = &d->p[pi];
    if (!p->ops || p->xp.grid_in || !p->xp.packed.kind)
        return dtap_dq_job(d, pi, first, n, to, mode, j, err);
    dta_status st = check_range(p, first, n, to, err);
    if (st != DTA_OK)
        return st;
    memset(j, 0, sizeof *j);
    j->kind = DQB_PACKED;
    j->to = (int)to;
    j->sat = mode == DTA_OVERFLOW_SATURATE;
    j->mid = p->xp.mid == DTA_BF16 || p->xp.mid == DTA_F16 ? (int)p->xp.mid : DTA_BOOL;
    if (n == 0)
        return DTA_OK;
    return dtap_dq_packed_job(d->src, &p->xp.packed, pi, &d->pkcache, first, n, j, err);
}

/* p = x * s for every element (dqb_elem, the CUDA kernels' element function). */
static dta_status run_ext(dtap_dq *d, size_t pi, uint64_t first, size_t n, dta_dtype to,
                          dta_overflow_mode mode, void *dst, dta_convert_stats *stats,
                          dta_error *err)
{
    dqb_job j;
    dta_status st = ext_job(d, pi, first, n, to, mode, &j, err);
    if (st != DTA_OK || n == 0)
        return st;
    unsigned char *o = dst;
    unsigned eo = (unsigned)dta_dtype_elem_size(to);
    uint64_t cnt[5] = {0};
    for (size_t k = 0; k < n; k++) {
        int cls;
        uint32_t r = dqb_elem(&j, k, &cls);
        cnt[cls]++;
        unsigned char *q = o + k * eo;
        q[0] = (unsigned char)r;
        q[1] = (unsigned char)(r >> 8);
        if (eo == 4) {
            q[2] = (unsigned char)(r >> 16);
            q[3] = (unsigned char)(r >> 24);
        }
    }
    dtap_dq_stats_add(stats, n, cnt);
    return DTA_OK;
}
