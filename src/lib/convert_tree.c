/* Conversion of a model directory or a sharded checkpoint: every shard converted under
 * its output name, the index and config.json rewritten (cJSON, printed with two-space
 * indentation), every other file copied (copytree.c) (convert_job.h). */
#define _GNU_SOURCE /* realpath */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "convert_job.h"
#include "convert_shards.h"
#include "copytree.h"
#include "format.h"
#include "pathsafe.h"
#include "util_io.h"

/* ---- directories and sharded checkpoints ------------------------------------------- */

/* Output name of a weights file: pytorch_model-00001-of-00002.bin -> model-00001-of-00002
 * .safetensors when the format changes to safetensors; otherwise unchanged. */
static void out_name(const char *in_base, bool to_safetensors, char *out, size_t cap)
{
    size_t n = strlen(in_base);
    if (!to_safetensors || (n > 12 && !strcmp(in_base + n - 12, ".safetensors"))) {
        snprintf(out, cap, "%s", in_base);
        return;
    }
    const char *dot = strrchr(in_base, '.');
    size_t stem = dot ? (size_t)(dot - in_base) : n;
    if (stem >= 13 && !strncmp(in_base, "pytorch_model", 13))
        snprintf(out, cap, "model%.*s.safetensors", (int)(stem - 13), in_base + 13);
    else
        snprintf(out, cap, "%.*s.safetensors", (int)stem, in_base);
}

static const char *base_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* cJSON prints with tabs; model folders use two-space JSON. Raw tabs in cJSON output are
 * only indentation and the separator after ':' (tabs inside strings are escaped). */
static void two_spaces(char *text, char **out)
{
    size_t tabs = 0;
    for (const char *p = text; *p; p++)
        tabs += *p == '\t';
    char *o = malloc(strlen(text) + tabs + 1), *q = o;
    if (!o) {
        *out = NULL;
        return;
    }
    for (const char *p = text; *p; p++) {
        if (*p != '\t') {
            *q++ = *p;
        } else if (p > text && p[-1] == ':') {
            *q++ = ' ';
        } else {
            *q++ = ' ';
            *q++ = ' ';
        }
    }
    *q = 0;
    *out = o;
}

/* Writes text to dir/name, fsynced. */
static dta_status write_text(const char *dir, const char *name, const char *raw,
                             dta_error *err)
{
    char p[PATH_MAX], *text;
    two_spaces((char *)raw, &text);
    if (!text)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (!dtap_fmt_path(p, sizeof p, "%s/%s", dir, name)) {
        free(text);
        return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", name);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(text);
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", p, strerror(errno));
    }
    dta_status st = dtap_write_all(fd, text, strlen(text), p, err);
    if (st == DTA_OK && (dtap_write_all(fd, "\n", 1, p, err) != DTA_OK || fsync(fd) != 0))
        st = dta_error_set(err, DTA_E_IO, errno, "%s: write failed", p);
    close(fd);
    free(text);
    return st;
}

/* config.json with torch_dtype / dtype (top level and nested *_config) set to `to`. */
static dta_status rewrite_config(const char *in, const char *dir, dta_dtype to, bool dequant,
                                 dta_error *err)
{
    cJSON *doc;
    dta_status rs = dtap_read_json(in, in, &doc, err);
    if (rs != DTA_OK)
        return rs;
    const char *tn = dta_dtype_get(to)->torch_name;
    cJSON *objs[64];
    size_t n = 0;
    if (dequant) { /* first: the nested configs collected below are *_config objects too */
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "compression_config");
    }
    objs[n++] = doc;
    for (cJSON *c = doc->child; c && n < 64; c = c->next)
        if (cJSON_IsObject(c) && c->string && strlen(c->string) > 7 &&
            !strcmp(c->string + strlen(c->string) - 7, "_config"))
            objs[n++] = c;
    /* dequantized: the plain checkpoint has no quantization config (shared/quant.md 15) */
    for (size_t i = 1; i < n && dequant; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "compression_config");
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "dtype" : "torch_dtype";
            cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[i], key);
            if (cJSON_IsString(v))
                cJSON_ReplaceItemInObjectCaseSensitive(objs[i], key, cJSON_CreateString(tn));
            else if (i == 0 && k == 0 && !v)
                cJSON_AddStringToObject(doc, "torch_dtype", tn);
        }
    char *out = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!out)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = write_text(dir, "config.json", out, err);
    free(out);
    return st;
}

