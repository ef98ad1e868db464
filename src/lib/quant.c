/* Quantized checkpoints: scheme recognition and logical parameters (include/dtaudit/quant.h).
 *
 * Three steps, headers only:
 *  1. the config (m->quant_config, or a config-like safetensors __metadata__ entry) names
 *     a scheme, its block / group size, bits and ignore list;
 *  2. every tensor name is matched against the companion suffixes of all schemes
 *     (quant.md §1.7): a companion is attached to the tensor holding its codes, and a
 *     weight with its companions becomes one logical parameter;
 *  3. each parameter is checked against its scheme (companions present, shapes fitting the
 *     weight: block grids with ceil, group counts, packed sizes), and the whole against the
 *     config (ignore list, quantized siblings, scheme agreement, stale or missing config).
 * The problems are returned as issues; audit.c turns them into findings. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtaudit/quant.h"
#include "arena.h"
#include "model_build.h"
#include "quant_dynamic.h"
#include "src.h"

static const char *const scheme_names[DTA_QS_COUNT] = {
    "none", "fp8-block", "fp8", "fbgemm-fp8", "modelopt-fp8", "modelopt-nvfp4",
    "compressed-tensors-float", "compressed-tensors-int", "compressed-tensors-pack",
    "compressed-tensors-nvfp4", "compressed-tensors-mxfp4", "bnb-4bit", "bnb-8bit", "gptq",
    "awq", "mxfp4", "comfy-scaled-fp8", "comfy-quant", "quanto", "torchao", "hqq", "unknown"};

static const char *const role_names[DTA_QR_COUNT] = {
    "none", "weight", "scale", "scale_inv", "global_scale", "zero_point", "g_idx", "shape",
    "absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state", "format",
    "input_scale", "kv_scale", "marker", "meta"};

const char *dta_quant_scheme_name(dta_quant_scheme s)
{
    return s >= 0 && s < DTA_QS_COUNT ? scheme_names[s] : "?";
}

const char *dta_quant_role_name(dta_quant_role r)
{
    return r >= 0 && r < DTA_QR_COUNT ? role_names[r] : "?";
}

/* ---- companion suffixes ----------------------------------------------------------- */

/* A name ending in `suffix` is a tensor of role `role`; its codes are the name with the
 * suffix replaced by one of `data` (tried in order); the logical parameter is the prefix
 * plus `param`. Weak suffixes are ordinary names elsewhere (scales, input_scale): they are
 * companions only beside codes. WEIGHT entries name the codes themselves. */
typedef struct {
    const char *suffix;
    dta_quant_role role;
    const char *data[3];
    const char *param;
    bool weak;
    bool stack; /* a ModelOpt NVFP4 expert stack's companion: only beside U8 [E, a, b]
                 * codes named by the stack itself (nvfp4_stack) */
} sfx;

