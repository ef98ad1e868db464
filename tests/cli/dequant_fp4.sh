#!/bin/sh
# convert --dequantize of gpt-oss MXFP4, ModelOpt NVFP4 and compressed-tensors
# nvfp4-pack-quantized against an independent numpy/torch reference written from the
# quantization brief (tests/interop/dequant_fp4_reference.py): every E2M1 code, E8M0 0/1/
# 254/255, the expert transpose, a matrix past the column slab, sharded blocks and scales,
# zero/subnormal block scales, odd packed widths, ModelOpt NVFP4 expert stacks ([E, in/2,
# out] codes as the exporter stores them), verify, audit, refusals.
# Skips (77) without numpy/torch.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_fp4_reference.py "$DTAUDIT"
