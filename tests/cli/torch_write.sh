#!/bin/sh
# The torch zip writer against real PyTorch (tests/interop/torch_roundtrip.py) and
# dtaudit convert against real PyTorch and safetensors (tests/interop/convert_interop.py).
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/torch_roundtrip.py
a=$?
"$PYTHON" tests/interop/convert_interop.py "$DTAUDIT"
b=$?
[ $a -eq 77 ] && [ $b -eq 77 ] && exit 77
{ [ $a -eq 0 ] || [ $a -eq 77 ]; } && { [ $b -eq 0 ] || [ $b -eq 77 ]; } && exit 0
exit 1
