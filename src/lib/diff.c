/* Dtype drift between two models (include/dtaudit/diff.h).
 *
 * Both models are indexed by tensor name in a hash table (first occurrence wins: a name
 * seen twice in one model is compared once), so a diff costs O(n) lookups plus one sort
 * of the changes. Dominant dtypes per root come from the audit engine (scan mode). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/diff.h"
#include "src.h"
#include "util_strmap.h"

/* Each kind of change is a rule of the catalogue (rules.c: name, default severity). */
static const dta_rule change_rule[DTA_CHANGE_KINDS] = {
    [DTA_CHANGE_DTYPE] = DTA_RULE_DTYPE_CHANGED,
    [DTA_CHANGE_SHAPE] = DTA_RULE_SHAPE_CHANGED,
    [DTA_CHANGE_ADDED] = DTA_RULE_TENSOR_ADDED,
    [DTA_CHANGE_REMOVED] = DTA_RULE_TENSOR_REMOVED,
};

const char *dta_change_rule(dta_change_kind k)
{
    return (unsigned)k < DTA_CHANGE_KINDS ? dta_rule_name(change_rule[k]) : "?";
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

int dta_name_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (is_digit(*a) && is_digit(*b)) {
            const char *x = a, *y = b;
            while (*x == '0' && is_digit(x[1]))
                x++;
            while (*y == '0' && is_digit(y[1]))
                y++;
            size_t nx = 0, ny = 0;
            while (is_digit(x[nx]))
                nx++;
            while (is_digit(y[ny]))
                ny++;
            if (nx != ny)
                return nx < ny ? -1 : 1;
            int c = memcmp(x, y, nx);
            if (c)
                return c;
            /* equal values: fewer leading zeros first, then go on */
            size_t la = (size_t)(x - a) + nx, lb = (size_t)(y - b) + ny;
            if (la != lb)
                return la < lb ? -1 : 1;
            a += la;
            b += lb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

/* t: name -> first tensor index of m; dup[i] marks a tensor whose name came earlier */
static dta_status index_names(dtap_strmap *t, const dta_model *m, bool *dup, dta_error *err)
{
    if (!dtap_strmap_init(t, m->ntensors))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < m->ntensors; i++) {
        const char *n = m->tensors[i].name;
        dup[i] = dtap_strmap_puts(t, n, i) != i; /* sized for all: never fails */
    }
    return DTA_OK;
}

static bool same_shape(const dta_tensor *a, const dta_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

typedef struct {
    dta_diff *d;
    const dta_diff_options *opt;
    dta_error *err;
    size_t cap;
    size_t last_root; /* tensors of one root come together: try it first */
} dctx;

static dta_status nomem(dctx *c)
{
    return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

static size_t root_index(dctx *c, const char *name, bool create)
{
    dta_diff *d = c->d;
    if (c->last_root < d->nroots && strcmp(d->roots[c->last_root].name, name) == 0)
        return c->last_root;
    for (size_t i = 0; i < d->nroots; i++)
        if (strcmp(d->roots[i].name, name) == 0)
            return c->last_root = i;
    if (!create)
        return SIZE_MAX;
    dta_diff_root *p = realloc(d->roots, (d->nroots + 1) * sizeof *p);
    if (!p)
        return SIZE_MAX;
    d->roots = p;
    memset(&p[d->nroots], 0, sizeof *p);
    p[d->nroots].old_dominant = p[d->nroots].new_dominant = DTA_DTYPE_NONE;
    if (!(p[d->nroots].name = strdup(name)))
        return SIZE_MAX;
    return c->last_root = d->nroots++;
}

static int severity_of(const dctx *c, dta_change_kind k)
{
    const dta_rule_info *ri = dta_rule_get(change_rule[k]);
    int s = (int)ri->severity;
    for (size_t i = 0; c->opt && i < c->opt->nseverity; i++)
        if (c->opt->severity[i].rule && strcmp(c->opt->severity[i].rule, ri->name) == 0)
            s = c->opt->severity[i].severity;
    return s;
}

static dta_status add_change(dctx *c, dta_change_kind k, size_t oi, size_t ni, const char *root,
                             const char *name)
{
    dta_diff *d = c->d;
    int sev = severity_of(c, k);
    if (sev == DTA_SEV_OFF)
        return DTA_OK;
    size_t r = root_index(c, root, true);
    if (r == SIZE_MAX)
        return nomem(c);
    if (d->nchanges == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        dta_change *p = realloc(d->changes, ncap * sizeof *p);
        if (!p)
            return nomem(c);
        d->changes = p;
        c->cap = ncap;
    }
    dta_change *ch = &d->changes[d->nchanges++];
    ch->kind = k;
    ch->rule = dta_rule_name(change_rule[k]);
    ch->rule_id = change_rule[k];
    ch->severity = (dta_severity)sev;
    ch->old_tensor = oi;
    ch->new_tensor = ni;
    ch->root = r;
    ch->name = name;
    d->roots[r].changes[k]++;
    d->changes_by_kind[k]++;
    return DTA_OK;
}

static dta_status add_move(dctx *c, dta_diff_root *r, dta_dtype from, dta_dtype to,
                           uint64_t numel)
{
    for (size_t i = 0; i < r->nmoves; i++)
        if (r->moves[i].from == from && r->moves[i].to == to) {
            r->moves[i].tensors++;
            r->moves[i].numel += numel;
            return DTA_OK;
        }
    dta_dtype_move *p = realloc(r->moves, (r->nmoves + 1) * sizeof *p);
    if (!p)
        return nomem(c);
    r->moves = p;
    p[r->nmoves++] = (dta_dtype_move){from, to, 1, numel};
    return DTA_OK;
}

static int cmp_change(const void *a, const void *b)
{
    const dta_change *x = a, *y = b;
    if (x->root != y->root)
        return x->root < y->root ? -1 : 1;
    int c = dta_name_cmp(x->name, y->name);
    if (c)
        return c;
    return (int)x->kind - (int)y->kind;
}

static int cmp_move(const void *a, const void *b)
{
    const dta_dtype_move *x = a, *y = b;
    if (x->numel != y->numel)
        return x->numel > y->numel ? -1 : 1;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return (int)x->to - (int)y->to;
}

/* Dominant dtypes and tensor counts per root, from the audit engine in scan mode. */
static dta_status summarise(dctx *c, const dta_model *m, bool is_new)
{
    dta_report *rep;
    dta_audit_options o = {.expect = DTA_DTYPE_NONE, .findings = false};
    dta_status st = dta_report_build(m, &o, &rep, c->err);
    if (st != DTA_OK)
        return st;
    for (size_t i = 0; i < rep->nroots && st == DTA_OK; i++) {
        size_t r = root_index(c, rep->roots[i].name, true);
        if (r == SIZE_MAX) {
            st = nomem(c);
            break;
        }
        if (is_new) {
            c->d->roots[r].new_dominant = rep->roots[i].dominant;
            c->d->roots[r].new_tensors = rep->roots[i].total.tensors;
        } else {
            c->d->roots[r].old_dominant = rep->roots[i].dominant;
            c->d->roots[r].old_tensors = rep->roots[i].total.tensors;
        }
    }
    dta_report_free(rep);
    return st;
}

dta_status dta_diff_build(const dta_model *old_model, const dta_model *new_model,
                          const dta_diff_options *opt, dta_diff **out, dta_error *err)
{
    dctx c = {NULL, opt, err, 0, 0};
    dtap_strmap to = {0}, tn = {0};
    bool *dup_old = NULL, *dup_new = NULL;
    dta_status st = DTA_OK;

    *out = NULL;
    if (!old_model || !new_model)
        return dta_error_set(err, DTA_E_ARG, 0, "diff needs two models");
    c.d = calloc(1, sizeof *c.d);
    dup_old = calloc(old_model->ntensors + 1, sizeof *dup_old);
    dup_new = calloc(new_model->ntensors + 1, sizeof *dup_new);
    if (!c.d || !dup_old || !dup_new) {
        st = nomem(&c);
        goto out;
    }
    c.d->old_model = old_model;
    c.d->new_model = new_model;
    if ((st = summarise(&c, old_model, false)) != DTA_OK ||
        (st = summarise(&c, new_model, true)) != DTA_OK ||
        (st = index_names(&to, old_model, dup_old, err)) != DTA_OK ||
        (st = index_names(&tn, new_model, dup_new, err)) != DTA_OK)
        goto out;

    for (size_t i = 0; i < old_model->ntensors && st == DTA_OK; i++) {
        const dta_tensor *a = &old_model->tensors[i];
        if (dup_old[i])
            continue;
        size_t j = dtap_strmap_gets(&tn, a->name);
        if (j == SIZE_MAX) {
            st = add_change(&c, DTA_CHANGE_REMOVED, i, SIZE_MAX, a->root, a->name);
            continue;
        }
        const dta_tensor *b = &new_model->tensors[j];
        if (a->dtype != b->dtype) {
            size_t before = c.d->nchanges;
            st = add_change(&c, DTA_CHANGE_DTYPE, i, j, a->root, a->name);
            if (st == DTA_OK && c.d->nchanges > before)
                st = add_move(&c, &c.d->roots[c.d->changes[before].root], a->dtype, b->dtype,
                              a->numel);
        }
        if (st == DTA_OK && !same_shape(a, b))
            st = add_change(&c, DTA_CHANGE_SHAPE, i, j, a->root, a->name);
    }
    for (size_t j = 0; j < new_model->ntensors && st == DTA_OK; j++) {
        const dta_tensor *b = &new_model->tensors[j];
        if (!dup_new[j] && dtap_strmap_gets(&to, b->name) == SIZE_MAX)
            st = add_change(&c, DTA_CHANGE_ADDED, SIZE_MAX, j, b->root, b->name);
    }
    if (st != DTA_OK)
        goto out;
    if (c.d->nchanges > 1)
        qsort(c.d->changes, c.d->nchanges, sizeof *c.d->changes, cmp_change);
    for (size_t r = 0; r < c.d->nroots; r++)
        if (c.d->roots[r].nmoves > 1)
            qsort(c.d->roots[r].moves, c.d->roots[r].nmoves, sizeof *c.d->roots[r].moves,
                  cmp_move);
out:
    dtap_strmap_free(&to);
    dtap_strmap_free(&tn);
    free(dup_old);
    free(dup_new);
    if (st != DTA_OK) {
        dta_diff_free(c.d);
        return st;
    }
    *out = c.d;
    return DTA_OK;
}

void dta_diff_free(dta_diff *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nroots; i++) {
        free(d->roots[i].name);
        free(d->roots[i].moves);
    }
    free(d->roots);
    free(d->changes);
    free(d);
}
