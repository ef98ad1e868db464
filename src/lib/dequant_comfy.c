/* Dequantization of ComfyUI scaled FP8 (dequant_scheme.h; shared/quant.md 10.1-10.2).
 *
 * Legacy "scaled fp8" (comfy-scaled-fp8): per layer "<p>.weight" F8_E4M3 or F8_E5M2 and
 * "<p>.scale_weight", beside a "scaled_fp8" marker tensor ("<prefix>scaled_fp8") whose
 * dtype is the weights' float8 format (F32: e4m3fn; ComfyUI casts the weights to it on
 * load, so codes of the other float8 format are refused); "<p>.scale_input" is dropped.
 * Current mixed precision (comfy-quant): "<p>.comfy_quant" U8 bytes of JSON {"format":
 * ...} or the file's __metadata__._quantization_metadata {"layers": {module: {"format":
 * ...}}}, beside "<p>.weight" and "<p>.weight_scale" ("<p>.input_scale" dropped). The
 * float8 formats (float8_e4m3fn, float8_e5m2; the format must match the codes' dtype)
 * are dequantized; every other format (nvfp4 with its swizzled block scales and
 * high-nibble-first codes, mxfp8, int8_tensorwise, the w4 formats) and any layer that
 * asks for a rotation (convrot) or carries a pre_quant_scale is refused, naming it.
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
 * scale (tests/cli/dequant_comfy.sh counts it against comfy-kitchen itself). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dequant_scheme.h"

#define CF_MAX_MARKER 4096u /* bytes of a comfy_quant JSON marker we read */

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
        const char *fmt = cJSON_IsString(f) ? f->valuestring : NULL;
        why[0] = 0;
        if (rot && !cJSON_IsFalse(rot) && !cJSON_IsNull(rot))
            snprintf(why, sizeof why, "comfy_quant with convrot (rotated weights), which "
                                      "dequantizing alone does not undo");
        else if (fmt && strcmp(fmt, "float8_e4m3fn") && strcmp(fmt, "float8_e5m2"))
            snprintf(why, sizeof why, "comfy_quant format '%.60s', which dtaudit does not "
                     "dequantize (it dequantizes float8_e4m3fn and float8_e5m2)", fmt);
        else if (fmt && (c->dtype == DTA_F8_E4M3 || c->dtype == DTA_F8_E5M2) &&
                 e4 != !strcmp(fmt, "float8_e4m3fn"))
            snprintf(why, sizeof why, "comfy_quant format '%s' over %s codes", fmt,
                     dta_dtype_name(c->dtype));
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
const dtap_dq_ops dtap_dq_comfy_quant_ops = {.scheme = DTA_QS_COMFY, .plan = cf_plan};
