#!/bin/sh
# Model directories, sharded indexes and config.json, built here from committed fixtures.
. "$(dirname "$0")/lib.sh"
py_start
seeds=tests/fixtures/seeds
d=$TMP/model

jq_count() { # jq_count RULE: number of findings of RULE in $TMP/out (JSON)
    grep -c "\"rule\": \"$1\"" "$TMP/out" || true
}

# A directory with model.safetensors and a config.json that agrees.
mkdir -p "$d"
cp $seeds/003_higgs_audio_fixed.safetensors "$d/model.safetensors"
echo '{"model_type": "higgs", "torch_dtype": "bfloat16"}' >"$d/config.json"
dta audit --format json "$d"
[ "$rc" -eq 0 ] && grep -q '"config_dtype": "BF16"' "$TMP/out" && grep -q '"format": "directory"' "$TMP/out" \
    && pass || fail "directory with agreeing config: exit $rc"

# The newer "dtype" key and a nested text_config are read too; disagreement is a warning.
echo '{"text_config": {"dtype": "float16"}}' >"$d/config.json"
dta audit --format json "$d"
[ "$rc" -eq 1 ] && [ "$(jq_count config-mismatch)" -eq 1 ] && grep -q '"expected": "F16"' "$TMP/out" \
    && pass || fail "config-mismatch: exit $rc"
dta audit --fail-on error "$d"
[ "$rc" -eq 0 ] && pass || fail "config-mismatch is a warning: exit $rc"

# Both safetensors and .bin: safetensors is read, and the report says so.
echo '{"torch_dtype": "bfloat16"}' >"$d/config.json"
cp tests/fixtures/torch/state_dict.pt "$d/pytorch_model.bin"
dta audit --format json "$d"
grep -q '"rule": "weights-choice"' "$TMP/out" && grep -q 'model.safetensors"' "$TMP/out" \
    && ! grep -q 'pytorch_model.bin"' "$TMP/out" && pass || fail "weights-choice"
rm "$d/pytorch_model.bin"

# A sharded checkpoint: two shards and an index, read as one state dict.
s=$TMP/sharded
mkdir -p "$s"
cp $seeds/001_distill_logit_projector.safetensors "$s/model-00001-of-00002.safetensors"
cp tests/fixtures/good/tiny_f32_model.safetensors "$s/model-00002-of-00002.safetensors"
py - "$s" <<'PY'
import json, os, sys, stwrite
d = sys.argv[1]
wm, total = {}, 0
for f in sorted(os.listdir(d)):
    h = stwrite.read_header(os.path.join(d, f))[0]
    for k, v in h.items():
        if k != "__metadata__":
            wm[k] = f
            total += v["data_offsets"][1] - v["data_offsets"][0]
json.dump({"metadata": {"total_size": total}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
PY
dta audit --format json "$s"
[ "$rc" -eq 1 ] && grep -q '"format": "directory"' "$TMP/out" && [ "$(jq_count index-mismatch)" -eq 0 ] \
    && [ "$(grep -c '"root": ""' "$TMP/out")" -gt 0 ] && [ "$(grep -c '"name": "" *,' "$TMP/out")" -le 1 ] \
    && pass || fail "sharded directory: exit $rc"
dta scan --format json "$s/model.safetensors.index.json"
[ "$rc" -eq 0 ] && grep -q '"format": "safetensors-index"' "$TMP/out" && pass || fail "index as PATH: $rc"

# Index defects: wrong total_size, a tensor mapped to the wrong shard, a missing shard,
# a tensor missing from the index.
ix="$s/model.safetensors.index.json"
cp "$ix" "$TMP/index.good"
sed 's/"total_size": [0-9]*/"total_size": 12345/' "$TMP/index.good" >"$ix"
dta audit --format json "$s"
grep -q 'total_size is 12345' "$TMP/out" && pass || fail "wrong total_size not reported"
sed 's/"teacher.norm.weight": "model-00001-of-00002.safetensors"/"teacher.norm.weight": "model-00002-of-00002.safetensors"/' "$TMP/index.good" >"$ix"
dta audit --format json "$s"
grep -q 'which does not hold it (another shard does)' "$TMP/out" && pass || fail "tensor in the wrong shard"
sed 's/model-00002-of-00002/model-00009-of-00009/g' "$TMP/index.good" >"$ix"
dta audit --format json "$s"
[ "$rc" -eq 1 ] && grep -q "shard 'model-00009-of-00009.safetensors' is missing" "$TMP/out" \
    && pass || fail "missing shard: exit $rc"
sed 's/"teacher.norm.weight": "model-00001-of-00002.safetensors", //' "$TMP/index.good" >"$ix"
dta audit --format json "$s"
grep -q "tensor 'teacher.norm.weight' is in shard .* but not in the index" "$TMP/out" \
    && pass || fail "tensor missing from the index"
sed 's#"model-00002-of-00002.safetensors"#"../../etc/passwd"#' "$TMP/index.good" >"$ix"
dta audit "$s"
[ "$rc" -eq 2 ] && grep -q "outside the index's directory" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] \
    && pass || fail "shard path escaping the directory: exit $rc"
printf '{"weight_map": {"a": "x.safetensors", "a": "x.safetensors"}}' >"$ix"
dta audit "$s"
[ "$rc" -eq 2 ] && grep -q "twice" "$TMP/err" && pass || fail "duplicate weight_map name: exit $rc"
printf '{"metadata": {}, "weight_map": []}' >"$ix"
dta audit "$s"
[ "$rc" -eq 2 ] && pass || fail "weight_map not an object: exit $rc"

# A directory without weights, and a corrupt shard, exit 2 with one line naming the file.
mkdir -p "$TMP/empty"
dta audit "$TMP/empty"
[ "$rc" -eq 2 ] && grep -q "holds no checkpoint" "$TMP/err" && pass || fail "empty directory: exit $rc"
cp "$TMP/index.good" "$ix"
cp tests/fixtures/bad/offsets_hole.safetensors "$s/model-00002-of-00002.safetensors"
dta audit "$s"
[ "$rc" -eq 2 ] && grep -q "model-00002-of-00002.safetensors: hole" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] \
    && pass || fail "corrupt shard: exit $rc $(cat "$TMP/err")"
finish
