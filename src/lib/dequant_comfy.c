/* Dequantization of ComfyUI scaled FP8 (dequant_scheme.h; shared/quant.md 10.1-10.2).
 *
 * Legacy "scaled fp8" (comfy-scaled-fp8): per layer "<p>.weight" F8_E4M3 or F8_E5M2 and
 * "<p>.scale_weight", beside a "scaled_fp8" marker tensor ("<prefix>scaled_fp8") whose
 * dtype is the weights' float8 format (F32: e4m3fn; ComfyUI casts the weights to it on
 * load, so codes of the other float8 format are refused); "<p>.scale_input" is dropped.
 * Current mixed precision (comfy-quant): "<p>.comfy_quant" U8 bytes of JSON {"format":
 * ...} or the file's __metadata__._quantization_metadata {"layers": {module: {"format":
 * ...}}}, beside "<p>.weight" and "<p>.weight_scale" ("<p>.input_scale" dropped). The
 * float8 formats (float8_e4m3fn, float8_e5m2; the format must match the codes' dtype),
 * nvfp4, mxfp8 and int8_tensorwise (below) are dequantized; every other format (the w4
 * formats convrot_w4a4, asym_w4a8_int8, awq_w4a16, svdquant, ...) and any layer that asks
 * for a rotation (convrot: Hadamard-rotated weights) or carries a pre_quant_scale is
 * refused, naming it.
 *
 * The scale: one value (shape [], [1], ...: per tensor, what ComfyUI writes), or one per
 * output row shaped [out, 1, ...] (third-party tools; torch broadcasts that per row). A
 * 1-D [out] scale is refused: torch would broadcast it along the input dimension, not per
 * row. F32, BF16 or F16.
 *
 * value = RNE_target(f32(code) x f32(scale)), on dequant.c's block-FP8 path (the plan's
 * grid). That is shared/quant.md 10.1's choice and what ComfyUI computes on a GPU
 * (comfy-kitchen's CUDA and Triton kernels multiply the code by the F32 scale in f32 and
 * round once) and on the CPU through torch (qdata.to(dtype) * scale, a 0-dim F32 scale:
 * the product in f32, rounded once); comfy-kitchen's eager CPU backend rounds the scale to
 * the target first, which can differ in the last bit for BF16/F16 targets with an F32
 * scale (tests/cli/dequant_comfy.sh counts it against comfy-kitchen itself).
 *
 * comfy_quant block formats (comfy-kitchen 0.2.40 tensor/nvfp4.py, tensor/mxfp8.py,
 * tensor/int8.py, backends/eager/quantization.py, float_utils.py; ComfyUI comfy/ops.py's
 * loader), one 2-D Linear weight [R, C] each:
 *   nvfp4: "<p>.weight" U8 [R, C/2], element 2k in the HIGH nibble (hi_first), E2M1;
 *     "<p>.weight_scale" F8_E4M3 (or U8) block scales, one per 16 elements of a row, in
 *     cuBLAS' 128x4-swizzled layout [roundup(R, 128), roundup(C/16, 4)]: the scale of
 *     row r, block c is at ((r/128 * ncb + c/4) * 32 + r%32) * 16 + (r%128)/32 * 4 + c%4,
 *     ncb = roundup(C/16, 4) / 4 (float_utils.from_blocked); "<p>.weight_scale_2" the
 *     global scale, one value (F32; BF16/F16 read exactly, ComfyUI casts it to F32).
 *     value = RNE_target(f32(E2M1 x f32(block x global))): comfy-kitchen's CUDA kernel
 *     (dequantize_nvfp4_kernel, read in source at 29cfe23: decode_scale = float(block) *
 *     global, then value * decode_scale, cast) and its eager backend for F32. Its eager
 *     backend for BF16/F16 rounds three times in the target (global, global x block, the
 *     product): up to a few ulps apart (tests/cli/dequant_comfy.sh counts them).
 *   mxfp8: "<p>.weight" F8_E4M3 [R, C], "<p>.weight_scale" E8M0 (F8_E8M0 or U8), one per
 *     32 elements, swizzled as above with C/32 blocks; 2^(u - 127) with u = 0 read as 0
 *     and u = 255 as +inf (comfy-kitchen's e8m0_to_f32); value = RNE_target(f32(code) x
 *     scale), comfy-kitchen's own order (the product is exact unless it leaves f32).
 *   int8_tensorwise (no convrot): "<p>.weight" I8 [R, C], "<p>.weight_scale" one value or
 *     one per row [R, 1] (F32, BF16 or F16); value = RNE_target(f32(q) x scale), the eager
 *     backend's q.float() * scale then .to(target).
 * The original shape: comfy-kitchen pads nvfp4 weights to multiples of 16 (mxfp8: 32) in
 * both dims with zeros and ComfyUI crops to the module's (out_features, in_features),
 * which the file does not store. dtaudit writes the stored shape only where the file
 * shows it is not padding: the rows when "<p>.bias" has R elements or the last row holds a
 * nonzero code (a bias of R - 15 .. R - 1 elements over all-zero trailing rows: those rows
 * are padding and are cropped, as ComfyUI does), the columns when the last column holds a
 * nonzero code (padding is the code of +0.0). Otherwise the layer is refused, naming it.
 *
 * On the GPU (--device cuda): the float8 layers are grid parameters, whose codes and scale
 * go to the device as stored (dequant.c's grid jobs); the nvfp4, mxfp8 and int8 layers
 * describe their layout in the plan (dtap_dq_plan.packed, DQP_CQ_*): dequant_packed.c
 * sends their stored codes and scale bytes (whole 128-row bands of swizzled block scales)
 * and the kernel decodes them with dequant_unpack.h's dqp_cq_* functions, the ones
 * cq_fill() calls here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "convert_bits.h"
#include "dequant_scheme.h"

#define CF_MAX_MARKER 4096u /* bytes of a comfy_quant JSON marker we read */
#define CQ_MAX_BAND (8u << 20) /* bytes of one 128-row band of swizzled block scales */

