#!/bin/sh
# convert --dequantize of ComfyUI scaled FP8 and comfy_quant nvfp4 / mxfp8 /
# int8_tensorwise: against an independent reference written from the quantization brief
# (tests/interop/dequant_comfy_reference.py: legacy scaled_fp8 and comfy_quant files, every
# float8 / E2M1 / int8 code, per-tensor, per-row and swizzled block scales, three targets,
# overflow, padding and format refusals; skips without numpy/torch), and against ComfyUI's
# own code on the committed fixtures (tests/interop/dequant_comfy_real.py,
# tests/dequant/comfy: torch's qdata.to(dtype) * scale and dtaudit's documented nvfp4 order
# bit for bit; comfy-kitchen's eager backend: the recorded differing elements and ulps).
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_comfy_real.py "$DTAUDIT" tests/dequant/comfy
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
"$PYTHON" tests/interop/dequant_comfy_reference.py "$DTAUDIT"
rc=$?
[ "$rc" -eq 77 ] && { echo "note: the reference part skipped (no numpy/torch)"; exit 0; }
exit "$rc"
