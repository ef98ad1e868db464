#!/bin/sh
# The seed scenarios (tests/fixtures/seeds, see ../shared/seeds) give exactly the findings
# of tests/fixtures/seeds/EXPECTED.json, and their fixed versions audit clean.
. "$(dirname "$0")/lib.sh"
py_start
command -v "$PYTHON" >/dev/null 2>&1 || { echo "SKIP: no python3 to compare JSON"; exit 77; }

for f in tests/fixtures/seeds/*.safetensors; do
    name=$(basename "$f")
    dta audit --format json "$f"
    cp "$TMP/out" "$TMP/$name.json"
    if py - "$TMP/$name.json" tests/fixtures/seeds/EXPECTED.json "$name" "$rc" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
exp = json.load(open(sys.argv[2]))["files"][sys.argv[3]]
rc = int(sys.argv[4])
keys = ("rule", "severity", "module", "root", "dtype", "expected")
got = sorted(({**{k: f[k] for k in keys}, "tensors": sorted(f["tensors"])} for f in doc["findings"]),
             key=lambda f: (f["rule"], f["module"]))
want = sorted(({**{k: f[k] for k in keys}, "tensors": sorted(f["tensors"])} for f in exp["findings"]),
              key=lambda f: (f["rule"], f["module"]))
ok = got == want and rc == exp["exit"] and doc["roots"][0]["dominant"] == exp["dominant"]
if not ok:
    print("want exit %s %s\n got exit %s %s" % (exp["exit"], json.dumps(want, indent=1), rc, json.dumps(got, indent=1)))
sys.exit(0 if ok else 1)
PY
    then pass; else fail "$name"; fi
done

# --allow silences an intended exception; --expect turns the whole file into one error.
dta audit --allow 'logit_projector=F32' tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 0 ] && pass || fail "--allow logit_projector=F32: exit $rc"
dta audit --allow 'logit_projector=BF16' tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 1 ] && pass || fail "--allow with the wrong dtype must not silence: exit $rc"
dta audit --format json --expect bf16 tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors
[ "$rc" -eq 1 ] && [ "$(grep -Ec '"rule":[[:space:]]*"expect-mismatch"' "$TMP/out")" -eq 1 ] && grep -Eq '"module":[[:space:]]*""' "$TMP/out" \
    && pass || fail "--expect bf16 on an all-f16 file: one root-wide expect-mismatch (exit $rc)"
dta audit --expect f16 --fail-on error tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors
[ "$rc" -eq 0 ] && pass || fail "--expect f16 on all-f16: exit $rc"
dta audit --fail-on error tests/fixtures/seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 0 ] && pass || fail "--fail-on error with warnings only: exit $rc"
dta audit --fail-on never --expect f32 tests/fixtures/seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 0 ] && pass || fail "--fail-on never: exit $rc"
# Text output groups the numeric siblings and prints the fix.
dta audit --color never tests/fixtures/seeds/002_ttt_mixed.safetensors
grep -q 'layers\.{0\.\.[0-9]*}\.ttt' "$TMP/out" && pass || fail "text does not group layers.{0..N}.ttt"
grep -q "fix: dtaudit convert --to bf16 --only 'layers\.\*\.ttt\.\*'" "$TMP/out" && pass || fail "text fix command"
dta audit --color never tests/fixtures/seeds/001_distill_logit_projector.safetensors
grep -q "fix: dtaudit convert --to f16 --only 'logit_projector\.\*'" "$TMP/out" && pass || fail "001 fix command"
# Colours: only when asked (stdout is not a TTY here), never with NO_COLOR and auto.
dta audit --color always tests/fixtures/seeds/001_distill_logit_projector.safetensors
grep -q "$(printf '\033')\[" "$TMP/out" && pass || fail "--color always"
NO_COLOR=1 dta audit tests/fixtures/seeds/001_distill_logit_projector.safetensors
grep -q "$(printf '\033')\[" "$TMP/out" && fail "colour without a TTY" || pass
finish
