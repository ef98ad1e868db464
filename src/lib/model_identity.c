/* A model directory's identity from its config.json: "model_type" (top level first, then
 * nested objects named *_config, as composite models such as VLMs carry their text model's
 * model_type in text_config), "architectures" and diffusers' "_class_name". The intended
 * precision table (intended.h) keys its rules on them. config.json is hostile input: only
 * strings are taken, each capped in length, the lists capped in size; anything else is
 * ignored (a config that loaders accept must not stop an audit). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model_build.h"

#define IDENTITY_MAX_ITEMS 64u   /* model_types / architectures kept */
#define IDENTITY_MAX_LEN 256u    /* bytes per name kept */

static bool usable(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring && v->valuestring[0] &&
           strlen(v->valuestring) <= IDENTITY_MAX_LEN;
}

static dta_status push(char ***v, size_t *n, const char *s, dta_error *err)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return DTA_OK;
    if (*n >= IDENTITY_MAX_ITEMS)
        return DTA_OK;
    char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *v = p;
    if (!(p[*n] = strdup(s)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    (*n)++;
    return DTA_OK;
}

static bool is_sub_config(const cJSON *c)
{
    size_t n = c->string ? strlen(c->string) : 0;
    return cJSON_IsObject(c) && n >= 7 && strcmp(c->string + n - 7, "_config") == 0;
}

dta_status dtap_model_read_identity(dta_model *m, const struct cJSON *doc, dta_error *err)
{
    dta_status st = DTA_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "model_type");
    if (usable(v))
        st = push(&m->model_types, &m->nmodel_types, v->valuestring, err);
    for (const cJSON *c = doc->child; c && st == DTA_OK; c = c->next)
        if (is_sub_config(c)) {
            v = cJSON_GetObjectItemCaseSensitive(c, "model_type");
            if (usable(v))
                st = push(&m->model_types, &m->nmodel_types, v->valuestring, err);
        }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "architectures");
    if (cJSON_IsArray(a))
        for (const cJSON *e = a->child; e && st == DTA_OK; e = e->next)
            if (usable(e))
                st = push(&m->architectures, &m->narchitectures, e->valuestring, err);
    v = cJSON_GetObjectItemCaseSensitive(doc, "_class_name");
    if (st == DTA_OK && usable(v) && !m->class_name && !(m->class_name = strdup(v->valuestring)))
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    return st;
}
