/* Text output of scan and audit for people: per input the summary, each root's dtypes and
 * module tree (report_tree.c), the tensors (-v), the findings (report_findings.c). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "report_text.h"

/* One summary row per kind of quantized parameter ("FP8_E4M3 block 128x128 -> BF16"):
 * parameters, their tensors (codes and companions), logical elements, stored bytes. */
typedef struct {
    char label[96];
    uint64_t params;
    dta_count count;
} qrow;

static qrow *quant_rows(const dta_report *rep, size_t root, dta_count *plain, size_t *n)
{
    const dta_model *m = rep->model;
    const dta_quant *q = rep->quant;
    qrow *rows = NULL;
    *n = 0;
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        if (rep->tensor_root[i] != root)
            continue;
        if (!dta_quant_tensor_is_quantized(q, i)) {
            plain[t->dtype].tensors++;
            plain[t->dtype].numel += t->numel;
            plain[t->dtype].nbytes += t->nbytes;
            continue;
        }
        const dta_quant_param *p = dta_quant_tensor_param(q, i);
        char label[96];
        if (p)
            dta_quant_param_label(q, p, label, sizeof label);
        else
            snprintf(label, sizeof label, "%s activation/kv scales", dta_quant_scheme_name(q->scheme));
        size_t k = 0;
        while (k < *n && strcmp(rows[k].label, label) != 0)
            k++;
        if (k == *n) {
            qrow *r = realloc(rows, (*n + 1) * sizeof *r);
            if (!r)
                return rows;
            rows = r;
            memset(&rows[k], 0, sizeof rows[k]);
            snprintf(rows[k].label, sizeof rows[k].label, "%s", label);
            (*n)++;
        }
        rows[k].count.tensors++;
        rows[k].count.nbytes += t->nbytes;
        if (p && p->weight == i) {
            rows[k].params++;
            rows[k].count.numel += p->numel;
        }
    }
    return rows;
}

/* "  quantization fp8-block (config.json: fp8, block 128x128), 183 parameters" */
static void print_quant(tctx *c, const dta_quant *q)
{
    char shown[300], shown2[300], size[64] = "";
    size_t n = 0;
    for (size_t i = 0; i < q->nparams; i++)
        n += q->params[i].weight != SIZE_MAX;
    if (q->block[0] && q->block[1])
        snprintf(size, sizeof size, ", block %ux%u", q->block[0], q->block[1]);
    else if (q->group)
        snprintf(size, sizeof size, ", group %u", q->group);
    fprintf(c->out, "  quantization %s%s%s (%s%s%s%s%s%s), %zu quantized parameter%s\n",
            C(c->pal, BOLD), dta_quant_scheme_name(q->scheme), C(c->pal, RESET),
            q->source ? q->source : "tensors", q->method ? ": " : "",
            q->method ? clean(shown, sizeof shown, q->method) : "", size,
            q->detail ? ", " : "", q->detail ? clean(shown2, sizeof shown2, q->detail) : "", n,
            n == 1 ? "" : "s");
}

