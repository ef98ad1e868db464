/* bitsandbytes dequantization (dequant_scheme.h): 4-bit NF4 / FP4 with optional double
 * quantization, and LLM.int8 (shared/quant.md 1.2, 5.1, 5.2).
 *
 * 4-bit: the codes are the flattened logical tensor (shape and dtype from the
 * quant_state JSON blob), two per byte, element 2k in the high nibble of byte k, whatever
 * dtype the header gives the packed tensor (bnb_4bit_quant_storage); block b covers flat
 * elements [b*B, (b+1)*B) and has absmax[b]. With double quantization absmax is U8 codes:
 * absmax[b] = f32(f32(nested_quant_map[u] * nested_absmax[b / nested_blocksize]) +
 * nested_offset) (the file's nested map, as bnb's dequantize_blockwise then `+= offset`).
 * value = f32(LUT[code] * absmax[b]), rounded to the JSON dtype (the reference's output),
 * then converted to the target. LUT: the NF4 / FP4 tables of get_4bit_type (bit-exact f32,
 * FP4 code 8 is +0 as the default and CPU backends give; CUDA gives -0). The stored
 * quant_map must be that table (bnb's dequantize ignores it; a different one is refused).
 *
 * 8-bit: value = f32(f32(q * SCB[o]) * f32(1/127)) (int8_vectorwise_dequant), rounded once
 * to the target; only weight_format 0 ("row") exists on disk.
 *
 * 4-bit is a fill() module (x = table[code], s = absmax; dequant.c takes the product and
 * rounds it to the quant_state dtype, the plan's mid, then to the target); int8 a values()
 * module (two roundings). Buffers live in the per-run cache (one block). */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "convert_bits.h"
#include "dequant_scheme.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "dequant_bnb.c needs FLT_EVAL_METHOD == 0 (f32 products rounded as f32)"
#endif

#define BNB_MAX_STATE 65536u /* bytes of quant_state JSON we agree to read */

/* get_4bit_type, as f32 bits (shared/quant.md 1.2) */
static const uint32_t NF4[16] = {
    0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu,
    0xBDBA7871u, 0x00000000u, 0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au,
    0x3EE1A4B8u, 0x3F1007ABu, 0x3F3913B3u, 0x3F800000u};
static const uint32_t FP4[16] = {
    0x00000000u, 0x3BAAAAABu, 0x3F2AAAABu, 0x3F800000u, 0x3EAAAAABu, 0x3F000000u,
    0x3E2AAAABu, 0x3E800000u, 0x00000000u, 0xBBAAAAABu, 0xBF2AAAABu, 0xBF800000u,
    0xBEAAAAABu, 0xBF000000u, 0xBE2AAAABu, 0xBE800000u};

typedef struct {
    bool fp4, nested;
    size_t weight, absmax, nabs, nmap;
    uint64_t numel, bs, nbs, nblocks;
    float offset;
    float lut[16];
} bnb4;

typedef struct {
    size_t weight, scb;
    dta_dtype sdt;
    uint64_t in, out;
} bnb8;

/* The per-run cache: one block (dequant.c frees it with free()), at least `need` bytes. */
typedef struct {
    size_t cap;
    max_align_t align[];
} blk;

static unsigned char *cache_get(void **cache, size_t need)
{
    blk *c = *cache;
    if (!c || c->cap < need) {
        blk *n = realloc(c, sizeof *n + need);
        if (!n)
            return NULL;
        n->cap = need;
        *cache = c = n;
    }
    return (unsigned char *)c->align;
}

/* Regions of the cache, each rounded up to 16 bytes. */
static size_t al16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Scale-like values [first, first + n) of tensor ti (F32, F16, BF16) as f32. */
static dta_status read_f32s(dtap_dq_src *d, size_t ti, uint64_t first, size_t n, float *out,
                            dta_error *err)
{
    const dta_tensor *t = &dtap_dq_model(d)->tensors[ti];
    unsigned es = (unsigned)dta_dtype_elem_size(t->dtype);
    unsigned char *raw = (unsigned char *)out; /* decoded in place, back to front */
    dta_status st = dtap_dq_read(d, ti, first * es, n * es, raw, err);
    if (st != DTA_OK || es == 4) {
        for (size_t k = 0; st == DTA_OK && k < n; k++) {
            const unsigned char *b = raw + 4 * k;
            out[k] = dqb_bitsf((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                            (uint32_t)b[3] << 24);
        }
        return st;
    }
    for (size_t k = n; k-- > 0;) {
        uint32_t c = (uint32_t)raw[2 * k] | (uint32_t)raw[2 * k + 1] << 8;
        out[k] = dqb_bitsf(dtab_decode(t->dtype, c));
    }
    return DTA_OK;
}

static dta_status refuse(dta_error *err, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_REFUSED, 0,
                         "dequantize: '%.200s' (bnb-4bit) %s; nothing written", name, why);
}

