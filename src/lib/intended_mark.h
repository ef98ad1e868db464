/* Private: intended islands for some of a model's tensors (audit.c). */
#ifndef DTAP_INTENDED_MARK_H
#define DTAP_INTENDED_MARK_H

#include <stdint.h>

#include "dtaudit/intended.h"

/* dta_intended_mark over the tensors idx[0..n) of m (idx NULL: the first n), in that order:
 * dom_of[j] is tensor idx[j]'s root compute dtype and out[j] gets its rule. The rules' keys
 * (has_tensor, sibling) are still looked up among all of m's tensors. A quantized
 * checkpoint's codes and scales are most of its tensors and never islands: audit.c passes
 * only the floating tensors the dtype rules look at. */
dta_status dtap_intended_mark_some(const dta_intended *t, const dta_model *m,
                                   const uint32_t *idx, size_t n, const dta_dtype *dom_of,
                                   const dta_intended_rule **out, dta_error *err);

#endif
