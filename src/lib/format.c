/* Format detection: a table of readers, cheap bidders first (libarchive's bid()), and
 * model directories (HF layout: index or weight files, config.json). */
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
#include "zipread.h"

static const dtap_reader readers[] = {
    {"torch-zip", dtap_torchzip_bid, dtap_torchzip_open},
    {"torch-legacy", dtap_torchlegacy_bid, dtap_torchlegacy_open},
    {"safetensors", dtap_safetensors_bid, dtap_safetensors_open},
    {"index", dtap_index_bid, dtap_index_open}, /* last: only JSON that is no safetensors */
};

/* Names what a file looks like when no reader takes it, so the error says what it is. */
static const char *describe(const unsigned char *h, size_t n)
{
    if (n == 0)
        return "empty file";
    if (n < 8)
        return "file too short to be a checkpoint";
    if (n >= 4 && memcmp(h, "GGUF", 4) == 0)
        return "a GGUF file (not supported)";
    if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
        return "a NumPy .npy file (not supported)";
    if (n >= 8 && memcmp(h, "\x89HDF\r\n\x1a\n", 8) == 0)
        return "an HDF5 file (not supported)";
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        return "a gzip file (not supported)";
    if (n >= 1 && (h[0] == '{' || h[0] == '['))
        return "a JSON file, not a checkpoint";
    if (n >= 2 && h[0] == 0x80 && h[1] <= 5)
        return "a pickle without torch's legacy magic number (torch.load would unpickle it "
               "as a legacy stream, running what it calls): not supported";
    return "not a recognised checkpoint (safetensors, PyTorch zip or legacy PyTorch file)";
}

/* A file starting with "PK\3\4" is a zip to torch.load (torchzip_bid). The same four
 * bytes are also a valid safetensors header length (0x04034B50 = 67,324,752 bytes, under
 * the 100 MB cap), so a safetensors file with a header of exactly that size starts the
 * same way. The file is read as what it validly is: safetensors when it is a complete
 * safetensors file and no zip archive, a zip otherwise; a file that is both (a polyglot:
 * safetensors.load_file and torch.load would return different tensors) is refused. */
dta_status dtap_detect_torchzip(const dtap_src *src, bool *torchzip, dta_error *err)
{
    unsigned char head[DTAP_BID_BYTES];
    size_t n = dtap_src_peek(src, 0, head, sizeof head);
    *torchzip = dtap_torchzip_bid(head, n, src->size) > 0;
    if (!*torchzip || dtap_safetensors_bid(head, n, src->size) <= 0)
        return DTA_OK;
    dta_model *scratch = dtap_model_new(src->name ? src->name : "", NULL);
    if (!scratch)
        return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    bool st_ok = dtap_safetensors_open(src, scratch, NULL) == DTA_OK;
    dta_model_free(scratch);
    if (!st_ok)
        return DTA_OK; /* not safetensors: the zip reader says what is wrong */
    dtap_zip *z = NULL;
    bool zip_ok = dtap_zip_open(src, &z, NULL) == DTA_OK;
    dtap_zip_close(z);
    if (zip_ok)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "reads both as a safetensors file and as a zip archive (torch.load "
                             "would read the zip): refused as ambiguous");
    *torchzip = false;
    return DTA_OK;
}

static dta_status read_with(const dtap_src *src, dta_model *m, bool index, dta_error *err)
{
    unsigned char head[DTAP_BID_BYTES];
    size_t n = dtap_src_peek(src, 0, head, sizeof head);
    bool zip;
    dta_status st = dtap_detect_torchzip(src, &zip, err);
    if (st != DTA_OK)
        return st;
    if (zip)
        return dtap_torchzip_open(src, m, err);
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++) {
        if (!index && readers[i].open == dtap_index_open)
            continue;
        if (readers[i].open == dtap_torchzip_open)
            continue; /* decided above */
        if (readers[i].bid(head, n, src->size) > 0)
            return readers[i].open(src, m, err);
    }
    return dta_error_set(err, n == 0 ? DTA_E_FORMAT : DTA_E_UNSUPPORTED, 0, "%s",
                         describe(head, n));
}

