/* Reading a whole JSON object file (config.json, adapter_config.json, an index, a
 * quantization sidecar) through the bounded source, capped at DTA_MAX_JSON_BYTES. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "format.h"

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
