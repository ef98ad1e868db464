/* A model directory's quantization config, found where the producing libraries put it
 * (quant.md §2-§13, §15):
 *   config.json "quantization_config" (transformers; early compressed-tensors wrote
 *     "compression_config"), at the top level or in a nested *_config (VLMs);
 *   hf_quant_config.json (NVIDIA ModelOpt: {"producer", "quantization": {...}});
 *   quantize_config.json (AutoGPTQ / GPTQModel), quant_config.json (AutoAWQ, GPTQModel);
 *   quantization_config.json (AutoRound); quanto_qmap.json (optimum-quanto).
 * The first one found is kept as compact JSON text; dta_quant_analyse interprets it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "format.h"

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static dta_status keep(dta_model *m, const cJSON *obj, const char *source, dta_error *err)
{
    char *text = cJSON_PrintUnformatted(obj);
    if (!text)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    free(m->quant_config);
    m->quant_config = text;
    m->quant_config_source = source;
    return DTA_OK;
}

static const cJSON *quant_of(const cJSON *doc)
{
    static const char *keys[] = {"quantization_config", "compression_config"};
    for (int k = 0; k < 2; k++) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(doc, keys[k]);
        if (cJSON_IsObject(q))
            return q;
    }
    return NULL;
}

dta_status dtap_quant_read_config(const char *dir, dta_model *m, dta_error *err)
{
    static const char *sidecars[] = {"hf_quant_config.json", "quantize_config.json",
                                     "quant_config.json", "quantization_config.json",
                                     "quanto_qmap.json"};
    char path[8192];
    cJSON *doc;
    dta_status st;

    if (strlen(dir) + 32 >= sizeof path)
        return DTA_OK; /* read_directory already refused such a path */
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (exists(path)) {
        if ((st = dtap_read_json(path, "config.json", &doc, err)) != DTA_OK)
            return st;
        const cJSON *q = quant_of(doc);
        for (const cJSON *c = doc->child; c && !q; c = c->next)
            if (cJSON_IsObject(c) && c->string && strlen(c->string) > 7 &&
                strcmp(c->string + strlen(c->string) - 7, "_config") == 0)
                q = quant_of(c);
        st = q ? keep(m, q, "config.json", err) : DTA_OK;
        cJSON_Delete(doc);
        if (st != DTA_OK || q)
            return st;
    }
    for (size_t i = 0; i < sizeof sidecars / sizeof sidecars[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, sidecars[i]);
        if (!exists(path))
            continue;
        if ((st = dtap_read_json(path, sidecars[i], &doc, err)) != DTA_OK)
            return st;
        st = keep(m, doc, sidecars[i], err);
        cJSON_Delete(doc);
        return st;
    }
    return DTA_OK;
}
