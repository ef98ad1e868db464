/* dtaudit (private): GPTQModel's per-module overrides, quantization_config "dynamic"
 * (quant_dynamic.c): which modules are left unquantized ("-:PATTERN") and which have
 * their own bits / group_size ("+:PATTERN"), the first pattern matching the module name
 * at its start (Python re.match) deciding. */
#ifndef DTAUDIT_QUANT_DYNAMIC_H
#define DTAUDIT_QUANT_DYNAMIC_H

#include <limits.h>

#include "dtaudit/error.h"

#define DTAP_QDYN_ABSENT LONG_MIN /* a size the rule does not override */

typedef struct dtap_qdyn dtap_qdyn;

/* The rules of config (the quantization_config JSON text; NULL allowed); *out is NULL
 * when it has no non-empty "dynamic" object. */
dta_status dtap_qdyn_parse(const char *config, dtap_qdyn **out, dta_error *err);
void dtap_qdyn_free(dtap_qdyn *d);

enum {
    DTAP_QDYN_NONE = 0,     /* no pattern matches: the config's global sizes */
    DTAP_QDYN_OVERRIDE = 1, /* *bits / *group: the module's (DTAP_QDYN_ABSENT: the
                             * config's; group -1: one group) */
    DTAP_QDYN_SKIP = 2,     /* a "-:" pattern: the module is not quantized */
    DTAP_QDYN_UNKNOWN = 3   /* *pattern, before any match, is outside what dtaudit
                             * evaluates (lookarounds, backreferences, ...) */
};

/* The rule for module (d NULL: DTAP_QDYN_NONE); *pattern (optional) gets the deciding
 * pattern as written, NULL for none. */
int dtap_qdyn_match(const dtap_qdyn *d, const char *module, long *bits, long *group,
                    const char **pattern);

#endif