static const sfx suffixes[] = {
    {".weight_scale_inv", DTA_QR_SCALE_INV, {".weight"}, ".weight", false, false},
    {"_scales_inv", DTA_QR_SCALE_INV, {""}, "", false, false},
    {"_scale_inv", DTA_QR_SCALE_INV, {""}, "", false, false},
    {".weight_scale_2", DTA_QR_GLOBAL_SCALE, {".weight"}, ".weight", false, false},
    {".weight_global_scale", DTA_QR_GLOBAL_SCALE, {".weight_packed", ".weight"}, ".weight", false, false},
    {".input_global_scale", DTA_QR_INPUT_SCALE, {".weight_packed", ".weight"}, ".weight", true, false},
    {".weight_scale", DTA_QR_SCALE, {".weight_packed", ".weight"}, ".weight", false, false},
    {".weight_zero_point", DTA_QR_ZERO_POINT, {".weight_packed", ".weight"}, ".weight", false, false},
    {".weight_g_idx", DTA_QR_G_IDX, {".weight_packed", ".weight"}, ".weight", false, false},
    {".weight_shape", DTA_QR_SHAPE, {".weight_packed"}, ".weight", false, false},
    {".weight_packed", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {".input_scale", DTA_QR_INPUT_SCALE, {".weight_packed", ".weight", ".qweight"}, ".weight", true, false},
    {".output_scale", DTA_QR_INPUT_SCALE, {".weight_packed", ".weight"}, ".weight", true, false},
    {".pre_quant_scale", DTA_QR_INPUT_SCALE, {".weight"}, ".weight", true, false},
    {".qweight", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {".qzeros", DTA_QR_ZERO_POINT, {".qweight"}, ".weight", false, false},
    {".scales", DTA_QR_SCALE, {".qweight"}, ".weight", true, false},
    {".g_idx", DTA_QR_G_IDX, {".qweight"}, ".weight", true, false},
    {".weight.absmax", DTA_QR_ABSMAX, {".weight"}, ".weight", false, false},
    {".weight.quant_map", DTA_QR_QUANT_MAP, {".weight"}, ".weight", false, false},
    {".weight.nested_absmax", DTA_QR_NESTED_ABSMAX, {".weight"}, ".weight", false, false},
    {".weight.nested_quant_map", DTA_QR_NESTED_MAP, {".weight"}, ".weight", false, false},
    {".weight.quant_state.bitsandbytes__nf4", DTA_QR_QUANT_STATE, {".weight"}, ".weight", false, false},
    {".weight.quant_state.bitsandbytes__fp4", DTA_QR_QUANT_STATE, {".weight"}, ".weight", false, false},
    {".SCB", DTA_QR_SCALE, {".weight"}, ".weight", false, false},
    {".weight_format", DTA_QR_FORMAT, {".weight"}, ".weight", false, false},
    {".scale_weight", DTA_QR_SCALE, {".weight"}, ".weight", false, false},
    {".scale_input", DTA_QR_INPUT_SCALE, {".weight"}, ".weight", true, false},
    {".comfy_quant", DTA_QR_MARKER, {".weight"}, ".weight", false, false},
    {"_blocks", DTA_QR_WEIGHT, {""}, "", false, false},
    {"_scales", DTA_QR_SCALE, {"_blocks"}, "", true, false},
    {".weight._data._data", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {".weight._data", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {".weight._scale", DTA_QR_SCALE, {".weight._data._data", ".weight._data"}, ".weight", false, false},
    {".weight._shift", DTA_QR_ZERO_POINT, {".weight._data._data", ".weight._data"}, ".weight", false, false},
    {"._weight_qdata", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {"._weight_scale", DTA_QR_SCALE, {"._weight_qdata"}, ".weight", false, false},
    {"._weight_zero_point", DTA_QR_ZERO_POINT, {"._weight_qdata"}, ".weight", false, false},
    {"._weight_per_tensor_scale", DTA_QR_GLOBAL_SCALE, {"._weight_qdata"}, ".weight", false, false},
    {".W_q", DTA_QR_WEIGHT, {""}, ".weight", false, false},
    {".scale", DTA_QR_SCALE, {".W_q"}, ".weight", true, false},
    {".zero", DTA_QR_ZERO_POINT, {".W_q"}, ".weight", true, false},
    {".nbits", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".group_size", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".shape", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".axis", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".packing", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".unpack_view_dtype", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".view_as_float", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".quant_scale", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".quant_zero", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".compute_dtype", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".offload_meta", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".encoded_state_dict", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".stores_quant_config", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".channel_wise", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".optimize", DTA_QR_META, {".W_q"}, ".weight", true, false},
    {".round_zero", DTA_QR_META, {".W_q"}, ".weight", true, false},
    /* ModelOpt's bmm expert stacks (Llama4TextExperts, GptOssExperts): the companions of
     * "experts.gate_up_proj" are "experts.gate_up_proj_weight_scale" etc.
     * (quantizer_attr_names); last, so that every suffix above wins */
    {"_weight_scale_2", DTA_QR_GLOBAL_SCALE, {""}, "", true, true},
    {"_weight_scale", DTA_QR_SCALE, {""}, "", true, true},
    {"_input_scale", DTA_QR_INPUT_SCALE, {""}, "", true, true},
};
#define NSUFFIXES (sizeof suffixes / sizeof suffixes[0])

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* The suffixes by their last character, in table order (the first match wins). */
typedef struct {
    size_t len[NSUFFIXES];
    uint64_t tail[NSUFFIXES]; /* the suffix's last 8 bytes (all, when shorter) */
    uint64_t mask[NSUFFIXES]; /* the bytes of tail that count, for the name's last 8 */
    uint8_t idx[256][NSUFFIXES];
    uint8_t n[256];
    size_t plen[NSUFFIXES];    /* strlen(param) */
    size_t dlen[NSUFFIXES][3]; /* strlen(data[d]) */
    bool same[NSUFFIXES][3];   /* data[d] is param */
    uint64_t dtail[NSUFFIXES][3], dmask[NSUFFIXES][3]; /* data[d] as tail and mask */
    bool pmod[NSUFFIXES];      /* param is one component (".weight"): pmod */
    bool weight_free; /* no suffix ends in ".weight" or ends it: such names match none */
    uint64_t weight_tail, weight_mask; /* ".weight" as last8 gives it */
    /* the codes suffixes: the distinct non-empty data[] tails (".weight", ".qweight", ...) */
    const char *codes[3 * NSUFFIXES];
    size_t ncodes, clen[3 * NSUFFIXES];
    bool clast[256];   /* the codes suffixes' last bytes */
    bool weight_codes; /* ".weight" is one */
} sfx_index;

/* The last min(n, 8) bytes of s[0..n) as the low bytes of a word read from s + n - 8. */
static uint64_t last8(const char *s, size_t n)
{
    uint64_t w;
    if (n >= 8) {
        memcpy(&w, s + n - 8, 8);
        return w;
    }
    unsigned char b[8] = {0};
    memcpy(b + 8 - n, s, n);
    memcpy(&w, b, 8);
    return w;
}

static void sfx_index_init(sfx_index *x)
{
    memset(x->n, 0, sizeof x->n);
    for (size_t i = 0; i < NSUFFIXES; i++) {
        x->len[i] = strlen(suffixes[i].suffix);
        unsigned char last = (unsigned char)suffixes[i].suffix[x->len[i] - 1];
        x->idx[last][x->n[last]++] = (uint8_t)i;
        unsigned char ones[8] = {0};
        size_t k = x->len[i] < 8 ? x->len[i] : 8;
        memset(ones + 8 - k, 0xff, k);
        memcpy(&x->mask[i], ones, 8);
        x->tail[i] = last8(suffixes[i].suffix, x->len[i]);
        x->plen[i] = strlen(suffixes[i].param);
        x->pmod[i] = x->plen[i] > 1 && suffixes[i].param[0] == '.' &&
                     !memchr(suffixes[i].param + 1, '.', x->plen[i] - 1);
        for (int d = 0; d < 3; d++) {
            x->dlen[i][d] = suffixes[i].data[d] ? strlen(suffixes[i].data[d]) : 0;
            x->dtail[i][d] = suffixes[i].data[d] ? last8(suffixes[i].data[d], x->dlen[i][d]) : 0;
            unsigned char dones[8] = {0};
            size_t dk = x->dlen[i][d] < 8 ? x->dlen[i][d] : 8;
            memset(dones + 8 - dk, 0xff, dk);
            memcpy(&x->dmask[i][d], dones, 8);
            x->same[i][d] =
                suffixes[i].data[d] && !strcmp(suffixes[i].data[d], suffixes[i].param);
        }
    }
    /* most names end in ".weight": when no suffix can match one, it is not compared */
    static const char w[] = ".weight";
    size_t wl = sizeof w - 1;
    x->weight_free = true;
    for (size_t i = 0; i < NSUFFIXES; i++) {
        size_t k = x->len[i];
        if ((k <= wl && memcmp(w + wl - k, suffixes[i].suffix, k) == 0) ||
            (k > wl && memcmp(suffixes[i].suffix + k - wl, w, wl) == 0))
            x->weight_free = false;
    }
    unsigned char ones[8] = {0};
    memset(ones + 8 - wl, 0xff, wl);
    memcpy(&x->weight_mask, ones, 8);
    x->weight_tail = last8(w, wl);
    x->ncodes = 0;
    x->weight_codes = false;
    memset(x->clast, 0, sizeof x->clast);
    for (size_t i = 0; i < NSUFFIXES; i++)
        for (int d = 0; d < 3 && suffixes[i].data[d]; d++) {
            const char *t = suffixes[i].data[d];
            bool seen = !t[0];
            for (size_t k = 0; k < x->ncodes && !seen; k++)
                seen = strcmp(x->codes[k], t) == 0;
            if (seen)
                continue;
            x->clen[x->ncodes] = strlen(t);
            x->codes[x->ncodes++] = t;
            x->clast[(unsigned char)t[strlen(t) - 1]] = true;
            x->weight_codes |= !strcmp(t, w);
        }
}

/* Whether name[0..n) (last8 gives w) ends in a codes suffix: it goes in the codes table. */
static bool codes_named(const sfx_index *x, const char *name, size_t n, uint64_t w)
{
    if (!n || !x->clast[(unsigned char)name[n - 1]])
        return false;
    if (x->weight_codes && n >= 7 && (w & x->weight_mask) == x->weight_tail)
        return true;
    for (size_t k = 0; k < x->ncodes; k++)
        if (n >= x->clen[k] && x->codes[k][x->clen[k] - 1] == name[n - 1] && memcmp(name + n - x->clen[k], x->codes[k], x->clen[k]) == 0)
            return true;
    return false;
}

/* The suffix entry a name matches (w: last8 of it), -1 when none: only the suffixes ending in the name's
 * last character are compared (none ends in "weight", most names' end), their last 8
 * bytes first. */
static int match_suffix(const char *name, size_t n, uint64_t w, const sfx_index *x)
{
    if (!n)
        return -1;
    unsigned char last = (unsigned char)name[n - 1];
    if (x->weight_free && n >= 7 && (w & x->weight_mask) == x->weight_tail)
        return -1;
    for (size_t j = 0; j < x->n[last]; j++) {
        size_t i = x->idx[last][j], k = x->len[i];
        if (n > k && (w & x->mask[i]) == x->tail[i] &&
            (k <= 8 || memcmp(name + n - k, suffixes[i].suffix, k - 8) == 0))
            return (int)i;
    }
    return -1;
}

/* buf = name[0..pl) + tail[0..tl); its length, 0 when it does not fit cap */
static size_t join_n(char *buf, size_t cap, const char *name, size_t pl, const char *tail, size_t tl)
{
    if (pl + tl >= cap)
        return 0;
    memcpy(buf, name, pl);
    memcpy(buf + pl, tail, tl);
    buf[pl + tl] = 0;
    return pl + tl;
}

static size_t join(char *buf, size_t cap, const char *name, size_t pl, const char *tail)
{
    return join_n(buf, cap, name, pl, tail, strlen(tail));
}

/* ---- a string -> index hash table ---------------------------------------------------- */

/* Open addressing over borrowed keys, read by index from an array of strings, from a
 * model's tensors (their names: no copy of 90k pointers) or from the parameters being
 * built (through the dta_quant's params pointer, which moves as the array grows). */
typedef struct {
    uint32_t *slot; /* index + 1, 0: empty (indices stay below 2 * DTA_MAX_TENSORS) */
    size_t cap;
    const char **keys;              /* per index, or: */
    const dta_tensor *tensors;      /* per index: tensors[idx].name, or: */
    dta_quant_param *const *params; /* per index: (*params)[idx].name */
    const uint32_t *lens; /* borrowed, per index: the key's length; NULL: computed */
} strtab;

/* strlen(p->name) of a name get_param copied: its module follows it in the same block
 * (the names of the orphans' table are all copied) */
static size_t copied_name_len(const dta_quant_param *p)
{
    return (size_t)(p->module - p->name) - 1;
}

static const char *key_at(const strtab *t, size_t idx)
{
    return t->tensors ? t->tensors[idx].name : t->params ? (*t->params)[idx].name : t->keys[idx];
}

static size_t key_len(const strtab *t, size_t idx)
{
    return t->lens ? t->lens[idx] : t->params ? copied_name_len(&(*t->params)[idx]) : strlen(key_at(t, idx));
}

static uint64_t tab_hash(const char *s, size_t n)
{
    return dtap_hash(s, n, 7);
}

static size_t tab_find(const strtab *t, const char *s, size_t n)
{
    if (!t->cap)
        return SIZE_MAX;
    size_t h = (size_t)(tab_hash(s, n) & (t->cap - 1));
    while (t->slot[h]) {
        size_t idx = t->slot[h] - 1;
        if (key_len(t, idx) == n && memcmp(key_at(t, idx), s, n) == 0)
            return idx;
        h = (h + 1) & (t->cap - 1);
    }
    return SIZE_MAX;
}

/* Inserts key index idx with its hash; a duplicate key keeps the first. Returns the index
 * the table holds for the key: idx, or its first namesake's. */
static size_t tab_put_h(strtab *t, size_t idx, uint64_t hash)
{
    const char *k = key_at(t, idx);
    size_t n = key_len(t, idx);
    size_t h = (size_t)(hash & (t->cap - 1));
    while (t->slot[h]) {
        size_t o = t->slot[h] - 1;
        if (key_len(t, o) == n && memcmp(key_at(t, o), k, n) == 0)
            return o;
        h = (h + 1) & (t->cap - 1);
    }
    t->slot[h] = (uint32_t)(idx + 1);
    return idx;
}

static size_t tab_put(strtab *t, size_t idx)
{
    return tab_put_h(t, idx, tab_hash(key_at(t, idx), key_len(t, idx)));
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n * 2 + 2)
        c *= 2;
    return c;
}

/* ---- the analysis context ------------------------------------------------------------- */

typedef struct {
    const dta_model *m;
    dta_quant *q;
    dta_error *err;
    strtab names;        /* tensor names, made at the first find_tensor */
    strtab codes;        /* the names ending in a codes suffix, made at the first find_codes */
    uint8_t *tflag;      /* per tensor: TF_CODES, TF_LATER (group_tensors) */
    size_t ncodes;       /* tensors marked TF_CODES */
    bool names_failed;   /* out of memory making it */
    uint32_t *nlens;     /* per tensor: strlen of its name */
    strtab pnames;       /* the names of the parameters made from orphans (orphan) */
    bool *orphan;        /* per parameter: made from an orphan companion (in pnames) */
    size_t norphan;
    size_t capparams;
    regex_t *re;         /* compiled "re:" ignore entries, per ignore entry */
    bool *re_ok;
    dta_dtype compute;
    char *ct_strategy;   /* compressed-tensors weights strategy */
    bool config_known;   /* a config named a scheme */
    bool comfy_scaled;   /* ComfyUI scaled FP8: a scaled_fp8 marker or scale_weight tensors */
    bool scaled_marker;  /* the scaled_fp8 marker tensor itself */
    uint32_t fit_bits;   /* bits every parameter fits when the config's do not (0: the config's) */
    dtap_qdyn *dyn;      /* GPTQModel's per-module "dynamic" overrides, NULL: none */
    strtab meta;         /* __metadata__ keys (torchao's per-name descriptions), made when needed */
    bool meta_made;
} qctx;

/* Sizes a parameter is checked with; 0: the config's (or the scheme's default). */
typedef struct {
    uint32_t bm, bn;     /* block rows, cols */
    uint32_t group;
    uint32_t bits;
} qsize;

/* A dta_quant with the arena of its parameters' names and tensor lists (one block each
 * would cost a malloc and a free per parameter: 45k of each for DeepSeek-V3). */
typedef struct {
    dta_quant q; /* first: a dta_quant * is a quant_impl * */
    void *arena;
} quant_impl;

static void **qarena(dta_quant *q)
{
    return &((quant_impl *)(void *)q)->arena;
}

static dta_status nomem(qctx *c)
{
    return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static bool jtrue(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static int64_t jint(const cJSON *o, const char *k, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNumber(v) && v->valuedouble > -1e9 && v->valuedouble < 1e9)
        return (int64_t)v->valuedouble;
    return dflt;
}

static uint32_t clamp_u32(int64_t v)
{
    return v > 0 && v < (1 << 30) ? (uint32_t)v : 0;
}

static dta_status add_ignore(qctx *c, const cJSON *arr)
{
    dta_quant *q = c->q;
    if (!cJSON_IsArray(arr))
        return DTA_OK;
    for (const cJSON *e = arr->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring || q->nignore >= 65536)
            continue;
        char **p = realloc(q->ignore, (q->nignore + 1) * sizeof *p);
        if (!p)
            return nomem(c);
        q->ignore = p;
        if (!(p[q->nignore] = strdup(e->valuestring)))
            return nomem(c);
        q->nignore++;
    }
    return DTA_OK;
}

static dta_status set_str(qctx *c, char **dst, const char *s)
{
    free(*dst);
    *dst = s ? strdup(s) : NULL;
    return s && !*dst ? nomem(c) : DTA_OK;
}

/* compressed-tensors: format, first config group's weights args. */
static dta_quant_scheme ct_scheme(qctx *c, const cJSON *doc)
{
    dta_quant *q = c->q;
    const char *fmt = jstr(doc, "format");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(doc, "config_groups");
    const cJSON *w = NULL;
    const char *gfmt = NULL;
    if (cJSON_IsObject(groups))
        for (const cJSON *g = groups->child; g && !w; g = g->next) {
            const cJSON *ww = cJSON_GetObjectItemCaseSensitive(g, "weights");
            if (cJSON_IsObject(ww)) {
                w = ww;
                gfmt = jstr(g, "format");
            }
        }
    const char *type = w ? jstr(w, "type") : NULL;
    if (w) {
        q->bits = clamp_u32(jint(w, "num_bits", 0));
        int64_t gs = jint(w, "group_size", 0);
        const char *strategy = jstr(w, "strategy");
        free(c->ct_strategy);
        c->ct_strategy = strategy ? strdup(strategy) : NULL;
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(w, "block_structure");
        if (cJSON_GetArraySize(bs) == 2) {
            q->block[0] = clamp_u32(cJSON_GetArrayItem(bs, 0)->valuedouble);
            q->block[1] = clamp_u32(cJSON_GetArrayItem(bs, 1)->valuedouble);
        } else if (gs > 0)
            q->group = clamp_u32(gs);
    }
    if (fmt && !strcmp(fmt, "mixed-precision") && gfmt)
        fmt = gfmt;
    if (fmt) {
        if (!strcmp(fmt, "float-quantized") || !strcmp(fmt, "naive-quantized"))
            return DTA_QS_CT_FLOAT;
        if (!strcmp(fmt, "int-quantized"))
            return DTA_QS_CT_INT;
        if (!strcmp(fmt, "pack-quantized"))
            return DTA_QS_CT_PACK;
        if (!strcmp(fmt, "nvfp4-pack-quantized"))
            return DTA_QS_CT_NVFP4;
        if (!strcmp(fmt, "mxfp4-pack-quantized"))
            return DTA_QS_CT_MXFP4;
        if (strcmp(fmt, "mixed-precision") != 0)
            return DTA_QS_UNKNOWN; /* dense, sparse-*, marlin-24: not a quantized layout */
    }
    if (type && !strcmp(type, "float"))
        return q->bits == 4 ? DTA_QS_CT_NVFP4 : DTA_QS_CT_FLOAT;
    if (type && !strcmp(type, "int"))
        return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(
                   cJSON_GetObjectItemCaseSensitive(groups, groups && groups->child
                                                                ? groups->child->string
                                                                : ""),
                   "input_activations")) && q->bits == 8
                   ? DTA_QS_CT_INT
                   : DTA_QS_CT_PACK;
    return DTA_QS_UNKNOWN;
}

/* optimum-quanto weights: "int8" / "qint8", "int4", "int2", "float8" / "qfloat8_e4m3fn" */
static uint32_t quanto_bits(const char *w)
{
    if (!w)
        return 0;
    if (strstr(w, "int4"))
        return 4;
    if (strstr(w, "int2"))
        return 2;
    return strstr(w, "int8") || strstr(w, "float8") ? 8 : 0;
}

/* Step 1: what the config (or config-like metadata) says. */
static dta_status read_config(qctx *c)
{
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    cJSON *doc = NULL;
    const char *source = NULL;
    dta_status st = DTA_OK;

    if (m->quant_config) {
        doc = cJSON_Parse(m->quant_config);
        source = m->quant_config_source;
    }
    for (size_t i = 0; !doc && i < m->nmetadata; i++)
        if (!strcmp(m->metadata[i].key, "quantization_config") && m->metadata[i].value) {
            doc = cJSON_Parse(m->metadata[i].value);
            if (doc && !cJSON_IsObject(doc)) {
                cJSON_Delete(doc);
                doc = NULL;
            }
            source = "__metadata__";
        }
    if (!doc) {
        /* config-less formats that describe themselves in __metadata__ */
        for (size_t i = 0; i < m->nmetadata; i++) {
            if (!strcmp(m->metadata[i].key, "_quantization_metadata")) {
                q->scheme = DTA_QS_COMFY;
                q->source = "__metadata__";
                return set_str(c, &q->method, "comfy_quant");
            }
            if (!strcmp(m->metadata[i].key, "tensor_names")) {
                q->scheme = DTA_QS_TORCHAO;
                q->source = "__metadata__";
                return set_str(c, &q->method, "torchao");
            }
        }
        return DTA_OK;
    }
    q->source = source;
    const char *qm = jstr(doc, "quant_method");
    if (!qm)
        qm = jstr(doc, "method");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(doc, "quantization");
    dta_quant_scheme s = DTA_QS_UNKNOWN;
    char detail[160] = "";

    if (source && !strcmp(source, "hf_quant_config.json") && cJSON_IsObject(mo)) {
        const char *algo = jstr(mo, "quant_algo");
        st = set_str(c, &q->method, algo ? algo : "modelopt");
        if (st == DTA_OK)
            st = add_ignore(c, cJSON_GetObjectItemCaseSensitive(mo, "exclude_modules"));
        q->group = clamp_u32(jint(mo, "group_size", 0));
        s = !algo ? DTA_QS_UNKNOWN
            : !strcmp(algo, "NVFP4") ? DTA_QS_MODELOPT_NVFP4
            : !strncmp(algo, "FP8", 3) ? DTA_QS_MODELOPT_FP8 : DTA_QS_UNKNOWN;
        goto done;
    }
    if (source && !strcmp(source, "quanto_qmap.json")) {
        /* {module: {"weights": "qint4", "activations": "none"}} */
        s = DTA_QS_QUANTO;
        st = set_str(c, &q->method, "quanto");
        const char *wt = cJSON_IsObject(doc->child) ? jstr(doc->child, "weights") : NULL;
        q->bits = quanto_bits(wt);
        if (wt)
            snprintf(detail, sizeof detail, "weights %s", wt);
        goto done;
    }
    if (!qm) {
        if (jtrue(doc, "load_in_4bit") || jtrue(doc, "_load_in_4bit"))
            qm = "bitsandbytes";
        else if (jtrue(doc, "load_in_8bit") || jtrue(doc, "_load_in_8bit"))
            qm = "bitsandbytes";
        else if (cJSON_GetObjectItemCaseSensitive(doc, "w_bit"))
            qm = "awq";
        else if (cJSON_GetObjectItemCaseSensitive(doc, "bits") &&
                 cJSON_GetObjectItemCaseSensitive(doc, "group_size"))
            qm = "gptq";
    }
    if ((st = set_str(c, &q->method, qm ? qm : "unknown")) != DTA_OK)
        goto out;
    static const char *ignore_keys[] = {"ignore", "modules_to_not_convert", "exclude_modules",
                                        "llm_int8_skip_modules", "ignored_layers",
                                        "skip_modules"};
    for (size_t k = 0; k < sizeof ignore_keys / sizeof ignore_keys[0] && st == DTA_OK; k++)
        st = add_ignore(c, cJSON_GetObjectItemCaseSensitive(doc, ignore_keys[k]));
    if (st != DTA_OK || !qm)
        goto done;
    if (!strcmp(qm, "fp8")) {
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(doc, "weight_block_size");
        if (cJSON_GetArraySize(bs) == 2) {
            s = DTA_QS_FP8_BLOCK;
            q->block[0] = clamp_u32(cJSON_GetArrayItem(bs, 0)->valuedouble);
            q->block[1] = clamp_u32(cJSON_GetArrayItem(bs, 1)->valuedouble);
            if (jstr(doc, "scale_fmt"))
                snprintf(detail, sizeof detail, "scale_fmt %s", jstr(doc, "scale_fmt"));
        } else
            s = DTA_QS_FP8;
    } else if (!strcmp(qm, "fbgemm_fp8"))
        s = DTA_QS_FBGEMM_FP8;
    else if (!strcmp(qm, "compressed-tensors")) {
        s = ct_scheme(c, doc);
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(doc, "transform_config");
        if (cJSON_IsObject(tc) && tc->child)
            snprintf(detail, sizeof detail, "transform_config present");
    } else if (!strcmp(qm, "modelopt")) {
        const char *algo = jstr(doc, "quant_algo");
        s = !algo ? DTA_QS_UNKNOWN
            : !strcmp(algo, "NVFP4") ? DTA_QS_MODELOPT_NVFP4
            : !strncmp(algo, "FP8", 3) ? DTA_QS_MODELOPT_FP8 : DTA_QS_UNKNOWN;
        if (s == DTA_QS_MODELOPT_NVFP4)
            q->group = 16;
        if (algo)
            snprintf(detail, sizeof detail, "quant_algo %s", algo);
    } else if (!strcmp(qm, "bitsandbytes")) {
        if (jtrue(doc, "load_in_8bit") || jtrue(doc, "_load_in_8bit")) {
            s = DTA_QS_BNB_8BIT;
            q->bits = 8;
        } else {
            s = DTA_QS_BNB_4BIT;
            q->bits = 4;
            const char *qt = jstr(doc, "bnb_4bit_quant_type");
            snprintf(detail, sizeof detail, "%s%s", qt ? qt : "nf4",
                     jtrue(doc, "bnb_4bit_use_double_quant") ? ", double quantization" : "");
        }
    } else if (!strcmp(qm, "gptq") || !strcmp(qm, "auto-round")) {
        const char *pf = jstr(doc, "packing_format");
        s = !strcmp(qm, "gptq") || (pf && strstr(pf, "gptq")) ? DTA_QS_GPTQ : DTA_QS_UNKNOWN;
        q->bits = clamp_u32(jint(doc, "bits", 4));
        int64_t gs = jint(doc, "group_size", 128);
        q->group = gs <= 0 ? 0 : clamp_u32(gs);
        const char *cf = jstr(doc, "checkpoint_format");
        if (!cf)
            cf = jstr(doc, "format");
        snprintf(detail, sizeof detail, "%s", cf ? cf : "gptq");
    } else if (!strcmp(qm, "awq")) {
        s = DTA_QS_AWQ;
        q->bits = clamp_u32(jint(doc, "bits", jint(doc, "w_bit", 4)));
        q->group = clamp_u32(jint(doc, "group_size", jint(doc, "q_group_size", 128)));
        const char *v = jstr(doc, "version");
        if (v)
            snprintf(detail, sizeof detail, "%s", v);
    } else if (!strcmp(qm, "mxfp4")) {
        s = DTA_QS_MXFP4;
        q->group = 32;
    } else if (!strcmp(qm, "quanto")) {
        s = DTA_QS_QUANTO;
        const char *wt = jstr(doc, "weights");
        q->bits = quanto_bits(wt);
        if (wt)
            snprintf(detail, sizeof detail, "weights %s", wt);
    } else if (!strcmp(qm, "torchao")) {
        /* quant_type: {"default": {"_type": "Float8WeightOnlyConfig", "_data": {...}}} or,
         * in older configs, a string ("int4_weight_only") with quant_type_kwargs */
        s = DTA_QS_TORCHAO;
        const cJSON *qt = cJSON_GetObjectItemCaseSensitive(doc, "quant_type");
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(qt, "default");
        const char *type = cJSON_IsString(qt) ? qt->valuestring : jstr(def, "_type");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(def, "_data");
        if (!data)
            data = cJSON_GetObjectItemCaseSensitive(doc, "quant_type_kwargs");
        if (type) {
            snprintf(detail, sizeof detail, "%s", type);
            q->bits = strstr(type, "nt4") || strstr(type, "NT4") || strstr(type, "FP4") ? 4
                      : strstr(type, "nt8") || strstr(type, "loat8") ? 8 : 0;
        }
        q->group = clamp_u32(jint(data, "group_size", 0));
    } else if (!strcmp(qm, "hqq")) {
        /* transformers' HqqConfig: quant_config.weight_quant_params {nbits, group_size, axis},
         * or a per-layer dict of such configs (the first one read) */
        s = DTA_QS_HQQ;
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(doc, "quant_config");
        const cJSON *wp = cJSON_GetObjectItemCaseSensitive(qc, "weight_quant_params");
        for (const cJSON *e = cJSON_IsObject(qc) ? qc->child : NULL; e && !cJSON_IsObject(wp); e = e->next)
            wp = cJSON_GetObjectItemCaseSensitive(e, "weight_quant_params");
        if (cJSON_IsObject(wp)) {
            q->bits = clamp_u32(jint(wp, "nbits", 0));
            q->group = clamp_u32(jint(wp, "group_size", 0));
            snprintf(detail, sizeof detail, "axis %d", (int)jint(wp, "axis", 1));
        }
    }
done:
    if (st == DTA_OK && detail[0])
        st = set_str(c, &q->detail, detail);
    q->scheme = s;
    c->config_known = s != DTA_QS_UNKNOWN;
out:
    cJSON_Delete(doc);
    return st;
}

/* ---- step 2: grouping ---------------------------------------------------------------- */

/* An empty table of the model's tensor names, room for n of them; false (and
 * names_failed) when out of memory. */
static bool tensor_tab(qctx *c, strtab *t, size_t n)
{
    size_t cap = pow2_at_least(n);
    if (!(t->slot = calloc(cap, sizeof *t->slot))) {
        c->names_failed = true;
        return false;
    }
    t->cap = cap;
    t->tensors = c->m->tensors;
    t->lens = c->nlens;
    return true;
}

/* The first tensor named s[0..n), SIZE_MAX when none; the names table is made at the
 * first look-up (a plain checkpoint has no companion to look up codes for). */
static size_t find_tensor(qctx *c, const char *s, size_t n)
{
    const dta_model *m = c->m;
    if (!c->names.cap && m->ntensors && !c->names_failed) {
        if (!tensor_tab(c, &c->names, m->ntensors))
            return SIZE_MAX;
        for (size_t i = 0; i < m->ntensors; i++)
            tab_put(&c->names, i);
    }
    return tab_find(&c->names, s, n);
}

/* Per tensor, in qctx.tflag: */
enum {
    TF_CODES = 1, /* its name ends in a codes suffix (codes_named; group_tensors' first pass) */
    TF_LATER = 2, /* ... and a namesake comes before it: the codes table holds that one */
};

/* find_tensor for a name ending in a non-empty codes suffix of the table (a companion's
 * data[]: ".weight", ".qweight", ...): its table holds only the names that end in one, half
 * of an FP8 checkpoint's, marked TF_CODES by group_tensors' first pass. A name ending in one
 * is in it with all its namesakes, so the answer is find_tensor's. */
static bool codes_made(qctx *c)
{
    const dta_model *m = c->m;
    if (!c->codes.cap && m->ntensors && !c->names_failed) {
        if (!tensor_tab(c, &c->codes, c->ncodes))
            return false;
        for (size_t i = 0; i < m->ntensors; i++)
            if ((c->tflag[i] & TF_CODES) && tab_put(&c->codes, i) != i)
                c->tflag[i] |= TF_LATER;
    }
    return c->codes.cap != 0;
}

static size_t find_codes(qctx *c, const char *s, size_t n)
{
    return codes_made(c) ? tab_find(&c->codes, s, n) : SIZE_MAX;
}

/* find_codes of name[0..pl) + tail[0..tl) (tail a non-empty codes suffix) when a tensor
 * beside tensor i (the companion named name) has that name: that tensor, or its first
 * namesake when one comes before it; SIZE_MAX when neither neighbour has the name. */
static size_t codes_beside(qctx *c, size_t i, const char *name, size_t pl, const char *tail,
                           size_t tl, uint64_t tailw, uint64_t mask)
{
    const dta_model *m = c->m;
    if (!codes_made(c))
        return SIZE_MAX;
    for (int side = 0; side < 2; side++) {
        if (side ? i + 1 >= m->ntensors : i == 0)
            continue;
        size_t j = side ? i + 1 : i - 1;
        const char *nj = m->tensors[j].name;
        /* tailw, mask: tail's last 8 bytes as last8 gives them */
        if (c->nlens[j] != pl + tl || (last8(nj, pl + tl) & mask) != tailw ||
            (tl > 8 && memcmp(nj + pl, tail, tl - 8) != 0) || memcmp(nj, name, pl) != 0)
            continue;
        /* nj ends in tail, a codes suffix: the table was offered it */
        return c->tflag[j] & TF_LATER ? tab_find(&c->codes, nj, pl + tl) : j;
    }
    return SIZE_MAX;
}

/* A new parameter named name[0..n); ml: the length of its module when the caller knows it
 * (the name is the module + ".weight"), SIZE_MAX to find it; borrow: name is the name of
 * the tensor that becomes its codes, kept by the model (DeepSeek-V3: 45k names not copied). Parameters made from their
 * codes are unique by construction (one per codes tensor); orphan companions (lookup) share one parameter per
 * name through a table that holds only them. */
static dta_status get_param(qctx *c, const char *name, size_t n, size_t ml, bool lookup,
                            bool borrow, size_t *out)
{
    dta_quant *q = c->q;
    size_t i = lookup ? tab_find(&c->pnames, name, n) : SIZE_MAX;
    if (i != SIZE_MAX) {
        *out = i;
        return DTA_OK;
    }
    if (q->nparams == c->capparams) {
        /* room for one parameter per tensor at first, the most any but contrived names
         * make: the array is then never copied, and its pages past the last parameter are
         * never touched; doubled when contrived names make more */
        size_t ncap = c->capparams ? c->capparams * 2 : c->m->ntensors > 64 ? c->m->ntensors : 64;
        dta_quant_param *p = ncap <= SIZE_MAX / 2 / sizeof *p ? realloc(q->params, ncap * sizeof *p)
                                                             : NULL;
        if (!p)
            return nomem(c);
        q->params = p;
        c->capparams = ncap;
    }
    if (lookup && c->pnames.cap < pow2_at_least(q->nparams + 1)) {
        size_t ncap = pow2_at_least(q->nparams + 1) * 2;
        uint32_t *slot = calloc(ncap, sizeof *slot);
        if (!slot)
            return nomem(c);
        free(c->pnames.slot);
        c->pnames.slot = slot;
        c->pnames.cap = ncap;
        c->pnames.params = &q->params;
        for (size_t k = 0; k < q->nparams; k++)
            if (k < c->norphan && c->orphan[k])
                tab_put(&c->pnames, k);
    }
    /* module: the name without its last component (".weight"), or the name itself for
     * fused expert stacks ("mlp.experts.gate_up_proj") */
    if (ml == SIZE_MAX) {
        ml = n;
        while (ml > 0 && name[ml - 1] != '.')
            ml--;
        ml = ml ? ml - 1 : n;
    }
    /* one arena block holds the tensor list (room for two: the codes and one companion,
     * most parameters; param_add_tensor moves a longer one), the name unless borrowed, and
     * the module */
    size_t nl = borrow ? 0 : n + 1;
    size_t *t = dtap_arena_alloc(qarena(q), 2 * sizeof *t + nl + ml + 1, _Alignof(size_t));
    if (!t)
        return nomem(c);
    char *pn = (char *)(t + 2), *mod = pn + nl;
    if (borrow)
        pn = (char *)name; /* the model's tensor name: dta_tensor.name is not const */
    else {
        memcpy(pn, name, n);
        pn[n] = 0;
    }
    memcpy(mod, name, ml);
    mod[ml] = 0;
    dta_quant_param *p = &q->params[q->nparams];
    *p = (dta_quant_param){.name = pn, .module = mod, .weight = SIZE_MAX, .tensors = t,
                           .storage = DTA_DTYPE_NONE, .dequant = DTA_DTYPE_NONE};
    if (lookup) {
        bool *o = realloc(c->orphan, c->capparams * sizeof *o);
        if (!o)
            return nomem(c);
        c->orphan = o;
        memset(o + c->norphan, 0, (c->capparams - c->norphan) * sizeof *o);
        c->norphan = c->capparams;
        o[q->nparams] = true;
        tab_put(&c->pnames, q->nparams);
    }
    *out = q->nparams++;
    return DTA_OK;
}

static dta_status param_add_tensor(qctx *c, size_t pi, size_t ti, dta_quant_role role)
{
    dta_quant *q = c->q;
    if (q->tensor_param[ti] >= 0)
        return DTA_OK;
    dta_quant_param *p = &q->params[pi];
    size_t *t = p->tensors;
    /* capacity: 2 (get_param), then doubled at each power of two */
    if (p->ntensors >= 2 && !(p->ntensors & (p->ntensors - 1))) {
        if (!(t = dtap_arena_alloc(qarena(q), 2 * p->ntensors * sizeof *t, _Alignof(size_t))))
            return nomem(c);
        memcpy(t, p->tensors, p->ntensors * sizeof *t); /* the old list stays in the arena */
        p->tensors = t;
    }
    if (role == DTA_QR_WEIGHT) {
        if (p->ntensors)
            memmove(t + 1, t, p->ntensors * sizeof *t);
        t[0] = ti;
        p->weight = ti;
        p->storage = c->m->tensors[ti].dtype;
    } else
        t[p->ntensors] = ti;
    p->ntensors++;
    p->roles |= 1u << role;
    q->tensor_param[ti] = (int32_t)pi;
    q->tensor_role[ti] = (uint8_t)role;
    return DTA_OK;
}

_Static_assert(DTA_QR_COUNT <= 32, "a parameter's roles fit its 32-bit mask");

/* The companion of role r of parameter p (tensor index), SIZE_MAX when absent. */
static size_t comp(const qctx *c, const dta_quant_param *p, dta_quant_role r)
{
    if (!(p->roles & 1u << r))
        return SIZE_MAX;
    for (size_t i = 0; i < p->ntensors; i++)
        if (c->q->tensor_role[p->tensors[i]] == r)
            return p->tensors[i];
    return SIZE_MAX;
}

static bool has_comp(const qctx *c, const dta_quant_param *p, dta_quant_role r)
{
    (void)c;
    return p->roles & 1u << r;
}

static bool is_fp8(dta_dtype t)
{
    return t == DTA_F8_E4M3 || t == DTA_F8_E5M2 || t == DTA_F8_E4M3FNUZ || t == DTA_F8_E5M2FNUZ;
}

static bool is_wide_float(dta_dtype t)
{
    return t == DTA_F16 || t == DTA_BF16 || t == DTA_F32 || t == DTA_F64;
}

static bool fp8_family(dta_quant_scheme s)
{
    return s == DTA_QS_FP8 || s == DTA_QS_FBGEMM_FP8 || s == DTA_QS_MODELOPT_FP8 ||
           s == DTA_QS_CT_FLOAT || s == DTA_QS_COMFY_FP8 || s == DTA_QS_FP8_BLOCK;
}

/* Whether tensor data, the codes name[0..pl) of a companion with an expert-stack suffix,
 * is a ModelOpt NVFP4 expert stack: U8 [E, a, b] beside an F8_E4M3 "<stack>_weight_scale",
 * or under a ModelOpt NVFP4 config (then a missing block scale is its finding). */
static bool nvfp4_stack(qctx *c, size_t data, const char *name, size_t pl)
{
    const dta_tensor *t = &c->m->tensors[data];
    if (t->dtype != DTA_U8 || t->rank != 3)
        return false;
    if (c->q->scheme == DTA_QS_MODELOPT_NVFP4)
        return true;
    char buf[DTA_MAX_NAME_LEN + 64];
    size_t k = join(buf, sizeof buf, name, pl, "_weight_scale"), s;
    return k && (s = find_tensor(c, buf, k)) != SIZE_MAX &&
           c->m->tensors[s].dtype == DTA_F8_E4M3;
}

/* The module length of the parameter named name[0..pl) + suffixes[i].param: pl when the
 * param tail is one component (".weight"), else SIZE_MAX (get_param finds it). */
static size_t pmod(const sfx_index *x, int i, size_t pl)
{
    return x->pmod[i] ? pl : SIZE_MAX;
}

static dta_status group_tensors(qctx *c)
{
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    dta_status st = DTA_OK;
    /* per tensor: the suffix entry its name matches, -1 when none */
    _Static_assert(NSUFFIXES <= INT8_MAX, "suffix entries fit an int8_t");
    int8_t *match = malloc(m->ntensors ? m->ntensors : 1);
    char buf[DTA_MAX_NAME_LEN + 64];
    sfx_index *sx = malloc(sizeof *sx);
    c->tflag = calloc(m->ntensors ? m->ntensors : 1, 1);
    if (!match || !sx || !c->tflag) {
        free(match);
        free(sx);
        return nomem(c);
    }
    sfx_index_init(sx);
    const size_t *lens = sx->len;

    /* one pass over the names: their lengths, suffix entries and codes marks; the codes
     * named by their own suffix become parameters */
    for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
        const char *name = m->tensors[i].name;
        size_t n = strlen(name); /* < DTA_MAX_NAME_LEN */
        c->nlens[i] = (uint32_t)n;
        uint64_t w = last8(name, n);
        if (codes_named(sx, name, n, w)) {
            c->tflag[i] = TF_CODES;
            c->ncodes++;
        }
        match[i] = (int8_t)match_suffix(name, n, w, sx);
        if (match[i] < 0) {
            if (n >= 10 && name[n - 1] == '8' && ends_with(name, n, "scaled_fp8") &&
                (n == 10 || name[n - 11] == '.'))
                c->comfy_scaled = c->scaled_marker = true;
            continue;
        }
        if (suffixes[match[i]].role != DTA_QR_WEIGHT)
            continue;
        const sfx *s = &suffixes[match[i]];
        size_t pl = n - lens[match[i]];
        if (!strcmp(s->suffix, "_blocks") && m->tensors[i].dtype != DTA_U8)
            continue;
        size_t k = join_n(buf, sizeof buf, name, pl, s->param, sx->plen[match[i]]), pi;
        if (k && (st = get_param(c, buf, k, pmod(sx, match[i], pl), false, false, &pi)) == DTA_OK)
            st = param_add_tensor(c, pi, i, DTA_QR_WEIGHT);
    }
    /* companions: attached to their codes; a strong one without codes is an orphan */
    for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
        if (match[i] < 0 || suffixes[match[i]].role == DTA_QR_WEIGHT)
            continue;
        if (suffixes[match[i]].role == DTA_QR_SCALE && !strcmp(suffixes[match[i]].suffix, ".scale_weight"))
            c->comfy_scaled = true;
        const sfx *s = &suffixes[match[i]];
        const char *name = m->tensors[i].name;
        size_t n = c->nlens[i], pl = n - lens[match[i]];
        size_t data = SIZE_MAX;
        int dm = -1; /* the data[] tail that found it */
        for (int d = 0; d < 3 && s->data[d] && data == SIZE_MAX; d++) {
            size_t dl = sx->dlen[match[i]][d];
            if (s->data[d][0] && pl + dl < sizeof buf &&
                (data = codes_beside(c, i, name, pl, s->data[d], dl, sx->dtail[match[i]][d],
                                     sx->dmask[match[i]][d])) != SIZE_MAX) {
                dm = d;
                break;
            }
            size_t k = join_n(buf, sizeof buf, name, pl, s->data[d], dl);
            if (k)
                data = s->data[d][0] ? find_codes(c, buf, k) : find_tensor(c, buf, k);
            dm = d;
        }
        if (s->stack && (data == SIZE_MAX || !nvfp4_stack(c, data, name, pl)))
            continue;
        if (data != SIZE_MAX && q->tensor_param[data] >= 0) {
            st = param_add_tensor(c, (size_t)q->tensor_param[data], i, s->role);
            continue;
        }
        if (data != SIZE_MAX) {
            /* plain-named codes (".weight"): a weak companion alone does not make them
             * quantized unless they are not a wide float (input_scale beside F8) */
            dta_dtype dt = m->tensors[data].dtype;
            if (s->weak && is_wide_float(dt))
                continue;
            if (s->weak && !strcmp(s->suffix, "_scales"))
                continue;
            size_t pi;
            /* parameter name: the prefix plus s->param, the codes' name when that is its
             * data[] tail */
            const char *pn = buf;
            size_t k;
            bool same = dm >= 0 && sx->same[match[i]][dm];
            if (same) {
                pn = m->tensors[data].name;
                k = c->nlens[data];
            } else if (!(k = join_n(buf, sizeof buf, name, pl, s->param, sx->plen[match[i]])))
                continue;
            if ((st = get_param(c, pn, k, pmod(sx, match[i], pl), false, same, &pi)) == DTA_OK &&
                (st = param_add_tensor(c, pi, data, DTA_QR_WEIGHT)) == DTA_OK)
                st = param_add_tensor(c, pi, i, s->role);
            continue;
        }
        if (s->weak)
            continue;
        /* an orphan: a companion with no codes */
        size_t k = join_n(buf, sizeof buf, name, pl, s->param, sx->plen[match[i]]), pi;
        if (k && (st = get_param(c, buf, k, pmod(sx, match[i], pl), true, false, &pi)) == DTA_OK)
            st = param_add_tensor(c, pi, i, s->role);
    }
    free(match);
    free(sx);
    if (st != DTA_OK)
        return st;

    /* bare codes in a scheme that needs scales: an F8 / I8 weight with no companion */
    for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
        const dta_tensor *t = &m->tensors[i];
        size_t n = c->nlens[i];
        if (q->tensor_param[i] >= 0 || !ends_with(t->name, n, ".weight") || t->rank < 2)
            continue;
        /* ComfyUI's scaled ops give a layer without scale_weight a scale of 1.0: its F8
         * codes are read unscaled */
        bool want = (is_fp8(t->dtype) && (fp8_family(q->scheme) || c->comfy_scaled)) ||
                    (t->dtype == DTA_I8 && (q->scheme == DTA_QS_BNB_8BIT || q->scheme == DTA_QS_CT_INT));
        if (!want)
            continue;
        size_t pi;
        if ((st = get_param(c, t->name, n, n - 7, false, true, &pi)) == DTA_OK) /* ".weight" */
            st = param_add_tensor(c, pi, i, DTA_QR_WEIGHT);
    }
    /* model-level companions: kv-cache scales, the scaled_fp8 marker */
    if (q->nparams || q->scheme != DTA_QS_NONE)
        for (size_t i = 0; i < m->ntensors; i++) {
            const char *name = m->tensors[i].name;
            size_t n = c->nlens[i];
            if (q->tensor_role[i] != DTA_QR_NONE)
                continue;
            if (ends_with(name, n, ".k_scale") || ends_with(name, n, ".v_scale") ||
                ends_with(name, n, ".q_scale") || ends_with(name, n, ".prob_scale"))
                q->tensor_role[i] = DTA_QR_KV_SCALE;
            else if ((n == 10 || ends_with(name, n, ".scaled_fp8")) && ends_with(name, n, "scaled_fp8"))
                q->tensor_role[i] = DTA_QR_MARKER;
            else if (ends_with(name, n, ".input_scale") || ends_with(name, n, ".output_scale"))
                q->tensor_role[i] = m->tensors[i].numel <= 1 ? DTA_QR_INPUT_SCALE : DTA_QR_NONE;
        }
    return st;
}