static void print_root(tctx *c, const dta_report *rep, const dta_root_summary *rs)
{
    char params[32], bytes[32], shown[600];
    if (rs->name[0])
        fprintf(c->out, "\n  %sroot '%s'%s", C(c->pal, BOLD), clean(shown, sizeof shown, rs->name),
                C(c->pal, RESET));
    else
        fprintf(c->out, "\n  %sroot (flat state dict)%s", C(c->pal, BOLD), C(c->pal, RESET));
    if (!rs->analysed)
        fprintf(c->out, "  optimizer state: listed, not analysed\n");
    else if (rs->dominant != DTA_DTYPE_NONE)
        fprintf(c->out, "  dominant %s%s%s\n", C(c->pal, GREEN), dta_dtype_name(rs->dominant),
                C(c->pal, RESET));
    else
        fprintf(c->out, "  no floating tensors\n");
    fprintf(c->out, "    %-12s %8s %10s %11s %7s\n", "dtype", "tensors", "params", "bytes",
            "share");
    const dta_quant *q = rep->quant;
    const dta_count *by = rs->by_dtype;
    dta_count plain[DTA_DTYPE_COUNT];
    qrow *rows = NULL;
    size_t nrows = 0;
    if (q && q->scheme != DTA_QS_NONE && rep->tensor_root) {
        /* quantized parameters are their own rows; the dtype rows hold the rest */
        size_t ri = (size_t)(rs - rep->roots);
        memset(plain, 0, sizeof plain);
        by = plain;
        rows = quant_rows(rep, ri, plain, &nrows);
    }
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        const dta_count *n = &by[t];
        if (!n->tensors)
            continue;
        fmt_count(params, sizeof params, n->numel);
        fmt_bytes(bytes, sizeof bytes, n->nbytes);
        fprintf(c->out, "    %-12s %8llu %10s %11s %6.1f%%\n", dta_dtype_name((dta_dtype)t),
                (unsigned long long)n->tensors, params, bytes,
                rs->total.numel ? 100.0 * (double)n->numel / (double)rs->total.numel : 0.0);
    }
    for (size_t i = 0; i < nrows; i++) {
        fmt_count(params, sizeof params, rows[i].count.numel);
        fmt_bytes(bytes, sizeof bytes, rows[i].count.nbytes);
        fprintf(c->out, "    %-34s %6llu params %8llu tensors %10s %11s\n", rows[i].label,
                (unsigned long long)rows[i].params, (unsigned long long)rows[i].count.tensors,
                params, bytes);
    }
    free(rows);
}

static void print_tensors(tctx *c, const dta_model *m)
{
    fprintf(c->out, "\n  %stensors%s\n", C(c->pal, BOLD), C(c->pal, RESET));
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        char shape[256];
        fmt_shape(shape, sizeof shape, t);
        char shown[600];
        char role[64] = "";
        if (dta_quant_tensor_is_quantized(c->quant, i)) {
            const dta_quant_param *qp = dta_quant_tensor_param(c->quant, i);
            snprintf(role, sizeof role, "  %s %s", dta_quant_scheme_name(qp ? qp->scheme : c->quant->scheme),
                     dta_quant_role_name(dta_quant_tensor_role(c->quant, i)));
        }
        fprintf(c->out, "    %-60s %-12s %s%s%s%s\n", clean(shown, sizeof shown, t->name),
                dta_dtype_name(t->dtype), shape,
                t->shared ? "  shared" : "", t->meta ? "  meta" : "", role);
    }
}

/* "  PEFT adapter LORA (r 8, alpha 16) over base model 'gpt2', targets q_lin v_lin" */
static void print_adapter(tctx *c, const cli_options *o, const dta_adapter *a)
{
    char shown[600], num[96] = "";
    if (a->r >= 0 && a->lora_alpha >= 0)
        snprintf(num, sizeof num, " (r %lld, alpha %g)", (long long)a->r, a->lora_alpha);
    else if (a->r >= 0)
        snprintf(num, sizeof num, " (r %lld)", (long long)a->r);
    else if (a->lora_alpha >= 0)
        snprintf(num, sizeof num, " (alpha %g)", a->lora_alpha);
    fprintf(c->out, "  PEFT adapter %s%s over base model ", clean(shown, sizeof shown, a->peft_type),
            num);
    if (a->base_model)
        fprintf(c->out, "'%s'", clean(shown, sizeof shown, a->base_model));
    else
        fputs("(not named)", c->out);
    if (a->target_regex)
        fprintf(c->out, ", targets /%s/", clean(shown, sizeof shown, a->target_regex));
    else if (a->ntarget_modules) {
        fputs(", targets", c->out);
        for (size_t i = 0; i < a->ntarget_modules && i < 16; i++)
            fprintf(c->out, " %s", clean(shown, sizeof shown, a->target_modules[i]));
        if (a->ntarget_modules > 16)
            fprintf(c->out, " (+%zu)", a->ntarget_modules - 16);
    }
    fputc('\n', c->out);
    if (o->base)
        fprintf(c->out, "  base model (--base) %s: %s\n", clean(shown, sizeof shown, o->base),
                o->base_dtype != DTA_DTYPE_NONE ? dta_dtype_name(o->base_dtype) : "dtype unknown");
}

