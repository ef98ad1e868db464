/* dtaudit: the umbrella header. An embedder includes this one file:
 *
 *     #include <dtaudit/dtaudit.h>
 *     cc prog.c $(pkg-config --cflags --libs dtaudit)
 *
 * Conventions of every header below:
 *   - public names start with dta_ (DTA_ for macros); dtap_ names are private;
 *   - a call that can fail returns dta_status and takes a dta_error * last (may be NULL);
 *   - dta_thing_open / dta_thing_free pairs; free accepts NULL;
 *   - getters return borrowed const pointers, valid until their owner is freed;
 *   - the library never prints, exits, reads the environment or argv.
 *
 * Linking: libdtaudit exports only dta_* symbols; its SONAME (libdtaudit.so.N) changes
 * when the ABI below changes incompatibly.
 *
 * Struct layouts:
 *   - opaque (only pointers; use the functions): dta_intended, dta_cuda_pipe;
 *   - results the library allocates and the caller reads, never allocates or copies:
 *     dta_model (and dta_file, dta_tensor, dta_storage, dta_note, dta_kv, dta_adapter in
 *     it), dta_report (dta_root_summary, dta_module, dta_finding, dta_count, ...), dta_diff
 *     (dta_change, dta_diff_root, dta_dtype_move), dta_policy, dta_values, the convert and
 *     verify results. Their fields are documented and stay; new fields are only appended,
 *     so code that reads them keeps working across a minor release. They hold no private
 *     fields: the library keeps its bookkeeping outside them;
 *   - structs the caller fills (dta_error, dta_audit_options, dta_diff_options,
 *     dta_convert_options, dta_values_options, dta_allow, dta_rule_severity, ...): fields
 *     are only appended; initialise them with designated initialisers ({.expect = ...}) so
 *     fields added later start at zero, which always means "default";
 *   - static tables (dta_dtype_info, dta_rule_info, dta_intended_rule): fields only
 *     appended; entries never move (they are indexed by their enum).
 */
#ifndef DTAUDIT_DTAUDIT_H
#define DTAUDIT_DTAUDIT_H

#include "dtaudit/version.h"
#include "dtaudit/error.h"
#include "dtaudit/dtype.h"
#include "dtaudit/limits.h"
#include "dtaudit/rules.h"
#include "dtaudit/model.h"
#include "dtaudit/intended.h"
#include "dtaudit/policy.h"
#include "dtaudit/values.h"
#include "dtaudit/audit.h"
#include "dtaudit/quant.h"
#include "dtaudit/diff.h"
#include "dtaudit/convert.h"
#include "dtaudit/backend.h"

#endif
