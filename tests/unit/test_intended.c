/* The intended-precision table: pattern semantics, the compiled-in table, parse errors and
 * matching on synthetic models (model_type keys, sibling, when). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/audit.h"
#include "dtaudit/intended.h"
#include "model_build.h"

Test(intended, dotted_components)
{
    cr_assert(dta_intended_pattern_matches("wo", "encoder.block.0.layer.1.DenseReluDense.wo.weight"));
    cr_assert(!dta_intended_pattern_matches("wo", "embeddings.word_embeddings.weight"));
    cr_assert(dta_intended_pattern_matches("gate.weight", "model.layers.3.mlp.gate.weight"));
    cr_assert(!dta_intended_pattern_matches("gate.weight", "model.layers.3.mlp.gate_proj.weight"));
    cr_assert(dta_intended_pattern_matches("A_log", "backbone.layers.0.mixer.A_log"));
    cr_assert(!dta_intended_pattern_matches("A_log", "x.A_log_extra"));
    cr_assert(dta_intended_pattern_matches("hc_attn_*", "layers.2.hc_attn_fn"));
    cr_assert(!dta_intended_pattern_matches("hc_attn_*", "layers.2.hc_ffn_fn"));
    cr_assert(dta_intended_pattern_matches("ln_*", "visual.transformer.resblocks.0.ln_1.weight"));
    cr_assert(dta_intended_pattern_matches("layers.*.mlp", "model.layers.7.mlp.gate.weight"));
    cr_assert(!dta_intended_pattern_matches("layers.*.mlp", "model.layers.7.attn.mlp_x"));
    cr_assert(dta_intended_pattern_matches("inv_freq", "inv_freq"));
    cr_assert(!dta_intended_pattern_matches("", "x"));
    cr_assert(!dta_intended_pattern_matches("a.b", "a"));
}

Test(intended, builtin_table)
{
    dta_intended *t;
    dta_error err;
    cr_assert_eq(dta_intended_builtin(&t, &err), DTA_OK, "%s", err.msg);
    size_t n;
    const dta_intended_rule *r = dta_intended_rules(t, &n);
    cr_assert_geq(n, 90);
    cr_assert_str_eq(dta_intended_source_version(t), "transformers 5.24.0");
    size_t generated = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(r[i].npatterns > 0 && r[i].dtypes != 0 && r[i].id[0], "rule %zu", i);
        for (size_t k = i + 1; k < n; k++)
            cr_assert_str_neq(r[i].id, r[k].id, "duplicate id %s", r[i].id);
        generated += strcmp(r[i].origin, "transformers") == 0;
    }
    cr_assert_eq(generated, 63); /* intended.md appendix A: 63 (model_type, list) pairs */
    dta_intended_free(t);
}

