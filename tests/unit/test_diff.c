/* dta_diff_build (src/lib/diff.c): one change per tensor and rule, severities from the
 * rule catalogue and policy overrides, natural name order, dtype moves per root. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include "dtaudit/diff.h"
#include "st_build.h"

static dta_model *open_mem(const char *name, const st_tensor *t, size_t nt)
{
    size_t n;
    unsigned char *f = st_build(t, nt, &n);
    dta_model *m = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_model_open_memory(name, f, n, &m, &err), DTA_OK, "%s", err.msg);
    free(f);
    return m;
}

static const st_tensor OLD[] = {
    {"layers.10.w", "F32", 2, {2, 2}}, {"layers.2.w", "F32", 2, {2, 2}}, {"b", "F32", 1, {4}},
    {"c", "F32", 1, {1}},              {"ids", "I64", 1, {3}},
};
static const st_tensor NEW[] = {
    {"layers.10.w", "BF16", 2, {2, 2}}, {"layers.2.w", "BF16", 2, {2, 2}}, {"b", "F32", 2, {2, 2}},
    {"d", "F32", 1, {1}},               {"ids", "I64", 1, {3}},
};

Test(diff, one_change_per_tensor_and_rule)
{
    dta_model *a = open_mem("old", OLD, 5), *b = open_mem("new", NEW, 5);
    dta_diff *d = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_diff_build(a, b, NULL, &d, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(d->nchanges, 5u);
    cr_assert_eq(d->changes_by_kind[DTA_CHANGE_DTYPE], 2u);
    cr_assert_eq(d->changes_by_kind[DTA_CHANGE_SHAPE], 1u);
    cr_assert_eq(d->changes_by_kind[DTA_CHANGE_ADDED], 1u);
    cr_assert_eq(d->changes_by_kind[DTA_CHANGE_REMOVED], 1u);
    /* sorted by name in natural order (layers.2 before layers.10), then kind */
    static const char *names[] = {"b", "c", "d", "layers.2.w", "layers.10.w"};
    static const dta_change_kind kinds[] = {DTA_CHANGE_SHAPE, DTA_CHANGE_REMOVED, DTA_CHANGE_ADDED,
                                            DTA_CHANGE_DTYPE, DTA_CHANGE_DTYPE};
    for (size_t i = 0; i < d->nchanges; i++) {
        const dta_change *c = &d->changes[i];
        cr_assert_str_eq(c->name, names[i]);
        cr_assert_eq(c->kind, kinds[i], "%s", c->name);
        const dta_rule_info *r = dta_rule_get(c->rule_id);
        cr_assert_not_null(r);
        cr_assert_str_eq(c->rule, r->name);
        cr_assert_str_eq(c->rule, dta_change_rule(c->kind));
        cr_assert_eq(c->severity, r->severity, "%s: default severity from the catalogue", c->name);
        cr_assert_eq(c->old_tensor == SIZE_MAX, c->kind == DTA_CHANGE_ADDED);
        cr_assert_eq(c->new_tensor == SIZE_MAX, c->kind == DTA_CHANGE_REMOVED);
    }
    cr_assert_eq(d->nroots, 1u);
    cr_assert_eq(d->roots[0].old_dominant, DTA_F32);
    cr_assert_eq(d->roots[0].nmoves, 1u);
    cr_assert_eq(d->roots[0].moves[0].from, DTA_F32);
    cr_assert_eq(d->roots[0].moves[0].to, DTA_BF16);
    cr_assert_eq(d->roots[0].moves[0].tensors, 2u);
    cr_assert_eq(d->roots[0].moves[0].numel, 8u);
    dta_diff_free(d);
    dta_model_free(a);
    dta_model_free(b);
}

Test(diff, policy_overrides_and_identical_models)
{
    dta_model *a = open_mem("old", OLD, 5), *b = open_mem("new", NEW, 5);
    const dta_rule_severity sev[] = {{"dtype-changed", DTA_SEV_OFF}, {"tensor-added", DTA_SEV_ERROR}};
    dta_diff_options o = {.severity = sev, .nseverity = 2};
    dta_diff *d = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_diff_build(a, b, &o, &d, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(d->nchanges, 3u, "dtype-changed is off");
    cr_assert_eq(d->changes_by_kind[DTA_CHANGE_DTYPE], 0u);
    for (size_t i = 0; i < d->nchanges; i++)
        if (d->changes[i].kind == DTA_CHANGE_ADDED)
            cr_assert_eq(d->changes[i].severity, DTA_SEV_ERROR);
    dta_diff_free(d);
    cr_assert_eq(dta_diff_build(a, a, NULL, &d, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(d->nchanges, 0u);
    dta_diff_free(d);
    dta_diff_free(NULL);
    dta_model_free(a);
    dta_model_free(b);
}

Test(diff, natural_name_order)
{
    cr_assert_lt(dta_name_cmp("layers.2", "layers.10"), 0);
    cr_assert_gt(dta_name_cmp("layers.10", "layers.9"), 0);
    cr_assert_eq(dta_name_cmp("a.1.b", "a.1.b"), 0);
    cr_assert_lt(dta_name_cmp("a", "a.0"), 0);
    cr_assert_lt(dta_name_cmp("a.b", "a.c"), 0);
    cr_assert_lt(dta_name_cmp("x9", "x10"), 0);
}