static dta_status bad(dta_error *err, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' (bnb-4bit): %s", name,
                         why);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jint(const cJSON *o, const char *k, uint64_t lo, uint64_t hi, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi) ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

/* "bfloat16" / "torch.bfloat16" ... */
static dta_dtype torch_dtype(const char *s)
{
    if (!s)
        return DTA_DTYPE_NONE;
    if (!strncmp(s, "torch.", 6))
        s += 6;
    return !strcmp(s, "bfloat16") ? DTA_BF16 : !strcmp(s, "float16") ? DTA_F16
         : !strcmp(s, "float32") ? DTA_F32 : DTA_DTYPE_NONE;
}

static dta_status bnb4_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                            dtap_dq_plan *pl, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const char *name = qp->name;
    size_t ai = dtap_dq_comp(q, qp, DTA_QR_ABSMAX), mi = dtap_dq_comp(q, qp, DTA_QR_QUANT_MAP),
           si = dtap_dq_comp(q, qp, DTA_QR_QUANT_STATE),
           nai = dtap_dq_comp(q, qp, DTA_QR_NESTED_ABSMAX),
           nmi = dtap_dq_comp(q, qp, DTA_QR_NESTED_MAP);
    if (ai == SIZE_MAX || mi == SIZE_MAX || si == SIZE_MAX)
        return refuse(err, name, "lacks its absmax, quant_map or quant_state");
    size_t ts[] = {qp->weight, ai, mi, si, nai, nmi};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        if (ts[k] != SIZE_MAX && !dtap_dq_stored_plain(d, ts[k]))
            return refuse(err, name, "is not stored as plain tensors (a safetensors input is "
                                     "needed)");
    const dta_tensor *S = &w->tensors[si];
    if ((S->dtype != DTA_U8 && S->dtype != DTA_I8) || S->numel > BNB_MAX_STATE)
        return bad(err, name, "its quant_state is not a U8 JSON blob of at most 64 KiB");
    char *js = malloc((size_t)S->numel + 1);
    if (!js)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = dtap_dq_read(d, si, 0, (size_t)S->numel, js, err);
    if (st != DTA_OK) {
        free(js);
        return st;
    }
    js[S->numel] = 0;
    cJSON *doc = strlen(js) == S->numel ? cJSON_Parse(js) : NULL;
    free(js);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return bad(err, name, "its quant_state is not a JSON object");
    }
    bnb4 *x = calloc(1, sizeof *x);
    if (!x) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    pl->state = x;
    const char *qt = jstr(doc, "quant_type");
    const char *dt = jstr(doc, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(doc, "shape");
    bool name_fp4 = strstr(S->name, "bitsandbytes__fp4") != NULL;
    char why[160] = "";
    st = DTA_OK;
    if (!qt || (strcmp(qt, "nf4") != 0 && strcmp(qt, "fp4") != 0))
        snprintf(why, sizeof why, "has quant_type %.40s, not nf4 or fp4", qt ? qt : "(none)");
    else if ((!strcmp(qt, "fp4")) != name_fp4)
        snprintf(why, sizeof why, "has quant_type %s under a quant_state named for the other",
                 qt);
    else if (!jint(doc, "blocksize", 1, 1u << 20, &x->bs))
        snprintf(why, sizeof why, "has no blocksize in 1..1048576");
    else if ((pl->mid = torch_dtype(dt)) == DTA_DTYPE_NONE)
        snprintf(why, sizeof why, "has dtype %.40s, not bfloat16, float16 or float32",
                 dt ? dt : "(none)");
    else if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 ||
             cJSON_GetArraySize(shape) > DTA_MAX_RANK)
        snprintf(why, sizeof why, "has no shape of 1 to %d dimensions", DTA_MAX_RANK);
    if (why[0]) {
        cJSON_Delete(doc);
        return refuse(err, name, why);
    }
    x->fp4 = !strcmp(qt, "fp4");
    pl->rank = cJSON_GetArraySize(shape);
    uint64_t numel = 1;
    for (int k = 0; k < pl->rank; k++) {
        const cJSON *e = cJSON_GetArrayItem(shape, k);
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 9.0e15) ||
            e->valuedouble != floor(e->valuedouble)) {
            cJSON_Delete(doc);
            return bad(err, name, "its quant_state shape holds a value that is not a size");
        }
        pl->shape[k] = (uint64_t)e->valuedouble;
        if (pl->shape[k] && numel > UINT64_MAX / 4 / pl->shape[k]) {
            cJSON_Delete(doc);
            return bad(err, name, "its quant_state shape is too large");
        }
        numel *= pl->shape[k];
    }
    pl->numel = x->numel = numel;
    x->nblocks = dtap_cdiv(numel, x->bs);
    x->weight = qp->weight;
    x->absmax = ai;
    const dta_tensor *W = &w->tensors[qp->weight], *A = &w->tensors[ai], *M = &w->tensors[mi];
    uint64_t wb;
    /* a quant_storage wider than a byte may round the packed bytes up to its size */
    if (!dta_dtype_nbytes(W->dtype, W->numel, &wb) || wb < dtap_cdiv(numel, 2) ||
        wb - dtap_cdiv(numel, 2) >= dta_dtype_elem_size(W->dtype))
        snprintf(why, sizeof why, "holds %llu packed bytes, not the %llu its quant_state shape "
                 "needs", (unsigned long long)W->nbytes, (unsigned long long)dtap_cdiv(numel, 2));
    else if (A->numel != x->nblocks)
        snprintf(why, sizeof why, "has %llu absmax values, not ceil(%llu / %llu) = %llu",
                 (unsigned long long)A->numel, (unsigned long long)numel,
                 (unsigned long long)x->bs, (unsigned long long)x->nblocks);
    else if (M->dtype != DTA_F32 || M->numel != 16)
        snprintf(why, sizeof why, "has a quant_map that is not F32 [16]");
    if (why[0]) {
        cJSON_Delete(doc);
        return bad(err, name, why);
    }
    x->nested = A->dtype == DTA_U8;
    if (x->nested) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(doc, "nested_offset");
        const char *ndt = jstr(doc, "nested_dtype");
        x->nbs = 256;
        if (cJSON_GetObjectItemCaseSensitive(doc, "nested_blocksize") &&
            !jint(doc, "nested_blocksize", 1, 1u << 20, &x->nbs))
            snprintf(why, sizeof why, "has a nested_blocksize outside 1..1048576");
        else if (nai == SIZE_MAX || nmi == SIZE_MAX || !cJSON_IsNumber(off))
            snprintf(why, sizeof why, "has U8 absmax (double quantization) without "
                     "nested_absmax, nested_quant_map or nested_offset");
        else if (ndt && torch_dtype(ndt) != DTA_F32)
            snprintf(why, sizeof why, "has nested_dtype %.40s, not float32", ndt);
        if (why[0]) {
            cJSON_Delete(doc);
            return refuse(err, name, why);
        }
        x->offset = (float)off->valuedouble; /* an f32 .item(), printed by json: exact */
        x->nabs = nai;
        x->nmap = nmi;
        const dta_tensor *NA = &w->tensors[nai], *NM = &w->tensors[nmi];
        if (NA->dtype != DTA_F32 || NA->numel != dtap_cdiv(x->nblocks, x->nbs))
            snprintf(why, sizeof why, "has a nested_absmax that is not F32 [ceil(%llu / %llu)]",
                     (unsigned long long)x->nblocks, (unsigned long long)x->nbs);
        else if (NM->dtype != DTA_F32 || NM->numel != 256)
            snprintf(why, sizeof why, "has a nested_quant_map that is not F32 [256]");
    } else if (A->dtype != DTA_F32) {
        snprintf(why, sizeof why, "has %s absmax, not F32 (or U8 with double quantization)",
                 dta_dtype_name(A->dtype));
    }
    cJSON_Delete(doc);
    if (why[0])
        return bad(err, name, why);
    /* the stored quant_map must be the table bnb's dequantize uses */
    float qm[16];
    if ((st = read_f32s(d, mi, 0, 16, qm, err)) != DTA_OK)
        return st;
    const uint32_t *tab = x->fp4 ? FP4 : NF4;
    for (int c = 0; c < 16; c++) {
        uint32_t b = dqb_fbits(qm[c]);
        bool zero = (tab[c] & 0x7FFFFFFFu) == 0;
        if (b != tab[c] && !(zero && (b & 0x7FFFFFFFu) == 0))
            return refuse(err, name, x->fp4 ? "has a quant_map that is not bitsandbytes' fp4 "
                                              "table"
                                            : "has a quant_map that is not bitsandbytes' nf4 "
                                              "table");
        x->lut[c] = dqb_bitsf(tab[c]);
    }
    if (pl->mid == DTA_F32)
        pl->mid = DTA_BOOL; /* no intermediate rounding */
    pl->scale = ai;
    pl->packed = (dtap_dq_packed){.kind = DQP_BNB4, .flags = x->nested ? DQP_F_NESTED : 0,
                                  .t = {qp->weight, ai, x->nested ? x->nabs : SIZE_MAX,
                                        x->nested ? x->nmap : SIZE_MAX},
                                  .in = x->numel, .group = x->bs, .nested_bs = x->nbs,
                                  .gbits = dqb_fbits(x->offset)}; /* the device path */
    memcpy(pl->packed.lut, x->lut, sizeof pl->packed.lut);
    return DTA_OK;
}