/* The index of a sharded input, rewritten: shard names mapped, total_size recomputed. */
static dta_status rewrite_index(const char *in, const char *dir, const char *const *from,
                                char *const *to, size_t n, uint64_t total_size, bool st_out,
                                const dtap_dq *dq, dta_error *err)
{
    cJSON *doc;
    dta_status rs = dtap_read_json(in, in, &doc, err);
    if (rs != DTA_OK)
        return rs;
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(doc, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: no weight_map", in);
    }
    size_t nren = 0;
    for (cJSON *e = wm->child, *next; dq && e; e = next) { /* dropped companions */
        next = e->next;
        size_t p;
        if (e->string && dtap_dq_dropped(dq, e->string))
            cJSON_Delete(cJSON_DetachItemViaPointer(wm, e));
        else if (e->string && dtap_dq_role(dq, e->string, &p) == DTAP_DQ_WEIGHT &&
                 strcmp(dtap_dq_out_name(dq, p), e->string) != 0)
            nren++;
    }
    /* codes with a name of their own ("*_blocks", "weight_packed") map their plain name */
    for (cJSON *e = wm->child, *next; nren && e; e = next) {
        next = e->next;
        size_t p;
        if (!e->string || dtap_dq_role(dq, e->string, &p) != DTAP_DQ_WEIGHT ||
            !strcmp(dtap_dq_out_name(dq, p), e->string))
            continue;
        cJSON_AddItemToObject(wm, dtap_dq_out_name(dq, p), cJSON_DetachItemViaPointer(wm, e));
        nren--;
    }
    for (cJSON *e = wm->child; e; e = e->next)
        for (size_t i = 0; i < n; i++)
            if (cJSON_IsString(e) && !strcmp(e->valuestring, from[i])) {
                cJSON_SetValuestring(e, to[i]);
                break;
            }
    cJSON *md = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    if (!cJSON_IsObject(md))
        md = cJSON_AddObjectToObject(doc, "metadata");
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)total_size);
    if (cJSON_GetObjectItemCaseSensitive(md, "total_size"))
        cJSON_ReplaceItemInObjectCaseSensitive(md, "total_size", cJSON_CreateRaw(num));
    else
        cJSON_AddRawToObject(md, "total_size", num);
    char *out = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!out)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    const char *name = base_of(in);
    char renamed[NAME_MAX + 1];
    if (st_out && strstr(name, ".bin.index.json")) /* pytorch_model.bin.index.json */
        snprintf(renamed, sizeof renamed, "model.safetensors.index.json");
    else
        snprintf(renamed, sizeof renamed, "%s", name);
    dta_status st = write_text(dir, renamed, out, err);
    free(out);
    return st;
}

/* path relative to the folder prefix pre ("dir/"), or NULL when it is not under it */
static const char *rel_to(const char *path, const char *pre, size_t npre)
{
    if (strncmp(path, pre, npre) != 0)
        return NULL;
    path += npre;
    while (*path == '/')
        path++;
    return *path ? path : NULL;
}

/* Converts a model directory, or a sharded index and its shards, into the directory tmp:
 * same layout (shards in subfolders stay there), converted shards, index and config.json
 * updated; for a directory input every other file, folder and inner link is copied
 * (copytree.h: nothing from outside the input; what is left out is reported). */