static dta_status refuse(dta_error *err, const char *name, const char *why)
{
    return dta_error_set(err, DTA_E_REFUSED, 0,
                         "dequantize: '%.200s' is ComfyUI %s; nothing written", name, why);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !memcmp(s + a - b, suffix, b);
}

/* The layer's comfy_quant entry as JSON (*doc owns it, *layer points into it; both NULL
 * when the layer has none): its "<p>.comfy_quant" marker, else __metadata__'s
 * _quantization_metadata.layers[module]. */
static dta_status layer_json(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                             cJSON **doc, const cJSON **layer, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    *doc = NULL;
    *layer = NULL;
    size_t mi = dtap_dq_comp(q, qp, DTA_QR_MARKER);
    if (mi != SIZE_MAX) {
        const dta_tensor *t = &w->tensors[mi];
        if (t->dtype != DTA_U8 || t->numel > CF_MAX_MARKER || !dtap_dq_stored_plain(d, mi))
            return refuse(err, qp->name, "with a comfy_quant marker that is not a short U8 "
                                         "JSON text");
        char buf[CF_MAX_MARKER + 1];
        dta_status st = dtap_dq_read(d, mi, 0, (size_t)t->numel, buf, err);
        if (st != DTA_OK)
            return st;
        buf[t->numel] = 0;
        if (memchr(buf, 0, (size_t)t->numel) || !(*doc = cJSON_Parse(buf)) ||
            !cJSON_IsObject(*doc)) {
            cJSON_Delete(*doc);
            *doc = NULL;
            return refuse(err, qp->name, "with a comfy_quant marker that is not a JSON object");
        }
        *layer = *doc;
        return DTA_OK;
    }
    for (size_t i = 0; i < w->nmetadata; i++) {
        if (strcmp(w->metadata[i].key, "_quantization_metadata") || !w->metadata[i].value)
            continue;
        cJSON *md = cJSON_Parse(w->metadata[i].value);
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(md, "layers");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(layers, qp->module);
        if (cJSON_IsObject(l)) {
            *doc = md;
            *layer = l;
            return DTA_OK;
        }
        cJSON_Delete(md);
    }
    return DTA_OK;
}

