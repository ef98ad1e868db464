/* Sharded checkpoint index (model.safetensors.index.json, pytorch_model.bin.index.json).
 *
 * Layout (docs/formats.md 1.6):
 *   {"metadata": {"total_size": BYTES, ...}, "weight_map": {"tensor.name": "shard-file", ...}}
 *   Shard paths are relative to the index's directory; total_size is the sum of tensor
 *   byte sizes with shared storages counted once.
 *
 * Every shard present is read with its own reader into one model, so the audit sees one
 * state dict. Disagreements between the index and the shards become index-mismatch notes
 * (errors); shards that are absent leave what the index says (names, shard) in a note. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "format.h"
#include "model_build.h"
#include "pathsafe.h"
#include "util_strmap.h"

int dtap_index_bid(const unsigned char *head, size_t n, uint64_t size)
{
    size_t i = 0;
    (void)size;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
        i++;
    if (i >= n || head[i] != '{')
        return DTAP_BID_NONE;
    /* "weight_map" usually follows a short "metadata" object; look for either key */
    for (size_t k = i; k + 12 <= n; k++)
        if (memcmp(head + k, "\"weight_map\"", 12) == 0 || memcmp(head + k, "\"metadata\"", 10) == 0)
            return DTAP_BID_TEXT;
    return DTAP_BID_NONE;
}

/* A shard path must stay inside the index's directory. */
static bool shard_name_ok(const char *s)
{
    if (!*s || *s == '/' || strlen(s) > DTA_MAX_SHARD_NAME)
        return false;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 2 && p[0] == '.' && p[1] == '.') || len == 0)
            return false;
        if (!e)
            break;
        p = e + 1;
    }
    return true;
}

typedef struct {
    const char *name;
    size_t listed; /* tensors the index maps to it */
    size_t first_tensor, ntensors; /* model tensors read from it */
    bool present;
} shard;

static dta_status note(dta_model *m, const char *subject, dta_error *err, const char *fmt, ...)
    DTA_PRINTF(4, 5);
static dta_status note(dta_model *m, const char *subject, dta_error *err, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dtap_model_add_note(m, DTA_RULE_INDEX_MISMATCH, subject, msg, err);
}

