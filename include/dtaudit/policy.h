/* dtaudit: audit policies (--policy FILE). The rule catalogue is in dtaudit/rules.h.
 *
 * A policy is a JSON object (all keys optional, unknown keys are an error so that a typo
 * cannot silently weaken a CI gate):
 *
 *   {
 *     "version": 1,
 *     "description": "bf16 except norms and rotary inv_freq in fp32",
 *     "expect": "bf16",
 *     "allow": ["*norm*=f32", {"glob": "*.inv_freq", "dtype": "f32", "reason": "..."}],
 *     "severity": {"dtype-outlier": "error", "mixed-module": "info", "meta-tensor": "off"},
 *     "fail_on": "warning",
 *     "underflow_share": 0.001,
 *     "strict": false,
 *     "intended": [{"id": "local.router", "match": {"model_type": ["my_moe"]},
 *                   "patterns": ["router.weight"], "dtypes": ["F32"], "when": "half",
 *                   "why": "...", "evidence": "..."}]
 *   }
 *
 * "allow" is an array of "GLOB[=DTYPE]" strings or {"glob", "dtype"?, "reason"?} objects,
 * or an object {GLOB: DTYPE-or-null}. "severity" maps a rule of the catalogue to
 * error|warning|info, or "off" to drop its findings. "underflow_share" (0 to 1, default
 * 0.001) is the share of a tensor's nonzero values that may become zero in the target of
 * audit --values before precision-underflow fires. The library applies severities in
 * dta_report_build (dta_audit_options.severity) and dta_diff_build.
 *
 * Ownership: a dta_policy owns every string reachable from it. */
#ifndef DTAUDIT_POLICY_H
#define DTAUDIT_POLICY_H

#include <stddef.h>

#include "dtaudit/audit.h"
#include "dtaudit/limits.h"
#include "dtaudit/rules.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dta_policy {
    char *path;              /* the file it was read from */
    char *description;       /* NULL when absent */
    dta_dtype expect;        /* DTA_DTYPE_NONE when absent */
    dta_allow *allow;        /* globs owned by the policy */
    size_t nallow;
    dta_rule_severity *severity;
    size_t nseverity;
    int fail_on;             /* a dta_severity, -1 when absent */
    double underflow_share;  /* precision-underflow threshold in [0, 1], -1 when absent */
    int strict;              /* "strict": 1 true, 0 false, -1 absent */
    dta_intended *intended;  /* "intended": local rules (NULL when absent); a caller may take
                              * it (dta_intended_prepend) and set it to NULL */
} dta_policy;

/* Reads and checks a policy file. Errors name the file and the offending key:
 * "policy.json: allow[2]: unknown dtype 'f33'". */
dta_status dta_policy_load(const char *path, dta_policy **out, dta_error *err);
/* The same from memory (n bytes, need not be NUL-terminated); name is used in messages. */
dta_status dta_policy_parse(const char *text, size_t n, const char *name, dta_policy **out,
                            dta_error *err);
void dta_policy_free(dta_policy *p);

/* "error", "warning", "info" -> severity, "off" -> DTA_SEV_OFF; -2 when unknown. */
int dta_severity_override_from_name(const char *s);

#ifdef __cplusplus
}
#endif
#endif
