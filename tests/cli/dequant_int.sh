#!/bin/sh
# convert --dequantize of bitsandbytes (4-bit nf4/fp4 with double quantization, LLM.int8)
# against an independent numpy reference written from the quantization brief
# (tests/interop/dequant_int_reference.py): odd sizes, blocks across rows, zero absmax,
# quant_storage, overflow, verify, audit of the output, refusals.
# Skips (77) without numpy/torch.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_int_reference.py "$DTAUDIT"
