/* Audit engine on synthetic models built with the reader's builder API. */
#include <criterion/criterion.h>
#include <string.h>

#include "dtaudit/audit.h"
#include "model_build.h"

static dta_model *model(void)
{
    dta_error err;
    dta_model *m = dtap_model_new("mem", &err);
    cr_assert(m);
    cr_assert_eq(dtap_model_add_file(m, "mem", DTA_FORMAT_UNKNOWN, NULL, &err), DTA_OK);
    return m;
}

static void add(dta_model *m, const char *root, const char *name, dta_dtype t, uint64_t n)
{
    dta_error err;
    size_t s;
    cr_assert_eq(dtap_model_add_storage(m, 0, NULL, t, n, 0, &s, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_model_add_tensor(m, name, strlen(name), root, t, 1, &n, NULL, 0, s, 0, &err),
                 DTA_OK, "%s", err.msg);
}

static dta_report *audit(dta_model *m, dta_dtype expect, const dta_allow *allow, size_t nallow)
{
    dta_audit_options o = {.expect = expect, .allow = allow, .nallow = nallow, .findings = true};
    dta_report *r;
    dta_error err;
    dtap_model_finish(m);
    cr_assert_eq(dta_report_build(m, &o, &r, &err), DTA_OK, "%s", err.msg);
    return r;
}

static const dta_finding *find(const dta_report *r, const char *rule, const char *module)
{
    for (size_t i = 0; i < r->nfindings; i++)
        if (!strcmp(r->findings[i].rule, rule) && !strcmp(r->findings[i].module, module))
            return &r->findings[i];
    return NULL;
}

Test(audit, outlier_reported_once_at_highest_module)
{
    dta_model *m = model();
    add(m, "", "teacher.embed.weight", DTA_F16, 1000);
    add(m, "", "teacher.layers.0.fc1.weight", DTA_F16, 1000);
    add(m, "", "proj.a.weight", DTA_F32, 10);
    add(m, "", "proj.a.bias", DTA_F32, 2);
    add(m, "", "proj.b.weight", DTA_F32, 10);
    dta_report *r = audit(m, DTA_DTYPE_NONE, NULL, 0);
    cr_assert_eq(r->nroots, 1);
    cr_assert_eq(r->roots[0].dominant, DTA_F16);
    cr_assert_eq(r->nfindings, 1);
    const dta_finding *f = find(r, "dtype-outlier", "proj");
    cr_assert(f);
    cr_assert_eq(f->dtype, DTA_F32);
    cr_assert_eq(f->expected, DTA_F16);
    cr_assert_eq(f->ntensors, 3);
    cr_assert_eq(f->severity, DTA_SEV_WARNING);
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, mixed_module_lists_off_dtype_tensors)
{
    dta_model *m = model();
    add(m, "", "layers.0.attn.w", DTA_BF16, 4000);
    add(m, "", "layers.0.ttt.W1", DTA_F32, 100);
    add(m, "", "layers.0.ttt.norm_weight", DTA_BF16, 10);
    add(m, "", "layers.1.attn.w", DTA_BF16, 4000);
    add(m, "", "layers.1.ttt.W1", DTA_F32, 100);
    add(m, "", "layers.1.ttt.norm_weight", DTA_BF16, 10);
    dta_report *r = audit(m, DTA_DTYPE_NONE, NULL, 0);
    cr_assert_eq(r->nfindings, 2);
    const dta_finding *f = find(r, "mixed-module", "layers.0.ttt");
    cr_assert(f);
    cr_assert_eq(f->ntensors, 1);
    cr_assert_str_eq(f->tensors[0], "layers.0.ttt.W1");
    cr_assert_eq(f->dtype, DTA_F32);
    cr_assert(find(r, "mixed-module", "layers.1.ttt"));
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, own_tensors_of_a_module_with_children)
{
    /* 'enc' has its own F32 tensor and a BF16 child: neither uniform nor mixed-own */
    dta_model *m = model();
    add(m, "", "enc.scale", DTA_F32, 4);
    add(m, "", "enc.layer.w", DTA_BF16, 100);
    add(m, "", "top_level", DTA_F32, 4);
    dta_report *r = audit(m, DTA_DTYPE_NONE, NULL, 0);
    cr_assert(find(r, "dtype-outlier", "enc"));
    cr_assert(find(r, "dtype-outlier", "top_level"));
    cr_assert_eq(r->nfindings, 2);
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, allow_and_integers_raise_nothing)
{
    dta_model *m = model();
    add(m, "", "model.layers.0.mlp.w", DTA_BF16, 1000);
    add(m, "", "model.layers.0.input_layernorm.weight", DTA_F32, 10);
    add(m, "", "model.rotary.inv_freq", DTA_F32, 10);
    add(m, "", "model.position_ids", DTA_I64, 10);
    add(m, "", "model.mask", DTA_BOOL, 10);
    dta_allow allow[] = {{"*layernorm*", DTA_F32}, {"*.inv_freq", DTA_DTYPE_NONE}};
    dta_report *r = audit(m, DTA_BF16, allow, 2);
    cr_assert_eq(r->nfindings, 0, "got %zu findings, first %s %s", r->nfindings,
                 r->nfindings ? r->findings[0].rule : "", r->nfindings ? r->findings[0].module : "");
    dta_report_free(r);
    /* the same allow with another dtype does not apply */
    dta_allow wrong[] = {{"*layernorm*", DTA_F16}, {"*.inv_freq", DTA_DTYPE_NONE}};
    r = audit(m, DTA_DTYPE_NONE, wrong, 2);
    cr_assert(find(r, "dtype-outlier", "model.layers.0.input_layernorm"));
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, expect_mismatch_whole_root_and_subtrees)
{
    dta_model *m = model();
    add(m, "", "a.w", DTA_F32, 10);
    add(m, "", "b.w", DTA_F32, 10);
    dta_report *r = audit(m, DTA_BF16, NULL, 0);
    const dta_finding *f = find(r, "expect-mismatch", "");
    cr_assert(f);
    cr_assert_eq(f->ntensors, 2);
    cr_assert_eq(f->severity, DTA_SEV_ERROR);
    cr_assert_eq(r->nfindings, 1);
    dta_report_free(r);
    dta_model_free(m);

    m = model();
    add(m, "", "a.w", DTA_BF16, 100);
    add(m, "", "b.x.w", DTA_F32, 10);
    add(m, "", "b.x.v", DTA_F16, 10);
    r = audit(m, DTA_BF16, NULL, 0);
    /* b.x holds F32 and F16: not uniform, each dtype group reported at the module */
    cr_assert_eq(r->nfindings, 3); /* 2 expect-mismatch + 1 mixed-module */
    cr_assert(find(r, "mixed-module", "b.x"));
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, roots_are_separate_and_optimizer_is_not_analysed)
{
    dta_model *m = model();
    add(m, "model", "model.a.w", DTA_BF16, 100);
    add(m, "ema", "ema.a.w", DTA_F32, 100);
    add(m, "optimizer", "optimizer.state.0.exp_avg", DTA_F32, 100);
    add(m, "optimizer", "optimizer.state.1.exp_avg", DTA_BF16, 1);
    dta_report *r = audit(m, DTA_DTYPE_NONE, NULL, 0);
    cr_assert_eq(r->nroots, 3);
    cr_assert_str_eq(r->roots[0].name, "model");
    cr_assert_eq(r->roots[0].dominant, DTA_BF16);
    cr_assert_eq(r->roots[1].dominant, DTA_F32);
    cr_assert(!r->roots[2].analysed);
    cr_assert_eq(r->nfindings, 0);
    /* modules carry full names and their root */
    bool seen = false;
    for (size_t i = 0; i < r->nmodules; i++)
        if (!strcmp(r->modules[i].name, "ema.a")) {
            seen = true;
            cr_assert_str_eq(r->modules[i].root, "ema");
        }
    cr_assert(seen);
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, shared_storage_counts_bytes_once)
{
    dta_model *m = model();
    dta_error err;
    size_t s;
    uint64_t shape = 8;
    cr_assert_eq(dtap_model_add_storage(m, 0, "0", DTA_F32, 8, 0, &s, &err), DTA_OK);
    cr_assert_eq(dtap_model_add_tensor(m, "emb.weight", 10, "", DTA_F32, 1, &shape, NULL, 0, s, 0, &err), DTA_OK);
    cr_assert_eq(dtap_model_add_tensor(m, "lm_head.weight", 14, "", DTA_F32, 1, &shape, NULL, 0, s, 0, &err), DTA_OK);
    dta_report *r = audit(m, DTA_DTYPE_NONE, NULL, 0);
    cr_assert_eq(r->total.tensors, 2);
    cr_assert_eq(r->total.nbytes, 32);
    cr_assert(m->tensors[0].shared && m->tensors[1].shared);
    dta_report_free(r);
    dta_model_free(m);
}

Test(audit, view_extent_is_checked)
{
    dta_model *m = model();
    dta_error err;
    size_t s;
    uint64_t shape[2] = {3, 4};
    int64_t stride[2] = {4, 1};
    int64_t neg[2] = {-1, 1};
    cr_assert_eq(dtap_model_add_storage(m, 0, "0", DTA_F32, 12, 0, &s, &err), DTA_OK);
    cr_assert_eq(dtap_model_add_tensor(m, "ok", 2, "", DTA_F32, 2, shape, stride, 0, s, 0, &err), DTA_OK);
    cr_assert_eq(dtap_model_add_tensor(m, "off", 3, "", DTA_F32, 2, shape, stride, 1, s, 0, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "reaches element 12"), "%s", err.msg);
    cr_assert_eq(dtap_model_add_tensor(m, "neg", 3, "", DTA_F32, 2, shape, neg, 0, s, 0, &err), DTA_E_FORMAT);
    uint64_t huge[2] = {UINT64_MAX / 2, 3};
    int64_t hs[2] = {INT64_MAX, 1};
    cr_assert_eq(dtap_model_add_tensor(m, "big", 3, "", DTA_U8, 2, huge, hs, 0, s, 0, &err), DTA_E_FORMAT);
    dta_model_free(m);
}

Test(audit, empty_model)
{
    dta_model *m = model();
    dta_report *r = audit(m, DTA_BF16, NULL, 0);
    cr_assert_eq(r->nroots, 0);
    cr_assert_eq(r->nfindings, 0);
    dta_report_free(r);
    dta_model_free(m);
}