dta_status dtap_read_src(const dtap_src *src, dta_model *m, dta_error *err)
{
    return read_with(src, m, true, err);
}

dta_status dtap_read_weights(const dtap_src *src, dta_model *m, dta_error *err)
{
    return read_with(src, m, false, err);
}

dta_status dtap_index_open(const dtap_src *src, dta_model *m, dta_error *err)
{
    return dtap_index_read(src, m, dtap_read_weights, err);
}

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

dta_status dtap_read_json(const char *path, const char *shown, cJSON **out, dta_error *err)
{
    dtap_src src;
    unsigned char *text = NULL;
    *out = NULL;
    dta_status st = dtap_src_open_file(&src, path, err);
    if (st == DTA_OK)
        st = dtap_src_alloc_read(&src, 0, src.size, DTA_MAX_JSON_BYTES, &text, err);
    dtap_src_close(&src);
    if (st != DTA_OK) {
        dta_error_prefix(err, shown);
        return st;
    }
    cJSON *doc = cJSON_ParseWithLength((const char *)text, (size_t)src.size);
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s is not a JSON object", shown);
    }
    *out = doc;
    return DTA_OK;
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

/* Picks the weights of a model directory: an index first, safetensors before .bin. */
static dta_status read_directory(const char *dir, dta_model *m, dta_error *err)
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
        st = read_file(chosen, m, err);
        if (st != DTA_OK && err)
            dta_error_prefix(err, chosen);
    } else {
        /* unindexed weights: every safetensors file, else the single torch file */
        n = list_suffix(dir, ".safetensors", &v);
        for (size_t i = 0; i < n && st == DTA_OK; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, v[i]);
            st = read_file(path, m, err);
            if (st != DTA_OK && err)
                dta_error_prefix(err, path);
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
            st = read_file(chosen, m, err);
            if (st != DTA_OK && err)
                dta_error_prefix(err, chosen);
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
        bool st_read = strstr(m->files[0].format, "safetensors") != NULL;
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
    m->format = "directory";
    return st;
}

dta_status dta_model_open(const char *path, dta_model **out, dta_error *err)
{
    dtap_src src;
    dta_status st;
    dta_model *m;
    struct stat sb;

    *out = NULL;
    if (!path)
        return dta_error_set(err, DTA_E_ARG, 0, "no path");
    m = dtap_model_new(path, err);
    if (!m) {
        dta_error_prefix(err, path);
        return DTA_E_NOMEM;
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        st = read_directory(path, m, err);
        if (st != DTA_OK) {
            if (err && strncmp(err->msg, path, strlen(path)) != 0)
                dta_error_prefix(err, path);
            dta_model_free(m);
            return st;
        }
    } else {
        st = dtap_src_open_file(&src, path, err);
        if (st == DTA_OK) {
            st = dtap_read_src(&src, m, err);
            dtap_src_close(&src);
        }
        if (st != DTA_OK) {
            dta_error_prefix(err, path);
            dta_model_free(m);
            return st;
        }
    }
    if (m->nfiles > 0 && strcmp(m->format, "unknown") == 0)
        m->format = m->files[0].format;
    dtap_model_finish(m);
    *out = m;
    return DTA_OK;
}

dta_status dta_model_open_memory(const char *name, const void *data, size_t size,
                                 dta_model **out, dta_error *err)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    if (!data && size)
        return dta_error_set(err, DTA_E_ARG, 0, "%s: no buffer for %zu bytes", name, size);
    dta_model *m = dtap_model_new(name, err);
    if (!m) {
        dta_error_prefix(err, name);
        return DTA_E_NOMEM;
    }
    dtap_src src;
    dtap_src_open_mem(&src, name, data ? data : "", size);
    dta_status st = dtap_read_src(&src, m, err);
    dtap_src_close(&src);
    if (st != DTA_OK) {
        dta_error_prefix(err, name);
        dta_model_free(m);
        return st;
    }
    if (m->nfiles > 0 && strcmp(m->format, "unknown") == 0)
        m->format = m->files[0].format;
    dtap_model_finish(m);
    *out = m;
    return DTA_OK;
}
