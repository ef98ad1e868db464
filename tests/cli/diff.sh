#!/bin/sh
# dtaudit diff OLD NEW: per-tensor drift across formats (a torch .bin against safetensors),
# per-root summary, exit status with --fail-on and policy severities.
. "$(dirname "$0")/lib.sh"
py_start
D=tests/fixtures/dirs/diff

# The same tensors, torch zip against safetensors: no drift, exit 0.
dta diff --format json $D/old.bin $D/same.safetensors
[ "$rc" -eq 0 ] && [ "$(pyj 'd["command"], d["changes"], d["summary"]["changes"]')" = "('diff', [], 0)" ] \
    && [ "$(pyj '[i["format"] for i in d["inputs"]]')" = "['torch-zip', 'safetensors']" ] \
    && pass || fail "no drift: exit $rc"
dta diff --color never $D/same.safetensors $D/same.safetensors
[ "$rc" -eq 0 ] && grep -q "no drift" "$TMP/out" && pass || fail "self diff: exit $rc"

# Drift: 8 tensors upcast to f32, a resized embedding, a removed and an added tensor.
dta diff --format json $D/old.bin $D/new.safetensors
[ "$rc" -eq 1 ] && [ "$(pyj 'd["summary"]["dtype-changed"], d["summary"]["shape-changed"], d["summary"]["tensor-added"], d["summary"]["tensor-removed"]')" = "(8, 1, 1, 1)" ] \
    && [ "$(pyj 'd["summary"]["findings"]')" = "{'error': 2, 'warning': 9, 'info': 0}" ] \
    && [ "$(pyj '[(r["name"], r["old_dominant"], r["new_dominant"], r["moves"]) for r in d["roots"]]')" = "[('', 'BF16', 'F32', [{'from': 'BF16', 'to': 'F32', 'tensors': 8, 'numel': 2048}])]" ] \
    && pass || fail "drift summary: exit $rc"
[ "$(pyj '[(c["rule"], c["severity"], c["name"]) for c in d["changes"] if c["rule"] != "dtype-changed"]')" = \
  "[('tensor-removed', 'error', 'lm_head.weight'), ('shape-changed', 'error', 'model.embed_tokens.weight'), ('tensor-added', 'warning', 'model.norm.bias')]" ] \
    && pass || fail "drift changes: $(pyj '[(c["rule"], c["name"]) for c in d["changes"]]')"
[ "$(pyj '[c for c in d["changes"] if c["name"] == "model.embed_tokens.weight"][0]["old"]["shape"], [c for c in d["changes"] if c["name"] == "model.embed_tokens.weight"][0]["new"]["shape"]')" = "([32, 16], [40, 16])" ] \
    && [ "$(pyj '[c for c in d["changes"] if c["rule"] == "tensor-added"][0]["old"]')" = None ] \
    && [ "$(pyj '[c for c in d["changes"] if c["rule"] == "dtype-changed"][0]["new"]["file"]')" = "$D/new.safetensors" ] \
    && pass || fail "change details"

# The interop truth: what torch and safetensors themselves say differs.
if py -c 'import torch, safetensors' 2>/dev/null; then
    py - "$D/old.bin" "$D/new.safetensors" "$TMP/out" <<'PY' && pass || fail "diff disagrees with torch/safetensors"
import json, sys, torch
from safetensors.torch import load_file
a = torch.load(sys.argv[1]); b = load_file(sys.argv[2]); d = json.load(open(sys.argv[3]))
want = set()
for k in a.keys() | b.keys():
    if k not in b: want.add(("tensor-removed", k))
    elif k not in a: want.add(("tensor-added", k))
    else:
        if a[k].dtype != b[k].dtype: want.add(("dtype-changed", k))
        if a[k].shape != b[k].shape: want.add(("shape-changed", k))
got = {(c["rule"], c["name"]) for c in d["changes"]}
sys.exit(0 if got == want else print(sorted(got ^ want)) or 1)
PY
else
    echo "SKIP: interop part (no torch/safetensors for $PYTHON)"
fi