/* ---- step 3: per-parameter scheme and checks ------------------------------------------ */

static uint64_t cdiv(uint64_t a, uint64_t b)
{
    return b ? (a + b - 1) / b : 0;
}

static bool same_shape(const dta_tensor *a, const dta_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static void dims_str(char *buf, size_t cap, const uint64_t *shape, int rank)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < rank && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* A torchao Int4Tensor's description in __metadata__ (quant.md §12.1: {"_type": "Int4Tensor",
 * "_data": {"block_size": [1, G], "shape": [N, K]}}, as torchao's flatten_tensor_state_dict
 * writes it under the original name): its logical shape (rank 2, or 3 with a batch) and the
 * group (block_size's last, 0 when absent). False when name has no such description. */
static bool torchao_int4(qctx *c, const char *name, int *rank, uint64_t *shape, uint64_t *group)
{
    const dta_model *m = c->m;
    if (!c->meta_made) { /* one lookup table of the keys for every parameter */
        c->meta_made = true;
        c->meta.cap = pow2_at_least(m->nmetadata);
        c->meta.slot = calloc(c->meta.cap, sizeof *c->meta.slot);
        c->meta.keys = malloc((m->nmetadata ? m->nmetadata : 1) * sizeof *c->meta.keys);
        if (!c->meta.slot || !c->meta.keys) {
            free(c->meta.slot);
            free(c->meta.keys);
            memset(&c->meta, 0, sizeof c->meta); /* tab_find says none: the check is skipped */
        } else
            for (size_t i = 0; i < m->nmetadata; i++) {
                c->meta.keys[i] = m->metadata[i].key;
                tab_put(&c->meta, i);
            }
    }
    size_t i = tab_find(&c->meta, name, strlen(name));
    if (i == SIZE_MAX || !m->metadata[i].value || !strstr(m->metadata[i].value, "Int4Tensor"))
        return false;
    cJSON *doc = cJSON_Parse(m->metadata[i].value);
    const char *type = doc ? jstr(doc, "_type") : NULL;
    const cJSON *data = doc ? cJSON_GetObjectItemCaseSensitive(doc, "_data") : NULL;
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(data, "shape");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(data, "block_size");
    int n = cJSON_GetArraySize(sh);
    bool ok = type && !strcmp(type, "Int4Tensor") && cJSON_IsArray(sh) && (n == 2 || n == 3);
    for (int d = 0; ok && d < n; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        ok = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0 &&
             v->valuedouble == (double)(uint64_t)v->valuedouble;
        if (ok)
            shape[d] = (uint64_t)v->valuedouble;
    }
    *group = 0;
    const cJSON *g = cJSON_IsArray(bs) ? cJSON_GetArrayItem(bs, cJSON_GetArraySize(bs) - 1) : NULL;
    if (ok && cJSON_IsNumber(g) && g->valuedouble >= 1 && g->valuedouble < 4294967296.0)
        *group = (uint64_t)g->valuedouble;
    *rank = n;
    cJSON_Delete(doc);
    return ok;
}

static void shape_str(char *buf, size_t cap, const dta_tensor *t)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static dta_status add_issue(qctx *c, dta_rule rule, const char *module, const size_t *tensors,
                            size_t nt, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static dta_status add_issue(qctx *c, dta_rule rule, const char *module, const size_t *tensors,
                            size_t nt, const char *fmt, ...)
{
    dta_quant *q = c->q;
    dta_quant_issue *p = realloc(q->issues, (q->nissues + 1) * sizeof *p);
    if (!p)
        return nomem(c);
    q->issues = p;
    dta_quant_issue *is = &p[q->nissues++];
    memset(is, 0, sizeof *is);
    is->rule = rule;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    is->module = strdup(module);
    is->message = strdup(msg);
    if (nt) {
        is->tensors = malloc(nt * sizeof *is->tensors);
        if (is->tensors) {
            memcpy(is->tensors, tensors, nt * sizeof *tensors);
            is->ntensors = nt;
        }
    }
    if (!is->module || !is->message || (nt && !is->tensors))
        return nomem(c);
    return DTA_OK;
}

/* The per-parameter scheme from its tensors. */
static dta_quant_scheme param_scheme(qctx *c, dta_quant_param *p)
{
    const dta_model *m = c->m;
    dta_quant_scheme cfg = c->q->scheme;
    const dta_tensor *w = p->weight != SIZE_MAX ? &m->tensors[p->weight] : NULL;
    const char *wn = w ? w->name : "";
    size_t wl = w ? c->nlens[p->weight] : 0;
    if (has_comp(c, p, DTA_QR_SCALE_INV))
        return DTA_QS_FP8_BLOCK;
    if (has_comp(c, p, DTA_QR_ABSMAX) || has_comp(c, p, DTA_QR_QUANT_MAP) ||
        has_comp(c, p, DTA_QR_QUANT_STATE) || has_comp(c, p, DTA_QR_NESTED_ABSMAX))
        return DTA_QS_BNB_4BIT;
    if (has_comp(c, p, DTA_QR_FORMAT))
        return DTA_QS_BNB_8BIT;
    for (size_t i = 0; i < p->ntensors; i++) {
        const char *n = m->tensors[p->tensors[i]].name;
        size_t l = c->nlens[p->tensors[i]];
        if (ends_with(n, l, ".SCB"))
            return DTA_QS_BNB_8BIT;
        if (ends_with(n, l, ".comfy_quant"))
            return DTA_QS_COMFY;
        if (ends_with(n, l, ".scale_weight"))
            return DTA_QS_COMFY_FP8;
        if (ends_with(n, l, "._weight_qdata") || strstr(n, "._weight_"))
            return DTA_QS_TORCHAO;
        if (strstr(n, ".weight._"))
            return DTA_QS_QUANTO;
        if (ends_with(n, l, ".W_q"))
            return DTA_QS_HQQ;
        if (ends_with(n, l, "_blocks") || ends_with(n, l, "_scales"))
            return DTA_QS_MXFP4;
    }
    if (c->comfy_scaled && p->ntensors == 1 && w && is_fp8(w->dtype))
        return DTA_QS_COMFY_FP8;
    if (ends_with(wn, wl, ".qweight") || has_comp(c, p, DTA_QR_ZERO_POINT) ||
        comp(c, p, DTA_QR_G_IDX) != SIZE_MAX) {
        if (ends_with(wn, wl, ".qweight") || (!w && cfg != DTA_QS_CT_PACK)) {
            size_t s = comp(c, p, DTA_QR_SCALE);
            if (w && s != SIZE_MAX && m->tensors[s].rank == 2 && w->rank == 2) {
                if (m->tensors[s].shape[1] == w->shape[1] * 8 && m->tensors[s].shape[1] != w->shape[1])
                    return DTA_QS_AWQ;
                if (m->tensors[s].shape[1] == w->shape[1])
                    return DTA_QS_GPTQ;
            }
            return cfg == DTA_QS_AWQ ? DTA_QS_AWQ : DTA_QS_GPTQ;
        }
    }
    if (ends_with(wn, wl, ".weight_packed") || (!w && (cfg == DTA_QS_CT_PACK || cfg == DTA_QS_CT_NVFP4 || cfg == DTA_QS_CT_MXFP4))) {
        if (w && w->dtype == DTA_I32)
            return DTA_QS_CT_PACK;
        if (has_comp(c, p, DTA_QR_GLOBAL_SCALE))
            return DTA_QS_CT_NVFP4;
        if (w && w->dtype == DTA_U8) {
            size_t s = comp(c, p, DTA_QR_SCALE);
            if (s != SIZE_MAX && is_fp8(m->tensors[s].dtype))
                return DTA_QS_CT_NVFP4;
            return cfg == DTA_QS_CT_NVFP4 ? cfg : DTA_QS_CT_MXFP4;
        }
        return cfg == DTA_QS_CT_PACK || cfg == DTA_QS_CT_NVFP4 || cfg == DTA_QS_CT_MXFP4 ? cfg : DTA_QS_CT_PACK;
    }
    size_t s = comp(c, p, DTA_QR_SCALE);
    if (has_comp(c, p, DTA_QR_GLOBAL_SCALE) ||
        (w && w->dtype == DTA_U8 && s != SIZE_MAX && is_fp8(m->tensors[s].dtype)))
        return cfg == DTA_QS_COMFY ? DTA_QS_COMFY : DTA_QS_MODELOPT_NVFP4;
    if (w && w->dtype == DTA_I8)
        return cfg == DTA_QS_BNB_8BIT ? cfg : DTA_QS_CT_INT;
    /* an F8 (or blindly cast) weight with a weight_scale: the config tells which producer */
    if (cfg == DTA_QS_FP8 || cfg == DTA_QS_FBGEMM_FP8 || cfg == DTA_QS_MODELOPT_FP8 ||
        cfg == DTA_QS_CT_FLOAT || cfg == DTA_QS_COMFY)
        return cfg;
    if (cfg == DTA_QS_MODELOPT_NVFP4)
        return DTA_QS_MODELOPT_FP8;
    if (cfg == DTA_QS_FP8_BLOCK && s == SIZE_MAX)
        return DTA_QS_FP8_BLOCK; /* bare F8 codes in a block-FP8 model */
    return DTA_QS_FP8;
}

/* A ModelOpt NVFP4 expert stack's orientation from its block scale S: 1 when the codes
 * are [E, in/2, out] and S [E, ceil(in/16), out] (ModelOpt's bmm experts, quantized
 * transposed and stored transposed back), 0 when they are [E, out, in/2] and S
 * [E, out, ceil(in/16)], -1 when S fits neither or both (a degenerate [E, 1, 1]). */
static int nvfp4_stack_in_major(const dta_tensor *w, const dta_tensor *S)
{
    if (!S || w->rank != 3 || S->rank != 3 || S->shape[0] != w->shape[0])
        return -1;
    bool im = S->shape[1] == cdiv(w->shape[1] * 2, 16) && S->shape[2] == w->shape[2];
    bool om = S->shape[1] == w->shape[1] && S->shape[2] == cdiv(w->shape[2] * 2, 16);
    return im == om ? -1 : im;
}

/* Checks p against its scheme; appends quant-incomplete issues. block/group override the
 * config's (0: the config's or the scheme default). Returns the number of problems. */
/* GPTQModel "dynamic": the bits / group (one group: UINT32_MAX) a rule gives p's module. */
static void dyn_sizes(const qctx *c, const dta_quant_param *p, uint32_t *bits, uint32_t *group)
{
    long b, g;
    if (!c->dyn || p->scheme != DTA_QS_GPTQ ||
        dtap_qdyn_match(c->dyn, p->module, &b, &g, NULL) != DTAP_QDYN_OVERRIDE)
        return;
    if (b > 0 && b <= 32)
        *bits = (uint32_t)b;
    if (g == -1 || (g > 0 && g <= UINT32_MAX))
        *group = g == -1 ? UINT32_MAX : (uint32_t)g;
}

static int check_param(qctx *c, dta_quant_param *p, const qsize *o, bool record)
{
    uint32_t bm = o ? o->bm : 0, bn = o ? o->bn : 0, group = o ? o->group : 0;
    uint32_t obits = o ? o->bits : 0;
    if (!o)
        dyn_sizes(c, p, &obits, &group);
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    const dta_tensor *w = p->weight != SIZE_MAX ? &m->tensors[p->weight] : NULL;
    char need[256], bad[512];
    need[0] = bad[0] = 0;
    size_t nn = 0, nb = 0;
#define NEED(role_, what)                                                                       \
    do {                                                                                        \
        if (!has_comp(c, p, role_))                                                             \
            nn += (size_t)snprintf(need + nn, nn < sizeof need ? sizeof need - nn : 0, "%s%s",  \
                                   nn ? ", " : "", what);                                       \
    } while (0)
#define BAD(...)                                                                                \
    do {                                                                                        \
        if (nb < sizeof bad)                                                                    \
            nb += (size_t)snprintf(bad + nb, sizeof bad - nb, __VA_ARGS__);                     \
    } while (0)
    char s1[128], s2[128];
    int problems = 0;

    if (!w) {
        /* a companion without codes */
        if (record) {
            char list[512] = "";
            size_t o = 0;
            for (size_t i = 0; i < p->ntensors && o < sizeof list; i++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", i ? ", " : "",
                                      m->tensors[p->tensors[i]].name);
            add_issue(c, DTA_RULE_QUANT_INCOMPLETE, p->module, p->tensors, p->ntensors,
                      "%s %s no quantized weight '%s' to belong to: the loader fails on the "
                      "unexpected key, or the parameter is missing",
                      list, p->ntensors == 1 ? "has" : "have", p->name);
        }
        p->broken = true;
        return 1;
    }
    size_t sc = comp(c, p, DTA_QR_SCALE);
    const dta_tensor *S = sc != SIZE_MAX ? &m->tensors[sc] : NULL;
    switch (p->scheme) {
    case DTA_QS_FP8_BLOCK: {
        size_t si = comp(c, p, DTA_QR_SCALE_INV);
        NEED(DTA_QR_SCALE_INV, "weight_scale_inv");
        if (!bm)
            bm = q->block[0] ? q->block[0] : 128;
        if (!bn)
            bn = q->block[1] ? q->block[1] : 128;
        if (si != SIZE_MAX && w->rank >= 2) {
            const dta_tensor *g = &m->tensors[si];
            uint64_t o = w->shape[w->rank - 2], in = w->shape[w->rank - 1];
            bool ok = g->rank == w->rank && g->shape[g->rank - 2] == cdiv(o, bm) &&
                      g->shape[g->rank - 1] == cdiv(in, bn);
            for (int d = 0; ok && d < w->rank - 2; d++)
                ok = g->shape[d] == w->shape[d];
            if (!ok) {
                shape_str(s1, sizeof s1, g);
                shape_str(s2, sizeof s2, w);
                BAD("its scale grid %s does not fit the %s weight in %ux%u blocks (expected "
                    "[%s%llu, %llu])", s1, s2, bm, bn, w->rank == 3 ? "E, " : "",
                    (unsigned long long)cdiv(o, bm), (unsigned long long)cdiv(in, bn));
            }
        }
        break;
    }
    case DTA_QS_FP8: case DTA_QS_FBGEMM_FP8: case DTA_QS_MODELOPT_FP8: case DTA_QS_CT_FLOAT:
    case DTA_QS_CT_INT: case DTA_QS_COMFY_FP8: {
        if (!S)
            nn += (size_t)snprintf(need + nn, sizeof need - nn, "%s%s", nn ? ", " : "",
                                   p->scheme == DTA_QS_COMFY_FP8 ? "scale_weight" : "weight_scale");
        if (S && w->rank == 2) {
            uint64_t o = w->shape[0], in = w->shape[1];
            bool ok = S->numel == 1 || (S->rank >= 1 && S->shape[0] == o && S->numel <= o * in);
            if (p->scheme == DTA_QS_CT_FLOAT || p->scheme == DTA_QS_CT_INT) {
                uint32_t g = group ? group : q->group;
                uint32_t b0 = bm ? bm : q->block[0], b1 = bn ? bn : q->block[1];
                if (b0 && b1)
                    ok = S->rank == 2 && S->shape[0] == cdiv(o, b0) && S->shape[1] == cdiv(in, b1);
                else if (g)
                    ok = S->rank == 2 && S->shape[0] == o && S->shape[1] == cdiv(in, g);
                else if (c->ct_strategy && !strcmp(c->ct_strategy, "channel"))
                    ok = S->shape[0] == o && S->numel == o;
                else if (c->ct_strategy && !strcmp(c->ct_strategy, "tensor"))
                    ok = S->numel == 1;
            }
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its scale %s does not fit the %s weight", s1, s2);
            }
        }
        break;
    }
    case DTA_QS_MODELOPT_NVFP4: case DTA_QS_CT_NVFP4: case DTA_QS_CT_MXFP4: {
        bool ct = p->scheme != DTA_QS_MODELOPT_NVFP4;
        uint32_t g = p->scheme == DTA_QS_CT_MXFP4 ? 32 : 16;
        NEED(DTA_QR_SCALE, "weight_scale");
        if (p->scheme != DTA_QS_CT_MXFP4)
            NEED(DTA_QR_GLOBAL_SCALE, ct ? "weight_global_scale" : "weight_scale_2");
        if (S && w->rank == 2) {
            uint64_t o = w->shape[0], in = w->shape[1] * 2;
            if (!(S->rank == 2 && S->shape[0] == o && S->shape[1] == cdiv(in, g))) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its block scale %s does not fit the packed %s weight (expected [%llu, %llu]: "
                    "one scale per %u elements)", s1, s2, (unsigned long long)o,
                    (unsigned long long)cdiv(in, g), g);
            }
        }
        if (S && w->rank == 3 && !ct && nvfp4_stack_in_major(w, S) < 0) {
            shape_str(s1, sizeof s1, S);
            shape_str(s2, sizeof s2, w);
            BAD("its block scale %s does not fit the packed %s expert stack (expected "
                "[%llu, %llu, %llu] for codes [E, in/2, out], or [%llu, %llu, %llu] for "
                "[E, out, in/2]: one scale per 16 elements)", s1, s2,
                (unsigned long long)w->shape[0], (unsigned long long)cdiv(w->shape[1] * 2, 16),
                (unsigned long long)w->shape[2], (unsigned long long)w->shape[0],
                (unsigned long long)w->shape[1], (unsigned long long)cdiv(w->shape[2] * 2, 16));
        }
        break;
    }
    case DTA_QS_CT_PACK: {
        NEED(DTA_QR_SCALE, "weight_scale");
        NEED(DTA_QR_SHAPE, "weight_shape");
        uint32_t bits = obits ? obits : q->bits ? q->bits : 4;
        uint32_t pf = bits >= 1 && bits <= 16 ? 32 / bits : 8;
        uint32_t g = group ? group : q->group;
        if (S && w->rank == 2) {
            uint64_t o = w->shape[0], cols = w->shape[1];
            uint64_t lo = cols ? (cols - 1) * pf + 1 : 0, hi = cols * pf;
            bool ok = S->rank == 2 && S->shape[0] == o;
            if (ok && g && S->shape[1] != 1)
                ok = S->shape[1] >= cdiv(lo, g) && S->shape[1] <= cdiv(hi, g);
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its scale %s does not fit the packed %s weight (%u-bit, group %u)", s1, s2,
                    bits, g);
            }
        }
        size_t sh = comp(c, p, DTA_QR_SHAPE);
        if (sh != SIZE_MAX && m->tensors[sh].numel != 2 && m->tensors[sh].numel != 3)
            BAD("%sits weight_shape holds %llu values, not 2", nb ? "; " : "",
                (unsigned long long)m->tensors[sh].numel);
        break;
    }
    case DTA_QS_GPTQ: case DTA_QS_AWQ: {
        bool awq = p->scheme == DTA_QS_AWQ;
        NEED(DTA_QR_SCALE, "scales");
        NEED(DTA_QR_ZERO_POINT, "qzeros");
        uint32_t bits = obits ? obits : q->bits ? q->bits : 4, g = group ? group : q->group;
        size_t zi = comp(c, p, DTA_QR_ZERO_POINT), gi = comp(c, p, DTA_QR_G_IDX);
        if (w->rank == 2 && bits && (bits == 2 || bits == 4 || bits == 8 || bits == 3)) {
            uint64_t in, o, packed_o;
            if (awq) {
                in = w->shape[0];
                o = w->shape[1] * (32 / bits);
                packed_o = w->shape[1];
            } else {
                in = w->shape[0] * 32 / bits;
                o = w->shape[1];
                packed_o = cdiv(o * bits, 32);
            }
            /* group_size -1 in a config: one group; no config: what the scales say */
            uint64_t G = g ? cdiv(in, g) : 1;
            if (!g && !c->config_known && S && S->rank == 2)
                G = S->shape[0];
            if (S && !(S->rank == 2 && S->shape[0] == G && S->shape[1] == o)) {
                shape_str(s1, sizeof s1, S);
                BAD("its scales %s do not fit %llu inputs x %llu outputs in groups of %u "
                    "(expected [%llu, %llu])", s1, (unsigned long long)in, (unsigned long long)o,
                    g, (unsigned long long)G, (unsigned long long)o);
            }
            if (zi != SIZE_MAX) {
                const dta_tensor *z = &m->tensors[zi];
                if (!(z->rank == 2 && z->shape[0] == G && z->shape[1] == packed_o)) {
                    shape_str(s1, sizeof s1, z);
                    BAD("%sits qzeros %s are not [%llu, %llu]", nb ? "; " : "", s1,
                        (unsigned long long)G, (unsigned long long)packed_o);
                }
            }
            if (gi != SIZE_MAX && m->tensors[gi].numel != in) {
                shape_str(s1, sizeof s1, &m->tensors[gi]);
                BAD("%sits g_idx %s is not [%llu]", nb ? "; " : "", s1, (unsigned long long)in);
            }
        }
        break;
    }
    case DTA_QS_BNB_4BIT: {
        NEED(DTA_QR_ABSMAX, "absmax");
        NEED(DTA_QR_QUANT_MAP, "quant_map");
        NEED(DTA_QR_QUANT_STATE, "quant_state");
        size_t ai = comp(c, p, DTA_QR_ABSMAX);
        bool nested = has_comp(c, p, DTA_QR_NESTED_ABSMAX) || has_comp(c, p, DTA_QR_NESTED_MAP) ||
                      (ai != SIZE_MAX && m->tensors[ai].dtype == DTA_U8);
        if (nested) {
            NEED(DTA_QR_NESTED_ABSMAX, "nested_absmax");
            NEED(DTA_QR_NESTED_MAP, "nested_quant_map");
        }
        size_t qm = comp(c, p, DTA_QR_QUANT_MAP);
        if (qm != SIZE_MAX && m->tensors[qm].numel != 16)
            BAD("its quant_map holds %llu values, not 16", (unsigned long long)m->tensors[qm].numel);
        uint64_t bytes = w->nbytes;
        if (ai != SIZE_MAX && bytes) {
            uint64_t nbk = m->tensors[ai].numel, lo = bytes * 2 - 1, hi = bytes * 2;
            bool ok = false;
            for (uint64_t bs = 32; bs <= 4096 && !ok; bs *= 2)
                ok = cdiv(lo, bs) == nbk || cdiv(hi, bs) == nbk;
            if (!ok)
                BAD("%sits absmax holds %llu blocks, which no block size fits for %llu packed "
                    "bytes", nb ? "; " : "", (unsigned long long)nbk, (unsigned long long)bytes);
            size_t na = comp(c, p, DTA_QR_NESTED_ABSMAX);
            if (na != SIZE_MAX && m->tensors[na].numel != cdiv(nbk, 256))
                BAD("%sits nested_absmax holds %llu values, not ceil(%llu/256) = %llu",
                    nb ? "; " : "", (unsigned long long)m->tensors[na].numel,
                    (unsigned long long)nbk, (unsigned long long)cdiv(nbk, 256));
        }
        break;
    }
    case DTA_QS_BNB_8BIT:
        if (!S)
            nn += (size_t)snprintf(need + nn, sizeof need - nn, "%sSCB", nn ? ", " : "");
        if (S && w->rank == 2 && S->numel != w->shape[0]) {
            shape_str(s1, sizeof s1, S);
            BAD("its SCB %s is not one absmax per output row [%llu]", s1,
                (unsigned long long)w->shape[0]);
        }
        break;
    case DTA_QS_MXFP4: {
        NEED(DTA_QR_SCALE, "_scales");
        if (S) {
            bool ok = S->rank + 1 == w->rank && w->rank >= 2 && w->shape[w->rank - 1] == 16;
            for (int d = 0; ok && d < S->rank; d++)
                ok = S->shape[d] == w->shape[d];
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its scales %s do not fit the blocks %s (expected the blocks' shape without "
                    "its last dim of 16)", s1, s2);
            }
        }
        break;
    }
    case DTA_QS_QUANTO: {
        /* qbytes (int8, float8): _data I8 / F8 [out, in], _scale [out, 1]; qbits (int4,
         * int2): _data._data U8 packs the grouped rows planar, ceil(R / (8 / bits)) rows of
         * the group's width, _scale and _shift [R, 1] (quant.md §11) */
        bool qbits = w->dtype == DTA_U8;
        uint32_t bits = obits ? obits : q->bits;
        NEED(DTA_QR_SCALE, "_scale");
        if (qbits)
            NEED(DTA_QR_ZERO_POINT, "_shift");
        size_t zi = comp(c, p, DTA_QR_ZERO_POINT);
        if (bits && (bits == 8) == qbits)
            BAD("its codes are %s, not %u-bit ones", dta_dtype_name(w->dtype), bits);
        else if (S && w->rank == 2) {
            uint32_t pf = bits >= 1 && bits <= 8 ? 8 / bits : 2;
            bool ok = qbits ? S->rank == 2 && S->shape[1] == 1 && cdiv(S->shape[0], pf) == w->shape[0]
                            : S->rank == 2 && S->shape[0] == w->shape[0] && S->shape[1] == 1;
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its _scale %s does not fit the %s codes %s%s", s1, dta_dtype_name(w->dtype), s2,
                    qbits ? " (one scale per grouped row, the rows packed planar)" : " (one scale per row)");
            }
        }
        if (S && zi != SIZE_MAX && !same_shape(S, &m->tensors[zi])) {
            shape_str(s1, sizeof s1, &m->tensors[zi]);
            shape_str(s2, sizeof s2, S);
            BAD("%sits _shift %s is not shaped like its _scale %s", nb ? "; " : "", s1, s2);
        }
        break;
    }
    case DTA_QS_TORCHAO: {
        /* Float8Tensor / Int8Tensor / IntxUnpackedToInt8Tensor: qdata [N, K] (one byte a
         * code), scale [N, 1] per row, one value per tensor, or [N, ceil(K / group)];
         * zero_point shaped like the scale. Int4Tensor (U8, two codes a byte) against the
         * logical shape its __metadata__ description gives. */
        uint32_t bits = obits ? obits : q->bits, g = group ? group : q->group;
        size_t zi = comp(c, p, DTA_QR_ZERO_POINT);
        bool bytes = is_fp8(w->dtype) || w->dtype == DTA_I8;
        int lr;
        uint64_t ls[3], lg;
        NEED(DTA_QR_SCALE, "_weight_scale");
        if (bits && bits != 4 && bits != 8)
            bits = 0;
        if (bits && (bits == 8) != bytes)
            BAD("its qdata are %s, not %u-bit codes", dta_dtype_name(w->dtype), bits);
        else if (w->dtype == DTA_U8 && torchao_int4(c, p->name, &lr, ls, &lg)) {
            /* Int4Tensor: qdata [(B,) N, K/2], two codes a byte; scale and zero_point
             * [(B,) K/G, N] (int4_tensor.py), checked against the logical [(B,) N, K] */
            uint64_t n = ls[lr - 2], k = ls[lr - 1], want[3];
            bool ok = w->rank == lr && k % 2 == 0;
            for (int d = 0; d < lr; d++)
                want[d] = d == lr - 1 ? k / 2 : ls[d];
            for (int d = 0; ok && d < lr; d++)
                ok = w->shape[d] == want[d];
            if (!ok) {
                shape_str(s1, sizeof s1, w);
                dims_str(s2, sizeof s2, ls, lr);
                if (k % 2)
                    BAD("its logical shape %s has an odd last dim: Int4Tensor packs two 4-bit "
                        "codes a byte", s2);
                else {
                    char s3[128];
                    dims_str(s3, sizeof s3, want, lr);
                    BAD("its packed qdata %s does not hold the logical shape %s its "
                        "__metadata__ gives (two 4-bit codes a byte: expected %s)", s1, s2, s3);
                }
            } else if (S && (lg || g)) {
                uint64_t G = lg ? lg : g;
                for (int d = 0; d < lr; d++)
                    want[d] = d == lr - 2 ? cdiv(k, G) : d == lr - 1 ? n : ls[d];
                ok = S->rank == lr;
                for (int d = 0; ok && d < lr; d++)
                    ok = S->shape[d] == want[d];
                if (!ok) {
                    char s3[128];
                    shape_str(s1, sizeof s1, S);
                    dims_str(s2, sizeof s2, ls, lr);
                    dims_str(s3, sizeof s3, want, lr);
                    BAD("its scale %s does not fit the logical shape %s in groups of %llu "
                        "(expected %s: groups along K first, then N)", s1, s2,
                        (unsigned long long)G, s3);
                }
            }
        } else if (S && w->rank == 2 && bytes) {
            uint64_t n = w->shape[0], k = w->shape[1];
            bool ok = S->numel == 1 ||
                      (S->rank == 2 && S->shape[0] == n &&
                       (g ? S->shape[1] == cdiv(k, g) : S->shape[1] >= 1 && S->shape[1] <= k));
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                if (g)
                    BAD("its scale %s does not fit the %s qdata in groups of %u (expected [%llu, %llu])",
                        s1, s2, g, (unsigned long long)n, (unsigned long long)cdiv(k, g));
                else
                    BAD("its scale %s does not fit the %s qdata (one per row, per group or per tensor)",
                        s1, s2);
            }
        }
        if (S && zi != SIZE_MAX && !same_shape(S, &m->tensors[zi])) {
            shape_str(s1, sizeof s1, &m->tensors[zi]);
            shape_str(s2, sizeof s2, S);
            BAD("%sits zero_point %s is not shaped like its scale %s", nb ? "; " : "", s1, s2);
        }
        break;
    }
    case DTA_QS_HQQ: {
        /* W_q packs the grouped [R, C] codes by nbits (8/4/2/1-bit codes in bytes, 3-bit ten
         * to an int32) into [ceil(R / pf), C]; scale and zero are [R, 1] for axis 1, where C
         * is the group size, or [1, C] for axis 0, where R is (quant.md §13) */
        uint32_t bits = obits ? obits : q->bits ? q->bits : 4, g = group ? group : q->group;
        uint32_t pf = bits == 3 ? 10 : bits >= 1 && bits <= 8 ? 8 / bits : 2;
        size_t zi = comp(c, p, DTA_QR_ZERO_POINT);
        NEED(DTA_QR_SCALE, "scale");
        NEED(DTA_QR_ZERO_POINT, "zero");
        if (w->rank != 2 || !(w->dtype == DTA_U8 || w->dtype == DTA_I32))
            break; /* view_as_float: the bytes are read as another dtype */
        if ((bits == 3) != (w->dtype == DTA_I32))
            BAD("its W_q is %s, not packed %u-bit codes", dta_dtype_name(w->dtype), bits);
        else if (S) {
            uint64_t rows = w->shape[0], cols = w->shape[1];
            bool ok = false;
            if (S->rank == 2 && S->shape[1] == 1 && S->shape[0] > 1)
                ok = cdiv(S->shape[0], pf) == rows && (!g || cols == g);
            else if (S->rank == 2 && S->shape[0] == 1)
                ok = S->shape[1] == cols && (!g || cdiv(g, pf) == rows);
            if (!ok) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its scale %s does not fit the %s W_q as %u-bit codes in groups of %u", s1, s2,
                    bits, g ? g : (unsigned)cols);
            }
        }
        if (S && zi != SIZE_MAX && !same_shape(S, &m->tensors[zi])) {
            shape_str(s1, sizeof s1, &m->tensors[zi]);
            shape_str(s2, sizeof s2, S);
            BAD("%sits zero %s is not shaped like its scale %s", nb ? "; " : "", s1, s2);
        }
        break;
    }
    case DTA_QS_COMFY: {
        /* comfy_quant layers: float8 (weight F8 + weight_scale, one value or one per row) or
         * nvfp4 (weight U8 [out, in/2], F8 weight_scale in cuBLAS' 128x4-swizzled layout
         * [roundup(out, 128), roundup(in/16, 4)] or plain [out, in/16], and weight_scale_2)
         * or mxfp8 (weight F8_E4M3, E8M0 weight_scale [roundup(out, 128), roundup(in/32, 4)]
         * swizzled the same way) */
        NEED(DTA_QR_SCALE, "weight_scale");
        if (w->dtype == DTA_U8) {
            NEED(DTA_QR_GLOBAL_SCALE, "weight_scale_2");
            if (S && w->rank == 2) {
                uint64_t o = w->shape[0], nbk = cdiv(w->shape[1] * 2, 16);
                bool ok = S->rank == 2 &&
                          ((S->shape[0] == o && S->shape[1] == nbk) ||
                           (S->shape[0] == cdiv(o, 128) * 128 && S->shape[1] == cdiv(nbk, 4) * 4));
                if (!ok) {
                    shape_str(s1, sizeof s1, S);
                    shape_str(s2, sizeof s2, w);
                    BAD("its block scale %s does not fit the packed %s weight (expected [%llu, %llu], "
                        "or [%llu, %llu] swizzled)", s1, s2, (unsigned long long)o,
                        (unsigned long long)nbk, (unsigned long long)(cdiv(o, 128) * 128),
                        (unsigned long long)(cdiv(nbk, 4) * 4));
                }
            }
        } else if (S && w->rank == 2 && is_fp8(w->dtype) &&
                   (S->dtype == DTA_U8 || S->dtype == DTA_F8_E8M0)) {
            /* mxfp8: E8M0 block scales per 32, swizzled as nvfp4's */
            uint64_t o = w->shape[0], nbk = cdiv(w->shape[1], 32);
            if (!(S->rank == 2 && S->shape[0] == cdiv(o, 128) * 128 &&
                  S->shape[1] == cdiv(nbk, 4) * 4)) {
                shape_str(s1, sizeof s1, S);
                shape_str(s2, sizeof s2, w);
                BAD("its E8M0 block scale %s does not fit the %s weight (expected [%llu, %llu] "
                    "swizzled)", s1, s2, (unsigned long long)(cdiv(o, 128) * 128),
                    (unsigned long long)(cdiv(nbk, 4) * 4));
            }
        } else if (S && w->rank == 2 && !(S->numel == 1 || (S->rank >= 1 && S->shape[0] == w->shape[0]))) {
            shape_str(s1, sizeof s1, S);
            shape_str(s2, sizeof s2, w);
            BAD("its scale %s does not fit the %s weight", s1, s2);
        }
        break;
    }
    default:
        break;
    }
    if (nn || nb) {
        problems = 1;
        if (record) {
            if (nn && nb)
                add_issue(c, DTA_RULE_QUANT_INCOMPLETE, p->module, p->tensors, p->ntensors,
                          "quantized weight '%s' (%s) lacks its %s; %s", p->name,
                          dta_quant_scheme_name(p->scheme), need, bad);
            else if (nn)
                add_issue(c, DTA_RULE_QUANT_INCOMPLETE, p->module, p->tensors, p->ntensors,
                          "quantized weight '%s' (%s) lacks its %s: it cannot be dequantized, "
                          "and a loader reads the raw codes as weights",
                          p->name, dta_quant_scheme_name(p->scheme), need);
            else
                add_issue(c, DTA_RULE_QUANT_INCOMPLETE, p->module, p->tensors, p->ntensors,
                          "quantized weight '%s' (%s): %s", p->name,
                          dta_quant_scheme_name(p->scheme), bad);
            p->broken = true;
        }
    }
