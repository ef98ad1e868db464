/* libFuzzer target: any reader (dta_model_open_memory, the public entry point) then the audit
 * (dta_report_build) on the model, with findings on, an expected dtype taken from the
 * input's length, and a couple of --allow globs. */
#include "fuzz_common.h"
#include "dtaudit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dta_error err = {0};
    dta_model *m = NULL;
    dta_status st = dta_model_open_memory(FUZZ_SRC_NAME, data, size, &m, &err);
    if (st != DTA_OK) {
        if (!err.msg[0] || m) abort();
        return 0;
    }
    static const dta_allow allow[] = {
        {"*.norm*", DTA_DTYPE_NONE},
        {"lm_head*", DTA_F32},
        {"*bias", DTA_F16},
    };
    static const dta_dtype expects[] = {DTA_DTYPE_NONE, DTA_BF16, DTA_F16, DTA_F32, DTA_F8_E4M3};
    for (int pass = 0; pass < 2; pass++) {
        dta_audit_options o = {
            .expect = pass ? expects[size % 5] : DTA_DTYPE_NONE,
            .allow = pass ? allow : NULL,
            .nallow = pass ? sizeof allow / sizeof allow[0] : 0,
            .findings = pass != 0,
        };
        dta_report *r = NULL;
        if (dta_report_build(m, &o, &r, &err) == DTA_OK) {
            if (!r) abort();
            for (size_t i = 0; i < r->nfindings; i++)
                if (r->findings[i].root_index != SIZE_MAX && r->findings[i].root_index >= r->nroots)
                    abort();
            dta_report_free(r);
        } else if (r || !err.msg[0]) {
            abort();
        }
    }
    dta_model_free(m);
    return 0;
}
