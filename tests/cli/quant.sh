#!/bin/sh
# Quantized checkpoints (issue 12, shared/quant.md): layouts with the real names, dtypes and
# shapes of published releases, generated here by tests/quant/make_layouts.py (sparse
# files, real headers). Each correct layout audits clean of quant-* and dtype findings;
# each broken variant raises exactly its rule, naming the module.
. "$(dirname "$0")/lib.sh"
gen() { "$PYTHON" tests/quant/make_layouts.py "$TMP/q" "$@"; }
# rules: "rule module" lines of the warnings and errors in $TMP/out (JSON). DeepSeek's F32
# e_score_correction_bias beside its BF16 router is an intended island (info).
rules() {
    "$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
for f in d["findings"]:
    if f["severity"] == "info": continue
    print(f["rule"], f["module"])' "$TMP/out"
}

for l in deepseek-v3 qwen3-fp8 llama-fp8-ct gpt-oss nvfp4 bnb-nf4 gptq awq; do
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
m=model.layers.1.mlp.experts.3.up_proj
expect "deepseek-v3+unquantized-module@$m" "quant-coverage $m"
m=model.layers.1.mlp.down_proj
expect "qwen3-fp8+quantized-ignored@$m" "quant-coverage $m"
expect "deepseek-v3+stale-config" "quant-config config.json"
expect "deepseek-v3+missing-config" "quant-config config.json"
m=model.layers.1.mlp.experts.3.up_proj
gen deepseek-v3+blind-cast
dta audit --format json "$TMP/q/deepseek-v3+blind-cast"
rules >"$TMP/rules"
[ "$rc" -eq 1 ] && ! grep -qv '^quant-cast ' "$TMP/rules" && grep -qx "quant-cast $m" "$TMP/rules" \
    && pass || fail "blind cast: exit $rc, $(head -3 "$TMP/rules")"

# the ragged grid of kv_a_proj_with_mqa ([576, 7168] -> [5, 56]) is correct, not flagged
gen deepseek-v3
dta scan --format json "$TMP/q/deepseek-v3"
grep -q '"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"' "$TMP/out" && pass || fail "scan"
finish
