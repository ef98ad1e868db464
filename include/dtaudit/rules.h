/* dtaudit: the rule catalogue. Every finding (audit), reader note and change (diff) has a
 * rule; each rule exists once, as an enum value here and one entry of the table in
 * src/lib/rules.c, and everything else derives from that entry: the default severity of
 * findings and changes, --help's rule list, SARIF's tool.driver.rules, policy validation
 * ("severity": {"RULE": ...}), the sort order of findings. tests/unit/test_rules.c fails
 * when man/dtaudit.1 does not document exactly the rules of the catalogue, each in the
 * section and with the default severity the entry says. How to add a rule: the comment at
 * the top of src/lib/rules.c.
 *
 * dta_rule_info entries are static and never change at run time. The layout of
 * dta_rule_info is stable: fields are only ever added at the end. */
#ifndef DTAUDIT_RULES_H
#define DTAUDIT_RULES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DTA_SEV_INFO = 0,
    DTA_SEV_WARNING,
    DTA_SEV_ERROR,
    DTA_SEV_NEVER /* only as a --fail-on threshold */
} dta_severity;

/* The values are indexes into the catalogue (dta_rules()). New rules are appended just
 * before DTA_RULE_COUNT; existing values never change. */
typedef enum {
    DTA_RULE_DTYPE_OUTLIER = 0,
    DTA_RULE_MIXED_MODULE,
    DTA_RULE_EXPECT_MISMATCH,
    DTA_RULE_CONFIG_MISMATCH,
    DTA_RULE_ADAPTER_MISMATCH,
    DTA_RULE_INDEX_MISMATCH,
    DTA_RULE_UNSAFE_PICKLE,
    DTA_RULE_META_TENSOR,
    DTA_RULE_COMPRESSED_RECORD,
    DTA_RULE_WEIGHTS_CHOICE,
    DTA_RULE_QUANTIZATION,
    DTA_RULE_ADAPTER_CONFIG,
    DTA_RULE_NUMPY_ARRAY,
    DTA_RULE_BYTEORDER,
    DTA_RULE_DTYPE_CHANGED,
    DTA_RULE_SHAPE_CHANGED,
    DTA_RULE_TENSOR_ADDED,
    DTA_RULE_TENSOR_REMOVED,
    DTA_RULE_NONFINITE,           /* audit --values */
    DTA_RULE_RANGE_OVERFLOW,
    DTA_RULE_PRECISION_UNDERFLOW,
    DTA_RULE_INTENDED,
    DTA_RULE_QUANT_INCOMPLETE,    /* quantized checkpoints (quant.h) */
    DTA_RULE_QUANT_COVERAGE,
    DTA_RULE_QUANT_CONFIG,
    DTA_RULE_QUANT_CAST,
    /* append new rules here */
    DTA_RULE_COUNT
} dta_rule;

/* One rule dtaudit can report: the audit rules, reader notes and diff rules. */
typedef struct {
    const char *name;        /* "dtype-outlier": the stable name in JSON, SARIF, policies */
    dta_severity severity;   /* default; a policy may override it */
    const char *command;     /* "audit" or "diff" */
    const char *summary;     /* one line */
    const char *help;        /* a paragraph: why it matters and how to fix or allow it */
    const char *man_section; /* the dtaudit(1) section that documents it: "RULES", "DIFF" */
    /* fields below added with the enum; all set for every rule */
    dta_rule id;             /* its own index: dta_rules()[id].id == id */
    const char *category;    /* "correctness" or "security" (SARIF tags) */
    const char *help_uri;    /* SARIF helpUri: where the rule is documented */
    const char *security_severity; /* SARIF security-severity ("8.8"), NULL when not security */
    unsigned rank;           /* findings sort by rank (1 first); 0 sorts after every ranked rule */
} dta_rule_info;

/* The catalogue, indexed by dta_rule; *n gets its length (DTA_RULE_COUNT). */
const dta_rule_info *dta_rules(size_t *n);
/* NULL when name is not a rule of the catalogue. */
const dta_rule_info *dta_rule_find(const char *name);
/* The entry of a rule; NULL when id is out of range. */
const dta_rule_info *dta_rule_get(dta_rule id);
/* Its name; "?" when id is out of range. */
const char *dta_rule_name(dta_rule id);

#ifdef __cplusplus
}
#endif
#endif
