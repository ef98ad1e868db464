#!/bin/sh
# audit --values counts equal a numpy reference on generated boundary fixtures in every
# format (tests/interop/values_reference.py). Skips (77) without numpy/torch/safetensors.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/values_reference.py "$DTAUDIT"