/* The scaled_fp8 marker covering name: the one with the longest prefix of name,
 * SIZE_MAX when none. */
static size_t scaled_marker(const dta_model *w, const char *name)
{
    size_t best = SIZE_MAX, bestlen = 0;
    for (size_t i = 0; i < w->ntensors; i++) {
        const char *t = w->tensors[i].name;
        size_t l = strlen(t);
        if (!ends_with(t, "scaled_fp8") || (l > 10 && t[l - 11] != '.'))
            continue;
        size_t pl = l - 10; /* "<prefix>" including its dot */
        if (!strncmp(name, t, pl) && (best == SIZE_MAX || pl > bestlen)) {
            best = i;
            bestlen = pl;
        }
    }
    return best;
}

/* ---- comfy_quant block formats: nvfp4, mxfp8, int8_tensorwise ---------------------- */

/* A layer's plan. The element decoding (the code of column i, the swizzled place of a
 * block scale, the block scale times the global one) is dequant_unpack.h's dqp_cq_*,
 * which the CUDA kernel runs on the stored bytes too (plan.packed, dequant_packed.c). */
typedef struct {
    int kind;               /* DQP_CQ_NVFP4, DQP_CQ_MXFP8, DQP_CQ_INT8 */
    size_t codes, scales;   /* tensor indices */
    uint64_t rows, in;      /* the output [rows, in]: rows may be fewer than stored */
    uint64_t rowbytes;      /* code bytes per stored row */
    uint64_t bl, nblk, ncb; /* elements per block, blocks per row, 4-block tiles per row */
    uint32_t gbits;         /* f32 bits: nvfp4 weight_scale_2; int8 per tensor weight_scale */
    bool per_row;           /* int8: weight_scale [R, 1] */
    dta_dtype sdt;          /* int8: the scale's dtype */
} cq_state;

typedef struct {
    uint64_t band;          /* the 128-row band of block scales held, UINT64_MAX: none */
    size_t cap;             /* bytes of data */
    unsigned char data[];   /* [one band of block scales][codes][int8 row scales] */
} cq_cache;

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

static bool float_scale(dta_dtype dt) { return dt == DTA_F32 || dt == DTA_BF16 || dt == DTA_F16; }

/* Whether any code of stored row r is nonzero (padding is the code of +0.0). */
static dta_status row_nonzero(dtap_dq_src *d, const cq_state *m, uint64_t r, bool *nz,
                              dta_error *err)
{
    unsigned char buf[4096];
    *nz = false;
    for (uint64_t off = 0; off < m->rowbytes && !*nz;) {
        size_t k = m->rowbytes - off < sizeof buf ? (size_t)(m->rowbytes - off) : sizeof buf;
        dta_status st = dtap_dq_read(d, m->codes, r * m->rowbytes + off, k, buf, err);
        if (st != DTA_OK)
            return st;
        for (size_t j = 0; j < k && !*nz; j++)
            *nz = buf[j] != 0;
        off += k;
    }
    return DTA_OK;
}

/* Whether the last element of any of rows [0, m->rows) is nonzero, reading from the top
 * (a real weight's first row settles it). */
static dta_status col_nonzero(dtap_dq_src *d, const cq_state *m, bool *nz, dta_error *err)
{
    unsigned char buf[65536];
    uint64_t per = m->rowbytes <= sizeof buf ? sizeof buf / m->rowbytes : 0;
    *nz = false;
    for (uint64_t r = 0; r < m->rows && !*nz;) {
        uint64_t k = per ? (m->rows - r < per ? m->rows - r : per) : 1;
        dta_status st = per ? dtap_dq_read(d, m->codes, r * m->rowbytes,
                                           (size_t)(k * m->rowbytes), buf, err)
                            : dtap_dq_read(d, m->codes, r * m->rowbytes + m->rowbytes - 1, 1,
                                           buf, err);
        if (st != DTA_OK)
            return st;
        for (uint64_t j = 0; j < k && !*nz; j++) {
            unsigned char b = buf[per ? (j + 1) * m->rowbytes - 1 : 0];
            *nz = m->kind == DQP_CQ_NVFP4 ? (b & 15) != 0 : b != 0; /* hi_first: odd is low */
        }
        r += k;
    }
    return DTA_OK;
}

