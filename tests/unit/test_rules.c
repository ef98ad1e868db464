/* The rule catalogue (rules.c) is complete, self-consistent, and documented exactly by the
 * man page: every rule in the section its entry names, with its default severity, and no
 * rule in the man page that the catalogue lacks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/audit.h"
#include "dtaudit/diff.h"
#include "dtaudit/policy.h"
#include "dtaudit/rules.h"

Test(rules, every_entry_is_filled_and_indexed_by_its_enum)
{
    size_t n = 0;
    const dta_rule_info *r = dta_rules(&n);
    cr_assert_eq(n, (size_t)DTA_RULE_COUNT);
    for (size_t i = 0; i < n; i++) {
        cr_assert(r[i].name && r[i].name[0], "rule %zu has no entry in rules.c", i);
        cr_assert_eq((size_t)r[i].id, i, "%s: .id is %d, its index %zu", r[i].name, (int)r[i].id, i);
        cr_assert(r[i].summary && r[i].summary[0] && r[i].help && r[i].help[0], "%s", r[i].name);
        cr_assert(r[i].command && (!strcmp(r[i].command, "audit") || !strcmp(r[i].command, "diff")),
                  "%s: command", r[i].name);
        cr_assert(r[i].category &&
                      (!strcmp(r[i].category, "correctness") || !strcmp(r[i].category, "security")),
                  "%s: category", r[i].name);
        cr_assert((r[i].security_severity != NULL) == !strcmp(r[i].category, "security"),
                  "%s: security_severity goes with category security", r[i].name);
        cr_assert(r[i].man_section &&
                      (!strcmp(r[i].man_section, "RULES") || !strcmp(r[i].man_section, "DIFF")),
                  "%s: man_section", r[i].name);
        cr_assert(r[i].help_uri && strchr(r[i].help_uri, ':'), "%s: help_uri is not absolute",
                  r[i].name);
        cr_assert(r[i].severity >= DTA_SEV_INFO && r[i].severity <= DTA_SEV_ERROR, "%s", r[i].name);
        for (const char *p = r[i].name; *p; p++)
            cr_assert((*p >= 'a' && *p <= 'z') || *p == '-', "%s: name", r[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(r[i].name, r[j].name);
        cr_assert_eq(dta_rule_find(r[i].name), &r[i]);
        cr_assert_eq(dta_rule_get((dta_rule)i), &r[i]);
        cr_assert_str_eq(dta_rule_name((dta_rule)i), r[i].name);
    }
    cr_assert_null(dta_rule_find("no-such-rule"));
    cr_assert_null(dta_rule_find(NULL));
    cr_assert_null(dta_rule_get(DTA_RULE_COUNT));
    cr_assert_str_eq(dta_rule_name(DTA_RULE_COUNT), "?");
}

Test(rules, ranks_keep_the_documented_finding_order)
{
    /* text and JSON list findings in this order (golden files depend on it) */
    const dta_rule order[] = {DTA_RULE_UNSAFE_PICKLE,    DTA_RULE_INDEX_MISMATCH,
                              DTA_RULE_EXPECT_MISMATCH,  DTA_RULE_CONFIG_MISMATCH,
                              DTA_RULE_ADAPTER_MISMATCH, DTA_RULE_DTYPE_OUTLIER,
                              DTA_RULE_MIXED_MODULE,     DTA_RULE_META_TENSOR};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        cr_assert_eq(dta_rule_get(order[i])->rank, i + 1, "%s", dta_rule_name(order[i]));
}

Test(rules, diff_kinds_are_catalogue_rules)
{
    for (int k = 0; k < DTA_CHANGE_KINDS; k++) {
        const dta_rule_info *r = dta_rule_find(dta_change_rule((dta_change_kind)k));
        cr_assert_not_null(r, "kind %d", k);
        cr_assert_str_eq(r->command, "diff");
    }
}

Test(rules, policy_accepts_exactly_the_catalogue)
{
    size_t n = 0;
    const dta_rule_info *r = dta_rules(&n);
    for (size_t i = 0; i < n; i++) {
        char text[256];
        int len = snprintf(text, sizeof text, "{\"severity\": {\"%s\": \"info\"}}", r[i].name);
        dta_policy *p = NULL;
        dta_error err = {0};
        cr_assert_eq(dta_policy_parse(text, (size_t)len, "p.json", &p, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(p->nseverity, 1u);
        cr_assert_str_eq(p->severity[0].rule, r[i].name);
        dta_policy_free(p);
    }
    dta_policy *p = NULL;
    dta_error err = {0};
    const char *bad = "{\"severity\": {\"dtype-outliers\": \"info\"}}";
    cr_assert_eq(dta_policy_parse(bad, strlen(bad), "p.json", &p, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "unknown rule"), "%s", err.msg);
}

/* ---- the man page ---------------------------------------------------------------- */

typedef struct {
    char name[64], section[32], severity[16];
} man_rule;

/* Items ".TP" then ".BR name \" (severity)\"" in sections RULES and DIFF: the form every
 * rule's documentation takes (see the comment at the top of rules.c). */
static size_t man_rules(man_rule *out, size_t cap)
{
    char path[1024], line[1024], section[32] = "";
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/man/dtaudit.1", src ? src : ".");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = 0;
    bool after_tp = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, ".SH ", 4)) {
            snprintf(section, sizeof section, "%s", line + 4);
            after_tp = false;
            continue;
        }
        if (after_tp && (!strcmp(section, "RULES") || !strcmp(section, "DIFF"))) {
            char name[64], sev[16];
            if (sscanf(line, ".BR %63[a-z-] \" (%15[a-z])\"", name, sev) == 2) {
                cr_assert(n < cap);
                snprintf(out[n].name, sizeof out[n].name, "%s", name);
                snprintf(out[n].section, sizeof out[n].section, "%s", section);
                snprintf(out[n].severity, sizeof out[n].severity, "%s", sev);
                n++;
            } else {
                cr_assert(strncmp(line, ".BR ", 4) != 0 || !strstr(line, "\" ("),
                          "man page: rule item not in the form '.BR name \" (severity)\"': %s",
                          line);
            }
        }
        after_tp = !strcmp(line, ".TP");
    }
    fclose(f);
    return n;
}

Test(rules, man_page_documents_exactly_the_catalogue)
{
    man_rule man[256];
    size_t nman = man_rules(man, 256), n = 0;
    const dta_rule_info *r = dta_rules(&n);
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t j = 0; j < nman; j++) {
            if (strcmp(man[j].name, r[i].name))
                continue;
            found++;
            cr_expect_str_eq(man[j].section, r[i].man_section,
                             "man page documents %s in section %s, the catalogue says %s",
                             r[i].name, man[j].section, r[i].man_section);
            cr_expect_str_eq(man[j].severity, dta_severity_name(r[i].severity),
                             "man page gives %s the default severity %s, the catalogue %s",
                             r[i].name, man[j].severity, dta_severity_name(r[i].severity));
        }
        cr_expect_eq(found, 1u, "man page documents rule %s %zu times (want 1: '.TP' then "
                     "'.BR %s \" (%s)\"' in section %s)",
                     r[i].name, found, r[i].name, dta_severity_name(r[i].severity),
                     r[i].man_section);
    }
    for (size_t j = 0; j < nman; j++)
        cr_expect_not_null(dta_rule_find(man[j].name),
                           "man page documents rule %s, which the catalogue (rules.c) lacks",
                           man[j].name);
    cr_assert_eq(nman, n, "man page lists %zu rules, the catalogue %zu", nman, n);
}
