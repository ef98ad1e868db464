/* GPTQ (v1 / v2 zero points, 2/3/4/8 bits, g_idx / act-order) and AWQ GEMM dequantization
 * (dequant_scheme.h; shared/quant.md 1.5, 6, 7).
 *
 * Both store the weight transposed ([in, out]) as int32 words with group scales [G, out]
 * and packed zero points [G, *]; the output is `weight` [out, in]:
 *   W[o][i] = (q[i][o] - z[g][o]) * scales[g][o],  g = g_idx[i] or i / group_size.
 * x = q - z is an exact small integer and s the scale decoded exactly (F16/BF16/F32), so
 * dequant.c's one f32 product rounded once to the target is the reference's F16 result
 * bit for bit for an F16 target; for BF16 it is GPTQModel's offline f32 computation
 * rounded once (the brief's documented choice, 6.4), not the F16 result cast again.
 *
 * GPTQ packing: each column of qweight is an LSB-first bit stream along the input, input i
 * at bits [b*i, b*i + b) of the column's words (for 3 bits a field may straddle two words,
 * which is exactly AutoGPTQ's 3-word / 32-row layout); qzeros is the same stream along the
 * output. v1 ("gptq") stores z - 1: z = (field + 1) & mask (qlinear_cuda_old's order);
 * v2 ("gptq_v2") stores z. A symmetric checkpoint whose fields are all 2^(b-1) is v2 and
 * all 2^(b-1) - 1 v1, whatever the label says (vllm#38966: mislabelled v2 zeros).
 * AWQ GEMM (4 bits): qweight [in, out/8] and qzeros [G, out/8] hold output column 8c + j in
 * nibble slot [0, 4, 1, 5, 2, 6, 3, 7][j] of word c; z is stored as is.
 *
 * Memory: a chunk of output rows [o0, o1] reads, per packed input row, only the words of
 * those columns (one pread each), the scales and zeros of every group for those columns,
 * and g_idx once per parameter (kept in the per-run cache). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "convert_bits.h"
#include "dequant_scheme.h"
#include "quant_dynamic.h"

#define GQ_MAX_IN (1u << 24)   /* inputs of one weight we agree to handle */

typedef struct {
    bool awq;
    unsigned bits;
    bool v1;                   /* GPTQ zero points stored as z - 1 */
    size_t qw, qz, sc, gi;     /* tensor indices (gi SIZE_MAX: none) */
    dta_dtype sdt, gdt;
    uint64_t in, out, G, gs, prows, pcols, zcols;
} gq;

typedef struct {
    size_t cap;
    bool gidx_ok;              /* g_idx decoded into the head of the block */
    max_align_t align[];
} gq_cache;

static size_t al16(size_t n) { return (n + 15) & ~(size_t)15; }

static dta_status refuse(dta_error *err, const char *scheme, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' (%s) %s; nothing written",
                         name, scheme, why);
}

