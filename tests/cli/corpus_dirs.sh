#!/bin/sh
# The model directories of the shared real-world corpus give sensible reports: PEFT adapters
# with their base model, a non-PEFT adapter config not taken for one, indexes whose shards
# are absent reported from the index alone. Skips (77) when the corpus is absent.
. "$(dirname "$0")/lib.sh"
py_start
corpus=${DTAUDIT_CORPUS:-$srcdir/../shared/corpus/real}
[ -d "$corpus" ] || { echo "SKIP: no corpus at $corpus (set DTAUDIT_CORPUS)"; exit 77; }

# Every directory that holds an adapter_config.json, an index or a config.json: exit <= 1,
# valid JSON, one input of format "directory", a text report that names the directory.
find "$corpus" \( -name adapter_config.json -o -name '*.index.json' -o -name config.json \) \
    -exec dirname {} \; | sort -u >"$TMP/dirs"
[ -s "$TMP/dirs" ] || { echo "SKIP: no model directories in $corpus"; exit 77; }
while IFS= read -r dir; do
    dta audit --format json "$dir"
    if [ "$rc" -le 1 ] && [ "$(pyj 'd["inputs"][0]["format"]')" = directory ]; then pass
    else fail "$dir: exit $rc $(head -c 300 "$TMP/err")"; fi
    dta audit --color never "$dir"
    [ "$rc" -le 1 ] && head -1 "$TMP/out" | grep -qF "$dir" && pass || fail "$dir (text): exit $rc"
done <"$TMP/dirs"

# check NAME PYTHON-EXPR EXPECTED: facts about one corpus directory (skipped when absent).
check() {
    [ -d "$corpus/$1" ] || { echo "SKIP: $1 not in the corpus"; return 0; }
    dta audit --format json "$corpus/$1"
    got=$(pyj "$2" 2>&1) || true
    [ "$got" = "$3" ] && pass || fail "$1: $2 = $got, expected $3"
}
ad='(lambda a: (a["peft_type"], a["base_model"], a.get("r"), a.get("lora_alpha")))(d["inputs"][0]["adapter"])'
rules='sorted(set(f["rule"] for f in d["findings"]))'
check Tashu014__lora-imdb-distilbert "$ad" "('LORA', 'distilbert-base-uncased', 8, 16)"
check Tashu014__lora-imdb-distilbert 'd["inputs"][0]["adapter"]["target_modules"], d["inputs"][0]["files"][0].rsplit("/", 1)[1], len(d["tensors"])' \
    "(['v_lin', 'q_lin'], 'adapter_model.safetensors', 28)"
check TheSotti__Lightweight-Fine-Tuning-to-FM/gpt-lora "$ad" "('LORA', 'gpt2', 8, 32)"
check TheSotti__Lightweight-Fine-Tuning-to-FM/gpt-lora 'd["inputs"][0]["format"], d["inputs"][0]["files"][0].rsplit("/", 1)[1], len(d["tensors"])' \
    "('directory', 'adapter_model.bin', 49)"
check anirudh-ak__peft-gpt2/model/lora_model "$ad" "('LORA', 'gpt2', 8, 8)"
check anirudh-ak__peft-gpt2/model/lora_model 'len(d["tensors"]), d["roots"][0]["dominant"]' "(25, 'F32')"
check ml-explore__mlx-examples/llms/adapters '"adapter" in d["inputs"][0], len(d["tensors"])' "(False, 16)"
check ml-explore__mlx-examples/llms/adapters "$rules" "['adapter-config']"
check jeremieconte__granite-3.1-1b-a400m-instruct 'd["inputs"][0]["config_dtype"], len(d["tensors"]), sum(f["rule"] == "index-mismatch" for f in d["findings"])' "('F32', 0, 2)"
check nishiwakikazutaka__layoutlm-wikipedia-ja 'd["inputs"][0]["config_dtype"], len(d["tensors"]), sum(f["rule"] == "index-mismatch" for f in d["findings"])' "('F32', 0, 3)"
check EchoCog__gpt-oss-20b "$rules" "['index-mismatch', 'quantization']"
check EchoCog__gpt-oss-20b '[f["message"] for f in d["findings"] if f["rule"] == "quantization"]' "['config.json has a quantization_config (mxfp4)']"
check FluxML__SafeTensors.jl/test/sharded 'len(d["tensors"]), "index-mismatch" in [f["rule"] for f in d["findings"]]' "(36, False)"

# A PEFT adapter of the corpus against a base: the real fp32 adapter over a bf16 base model.
if [ -d "$corpus/anirudh-ak__peft-gpt2/model/lora_model" ]; then
    dta audit --format json --base tests/fixtures/dirs/bf16-base "$corpus/anirudh-ak__peft-gpt2/model/lora_model"
    [ "$rc" -eq 1 ] && [ "$(pyj "$rules")" = "['adapter-mismatch']" ] && pass || fail "corpus adapter --base: exit $rc"
fi
finish