#undef NEED
#undef BAD
    return problems;
}

/* Logical shape, element format and dequantized dtype of p. */
static void describe(qctx *c, dta_quant_param *p)
{
    const dta_model *m = c->m;
    const dta_quant *q = c->q;
    const dta_tensor *w = p->weight != SIZE_MAX ? &m->tensors[p->weight] : NULL;
    p->dequant = c->compute;
    p->format = w ? dta_dtype_name(w->dtype) : "?";
    if (!w)
        return;
    /* the bits the tensors fit when the config's do not (one quant-config said so) */
    uint32_t qbits = c->fit_bits ? c->fit_bits : q->bits, unused = 0;
    dyn_sizes(c, p, &qbits, &unused);
    uint32_t bits = qbits ? qbits : 4;
    p->rank = w->rank <= 4 ? w->rank : 0;
    for (int d = 0; d < p->rank; d++)
        p->shape[d] = w->shape[d];
    switch (p->scheme) {
    case DTA_QS_MODELOPT_NVFP4: case DTA_QS_CT_NVFP4: case DTA_QS_CT_MXFP4: case DTA_QS_COMFY:
        if (w->dtype == DTA_U8 && p->rank >= 1) {
            /* an expert stack [E, in/2, out] is packed along its middle dim */
            size_t sc = comp(c, p, DTA_QR_SCALE);
            bool mid = p->scheme == DTA_QS_MODELOPT_NVFP4 && sc != SIZE_MAX &&
                       nvfp4_stack_in_major(w, &m->tensors[sc]) == 1;
            p->shape[mid ? 1 : p->rank - 1] *= 2;
            p->format = p->scheme == DTA_QS_CT_MXFP4 ? "MXFP4" : "NVFP4";
        }
        break;
    case DTA_QS_MXFP4:
        p->format = "MXFP4";
        if (w->rank >= 3 && w->rank <= 5) {
            p->rank = w->rank - 1;
            p->shape[p->rank - 1] = w->shape[w->rank - 2] * 32;
        }
        break;
    case DTA_QS_CT_PACK:
        p->format = bits == 8 ? "INT8" : bits == 2 ? "INT2" : "INT4";
        if (p->rank == 2 && bits)
            p->shape[1] = w->shape[1] * (32 / bits);
        break;
    case DTA_QS_GPTQ: case DTA_QS_AWQ:
        p->format = bits == 8 ? "INT8" : bits == 3 ? "INT3" : bits == 2 ? "INT2" : "INT4";
        if (p->rank == 2 && bits) {
            uint64_t in = p->scheme == DTA_QS_AWQ ? w->shape[0] : w->shape[0] * 32 / bits;
            uint64_t o = p->scheme == DTA_QS_AWQ ? w->shape[1] * (32 / bits) : w->shape[1];
            p->shape[0] = o;
            p->shape[1] = in;
        }
        break;
    case DTA_QS_BNB_4BIT:
        p->format = "NF4";
        for (size_t i = 0; i < p->ntensors; i++)
            if (strstr(m->tensors[p->tensors[i]].name, "bitsandbytes__fp4"))
                p->format = "FP4";
        p->rank = 0; /* the logical shape is in the quant_state JSON, not the header */
        break;
    case DTA_QS_BNB_8BIT: case DTA_QS_CT_INT:
        p->format = "INT8";
        break;
    case DTA_QS_HQQ:
        p->format = qbits == 8 ? "INT8" : qbits == 3 ? "INT3" : qbits == 2 ? "INT2"
                  : qbits == 1 ? "INT1" : "INT4";
        p->rank = 0; /* the logical shape is the 'shape' meta tensor's values, not in the header */
        break;
    case DTA_QS_QUANTO: case DTA_QS_TORCHAO: {
        int lr;
        uint64_t ls[3], lg;
        if (w->dtype == DTA_U8 || w->dtype == DTA_I8)
            p->format = w->dtype == DTA_I8 ? "INT8" : "INT4";
        if (w->dtype == DTA_U8 && p->scheme == DTA_QS_TORCHAO &&
            torchao_int4(c, p->name, &lr, ls, &lg)) { /* the logical shape its description gives */
            p->rank = lr;
            for (int d = 0; d < lr; d++)
                p->shape[d] = ls[d];
        } else if (w->dtype == DTA_U8)
            p->rank = 0;
        break;
    }
    default:
        break;
    }
    if (p->cast)
        p->format = dta_dtype_name(w->dtype);
    p->numel = w->numel;
    if (p->rank > 0) {
        p->numel = 1;
        for (int d = 0; d < p->rank; d++)
            p->numel *= p->shape[d];
    } else if (p->scheme == DTA_QS_HQQ && (w->dtype == DTA_U8 || w->dtype == DTA_I32))
        /* packing by nbits: 8/4/2/1-bit codes in bytes, 3-bit ten to an int32 */
        p->numel = w->dtype == DTA_I32 ? w->numel * 10 : w->nbytes * (8 / (bits >= 1 && bits <= 8 ? bits : 4));
    else if (p->scheme == DTA_QS_BNB_4BIT || w->dtype == DTA_U8)
        p->numel = w->nbytes * 2;
}

