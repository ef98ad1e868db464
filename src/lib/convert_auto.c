/* convert --to auto and --keep-intended: per-tensor targets from the whole input.
 *
 * --to auto converts each root to its compute dtype: the floating dtype with the most
 * elements (audit's dominant dtype), so that one command normalises a checkpoint the way
 * llama.cpp's --outtype auto picks one dtype for a model. A root whose dominant dtype convert
 * cannot write (F8, F64, ...) is left as it is. --keep-intended (the default with auto) keeps
 * the tensors the intended-precision table matches (intended.h): T5's wo, MoE routing
 * biases, A_log/D, ... stay as their authors chose.
 *
 * The input is opened once more (headers only) and audited in scan mode, so targets are
 * decided over the whole model even when shards are converted one by one; a tensor is found
 * by name (names are unique in an input). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "convert_auto.h"
#include "dtaudit/audit.h"

static bool writable(dta_dtype t)
{
    return t == DTA_F32 || t == DTA_F16 || t == DTA_BF16;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const dtap_auto_entry *)a)->name, ((const dtap_auto_entry *)b)->name);
}

dta_status dtap_auto_plan(const char *in, const dta_convert_options *o, dtap_auto *a,
                          dta_error *err)
{
    memset(a, 0, sizeof *a);
    a->config_to = o->to;
    if (!o->to_auto && !o->keep_intended)
        return DTA_OK;
    dta_report *r = NULL;
    dta_audit_options ao = {.expect = DTA_DTYPE_NONE, .findings = false,
                            .intended = o->keep_intended};
    dta_status st = dta_model_open(in, &a->model, err);
    if (st == DTA_OK)
        st = dta_report_build(a->model, &ao, &r, err);
    if (st != DTA_OK) {
        dtap_auto_free(a);
        return st;
    }
    const dta_model *m = a->model;
    a->e = calloc(m->ntensors ? m->ntensors : 1, sizeof *a->e);
    if (!a->e) {
        dta_report_free(r);
        dtap_auto_free(a);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    if (o->to_auto) {
        /* config.json follows the first analysed root that has a writable compute dtype */
        a->config_to = DTA_DTYPE_NONE;
        for (size_t i = 0; i < r->nroots && a->config_to == DTA_DTYPE_NONE; i++)
            if (r->roots[i].analysed && writable(r->roots[i].dominant))
                a->config_to = r->roots[i].dominant;
    }
    for (size_t i = 0; i < m->ntensors; i++) {
        dtap_auto_entry *e = &a->e[a->n++];
        e->name = m->tensors[i].name;
        e->to = o->to_auto ? r->roots[r->tensor_root[i]].dominant : o->to;
        if (!writable(e->to))
            e->to = DTA_DTYPE_NONE;
        if (r->intended && r->intended[i]) {
            e->to = DTA_DTYPE_NONE;
            e->why = r->intended[i]->id;
            a->kept_intended++;
        }
    }
    dta_report_free(r);
    if (a->n > 1)
        qsort(a->e, a->n, sizeof *a->e, cmp_entry);
    return DTA_OK;
}

dta_dtype dtap_auto_target(const dtap_auto *a, const dta_convert_options *o, const dta_tensor *t)
{
    if (!a || a->n == 0)
        return o->to_auto ? DTA_DTYPE_NONE : o->to;
    dtap_auto_entry key = {t->name, DTA_DTYPE_NONE, NULL};
    const dtap_auto_entry *e = bsearch(&key, a->e, a->n, sizeof *a->e, cmp_entry);
    /* a tensor the whole-input scan did not see: convert nothing we did not plan */
    return e ? e->to : DTA_DTYPE_NONE;
}

void dtap_auto_free(dtap_auto *a)
{
    free(a->e);
    dta_model_free(a->model);
    memset(a, 0, sizeof *a);
}
