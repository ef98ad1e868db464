/* JSON output of scan and audit, schema 1 (docs/design.md), through the one writer
 * (jsonw.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "fix.h"
#include "jsonw.h"
#include "report.h"

static void counts(jw *w, const dta_count *c)
{
    jw_kv_u64(w, "tensors", c->tensors);
    jw_kv_u64(w, "numel", c->numel);
    jw_kv_u64(w, "nbytes", c->nbytes);
}

static void dtype_entry(jw *w, dta_dtype t, const dta_count *c)
{
    jw_key(w, dta_dtype_name(t));
    jw_obj(w);
    counts(w, c);
    jw_obj_end(w);
}

static void num(jw *w, double v)
{
    char tmp[40];
    if (!isfinite(v)) {
        jw_raw(w, "null"); /* JSON has no inf or nan */
        return;
    }
    if (v == (double)(int64_t)v && v > -1e15 && v < 1e15)
        snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    else
        snprintf(tmp, sizeof tmp, "%.17g", v);
    jw_raw(w, tmp);
}

static void adapter_json(jw *w, const input_result *r, const cli_options *o)
{
    const dta_adapter *a = r->model->adapter;
    jw_key(w, "adapter");
    jw_obj(w);
    jw_kv_str(w, "peft_type", a->peft_type);
    jw_key(w, "base_model");
    if (a->base_model)
        jw_str(w, a->base_model);
    else
        jw_raw(w, "null");
    if (a->task_type)
        jw_kv_str(w, "task_type", a->task_type);
    if (a->r >= 0)
        jw_kv_u64(w, "r", (uint64_t)a->r);
    if (a->lora_alpha >= 0) {
        jw_key(w, "lora_alpha");
        num(w, a->lora_alpha);
    }
    if (a->target_regex)
        jw_kv_str(w, "target_modules", a->target_regex);
    else if (a->target_modules) {
        jw_key(w, "target_modules");
        jw_raw(w, "[");
        for (size_t i = 0; i < a->ntarget_modules; i++) {
            if (i)
                jw_raw(w, ", ");
            jw_str(w, a->target_modules[i]);
        }
        jw_raw(w, "]");
    }
    if (o && o->base) {
        jw_key(w, "base");
        jw_obj(w);
        jw_kv_str(w, "path", o->base);
        jw_kv_dtype(w, "dtype", o->base_dtype);
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

/* inputs[].quantization: the scheme, where it was recognised, its block or group size,
 * the logical parameters and the unquantized floating tensors. */
static void quantization_json(jw *w, const dta_model *m, const dta_quant *q)
{
    jw_key(w, "quantization");
    jw_obj(w);
    jw_kv_str(w, "scheme", dta_quant_scheme_name(q->scheme));
    jw_key(w, "method");
    if (q->method)
        jw_str(w, q->method);
    else
        jw_raw(w, "null");
    jw_kv_str(w, "source", q->source ? q->source : "tensors");
    if (q->detail)
        jw_kv_str(w, "detail", q->detail);
    if (q->block[0] && q->block[1]) {
        jw_key(w, "block");
        jw_raw(w, "[");
        jw_u64(w, q->block[0]);
        jw_raw(w, ", ");
        jw_u64(w, q->block[1]);
        jw_raw(w, "]");
    } else if (q->group)
        jw_kv_u64(w, "group", q->group);
    if (q->bits)
        jw_kv_u64(w, "bits", q->bits);
    jw_key(w, "ignore");
    jw_arr(w);
    for (size_t i = 0; i < q->nignore; i++) {
        jw_item(w, false);
        jw_str(w, q->ignore[i]);
    }
    jw_arr_end(w);
    jw_key(w, "parameters");
    jw_arr(w);
    for (size_t i = 0; i < q->nparams; i++) {
        const dta_quant_param *p = &q->params[i];
        char label[128];
        jw_item(w, true);
        jw_obj(w);
        jw_kv_str(w, "name", p->name);
        jw_kv_str(w, "module", p->module);
        jw_kv_str(w, "scheme", dta_quant_scheme_name(p->scheme));
        dta_quant_param_label(q, p, label, sizeof label);
        jw_kv_str(w, "label", label);
        jw_kv_str(w, "format", p->format ? p->format : "?");
        jw_kv_dtype(w, "storage", p->storage);
        jw_key(w, "shape");
        if (p->rank > 0) {
            jw_dims(w, p->shape, p->rank);
        } else
            jw_raw(w, "null");
        jw_kv_u64(w, "numel", p->numel);
        jw_kv_dtype(w, "dtype", p->dequant);
        jw_key(w, "tensors");
        jw_obj(w);
        for (size_t k = 0; k < p->ntensors; k++) {
            const dta_tensor *t = &m->tensors[p->tensors[k]];
            jw_key(w, t->name);
            jw_obj(w);
            jw_kv_str(w, "role", dta_quant_role_name(dta_quant_tensor_role(q, p->tensors[k])));
            jw_kv_str(w, "dtype", dta_dtype_name(t->dtype));
            jw_obj_end(w);
        }
        jw_obj_end(w);
        if (p->cast)
            jw_kv_bool(w, "cast", true);
        if (p->broken)
            jw_kv_bool(w, "incomplete", true);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_key(w, "unquantized");
    jw_arr(w);
    for (size_t i = 0; i < m->ntensors; i++)
        if (!dta_quant_tensor_is_quantized(q, i) && dta_dtype_is_float(m->tensors[i].dtype)) {
            jw_item(w, true);
            jw_str(w, m->tensors[i].name);
        }
    jw_arr_end(w);
    jw_obj_end(w);
}

static void input_json(jw *w, const input_result *r, const cli_options *o)
{
    jw_item(w, true);
    jw_obj(w);
    jw_kv_str(w, "path", r->path);
    if (!r->model) {
        jw_key(w, "format");
        jw_raw(w, "null");
        jw_kv_str(w, "error", r->err.msg);
        jw_obj_end(w);
        return;
    }
    const dta_model *m = r->model;
    jw_kv_str(w, "format", m->format);
    jw_key(w, "files");
    jw_arr(w);
    for (size_t i = 0; i < m->nfiles; i++) {
        jw_item(w, true);
        jw_str(w, m->files[i].path);
    }
    jw_arr_end(w);
    jw_kv_dtype(w, "config_dtype", m->config_dtype);
    if (m->adapter)
        adapter_json(w, r, o);
    if (m->nmetadata) {
        jw_key(w, "metadata");
        jw_obj(w);
        for (size_t i = 0; i < m->nmetadata; i++)
            jw_kv_str(w, m->metadata[i].key, m->metadata[i].value);
        jw_obj_end(w);
    }
    if (r->report && r->report->quant && r->report->quant->scheme != DTA_QS_NONE)
        quantization_json(w, r->model, r->report->quant);
    jw_obj_end(w);
}

/* audit --values: "values": {...} of a tensor or a finding (counts as in values.h). */
static void values_json(jw *w, const dta_values_tensor *v)
{
    jw_key(w, "values");
    jw_obj(w);
    if (v->skipped) {
        jw_kv_str(w, "skipped", v->skipped);
        jw_obj_end(w);
        return;
    }
    jw_kv_dtype(w, "target", v->target);
    if (v->dequantized) /* a quantized parameter: the counts are of its dequantized values */
        jw_kv_str(w, "dequantized", v->dequantized);
    jw_kv_u64(w, "elements", v->elements);
    jw_kv_u64(w, "nan", v->nan);
    jw_kv_u64(w, "pos_inf", v->pos_inf);
    jw_kv_u64(w, "neg_inf", v->neg_inf);
    jw_kv_u64(w, "zero", v->zero);
    jw_kv_u64(w, "overflow", v->overflow);
    jw_kv_u64(w, "underflow", v->underflow);
    jw_kv_u64(w, "subnormal", v->subnormal);
    jw_key(w, "max_abs");
    jw_num(w, v->max_abs);
    jw_key(w, "min_nonzero_abs");
    jw_num(w, v->min_nonzero_abs);
    jw_obj_end(w);
}

static void tensor_json(jw *w, const input_result *r, const dta_tensor *t)
{
    jw_item(w, true);
    jw_obj(w);
    jw_kv_str(w, "name", t->name);
    jw_kv_str(w, "dtype", dta_dtype_name(t->dtype));
    jw_key(w, "shape");
    jw_shape(w, t);
    jw_kv_u64(w, "numel", t->numel);
    jw_kv_u64(w, "nbytes", t->nbytes);
    jw_kv_str(w, "file", r->model->files[t->file].path);
    jw_kv_str(w, "root", t->root);
    jw_kv_str(w, "input", r->path);
    jw_kv_bool(w, "shared", t->shared);
    if (t->meta)
        jw_kv_bool(w, "meta", true);
    if (r->values)
        values_json(w, &r->values->tensors[t - r->model->tensors]);
    const dta_quant *q = r->report ? r->report->quant : NULL;
    size_t ti = (size_t)(t - r->model->tensors);
    if (dta_quant_tensor_is_quantized(q, ti)) {
        const dta_quant_param *p = dta_quant_tensor_param(q, ti);
        jw_key(w, "quant");
        jw_obj(w);
        jw_kv_str(w, "scheme", dta_quant_scheme_name(p ? p->scheme : q->scheme));
        jw_kv_str(w, "role", dta_quant_role_name(dta_quant_tensor_role(q, ti)));
        jw_key(w, "parameter");
        if (p)
            jw_str(w, p->name);
        else
            jw_raw(w, "null");
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

static void finding_json(jw *w, const cli_options *o, const input_result *r, const dta_finding *f)
{
    jw_item(w, true);
    jw_obj(w);
    jw_kv_str(w, "rule", f->rule);
    jw_kv_str(w, "severity", dta_severity_name(f->severity));
    jw_kv_str(w, "input", r->path);
    jw_kv_str(w, "root", f->root);
    jw_kv_str(w, "module", f->module);
    jw_kv_dtype(w, "dtype", f->dtype);
    jw_kv_dtype(w, "expected", f->expected);
    jw_key(w, "tensors");
    jw_arr(w);
    for (size_t j = 0; j < f->ntensors; j++) {
        jw_item(w, true);
        jw_str(w, f->tensors[j]);
    }
    jw_arr_end(w);
    jw_kv_str(w, "message", f->message);
    if (f->values)
        values_json(w, f->values);
    if (f->intended) {
        /* which intended-precision rule matched (intended.h) */
        jw_key(w, "intended");
        jw_obj(w);
        jw_kv_str(w, "id", f->intended->id);
        jw_kv_str(w, "origin", f->intended->origin);
        jw_kv_str(w, "kind", f->intended->kind);
        jw_kv_str(w, "why", f->intended->why);
        jw_kv_str(w, "evidence", f->intended->evidence);
        jw_obj_end(w);
    }
    /* the command that removes it (fix.h; the text output prints the same), or null */
    char glob[4096];
    cli_fix fx;
    cli_fix_glob(f, glob, sizeof glob);
    jw_key(w, "fix");
    if (cli_fix_build(o, r, f, glob, &fx)) {
        jw_obj(w);
        jw_key(w, "argv");
        jw_raw(w, "[");
        for (size_t j = 0; j < fx.argc; j++) {
            if (j)
                jw_raw(w, ", ");
            jw_str(w, fx.argv[j]);
        }
        jw_raw(w, "]");
        jw_kv_str(w, "description", fx.description);
        jw_obj_end(w);
    } else {
        jw_raw(w, "null");
    }
    jw_obj_end(w);
}

int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n)
{
    jw *w = jw_new(out);
    if (!w)
        return 2;
    bool audit = o->command == CMD_AUDIT;
    uint64_t ntensors = 0, nbytes = 0, sev[3] = {0, 0, 0};

    jw_doc(w, o->command_name);

    jw_key(w, "inputs");
    jw_arr(w);
    for (size_t i = 0; i < n; i++)
        input_json(w, &in[i], o);
    jw_arr_end(w);

    jw_key(w, "tensors");
    jw_arr(w);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; in[i].model && k < in[i].model->ntensors; k++)
            tensor_json(w, &in[i], &in[i].model->tensors[k]);
    jw_arr_end(w);

    jw_key(w, "roots");
    jw_arr(w);
    for (size_t i = 0; i < n; i++) {
        if (!in[i].model)
            continue;
        const dta_report *rep = in[i].report;
        ntensors += rep->total.tensors;
        nbytes += rep->total.nbytes;
        for (size_t k = 0; k < rep->nroots; k++) {
            const dta_root_summary *rs = &rep->roots[k];
            jw_item(w, true);
            jw_obj(w);
            jw_kv_str(w, "input", in[i].path);
            jw_kv_str(w, "name", rs->name);
            jw_kv_dtype(w, "dominant", rs->dominant);
            jw_kv_bool(w, "analysed", rs->analysed);
            counts(w, &rs->total);
            jw_key(w, "dtypes");
            jw_obj(w);
            for (int t = 0; t < DTA_DTYPE_COUNT; t++)
                if (rs->by_dtype[t].tensors)
                    dtype_entry(w, (dta_dtype)t, &rs->by_dtype[t]);
            jw_obj_end(w);
            jw_obj_end(w);
        }
    }
    jw_arr_end(w);

    jw_key(w, "modules");
    jw_arr(w);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; in[i].model && k < in[i].report->nmodules; k++) {
            const dta_module *md = &in[i].report->modules[k];
            jw_item(w, true);
            jw_obj(w);
            jw_kv_str(w, "input", in[i].path);
            jw_kv_str(w, "root", md->root);
            jw_kv_str(w, "name", md->name);
            counts(w, &md->total);
            jw_key(w, "dtypes");
            jw_obj(w);
            for (size_t j = 0; j < md->ndtypes; j++)
                dtype_entry(w, md->dtypes[j].dtype, &md->dtypes[j].count);
            jw_obj_end(w);
            jw_obj_end(w);
        }
    }
    jw_arr_end(w);

    if (audit) {
        jw_key(w, "findings");
        jw_arr(w);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; in[i].model && k < in[i].report->nfindings; k++) {
                const dta_finding *f = &in[i].report->findings[k];
                finding_json(w, o, &in[i], f);
                if (f->severity <= DTA_SEV_ERROR)
                    sev[f->severity]++;
            }
        jw_arr_end(w);
    }

    jw_key(w, "summary");
    jw_obj(w);
    jw_kv_u64(w, "inputs", n);
    jw_kv_u64(w, "tensors", ntensors);
    jw_kv_u64(w, "nbytes", nbytes);
    if (audit) {
        json_findings_count(w, sev);
    }
    jw_obj_end(w);
    jw_obj_end(w);
    return jw_end(w);
}

void json_findings_count(jw *w, const uint64_t sev[3])
{
    jw_key(w, "findings");
    jw_obj(w);
    jw_kv_u64(w, "error", sev[DTA_SEV_ERROR]);
    jw_kv_u64(w, "warning", sev[DTA_SEV_WARNING]);
    jw_kv_u64(w, "info", sev[DTA_SEV_INFO]);
    jw_obj_end(w);
}

/* One element of "inputs", for the diff's document too. */
void json_input(jw *w, const input_result *r, const cli_options *o) { input_json(w, r, o); }