static dta_status bnb4_fill(dtap_dq_src *d, const dtap_dq_plan *pl, void **cache, uint64_t first,
                            size_t n, float *xv, float *sv, dta_error *err)
{
    const bnb4 *x = pl->state;
    if (!n)
        return DTA_OK;
    uint64_t last = first + n - 1, b0 = first / x->bs, b1 = last / x->bs;
    uint64_t n0 = b0 / (x->nbs ? x->nbs : 1), n1 = b1 / (x->nbs ? x->nbs : 1);
    size_t nb = (size_t)(b1 - b0 + 1), nbytes = (size_t)(last / 2 - first / 2 + 1);
    size_t nn = x->nested ? (size_t)(n1 - n0 + 1) : 0;
    size_t o1 = al16(nbytes), o2 = o1 + al16(nb * 4), o3 = o2 + al16(nb),
           o4 = o3 + al16(nn * 4), tot = o4 + (x->nested ? 256 * 4 : 0);
    unsigned char *base = cache_get(cache, tot);
    if (!base)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    unsigned char *codes = base, *u = base + o2;
    float *am = (float *)(void *)(base + o1), *na = (float *)(void *)(base + o3),
          *nm = (float *)(void *)(base + o4);
    dta_status st = dtap_dq_read(d, x->weight, first / 2, nbytes, codes, err);
    if (st != DTA_OK)
        return st;
    if (!x->nested) {
        if ((st = read_f32s(d, x->absmax, b0, nb, am, err)) != DTA_OK)
            return st;
    } else {
        if ((st = dtap_dq_read(d, x->absmax, b0, nb, u, err)) != DTA_OK ||
            (st = read_f32s(d, x->nabs, n0, nn, na, err)) != DTA_OK ||
            (st = read_f32s(d, x->nmap, 0, 256, nm, err)) != DTA_OK)
            return st;
        for (size_t k = 0; k < nb; k++) {
            /* two f32 roundings, never fused: the product, then the offset added */
            am[k] = dqb_bitsf(dqp_bnb_absmax(dqb_fbits(nm[u[k]]),
                                               dqb_fbits(na[(b0 + k) / x->nbs - n0]),
                                               dqb_fbits(x->offset)));
        }
    }
    for (size_t j = 0; j < n; j++) {
        uint64_t e = first + j;
        unsigned char byte = codes[e / 2 - first / 2];
        xv[j] = x->lut[dqp_nib_hi_first(byte, e)];
        sv[j] = am[e / x->bs - b0];
    }
    return DTA_OK;
}