void dta_quant_param_label(const dta_quant *q, const dta_quant_param *p, char *buf, size_t cap)
{
    char gran[64] = "";
    switch (p->scheme) {
    case DTA_QS_FP8_BLOCK:
        snprintf(gran, sizeof gran, " block %ux%u", q->block[0] ? q->block[0] : 128,
                 q->block[1] ? q->block[1] : 128);
        break;
    case DTA_QS_FP8: case DTA_QS_MODELOPT_FP8: case DTA_QS_COMFY_FP8:
        snprintf(gran, sizeof gran, " per-tensor");
        break;
    case DTA_QS_FBGEMM_FP8:
        snprintf(gran, sizeof gran, " per-row");
        break;
    case DTA_QS_MODELOPT_NVFP4: case DTA_QS_CT_NVFP4:
        snprintf(gran, sizeof gran, " group 16");
        break;
    case DTA_QS_CT_MXFP4: case DTA_QS_MXFP4:
        snprintf(gran, sizeof gran, " group 32");
        break;
    case DTA_QS_CT_FLOAT: case DTA_QS_CT_INT: case DTA_QS_CT_PACK: case DTA_QS_GPTQ:
    case DTA_QS_AWQ: case DTA_QS_HQQ:
        if (q->block[0] && q->block[1])
            snprintf(gran, sizeof gran, " block %ux%u", q->block[0], q->block[1]);
        else if (q->group)
            snprintf(gran, sizeof gran, " group %u", q->group);
        break;
    case DTA_QS_TORCHAO: /* Int4Tensor: groups of the config's group_size */
        if (q->group && !strcmp(p->format, "INT4"))
            snprintf(gran, sizeof gran, " group %u", q->group);
        break;
    default:
        break;
    }
    snprintf(buf, cap, "%s%s -> %s", p->cast ? "cast" : p->format, gran,
             p->dequant != DTA_DTYPE_NONE ? dta_dtype_name(p->dequant) : "?");
}

