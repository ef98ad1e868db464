/* JSON output, schema 1 (DESIGN.md). Integers are written raw so 64-bit values stay exact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "report.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

static cJSON *u64(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *dtype_or_null(dta_dtype t)
{
    return t == DTA_DTYPE_NONE ? cJSON_CreateNull() : cJSON_CreateString(dta_dtype_name(t));
}

static void add_counts(cJSON *obj, const dta_count *c)
{
    cJSON_AddItemToObject(obj, "tensors", u64(c->tensors));
    cJSON_AddItemToObject(obj, "numel", u64(c->numel));
    cJSON_AddItemToObject(obj, "nbytes", u64(c->nbytes));
}

static cJSON *dtype_map(const dta_count *by)
{
    cJSON *d = cJSON_CreateObject();
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        if (!by[t].tensors)
            continue;
        cJSON *c = cJSON_CreateObject();
        add_counts(c, &by[t]);
        cJSON_AddItemToObject(d, dta_dtype_name((dta_dtype)t), c);
    }
    return d;
}

static cJSON *input_json(const input_result *r)
{
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "path", r->path);
    if (!r->model) {
        cJSON_AddNullToObject(in, "format");
        cJSON_AddStringToObject(in, "error", r->err.msg);
        return in;
    }
    const dta_model *m = r->model;
    cJSON_AddStringToObject(in, "format", m->format);
    cJSON *files = cJSON_AddArrayToObject(in, "files");
    for (size_t i = 0; i < m->nfiles; i++)
        cJSON_AddItemToArray(files, cJSON_CreateString(m->files[i].path));
    cJSON_AddItemToObject(in, "config_dtype", dtype_or_null(m->config_dtype));
    if (m->nmetadata) {
        cJSON *md = cJSON_AddObjectToObject(in, "metadata");
        for (size_t i = 0; i < m->nmetadata; i++)
            cJSON_AddStringToObject(md, m->metadata[i].key, m->metadata[i].value);
    }
    return in;
}

int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n)
{
    cJSON *doc = cJSON_CreateObject();
    bool audit = o->command == CMD_AUDIT;
    uint64_t ntensors = 0, nbytes = 0, sev[3] = {0, 0, 0};

    cJSON_AddStringToObject(doc, "tool", "dtaudit");
    cJSON_AddStringToObject(doc, "version", PACKAGE_VERSION);
    cJSON_AddNumberToObject(doc, "schema", 1);
    cJSON_AddStringToObject(doc, "command", o->command_name);
    cJSON *inputs = cJSON_AddArrayToObject(doc, "inputs");
    cJSON *tensors = cJSON_AddArrayToObject(doc, "tensors");
    cJSON *roots = cJSON_AddArrayToObject(doc, "roots");
    cJSON *modules = cJSON_AddArrayToObject(doc, "modules");
    cJSON *findings = audit ? cJSON_AddArrayToObject(doc, "findings") : NULL;

    for (size_t i = 0; i < n; i++) {
        const input_result *r = &in[i];
        cJSON_AddItemToArray(inputs, input_json(r));
        if (!r->model)
            continue;
        const dta_model *m = r->model;
        const dta_report *rep = r->report;
        for (size_t k = 0; k < m->ntensors; k++) {
            const dta_tensor *t = &m->tensors[k];
            cJSON *tj = cJSON_CreateObject();
            cJSON_AddStringToObject(tj, "name", t->name);
            cJSON_AddStringToObject(tj, "dtype", dta_dtype_name(t->dtype));
            cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
            for (int d = 0; d < t->rank; d++)
                cJSON_AddItemToArray(shape, u64(t->shape[d]));
            cJSON_AddItemToObject(tj, "numel", u64(t->numel));
            cJSON_AddItemToObject(tj, "nbytes", u64(t->nbytes));
            cJSON_AddStringToObject(tj, "file", m->files[t->file].path);
            cJSON_AddStringToObject(tj, "root", t->root);
            cJSON_AddStringToObject(tj, "input", r->path);
            cJSON_AddBoolToObject(tj, "shared", t->shared);
            if (t->meta)
                cJSON_AddBoolToObject(tj, "meta", true);
            cJSON_AddItemToArray(tensors, tj);
        }
        ntensors += rep->total.tensors;
        nbytes += rep->total.nbytes;
        for (size_t k = 0; k < rep->nroots; k++) {
            const dta_root_summary *rs = &rep->roots[k];
            cJSON *rj = cJSON_CreateObject();
            cJSON_AddStringToObject(rj, "input", r->path);
            cJSON_AddStringToObject(rj, "name", rs->name);
            cJSON_AddItemToObject(rj, "dominant", dtype_or_null(rs->dominant));
            cJSON_AddBoolToObject(rj, "analysed", rs->analysed);
            add_counts(rj, &rs->total);
            cJSON_AddItemToObject(rj, "dtypes", dtype_map(rs->by_dtype));
            cJSON_AddItemToArray(roots, rj);
        }
        for (size_t k = 0; k < rep->nmodules; k++) {
            const dta_module *md = &rep->modules[k];
            cJSON *mj = cJSON_CreateObject();
            cJSON_AddStringToObject(mj, "input", r->path);
            cJSON_AddStringToObject(mj, "root", md->root);
            cJSON_AddStringToObject(mj, "name", md->name);
            add_counts(mj, &md->total);
            cJSON_AddItemToObject(mj, "dtypes", dtype_map(md->by_dtype));
            cJSON_AddItemToArray(modules, mj);
        }
        for (size_t k = 0; findings && k < rep->nfindings; k++) {
            const dta_finding *f = &rep->findings[k];
            cJSON *fj = cJSON_CreateObject();
            cJSON_AddStringToObject(fj, "rule", f->rule);
            cJSON_AddStringToObject(fj, "severity", dta_severity_name(f->severity));
            cJSON_AddStringToObject(fj, "input", r->path);
            cJSON_AddStringToObject(fj, "root", f->root);
            cJSON_AddStringToObject(fj, "module", f->module);
            cJSON_AddItemToObject(fj, "dtype", dtype_or_null(f->dtype));
            cJSON_AddItemToObject(fj, "expected", dtype_or_null(f->expected));
            cJSON *tl = cJSON_AddArrayToObject(fj, "tensors");
            for (size_t j = 0; j < f->ntensors; j++)
                cJSON_AddItemToArray(tl, cJSON_CreateString(f->tensors[j]));
            cJSON_AddStringToObject(fj, "message", f->message);
            cJSON_AddItemToArray(findings, fj);
            if (f->severity <= DTA_SEV_ERROR)
                sev[f->severity]++;
        }
    }
    cJSON *sum = cJSON_AddObjectToObject(doc, "summary");
    cJSON_AddItemToObject(sum, "inputs", u64(n));
    cJSON_AddItemToObject(sum, "tensors", u64(ntensors));
    cJSON_AddItemToObject(sum, "nbytes", u64(nbytes));
    if (audit) {
        cJSON *fs = cJSON_AddObjectToObject(sum, "findings");
        cJSON_AddItemToObject(fs, "error", u64(sev[DTA_SEV_ERROR]));
        cJSON_AddItemToObject(fs, "warning", u64(sev[DTA_SEV_WARNING]));
        cJSON_AddItemToObject(fs, "info", u64(sev[DTA_SEV_INFO]));
    }
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text) {
        fputs("dtaudit: out of memory building JSON output\n", stderr);
        return 2;
    }
    fputs(text, out);
    fputc('\n', out);
    free(text);
    return 0;
}