static dta_status bad(dta_error *err, const char *scheme, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' (%s): %s", name, scheme,
                         why);
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Field k (b bits) of an LSB-first stream of little-endian words starting at w. */
static unsigned field(const unsigned char *w, uint64_t k, unsigned b)
{
    uint64_t pos = k * b, wi = pos / 32;
    unsigned sh = (unsigned)(pos % 32);
    uint64_t v = le32(w + 4 * wi) >> sh;
    if (sh + b > 32)
        v |= (uint64_t)le32(w + 4 * (wi + 1)) << (32 - sh);
    return (unsigned)(v & ((1u << b) - 1));
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Every zero-point field (the first `out` of each group row) equal to v? */
static dta_status zeros_all(dtap_dq_src *d, const gq *x, unsigned v, bool *all, dta_error *err)
{
    size_t rowb = (size_t)x->zcols * 4;
    unsigned char *row = malloc(rowb ? rowb : 1);
    if (!row)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *all = true;
    dta_status st = DTA_OK;
    for (uint64_t g = 0; g < x->G && *all && st == DTA_OK; g++) {
        if ((st = dtap_dq_read(d, x->qz, g * rowb, rowb, row, err)) != DTA_OK)
            break;
        for (uint64_t o = 0; o < x->out && *all; o++)
            *all = field(row, o, x->bits) == v;
    }
    free(row);
    return st;
}

static dta_status plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                       dtap_dq_plan *pl, dta_error *err, bool awq)
{
    const dta_model *w = dtap_dq_model(d);
    const char *S = awq ? "awq" : "gptq", *name = qp->name;
    size_t qw = qp->weight, qz = dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT),
           sc = dtap_dq_comp(q, qp, DTA_QR_SCALE), gi = dtap_dq_comp(q, qp, DTA_QR_G_IDX);
    char why[200] = "";
    /* the config: kernel-repacked formats and variants not dequantized */
    const char *fmt = NULL;
    bool sym = true;
    cJSON *doc = w->quant_config ? cJSON_Parse(w->quant_config) : NULL;
    if (doc) {
        fmt = jstr(doc, "checkpoint_format");
        if (!fmt)
            fmt = jstr(doc, "format");
        if (awq)
            fmt = jstr(doc, "version");
        const char *pf = jstr(doc, "packing_format"), *pd = jstr(doc, "pack_dtype");
        const cJSON *sy = cJSON_GetObjectItemCaseSensitive(doc, "sym");
        if (cJSON_IsBool(sy))
            sym = cJSON_IsTrue(sy);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "is_marlin_format")))
            snprintf(why, sizeof why, "is in Marlin's kernel layout (is_marlin_format)");
        else if (pd && strcmp(pd, "int32") != 0 && strcmp(pd, "torch.int32") != 0)
            snprintf(why, sizeof why, "is packed in %.40s words (pack_dtype), not int32", pd);
        else if (pf && !strstr(pf, "gptq"))
            snprintf(why, sizeof why, "has packing_format %.60s", pf);
        else if (!awq && fmt && strcmp(fmt, "gptq") != 0 && strcmp(fmt, "gptq_v2") != 0)
            snprintf(why, sizeof why, "has checkpoint_format %.40s (a kernel-repacked or "
                     "planar layout; only gptq and gptq_v2 are dequantized)", fmt);
        else if (awq && fmt && strcasecmp(fmt, "gemm") != 0)
            snprintf(why, sizeof why, "has version %.40s (only the GEMM packing is "
                     "dequantized)", fmt);
    }
    bool v2 = !awq && fmt && !strcmp(fmt, "gptq_v2");
    cJSON_Delete(doc);
    if (why[0])
        return refuse(err, S, name, why);
    /* GPTQModel's per-module overrides (quant_dynamic.h): this module's bits and group */
    unsigned cbits = q->bits;
    uint64_t cgroup = q->group;
    if (!awq) {
        dtap_qdyn *dyn;
        long db, dg;
        const char *pat;
        dta_status st = dtap_qdyn_parse(w->quant_config, &dyn, err);
        if (st != DTA_OK)
            return st;
        int r = dtap_qdyn_match(dyn, qp->module, &db, &dg, &pat);
        if (r == DTAP_QDYN_SKIP)
            snprintf(why, sizeof why, "holds GPTQ tensors but the config's dynamic rule "
                     "'-:%.60s' says its module is not quantized", pat);
        else if (r == DTAP_QDYN_UNKNOWN)
            snprintf(why, sizeof why, "is under a GPTQModel dynamic pattern '%.60s' outside "
                     "the regular expressions dtaudit evaluates", pat);
        else if (r == DTAP_QDYN_OVERRIDE) {
            if (db != DTAP_QDYN_ABSENT)
                cbits = db > 0 && db <= 8 ? (unsigned)db : 99;
            if (dg == -1)
                cgroup = 0; /* one group */
            else if (dg != DTAP_QDYN_ABSENT)
                cgroup = dg > 0 ? (uint64_t)dg : UINT64_MAX;
        }
        dtap_qdyn_free(dyn);
        if (why[0])
            return refuse(err, S, name, why);
        if (cgroup == UINT64_MAX)
            return refuse(err, S, name, "has a GPTQModel dynamic group_size that is not a "
                                        "positive number or -1");
    }
    if (qz == SIZE_MAX || sc == SIZE_MAX)
        return refuse(err, S, name, "lacks its qzeros or scales");
    size_t ts[] = {qw, qz, sc, gi};
    for (size_t k = 0; k < 4; k++)
        if (ts[k] != SIZE_MAX && !dtap_dq_stored_plain(d, ts[k]))
            return refuse(err, S, name, "is not stored as plain tensors (a safetensors input "
                                        "is needed)");
    const dta_tensor *W = &w->tensors[qw], *Z = &w->tensors[qz], *C = &w->tensors[sc];
    if (W->dtype != DTA_I32 || Z->dtype != DTA_I32 || W->rank != 2 || Z->rank != 2)
        return bad(err, S, name, "its qweight and qzeros are not 2-D I32");
    if ((C->dtype != DTA_F16 && C->dtype != DTA_BF16 && C->dtype != DTA_F32) || C->rank != 2)
        return bad(err, S, name, "its scales are not 2-D F16, BF16 or F32");
    gq *x = calloc(1, sizeof *x);
    if (!x)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    pl->state = x;
    x->awq = awq;
    x->qw = qw;
    x->qz = qz;
    x->sc = sc;
    x->gi = gi;
    x->sdt = C->dtype;
    x->G = C->shape[0];
    x->zcols = Z->shape[1];
    x->prows = W->shape[0];
    x->pcols = W->shape[1];
    unsigned b = cbits;
    if (awq) {
        b = b ? b : 4;
        x->in = W->shape[0];
        x->out = W->shape[1] * 8;
        if (b != 4)
            return refuse(err, S, name, "is not 4-bit (AWQ GEMM packs 4-bit only)");
    } else {
        if (!b) /* no config: the bits the qzeros width gives */
            for (unsigned c = 2; c <= 8 && !b; c++)
                if ((c == 2 || c == 3 || c == 4 || c == 8) && Z->shape[1] == dtap_cdiv(W->shape[1] * c, 32) &&
                    (W->shape[0] * 32) % c == 0)
                    b = c;
        if (b != 2 && b != 3 && b != 4 && b != 8)
            return refuse(err, S, name, "has a bit width other than 2, 3, 4 or 8");
        if ((W->shape[0] * 32) % b)
            return bad(err, S, name, "its qweight rows are not a whole number of inputs");
        x->in = W->shape[0] * 32 / b;
        x->out = W->shape[1];
    }
    x->bits = b;
    if (x->in > GQ_MAX_IN)
        return refuse(err, S, name, "has more than 16777216 inputs");
    if (C->shape[1] != x->out)
        snprintf(why, sizeof why, "its scales have %llu columns, not %llu outputs",
                 (unsigned long long)C->shape[1], (unsigned long long)x->out);
    else if (x->G < 1 || x->G > x->in)
        snprintf(why, sizeof why, "its scales have %llu groups for %llu inputs",
                 (unsigned long long)x->G, (unsigned long long)x->in);
    else if (Z->shape[0] != x->G || (awq ? Z->shape[1] != W->shape[1]
                                         : Z->shape[1] * 32 < x->out * b))
        snprintf(why, sizeof why, "its qzeros [%llu, %llu] do not hold %llu groups of %llu "
                 "%u-bit zero points", (unsigned long long)Z->shape[0],
                 (unsigned long long)Z->shape[1], (unsigned long long)x->G,
                 (unsigned long long)x->out, b);
    if (why[0])
        return bad(err, S, name, why);
    if (gi != SIZE_MAX) {
        const dta_tensor *I = &w->tensors[gi];
        if ((I->dtype != DTA_I32 && I->dtype != DTA_I64) || I->numel != x->in)
            return bad(err, S, name, "its g_idx is not one I32 group index per input");
        x->gdt = I->dtype;
    }
    /* group size: the config's (its groups must be the scales' rows), else what the scales
     * say; g_idx, when present, decides per input */
    uint64_t gs = cgroup;
    if (gi == SIZE_MAX) {
        if (gs && dtap_cdiv(x->in, gs) != x->G && !(x->G == 1 && gs >= x->in))
            snprintf(why, sizeof why, "has %llu scale rows, not ceil(%llu / group_size %llu)",
                     (unsigned long long)x->G, (unsigned long long)x->in,
                     (unsigned long long)gs);
        else if (!gs && x->in % x->G)
            snprintf(why, sizeof why, "has %llu scale rows, which do not divide %llu inputs "
                     "(and no group_size)", (unsigned long long)x->G,
                     (unsigned long long)x->in);
        if (why[0])
            return bad(err, S, name, why);
        x->gs = gs && x->G > 1 ? gs : x->in / x->G;
    }
    if (!awq) {
        /* v1 / v2 (shared/quant.md 6.3): the label, unless a symmetric checkpoint's zeros
         * say otherwise */
        x->v1 = !v2;
        bool all;
        dta_status st;
        if (sym && x->G * x->zcols <= (1u << 24)) {
            if ((st = zeros_all(d, x, 1u << (b - 1), &all, err)) != DTA_OK)
                return st;
            if (all)
                x->v1 = false;
            else {
                if ((st = zeros_all(d, x, (1u << (b - 1)) - 1, &all, err)) != DTA_OK)
                    return st;
                if (all)
                    x->v1 = true;
            }
        }
    }
    if (!(pl->oname = strdup(name)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (!strcmp(pl->oname, w->tensors[qw].name)) {
        free(pl->oname);
        pl->oname = NULL;
    }
    pl->rank = 2;
    pl->shape[0] = x->out;
    pl->shape[1] = x->in;
    pl->numel = x->out * x->in;
    pl->scale = sc;
    pl->packed = (dtap_dq_packed){.kind = awq ? DQP_AWQ : DQP_GPTQ, .flags = x->v1 ? DQP_F_V1 : 0,
                                  .bits = x->bits, .t = {qw, sc, qz, gi}, .out = x->out,
                                  .in = x->in, .groups = x->G, .group = x->gs,
                                  .rows = x->prows, .cols = x->pcols,
                                  .zcols = x->zcols}; /* the device path */
    return DTA_OK;
}

static dta_status gptq_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                            dtap_dq_plan *pl, dta_error *err)
{
    return plan(d, q, qp, pl, err, false);
}