/* ---- the config against the tensors --------------------------------------------------- */

static bool ignore_match(qctx *c, size_t k, const char *module)
{
    const char *e = c->q->ignore[k];
    size_t el = strlen(e), ml = strlen(module);
    if (!strncmp(e, "re:", 3))
        return c->re_ok[k] && regexec(&c->re[k], module, 0, NULL, 0) == 0;
    if (strpbrk(e, "*?["))
        return dtap_name_matches(e, module);
    if (el == 0 || el > ml)
        return false;
    /* a dotted run of components anywhere in the module name (transformers' substring
     * test, without matching inside a component) */
    for (const char *s = module; (s = strstr(s, e)) != NULL; s++) {
        bool start = s == module || s[-1] == '.';
        bool end = s[el] == 0 || s[el] == '.';
        if (start && end)
            return true;
    }
    return false;
}

static long ignored_by(qctx *c, const char *module)
{
    for (size_t k = 0; k < c->q->nignore; k++)
        if (ignore_match(c, k, module))
            return (long)k;
    return -1;
}

/* name with every all-digit component replaced by '#' (a component is found with strchr
 * and tested up to its first non-digit) */
static void pattern_of(char *buf, size_t cap, const char *name)
{
    size_t o = 0;
    const char *p = name;
    while (*p && o + 2 < cap) {
        const char *e = strchr(p, '.');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool num = len > 0;
        for (size_t i = 0; i < len && num; i++)
            num = p[i] >= '0' && p[i] <= '9';
        if (num)
            buf[o++] = '#';
        else {
            size_t k = len < cap - o - 2 ? len : cap - o - 2;
            memcpy(buf + o, p, k);
            o += k;
        }
        if (!e)
            break;
        buf[o++] = '.';
        p = e + 1;
    }
    buf[o] = 0;
}

/* The pattern (pattern_of) of name[0..n)'s last two components. */
static void tail_pattern(char *buf, size_t cap, const char *name, size_t n)
{
    size_t k = n, dots = 0;
    while (k > 0 && !(name[k - 1] == '.' && ++dots == 2))
        k--;
    pattern_of(buf, cap, name + k);
}

/* A tail_pattern split into its (at most two) components, last first. */
typedef struct {
    const char *comp[2];
    size_t len[2];
    bool hash[2];   /* the component is "#" */
    size_t n;
    bool same_last; /* comp[0] is the previous tailpat's */
    bool lit8;      /* the pattern's last 8 bytes hold no '#': they are t8 (as last8 reads) */
    uint64_t t8;
} tailpat;

