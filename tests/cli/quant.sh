#!/bin/sh
# Quantized checkpoints (issue 12, shared/quant.md): layouts with the real names, dtypes and
# shapes of published releases, generated here by tests/quant/make_layouts.py (sparse
# files, real headers). Each correct layout audits clean of quant-* and dtype findings;
# each broken variant raises exactly its rule, naming the module.
. "$(dirname "$0")/lib.sh"
py_start
gen() { py tests/quant/make_layouts.py "$TMP/q" "$@"; }
# rules: "rule module" lines of the warnings and errors in $TMP/out (JSON). DeepSeek's F32
# e_score_correction_bias beside its BF16 router is an intended island (info).
rules() {
    py -c '
import json, sys
d = json.load(open(sys.argv[1]))
for f in d["findings"]:
    if f["severity"] == "info": continue
    print(f["rule"], f["module"])' "$TMP/out"
}

for l in deepseek-v3 qwen3-fp8 llama-fp8-ct gpt-oss nvfp4 llama4-nvfp4 bnb-nf4 gptq awq; do
    gen "$l"
    dta audit --format json "$TMP/q/$l"
    got=$(rules)
    [ -z "$got" ] && [ "$rc" -le 1 ] && pass || fail "$l is not clean: $got"
done

# expect VARIANT "RULE MODULE": the variant's only warning/error.
expect() {
    gen "$1"
    dta audit --format json "$TMP/q/$1"
    got=$(rules)
    [ "$got" = "$2" ] && [ "$rc" -eq 1 ] && pass || fail "$1: got '$got', expected '$2' (exit $rc)"
}
m=model.layers.0.self_attn.kv_a_proj_with_mqa
expect "deepseek-v3+missing-companion@$m" "quant-incomplete $m"
m=model.layers.1.mlp.experts.2.down_proj
expect "deepseek-v3+wrong-grid@$m" "quant-incomplete $m"
m=model.layers.1.mlp.experts.0.up_proj
expect "deepseek-v3+missing-weight@$m" "quant-incomplete $m"
m=model.layers.1.mlp.experts.3.up_proj
expect "deepseek-v3+unquantized-module@$m" "quant-coverage $m"
m=model.layers.1.mlp.down_proj
expect "qwen3-fp8+quantized-ignored@$m" "quant-coverage $m"
# a ModelOpt NVFP4 expert stack ([E, in/2, out] codes, "_weight_scale_2" companions)
m=language_model.model.layers.1.feed_forward.experts
expect "llama4-nvfp4+missing-global@$m.down_proj" "quant-incomplete $m"
expect "deepseek-v3+stale-config" "quant-config config.json"
expect "deepseek-v3+missing-config" "quant-config config.json"
m=model.layers.1.mlp.experts.3.up_proj
gen deepseek-v3+blind-cast
dta audit --format json "$TMP/q/deepseek-v3+blind-cast"
rules >"$TMP/rules"
[ "$rc" -eq 1 ] && ! grep -qv '^quant-cast ' "$TMP/rules" && grep -qx "quant-cast $m" "$TMP/rules" \
    && pass || fail "blind cast: exit $rc, $(head -3 "$TMP/rules")"

