#!/bin/sh
# Files readers could disagree on: dtaudit refuses them or reports what the real torch
# loads and flags what it would run (tests/interop/differential.py). Skips (77, with a
# message) when torch is not importable.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/differential.py "$DTAUDIT"
exit $?