/* The stored weight is [R, C] padded to multiples of `pad` (if it was padded at all):
 * the rows and columns to write, or a refusal (cq_plan's comment at the top). */
static dta_status logical_shape(dtap_dq_src *d, const dta_quant_param *qp, cq_state *m,
                                unsigned pad, const char *fmt, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    uint64_t R = m->rows;
    char why[320];
    const dta_tensor *bias = NULL;
    size_t ml = strlen(qp->module);
    for (size_t i = 0; i < w->ntensors && !bias; i++) {
        const char *t = w->tensors[i].name;
        if (!strncmp(t, qp->module, ml) && !strcmp(t + ml, ".bias"))
            bias = &w->tensors[i];
    }
    bool nz = false;
    dta_status st;
    if (bias && bias->rank == 1 && bias->shape[0] == R)
        nz = true; /* out_features = R */
    else if (bias && bias->rank == 1 && R % pad == 0 && bias->shape[0] < R &&
             bias->shape[0] > R - pad) {
        /* out_features < R: rows [out, R) are padding, all zero codes */
        for (uint64_t r = bias->shape[0]; r < R; r++) {
            if ((st = row_nonzero(d, m, r, &nz, err)) != DTA_OK)
                return st;
            if (nz) {
                snprintf(why, sizeof why, "comfy_quant %s whose bias has %llu elements over "
                         "%llu weight rows, the rows beyond it not zero padding", fmt,
                         (unsigned long long)bias->shape[0], (unsigned long long)R);
                return refuse(err, qp->name, why);
            }
        }
        m->rows = bias->shape[0];
        nz = true;
    } else if (bias) {
        snprintf(why, sizeof why, "comfy_quant %s whose bias does not fit its %llu weight rows",
                 fmt, (unsigned long long)R);
        return refuse(err, qp->name, why);
    } else if (R % pad) {
        nz = true; /* not a padded height */
    } else if ((st = row_nonzero(d, m, R - 1, &nz, err)) != DTA_OK)
        return st;
    if (!nz) {
        snprintf(why, sizeof why, "comfy_quant %s whose last weight row is all zero: it may be "
                 "padding to a multiple of %u, and the original out_features is not stored in "
                 "the file (a bias would tell it)", fmt, pad);
        return refuse(err, qp->name, why);
    }
    if ((st = col_nonzero(d, m, &nz, err)) != DTA_OK)
        return st;
    if (!nz) {
        snprintf(why, sizeof why, "comfy_quant %s whose last weight column is all zero: it may "
                 "be padding to a multiple of %u, and the original in_features is not stored "
                 "in the file", fmt, pad);
        return refuse(err, qp->name, why);
    }
    return DTA_OK;
}