Test(intended, parse_errors)
{
    static const struct { const char *json, *msg; } bad[] = {
        {"[{\"patterns\": [\"a\"], \"dtypes\": [\"F32\"]}]", "\"id\""},
        {"[{\"id\": \"x\", \"dtypes\": [\"F32\"]}]", "\"patterns\""},
        {"[{\"id\": \"x\", \"patterns\": [\"a\"], \"dtypes\": [\"I64\"]}]", "not a floating dtype"},
        {"[{\"id\": \"x\", \"patterns\": [\"a\"], \"dtypes\": [\"F32\"], \"when\": \"bf16\"}]", "\"when\""},
        {"[{\"id\": \"x\", \"patterns\": [\".a\"], \"dtypes\": [\"F32\"]}]", "pattern"},
        {"[{\"id\": \"x\", \"patterns\": [\"a\"], \"dtypes\": [\"F32\"], \"match\": {\"model\": \"t5\"}}]", "match.model"},
        {"[{\"id\": \"x\", \"patterns\": [\"a\"], \"dtypes\": [\"F32\"], \"sibling\": \"a.b\"}]", "sibling"},
        {"{\"rules\": 3}", "array"},
        {"[1", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dta_intended *t = NULL;
        dta_error err;
        cr_assert_eq(dta_intended_parse(bad[i].json, strlen(bad[i].json), "p.json", "policy", &t,
                                        &err),
                     DTA_E_FORMAT, "case %zu", i);
        cr_assert_null(t);
        cr_assert(strstr(err.msg, bad[i].msg) && strncmp(err.msg, "p.json: ", 8) == 0,
                  "case %zu: %s", i, err.msg);
    }
}

static void add(dta_model *m, const char *name, dta_dtype t, uint64_t n)
{
    dta_error err;
    size_t s;
    cr_assert_eq(dtap_model_add_storage(m, 0, NULL, t, n, 0, &s, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_model_add_tensor(m, name, strlen(name), "", t, 1, &n, NULL, 0, s, 0, &err),
                 DTA_OK, "%s", err.msg);
}

/* A local table: a model_type-keyed fp16-only rule and a sibling rule. */
Test(intended, mark_and_audit)
{
    static const char json[] =
        "[{\"id\": \"l.wo\", \"match\": {\"model_type\": [\"t5\"]}, \"patterns\": [\"wo\"],"
        "  \"dtypes\": [\"F32\"], \"when\": \"fp16\"},"
        " {\"id\": \"l.d\", \"patterns\": [\"D\"], \"sibling\": \"A_log\", \"dtypes\": [\"F32\"]}]";
    dta_intended *t;
    dta_error err;
    cr_assert_eq(dta_intended_parse(json, strlen(json), "local", "policy", &t, &err), DTA_OK, "%s",
                 err.msg);
    dta_model *m = dtap_model_new("mem", &err);
    cr_assert_eq(dtap_model_add_file(m, "mem", DTA_FORMAT_UNKNOWN, NULL, &err), DTA_OK);
    add(m, "a.wo.weight", DTA_F32, 4);
    add(m, "a.wi.weight", DTA_F16, 64);
    add(m, "m.D", DTA_F32, 4);
    add(m, "m.A_log", DTA_F32, 4);
    add(m, "n.D", DTA_F32, 4); /* no A_log beside it */
    dta_dtype dom[5] = {DTA_F16, DTA_F16, DTA_F16, DTA_F16, DTA_F16};
    const dta_intended_rule *out[5];
    /* no model_type: only the sibling rule applies */
    cr_assert_eq(dta_intended_mark(t, m, dom, out, &err), DTA_OK);
    cr_assert(!out[0] && !out[1] && out[2] && !strcmp(out[2]->id, "l.d") && !out[3] && !out[4]);
    m->model_types = calloc(1, sizeof *m->model_types);
    m->model_types[0] = strdup("t5");
    m->nmodel_types = 1;
    cr_assert_eq(dta_intended_mark(t, m, dom, out, &err), DTA_OK);
    cr_assert(out[0] && !strcmp(out[0]->id, "l.wo"));
    /* fp16 only: beside BF16 the wo rule does not apply */
    for (int i = 0; i < 5; i++)
        dom[i] = DTA_BF16;
    cr_assert_eq(dta_intended_mark(t, m, dom, out, &err), DTA_OK);
    cr_assert(!out[0]);

    /* audit: the F16 root excuses wo and m.D; n.D and m.A_log (no rule) still count */
    dta_audit_options o = {.expect = DTA_DTYPE_NONE, .findings = true, .intended = t};
    dta_report *r;
    cr_assert_eq(dta_report_build(m, &o, &r, &err), DTA_OK, "%s", err.msg);
    size_t nint = 0, nother = 0;
    for (size_t i = 0; i < r->nfindings; i++) {
        if (!strcmp(r->findings[i].rule, "intended"))
            nint++;
        else
            nother++;
    }
    cr_assert_eq(nint, 2);
    cr_assert_geq(nother, 1);
    cr_assert(r->intended[0] && r->intended[2] && !r->intended[4]);
    dta_report_free(r);
    o.strict = true;
    cr_assert_eq(dta_report_build(m, &o, &r, &err), DTA_OK, "%s", err.msg);
    for (size_t i = 0; i < r->nfindings; i++)
        cr_assert_str_neq(r->findings[i].rule, "intended");
    dta_report_free(r);
    dta_model_free(m);
    dta_intended_free(t);
}