static void tailpat_init(tailpat *tp, const char *s, const tailpat *prev)
{
    const char *dot = strrchr(s, '.');
    tp->n = dot ? 2 : 1;
    tp->comp[0] = dot ? dot + 1 : s;
    tp->len[0] = strlen(tp->comp[0]);
    tp->comp[1] = s;
    tp->len[1] = dot ? (size_t)(dot - s) : 0;
    for (int k = 0; k < 2; k++)
        tp->hash[k] = tp->len[k] == 1 && tp->comp[k][0] == '#';
    tp->same_last = prev && prev->len[0] == tp->len[0] &&
                    memcmp(prev->comp[0], tp->comp[0], tp->len[0]) == 0;
    size_t sl = strlen(s);
    tp->lit8 = sl >= 8 && !memchr(s + sl - 8, '#', 8);
    tp->t8 = tp->lit8 ? last8(s, sl) : 0;
}

/* Whether name[.. e) ends with a whole component whose pattern is component k of tp;
 * *start: where it starts. A literal pattern component has no all-digit form (pattern_of
 * made it '#'), so a byte match is the answer. */
static bool comp_is(const tailpat *tp, int k, const char *name, size_t e, size_t *start)
{
    size_t len = tp->len[k];
    if (tp->hash[k]) { /* digits, or a literal '#' */
        size_t s = e;
        while (s > 0 && name[s - 1] >= '0' && name[s - 1] <= '9')
            s--;
        if (s == e)
            s = e > 0 && name[e - 1] == '#' ? e - 1 : e + 1;
        if (s > e || (s > 0 && name[s - 1] != '.'))
            return false;
        *start = s;
        return true;
    }
    if (e < len || (e > len && name[e - len - 1] != '.') ||
        memcmp(name + e - len, tp->comp[k], len) != 0)
        return false;
    *start = e - len;
    return true;
}

/* Whether tail_pattern(name[0..n)) is one of tps[0..ntp), compared from the end without
 * writing it. */
static bool tail_in(const tailpat *tps, size_t ntp, const char *name, size_t n)
{
    /* a quick no for most names: pattern_of copies literal components as they are, so a
     * pattern whose last 8 bytes hold no '#' is only the tail pattern of names ending in
     * those 8 bytes (a pattern is never longer than its name) */
    uint64_t w = n >= 8 ? last8(name, n) : 0;
    bool maybe = false;
    for (size_t k = 0; k < ntp && !maybe; k++)
        maybe = !tps[k].lit8 || (n >= 8 && w == tps[k].t8);
    if (!maybe)
        return false;
    bool last = false;
    size_t s = 0;
    for (size_t k = 0; k < ntp; k++) {
        if (!tps[k].same_last)
            last = comp_is(&tps[k], 0, name, n, &s);
        if (!last)
            continue;
        if (tps[k].n == 1) {
            if (s == 0)
                return true;
            continue;
        }
        if (s == 0)
            continue;
        /* comp_is(&tps[k], 1, name, s - 1), a literal component's first byte tried first */
        size_t e = s - 1, len = tps[k].len[1], s1;
        if (tps[k].hash[1] ? comp_is(&tps[k], 1, name, e, &s1)
                           : e >= len && (e == len || name[e - len - 1] == '.') &&
                                 (len == 0 || (name[e - len] == tps[k].comp[1][0] &&
                                               memcmp(name + e - len, tps[k].comp[1], len) == 0)))
            return true;
    }
    return false;
}

static bool compatible(dta_quant_scheme cfg, dta_quant_scheme t)
{
    if (cfg == t)
        return true;
    switch (cfg) {
    case DTA_QS_CT_FLOAT: case DTA_QS_CT_INT: case DTA_QS_CT_PACK: case DTA_QS_CT_NVFP4:
    case DTA_QS_CT_MXFP4:
        return t == DTA_QS_CT_FLOAT || t == DTA_QS_CT_INT || t == DTA_QS_CT_PACK ||
               t == DTA_QS_CT_NVFP4 || t == DTA_QS_CT_MXFP4;
    case DTA_QS_MODELOPT_NVFP4:
        return t == DTA_QS_MODELOPT_FP8;
    case DTA_QS_COMFY:
        return t == DTA_QS_COMFY_FP8 || t == DTA_QS_MODELOPT_NVFP4 || t == DTA_QS_FP8;
    case DTA_QS_COMFY_FP8:
        return t == DTA_QS_COMFY;
    default:
        return false;
    }
}

/* The layers ComfyUI's __metadata__._quantization_metadata lists ({"layers": {name:
 * {"format": ...}}}, quant.md §10.2): *doc holds them (NULL when the file has none). */
static const cJSON *comfy_meta_layers(const dta_model *m, cJSON **doc)
{
    *doc = NULL;
    for (size_t i = 0; i < m->nmetadata; i++)
        if (!strcmp(m->metadata[i].key, "_quantization_metadata") && m->metadata[i].value) {
            *doc = cJSON_Parse(m->metadata[i].value);
            const cJSON *l = *doc ? cJSON_GetObjectItemCaseSensitive(*doc, "layers") : NULL;
            if (cJSON_IsObject(l))
                return l;
            cJSON_Delete(*doc);
            *doc = NULL;
            return NULL;
        }
    return NULL;
}

/* ComfyUI keeps its quantization config in the file: the scaled_fp8 marker tensor for
 * scale_weight layers (without it the scaled ops are not used and the scales are unexpected
 * keys: the F8 codes are read unscaled), and a comfy_quant marker per layer, or the layers
 * of __metadata__._quantization_metadata, which ComfyUI turns into those markers (a layer
 * without one, among layers that have it, is built as a plain layer; a listed layer whose
 * weight is stored in high precision is built as a quantized one). */
static dta_status comfy_markers(qctx *c)
{
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    dta_status st = DTA_OK;
    size_t nscaled = 0, nmarked = 0, first = SIZE_MAX;
    cJSON *meta;
    const cJSON *layers = comfy_meta_layers(m, &meta);
    strtab listed = {0}; /* the layers' names, looked up once per parameter */
    size_t nlayers = 0;
    for (const cJSON *l = layers ? layers->child : NULL; l; l = l->next)
        nlayers++;
    if (nlayers) {
        listed.cap = pow2_at_least(nlayers);
        listed.slot = calloc(listed.cap, sizeof *listed.slot);
        listed.keys = malloc(nlayers * sizeof *listed.keys);
        if (!listed.slot || !listed.keys) {
            free(listed.slot);
            free(listed.keys);
            cJSON_Delete(meta);
            return nomem(c);
        }
        size_t k = 0;
        for (const cJSON *l = layers->child; l; l = l->next, k++) {
            listed.keys[k] = l->string ? l->string : "";
            tab_put(&listed, k);
        }
    }
#define LISTED(p) (nlayers && tab_find(&listed, (p)->module, strlen((p)->module)) != SIZE_MAX)
    for (size_t i = 0; i < q->nparams; i++) {
        const dta_quant_param *p = &q->params[i];
        if (p->weight == SIZE_MAX || p->cast)
            continue;
        if (p->scheme == DTA_QS_COMFY_FP8 && comp(c, p, DTA_QR_SCALE) != SIZE_MAX) {
            nscaled++;
            if (first == SIZE_MAX)
                first = i;
        }
        nmarked += comp(c, p, DTA_QR_MARKER) != SIZE_MAX || LISTED(p);
    }
    if (nscaled && !c->scaled_marker && !q->source)
        st = add_issue(c, DTA_RULE_QUANT_CONFIG, "scaled_fp8", &q->params[first].weight, 1,
                       "%zu layers have ComfyUI scale_weight companions (e.g. '%s') but there is "
                       "no scaled_fp8 marker tensor: ComfyUI then builds plain layers and reads "
                       "the F8 codes unscaled, with the scales as unexpected keys",
                       nscaled, q->params[first].name);
    for (size_t i = 0; nmarked && i < q->nparams && st == DTA_OK; i++) {
        const dta_quant_param *p = &q->params[i];
        if (p->weight == SIZE_MAX || p->cast || comp(c, p, DTA_QR_MARKER) != SIZE_MAX ||
            LISTED(p) || is_wide_float(m->tensors[p->weight].dtype))
            continue;
        st = add_issue(c, DTA_RULE_QUANT_CONFIG, p->module, p->tensors, p->ntensors,
                       "'%s' is quantized (%s, %s) but %s while %zu other layers %s: ComfyUI "
                       "builds it as a plain layer and reads the raw codes",
                       p->name, dta_quant_scheme_name(p->scheme),
                       dta_dtype_name(m->tensors[p->weight].dtype),
                       layers ? "is not listed in __metadata__._quantization_metadata"
                              : "has no comfy_quant marker",
                       nmarked, layers ? "are" : "have one");
    }
    /* a listed layer whose weight is stored in high precision, or is codes alone */
    char wname[DTA_MAX_NAME_LEN + 16];
    size_t k = 0;
    for (const cJSON *l = layers ? layers->child : NULL; l && st == DTA_OK; l = l->next, k++) {
        if (!l->string || strlen(l->string) > DTA_MAX_NAME_LEN ||
            tab_find(&listed, l->string, strlen(l->string)) != k) /* a repeated key: once */
            continue;
        size_t n = (size_t)snprintf(wname, sizeof wname, "%s.weight", l->string);
        size_t ti = find_tensor(c, wname, n);
        if (ti == SIZE_MAX || q->tensor_role[ti] != DTA_QR_NONE)
            continue;
        const char *fmt = cJSON_IsObject(l) ? jstr(l, "format") : NULL;
        dta_dtype wd = m->tensors[ti].dtype;
        if (is_wide_float(wd))
            st = add_issue(c, DTA_RULE_QUANT_COVERAGE, l->string, &ti, 1,
                           "layer '%s' is listed in __metadata__._quantization_metadata (format "
                           "%s) but its weight is stored %s: ComfyUI turns the listing into a "
                           "comfy_quant marker and builds a quantized layer for a %s weight",
                           l->string, fmt ? fmt : "?", dta_dtype_name(wd), dta_dtype_name(wd));
        else
            st = add_issue(c, DTA_RULE_QUANT_INCOMPLETE, l->string, &ti, 1,
                           "layer '%s' is listed in __metadata__._quantization_metadata (format "
                           "%s) but its %s weight has no scale beside it: its codes cannot be "
                           "dequantized",
                           l->string, fmt ? fmt : "?", dta_dtype_name(wd));
    }
#undef LISTED
    free(listed.slot);
    free(listed.keys);
    cJSON_Delete(meta);
    return st;
}

/* Adds a copy of s to the set t, whose keys are (*keys)[0..*n), unless it holds it; the
 * table starts small and doubles at a quarter load. False when out of memory. */
static bool set_add(strtab *t, char ***keys, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (*n && tab_find(t, s, len) != SIZE_MAX)
        return true;
    if (*n == t->cap / 4) { /* room for *n + 1 at a quarter load */
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **k = realloc(*keys, ncap / 4 * sizeof *k);
        if (!k)
            return false;
        *keys = k;
        uint32_t *slot = calloc(ncap, sizeof *slot);
        if (!slot)
            return false;
        free(t->slot);
        t->slot = slot;
        t->cap = ncap;
        t->keys = (const char **)*keys;
        for (size_t i = 0; i < *n; i++)
            tab_put(t, i);
    }
    if (!((*keys)[*n] = strdup(s)))
        return false;
    t->keys = (const char **)*keys;
    tab_put(t, (*n)++);
    return true;
}

static dta_status config_checks(qctx *c)
{
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    dta_status st = DTA_OK;
    char pat[DTA_MAX_NAME_LEN + 8];
    bool from_config = q->source && strcmp(q->source, "tensors") != 0 &&
                       strcmp(q->source, "__metadata__") != 0;

    /* a quantized module on the ignore list */
    for (size_t i = 0; q->nignore && i < q->nparams && st == DTA_OK; i++) {
        dta_quant_param *p = &q->params[i];
        if (p->weight == SIZE_MAX || p->cast)
            continue;
        long k = ignored_by(c, p->module);
        if (k >= 0)
            st = add_issue(c, DTA_RULE_QUANT_COVERAGE, p->module, p->tensors, p->ntensors,
                           "module '%s' is quantized (%s) although the config's ignore list "
                           "('%s') says it stays in high precision; loaders build it as a plain "
                           "layer and read the raw codes",
                           p->module, dta_quant_scheme_name(p->scheme), q->ignore[k]);
    }
    /* a high-precision module among quantized siblings: the patterns of the parameters
     * whose last two components have the pattern of a candidate's (a wide float outside
     * every parameter) */
    strtab tails = {0};
    char **tkeys = NULL;
    size_t ntail = 0;
    if (from_config && q->nparams && st == DTA_OK) {
        for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (q->tensor_role[i] != DTA_QR_NONE || !is_wide_float(t->dtype) || t->rank < 2)
                continue;
            tail_pattern(pat, sizeof pat, t->name, c->nlens[i]);
            if (!set_add(&tails, &tkeys, &ntail, pat))
                st = nomem(c);
        }
    }
    tailpat tps[8];
    for (size_t k = 0; k < ntail && k < 8; k++)
        tailpat_init(&tps[k], tkeys[k], k ? &tps[k - 1] : NULL);
    if (ntail && st == DTA_OK) {
        strtab pats = {0}; /* grown by set_add: a few patterns, not one per parameter */
        char **keys = NULL;
        size_t npat = 0;
        for (size_t i = 0; i < q->nparams && st == DTA_OK; i++) {
            if (q->params[i].weight == SIZE_MAX || q->params[i].cast)
                continue;
            const char *pn = q->params[i].name;
            /* a borrowed name is its codes tensor's (get_param) */
            size_t pnl = q->params[i].name == m->tensors[q->params[i].weight].name
                             ? c->nlens[q->params[i].weight]
                             : copied_name_len(&q->params[i]);
            if (pnl + 2 < sizeof pat) { /* else: a pattern cut at sizeof pat, kept as before */
                bool in;
                if (ntail <= 8) {
                    in = tail_in(tps, ntail, pn, pnl);
                } else {
                    tail_pattern(pat, sizeof pat, pn, pnl);
                    in = tab_find(&tails, pat, strlen(pat)) != SIZE_MAX;
                }
                if (!in)
                    continue;
            }
            pattern_of(pat, sizeof pat, q->params[i].name);
            if (!set_add(&pats, &keys, &npat, pat))
                st = nomem(c);
        }
        for (size_t i = 0; i < m->ntensors && st == DTA_OK && npat; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (q->tensor_role[i] != DTA_QR_NONE || !is_wide_float(t->dtype) || t->rank < 2)
                continue;
            pattern_of(pat, sizeof pat, t->name);
            if (tab_find(&pats, pat, strlen(pat)) == SIZE_MAX)
                continue;
            char mod[DTA_MAX_NAME_LEN + 1];
            size_t n = strlen(t->name), ml = n;
            while (ml > 0 && t->name[ml - 1] != '.')
                ml--;
            ml = ml ? ml - 1 : n;
            snprintf(mod, sizeof mod, "%.*s", (int)ml, t->name);
            if (ignored_by(c, mod) >= 0 || ignored_by(c, t->name) >= 0)
                continue;
            st = add_issue(c, DTA_RULE_QUANT_COVERAGE, mod, &i, 1,
                           "'%s' is stored in %s while the modules like it ('%s') are "
                           "quantized (%s) and the config does not exclude it; a loader "
                           "builds it as a quantized layer and fails or misreads it",
                           t->name, dta_dtype_name(t->dtype), pat,
                           dta_quant_scheme_name(q->scheme));
        }
        for (size_t k = 0; k < npat; k++)
            free(keys[k]);
        free(keys);
        free(pats.slot);
    }
    for (size_t k = 0; k < ntail; k++)
        free(tkeys[k]);
    free(tkeys);
    free(tails.slot);
    if (st != DTA_OK)
        return st;

    /* stale, missing or disagreeing config */
    size_t nq = 0, nbad = 0, first_bad = SIZE_MAX;
    for (size_t i = 0; i < q->nparams; i++) {
        if (q->params[i].weight == SIZE_MAX)
            continue;
        nq++;
        if (c->config_known && !compatible(q->scheme, q->params[i].scheme)) {
            if (first_bad == SIZE_MAX)
                first_bad = i;
            nbad++;
        }
    }
    const char *src = q->source ? q->source : "config.json";
    if (c->config_known && nq == 0 && m->ntensors > 0)
        st = add_issue(c, DTA_RULE_QUANT_CONFIG, src, NULL, 0,
                       "%s declares %s quantization (%s) but no tensor is quantized: the config "
                       "is stale (left after a dequantization?); transformers then fails to load "
                       "the plain weights or quantizes them again",
                       src, q->method ? q->method : "?", dta_quant_scheme_name(q->scheme));
    else if (nbad)
        st = add_issue(c, DTA_RULE_QUANT_CONFIG, src, &q->params[first_bad].weight, 1,
                       "%s declares %s (%s) but %zu quantized parameter%s stored as %s (e.g. "
                       "'%s'): the loader applies the wrong dequantization",
                       src, q->method ? q->method : "?", dta_quant_scheme_name(q->scheme), nbad,
                       nbad == 1 ? " is" : "s are",
                       dta_quant_scheme_name(q->params[first_bad].scheme),
                       q->params[first_bad].name);
    else if ((!q->source || (q->scheme == DTA_QS_TORCHAO && !strcmp(q->source, "__metadata__"))) &&
             nq && m->format_id == DTA_FORMAT_DIRECTORY &&
             q->tensor_scheme != DTA_QS_COMFY && q->tensor_scheme != DTA_QS_COMFY_FP8)
        st = add_issue(c, DTA_RULE_QUANT_CONFIG, "config.json", NULL, 0,
                       "%zu tensors are quantized (%s) but the model has no quantization config "
                       "(config.json quantization_config or a sidecar): a loader reads the raw "
                       "codes as weights",
                       nq, dta_quant_scheme_name(q->tensor_scheme));
    if (st == DTA_OK)
        st = comfy_markers(c);
    if (st == DTA_OK && q->scheme == DTA_QS_UNKNOWN)
        st = add_issue(c, DTA_RULE_QUANTIZATION, src, NULL, 0,
                       "%s names the quantization scheme '%s', which dtaudit does not know: its "
                       "tensors are listed as stored, not read as plain weights, and convert "
                       "refuses the model",
                       src, q->method ? q->method : "?");
    return st;
}

