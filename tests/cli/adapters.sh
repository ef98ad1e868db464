#!/bin/sh
# PEFT adapter directories: adapter_config.json recognised (and a non-PEFT one not), the
# base model reported, --base comparing dominant dtypes (adapter-mismatch).
. "$(dirname "$0")/lib.sh"
py_start
F=tests/fixtures/dirs
# pyj EXPR: evaluates a Python expression over the JSON document in $TMP/out (as d).

# The fp32 adapter alone: adapter facts in JSON, no finding, exit 0.
dta audit --format json $F/peft-f32-adapter
[ "$rc" -eq 0 ] && [ "$(pyj 'd["inputs"][0]["adapter"]["peft_type"]')" = LORA ] \
    && [ "$(pyj 'd["inputs"][0]["adapter"]["base_model"]')" = example/tiny-llama-bf16 ] \
    && [ "$(pyj 'd["inputs"][0]["adapter"]["r"], d["inputs"][0]["adapter"]["lora_alpha"]')" = "(4, 16)" ] \
    && [ "$(pyj 'd["inputs"][0]["adapter"]["target_modules"]')" = "['q_proj', 'v_proj']" ] \
    && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "adapter facts: exit $rc"

# Text shows the adapter and its base model.
dta audit --color never $F/peft-f32-adapter
grep -q "^  PEFT adapter LORA (r 4, alpha 16) over base model 'example/tiny-llama-bf16', targets q_proj v_proj$" "$TMP/out" \
    && pass || fail "text adapter line: $(cat "$TMP/out")"

# --base: fp32 adapter over a bf16 base -> adapter-mismatch (warning), exit 1.
dta audit --format json --base $F/bf16-base $F/peft-f32-adapter
[ "$rc" -eq 1 ] && [ "$(pyj '[(f["rule"], f["severity"], f["dtype"], f["expected"]) for f in d["findings"]]')" = "[('adapter-mismatch', 'warning', 'F32', 'BF16')]" ] \
    && [ "$(pyj 'd["inputs"][0]["adapter"]["base"]')" = "{'path': 'tests/fixtures/dirs/bf16-base', 'dtype': 'BF16'}" ] \
    && pass || fail "adapter-mismatch: exit $rc $(cat "$TMP/out" "$TMP/err")"
dta audit --color never --base $F/bf16-base $F/peft-f32-adapter
grep -q "warning adapter-mismatch" "$TMP/out" && grep -q "base model (--base) tests/fixtures/dirs/bf16-base: BF16" "$TMP/out" \
    && pass || fail "adapter-mismatch text"
dta audit --fail-on error --base $F/bf16-base $F/peft-f32-adapter
[ "$rc" -eq 0 ] && pass || fail "adapter-mismatch is a warning: exit $rc"

# A bf16 adapter saved by torch.save (.bin) over the same base: no mismatch.
dta audit --format json --base $F/bf16-base $F/peft-bf16-adapter
[ "$rc" -eq 0 ] && [ "$(pyj 'd["inputs"][0]["files"][0].endswith("adapter_model.bin")')" = True ] \
    && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "bf16 .bin adapter: exit $rc"

# A base given as a directory whose shards are absent: its config.json dtype stands in.
mkdir -p "$TMP/base-cfg"
echo '{"torch_dtype": "float16"}' >"$TMP/base-cfg/config.json"
echo '{"metadata": {"total_size": 8}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}' \
    >"$TMP/base-cfg/model.safetensors.index.json"
dta audit --format json --base "$TMP/base-cfg" $F/peft-bf16-adapter
[ "$rc" -eq 1 ] && [ "$(pyj '[(f["rule"], f["expected"]) for f in d["findings"]]')" = "[('adapter-mismatch', 'F16')]" ] \
    && pass || fail "base dtype from config.json: exit $rc"

# --base is about PEFT adapters only: a plain checkpoint gets no adapter-mismatch.
dta audit --format json --base $F/bf16-base tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "--base on a non-adapter: exit $rc"

# A policy can mark fp32 adapters as intended (PEFT's default).
dta audit --format json --policy examples/policies/peft-adapter.json --base $F/bf16-base $F/peft-f32-adapter
[ "$rc" -eq 0 ] && [ "$(pyj '[(f["rule"], f["severity"]) for f in d["findings"]]')" = "[('adapter-mismatch', 'info')]" ] \
    && pass || fail "policy lowers adapter-mismatch: exit $rc"

# A non-PEFT adapter_config.json (MLX's: no peft_type) is not taken for a PEFT one.
m=$TMP/mlx
mkdir -p "$m"
cp $F/peft-f32-adapter/adapter_model.safetensors "$m/0000100_adapters.safetensors"
printf '{"adapter_path": "adapters", "lora_layers": 4, "lora_parameters": {"rank": 8, "alpha": 16}, "model": "x"}' \
    >"$m/adapter_config.json"
dta audit --format json "$m"
[ "$rc" -eq 0 ] && [ "$(pyj '"adapter" in d["inputs"][0]')" = False ] \
    && [ "$(pyj '[(f["rule"], f["severity"]) for f in d["findings"]]')" = "[('adapter-config', 'info')]" ] \
    && pass || fail "non-PEFT adapter config: exit $rc"
dta audit --format json --base $F/bf16-base "$m"
[ "$rc" -eq 0 ] && pass || fail "--base on a non-PEFT adapter: exit $rc"

# Hostile adapter configs: not JSON -> exit 2, one line naming the file; odd values are
# ignored or escaped, never trusted.
h=$TMP/hostile
mkdir -p "$h"
cp $F/peft-f32-adapter/adapter_model.safetensors "$h/"
printf '{"peft_type": "LORA", ' >"$h/adapter_config.json"
dta audit "$h"
[ "$rc" -eq 2 ] && grep -q "adapter_config.json is not a JSON object" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] \
    && pass || fail "malformed adapter_config.json: exit $rc"
printf '{"peft_type": "LO\\u001b[31mRA", "base_model_name_or_path": "a\\nb", "r": -3, "lora_alpha": "x", "target_modules": "q_proj|v_proj"}' \
    >"$h/adapter_config.json"
dta audit --color never "$h"
[ "$rc" -eq 0 ] && grep -q 'PEFT adapter LO\\x1b\[31mRA over base model .a\\x0ab., targets /q_proj|v_proj/' "$TMP/out" \
    && pass || fail "hostile adapter strings: $(cat "$TMP/out")"
dta audit --format json "$h"
[ "$rc" -eq 0 ] && [ "$(pyj 'd["inputs"][0]["adapter"]["target_modules"]')" = "q_proj|v_proj" ] \
    && [ "$(pyj '"r" in d["inputs"][0]["adapter"]')" = False ] && pass || fail "hostile adapter JSON"
printf '[1, 2]' >"$h/adapter_config.json"
dta audit "$h"
[ "$rc" -eq 2 ] && pass || fail "adapter_config.json array: exit $rc"

# --base that cannot be read: exit 2, one line.
dta audit --base "$TMP/nonexistent" $F/peft-f32-adapter
[ "$rc" -eq 2 ] && grep -q "^dtaudit: --base: " "$TMP/err" && [ ! -s "$TMP/out" ] && pass || fail "unreadable --base: exit $rc"
dta scan --base $F/bf16-base $F/peft-f32-adapter
[ "$rc" -eq 2 ] && grep -q "does not apply" "$TMP/err" && pass || fail "--base on scan: exit $rc"
finish
