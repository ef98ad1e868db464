#!/bin/sh
# Intended precision (data/intended.json): real layouts whose float32 islands are the
# authors' choice get `intended` info findings and no warning; --strict and a policy's
# "strict" turn them back into ordinary findings; a policy's "intended" adds local rules;
# layouts the table does not cover keep warning (seeds 001-003, a Mixtral fp32 router).
# Fixtures are generated here by scripts/make-intended-fixtures.py (torch + safetensors).
. "$(dirname "$0")/lib.sh"
py_start
py -c 'import torch, safetensors' 2>/dev/null || { echo "SKIP: torch/safetensors not importable by $PYTHON"; exit 77; }
F=$TMP/fx
py scripts/make-intended-fixtures.py "$F" || { echo "FAIL: fixture generation"; exit 1; }

# pyj EXPR: a Python expression over the JSON document in $TMP/out (as d).
rules() { pyj 'sorted(set((f["rule"], f["severity"], (f.get("intended") or {}).get("id", "")) for f in d["findings"]))'; }

# expect_intended FIXTURE "RULE-IDS" NTENSORS: exit 0, only intended findings with these ids.
expect_intended() {
    dta audit --format json "$F/$1"
    got=$(rules)
    n=$(pyj 'sum(len(f["tensors"]) for f in d["findings"])')
    want=$(py -c 'import sys; print(", ".join("(%r, %r, %r)" % ("intended", "info", x) for x in sys.argv[1].split()))' "$2")
    [ "$rc" -eq 0 ] && [ "$got" = "[$want]" ] && [ "$n" = "$3" ] && pass \
        || fail "$1: exit $rc, findings $got ($n tensors), want [$want] ($3)"
}
expect_intended t5-bf16 t5.ffn-wo 4
expect_intended t5-f16 t5.ffn-wo 4
expect_intended deepseek-v3-bf16 moe.routing-bias 2
expect_intended kimi-k2-bf16 moe.routing-bias 2
expect_intended llama-inv-freq.safetensors universal.rotary-inv-freq 4
expect_intended mamba-bf16.safetensors "universal.ssm-a-log universal.ssm-d-dt-bias" 6
expect_intended wan-transformer diffusers.WanTransformer3DModel 7
expect_intended openai-clip-f16.safetensors clip.fp32-non-gemm 13

# The JSON finding names the rule, why and the evidence; the message says it too.
dta audit --format json "$F/deepseek-v3-bf16"
[ "$(pyj 'd["findings"][0]["intended"]["kind"]')" = released-on-file ] \
    && pyj 'd["findings"][0]["intended"]["evidence"]' | grep -q 'huggingface/transformers#42580' \
    && [ "$(pyj 'd["findings"][0]["tensors"]')" = "['model.layers.1.mlp.gate.e_score_correction_bias']" ] \
    && [ "$(pyj '(d["findings"][0]["dtype"], d["findings"][0]["expected"])')" = "('F32', 'BF16')" ] \
    && pyj 'd["findings"][0]["message"]' | grep -q "rule 'moe.routing-bias'" \
    && pass || fail "intended JSON: $(cat "$TMP/out")"

# Text: one line per rule and layer stack, the rule named.
dta audit --color never "$F/t5-bf16"
[ "$rc" -eq 0 ] && grep -q "^    info    intended        encoder.block.{0..1}.layer.1.DenseReluDense.wo.weight  F32, expected BF16  (2 tensors)$" "$TMP/out" \
    && grep -q "rule 't5.ffn-wo'" "$TMP/out" && ! grep -q "^    warning" "$TMP/out" \
    && pass || fail "intended text: $(cat "$TMP/out")"

# --fail-on info gates on intended findings; severity off drops them (still excused).
dta audit --fail-on info "$F/t5-bf16"
[ "$rc" -eq 1 ] && pass || fail "--fail-on info: exit $rc"
echo '{"severity": {"intended": "off"}}' >"$TMP/off.json"
dta audit --format json --policy "$TMP/off.json" "$F/t5-bf16"
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "intended off: exit $rc"