static dta_status cq_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                          dtap_dq_plan *o, int kind, const char *fmt, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *c = &w->tensors[qp->weight];
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE), gi = dtap_dq_comp(q, qp, DTA_QR_GLOBAL_SCALE);
    char why[320];
    if (dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_G_IDX) != SIZE_MAX) {
        snprintf(why, sizeof why, "comfy_quant %s with a zero point or g_idx, which the format "
                 "does not have", fmt);
        return refuse(err, qp->name, why);
    }
    if (si == SIZE_MAX || (kind == DQP_CQ_NVFP4 && gi == SIZE_MAX)) {
        snprintf(why, sizeof why, "comfy_quant %s without its weight_scale%s", fmt,
                 kind == DQP_CQ_NVFP4 ? " and weight_scale_2" : "");
        return refuse(err, qp->name, why);
    }
    if (kind != DQP_CQ_NVFP4 && gi != SIZE_MAX) {
        snprintf(why, sizeof why, "comfy_quant %s with a second scale, which the format does "
                 "not have", fmt);
        return refuse(err, qp->name, why);
    }
    const dta_tensor *s = &w->tensors[si];
    dta_dtype want = kind == DQP_CQ_NVFP4   ? DTA_U8
                     : kind == DQP_CQ_MXFP8 ? DTA_F8_E4M3
                                            : DTA_I8;
    if (c->dtype != want || c->rank != 2 || !c->shape[0] || !c->shape[1] ||
        c->shape[1] > (UINT64_MAX >> 4)) {
        snprintf(why, sizeof why, "comfy_quant %s with %s codes of rank %d (dtaudit reads a "
                 "nonempty %s [out, %s] Linear weight)", fmt, dta_dtype_name(c->dtype), c->rank,
                 dta_dtype_name(want), kind == DQP_CQ_NVFP4 ? "in/2" : "in");
        return refuse(err, qp->name, why);
    }
    if (!dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si) ||
        (gi != SIZE_MAX && !dtap_dq_stored_plain(d, gi))) {
        snprintf(why, sizeof why, "comfy_quant %s whose tensors are not plainly stored (a "
                 "safetensors input is needed)", fmt);
        return refuse(err, qp->name, why);
    }
    cq_state m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    m.codes = qp->weight;
    m.scales = si;
    m.rows = c->shape[0];
    m.rowbytes = c->shape[1];
    m.in = kind == DQP_CQ_NVFP4 ? c->shape[1] * 2 : c->shape[1];
    m.gbits = 0x3F800000u; /* 1 */
    unsigned char b[4];
    dta_status st;
    if (kind == DQP_CQ_INT8) {
        if (!float_scale(s->dtype)) {
            snprintf(why, sizeof why, "comfy_quant int8_tensorwise with a %s weight_scale "
                     "(dtaudit reads F32, BF16 and F16)", dta_dtype_name(s->dtype));
            return refuse(err, qp->name, why);
        }
        m.sdt = s->dtype;
        if (s->numel == 1) {
            if ((st = dtap_dq_read(d, si, 0, dta_dtype_elem_size(s->dtype), b, err)) != DTA_OK)
                return st;
            m.gbits = dqp_load(s->dtype, b, 0);
        } else if (s->rank == 2 && s->shape[0] == m.rows && s->shape[1] == 1) {
            m.per_row = true;
        } else {
            snprintf(why, sizeof why, "comfy_quant int8_tensorwise with a weight_scale of %llu "
                     "values that is not [%llu, 1] (dtaudit applies one scale or one per row)",
                     (unsigned long long)s->numel, (unsigned long long)m.rows);
            return refuse(err, qp->name, why);
        }
    } else {
        m.bl = kind == DQP_CQ_NVFP4 ? 16 : 32;
        if (m.in % m.bl) {
            snprintf(why, sizeof why, "comfy_quant %s with %llu columns, not whole blocks of "
                     "%llu", fmt, (unsigned long long)m.in, (unsigned long long)m.bl);
            return refuse(err, qp->name, why);
        }
        m.nblk = m.in / m.bl;
        m.ncb = dtap_cdiv(m.nblk, 4);
        bool sdt = kind == DQP_CQ_NVFP4 ? s->dtype == DTA_F8_E4M3 || s->dtype == DTA_U8
                                    : s->dtype == DTA_F8_E8M0 || s->dtype == DTA_U8;
        uint64_t srows = dtap_cdiv(m.rows, 128) * 128;
        if (!sdt || s->rank != 2 || s->shape[0] != srows || s->shape[1] != m.ncb * 4) {
            snprintf(why, sizeof why, "comfy_quant %s whose weight_scale (%s, %llu values) is "
                     "not %s block scales in the 128x4-swizzled layout [%llu, %llu]", fmt,
                     dta_dtype_name(s->dtype), (unsigned long long)s->numel,
                     kind == DQP_CQ_NVFP4 ? "F8_E4M3" : "E8M0", (unsigned long long)srows,
                     (unsigned long long)(m.ncb * 4));
            return refuse(err, qp->name, why);
        }
        if (m.ncb > CQ_MAX_BAND / 512) {
            snprintf(why, sizeof why, "comfy_quant %s wider than %llu columns", fmt,
                     (unsigned long long)(CQ_MAX_BAND / 128 * m.bl));
            return refuse(err, qp->name, why);
        }
        if (kind == DQP_CQ_NVFP4) {
            const dta_tensor *g = &w->tensors[gi];
            if (!float_scale(g->dtype) || g->numel != 1) {
                snprintf(why, sizeof why, "comfy_quant nvfp4 with a weight_scale_2 that is not "
                         "one F32, BF16 or F16 value");
                return refuse(err, qp->name, why);
            }
            if ((st = dtap_dq_read(d, gi, 0, dta_dtype_elem_size(g->dtype), b, err)) != DTA_OK)
                return st;
            m.gbits = dqp_load(g->dtype, b, 0);
        }
        if ((st = logical_shape(d, qp, &m, kind == DQP_CQ_NVFP4 ? 16 : 32, fmt, err)) != DTA_OK)
            return st;
    }
    cq_state *ms = malloc(sizeof *ms);
    if (!ms)
        return nomem(err);
    *ms = m;
    o->state = ms;
    o->scale = si;
    o->rank = 2;
    o->shape[0] = m.rows;
    o->shape[1] = m.in;
    o->numel = m.rows * m.in;
    /* the device path: the same decoding on the stored bytes (dequant_packed.c) */
    o->packed = (dtap_dq_packed){.kind = kind, .flags = m.per_row ? DQP_F_PER_ROW : 0,
                                 .t = {m.codes, m.scales, SIZE_MAX, SIZE_MAX}, .out = m.rows,
                                 .in = m.in, .cols = m.rowbytes, .groups = m.ncb,
                                 .group = m.bl, .gbits = m.gbits};
    return DTA_OK;
}

