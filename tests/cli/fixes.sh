#!/bin/sh
# Every fix printed runs and clears its finding without raising another, and convert
# --to auto normalises every fixture whose findings are dtype findings (tests/cli/fixes.py).
. "$(dirname "$0")/lib.sh"
py_start
py -c 'import torch, safetensors' 2>/dev/null || { echo "SKIP: torch/safetensors not importable by $PYTHON"; exit 77; }
py scripts/make-intended-fixtures.py "$TMP/ifx" || { echo "FAIL: fixture generation"; exit 1; }
py tests/quant/make_layouts.py "$TMP/q" || { echo "FAIL: quantized layouts"; exit 1; }
mkdir -p "$TMP/work"
py tests/cli/fixes.py "$DTAUDIT" "$TMP/work" "$TMP/ifx" "$TMP/q"
