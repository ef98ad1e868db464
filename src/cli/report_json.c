/* JSON output, schema 1 (docs/design.md), written as a stream: no document tree in memory,
 * integers exact to 64 bits, strings escaped so that hostile names (control bytes,
 * invalid UTF-8) still give valid JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "dtaudit/version.h"
#include "fix.h"
#include "report.h"
#include "text_safe.h"

struct jw {
    FILE *out;
    int depth;
    bool first;  /* no member written yet at this level */
    size_t len;  /* bytes pending in buf: one fwrite per 64 KiB, not one per token */
    char buf[1 << 16];
};

static void flush(jw *w)
{
    fwrite(w->buf, 1, w->len, w->out);
    w->len = 0;
}

static void put(jw *w, const void *p, size_t n)
{
    if (n > sizeof w->buf - w->len) {
        flush(w);
        if (n > sizeof w->buf) {
            fwrite(p, 1, n, w->out);
            return;
        }
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void puts_(jw *w, const char *s) { put(w, s, strlen(s)); }

static void ch(jw *w, char c) { put(w, &c, 1); }

static void u64(jw *w, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put(w, tmp + sizeof tmp - n, n);
}

static void indent(jw *w)
{
    static const char spaces[] = "\n                                                                ";
    int n = 2 * w->depth;
    put(w, spaces, 1);
    while (n > 0) {
        int k = n < 64 ? n : 64;
        put(w, spaces + 1, (size_t)k);
        n -= k;
    }
}

static void str(jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    ch(w, '"');
    for (;;) {
        /* plain printable ASCII is written in runs */
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            put(w, run, (size_t)(p - run));
        if (!*p)
            break;
        uint32_t cp;
        size_t n = dtap_utf8_decode(p, &cp);
        if (n == 0) {
            puts_(w, "\\ufffd"); /* invalid byte: replacement character */
            p++;
        } else if (*p == '"' || *p == '\\') {
            ch(w, '\\');
            ch(w, (char)*p++);
        } else if (dtap_cp_unsafe(cp)) {
            /* controls, C1, bidi and zero-width characters as \uNNNN: the document stays
             * the same data, and printing it (jq, cat) cannot drive a terminal */
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            puts_(w, esc);
            p += n;
        } else {
            put(w, p, n);
            p += n;
        }
        run = p;
    }
    ch(w, '"');
}

static void key(jw *w, const char *k)
{
    if (!w->first)
        ch(w, ',');
    w->first = false;
    indent(w);
    str(w, k);
    puts_(w, ": ");
}

static void open_(jw *w, char c)
{
    ch(w, c);
    w->depth++;
    w->first = true;
}

static void close_(jw *w, char c)
{
    w->depth--;
    if (!w->first)
        indent(w);
    ch(w, c);
    w->first = false;
}

/* Array element separator (elements written inline when short). */
static void item(jw *w, bool newline)
{
    if (!w->first)
        puts_(w, newline ? "," : ", ");
    if (newline)
        indent(w);
    w->first = false;
}

static void kv_str(jw *w, const char *k, const char *v)
{
    key(w, k);
    str(w, v);
}

static void kv_u64(jw *w, const char *k, uint64_t v)
{
    key(w, k);
    u64(w, v);
}

static void kv_bool(jw *w, const char *k, bool v)
{
    key(w, k);
    puts_(w, v ? "true" : "false");
}

static void kv_dtype(jw *w, const char *k, dta_dtype t)
{
    key(w, k);
    if (t == DTA_DTYPE_NONE)
        puts_(w, "null");
    else
        str(w, dta_dtype_name(t));
}

static void counts(jw *w, const dta_count *c)
{
    kv_u64(w, "tensors", c->tensors);
    kv_u64(w, "numel", c->numel);
    kv_u64(w, "nbytes", c->nbytes);
}

static void dtype_entry(jw *w, dta_dtype t, const dta_count *c)
{
    key(w, dta_dtype_name(t));
    open_(w, '{');
    counts(w, c);
    close_(w, '}');
}

static void num(jw *w, double v)
{
    char tmp[40];
    if (!isfinite(v)) {
        puts_(w, "null"); /* JSON has no inf or nan */
        return;
    }
    if (v == (double)(int64_t)v && v > -1e15 && v < 1e15)
        snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    else
        snprintf(tmp, sizeof tmp, "%.17g", v);
    puts_(w, tmp);
}

static void adapter_json(jw *w, const input_result *r, const cli_options *o)
{
    const dta_adapter *a = r->model->adapter;
    key(w, "adapter");
    open_(w, '{');
    kv_str(w, "peft_type", a->peft_type);
    key(w, "base_model");
    if (a->base_model)
        str(w, a->base_model);
    else
        puts_(w, "null");
    if (a->task_type)
        kv_str(w, "task_type", a->task_type);
    if (a->r >= 0)
        kv_u64(w, "r", (uint64_t)a->r);
    if (a->lora_alpha >= 0) {
        key(w, "lora_alpha");
        num(w, a->lora_alpha);
    }
    if (a->target_regex)
        kv_str(w, "target_modules", a->target_regex);
    else if (a->target_modules) {
        key(w, "target_modules");
        ch(w, '[');
        for (size_t i = 0; i < a->ntarget_modules; i++) {
            if (i)
                puts_(w, ", ");
            str(w, a->target_modules[i]);
        }
        ch(w, ']');
    }
    if (o && o->base) {
        key(w, "base");
        open_(w, '{');
        kv_str(w, "path", o->base);
        kv_dtype(w, "dtype", o->base_dtype);
        close_(w, '}');
    }
    close_(w, '}');
}

/* inputs[].quantization: the scheme, where it was recognised, its block or group size,
 * the logical parameters and the unquantized floating tensors. */
static void quantization_json(jw *w, const dta_model *m, const dta_quant *q)
{
    key(w, "quantization");
    open_(w, '{');
    kv_str(w, "scheme", dta_quant_scheme_name(q->scheme));
    key(w, "method");
    if (q->method)
        str(w, q->method);
    else
        puts_(w, "null");
    kv_str(w, "source", q->source ? q->source : "tensors");
    if (q->detail)
        kv_str(w, "detail", q->detail);
    if (q->block[0] && q->block[1]) {
        key(w, "block");
        ch(w, '[');
        u64(w, q->block[0]);
        puts_(w, ", ");
        u64(w, q->block[1]);
        ch(w, ']');
    } else if (q->group)
        kv_u64(w, "group", q->group);
    if (q->bits)
        kv_u64(w, "bits", q->bits);
    key(w, "ignore");
    open_(w, '[');
    for (size_t i = 0; i < q->nignore; i++) {
        item(w, false);
        str(w, q->ignore[i]);
    }
    close_(w, ']');
    key(w, "parameters");
    open_(w, '[');
    for (size_t i = 0; i < q->nparams; i++) {
        const dta_quant_param *p = &q->params[i];
        char label[128];
        item(w, true);
        open_(w, '{');
        kv_str(w, "name", p->name);
        kv_str(w, "module", p->module);
        kv_str(w, "scheme", dta_quant_scheme_name(p->scheme));
        dta_quant_param_label(q, p, label, sizeof label);
        kv_str(w, "label", label);
        kv_str(w, "format", p->format ? p->format : "?");
        kv_dtype(w, "storage", p->storage);
        key(w, "shape");
        if (p->rank > 0) {
            ch(w, '[');
            for (int d = 0; d < p->rank; d++) {
                if (d)
                    puts_(w, ", ");
                u64(w, p->shape[d]);
            }
            ch(w, ']');
        } else
            puts_(w, "null");
        kv_u64(w, "numel", p->numel);
        kv_dtype(w, "dtype", p->dequant);
        key(w, "tensors");
        open_(w, '{');
        for (size_t k = 0; k < p->ntensors; k++) {
            const dta_tensor *t = &m->tensors[p->tensors[k]];
            key(w, t->name);
            open_(w, '{');
            kv_str(w, "role", dta_quant_role_name(dta_quant_tensor_role(q, p->tensors[k])));
            kv_str(w, "dtype", dta_dtype_name(t->dtype));
            close_(w, '}');
        }
        close_(w, '}');
        if (p->cast)
            kv_bool(w, "cast", true);
        if (p->broken)
            kv_bool(w, "incomplete", true);
        close_(w, '}');
    }
    close_(w, ']');
    key(w, "unquantized");
    open_(w, '[');
    for (size_t i = 0; i < m->ntensors; i++)
        if (!dta_quant_tensor_is_quantized(q, i) && dta_dtype_is_float(m->tensors[i].dtype)) {
            item(w, true);
            str(w, m->tensors[i].name);
        }
    close_(w, ']');
    close_(w, '}');
}

static void input_json(jw *w, const input_result *r, const cli_options *o)
{
    item(w, true);
    open_(w, '{');
    kv_str(w, "path", r->path);
    if (!r->model) {
        key(w, "format");
        puts_(w, "null");
        kv_str(w, "error", r->err.msg);
        close_(w, '}');
        return;
    }
    const dta_model *m = r->model;
    kv_str(w, "format", m->format);
    key(w, "files");
    open_(w, '[');
    for (size_t i = 0; i < m->nfiles; i++) {
        item(w, true);
        str(w, m->files[i].path);
    }
    close_(w, ']');
    kv_dtype(w, "config_dtype", m->config_dtype);
    if (m->adapter)
        adapter_json(w, r, o);
    if (m->nmetadata) {
        key(w, "metadata");
        open_(w, '{');
        for (size_t i = 0; i < m->nmetadata; i++)
            kv_str(w, m->metadata[i].key, m->metadata[i].value);
        close_(w, '}');
    }
    if (r->report && r->report->quant && r->report->quant->scheme != DTA_QS_NONE)
        quantization_json(w, r->model, r->report->quant);
    close_(w, '}');
}

/* The shortest %g form that reads back as v; null when v is not finite (JSON has no inf
 * or nan). */
static void dnum(jw *w, double v)
{
    char tmp[40];
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    puts_(w, tmp);
}

/* audit --values: "values": {...} of a tensor or a finding (counts as in values.h). */
static void values_json(jw *w, const dta_values_tensor *v)
{
    key(w, "values");
    open_(w, '{');
    if (v->skipped) {
        kv_str(w, "skipped", v->skipped);
        close_(w, '}');
        return;
    }
    kv_dtype(w, "target", v->target);
    if (v->dequantized) /* a quantized parameter: the counts are of its dequantized values */
        kv_str(w, "dequantized", v->dequantized);
    kv_u64(w, "elements", v->elements);
    kv_u64(w, "nan", v->nan);
    kv_u64(w, "pos_inf", v->pos_inf);
    kv_u64(w, "neg_inf", v->neg_inf);
    kv_u64(w, "zero", v->zero);
    kv_u64(w, "overflow", v->overflow);
    kv_u64(w, "underflow", v->underflow);
    kv_u64(w, "subnormal", v->subnormal);
    key(w, "max_abs");
    dnum(w, v->max_abs);
    key(w, "min_nonzero_abs");
    dnum(w, v->min_nonzero_abs);
    close_(w, '}');
}

static void tensor_json(jw *w, const input_result *r, const dta_tensor *t)
{
    item(w, true);
    open_(w, '{');
    kv_str(w, "name", t->name);
    kv_str(w, "dtype", dta_dtype_name(t->dtype));
    key(w, "shape");
    ch(w, '[');
    for (int d = 0; d < t->rank; d++) {
        if (d)
            puts_(w, ", ");
        u64(w, t->shape[d]);
    }
    ch(w, ']');
    kv_u64(w, "numel", t->numel);
    kv_u64(w, "nbytes", t->nbytes);
    kv_str(w, "file", r->model->files[t->file].path);
    kv_str(w, "root", t->root);
    kv_str(w, "input", r->path);
    kv_bool(w, "shared", t->shared);
    if (t->meta)
        kv_bool(w, "meta", true);
    if (r->values)
        values_json(w, &r->values->tensors[t - r->model->tensors]);
    const dta_quant *q = r->report ? r->report->quant : NULL;
    size_t ti = (size_t)(t - r->model->tensors);
    if (dta_quant_tensor_is_quantized(q, ti)) {
        const dta_quant_param *p = dta_quant_tensor_param(q, ti);
        key(w, "quant");
        open_(w, '{');
        kv_str(w, "scheme", dta_quant_scheme_name(p ? p->scheme : q->scheme));
        kv_str(w, "role", dta_quant_role_name(dta_quant_tensor_role(q, ti)));
        key(w, "parameter");
        if (p)
            str(w, p->name);
        else
            puts_(w, "null");
        close_(w, '}');
    }
    close_(w, '}');
}

static void finding_json(jw *w, const cli_options *o, const input_result *r, const dta_finding *f)
{
    item(w, true);
    open_(w, '{');
    kv_str(w, "rule", f->rule);
    kv_str(w, "severity", dta_severity_name(f->severity));
    kv_str(w, "input", r->path);
    kv_str(w, "root", f->root);
    kv_str(w, "module", f->module);
    kv_dtype(w, "dtype", f->dtype);
    kv_dtype(w, "expected", f->expected);
    key(w, "tensors");
    open_(w, '[');
    for (size_t j = 0; j < f->ntensors; j++) {
        item(w, true);
        str(w, f->tensors[j]);
    }
    close_(w, ']');
    kv_str(w, "message", f->message);
    if (f->values)
        values_json(w, f->values);
    if (f->intended) {
        /* which intended-precision rule matched (intended.h) */
        key(w, "intended");
        open_(w, '{');
        kv_str(w, "id", f->intended->id);
        kv_str(w, "origin", f->intended->origin);
        kv_str(w, "kind", f->intended->kind);
        kv_str(w, "why", f->intended->why);
        kv_str(w, "evidence", f->intended->evidence);
        close_(w, '}');
    }
    /* the command that removes it (fix.h; the text output prints the same), or null */
    char glob[4096];
    cli_fix fx;
    cli_fix_glob(f, glob, sizeof glob);
    key(w, "fix");
    if (cli_fix_build(o, r, f, glob, &fx)) {
        open_(w, '{');
        key(w, "argv");
        ch(w, '[');
        for (size_t j = 0; j < fx.argc; j++) {
            if (j)
                puts_(w, ", ");
            str(w, fx.argv[j]);
        }
        ch(w, ']');
        kv_str(w, "description", fx.description);
        close_(w, '}');
    } else {
        puts_(w, "null");
    }
    close_(w, '}');
}

int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n)
{
    jw *wp = malloc(sizeof *wp);
    if (!wp) {
        fputs("dtaudit: out of memory\n", stderr);
        return 2;
    }
    wp->out = out;
    wp->depth = 0;
    wp->first = true;
    wp->len = 0;
    jw *w = wp;
    bool audit = o->command == CMD_AUDIT;
    uint64_t ntensors = 0, nbytes = 0, sev[3] = {0, 0, 0};

    open_(w, '{');
    kv_str(w, "tool", "dtaudit");
    kv_str(w, "version", dta_version());
    kv_u64(w, "schema", 1);
    kv_str(w, "command", o->command_name);

    key(w, "inputs");
    open_(w, '[');
    for (size_t i = 0; i < n; i++)
        input_json(w, &in[i], o);
    close_(w, ']');

    key(w, "tensors");
    open_(w, '[');
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; in[i].model && k < in[i].model->ntensors; k++)
            tensor_json(w, &in[i], &in[i].model->tensors[k]);
    close_(w, ']');

    key(w, "roots");
    open_(w, '[');
    for (size_t i = 0; i < n; i++) {
        if (!in[i].model)
            continue;
        const dta_report *rep = in[i].report;
        ntensors += rep->total.tensors;
        nbytes += rep->total.nbytes;
        for (size_t k = 0; k < rep->nroots; k++) {
            const dta_root_summary *rs = &rep->roots[k];
            item(w, true);
            open_(w, '{');
            kv_str(w, "input", in[i].path);
            kv_str(w, "name", rs->name);
            kv_dtype(w, "dominant", rs->dominant);
            kv_bool(w, "analysed", rs->analysed);
            counts(w, &rs->total);
            key(w, "dtypes");
            open_(w, '{');
            for (int t = 0; t < DTA_DTYPE_COUNT; t++)
                if (rs->by_dtype[t].tensors)
                    dtype_entry(w, (dta_dtype)t, &rs->by_dtype[t]);
            close_(w, '}');
            close_(w, '}');
        }
    }
    close_(w, ']');

    key(w, "modules");
    open_(w, '[');
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; in[i].model && k < in[i].report->nmodules; k++) {
            const dta_module *md = &in[i].report->modules[k];
            item(w, true);
            open_(w, '{');
            kv_str(w, "input", in[i].path);
            kv_str(w, "root", md->root);
            kv_str(w, "name", md->name);
            counts(w, &md->total);
            key(w, "dtypes");
            open_(w, '{');
            for (size_t j = 0; j < md->ndtypes; j++)
                dtype_entry(w, md->dtypes[j].dtype, &md->dtypes[j].count);
            close_(w, '}');
            close_(w, '}');
        }
    }
    close_(w, ']');

    if (audit) {
        key(w, "findings");
        open_(w, '[');
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; in[i].model && k < in[i].report->nfindings; k++) {
                const dta_finding *f = &in[i].report->findings[k];
                finding_json(w, o, &in[i], f);
                if (f->severity <= DTA_SEV_ERROR)
                    sev[f->severity]++;
            }
        close_(w, ']');
    }

    key(w, "summary");
    open_(w, '{');
    kv_u64(w, "inputs", n);
    kv_u64(w, "tensors", ntensors);
    kv_u64(w, "nbytes", nbytes);
    if (audit) {
        key(w, "findings");
        open_(w, '{');
        kv_u64(w, "error", sev[DTA_SEV_ERROR]);
        kv_u64(w, "warning", sev[DTA_SEV_WARNING]);
        kv_u64(w, "info", sev[DTA_SEV_INFO]);
        close_(w, '}');
    }
    close_(w, '}');
    close_(w, '}');
    ch(w, '\n');
    flush(w);
    free(wp);
    return ferror(out) ? 2 : 0;
}

