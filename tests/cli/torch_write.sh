#!/bin/sh
# The torch zip writer against real PyTorch (tests/interop/torch_roundtrip.py) and
# dtaudit convert against real PyTorch and safetensors (tests/interop/convert_interop.py),
# and both against torch 2.x files when torch >= 2.1 is the interpreter's
# (tests/interop/torch2_check.py).
. "$(dirname "$0")/lib.sh"
py_start
set +e
py tests/interop/torch_roundtrip.py
a=$?
py tests/interop/convert_interop.py "$DTAUDIT"
b=$?
# torch >= 2.1 only (float8, uint16, v3 files written by real torch 2.x); skips otherwise
py tests/interop/torch2_check.py
c=$?
[ $c -eq 0 ] || [ $c -eq 77 ] || exit 1
[ $a -eq 77 ] && [ $b -eq 77 ] && exit 77
{ [ $a -eq 0 ] || [ $a -eq 77 ]; } && { [ $b -eq 0 ] || [ $b -eq 77 ]; } && exit 0
exit 1
