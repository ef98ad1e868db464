#!/bin/sh
# convert --dequantize against compressed-tensors' own decompressors: committed fixtures
# (tests/dequant/ct, generator tests/dequant/make_ct_fixtures.py, versions in VERSIONS)
# of pack-quantized int4 (group, asymmetric with packed zero points; channel), int8 and
# nvfp4-pack-quantized; the BF16 output must equal the library's byte for byte.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/dequant_ct_real.py "$DTAUDIT" tests/dequant/ct