# Text: grouped numeric siblings, a per-root summary, the totals.
dta diff --color never $D/old.bin $D/new.safetensors
grep -q "^    warning dtype-changed   model.layers.{0..1}.self_attn.q_proj.weight  BF16 -> F32  (2 tensors)$" "$TMP/out" \
    && grep -q "dominant BF16 -> F32, tensors 15 -> 15" "$TMP/out" \
    && grep -q "moved BF16     -> F32           8 tensors" "$TMP/out" \
    && grep -q "^    error   shape-changed   model.embed_tokens.weight  \[32, 16\] -> \[40, 16\]$" "$TMP/out" \
    && grep -q "^diff: 2 errors, 9 warnings, 0 info (fail-on warning)$" "$TMP/out" && pass || fail "diff text"
dta diff -v --color never $D/old.bin $D/new.safetensors
grep -q "^        model.layers.1.self_attn.q_proj.weight$" "$TMP/out" && pass || fail "-v lists grouped tensors"
dta diff -q --color never $D/old.bin $D/new.safetensors
[ "$rc" -eq 1 ] && ! grep -q "dominant" "$TMP/out" && grep -q "tensor-added" "$TMP/out" && pass || fail "-q"
dta diff -q $D/old.bin $D/same.safetensors
[ "$rc" -eq 0 ] && [ ! -s "$TMP/out" ] && pass || fail "-q without drift prints nothing"

# Exit status: --fail-on, and policy severities for the diff rules.
dta diff --fail-on error $D/old.bin $D/new.safetensors
[ "$rc" -eq 1 ] && pass || fail "--fail-on error (shape-changed is an error): exit $rc"
dta diff --fail-on never $D/old.bin $D/new.safetensors
[ "$rc" -eq 0 ] && pass || fail "--fail-on never: exit $rc"
printf '{"severity": {"shape-changed": "warning", "tensor-removed": "info", "tensor-added": "off"}, "fail_on": "error"}' >"$TMP/p.json"
dta diff --format json --policy "$TMP/p.json" $D/old.bin $D/new.safetensors
[ "$rc" -eq 0 ] && [ "$(pyj 'd["summary"]["findings"], d["summary"]["tensor-added"]')" = "({'error': 0, 'warning': 9, 'info': 1}, 0)" ] \
    && pass || fail "policy severities on diff: exit $rc"
dta diff --policy "$TMP/p.json" --fail-on warning $D/old.bin $D/new.safetensors
[ "$rc" -eq 1 ] && pass || fail "--fail-on over the policy: exit $rc"

# A training checkpoint against itself (several roots), a directory against a file.
dta diff --format json tests/fixtures/torch/training.pt tests/fixtures/torch/training.pt
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["roots"]) > 1')" = True ] && pass || fail "multi-root self diff: exit $rc"
mkdir -p "$TMP/m" && cp $D/same.safetensors "$TMP/m/model.safetensors"
dta diff "$TMP/m" $D/old.bin
[ "$rc" -eq 0 ] && pass || fail "directory against a file: exit $rc"

# Usage and input errors: exit 2, one line, nothing on stdout.
dta diff $D/old.bin
[ "$rc" -eq 2 ] && grep -q "needs two paths" "$TMP/err" && pass || fail "one path: exit $rc"
dta diff $D/old.bin $D/new.safetensors $D/same.safetensors
[ "$rc" -eq 2 ] && pass || fail "three paths: exit $rc"
dta diff --format sarif $D/old.bin $D/new.safetensors
[ "$rc" -eq 2 ] && grep -q "applies to audit only" "$TMP/err" && pass || fail "--format sarif on diff: exit $rc"
dta diff --expect bf16 $D/old.bin $D/new.safetensors
[ "$rc" -eq 2 ] && grep -q "does not apply" "$TMP/err" && pass || fail "--expect on diff: exit $rc"
dta diff $D/old.bin tests/fixtures/bad/offsets_hole.safetensors
[ "$rc" -eq 2 ] && [ ! -s "$TMP/out" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "offsets_hole.safetensors" "$TMP/err" \
    && pass || fail "unreadable NEW: exit $rc"
finish
