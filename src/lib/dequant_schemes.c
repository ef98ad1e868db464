/* The registry of dequantization scheme modules (dequant_scheme.h): one line per module.
 * dequant.c looks a parameter's scheme up here; the modules themselves only use
 * dequant_src.c, so nothing calls back into dequant.c. */
#include <stdio.h>

#include "dequant_scheme.h"

static const dtap_dq_ops *const scheme_ops[] = {
    &dtap_dq_mxfp4_ops,
    &dtap_dq_modelopt_nvfp4_ops,
    &dtap_dq_ct_nvfp4_ops,
    &dtap_dq_ct_mxfp4_ops,
    &dtap_dq_bnb4_ops,
    &dtap_dq_bnb8_ops,
    &dtap_dq_gptq_ops,
    &dtap_dq_awq_ops,
    &dtap_dq_ct_pack_ops,
    &dtap_dq_comfy_fp8_ops,
    &dtap_dq_comfy_quant_ops,
};

#define NOPS (sizeof scheme_ops / sizeof scheme_ops[0])

const dtap_dq_ops *dtap_dq_find_ops(dta_quant_scheme s)
{
    for (size_t i = 0; i < NOPS; i++)
        if (scheme_ops[i]->scheme == s)
            return scheme_ops[i];
    return NULL;
}

size_t dtap_dq_nops(void) { return NOPS; }

const dtap_dq_ops *dtap_dq_ops_at(size_t i) { return i < NOPS ? scheme_ops[i] : NULL; }