void report_text(FILE *out, const cli_options *o, const input_result *in, size_t n, bool color)
{
    palette pal = {color};
    tctx c = {out, &pal, o->verbosity, NULL, o, NULL};
    bool audit = o->command == CMD_AUDIT;
    uint64_t tensors = 0, params = 0, bytes = 0, sev[3] = {0, 0, 0};
    size_t ok = 0;

    for (size_t i = 0; i < n; i++) {
        const input_result *r = &in[i];
        if (!r->model)
            continue;
        const dta_model *m = r->model;
        const dta_report *rep = r->report;
        char p[32], b[32], shown[1200], shown2[1200];
        ok++;
        tensors += rep->total.tensors;
        params += rep->total.numel;
        bytes += rep->total.nbytes;
        for (size_t k = 0; k < rep->nfindings; k++)
            if (rep->findings[k].severity <= DTA_SEV_ERROR)
                sev[rep->findings[k].severity]++;
        if (o->verbosity < 0) {
            if (audit && rep->nfindings) {
                fprintf(out, "%s%s%s\n", C(&pal, BOLD), clean(shown, sizeof shown, r->path),
                        C(&pal, RESET));
                text_findings(&c, r);
            }
            continue;
        }
        fmt_count(p, sizeof p, rep->total.numel);
        fmt_bytes(b, sizeof b, rep->total.nbytes);
        fprintf(out, "%s%s%s%s\n", ok > 1 ? "\n" : "", C(&pal, BOLD),
                clean(shown, sizeof shown, r->path), C(&pal, RESET));
        fprintf(out, "  %s, %zu file%s, %llu tensors, %s params, %s\n", m->format, m->nfiles,
                m->nfiles == 1 ? "" : "s", (unsigned long long)rep->total.tensors, p, b);
        if (m->config_dtype != DTA_DTYPE_NONE)
            fprintf(out, "  config.json dtype %s\n", dta_dtype_name(m->config_dtype));
        if (m->adapter)
            print_adapter(&c, o, m->adapter);
        for (size_t k = 0; k < m->nmetadata && o->verbosity > 0; k++)
            fprintf(out, "  metadata %s = %s\n", clean(shown, sizeof shown, m->metadata[k].key),
                    clean(shown2, sizeof shown2, m->metadata[k].value));
        size_t cursor = 0;
        c.quant = rep->quant;
        if (rep->quant && rep->quant->scheme != DTA_QS_NONE)
            print_quant(&c, rep->quant);
        for (size_t k = 0; k < rep->nroots; k++) {
            print_root(&c, rep, &rep->roots[k]);
            text_tree(&c, rep, &rep->roots[k], &cursor);
        }
        if (o->verbosity > 0)
            print_tensors(&c, m);
        if (audit)
            text_findings(&c, r);
    }
    if (n > 1 && o->verbosity >= 0) {
        char p[32], b[32];
        fmt_count(p, sizeof p, params);
        fmt_bytes(b, sizeof b, bytes);
        fprintf(out, "\n%stotal%s: %zu input%s read of %zu, %llu tensors, %s params, %s\n",
                C(&pal, BOLD), C(&pal, RESET), ok, ok == 1 ? "" : "s", n,
                (unsigned long long)tensors, p, b);
    }
    if (audit && o->verbosity >= 0 && ok > 0)
        fprintf(out, "\naudit: %llu error%s, %llu warning%s, %llu info (fail-on %s)\n",
                (unsigned long long)sev[DTA_SEV_ERROR], sev[DTA_SEV_ERROR] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_WARNING], sev[DTA_SEV_WARNING] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_INFO], dta_severity_name(o->fail_on));
}
