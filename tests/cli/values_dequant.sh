#!/bin/sh
# audit --values on quantized parameters: their dequantized values (block FP8 with every
# E4M3 code and scales on the f16/bf16/f32 boundaries) counted exactly as a numpy reference
# and as convert --dequantize counts them (tests/interop/values_dequant_reference.py).
# Then the range rule and its advice on a quantized parameter: the finding fires (quantized
# codes are exempt from the dtype rules, not from the value rules), and every way on that the
# text advice names runs and gives an output that audits clean. Skips (77) without numpy/torch.
. "$(dirname "$0")/lib.sh"
set +e
"$PYTHON" tests/interop/values_dequant_reference.py "$DTAUDIT"
ref=$?
[ "$ref" -eq 77 ] && exit 77

# one block FP8 parameter of code 448 x scale 1000 (448000: beyond f16, within bf16)
m=$TMP/fp8
"$PYTHON" - "$m" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
os.makedirs(d)
ts = [("model.layers.0.mlp.down_proj.weight", "F8_E4M3", [128, 128], b"\x7e" * (128 * 128)),
      ("model.layers.0.mlp.down_proj.weight_scale_inv", "F32", [1, 1], struct.pack("<f", 1000.0)),
      ("model.norm.weight", "BF16", [128], b"\0\0" * 128)]
hdr, off, blobs = {}, 0, []
for n, dt, sh, raw in ts:
    hdr[n] = {"dtype": dt, "shape": sh, "data_offsets": [off, off + len(raw)]}
    off += len(raw)
    blobs.append(raw)
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"model_type": "deepseek_v3", "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                   "activation_scheme": "dynamic",
                                   "weight_block_size": [128, 128]}},
          open(os.path.join(d, "config.json"), "w"))
PY
dta audit --values --target f16 "$m"
[ "$rc" -eq 1 ] && grep -q 'range-overflow  model.layers.0.mlp.down_proj' "$TMP/out" \
    && pass || fail "no range-overflow on a dequantized parameter: $rc $(cat "$TMP/out")"
grep -q -- '--keep-quantized' "$TMP/out" && grep -q -- 'or: --dequantize --on-overflow saturate' "$TMP/out" \
    && ! grep -q -- '--keep .*model' "$TMP/out" && pass || fail "advice: $(cat "$TMP/out")"
allow=$(sed -n "s/.*then audit the output with: --allow '\(.*\)'$/\1/p" "$TMP/out")
dta audit --values --target f16 --allow "$m.down_proj=F8_E4M3" "$m" # an --allow that matches nothing
[ "$rc" -eq 1 ] && pass || fail "an unrelated --allow hid the finding: $rc"
dta convert --to f16 --keep-quantized "$m" -o "$TMP/kq"
[ "$rc" -eq 0 ] && pass || fail "advised --keep-quantized: $rc $(cat "$TMP/err")"
dta audit --values --target f16 --allow "$allow" "$TMP/kq"
[ "$rc" -eq 0 ] && [ -n "$allow" ] && pass || fail "advised --allow '$allow' on the output: $rc $(cat "$TMP/out")"
dta convert --to f16 --dequantize --on-overflow saturate "$m" -o "$TMP/sat"
[ "$rc" -eq 0 ] && pass || fail "advised --dequantize --on-overflow saturate: $rc $(cat "$TMP/err")"
dta audit --values --target f16 "$TMP/sat"
[ "$rc" -eq 0 ] && pass || fail "audit of the saturated output: $rc $(cat "$TMP/out")"
dta convert --to bf16 --dequantize "$m" -o "$TMP/wide"
[ "$rc" -eq 0 ] && pass || fail "advised --dequantize --to bf16: $rc $(cat "$TMP/err")"
dta convert --to f16 --dequantize "$m" -o "$TMP/refused"
[ "$rc" -eq 1 ] && [ ! -e "$TMP/refused" ] && pass || fail "convert --dequantize did not refuse the overflow: $rc"
finish && [ "$ref" -eq 0 ]
