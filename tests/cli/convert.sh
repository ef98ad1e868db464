#!/bin/sh
# dtaudit convert / verify: the seed fixes end to end, overflow refusal, atomic output,
# nothing lost on bad input, directories with config.json and index.
. "$(dirname "$0")/lib.sh"
py_start
seeds=tests/fixtures/seeds
o=$TMP/conv
export DTAUDIT_NO_PROGRESS=1

sum() { cksum <"$1"; }

# Seed 001: only the projector to f16, then audit is clean and verify agrees.
dta convert --to f16 --only 'logit_projector.*' $seeds/001_distill_logit_projector.safetensors -o $o/001.safetensors
[ "$rc" -eq 2 ] && grep -q "cannot create\|No such file" "$TMP/err" && pass || fail "missing output dir: $rc $(cat "$TMP/err")"
mkdir -p "$o"
before=$(sum $seeds/001_distill_logit_projector.safetensors)
dta convert --to f16 --only 'logit_projector.*' --verify $seeds/001_distill_logit_projector.safetensors -o $o/001.safetensors
[ "$rc" -eq 0 ] && grep -q "3 of 42 tensors to F16" "$TMP/out" && grep -q "verified" "$TMP/out" \
    && pass || fail "convert 001: $rc $(cat "$TMP/out" "$TMP/err")"
[ "$(sum $seeds/001_distill_logit_projector.safetensors)" = "$before" ] && pass || fail "input changed"
dta audit $o/001.safetensors
[ "$rc" -eq 0 ] && pass || fail "audit after converting 001: $rc"
dta verify $seeds/001_distill_logit_projector.safetensors $o/001.safetensors
[ "$rc" -eq 0 ] && grep -q "^ok:" "$TMP/out" && pass || fail "verify 001: $rc $(cat "$TMP/out")"

# Seeds 002 and 003: the whole model to bf16.
for s in 002_ttt_mixed 003_higgs_audio; do
    dta convert --to bf16 $seeds/$s.safetensors -o $o/$s.safetensors
    [ "$rc" -eq 0 ] && pass || fail "convert $s: $rc $(cat "$TMP/err")"
    dta audit --expect bf16 $o/$s.safetensors
    [ "$rc" -eq 0 ] && pass || fail "audit --expect bf16 after converting $s: $rc"
done

# An existing output needs --force; the output may not be the input.
dta convert --to bf16 $seeds/002_ttt_mixed.safetensors -o $o/002_ttt_mixed.safetensors
[ "$rc" -eq 2 ] && grep -q "exists; use --force" "$TMP/err" && pass || fail "existing output: $rc"
dta convert --to bf16 --force $seeds/002_ttt_mixed.safetensors -o $o/002_ttt_mixed.safetensors
[ "$rc" -eq 0 ] && pass || fail "--force: $rc"
cp $seeds/002_ttt_mixed.safetensors $o/same.safetensors
dta convert --to bf16 --force $o/same.safetensors -o $o/same.safetensors
[ "$rc" -eq 2 ] && grep -q "the output is the input" "$TMP/err" \
    && cmp -s $o/same.safetensors $seeds/002_ttt_mixed.safetensors && pass || fail "output = input: $rc"

# Overflow: refused by default (exit 1, nothing written), written on request.
py - "$o/ovf.safetensors" <<'PY' || { echo "SKIP-part: no numpy/safetensors"; }
import sys, stwrite
stwrite.write_values(sys.argv[1], {"w": [1.0, 70000.0, -1e6, 3.0]})
PY
dta convert --to f16 $o/ovf.safetensors -o $o/ovf16.safetensors
[ "$rc" -eq 1 ] && [ ! -e $o/ovf16.safetensors ] && grep -q "w: 2 values beyond the F16 range" "$TMP/err" \
    && [ -z "$(ls -A $o | grep dtaudit-)" ] && pass || fail "overflow refusal: $rc $(cat "$TMP/err")"