# --strict and "strict": true: the islands are ordinary findings again.
dta audit --format json --strict "$F/t5-bf16"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'warning', '')]" ] && pass || fail "--strict t5: exit $rc $(rules)"
dta audit --format json --strict "$F/deepseek-v3-bf16"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('mixed-module', 'warning', '')]" ] && pass || fail "--strict deepseek: exit $rc $(rules)"
echo '{"strict": true}' >"$TMP/strict.json"
dta audit --format json --policy "$TMP/strict.json" "$F/mamba-bf16.safetensors"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'warning', '')]" ] && pass || fail "policy strict: exit $rc $(rules)"
dta audit --expect bf16 --strict "$F/t5-bf16"
[ "$rc" -eq 1 ] && grep -q "expect-mismatch" "$TMP/out" && pass || fail "--strict --expect: exit $rc"
dta audit --expect bf16 "$F/t5-bf16"
[ "$rc" -eq 0 ] && ! grep -q "expect-mismatch" "$TMP/out" && pass || fail "--expect excuses intended: exit $rc"
echo '{"strict": "yes"}' >"$TMP/bad.json"
dta audit --policy "$TMP/bad.json" "$F/t5-bf16"
[ "$rc" -eq 2 ] && grep -q "strict: expected true or false" "$TMP/err" && pass || fail "bad strict: $rc $(cat "$TMP/err")"

# Not covered: a dtype outside the rule's set, a router transformers keeps in the model dtype.
dta audit --format json "$F/t5-wo-f16-in-bf16"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'warning', '')]" ] && pass || fail "wo in f16: $(rules)"
dta audit --format json "$F/mixtral-f32-router"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'warning', '')]" ] && pass || fail "mixtral router: $(rules)"

# Rules keyed on model_type do not leak to other models: the DeepSeek layout without
# config.json (no model_type, no architectures) warns.
mkdir -p "$TMP/noconf"
cp "$F/deepseek-v3-bf16/model.safetensors" "$TMP/noconf/"
dta audit --format json "$TMP/noconf"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('mixed-module', 'warning', '')]" ] && pass || fail "no config: $(rules)"

# Seeds 001-003 are real bugs (intended.md section 5): they keep warning, nothing intended.
for s in 001_distill_logit_projector 002_ttt_mixed 003_higgs_audio; do
    dta audit --format json tests/fixtures/seeds/$s.safetensors
    [ "$rc" -eq 1 ] && [ "$(pyj '[f["rule"] for f in d["findings"] if f["rule"] == "intended"]')" = "[]" ] \
        && [ "$(pyj 'len([f for f in d["findings"] if f["severity"] == "warning"]) > 0')" = True ] \
        && pass || fail "seed $s: exit $rc $(rules)"
done

# A policy's "intended" declares local rules (first), with the same checks as the table.
dta audit --format json --policy "$F/ttt-policy.json" tests/fixtures/seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 0 ] && [ "$(rules)" = "[('intended', 'info', 'local.ttt-states')]" ] \
    && [ "$(pyj 'd["findings"][0]["intended"]["origin"]')" = policy ] \
    && pass || fail "policy intended: exit $rc $(rules)"
printf '{"intended": [{"id": "x", "patterns": ["a"], "dtypes": ["F33"]}]}' >"$TMP/bad.json"
dta audit --policy "$TMP/bad.json" "$F/t5-bf16"
[ "$rc" -eq 2 ] && grep -q "bad.json: intended: rules\[0\] (x): \"dtypes\"\[0\]: 'F33' is not a floating dtype" "$TMP/err" \
    && pass || fail "bad intended dtype: $rc $(cat "$TMP/err")"
printf '{"intended": [{"id": "x", "patterns": ["a..b"], "dtypes": ["F32"]}]}' >"$TMP/bad.json"
dta audit --policy "$TMP/bad.json" "$F/t5-bf16"
[ "$rc" -eq 2 ] && grep -q "patterns" "$TMP/err" && pass || fail "bad pattern: $rc $(cat "$TMP/err")"
printf '{"intended": [{"id": "x", "patterns": ["a"], "dtypes": ["F32"], "whenn": "half"}]}' >"$TMP/bad.json"
dta audit --policy "$TMP/bad.json" "$F/t5-bf16"
[ "$rc" -eq 2 ] && grep -q 'unknown key "whenn"' "$TMP/err" && pass || fail "typo key: $rc $(cat "$TMP/err")"

# Pattern semantics are dotted components: a local rule "wo" must not excuse word_embeddings.
printf '{"intended": [{"id": "local.wo", "patterns": ["wo"], "dtypes": ["F32"], "when": "half"}]}' >"$TMP/wo.json"
py - "$TMP/we.safetensors" <<'EOF'
import sys, torch
from safetensors.torch import save_file
save_file({"embeddings.word_embeddings.weight": torch.zeros(4, 2),
           "layer.0.wo.weight": torch.zeros(2, 2),
           "layer.0.wi.weight": torch.zeros(64, 2, dtype=torch.bfloat16)}, sys.argv[1])
