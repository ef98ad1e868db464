#!/bin/sh
# dtaudit reads safetensors files exactly as the real safetensors package does.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/safetensors_interop.py "$DTAUDIT" tests/fixtures/interop tests/fixtures/good tests/fixtures/seeds
exit $?