dta convert --to f16 --on-overflow saturate $o/ovf.safetensors -o $o/ovf16.safetensors
[ "$rc" -eq 0 ] && pass || fail "--on-overflow saturate: $rc"
dta verify --on-overflow saturate $o/ovf.safetensors $o/ovf16.safetensors
[ "$rc" -eq 0 ] && pass || fail "verify saturate: $rc $(cat "$TMP/out")"
dta verify $o/ovf.safetensors $o/ovf16.safetensors
[ "$rc" -eq 1 ] && grep -q MISMATCH "$TMP/out" && pass || fail "verify must see saturate vs inf: $rc"
dta convert --to f16 --on-overflow inf --force $o/ovf.safetensors -o $o/ovf16.safetensors
[ "$rc" -eq 0 ] && pass || fail "--on-overflow inf: $rc"

# A corrupted byte in the converted file is a verify mismatch (exit 1).
cp $o/001.safetensors $o/corrupt.safetensors
size=$(wc -c <$o/corrupt.safetensors)
printf '\377' | dd of=$o/corrupt.safetensors bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
dta verify $seeds/001_distill_logit_projector.safetensors $o/corrupt.safetensors
[ "$rc" -eq 1 ] && pass || fail "verify of a corrupted file: $rc"

# Bad input: exit 2, one line, no output and no temporary left.
dta convert --to bf16 tests/fixtures/bad/offsets_hole.safetensors -o $o/bad.safetensors
[ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && [ ! -e $o/bad.safetensors ] \
    && [ -z "$(ls -A $o | grep dtaudit-)" ] && pass || fail "bad input: $rc"
# A leftover temporary of a run that died is removed by the next run.
: >"$o/.x.safetensors.dtaudit-AbC123"
dta convert --to bf16 $seeds/003_higgs_audio.safetensors -o $o/x.safetensors
[ "$rc" -eq 0 ] && [ ! -e "$o/.x.safetensors.dtaudit-AbC123" ] && pass || fail "leftover not cleaned"

# Usage: --device cuda without CUDA is exit 3; --to is required.
dta convert --to bf16 --device cuda $seeds/003_higgs_audio.safetensors -o $o/y.safetensors
[ "$rc" -eq 3 ] && pass || fail "--device cuda: $rc"
dta convert $seeds/003_higgs_audio.safetensors -o $o/y.safetensors
[ "$rc" -eq 2 ] && pass || fail "no --to: $rc"

# Directory: converted weights, config.json dtype updated, other files copied.
d=$TMP/model
mkdir -p $d
cp $seeds/003_higgs_audio.safetensors $d/model.safetensors
printf '{"model_type": "higgs", "torch_dtype": "float32"}' >$d/config.json
printf '{"k": 1}' >$d/tokenizer.json
dta convert --to bf16 $d -o $o/model-bf16
[ "$rc" -eq 0 ] && grep -q '"torch_dtype": "bfloat16"' $o/model-bf16/config.json \
    && cmp -s $d/tokenizer.json $o/model-bf16/tokenizer.json && pass || fail "directory: $rc $(cat "$TMP/err")"
dta audit $o/model-bf16
[ "$rc" -eq 0 ] && pass || fail "audit of the converted directory: $rc"

# Views of one storage (tied weights) converted only in part: refused, exit 1, nothing written.
dta convert --to bf16 --only 'emb.*' tests/fixtures/torch/tied.pt -o $o/tied.pt
[ "$rc" -eq 1 ] && grep -q "share one storage" "$TMP/err" && [ ! -e $o/tied.pt ] && pass \
    || fail "partial storage selection: $rc $(cat "$TMP/err")"
dta convert --to bf16 tests/fixtures/torch/tied.pt -o $o/tied.pt
[ "$rc" -eq 0 ] && pass || fail "tied.pt whole: $rc"

# JSON summary
dta convert --format json --to bf16 --force $seeds/003_higgs_audio.safetensors -o $o/x.safetensors
[ "$rc" -eq 0 ] && py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["command"]=="convert" and d["tensors_converted"]==3, d' "$TMP/out" \
    && pass || fail "json summary: $rc"
finish