/* Whether every parameter of scheme s fits the sizes o (none: true). */
static bool all_fit(qctx *c, dta_quant_scheme s, const qsize *o)
{
    const dta_quant *q = c->q;
    for (size_t i = 0; i < q->nparams; i++) {
        dta_quant_param *p = &q->params[i];
        if (p->weight != SIZE_MAX && !p->cast && p->scheme == s && check_param(c, p, o, false))
            return false;
    }
    return true;
}

/* Block size, group size and bits: when every parameter misfits the config's but all fit
 * other ones, the config is wrong, not each parameter: one quant-config finding instead of
 * a quant-incomplete per parameter. Bits alone are tried first, then the block or group
 * size alone, then both. */
static dta_status size_disagreement(qctx *c, bool *handled)
{
    dta_quant *q = c->q;
    *handled = false;
    dta_quant_scheme s = q->scheme;
    bool ct = s == DTA_QS_CT_FLOAT || s == DTA_QS_CT_INT;
    bool blk = s == DTA_QS_FP8_BLOCK || (ct && q->block[0] && q->block[1]);
    bool grp = s == DTA_QS_GPTQ || s == DTA_QS_AWQ || s == DTA_QS_CT_PACK || s == DTA_QS_HQQ ||
               (s == DTA_QS_TORCHAO && q->group) || (ct && q->group);
    bool bit = s == DTA_QS_GPTQ || s == DTA_QS_AWQ || s == DTA_QS_CT_PACK || s == DTA_QS_HQQ ||
               ((s == DTA_QS_QUANTO || s == DTA_QS_TORCHAO) && q->bits);
    if (!c->config_known || !(blk || grp || bit))
        return DTA_OK;
    size_t n = 0, first = SIZE_MAX;
    for (size_t i = 0; i < q->nparams; i++) {
        dta_quant_param *p = &q->params[i];
        if (p->weight == SIZE_MAX || p->cast || p->scheme != s)
            continue;
        n++;
        if (!check_param(c, p, NULL, false))
            return DTA_OK; /* one fits the config: per-parameter findings, if any */
        if (first == SIZE_MAX)
            first = i;
    }
    if (!n)
        return DTA_OK;
    static const uint32_t sizes[] = {16, 32, 64, 128, 256, 512, 1024};
    static const uint32_t bitss[] = {4, 8, 2, 3}; /* the common widths first */
    const size_t ns = sizeof sizes / sizeof sizes[0];
    const size_t nbits = s == DTA_QS_QUANTO || s == DTA_QS_TORCHAO ? 3 : 4; /* no 3-bit there */
    const char *src = q->source ? q->source : "config.json";
    const size_t *w = &q->params[first].weight;
    qsize o;
    for (size_t b = 0; bit && b < nbits; b++) {
        o = (qsize){0, 0, 0, bitss[b]};
        if (bitss[b] == q->bits || !all_fit(c, s, &o))
            continue;
        *handled = true;
        c->fit_bits = bitss[b];
        return add_issue(c, DTA_RULE_QUANT_CONFIG, src, w, 1,
                         "%s declares %u-bit codes but every quantized parameter's tensors fit "
                         "%u-bit ones (e.g. '%s'): the loader unpacks the codes with the wrong "
                         "width",
                         src, q->bits, bitss[b], q->params[first].name);
    }
    for (size_t a = 0; (blk || grp) && a < ns; a++)
        for (size_t b = 0; b < (blk ? ns : 1); b++) {
            o = blk ? (qsize){sizes[a], sizes[b], 0, 0} : (qsize){0, 0, sizes[a], 0};
            if (!all_fit(c, s, &o))
                continue;
            *handled = true;
            if (blk)
                return add_issue(c, DTA_RULE_QUANT_CONFIG, src, w, 1,
                                 "%s declares weight_block_size [%u, %u] but every scale grid "
                                 "fits %ux%u blocks: the loader applies the scales to the wrong "
                                 "blocks",
                                 src, q->block[0], q->block[1], o.bm, o.bn);
            return add_issue(c, DTA_RULE_QUANT_CONFIG, src, w, 1,
                             "%s declares group_size %u but every parameter's scales fit groups "
                             "of %u: the loader applies the scales to the wrong inputs",
                             src, q->group, o.group);
        }
    for (size_t b = 0; bit && grp && b < nbits; b++)
        for (size_t a = 0; a < ns; a++) {
            o = (qsize){0, 0, sizes[a], bitss[b]};
            if (bitss[b] == q->bits || !all_fit(c, s, &o))
                continue;
            *handled = true;
            c->fit_bits = bitss[b];
            return add_issue(c, DTA_RULE_QUANT_CONFIG, src, w, 1,
                             "%s declares %u-bit codes in groups of %u but every quantized "
                             "parameter's tensors fit %u-bit codes in groups of %u (e.g. '%s'): "
                             "the loader unpacks and scales the codes wrongly",
                             src, q->bits, q->group, bitss[b], o.group, q->params[first].name);
        }
    return DTA_OK;
}

static dta_status analyse(qctx *c)
{
    const dta_model *m = c->m;
    dta_quant *q = c->q;
    dta_status st;

    if ((st = read_config(c)) != DTA_OK)
        return st;
    if (q->nignore) {
        c->re = calloc(q->nignore, sizeof *c->re);
        c->re_ok = calloc(q->nignore, sizeof *c->re_ok);
        if (!c->re || !c->re_ok)
            return nomem(c);
        for (size_t k = 0; k < q->nignore; k++)
            if (!strncmp(q->ignore[k], "re:", 3)) {
                /* hostile configs: no back-references or counted repetition, bounded length */
                const char *pat = q->ignore[k] + 3;
                const char *why = strlen(pat) > DTA_MAX_QUANT_REGEX ? "is longer than the cap"
                                                                      : NULL;
                for (const char *p = pat; !why && *p; p++)
                    if (p[0] == '\\' && p[1] >= '1' && p[1] <= '9')
                        why = "uses a back-reference";
                    else if (*p == '{' && strtoul(p + 1, NULL, 10) > DTA_MAX_QUANT_REPEAT)
                        why = "repeats more than the cap";
                    else if (*p == ',' && p > pat && isdigit((unsigned char)p[-1]) &&
                             strtoul(p + 1, NULL, 10) > DTA_MAX_QUANT_REPEAT)
                        why = "repeats more than the cap";
                if (why)
                    return dta_error_set(c->err, DTA_E_LIMIT, 0,
                                         "%s: %s: ignore pattern 're:%.40s%s' %s (at most %u "
                                         "bytes, repetition counts up to %u, no "
                                         "back-references)",
                                         m->path, q->source ? q->source : "quantization config",
                                         pat, strlen(pat) > 40 ? "..." : "", why,
                                         DTA_MAX_QUANT_REGEX, DTA_MAX_QUANT_REPEAT);
                char *anch = malloc(strlen(q->ignore[k]) + 4);
                if (!anch)
                    return nomem(c);
                sprintf(anch, "^(%s)", q->ignore[k] + 3);
                c->re_ok[k] = regcomp(&c->re[k], anch, REG_EXTENDED | REG_NOSUB) == 0;
                free(anch);
            }
    }
    /* the names' lengths, filled by group_tensors' first pass */
    c->nlens = malloc((m->ntensors ? m->ntensors : 1) * sizeof *c->nlens);
    if (!c->nlens)
        return nomem(c);
    if ((st = group_tensors(c)) != DTA_OK)
        return st;
    if (c->names_failed)
        return nomem(c);

    /* schemes per parameter; blind casts */
    size_t counts[DTA_QS_COUNT] = {0};
    for (size_t i = 0; i < q->nparams; i++) {
        dta_quant_param *p = &q->params[i];
        p->scheme = param_scheme(c, p);
        counts[p->scheme]++;
        if (p->weight != SIZE_MAX) {
            const dta_tensor *w = &m->tensors[p->weight];
            bool packed_bnb = p->scheme == DTA_QS_BNB_4BIT && w->rank == 2 &&
                              (w->shape[1] == 1 || w->shape[0] == 1);
            /* a companion of the weight's own (not an input, kv or marker one) */
            bool weight_side = p->roles & ~(1u << DTA_QR_WEIGHT | 1u << DTA_QR_INPUT_SCALE |
                                            1u << DTA_QR_KV_SCALE | 1u << DTA_QR_MARKER);
            if (is_wide_float(w->dtype) && !packed_bnb && weight_side &&
                p->scheme != DTA_QS_HQQ)
                p->cast = true;
        }
    }
    q->tensor_scheme = DTA_QS_NONE;
    size_t best = 0;
    for (int s = 1; s < DTA_QS_COUNT; s++)
        if (counts[s] > best) {
            best = counts[s];
            q->tensor_scheme = (dta_quant_scheme)s;
        }
    if (q->scheme == DTA_QS_NONE && q->tensor_scheme != DTA_QS_NONE) {
        q->scheme = q->tensor_scheme;
        q->source = q->scheme == DTA_QS_TORCHAO || q->scheme == DTA_QS_COMFY ? q->source : NULL;
    }
    /* blind FP8 per-tensor bare weights without config: nothing to say */
    if (q->scheme == DTA_QS_NONE)
        return DTA_OK;

    /* compute dtype: dominant over the floating tensors outside any parameter */
    uint64_t numel[DTA_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < m->ntensors; i++)
        if (q->tensor_role[i] == DTA_QR_NONE && dta_dtype_is_float(m->tensors[i].dtype))
            numel[m->tensors[i].dtype] += m->tensors[i].numel;
    c->compute = DTA_DTYPE_NONE;
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        if (numel[t] && (c->compute == DTA_DTYPE_NONE || numel[t] >= numel[c->compute]))
            c->compute = (dta_dtype)t;
    if (c->compute == DTA_DTYPE_NONE)
        c->compute = m->config_dtype != DTA_DTYPE_NONE ? m->config_dtype : DTA_BF16;

    bool handled = false;
    if ((st = size_disagreement(c, &handled)) != DTA_OK)
        return st;
    for (size_t i = 0; i < q->nparams && st == DTA_OK; i++) {
        dta_quant_param *p = &q->params[i];
        describe(c, p);
        if (p->cast) {
            char list[256] = "";
            size_t o = 0;
            for (size_t k = 1; k < p->ntensors && o < sizeof list; k++) {
                const char *n = m->tensors[p->tensors[k]].name;
                const char *tail = n + strlen(p->module);
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k > 1 ? ", " : "",
                                      *tail == '.' ? tail + 1 : tail);
            }
            st = add_issue(c, DTA_RULE_QUANT_CAST, p->module, p->tensors, p->ntensors,
                           "'%s' is %s beside its %s quantization companions (%s): the signature "
                           "of a blind cast, the raw codes converted without applying the scales; "
                           "the values are wrong by the scale factors",
                           m->tensors[p->weight].name, dta_dtype_name(m->tensors[p->weight].dtype),
                           dta_quant_scheme_name(p->scheme), list);
            continue;
        }
        if (handled && p->scheme == q->scheme)
            continue;
        check_param(c, p, NULL, true);
    }
    if (st == DTA_OK)
        st = config_checks(c);
    if (st == DTA_OK && c->names_failed) /* a look-up after group_tensors (comfy_markers) */
        st = nomem(c);
    return st;
}

dta_status dta_quant_analyse(const dta_model *m, dta_quant **out, dta_error *err)
{
    qctx c;
    memset(&c, 0, sizeof c);
    *out = NULL;
    c.m = m;
    c.err = err;
    quant_impl *qi = calloc(1, sizeof *qi);
    if (!qi)
        return nomem(&c);
    c.q = &qi->q;
    c.q->ntensors = m->ntensors;
    c.q->tensor_param = malloc((m->ntensors ? m->ntensors : 1) * sizeof *c.q->tensor_param);
    c.q->tensor_role = calloc(m->ntensors ? m->ntensors : 1, 1);
    dta_status st = DTA_OK;
    if (!c.q->tensor_param || !c.q->tensor_role)
        st = nomem(&c);
    for (size_t i = 0; st == DTA_OK && i < m->ntensors; i++)
        c.q->tensor_param[i] = -1;
    if (st == DTA_OK)
        st = dtap_qdyn_parse(m->quant_config, &c.dyn, err);
    if (st == DTA_OK)
        st = analyse(&c);
    dtap_qdyn_free(c.dyn);
    if (st == DTA_OK && c.q->scheme != DTA_QS_NONE && !c.q->source)
        c.q->source = "tensors";
    for (size_t k = 0; c.re && k < c.q->nignore; k++)
        if (c.re_ok[k])
            regfree(&c.re[k]);
    free(c.re);
    free(c.re_ok);
    free(c.names.slot);
    free(c.codes.slot);
    free(c.tflag);
    free(c.nlens);
    free(c.pnames.slot);
    free(c.meta.slot);
    free(c.meta.keys);
    free(c.orphan);
    free(c.ct_strategy);
    if (st != DTA_OK) {
        dta_quant_free(c.q);
        return st;
    }
    *out = c.q;
    return DTA_OK;
}

void dta_quant_free(dta_quant *q)
{
    if (!q)
        return;
    dtap_arena_free(qarena(q)); /* the parameters' names, modules and tensor lists */
    for (size_t i = 0; i < q->nissues; i++) {
        free(q->issues[i].module);
        free(q->issues[i].tensors);
        free(q->issues[i].message);
    }
    for (size_t i = 0; i < q->nignore; i++)
        free(q->ignore[i]);
    free(q->ignore);
    free(q->params);
    free(q->issues);
    free(q->tensor_param);
    free(q->tensor_role);
    free(q->method);
    free(q->detail);
    free(q);
}

bool dta_quant_tensor_is_quantized(const dta_quant *q, size_t i)
{
    return q && i < q->ntensors && q->tensor_role[i] != DTA_QR_NONE;
}

const dta_quant_param *dta_quant_tensor_param(const dta_quant *q, size_t i)
{
    if (!q || i >= q->ntensors || q->tensor_param[i] < 0)
        return NULL;
    return &q->params[q->tensor_param[i]];
}

dta_quant_role dta_quant_tensor_role(const dta_quant *q, size_t i)
{
    return q && i < q->ntensors ? (dta_quant_role)q->tensor_role[i] : DTA_QR_NONE;
}
