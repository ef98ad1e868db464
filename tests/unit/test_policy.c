/* Policy files (src/lib/policy.c): every key, every form of "allow", and one error per
 * kind of mistake, each naming the file and the key. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/policy.h"

static dta_status parse(const char *text, dta_policy **p, dta_error *err)
{
    memset(err, 0, sizeof *err);
    *p = NULL;
    return dta_policy_parse(text, strlen(text), "p.json", p, err);
}

Test(policy, every_key)
{
    dta_policy *p;
    dta_error err;
    cr_assert_eq(parse("{\"version\": 1, \"description\": \"bf16 except norms\", \"expect\": \"bf16\","
                       " \"allow\": [\"*norm*=f32\", \"*.inv_freq\", {\"glob\": \"lm_head*\", \"dtype\": \"F32\","
                       " \"reason\": \"tied\"}],"
                       " \"severity\": {\"mixed-module\": \"info\", \"meta-tensor\": \"off\"},"
                       " \"fail_on\": \"error\", \"$schema\": \"x\", \"comment\": \"free text\"}",
                       &p, &err),
                 DTA_OK, "%s", err.msg);
    cr_assert_str_eq(p->path, "p.json");
    cr_assert_str_eq(p->description, "bf16 except norms");
    cr_assert_eq(p->expect, DTA_BF16);
    cr_assert_eq(p->nallow, 3u);
    cr_assert_str_eq(p->allow[0].glob, "*norm*");
    cr_assert_eq(p->allow[0].dtype, DTA_F32);
    cr_assert_str_eq(p->allow[1].glob, "*.inv_freq");
    cr_assert_eq(p->allow[1].dtype, DTA_DTYPE_NONE);
    cr_assert_str_eq(p->allow[2].glob, "lm_head*");
    cr_assert_eq(p->allow[2].dtype, DTA_F32);
    cr_assert_eq(p->nseverity, 2u);
    cr_assert_str_eq(p->severity[0].rule, "mixed-module");
    cr_assert_eq(p->severity[0].severity, DTA_SEV_INFO);
    cr_assert_str_eq(p->severity[1].rule, "meta-tensor");
    cr_assert_eq(p->severity[1].severity, DTA_SEV_OFF);
    /* rule names point into the catalogue */
    cr_assert_eq(p->severity[0].rule, dta_rule_get(DTA_RULE_MIXED_MODULE)->name);
    cr_assert_eq(p->fail_on, DTA_SEV_ERROR);
    dta_policy_free(p);
}

Test(policy, absent_keys_keep_defaults_and_allow_as_object)
{
    dta_policy *p;
    dta_error err;
    cr_assert_eq(parse("  {\"allow\": {\"*norm*\": \"fp32\", \"*.bias\": null}}\n", &p, &err), DTA_OK,
                 "%s", err.msg);
    cr_assert_null(p->description);
    cr_assert_eq(p->expect, DTA_DTYPE_NONE);
    cr_assert_eq(p->fail_on, -1);
    cr_assert_eq(p->nseverity, 0u);
    cr_assert_eq(p->nallow, 2u);
    cr_assert_eq(p->allow[0].dtype, DTA_F32);
    cr_assert_eq(p->allow[1].dtype, DTA_DTYPE_NONE);
    dta_policy_free(p);
    dta_policy_free(NULL);
}