/* ---- the writer, shared with report_sarif.c and cmd_diff.c --------------------------- */

jw *jw_new(FILE *out)
{
    jw *w = malloc(sizeof *w);
    if (!w) {
        fputs("dtaudit: out of memory\n", stderr);
        return NULL;
    }
    w->out = out;
    w->depth = 0;
    w->first = true;
    w->len = 0;
    return w;
}

int jw_end(jw *w)
{
    ch(w, '\n');
    flush(w);
    FILE *out = w->out;
    free(w);
    return ferror(out) ? 2 : 0;
}

void jw_obj(jw *w) { open_(w, '{'); }
void jw_obj_end(jw *w) { close_(w, '}'); }
void jw_arr(jw *w) { open_(w, '['); }
void jw_arr_end(jw *w) { close_(w, ']'); }
void jw_key(jw *w, const char *k) { key(w, k); }
void jw_item(jw *w, bool newline) { item(w, newline); }
void jw_str(jw *w, const char *s) { str(w, s); }
void jw_u64(jw *w, uint64_t v) { u64(w, v); }
void jw_num(jw *w, double v) { dnum(w, v); }
void jw_kv_num(jw *w, const char *k, double v)
{
    key(w, k);
    dnum(w, v);
}
void jw_kv_null(jw *w, const char *k)
{
    key(w, k);
    puts_(w, "null");
}
void jw_raw(jw *w, const char *s) { puts_(w, s); }
void jw_kv_str(jw *w, const char *k, const char *v) { kv_str(w, k, v); }
void jw_kv_u64(jw *w, const char *k, uint64_t v) { kv_u64(w, k, v); }
void jw_kv_bool(jw *w, const char *k, bool v) { kv_bool(w, k, v); }
void jw_kv_dtype(jw *w, const char *k, dta_dtype t) { kv_dtype(w, k, t); }
void jw_input(jw *w, const input_result *r, const cli_options *o) { input_json(w, r, o); }
void jw_shape(jw *w, const dta_tensor *t)
{
    ch(w, '[');
    for (int d = 0; d < t->rank; d++) {
        if (d)
            puts_(w, ", ");
        u64(w, t->shape[d]);
    }
    ch(w, ']');
}