dta_status dtap_convert_tree(dtap_job *j, const char *in, const char *tmp,
                             const char **format)
{
    dta_model *m;
    dta_status st = dta_model_open(in, &m, j->err);
    struct stat sb;
    bool in_is_dir = stat(in, &sb) == 0 && S_ISDIR(sb.st_mode);
    char **newn = NULL;
    const char **oldn = NULL, **skip = NULL;
    size_t nskip = 0;
    char pre[PATH_MAX], cfg[PATH_MAX + 16];
    if (st != DTA_OK)
        return st;
    if (m->nfiles == 0) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0, "%s: no shard is present to convert", in);
        goto out;
    }
    /* the folder shard names are relative to: the index's, else the input directory */
    if (m->index_path) {
        const char *sl = strrchr(m->index_path, '/');
        snprintf(pre, sizeof pre, "%.*s", sl ? (int)(sl - m->index_path + 1) : 0, m->index_path);
    } else if (!dtap_fmt_path(pre, sizeof pre, "%s/", in)) {
        st = dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", in);
        goto out;
    }
    size_t npre = strlen(pre);
    newn = calloc(m->nfiles, sizeof *newn);
    oldn = calloc(m->nfiles, sizeof *oldn);
    skip = calloc(m->nfiles + 8, sizeof *skip);
    if (!newn || !oldn || !skip) {
        st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    uint64_t total_size = 0;
    for (size_t i = 0; i < m->nfiles && st == DTA_OK; i++) {
        char name[NAME_MAX + 1], rel[PATH_MAX];
        bool to_st = j->o->out_format == DTA_OUT_SAFETENSORS;
        const char *r = rel_to(m->files[i].path, pre, npre);
        if (!r)
            r = base_of(m->files[i].path);
        const char *b = base_of(r);
        out_name(b, to_st, name, sizeof name);
        oldn[i] = r;
        skip[nskip++] = r;
        if (!dtap_fmt_path(rel, sizeof rel, "%.*s%s", (int)(b - r), r, name) || !(newn[i] = strdup(rel))) {
            st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(newn[k], rel))
                st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                                   "two shards would both be written as '%s'", rel);
    }
    /* the shards: converted (--jobs threads), staged (--part) or linked from the staging */
    dtap_shards_mode mode = !j->stage ? DTAP_SHARDS_CONVERT
                            : j->stage_link ? DTAP_SHARDS_LINK : DTAP_SHARDS_STAGE;
    uint64_t *bytes = NULL;
    unsigned *part_of = NULL;
    if (st == DTA_OK) {
        bytes = calloc(m->nfiles, sizeof *bytes);
        part_of = calloc(m->nfiles, sizeof *part_of);
        uint64_t *sizes = calloc(m->nfiles, sizeof *sizes);
        if (!bytes || !part_of || !sizes)
            st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        for (size_t i = 0; st == DTA_OK && i < m->nfiles; i++) {
            struct stat fs;
            sizes[i] = stat(m->files[i].path, &fs) == 0 ? (uint64_t)fs.st_size : 0;
        }
        if (st == DTA_OK && mode == DTAP_SHARDS_STAGE &&
            !dtap_parts_assign(sizes, oldn, m->nfiles, j->o->nparts, part_of))
            st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        free(sizes);
        j->res->shards = m->nfiles;
        if (st == DTA_OK)
            st = dtap_shards_run(j, m, (const char *const *)newn, tmp, mode, part_of, bytes);
        for (size_t i = 0; st == DTA_OK && i < m->nfiles; i++)
            total_size += bytes[i];
    }
    free(bytes);
    free(part_of);
    if (mode == DTAP_SHARDS_STAGE) { /* --part: the publishing part writes the rest */
        *format = dta_format_name(DTA_FORMAT_DIRECTORY);
        goto out;
    }
    if (st == DTA_OK && m->index_path) {
        st = rewrite_index(m->index_path, tmp, oldn, newn, m->nfiles, total_size,
                           j->o->out_format == DTA_OUT_SAFETENSORS, j->dq, j->err);
        const char *r = rel_to(m->index_path, in, strlen(in));
        skip[nskip++] = r ? r : base_of(m->index_path);
    }
    if (st == DTA_OK && in_is_dir) {
        /* config.json updated (read only when it is inside the input); the rest copied */
        char root[PATH_MAX], where[PATH_MAX];
        struct stat cs;
        if (dtap_fmt_path(cfg, sizeof cfg, "%s/config.json", in) && lstat(cfg, &cs) == 0) {
            int inside = realpath(in, root) ? dtap_resolves_inside(root, cfg, where, sizeof where)
                                            : -1;
            struct stat fs;
            if (inside != 1 || stat(cfg, &fs) != 0 || !S_ISREG(fs.st_mode))
                st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                                   "%s: not a regular file inside the input%s%.300s; not read",
                                   cfg, inside == 0 ? " (it leads to " : "",
                                   inside == 0 ? where : "");
            /* its dtype becomes the target (--to auto: the first root's; when no root has a
             * dtype convert writes, it is copied as it is); dequantized: it loses its
             * quantization_config whatever the dtype */
            else if (j->ap->config_to != DTA_DTYPE_NONE || j->o->dequantize) {
                st = rewrite_config(cfg, tmp,
                                    j->ap->config_to != DTA_DTYPE_NONE ? j->ap->config_to
                                                                       : j->o->to,
                                    j->o->dequantize, j->err);
                skip[nskip++] = "config.json";
            }
        }
        /* dequantized: the quantization sidecars describe what is no longer there */
        static const char *const sidecars[] = {"hf_quant_config.json", "quantize_config.json",
                                               "quant_config.json", "quantization_config.json",
                                               "quanto_qmap.json"};
        for (size_t k = 0; k < 5 && j->o->dequantize; k++)
            skip[nskip++] = sidecars[k];
        dtap_copy_report rep = {0};
        if (st == DTA_OK)
            st = dtap_copy_tree(in, tmp, skip, nskip, &rep, j->err);
        j->res->files_copied = rep.files + rep.links;
        j->res->left_out = rep.left_out;
        j->res->nleft_out = rep.nleft_out;
        j->res->copied_weights = rep.weights;
        j->res->ncopied_weights = rep.nweights;
    }
    *format = dta_format_name(DTA_FORMAT_DIRECTORY);
out:
    for (size_t i = 0; newn && i < m->nfiles; i++)
        free(newn[i]);
    free(newn);
    free(oldn);
    free(skip);
    dta_model_free(m);
    return st;
}