Test(policy, each_mistake_names_file_and_key)
{
    static const struct {
        const char *text, *want;
        dta_status st;
    } bad[] = {
        {"", "empty policy file", DTA_E_FORMAT},
        {"{\"expect\": \"bf16\"", "not valid JSON", DTA_E_FORMAT},
        {"{} {}", "data after the document", DTA_E_FORMAT},
        {"[1]", "a policy is a JSON object", DTA_E_FORMAT},
        {"{\"expcet\": \"bf16\"}", "unknown key 'expcet'", DTA_E_FORMAT},
        {"{\"version\": 2}", "version: only version 1", DTA_E_FORMAT},
        {"{\"expect\": \"bf17\"}", "expect: unknown dtype 'bf17'", DTA_E_FORMAT},
        {"{\"expect\": 16}", "expect: expected a dtype string", DTA_E_FORMAT},
        {"{\"allow\": [\"*norm*=f33\"]}", "allow[0]: unknown dtype 'f33'", DTA_E_FORMAT},
        {"{\"allow\": [\"=f32\"]}", "allow[0]: empty pattern", DTA_E_FORMAT},
        {"{\"allow\": \"*norm*\"}", "allow: expected an array", DTA_E_FORMAT},
        {"{\"severity\": {\"dtype-outliers\": \"info\"}}", "unknown rule", DTA_E_FORMAT},
        {"{\"severity\": {\"dtype-outlier\": \"loud\"}}", "dtype-outlier", DTA_E_FORMAT},
        {"{\"fail_on\": \"sometimes\"}", "fail_on: expected", DTA_E_FORMAT},
        {"{\"fail_on\": \"error\", \"fail_on\": \"info\"}", "fail_on: given twice", DTA_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dta_policy *p;
        dta_error err;
        cr_assert_eq(parse(bad[i].text, &p, &err), bad[i].st, "%s: %s", bad[i].text, err.msg);
        cr_assert_null(p);
        cr_assert(strncmp(err.msg, "p.json: ", 8) == 0, "%s: %s", bad[i].text, err.msg);
        cr_assert(strstr(err.msg, bad[i].want), "%s: '%s' lacks '%s'", bad[i].text, err.msg, bad[i].want);
    }
}

Test(policy, size_and_count_caps)
{
    dta_policy *p;
    dta_error err = {0};
    size_t n = DTA_MAX_POLICY_BYTES + 1;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    cr_assert_eq(dta_policy_parse(big, n, "big.json", &p, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "big.json"), "%s", err.msg);
    cr_assert_eq(dta_policy_parse(big, n - 1 - 1, "big.json", &p, &err), DTA_E_FORMAT); /* cut: not JSON */
    big[n - 2] = '}';
    cr_assert_eq(dta_policy_parse(big, n - 1, "big.json", &p, &err), DTA_OK, "%s", err.msg);
    dta_policy_free(p);
    free(big);

    /* DTA_MAX_POLICY_RULES allow entries pass, one more is the limit */
    size_t cap = 64 + (size_t)(DTA_MAX_POLICY_RULES + 1) * 8;
    char *t = malloc(cap);
    cr_assert_not_null(t);
    for (unsigned extra = 0; extra < 2; extra++) {
        size_t o = (size_t)sprintf(t, "{\"allow\": [");
        for (unsigned i = 0; i < DTA_MAX_POLICY_RULES + extra; i++)
            o += (size_t)sprintf(t + o, "%s\"a%u\"", i ? "," : "", i % 1000);
        o += (size_t)sprintf(t + o, "]}");
        dta_status st = dta_policy_parse(t, o, "n.json", &p, &err);
        cr_assert_eq(st, extra ? DTA_E_LIMIT : DTA_OK, "%u extra: %s", extra, err.msg);
        dta_policy_free(st == DTA_OK ? p : NULL);
    }
    free(t);
}

Test(policy, severity_override_names)
{
    cr_assert_eq(dta_severity_override_from_name("off"), DTA_SEV_OFF);
    cr_assert_eq(dta_severity_override_from_name("info"), DTA_SEV_INFO);
    cr_assert_eq(dta_severity_override_from_name("warning"), DTA_SEV_WARNING);
    cr_assert_eq(dta_severity_override_from_name("error"), DTA_SEV_ERROR);
    cr_assert_eq(dta_severity_override_from_name("never"), -2); /* a threshold, not a severity */
    cr_assert_eq(dta_severity_override_from_name("loud"), -2);
}

Test(policy, load_from_a_file)
{
    char path[] = "/tmp/dtaudit-policy-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *text = "{\"expect\": \"f16\"}\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    dta_policy *p = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_policy_load(path, &p, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(p->expect, DTA_F16);
    cr_assert_str_eq(p->path, path);
    dta_policy_free(p);
    unlink(path);
    cr_assert_neq(dta_policy_load(path, &p, &err), DTA_OK);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
}