# torchao, HQQ, optimum-quanto and ComfyUI layouts: clean, then each broken variant raises
# exactly its rule naming the module. ComfyUI files are bare .safetensors (no config):
# the file is audited, not the directory.
target() { case $1 in comfy*) echo "$TMP/q/$1"/*.safetensors ;; *) echo "$TMP/q/$1" ;; esac; }
for l in torchao torchao-int4 hqq quanto comfy-fp8 comfy-nvfp4 comfy-nvfp4-meta; do
    gen "$l"
    dta audit --format json $(target "$l")
    got=$(rules)
    [ -z "$got" ] && [ "$rc" -le 1 ] && pass || fail "$l is not clean: $got"
done
expect2() {
    gen "$1"
    dta audit --format json $(target "$1")
    got=$(rules)
    [ "$got" = "$2" ] && [ "$rc" -eq 1 ] && pass || fail "$1: got '$got', expected '$2' (exit $rc)"
}
L=model.layers
for v in "torchao+missing-companion@$L.1.self_attn.k_proj quant-incomplete" \
         "torchao+wrong-grid@$L.0.mlp.up_proj quant-incomplete" \
         "torchao+unquantized-module@$L.1.mlp.down_proj quant-coverage" \
         "torchao+quantized-ignored@$L.0.self_attn.o_proj quant-coverage" \
         "torchao-int4+wrong-grid@$L.0.mlp.up_proj quant-incomplete" \
         "torchao-int4+unpacked-qdata@$L.1.self_attn.o_proj quant-incomplete" \
         "torchao-int4+missing-companion@$L.1.mlp.down_proj quant-incomplete" \
         "torchao-int4+unquantized-module@$L.0.mlp.gate_proj quant-coverage" \
         "hqq+missing-companion@$L.0.mlp.gate_proj quant-incomplete" \
         "hqq+wrong-grid@$L.1.self_attn.v_proj quant-incomplete" \
         "hqq+unquantized-module@$L.1.self_attn.q_proj quant-coverage" \
         "hqq+quantized-ignored@$L.0.mlp.down_proj quant-coverage" \
         "quanto+missing-companion@$L.1.mlp.up_proj quant-incomplete" \
         "quanto+wrong-grid@$L.0.self_attn.o_proj quant-incomplete" \
         "quanto+unquantized-module@$L.0.mlp.gate_proj quant-coverage" \
         "comfy-fp8+missing-companion@model.diffusion_model.double_blocks.1.img_attn.qkv quant-incomplete" \
         "comfy-fp8+wrong-grid@model.diffusion_model.single_blocks.0.linear2 quant-incomplete" \
         "comfy-nvfp4+missing-companion@model.diffusion_model.double_blocks.0.txt_mlp.0 quant-incomplete" \
         "comfy-nvfp4+wrong-grid@model.diffusion_model.single_blocks.1.linear1 quant-incomplete" \
         "comfy-nvfp4+missing-marker@model.diffusion_model.double_blocks.1.img_attn.proj quant-config" \
         "comfy-nvfp4-meta+missing-marker@model.diffusion_model.double_blocks.1.img_attn.proj quant-config" \
         "comfy-nvfp4-meta+unquantized-module@model.diffusion_model.single_blocks.0.linear2 quant-coverage" \
         "comfy-nvfp4-meta+missing-companion@model.diffusion_model.double_blocks.0.txt_mlp.0 quant-incomplete"; do
    set -- $v
    expect2 "$1" "$2 ${1#*@}"
done
# a stale, missing or disagreeing config is one quant-config finding about the config file,
# never one finding per parameter: bits, group size and block size included
for v in torchao+stale-config torchao+missing-config hqq+stale-config hqq+missing-config \
         hqq+bits-mismatch hqq+group-mismatch quanto+missing-config gptq+bits-mismatch \
         gptq+group-mismatch awq+bits-mismatch deepseek-v3+block-mismatch; do
    expect2 "$v" "quant-config config.json"
done
expect2 quanto+bits-mismatch "quant-config quanto_qmap.json"
expect2 comfy-fp8+missing-marker "quant-config scaled_fp8"
# torchao Int4Tensor: the logical shape is its __metadata__ description's, and the packed
# qdata and the transposed group scales are checked against it
dta scan --format json $(target torchao-int4)
"$PYTHON" -c '
import json, sys
q = json.load(open(sys.argv[1]))["inputs"][0]["quantization"]
p = [x for x in q["parameters"] if x["name"] == "model.layers.0.mlp.down_proj.weight"][0]
print(q["scheme"], p["shape"], p["label"])' "$TMP/out" >"$TMP/p"
[ "$(cat "$TMP/p")" = "torchao [512, 1536] INT4 group 128 -> BF16" ] && pass || fail "torchao int4: $(cat "$TMP/p")"
dta audit $(target "torchao-int4+unpacked-qdata@$L.1.self_attn.o_proj")
grep -q "its packed qdata \[512, 512\] does not hold the logical shape \[512, 512\] its __metadata__ gives (two 4-bit codes a byte: expected \[512, 256\])" "$TMP/out" \
    && pass || fail "int4 message: $(grep why "$TMP/out")"
# ComfyUI's layers listed in __metadata__._quantization_metadata instead of comfy_quant
# markers: recognised from the file alone, every listed layer a parameter
dta scan --format json $(target comfy-nvfp4-meta)
"$PYTHON" -c '
import json, sys
q = json.load(open(sys.argv[1]))["inputs"][0]["quantization"]
print(q["scheme"], q["source"], len(q["parameters"]))' "$TMP/out" >"$TMP/p"
[ "$(cat "$TMP/p")" = "comfy-quant __metadata__ 26" ] && pass || fail "comfy metadata: $(cat "$TMP/p")"
dta audit $(target hqq+group-mismatch)
grep -q "declares group_size 128 but every parameter's scales fit groups of 64" "$TMP/out" && pass || fail "group message: $(grep why "$TMP/out")"
dta audit $(target gptq+bits-mismatch)
grep -q "declares 8-bit codes but every quantized parameter's tensors fit 4-bit ones" "$TMP/out" && pass || fail "bits message: $(grep why "$TMP/out")"
# ...and the parameters are described with the bits they fit: logical [out, in], INT4
dta scan --format json $(target gptq+bits-mismatch)
"$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = [x for x in d["inputs"][0]["quantization"]["parameters"] if x["name"] == "model.layers.0.mlp.down_proj.weight"][0]
print(p["shape"], p["label"])' "$TMP/out" >"$TMP/p"
[ "$(cat "$TMP/p")" = "[512, 1536] INT4 group 128 -> F16" ] && pass || fail "bits-mismatch parameter: $(cat "$TMP/p")"
dta audit $(target deepseek-v3+block-mismatch)
grep -q "declares weight_block_size \[64, 64\] but every scale grid fits 128x128 blocks" "$TMP/out" && pass || fail "block message: $(grep why "$TMP/out")"
# compressed-tensors pack-quantized (the real W4A16 fixture) with num_bits 8 in its config
rm -rf "$TMP/ct8"; cp -r tests/fixtures/quant/ct-w4a16 "$TMP/ct8"
sed 's/"num_bits": 4,/"num_bits": 8,/' tests/fixtures/quant/ct-w4a16/config.json >"$TMP/ct8/config.json"
dta audit --format json "$TMP/ct8"
[ "$(rules)" = "quant-config config.json" ] && pass || fail "ct bits: $(rules)"
for l in torchao comfy-fp8; do
    gen "$l+blind-cast"
    dta audit --format json $(target "$l+blind-cast")
    rules >"$TMP/rules"
    [ "$rc" -eq 1 ] && [ -s "$TMP/rules" ] && ! grep -qv '^quant-cast ' "$TMP/rules" && pass \
        || fail "$l blind cast: exit $rc, $(head -3 "$TMP/rules")"
done

# the ragged grid of kv_a_proj_with_mqa ([576, 7168] -> [5, 56]) is correct, not flagged
gen deepseek-v3
dta scan --format json "$TMP/q/deepseek-v3"
grep -q '"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"' "$TMP/out" && pass || fail "scan"

# JSON: the input's quantization and each tensor's role and parameter
gen deepseek-v3-tiny
ds=$TMP/q/deepseek-v3-tiny
dta scan --format json "$ds"
q='d["inputs"][0]["quantization"]'
[ "$(pyj "$q[\"scheme\"], $q[\"source\"], $q[\"block\"], len($q[\"parameters\"])")" = "('fp8-block', 'config.json', [128, 128], 22)" ] \
    && pass || fail "quantization: $(pyj "$q" | head -c 300)"
[ "$(pyj '[t["quant"] for t in d["tensors"] if t["name"] == "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"][0]')" \
    = "{'scheme': 'fp8-block', 'role': 'scale_inv', 'parameter': 'model.layers.0.self_attn.kv_a_proj_with_mqa.weight'}" ] \
    && pass || fail "tensor quant"
[ "$(pyj '[t.get("quant") for t in d["tensors"] if t["name"] == "lm_head.weight"][0], "lm_head.weight" in '"$q"'["unquantized"]')" = "(None, True)" ] \
    && pass || fail "unquantized lm_head"
[ "$(pyj '[(p["shape"], p["dtype"], p["label"]) for p in '"$q"'["parameters"] if p["name"] == "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"][0]')" \
    = "([160, 256], 'BF16', 'F8_E4M3 block 128x128 -> BF16')" ] && pass || fail "parameter"
# text: quantized parameters as their own summary rows, every stored tensor with -v
dta scan --color never "$ds"
grep -q 'quantization fp8-block (config.json: fp8, block 128x128), 22 quantized parameters' "$TMP/out" \
    && grep -q 'F8_E4M3 block 128x128 -> BF16 *22 params *44 tensors' "$TMP/out" && pass || fail "text summary"
dta scan -v --color never "$ds"
grep -q 'kv_a_proj_with_mqa.weight_scale_inv  *F32  *\[2, 2\]  fp8-block scale_inv' "$TMP/out" && pass || fail "scan -v"

# a bare safetensors file: recognised from the tensors alone, no config expected
dta scan --format json "$ds/model-00001-of-00002.safetensors"
[ "$(pyj "$q[\"scheme\"], $q[\"source\"]")" = "('fp8-block', 'tensors')" ] && pass || fail "bare file"
# a scheme dtaudit does not know: info, and convert refuses
mkdir -p "$TMP/unk"
cp "$ds"/*.safetensors "$ds"/*.json "$TMP/unk/"
py - "$TMP/unk/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"] = {"quant_method": "aqlm", "in_group_size": 8}
json.dump(c, open(sys.argv[1], "w"))
PY
dta audit --format json "$TMP/unk"
pyj '[f["message"] for f in d["findings"] if f["rule"] == "quantization"]' | grep -q "scheme 'aqlm', which dtaudit does not know" \
    && pass || fail "unknown scheme"
dta convert --to f16 --keep-quantized "$TMP/unk" -o "$TMP/unk-out"
[ "$rc" -eq 1 ] && [ ! -e "$TMP/unk-out" ] && grep -q "aqlm" "$TMP/err" && pass || fail "convert unknown: $rc"

# convert refuses quantized input: exit 1, nothing written, the scheme and the two ways on
for l in deepseek-v3-tiny gptq bnb-nf4 nvfp4; do
    gen "$l"
    dta convert --to f16 "$TMP/q/$l" -o "$TMP/out-$l"
    [ "$rc" -eq 1 ] && [ ! -e "$TMP/out-$l" ] && grep -q -- '--keep-quantized' "$TMP/err" \
        && grep -q -- '--dequantize' "$TMP/err" && grep -q "quantized parameters (" "$TMP/err" \
        && pass || fail "convert $l not refused: exit $rc $(cat "$TMP/err")"
done
# --keep-quantized: only unquantized floats converted, quantized parameters byte-identical,
# only the dtype in config.json changes; verify agrees and the audit of the result is clean
dta convert --to f16 --keep-quantized "$ds" -o "$TMP/ds16"
[ "$rc" -eq 0 ] && pass || fail "keep-quantized: exit $rc $(cat "$TMP/err")"
py - "$ds" "$TMP/ds16" <<'PY' && pass || fail "keep-quantized bytes"
import json, os, sys, stwrite
def load(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(stwrite.load(os.path.join(d, f)))
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
for k in a:
    if a[k][0] in ("F8_E4M3",) or k.endswith("_scale_inv"):
        assert a[k] == b[k], k
    elif a[k][0] in ("BF16", "F32"):
        assert b[k][0] == "F16" and b[k][1] == a[k][1], (k, b[k][0])
ca = json.load(open(os.path.join(sys.argv[1], "config.json")))
cb = json.load(open(os.path.join(sys.argv[2], "config.json")))
assert cb.pop("torch_dtype") == "float16" and ca.pop("torch_dtype") == "bfloat16" and ca == cb
PY
dta verify "$ds" "$TMP/ds16"
[ "$rc" -eq 0 ] && pass || fail "verify keep-quantized: $rc $(cat "$TMP/err")"
dta audit --format json "$TMP/ds16"
[ "$rc" -eq 0 ] && [ -z "$(rules)" ] && pass || fail "audit after keep-quantized: $(rules)"

# a torch zip checkpoint holding the same tensors is recognised the same way (GPTQ: its
# int32 / float16 tensors are written by any torch)
if py -c 'import torch' 2>/dev/null; then
    py - "$TMP/gptq.pt" <<'PY'
import sys, torch
p = "model.layers.0.self_attn.q_proj."
sd = {"model.embed_tokens.weight": torch.zeros(64, 256, dtype=torch.float16),
      p + "qweight": torch.zeros(32, 256, dtype=torch.int32),
      p + "qzeros": torch.zeros(2, 32, dtype=torch.int32),
      p + "scales": torch.zeros(2, 256, dtype=torch.float16),
      p + "g_idx": torch.zeros(256, dtype=torch.int32),
      "model.norm.weight": torch.ones(256, dtype=torch.float16)}
torch.save(sd, sys.argv[1])
PY
    dta audit --format json "$TMP/gptq.pt"
    [ "$(pyj "$q[\"scheme\"], $q[\"source\"], [p[\"shape\"] for p in $q[\"parameters\"]]")" = "('gptq', 'tensors', [[256, 256]])" ] \
        && [ -z "$(rules)" ] && pass || fail "torch zip: $(rules) $(pyj "$q" | head -c 200)"
else
    echo "SKIP: no torch"
fi
# a hostile "re:" ignore pattern (back-reference, counted repetition, over the cap) is
# refused with one line naming the file, never handed to regexec
for pat in 're:(a*)*\\1' 're:(a{1,32000}){1,32000}' "re:$(printf 'a%.0s' $(seq 300))"; do
    rm -rf "$TMP/hostile"; cp -r "$TMP/q/llama-fp8-ct" "$TMP/hostile"
    py - "$TMP/hostile/config.json" "$pat" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["quantization_config"]["ignore"] = [sys.argv[2]]
json.dump(c, open(sys.argv[1], "w"))
PY
    dta audit "$TMP/hostile"
    [ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "hostile.*ignore pattern" "$TMP/err" && pass \
        || fail "hostile ignore pattern $pat: $rc $(cat "$TMP/err")"
done
# a small counted repetition, as real configs write, is read
py - "$TMP/hostile/config.json" 're:.*layers\.[0-9]{1,2}\.mlp\.gate$' <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["quantization_config"]["ignore"] = [sys.argv[2]]
json.dump(c, open(sys.argv[1], "w"))
PY
dta audit "$TMP/hostile"
[ "$rc" -le 1 ] && pass || fail "ignore pattern with {1,2}: $rc $(cat "$TMP/err")"
finish
