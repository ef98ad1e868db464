/* Conversion plan: which tensors are selected (--to, --only, --keep, --optimizer,
 * --to auto's per-tensor targets, quantized tensors left alone) and from that the dtype
 * each storage is written in (convert_job.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "convert_job.h"
#include "model_build.h"

/* ---- selection ---------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_quantized(const dtap_qnames *q, const char *name)
{
    return q && q->n && bsearch(&name, q->v, q->n, sizeof *q->v, cmp_str) != NULL;
}

/* The tensor's target (DTA_DTYPE_NONE: it keeps its dtype). */
static dta_dtype selected(const dta_convert_options *o, const dtap_auto *ap,
                          const dtap_qnames *qn, const dta_tensor *t, bool *only_hit)
{
    for (size_t i = 0; i < o->nonly && only_hit; i++)
        if (!only_hit[i] && dtap_name_matches(o->only[i], t->name))
            only_hit[i] = true;
    dta_dtype to = dtap_auto_target(ap, o, t);
    if (to == DTA_DTYPE_NONE || !dta_convert_supported(t->dtype, to) || t->dtype == to ||
        !dta_dtype_is_float(t->dtype) || is_quantized(qn, t->name))
        return DTA_DTYPE_NONE;
    if (!o->optimizer && strncmp(t->root, "optimizer", 9) == 0)
        return DTA_DTYPE_NONE;
    bool in = o->nonly == 0;
    for (size_t i = 0; i < o->nonly && !in; i++)
        in = dtap_name_matches(o->only[i], t->name);
    for (size_t i = 0; i < o->nkeep && in; i++)
        in = !dtap_name_matches(o->keep[i], t->name);
    return in ? to : DTA_DTYPE_NONE;
}

/* new_dtype[s] for every storage: the target when every tensor viewing it is selected.
 * A storage whose views disagree cannot be half converted: refuse, naming them. */
dta_status dtap_convert_plan(const dta_model *m, const dta_convert_options *o,
                             const dtap_auto *ap, const dtap_qnames *qn, bool *only_hit,
                             dta_dtype **out, dta_error *err)
{
    dta_dtype *nd = calloc(m->nstorages ? m->nstorages : 1, sizeof *nd);
    /* per storage: 0 no vote yet, 1 its first view keeps its dtype, else 2 + that view's target */
    int *vote = calloc(m->nstorages ? m->nstorages : 1, sizeof *vote);
    size_t *first = calloc(m->nstorages ? m->nstorages : 1, sizeof *first);
    if (!nd || !vote || !first) {
        free(nd);
        free(vote);
        free(first);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    for (size_t s = 0; s < m->nstorages; s++)
        nd[s] = m->storages[s].dtype;
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        if (t->storage == SIZE_MAX)
            continue;
        dta_dtype to = selected(o, ap, qn, t, only_hit);
        int v = to == DTA_DTYPE_NONE ? 1 : 2 + (int)to;
        if (vote[t->storage] == 0) {
            vote[t->storage] = v;
            first[t->storage] = i;
        } else if (vote[t->storage] != v) {
            const dta_tensor *a = &m->tensors[first[t->storage]];
            const dta_tensor *yes = to != DTA_DTYPE_NONE ? t : a, *no = yes == t ? a : t;
            dta_error_set(err, DTA_E_REFUSED, 0,
                          "tensors '%.120s' and '%.120s' share one storage but only '%.120s' "
                          "is selected for conversion; select both or neither (--only/--keep)",
                          yes->name, no->name, yes->name);
            free(nd);
            free(vote);
            free(first);
            return DTA_E_REFUSED;
        }
    }
    for (size_t s = 0; s < m->nstorages; s++)
        if (vote[s] >= 2)
            nd[s] = (dta_dtype)(vote[s] - 2);
    free(vote);
    free(first);
    *out = nd;
    return DTA_OK;
}


/* Quantized input: refused (nothing written), or with keep_quantized the names of its
 * quantized tensors, which are then copied as they are. Only headers are read. */
dta_status dtap_quantized_names(const char *in, const dta_convert_options *o,
                                dtap_qnames *out, dta_error *err)
{
    dta_model *m;
    dta_quant *q = NULL;
    if (o->dequantize) /* dequant.c plans (and refuses) the quantized parameters itself */
        return DTA_OK;
    dta_status st = dta_model_open(in, &m, err);
    if (st != DTA_OK)
        return st;
    st = dta_quant_analyse(m, &q, err);
    size_t nparams = 0, first = SIZE_MAX;
    for (size_t i = 0; st == DTA_OK && i < q->nparams; i++)
        if (q->params[i].weight != SIZE_MAX) {
            nparams++;
            if (first == SIZE_MAX)
                first = i;
        }
    if (st == DTA_OK && q->scheme == DTA_QS_UNKNOWN)
        st = dta_error_set(err, DTA_E_REFUSED, 0,
                           "%s: quantized with the scheme '%.80s' (%s), which dtaudit does not "
                           "know: it cannot tell the quantized tensors from the plain ones, so it "
                           "converts nothing; nothing written",
                           in, q->method ? q->method : "?", q->source ? q->source : "config");
    else if (st == DTA_OK && nparams && !o->keep_quantized)
        st = dta_error_set(err, DTA_E_REFUSED, 0,
                           "%s: holds %zu quantized parameters (%s, e.g. '%.120s'); converting "
                           "them would cast the raw codes without their scales; nothing written. "
                           "Use --keep-quantized to convert only the unquantized tensors and keep "
                           "the quantized ones byte-identical, or --dequantize to dequantize them",
                           in, nparams, dta_quant_scheme_name(q->scheme), q->params[first].name);
    else if (st == DTA_OK && nparams) {
        size_t n = 0;
        for (size_t i = 0; i < m->ntensors; i++)
            n += dta_quant_tensor_is_quantized(q, i);
        out->v = calloc(n ? n : 1, sizeof *out->v);
        if (!out->v)
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        for (size_t i = 0; st == DTA_OK && i < m->ntensors; i++)
            if (dta_quant_tensor_is_quantized(q, i)) {
                if (!(out->v[out->n] = strdup(m->tensors[i].name)))
                    st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                else
                    out->n++;
            }
        if (out->n > 1)
            qsort(out->v, out->n, sizeof *out->v, cmp_str);
    }
    dta_quant_free(q);
    dta_model_free(m);
    return st;
}

void dtap_qnames_free(dtap_qnames *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i]);
    free(q->v);
}
