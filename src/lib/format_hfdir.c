/* Model directories in the Hugging Face layout: which weights are read (an index first,
 * safetensors before .bin), config.json (torch_dtype / dtype, model identity, a
 * quantization_config note), PEFT's adapter_config.json, and the quantization config
 * (quant_config.c). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "format.h"
#include "model_build.h"

static dta_status read_file(const char *path, dta_model *m, dta_error *err)
{
    dtap_src src;
    dta_status st = dtap_src_open_file(&src, path, err);
    if (st != DTA_OK)
        return st;
    st = dtap_read_src(&src, m, err);
    dtap_src_close(&src);
    return st;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the directory's regular files ending in suffix. */
static size_t list_suffix(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    char **v = NULL, path[8192];
    size_t n = 0;
    struct dirent *e;
    *out = NULL;
    if (!d)
        return 0;
    while ((e = readdir(d)) && n < DTA_MAX_FILES) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!ends_with(e->d_name, suffix) || !is_file(path))
            continue;
        char **p = realloc(v, (n + 1) * sizeof *p);
        if (!p || !(p[n] = strdup(e->d_name))) {
            free(p ? p : v);
            v = p;
            break;
        }
        v = p;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_names);
    *out = v;
    return n;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* config.json: torch_dtype, or the newer dtype; nested *_config when the top has none. */
static dta_status read_config(const char *dir, dta_model *m, dta_error *err)
{
    char path[8192];
    cJSON *doc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!is_file(path))
        return DTA_OK;
    dta_status st = dtap_read_json(path, "config.json", &doc, err);
    if (st != DTA_OK)
        return st;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(doc, "torch_dtype");
    if (!cJSON_IsString(dt))
        dt = cJSON_GetObjectItemCaseSensitive(doc, "dtype");
    for (const cJSON *c = doc->child; c && !cJSON_IsString(dt); c = c->next)
        if (cJSON_IsObject(c) && c->string && ends_with(c->string, "_config")) {
            dt = cJSON_GetObjectItemCaseSensitive(c, "torch_dtype");
            if (!cJSON_IsString(dt))
                dt = cJSON_GetObjectItemCaseSensitive(c, "dtype");
        }
    if (cJSON_IsString(dt))
        m->config_dtype = dta_dtype_from_alias(dt->valuestring);
    st = dtap_model_read_identity(m, doc, err);
    if (st != DTA_OK) {
        cJSON_Delete(doc);
        return st;
    }
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "quantization_config"))) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(doc, "quantization_config"), "quant_method");
        char msg[256];
        snprintf(msg, sizeof msg, "config.json has a quantization_config (%s)",
                 cJSON_IsString(q) ? q->valuestring : "unknown method");
        st = dtap_model_add_note(m, DTA_RULE_QUANTIZATION, "config.json", msg, err);
    }
    cJSON_Delete(doc);
    return st;
}