static dta_status awq_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                           dtap_dq_plan *pl, dta_error *err)
{
    return plan(d, q, qp, pl, err, true);
}

static unsigned char *cache_get(void **cache, size_t need)
{
    gq_cache *c = *cache;
    if (!c || c->cap < need) {
        gq_cache *n = realloc(c, sizeof *n + need);
        if (!n)
            return NULL;
        if (!c)
            n->gidx_ok = false;
        n->cap = need;
        *cache = c = n;
    }
    return (unsigned char *)c->align;
}

static dta_status fill(dtap_dq_src *d, const dtap_dq_plan *pl, void **cache, uint64_t first,
                       size_t n, float *xv, float *sv, dta_error *err)
{
    const gq *x = pl->state;
    const char *S = x->awq ? "awq" : "gptq";
    const char *name = dtap_dq_model(d)->tensors[x->qw].name;
    if (!n)
        return DTA_OK;
    uint64_t o0 = first / x->in, o1 = (first + n - 1) / x->in, C = o1 - o0 + 1;
    unsigned b = x->bits, es = (unsigned)dta_dtype_elem_size(x->sdt);
    /* words per packed row and per zero row covering columns o0..o1 */
    uint64_t wc0, wc1, zc0, zc1;
    dqp_gptq_cols(x->awq, b, o0, o1, &wc0, &wc1, &zc0, &zc1);
    uint64_t wn = wc1 - wc0 + 1, zn = zc1 - zc0 + 1;
    size_t gbytes = x->gi != SIZE_MAX ? al16((size_t)x->in * 4) : 0;
    size_t codes = al16((size_t)(x->prows * wn * 4)), zr = al16((size_t)(x->G * zn * 4)),
           sr = al16((size_t)(x->G * C * es));
    unsigned char *base = cache_get(cache, gbytes + codes + zr + sr);
    if (!base)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    gq_cache *hc = *cache;
    uint32_t *gidx = (uint32_t *)(void *)base;
    unsigned char *wq = base + gbytes, *zq = wq + codes, *sq = zq + zr;
    dta_status st = DTA_OK;
    if (x->gi != SIZE_MAX && !hc->gidx_ok) {
        unsigned ge = x->gdt == DTA_I64 ? 8 : 4;
        /* read in pieces into the tail, decoded to the head */
        for (uint64_t i0 = 0; i0 < x->in && st == DTA_OK; i0 += 4096) {
            size_t k = (size_t)(x->in - i0 < 4096 ? x->in - i0 : 4096);
            unsigned char buf[4096 * 8];
            if ((st = dtap_dq_read(d, x->gi, i0 * ge, k * ge, buf, err)) != DTA_OK)
                break;
            for (size_t j = 0; j < k; j++) {
                uint64_t v = le32(buf + j * ge);
                uint32_t hi = ge == 8 ? le32(buf + j * ge + 4) : 0;
                if (hi || v >= x->G) {
                    char why[120];
                    snprintf(why, sizeof why, "its g_idx[%llu] is %s%llu, outside [0, %llu)",
                             (unsigned long long)(i0 + j), hi ? "beyond " : "",
                             (unsigned long long)v, (unsigned long long)x->G);
                    return bad(err, S, name, why);
                }
                gidx[i0 + j] = (uint32_t)v;
            }
        }
        if (st != DTA_OK)
            return st;
        hc->gidx_ok = true;
    }
    /* the packed codes of columns wc0..wc1, every packed row */
    uint64_t rowb = x->pcols * 4;
    for (uint64_t r = 0; r < x->prows && st == DTA_OK; r++)
        st = dtap_dq_read(d, x->qw, r * rowb + wc0 * 4, (size_t)(wn * 4), wq + r * wn * 4, err);
    for (uint64_t g = 0; g < x->G && st == DTA_OK; g++) {
        st = dtap_dq_read(d, x->qz, (g * x->zcols + zc0) * 4, (size_t)(zn * 4),
                          zq + g * zn * 4, err);
        if (st == DTA_OK)
            st = dtap_dq_read(d, x->sc, (g * x->out + o0) * es, (size_t)(C * es),
                              sq + g * C * es, err);
    }
    if (st != DTA_OK)
        return st;
    uint64_t o = o0, i = first - o0 * x->in;
    for (size_t j = 0; j < n; j++) {
        /* the fields, zero points and scales decode with dequant_unpack.h (the CUDA
         * kernel's functions) */
        uint64_t g = x->gi != SIZE_MAX ? gidx[i] : i / x->gs, oc = o - o0;
        unsigned qv, zv;
        if (x->awq) {
            qv = dqp_awq_nib(le32(wq + (i * wn + (o / 8 - wc0)) * 4), o);
            zv = dqp_awq_nib(le32(zq + (g * zn + (o / 8 - zc0)) * 4), o);
        } else {
            /* column oc's stream: word r of it is at wq[r][oc] */
            uint64_t pos = i * b, r = pos / 32;
            unsigned sh = (unsigned)(pos % 32);
            qv = dqp_bits2(le32(wq + (r * wn + oc) * 4),
                           sh + b > 32 ? le32(wq + ((r + 1) * wn + oc) * 4) : 0, sh, b);
            uint64_t zp = o * b - zc0 * 32, zw = zp / 32;
            unsigned zs = (unsigned)(zp % 32);
            const unsigned char *zr = zq + (g * zn + zw) * 4;
            zv = dqp_gptq_zero(dqp_bits2(le32(zr), zs + b > 32 ? le32(zr + 4) : 0, zs, b), x->v1,
                               b);
        }
        xv[j] = dqb_bitsf(dqp_qz((int)qv, (int)zv));
        sv[j] = dqb_bitsf(dqp_load(x->sdt, sq, g * C + oc));
        if (++i == x->in) {
            i = 0;
            o++;
        }
    }
    return DTA_OK;
}

static void release(void *s) { free(s); }

const dtap_dq_ops dtap_dq_gptq_ops = {DTA_QS_GPTQ, gptq_plan, fill, release};
const dtap_dq_ops dtap_dq_awq_ops = {DTA_QS_AWQ, awq_plan, fill, release};
