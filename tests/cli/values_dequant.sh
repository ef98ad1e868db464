#!/bin/sh
# audit --values on quantized parameters: their dequantized values (block FP8 with every
# E4M3 code and scales on the f16/bf16/f32 boundaries) counted exactly as a numpy reference
# and as convert --dequantize counts them (tests/interop/values_dequant_reference.py).
# Skips (77) without numpy/torch.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/values_dequant_reference.py "$DTAUDIT"