dta_status dtap_index_read(const dtap_src *src, dta_model *m, dtap_read_fn read_shard,
                           dta_error *err)
{
    unsigned char *text = NULL;
    cJSON *doc = NULL;
    shard *shards = NULL;
    size_t nshards = 0;
    dtap_strmap by_shard = {0}, mapped = {0}, found = {0};
    char dir[DTA_MAX_INDEX_PATH], path[DTA_MAX_INDEX_PATH * 2];
    dta_status st;
    bool safetensors_shards = true;

    if ((st = dtap_src_alloc_read(src, 0, src->size, DTA_MAX_JSON_BYTES, &text, err)) != DTA_OK)
        return st;
    doc = cJSON_ParseWithLength((const char *)text, (size_t)src->size);
    if (!doc || !cJSON_IsObject(doc)) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "index is not a JSON object");
        goto out;
    }
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(doc, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                           "a JSON file without a weight_map object, not a checkpoint index");
        goto out;
    }
    if (strlen(src->name) >= sizeof dir) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "index path longer than %zu bytes",
                           sizeof dir - 1);
        goto out;
    }
    snprintf(dir, sizeof dir, "%s", src->name);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;

    /* shards in order of first appearance, with how many tensors each is said to hold */
    size_t nentries = (size_t)cJSON_GetArraySize(wm);
    if (nentries > DTA_MAX_TENSORS) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "weight_map has more than %u entries",
                           DTA_MAX_TENSORS);
        goto out;
    }
    shards = calloc(nentries ? nentries : 1, sizeof *shards);
    if (!shards || !dtap_strmap_init(&by_shard, nentries) || !dtap_strmap_init(&mapped, nentries)) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->string) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "weight_map entry '%.100s' is not a string",
                               e->string ? e->string : "?");
            goto out;
        }
        if (!shard_name_ok(e->valuestring)) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "weight_map entry '%.100s' names shard '%.100s' outside the "
                               "index's directory",
                               e->string, e->valuestring);
            goto out;
        }
        /* cJSON keeps duplicate keys; the reference loaders would keep only one */
        if (dtap_strmap_gets(&mapped, e->string) != SIZE_MAX) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "weight_map lists '%.100s' twice", e->string);
            goto out;
        }
        dtap_strmap_puts(&mapped, e->string, 0);
        size_t k = dtap_strmap_puts(&by_shard, e->valuestring, nshards);
        if (k == nshards)
            shards[nshards++].name = e->valuestring;
        shards[k].listed++;
    }
    /* shards are read only inside the index's folder: a link (or a linked folder) that
     * leads out of it is refused, except into a hub cache's blobs (pathsafe.h) */
    char root[PATH_MAX];
    if (nshards && !dtap_realpath(dir[0] ? dir : ".", root)) {
        st = dta_error_set(err, DTA_E_IO, errno, "cannot resolve the index's folder: %s",
                           strerror(errno));
        goto out;
    }
    for (size_t k = 0; k < nshards; k++) {
        dtap_src ss;
        dta_error serr;
        char where[PATH_MAX];
        snprintf(path, sizeof path, "%s%s", dir, shards[k].name);
        shards[k].first_tensor = m->ntensors;
        if (dtap_resolves_inside(root, path, where, sizeof where) == 0) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "shard '%.200s' leads to %.300s, outside the index's folder; "
                               "not read",
                               shards[k].name, where);
            goto out;
        }
        if (dtap_src_open_file(&ss, path, &serr) != DTA_OK) {
            if (serr.sys_errno != ENOENT) {
                st = dta_error_set(err, serr.code, serr.sys_errno, "shard %s: %s", path, serr.msg);
                goto out;
            }
            if ((st = note(m, shards[k].name, err,
                           "shard '%s' is missing: the %zu tensors the index maps to it were "
                           "not read",
                           shards[k].name, shards[k].listed)) != DTA_OK)
                goto out;
            continue;
        }
        st = read_shard(&ss, m, &serr);
        dtap_src_close(&ss);
        if (st != DTA_OK) {
            st = dta_error_set(err, serr.code, serr.sys_errno, "shard %s: %s", path, serr.msg);
            goto out;
        }
        if (m->files[m->nfiles - 1].format_id != DTA_FORMAT_SAFETENSORS)
            safetensors_shards = false;
        shards[k].present = true;
        shards[k].ntensors = m->ntensors - shards[k].first_tensor;
    }

    /* index vs shards, both ways */
    if (!dtap_strmap_init(&found, m->ntensors)) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m->ntensors; i++)
        dtap_strmap_puts(&found, m->tensors[i].name, i);
    for (size_t i = 0; i < m->ntensors; i++)
        if (dtap_strmap_gets(&mapped, m->tensors[i].name) == SIZE_MAX &&
            (st = note(m, m->tensors[i].name, err,
                       "tensor '%s' is in shard %s but not in the index's weight_map",
                       m->tensors[i].name, m->files[m->tensors[i].file].path)) != DTA_OK)
            goto out;
    for (cJSON *e = wm->child; e; e = e->next) {
        const shard *sh = &shards[dtap_strmap_gets(&by_shard, e->valuestring)];
        if (!sh->present)
            continue;
        size_t i = dtap_strmap_gets(&found, e->string);
        if (i != SIZE_MAX && i >= sh->first_tensor && i < sh->first_tensor + sh->ntensors)
            continue;
        if ((st = note(m, e->string, err, "the index maps '%s' to %s, which does not hold it%s",
                       e->string, e->valuestring,
                       i != SIZE_MAX ? " (another shard does)" : "")) != DTA_OK)
            goto out;
    }

    /* metadata.total_size: sum of tensor bytes, each storage once (docs/formats.md 1.6) */
    cJSON *md = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    cJSON *ts = cJSON_IsObject(md) ? cJSON_GetObjectItemCaseSensitive(md, "total_size") : NULL;
    bool all_present = true;
    for (size_t k = 0; k < nshards; k++)
        all_present &= shards[k].present;
    if (cJSON_IsNumber(ts) && all_present) {
        uint64_t total = 0;
        bool *seen = calloc(m->nstorages ? m->nstorages : 1, sizeof *seen);
        if (!seen) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m->ntensors; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (t->storage != SIZE_MAX && seen[t->storage])
                continue;
            if (t->storage != SIZE_MAX)
                seen[t->storage] = true;
            total += t->nbytes;
        }
        free(seen);
        /* JSON numbers are doubles here: exact up to 2^53 bytes (8 PiB) */
        if (ts->valuedouble < 0 || (double)total != ts->valuedouble) {
            if ((st = note(m, "metadata.total_size", err,
                           "index metadata.total_size is %.0f but the shards' tensors hold %llu "
                           "bytes",
                           ts->valuedouble, (unsigned long long)total)) != DTA_OK)
                goto out;
        }
    }
    dtap_model_set_format(m, safetensors_shards ? DTA_FORMAT_SAFETENSORS_INDEX
                                                : DTA_FORMAT_TORCH_INDEX);
    free(m->index_path);
    if (!(m->index_path = strdup(src->name))) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    st = DTA_OK;
out:
    dtap_strmap_free(&found);
    dtap_strmap_free(&mapped);
    dtap_strmap_free(&by_shard);
    free(shards);
    cJSON_Delete(doc);
    free(text);
    return st;
}