static dta_status cq_fill(dtap_dq_src *d, const dtap_dq_plan *p, void **cache, uint64_t first,
                          size_t n, float *x, float *s, dta_error *err)
{
    const cq_state *m = p->state;
    if (!m)
        return dta_error_set(err, DTA_E_ARG, 0, "dequantize: no comfy_quant plan");
    if (!n)
        return DTA_OK;
    uint64_t last = first + n - 1, r0 = first / m->in, r1 = last / m->in;
    uint64_t cb0 = r0 * m->rowbytes + dqp_cq_byte(m->kind, first % m->in);
    uint64_t cb1 = r1 * m->rowbytes + dqp_cq_byte(m->kind, last % m->in);
    size_t band = m->kind == DQP_CQ_INT8 ? 0 : (size_t)(m->ncb * 512);
    size_t nc = (size_t)(cb1 - cb0 + 1);
    size_t es = m->per_row ? dta_dtype_elem_size(m->sdt) : 0;
    size_t nrs = (size_t)(r1 - r0 + 1) * es;
    size_t need = band + nc + nrs;
    cq_cache *c = *cache;
    if (!c || c->cap < need) {
        cq_cache *nw = realloc(c, sizeof *nw + need);
        if (!nw)
            return nomem(err);
        if (!c)
            nw->band = UINT64_MAX;
        nw->cap = need;
        *cache = c = nw;
    }
    unsigned char *codes = c->data + band, *rs = codes + nc;
    dta_status st = dtap_dq_read(d, m->codes, cb0, nc, codes, err);
    if (st == DTA_OK && nrs)
        st = dtap_dq_read(d, m->scales, r0 * es, nrs, rs, err);
    if (st != DTA_OK)
        return st;
    uint64_t r = r0, i = first % m->in, key = UINT64_MAX;
    float sc = dqb_bitsf(m->gbits);
    for (size_t k = 0; k < n; k++) {
        x[k] = dqb_bitsf(dqp_cq_code(m->kind, codes[r * m->rowbytes + dqp_cq_byte(m->kind, i) -
                                                    cb0], i));
        if (m->per_row && key != r) {
            sc = dqb_bitsf(dqp_load(m->sdt, rs, r - r0));
            key = r;
        } else if (band && key != r * m->nblk + i / m->bl) {
            uint64_t blk = i / m->bl, rb = r / 128;
            if (c->band != rb) {
                if ((st = dtap_dq_read(d, m->scales, rb * band, band, c->data, err)) != DTA_OK) {
                    c->band = UINT64_MAX;
                    return st;
                }
                c->band = rb;
            }
            uint8_t u = c->data[dqp_swizzled(r, blk, m->ncb) - rb * band];
            sc = dqb_bitsf(dqp_cq_block_scale(m->kind, u, m->gbits));
            key = r * m->nblk + blk;
        }
        s[k] = sc;
        if (++i == m->in) {
            i = 0;
            r++;
        }
    }
    return DTA_OK;
}

