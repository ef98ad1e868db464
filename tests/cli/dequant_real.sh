#!/bin/sh
# convert --dequantize of the committed real bitsandbytes fixtures (NF4 + double quant,
# FP4, LLM.int8) equals bitsandbytes' own dequantization, by SHA-256 per tensor and target
# (tests/fixtures/quant/dequant_expected.json from tests/quant/gen_dequant_expected.py).
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_real_check.py "$DTAUDIT" tests/fixtures/quant
