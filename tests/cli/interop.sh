#!/bin/sh
# dtaudit reads files exactly as the real safetensors package and real PyTorch do.
# Skips (77) only when neither package is available.
. "$(dirname "$0")/lib.sh"
py_start
set +e
py tests/interop/safetensors_interop.py "$DTAUDIT" tests/fixtures/interop tests/fixtures/good tests/fixtures/seeds
st=$?
py tests/interop/torch_compare.py --dtaudit "$DTAUDIT"
tt=$?
[ $st -eq 77 ] && [ $tt -eq 77 ] && exit 77
[ $st -eq 0 ] || [ $st -eq 77 ] || exit 1
[ $tt -eq 0 ] || [ $tt -eq 77 ] || exit 1
exit 0