static dta_status bnb8_values(dtap_dq_src *d, const dtap_dq_plan *pl, void **cache,
                              uint64_t first, size_t n, uint32_t *v, uint8_t *fl,
                              dta_error *err);

static dta_status bnb8_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                            dtap_dq_plan *pl, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const char *name = qp->name;
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE), fi = dtap_dq_comp(q, qp, DTA_QR_FORMAT);
    const dta_tensor *W = &w->tensors[qp->weight];
    if (si == SIZE_MAX)
        return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' (bnb-8bit) has no "
                             "SCB; nothing written", name);
    if (!dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si) ||
        (fi != SIZE_MAX && !dtap_dq_stored_plain(d, fi)))
        return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' (bnb-8bit) is not "
                             "stored as plain tensors (a safetensors input is needed); nothing "
                             "written", name);
    const dta_tensor *S = &w->tensors[si];
    if (W->dtype != DTA_I8 || W->rank != 2)
        return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' (bnb-8bit) is %s of "
                             "rank %d, not I8 [out, in]; nothing written", name,
                             dta_dtype_name(W->dtype), W->rank);
    if ((S->dtype != DTA_F32 && S->dtype != DTA_F16 && S->dtype != DTA_BF16) ||
        S->numel != W->shape[0])
        return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' (bnb-8bit): its SCB "
                             "is not F32 [%llu] (one absmax per row)", name,
                             (unsigned long long)W->shape[0]);
    if (fi != SIZE_MAX) {
        const dta_tensor *F = &w->tensors[fi];
        unsigned char b[8] = {0};
        unsigned es = (unsigned)dta_dtype_elem_size(F->dtype);
        if (F->numel != 1 || es > 8 || F->dtype == DTA_F32 || F->dtype == DTA_F16 ||
            F->dtype == DTA_BF16)
            return dta_error_set(err, DTA_E_FORMAT, 0, "dequantize: '%.200s' (bnb-8bit): its "
                                 "weight_format is not one integer", name);
        dta_status st = dtap_dq_read(d, fi, 0, es, b, err);
        if (st != DTA_OK)
            return st;
        uint64_t f = 0;
        for (unsigned k = 0; k < es; k++)
            f |= (uint64_t)b[k] << (8 * k);
        if (f != 0)
            return dta_error_set(err, DTA_E_REFUSED, 0, "dequantize: '%.200s' (bnb-8bit) has "
                                 "weight_format %llu (%s), a tiled layout bitsandbytes no "
                                 "longer loads; only 0 (row) is dequantized; nothing written",
                                 name, (unsigned long long)f,
                                 f == 1 ? "col32" : f == 2 ? "col_turing"
                                 : f == 3 ? "col_ampere" : "unknown");
    }
    bnb8 *x = calloc(1, sizeof *x);
    if (!x)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    x->weight = qp->weight;
    x->scb = si;
    x->sdt = S->dtype;
    x->out = W->shape[0];
    x->in = W->shape[1];
    pl->state = x;
    pl->values = bnb8_values;
    pl->rank = 2;
    pl->shape[0] = W->shape[0];
    pl->shape[1] = W->shape[1];
    pl->numel = W->numel;
    pl->scale = si;
    pl->packed = (dtap_dq_packed){.kind = DQP_BNB8, .t = {qp->weight, si, SIZE_MAX, SIZE_MAX},
                                  .out = x->out, .in = x->in}; /* the device path */
    return DTA_OK;
}

