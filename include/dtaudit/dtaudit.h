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
#include "dtaudit/audit.h"
#include "dtaudit/diff.h"
#include "dtaudit/convert.h"
#include "dtaudit/backend.h"

#endif
