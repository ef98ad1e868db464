/* libFuzzer target: policy files (dta_policy_parse, policy.c) from memory. A policy that
 * parses must be self-consistent; one that does not must say why. */
#include "fuzz_common.h"
#include "dtaudit/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dta_error err = {0};
    dta_policy *p = NULL;
    if (dta_policy_parse((const char *)data, size, "policy.json", &p, &err) == DTA_OK) {
        if (!p) abort();
        if (p->underflow_share != -1 && !(p->underflow_share >= 0 && p->underflow_share <= 1)) abort();
        if (p->strict < -1 || p->strict > 1) abort();
        dta_policy_free(p);
    } else if (p || !err.msg[0]) {
        abort();
    }
    return 0;
}