static dta_status bnb8_values(dtap_dq_src *d, const dtap_dq_plan *pl, void **cache,
                              uint64_t first, size_t n, uint32_t *v, uint8_t *fl,
                              dta_error *err)
{
    const bnb8 *x = pl->state;
    if (!n)
        return DTA_OK;
    uint64_t r0 = first / x->in, r1 = (first + n - 1) / x->in;
    size_t nr = (size_t)(r1 - r0 + 1);
    unsigned char *base = cache_get(cache, al16(n) + nr * 4);
    if (!base)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    int8_t *codes = (int8_t *)base;
    float *scb = (float *)(void *)(base + al16(n));
    dta_status st = dtap_dq_read(d, x->weight, first, n, codes, err);
    if (st == DTA_OK)
        st = read_f32s(d, x->scb, r0, nr, scb, err);
    if (st != DTA_OK)
        return st;
    for (size_t j = 0; j < n; j++) {
        /* two f32 roundings: q * SCB, then * f32(1/127) (dequant_unpack.h, also the
         * CUDA kernel's) */
        v[j] = dqp_bnb8(codes[j], dqb_fbits(scb[(first + j) / x->in - r0]), &fl[j]);
    }
    return DTA_OK;
}

static void free_x(void *x) { free(x); }

const dtap_dq_ops dtap_dq_bnb4_ops = {DTA_QS_BNB_4BIT, bnb4_plan, bnb4_fill, free_x};
const dtap_dq_ops dtap_dq_bnb8_ops = {DTA_QS_BNB_8BIT, bnb8_plan, NULL, free_x};