/* PEFT's adapter_config.json: a JSON object with a string "peft_type" (PeftConfig always
 * writes it). Other tools' adapter_config.json (MLX: "lora_parameters", no "peft_type")
 * are not PEFT configs: an info note says so and the weights are read as usual. */

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static dta_status read_adapter_config(const char *dir, dta_model *m, dta_error *err)
{
    char path[8192];
    cJSON *doc;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (!is_file(path))
        return DTA_OK;
    dta_status st = dtap_read_json(path, "adapter_config.json", &doc, err);
    if (st != DTA_OK)
        return st;
    const char *peft = json_str(doc, "peft_type");
    if (!peft || !*peft) {
        cJSON_Delete(doc);
        return dtap_model_add_note(m, DTA_RULE_ADAPTER_CONFIG, "adapter_config.json",
                                   "adapter_config.json is not a PEFT config (no \"peft_type\"); "
                                   "the weights were read as a plain checkpoint, without a base model",
                                   err);
    }
    const char *strs[4] = {peft, json_str(doc, "base_model_name_or_path"),
                           json_str(doc, "task_type"), json_str(doc, "revision")};
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(doc, "target_modules");
    const char *regex = cJSON_IsString(tm) ? tm->valuestring : NULL;
    size_t ntm = 0, bytes = sizeof(dta_adapter);
    if (cJSON_IsArray(tm))
        for (const cJSON *e = tm->child; e && ntm < DTA_MAX_ADAPTER_TARGETS; e = e->next)
            if (cJSON_IsString(e) && e->valuestring) {
                ntm++;
                bytes += sizeof(char *) + strlen(e->valuestring) + 1;
            }
    for (int i = 0; i < 4; i++)
        bytes += strs[i] ? strlen(strs[i]) + 1 : 0;
    bytes += regex ? strlen(regex) + 1 : 0;
    dta_adapter *a = calloc(1, bytes);
    if (!a) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    const char **list = (const char **)(a + 1);
    char *p = (char *)(list + ntm);
    const char **dst[4] = {&a->peft_type, &a->base_model, &a->task_type, &a->revision};
    for (int i = 0; i < 4; i++)
        if (strs[i]) {
            *dst[i] = strcpy(p, strs[i]);
            p += strlen(p) + 1;
        }
    if (regex) {
        a->target_regex = strcpy(p, regex);
        p += strlen(p) + 1;
    }
    if (cJSON_IsArray(tm)) {
        a->target_modules = list;
        for (const cJSON *e = tm->child; e && a->ntarget_modules < ntm; e = e->next)
            if (cJSON_IsString(e) && e->valuestring) {
                list[a->ntarget_modules++] = strcpy(p, e->valuestring);
                p += strlen(p) + 1;
            }
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(doc, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(doc, "lora_alpha");
    a->r = cJSON_IsNumber(r) && r->valuedouble >= 0 && r->valuedouble < 1e15 ? (int64_t)r->valuedouble : -1;
    a->lora_alpha = cJSON_IsNumber(alpha) ? alpha->valuedouble : -1;
    free(m->adapter);
    m->adapter = a;
    cJSON_Delete(doc);
    return DTA_OK;
}

/* Reads one weights file of the directory; its errors name the file (*named set). */
static dta_status read_weights(const char *path, dta_model *m, bool *named, dta_error *err)
{
    dta_status st = read_file(path, m, err);
    if (st != DTA_OK) {
        dta_error_prefix(err, path);
        *named = true;
    }
    return st;
}

/* Picks the weights of a model directory: an index first, safetensors before .bin. Errors
 * of a weights file name the file (read_weights), others are named by the caller. */
static dta_status read_directory(const char *dir, dta_model *m, bool *named, dta_error *err)
{
    static const char *preferred[] = {
        "model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
        "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin"};
    char path[8192], chosen[8192] = "";
    dta_status st = DTA_OK;

    /* every path below is dir + '/' + a name of at most NAME_MAX bytes: check once */
    if (strlen(dir) + 2 + 255 >= sizeof path)
        return dta_error_set(err, DTA_E_LIMIT, 0, "directory path longer than %zu bytes",
                             sizeof path - 258);

    for (size_t i = 0; i < sizeof preferred / sizeof preferred[0] && !chosen[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, preferred[i]);
        if (is_file(path))
            snprintf(chosen, sizeof chosen, "%s", path);
    }
    char **v;
    size_t n;
    if (!chosen[0]) {
        static const char *suffixes[] = {".safetensors.index.json", ".bin.index.json"};
        for (size_t i = 0; i < 2 && !chosen[0]; i++) {
            n = list_suffix(dir, suffixes[i], &v);
            if (n)
                snprintf(chosen, sizeof chosen, "%s/%s", dir, v[0]);
            free_list(v, n);
        }
    }
    if (chosen[0]) {
        st = read_weights(chosen, m, named, err);
    } else {
        /* unindexed weights: every safetensors file, else the single torch file */
        n = list_suffix(dir, ".safetensors", &v);
        for (size_t i = 0; i < n && st == DTA_OK; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, v[i]);
            st = read_weights(path, m, named, err);
        }
        free_list(v, n);
        if (n == 0) {
            static const char *torch_ext[] = {".bin", ".pt", ".pth", ".ckpt"};
            for (size_t i = 0; i < 4 && !chosen[0]; i++) {
                n = list_suffix(dir, torch_ext[i], &v);
                if (n)
                    snprintf(chosen, sizeof chosen, "%s/%s", dir, v[0]);
                free_list(v, n);
            }
            if (!chosen[0])
                return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                     "directory holds no checkpoint (no index, *.safetensors, "
                                     "*.bin, *.pt, *.pth or *.ckpt)");
            st = read_weights(chosen, m, named, err);
        }
    }
    if (st == DTA_OK)
        st = read_config(dir, m, err);
    if (st == DTA_OK)
        st = read_adapter_config(dir, m, err);
    if (st == DTA_OK)
        st = dtap_quant_read_config(dir, m, err);
    if (st == DTA_OK && m->nfiles > 0) {
        /* say which weights were read when the directory offers both kinds */
        bool st_read = m->files[0].format_id == DTA_FORMAT_SAFETENSORS;
        snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
        bool bin = is_file(path);
        snprintf(path, sizeof path, "%s/pytorch_model.bin.index.json", dir);
        bin = bin || is_file(path);
        if (st_read && bin)
            st = dtap_model_add_note(m, DTA_RULE_WEIGHTS_CHOICE, dir,
                                     "read the safetensors weights; the PyTorch .bin weights "
                                     "beside them were not read",
                                     err);
    }
    dtap_model_set_format(m, DTA_FORMAT_DIRECTORY);
    return st;
}

dta_status dtap_read_directory(const char *dir, dta_model *m, dta_error *err)
{
    bool named = false;
    dta_status st = read_directory(dir, m, &named, err);
    if (st != DTA_OK && !named)
        dta_error_prefix(err, dir);
    return st;
}