static dta_status cf_plan(dtap_dq_src *d, const dta_quant *q, const dta_quant_param *qp,
                          dtap_dq_plan *o, dta_error *err)
{
    const dta_model *w = dtap_dq_model(d);
    const dta_tensor *c = &w->tensors[qp->weight];
    char why[320];
    bool e4 = c->dtype == DTA_F8_E4M3;
    for (size_t k = 0; k < qp->ntensors; k++)
        if (ends_with(w->tensors[qp->tensors[k]].name, ".pre_quant_scale"))
            return refuse(err, qp->name, "with a pre_quant_scale (an input scaling folded into "
                                         "neither weight nor output), which dequantizing alone "
                                         "does not undo");
    if (qp->scheme == DTA_QS_COMFY) {
        cJSON *doc;
        const cJSON *layer;
        dta_status st = layer_json(d, q, qp, &doc, &layer, err);
        if (st != DTA_OK)
            return st;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(layer, "format");
        const cJSON *rot = cJSON_GetObjectItemCaseSensitive(layer, "convrot");
        const cJSON *gs = cJSON_GetObjectItemCaseSensitive(layer, "group_size");
        const char *fmt = cJSON_IsString(f) ? f->valuestring : NULL;
        int kind = !fmt                              ? 0
                   : !strcmp(fmt, "nvfp4")           ? DQP_CQ_NVFP4
                   : !strcmp(fmt, "mxfp8")           ? DQP_CQ_MXFP8
                   : !strcmp(fmt, "int8_tensorwise") ? DQP_CQ_INT8
                                                     : 0;
        why[0] = 0;
        if (rot && !cJSON_IsFalse(rot) && !cJSON_IsNull(rot))
            snprintf(why, sizeof why, "comfy_quant %.60s with convrot (Hadamard-rotated "
                     "weights), which dequantizing alone does not undo", fmt ? fmt : "");
        else if (gs && !(cJSON_IsNumber(gs) && (kind == DQP_CQ_NVFP4 || kind == DQP_CQ_MXFP8) &&
                         gs->valuedouble == (kind == DQP_CQ_NVFP4 ? 16 : 32)))
            snprintf(why, sizeof why, "comfy_quant %.60s with a group_size the format does not "
                     "have", fmt ? fmt : "");
        else if (fmt && !kind && strcmp(fmt, "float8_e4m3fn") && strcmp(fmt, "float8_e5m2"))
            snprintf(why, sizeof why, "comfy_quant format '%.60s', which dtaudit does not "
                     "dequantize (it dequantizes float8_e4m3fn, float8_e5m2, nvfp4, mxfp8 and "
                     "int8_tensorwise without convrot)", fmt);
        else if (fmt && !kind && (c->dtype == DTA_F8_E4M3 || c->dtype == DTA_F8_E5M2) &&
                 e4 != !strcmp(fmt, "float8_e4m3fn"))
            snprintf(why, sizeof why, "comfy_quant format '%s' over %s codes", fmt,
                     dta_dtype_name(c->dtype));
        if (!why[0] && kind) {
            char fname[32];
            snprintf(fname, sizeof fname, "%s", fmt);
            cJSON_Delete(doc);
            return cq_plan(d, q, qp, o, kind, fname, err);
        }
        cJSON_Delete(doc);
        if (why[0])
            return refuse(err, qp->name, why);
    } else {
        size_t mk = scaled_marker(w, qp->name);
        dta_dtype md = mk == SIZE_MAX ? DTA_DTYPE_NONE : w->tensors[mk].dtype;
        if ((md == DTA_F8_E4M3 || md == DTA_F8_E5M2 || md == DTA_F32) &&
            c->dtype != (md == DTA_F32 ? DTA_F8_E4M3 : md)) {
            snprintf(why, sizeof why, "scaled FP8 with %s codes under a scaled_fp8 marker of "
                     "%s ('%.100s'): ComfyUI casts them to the marker's format on load",
                     dta_dtype_name(c->dtype), dta_dtype_name(md), w->tensors[mk].name);
            return refuse(err, qp->name, why);
        }
    }
    if (c->dtype != DTA_F8_E4M3 && c->dtype != DTA_F8_E5M2) {
        snprintf(why, sizeof why, "%s with %s codes, which dtaudit does not dequantize (it "
                 "dequantizes F8_E4M3 and F8_E5M2 scaled FP8)",
                 qp->scheme == DTA_QS_COMFY ? "comfy_quant" : "scaled FP8",
                 dta_dtype_name(c->dtype));
        return refuse(err, qp->name, why);
    }
    if (dtap_dq_comp(q, qp, DTA_QR_GLOBAL_SCALE) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_ZERO_POINT) != SIZE_MAX ||
        dtap_dq_comp(q, qp, DTA_QR_G_IDX) != SIZE_MAX)
        return refuse(err, qp->name, "FP8 with a second scale, zero point or g_idx, which "
                                     "dtaudit does not apply");
    size_t si = dtap_dq_comp(q, qp, DTA_QR_SCALE);
    if (si == SIZE_MAX)
        return refuse(err, qp->name, "FP8 without its scale");
    const dta_tensor *s = &w->tensors[si];
    if (s->dtype != DTA_F32 && s->dtype != DTA_BF16 && s->dtype != DTA_F16) {
        snprintf(why, sizeof why, "FP8 with a %s scale (dtaudit reads F32, BF16 and F16 ones)",
                 dta_dtype_name(s->dtype));
        return refuse(err, qp->name, why);
    }
    if (c->rank < 1 || !dtap_dq_stored_plain(d, qp->weight) || !dtap_dq_stored_plain(d, si))
        return refuse(err, qp->name, "FP8 whose codes are a scalar or whose tensors are not "
                                     "plainly stored (a safetensors input is needed)");
    uint64_t in = c->shape[c->rank - 1], rows = in ? c->numel / in : 0;
    if (s->numel == 1 || !c->numel) { /* per tensor: one block of the whole tensor */
        o->grid_in = in ? in : 1;
        o->grid_bm = rows ? rows : 1;
        o->grid_bn = o->grid_in;
    } else {
        /* per output row: [out, 1, ...] with the codes' rank */
        bool row = c->rank >= 2 && s->rank == c->rank && s->shape[0] == c->shape[0];
        for (int k = 1; row && k < s->rank; k++)
            row = s->shape[k] == 1;
        if (!row) {
            char ss[96], cs[96];
            size_t a = 0, b = 0;
            for (int k = 0; k < s->rank && a < sizeof ss; k++)
                a += (size_t)snprintf(ss + a, sizeof ss - a, "%s%llu", k ? ", " : "",
                                      (unsigned long long)s->shape[k]);
            for (int k = 0; k < c->rank && b < sizeof cs; k++)
                b += (size_t)snprintf(cs + b, sizeof cs - b, "%s%llu", k ? ", " : "",
                                      (unsigned long long)c->shape[k]);
            snprintf(why, sizeof why, "FP8 with a scale of shape [%s] over codes [%s]: "
                     "dtaudit applies one scale or one per output row ([out, 1])", ss, cs);
            return refuse(err, qp->name, why);
        }
        o->grid_in = c->numel / c->shape[0];
        o->grid_bm = 1;
        o->grid_bn = o->grid_in;
    }
    o->scale = si;
    o->rank = c->rank;
    for (int k = 0; k < c->rank; k++)
        o->shape[k] = c->shape[k];
    o->numel = c->numel;
    return DTA_OK;
}

const dtap_dq_ops dtap_dq_comfy_fp8_ops = {.scheme = DTA_QS_COMFY_FP8, .plan = cf_plan};
const dtap_dq_ops dtap_dq_comfy_quant_ops = {
    .scheme = DTA_QS_COMFY, .plan = cf_plan, .fill = cq_fill, .release = free};
