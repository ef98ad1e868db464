#!/bin/sh
# convert --dequantize against an independent numpy/torch reference written from the
# quantization brief (tests/interop/dequant_reference.py): block FP8 with ragged blocks
# and F32/BF16/F16/E8M0 scales across shards, per-tensor and per-row FP8, every float8
# code, zero and subnormal scales, overflow, verify, audit of the output, refusals.
# Skips (77) without numpy/torch.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_reference.py "$DTAUDIT"
