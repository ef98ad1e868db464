/* Private: the value rules of audit --values (values_findings.c), called by audit.c. */
#ifndef DTAP_VALUES_AUDIT_H
#define DTAP_VALUES_AUDIT_H

#include "dtaudit/audit.h"
#include "dtaudit/values.h"
#include "model_build.h"

/* Appends nonfinite, range-overflow and precision-underflow findings for opt->values to r:
 * one finding per (rule, root, module, dtype), listing the module's tensors with the
 * problem, worst first. tensor_root maps tensor -> r->roots index; allowed marks tensors
 * under --allow and intended (may be NULL) the intended-precision islands: both stay in
 * their dtype (convert --keep-intended), so no range rules for them. */
dta_status dtap_values_findings(dta_report *r, const dta_model *m, const dta_audit_options *opt,
                                const size_t *tensor_root, const bool *allowed,
                                const dta_intended_rule *const *intended, dta_error *err);

/* The tensor is under one of the audit's --allow entries (inline: audit.c and
 * values_findings.c both ask, and neither calls into the other). */
static inline bool dtap_tensor_allowed(const dta_audit_options *o, const dta_tensor *t)
{
    for (size_t i = 0; o && i < o->nallow; i++) {
        const dta_allow *a = &o->allow[i];
        if ((a->dtype == DTA_DTYPE_NONE || a->dtype == t->dtype) &&
            dtap_name_matches(a->glob, t->name))
            return true;
    }
    return false;
}

/* How bad a value finding is, for ordering (larger first); 0 for other findings. */
double dtap_values_badness(const dta_finding *f);

#endif
