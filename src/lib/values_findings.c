/* The value rules of audit --values (docs/design.md "Findings"):
 *   nonfinite            NaN or +-inf in a tensor (error);
 *   range-overflow       finite values the target cannot hold: convert refuses them (error);
 *   precision-underflow  more than a policy-set share (default 0.1%) of a tensor's nonzero
 *                        finite values become zero in the target (warning).
 * A finding covers one module's tensors with the same problem and dtype (the way the dtype
 * rules report a module), carries the counts summed over them, and the findings of one rule
 * are ordered worst first. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "values_audit.h"

enum { R_NONFINITE, R_OVERFLOW, R_UNDERFLOW };
static const dta_rule rule_ids[] = {DTA_RULE_NONFINITE, DTA_RULE_RANGE_OVERFLOW,
                                    DTA_RULE_PRECISION_UNDERFLOW};

typedef struct {
    int rule;
    size_t tensor;
    size_t root;
    size_t mlen;        /* module = tensor name [0, mlen) */
    const char *name;
    dta_dtype dtype;
} vhit;

static int cmp_vhit(const void *a, const void *b)
{
    const vhit *x = a, *y = b;
    if (x->rule != y->rule)
        return x->rule - y->rule;
    if (x->root != y->root)
        return x->root < y->root ? -1 : 1;
    size_t n = x->mlen < y->mlen ? x->mlen : y->mlen;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    if (x->mlen != y->mlen)
        return x->mlen < y->mlen ? -1 : 1;
    if (x->dtype != y->dtype)
        return x->dtype < y->dtype ? -1 : 1;
    return (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

static bool same_group(const vhit *x, const vhit *y)
{
    return x->rule == y->rule && x->root == y->root && x->mlen == y->mlen &&
           x->dtype == y->dtype && memcmp(x->name, y->name, x->mlen) == 0;
}

/* Module of a tensor: its name without the last component, never shorter than its root's
 * top; a tensor directly under the top is its own subject (as in audit.c). */
static size_t module_len(const dta_tensor *t)
{
    size_t n = strlen(t->name), rl = strlen(t->root), top = 0;
    if (rl && n > rl && strncmp(t->name, t->root, rl) == 0 && t->name[rl] == '.')
        top = rl;
    size_t k = n;
    while (k > 0 && t->name[k - 1] != '.')
        k--;
    k = k ? k - 1 : 0;
    return k <= top ? n : k;
}

static double share(const dta_values_tensor *v)
{
    uint64_t nz = dta_values_nonzero(v);
    return nz ? (double)v->underflow / (double)nz : 0;
}

static bool fires(int rule, const dta_values_tensor *v, double limit)
{
    switch (rule) {
    case R_NONFINITE:
        return v->nan + v->pos_inf + v->neg_inf > 0;
    case R_OVERFLOW:
        return v->overflow > 0;
    default:
        return v->underflow > 0 && (double)v->underflow > limit * (double)dta_values_nonzero(v);
    }
}

double dtap_values_badness(const dta_finding *f)
{
    const dta_values_tensor *v = f->values;
    if (!v)
        return 0;
    if (f->rule_id == DTA_RULE_NONFINITE)
        return (double)(v->nan + v->pos_inf + v->neg_inf);
    if (f->rule_id == DTA_RULE_RANGE_OVERFLOW)
        return (double)v->overflow;
    return share(v);
}

static void add_counts(dta_values_tensor *a, const dta_values_tensor *b)
{
    if (a->elements == 0 && a->nan == 0) {
        *a = *b;
        return;
    }
    a->elements += b->elements;
    a->nan += b->nan;
    a->pos_inf += b->pos_inf;
    a->neg_inf += b->neg_inf;
    a->zero += b->zero;
    a->overflow += b->overflow;
    a->underflow += b->underflow;
    a->subnormal += b->subnormal;
    if (b->max_abs > a->max_abs)
        a->max_abs = b->max_abs;
    if (b->min_nonzero_abs > 0 && (a->min_nonzero_abs == 0 || b->min_nonzero_abs < a->min_nonzero_abs))
        a->min_nonzero_abs = b->min_nonzero_abs;
}

static const char *max_finite(dta_dtype t)
{
    switch (t) {
    case DTA_F16: return "65504";
    case DTA_BF16: return "3.38953e+38";
    default: return "3.40282e+38";
    }
}

static void message(char *buf, size_t cap, int rule, const char *what, size_t ntensors,
                    dta_dtype from, const dta_values_tensor *v)
{
    const char *tn = ntensors == 1 ? "" : "s";
    /* a quantized parameter: the values are its dequantized ones (codes x scales) */
    char dq[64] = "";
    if (v->dequantized)
        snprintf(dq, sizeof dq, "dequantized (%s) ", v->dequantized);
    switch (rule) {
    case R_NONFINITE:
        snprintf(buf, cap,
                 "%s holds %llu NaN, %llu +inf and %llu -inf among %llu %svalues (%zu tensor%s); "
                 "a divergent run or a bad merge: every activation they touch becomes NaN",
                 what, (unsigned long long)v->nan, (unsigned long long)v->pos_inf,
                 (unsigned long long)v->neg_inf, (unsigned long long)v->elements, dq, ntensors,
                 tn);
        break;
    case R_OVERFLOW:
        snprintf(buf, cap,
                 "%llu %s%s value%s of %s exceed%s %s's largest finite value %s (max |x| %.6g, "
                 "%zu tensor%s): converting to %s makes %s inf, so dtaudit convert refuses",
                 (unsigned long long)v->overflow, dq, dta_dtype_name(from),
                 v->overflow == 1 ? "" : "s", what, v->overflow == 1 ? "s" : "",
                 dta_dtype_name(v->target),
                 max_finite(v->target), v->max_abs, ntensors, tn, dta_dtype_name(v->target),
                 v->overflow == 1 ? "it" : "them");
        break;
    default:
        snprintf(buf, cap,
                 "%.3g%% of the nonzero %svalues of %s (%llu of %llu) become zero in %s (smallest "
                 "nonzero |x| %.6g), and %llu more become subnormal (%zu tensor%s); small "
                 "weights are silently lost",
                 100 * share(v), dq, what, (unsigned long long)v->underflow,
                 (unsigned long long)dta_values_nonzero(v), dta_dtype_name(v->target),
                 v->min_nonzero_abs, (unsigned long long)v->subnormal, ntensors, tn);
        break;
    }
}

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

/* Appends one finding for hits [a, b) of one group. */
static dta_status emit(dta_report *r, const dta_model *m, const vhit *h, size_t a, size_t b,
                       const dta_values *vals, dta_error *err)
{
    dta_finding *p = realloc(r->findings, (r->nfindings + 1) * sizeof *p);
    if (!p)
        return nomem(err);
    r->findings = p;
    dta_finding *f = &p[r->nfindings];
    memset(f, 0, sizeof *f);
    r->nfindings++;
    const dta_tensor *t0 = &m->tensors[h[a].tensor];
    int rule = h[a].rule;
    f->rule_id = rule_ids[rule];
    f->rule = dta_rule_name(f->rule_id);
    f->severity = dta_rule_get(f->rule_id)->severity;
    f->root_index = h[a].root;
    f->root = strdup(h[a].root < r->nroots ? r->roots[h[a].root].name : "");
    f->module = strndup(t0->name, h[a].mlen);
    f->dtype = t0->dtype;
    f->expected = rule == R_NONFINITE ? DTA_DTYPE_NONE : vals->tensors[h[a].tensor].target;
    f->file = t0->file;
    f->values = calloc(1, sizeof *f->values);
    f->tensors = malloc((b - a) * sizeof *f->tensors);
    if (!f->root || !f->module || !f->values || !f->tensors)
        return nomem(err);
    /* worst tensor first inside the finding */
    size_t *ord = malloc((b - a) * sizeof *ord);
    if (!ord)
        return nomem(err);
    for (size_t i = a; i < b; i++)
        ord[i - a] = h[i].tensor;
    for (size_t i = 1; i < b - a; i++)
        for (size_t k = i; k > 0; k--) {
            dta_finding one = {.rule_id = f->rule_id, .values = &vals->tensors[ord[k]]};
            dta_finding prev = {.rule_id = f->rule_id, .values = &vals->tensors[ord[k - 1]]};
            if (dtap_values_badness(&one) <= dtap_values_badness(&prev))
                break;
            size_t tmp = ord[k];
            ord[k] = ord[k - 1];
            ord[k - 1] = tmp;
        }
    for (size_t i = 0; i < b - a; i++) {
        const dta_tensor *t = &m->tensors[ord[i]];
        if (!(f->tensors[f->ntensors] = strdup(t->name))) {
            free(ord);
            return nomem(err);
        }
        f->ntensors++;
        f->numel += vals->tensors[ord[i]].elements; /* a parameter's logical count */
        add_counts(f->values, &vals->tensors[ord[i]]);
    }
    free(ord);
    char what[600], buf[1400];
    if (f->ntensors == 1 && strcmp(f->module, f->tensors[0]) == 0)
        snprintf(what, sizeof what, "'%.500s'", f->module);
    else if (f->module[0])
        snprintf(what, sizeof what, "module '%.500s'", f->module);
    else
        snprintf(what, sizeof what, "the whole state dict");
    message(buf, sizeof buf, rule, what, f->ntensors, t0->dtype, f->values);
    if (!(f->message = strdup(buf)))
        return nomem(err);
    return DTA_OK;
}

dta_status dtap_values_findings(dta_report *r, const dta_model *m, const dta_audit_options *opt,
                                const size_t *tensor_root, const bool *allowed,
                                const dta_intended_rule *const *intended, dta_error *err)
{
    const dta_values *vals = opt->values;
    vhit *h = NULL;
    size_t nh = 0, cap = 0;
    dta_status st = DTA_OK;
    if (!vals || vals->ntensors != m->ntensors)
        return DTA_OK;
    double share_limit = opt->underflow_share == 0 ? DTA_UNDERFLOW_SHARE_DEFAULT
                                                   : opt->underflow_share;
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_values_tensor *v = &vals->tensors[i];
        const dta_tensor *t = &m->tensors[i];
        size_t root = tensor_root[i];
        if (v->skipped)
            continue;
        /* allowed[] also marks quantized parameters (no dtype rules for their codes); their
         * dequantized values are what convert --dequantize writes, so only --allow keeps
         * them out of the range rules */
        bool kept = v->dequantized ? dtap_tensor_allowed(opt, t) : allowed[i];
        for (int rule = R_NONFINITE; rule <= R_UNDERFLOW; rule++) {
            /* range rules: only what convert would convert (not optimizer roots, not
             * tensors under --allow or intended islands, not tensors already in the target) */
            if (rule != R_NONFINITE &&
                (vals->target == DTA_DTYPE_NONE || v->target == t->dtype || kept ||
                 (intended && intended[i]) ||
                 (root < r->nroots && !r->roots[root].analysed)))
                continue;
            if (!fires(rule, v, share_limit))
                continue;
            if (nh == cap) {
                size_t nc = cap ? cap * 2 : 64;
                vhit *p = realloc(h, nc * sizeof *p);
                if (!p) {
                    free(h);
                    return nomem(err);
                }
                h = p;
                cap = nc;
            }
            h[nh++] = (vhit){rule, i, root, module_len(t), t->name, t->dtype};
        }
    }
    if (nh > 1)
        qsort(h, nh, sizeof *h, cmp_vhit);
    for (size_t a = 0; a < nh && st == DTA_OK;) {
        size_t b = a + 1;
        while (b < nh && same_group(&h[a], &h[b]))
            b++;
        st = emit(r, m, h, a, b, vals, err);
        a = b;
    }
    free(h);
    return st;
}