EOF
dta audit --format json --policy "$TMP/wo.json" "$TMP/we.safetensors"
[ "$rc" -eq 1 ] && [ "$(pyj 'sorted((f["rule"], f["module"]) for f in d["findings"])')" = "[('dtype-outlier', 'embeddings'), ('intended', 'layer.0.wo.weight')]" ] \
    && pass || fail "dotted components: $(pyj 'sorted((f["rule"], f["module"]) for f in d["findings"])')"

# convert --to auto: each root to its dominant dtype, intended islands kept (read back with
# safetensors); --no-keep-intended converts them; --keep-intended works with an explicit --to.
dta convert --format json --to auto "$F/t5-bf16" -o "$TMP/t5-auto"
[ "$rc" -eq 0 ] && [ "$(pyj '(d["to"], d["auto_to"], d["kept_intended"], d["tensors_converted"])')" = "('auto', 'BF16', 4, 0)" ] \
    && pass || fail "--to auto JSON: exit $rc $(cat "$TMP/out" "$TMP/err")"
st_dtypes() { py -c 'import sys, collections; from safetensors import safe_open
f = safe_open(sys.argv[1], "pt"); c = collections.Counter(str(f.get_tensor(k).dtype) + (" wo" if ".wo." in k else "") for k in f.keys()); print(sorted(c.items()))' "$1"; }
[ "$(st_dtypes "$TMP/t5-auto/model.safetensors")" = "[('torch.bfloat16', 43), ('torch.float32 wo', 4)]" ] \
    && pass || fail "--to auto kept wo: $(st_dtypes "$TMP/t5-auto/model.safetensors")"
dta convert --to auto --no-keep-intended "$F/t5-bf16" -o "$TMP/t5-nokeep"
[ "$rc" -eq 0 ] && [ "$(st_dtypes "$TMP/t5-nokeep/model.safetensors")" = "[('torch.bfloat16', 43), ('torch.bfloat16 wo', 4)]" ] \
    && pass || fail "--no-keep-intended: exit $rc $(st_dtypes "$TMP/t5-nokeep/model.safetensors")"
dta convert --to f16 --keep-intended "$F/t5-bf16" -o "$TMP/t5-f16k"
[ "$rc" -eq 0 ] && [ "$(st_dtypes "$TMP/t5-f16k/model.safetensors")" = "[('torch.float16', 43), ('torch.float32 wo', 4)]" ] \
    && grep -q '"torch_dtype": "float16"' "$TMP/t5-f16k/config.json" \
    && pass || fail "--to f16 --keep-intended: exit $rc $(st_dtypes "$TMP/t5-f16k/model.safetensors")"
dta convert --to f16 "$F/t5-bf16" -o "$TMP/t5-f16"
[ "$rc" -eq 0 ] && [ "$(st_dtypes "$TMP/t5-f16/model.safetensors")" = "[('torch.float16', 43), ('torch.float16 wo', 4)]" ] \
    && pass || fail "--to f16 converts everything by default: $(st_dtypes "$TMP/t5-f16/model.safetensors")"
# auto on a file without config: seed 001's projector goes to F16, the audit is clean
dta convert --to auto tests/fixtures/seeds/001_distill_logit_projector.safetensors -o "$TMP/001-auto.safetensors"
[ "$rc" -eq 0 ] && grep -q "to auto" "$TMP/out" && pass || fail "--to auto seed 001: exit $rc"
dta audit "$TMP/001-auto.safetensors"
[ "$rc" -eq 0 ] && pass || fail "audit after --to auto: exit $rc $(cat "$TMP/out")"
# config.json follows the weights with --to auto (a config that said float16 over bf16 weights)
mkdir -p "$TMP/cfg"
cp tests/fixtures/seeds/003_higgs_audio_fixed.safetensors "$TMP/cfg/model.safetensors"
echo '{"model_type": "higgs", "torch_dtype": "float16"}' >"$TMP/cfg/config.json"
dta convert --to auto "$TMP/cfg" -o "$TMP/cfg-auto"
[ "$rc" -eq 0 ] && grep -q '"torch_dtype": "bfloat16"' "$TMP/cfg-auto/config.json" && pass || fail "auto config: $rc $(cat "$TMP/cfg-auto/config.json")"
dta convert --to autox "$F/t5-bf16" -o "$TMP/x"
[ "$rc" -eq 2 ] && grep -q "bf16 or auto" "$TMP/err" && pass || fail "--to autox: $rc"

# The table is compiled in: it works from any directory, without the source tree.
(cd / && "$DTAUDIT" audit -q "$F/t5-bf16" >/dev/null) && pass || fail "table not compiled in"
finish
