#!/bin/sh
# audit --values: options, JSON fields, every reader, and bad input while the data is read
# (a truncated data region, a file that shrinks or fails while read, a shard that cannot be
# opened): exit 2 and one line naming the file (and the tensor once the scan has begun).
. "$(dirname "$0")/lib.sh"
py_start

# usage
dta audit --target f8 tests/fixtures/seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 2 ] && grep -q -- "--target" "$TMP/err" && pass || fail "--target f8: $rc"
dta scan --values tests/fixtures/seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 2 ] && grep -q "does not apply" "$TMP/err" && pass || fail "scan --values: $rc"

# every reader: values for each floating tensor, a reason for the others
for f in tests/fixtures/seeds/003_higgs_audio.safetensors tests/fixtures/torch/training.pt \
    tests/fixtures/torch/legacy.pt tests/fixtures/torch/views.pt tests/fixtures/torch/tied.pt \
    tests/fixtures/torch/quantized.pt tests/fixtures/torch/meta.pt tests/fixtures/dirs/bf16-base; do
    dta audit --values --target f16 -f json "$f"
    { [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; } && [ ! -s "$TMP/err" ] || { fail "$f: exit $rc: $(cat "$TMP/err")"; continue; }
    py - "$TMP/out" <<'PY' && pass || fail "$f: values fields"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["tensors"], "no tensors"
for t in doc["tensors"]:
    v = t["values"]
    if "skipped" in v:
        continue
    assert v["target"] == "F16", v
    assert v["elements"] == t["numel"], (v, t)
    for k in ("nan", "pos_inf", "neg_inf", "zero", "overflow", "underflow", "subnormal"):
        assert isinstance(v[k], int) and 0 <= v[k] <= v["elements"], (k, v)
    assert v["max_abs"] >= v["min_nonzero_abs"] >= 0, v
PY
done

# --expect is the default target; no target: only nonfinite, no range findings
dta audit --values --expect bf16 -f json tests/fixtures/seeds/003_higgs_audio.safetensors
grep -q '"target": "BF16"' "$TMP/out" && pass || fail "--expect bf16 is not the target"
dta audit --values -f json tests/fixtures/seeds/003_higgs_audio.safetensors
! grep -q '"rule": "range-overflow"\|"rule": "precision-underflow"' "$TMP/out" && pass \
    || fail "range rules without a target"

# Quantized parameters (tests/quant/make_layouts.py: Qwen3 FP8 block layout, sparse): the
# codes are counted on their dequantized values (tests/cli/values_dequant.sh checks the
# counts), their scales are skipped as companions; the ordinary tensors are read.
if py tests/quant/make_layouts.py "$TMP/q" qwen3-fp8 >/dev/null 2>&1; then
    dta audit --values --target bf16 -f json "$TMP/q/qwen3-fp8"
    py - "$TMP/out" <<'PY' && pass || fail "quantized parameters: $(head -c 300 "$TMP/err")"
import json, sys
doc = json.load(open(sys.argv[1]))
codes = [t for t in doc["tensors"] if t["dtype"] == "F8_E4M3"]
assert codes, "no F8 codes"
for t in codes:
    v = t["values"]
    assert v.get("dequantized") == "fp8-block" and v["elements"] == t["numel"], t
comp = [t for t in doc["tensors"] if t["name"].endswith("weight_scale_inv")]
assert comp and all("companion" in t["values"].get("skipped", "") for t in comp), comp[:1]
assert any("skipped" not in t["values"] and "dequantized" not in t["values"]
           for t in doc["tensors"]), "no plain tensor was read"
assert not [f for f in doc["findings"] if f["rule"] in ("range-overflow", "precision-underflow", "nonfinite")]
PY
else
    echo "SKIP (quantized): tests/quant/make_layouts.py did not run"
fi

# A truncated data region: the reader refuses the file before any value is read.
head -c 3000 tests/fixtures/seeds/003_higgs_audio.safetensors >"$TMP/trunc.safetensors"
dta audit --values "$TMP/trunc.safetensors"
[ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "trunc.safetensors" "$TMP/err" && pass \
    || fail "truncated: $rc $(cat "$TMP/err")"

# Faults while reading (LD_PRELOAD shim, as tests/cli/faults.sh): any pread that fails or
# returns end of file early, any open that fails.
cc=${CC:-cc}
if ! $cc -shared -fPIC -O1 -o "$TMP/inject.so" tests/fault/inject.c -ldl 2>"$TMP/cc.err" ||
    ! LD_PRELOAD="$TMP/inject.so" "$DTAUDIT" --version >/dev/null 2>&1; then
    echo "SKIP (faults): the injection shim is not usable here"
    finish
    exit $?
fi
mkdir -p "$TMP/model"
cp tests/fixtures/seeds/002_ttt_mixed.safetensors "$TMP/model/model.safetensors"
named_tensor=0
for src in tests/fixtures/seeds/003_higgs_audio.safetensors tests/fixtures/torch/training.pt "$TMP/model"; do
    for spec in pread:0 pread:5 open:13; do
        call=${spec%%:*}; e=${spec#*:}
        n=1
        while [ $n -le 200 ]; do
            DTA_FAIL=$call:$n DTA_FAIL_ERRNO=$e LD_PRELOAD="$TMP/inject.so" dta audit --values --target f16 -q "$src"
            if [ "$rc" -eq 2 ]; then
                if [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q '^dtaudit: [^ ]*: ' "$TMP/err"; then
                    fail "$src $call:$n errno $e: $(cat "$TMP/err")"
                fi
                grep -q "tensor '" "$TMP/err" && named_tensor=$((named_tensor + 1))
            elif [ "$rc" -gt 2 ]; then
                fail "$src $call:$n: exit $rc"
            fi
            pass
            [ "$rc" -eq 2 ] || break # past the last call: done
            n=$((n + 1))
        done
    done
done
[ "$named_tensor" -gt 0 ] && pass || fail "no failure during the value scan named its tensor"

# --device cuda counts on the GPU (tests/unit/test_values_cuda.c compares the kernels): with
# a device the JSON equals --device cpu's; without CUDA built in or without a device, exit 3
# with one line naming the reason and nothing on stdout.
v=tests/fixtures/seeds/003_higgs_audio.safetensors
dta audit --values --device cuda --target f16 -f json "$v"
if [ "$rc" -eq 3 ]; then
    if [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^dtaudit: --device cuda: ' "$TMP/err" &&
        [ ! -s "$TMP/out" ]; then pass; else fail "--device cuda unavailable: $(cat "$TMP/err")"; fi
else
    cp "$TMP/out" "$TMP/gpu.json"
    dta audit --values --device cpu --target f16 -f json "$v"
    cmp -s "$TMP/out" "$TMP/gpu.json" && pass || fail "--device cuda JSON differs from --device cpu"
fi
finish
