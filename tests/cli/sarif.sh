#!/bin/sh
# --format sarif (SARIF 2.1.0, validated against the official schema) and --format github
# (workflow-command annotations with GitHub's escaping).
. "$(dirname "$0")/lib.sh"
py_start
F=tests/fixtures/dirs
SCHEMA=tests/fixtures/sarif/sarif-schema-2.1.0.json

# $PYTHON (tests/cli/lib.sh) validates when it has jsonschema. Without it the schema checks
# are skipped (the rest still runs) and the test ends with 77 if nothing failed.
VALIDATOR=""
if py -c 'import jsonschema' 2>/dev/null; then VALIDATOR=py; fi
[ -n "$VALIDATOR" ] || echo "SKIP: schema validation ($PYTHON has no jsonschema; scripts/setup --tests)"
validate() { # validate FILE: against the SARIF 2.1.0 schema
    [ -n "$VALIDATOR" ] || return 0
    "$VALIDATOR" - "$SCHEMA" "$1" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
v = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
for e in errors[:5]:
    print("schema:", list(e.path), e.message[:300])
sys.exit(1 if errors else 0)
PY
}

# Inputs with findings of several rules: dtype-outlier (file), adapter-mismatch (directory),
# index-mismatch (missing shard), config-mismatch, and a clean one.
d=$TMP/model
mkdir -p "$d"
cp tests/fixtures/seeds/003_higgs_audio_fixed.safetensors "$d/model.safetensors"
echo '{"torch_dtype": "float16"}' >"$d/config.json"
s=$TMP/sharded
mkdir -p "$s"
cp tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors "$s/model-00001-of-00002.safetensors"
py - "$s" <<'PY'
import json, os, sys, stwrite
d = sys.argv[1]
h = stwrite.read_header(os.path.join(d, "model-00001-of-00002.safetensors"))[0]
wm = {k: "model-00001-of-00002.safetensors" for k in h if k != "__metadata__"}
wm["extra.weight"] = "model-00002-of-00002.safetensors"
json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
PY
set -- tests/fixtures/seeds/001_distill_logit_projector.safetensors "$d" "$s" $F/peft-f32-adapter \
    tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors
dta audit --format sarif --base $F/bf16-base "$@"
cp "$TMP/out" "$TMP/run1.sarif"
[ "$rc" -eq 1 ] && [ ! -s "$TMP/err" ] && pass || fail "sarif run: exit $rc $(cat "$TMP/err")"
validate "$TMP/run1.sarif" && pass || fail "SARIF output does not validate against the 2.1.0 schema"
[ "$(pyj 'd["version"], d["runs"][0]["tool"]["driver"]["name"], d["runs"][0]["invocations"][0]["executionSuccessful"]')" = "('2.1.0', 'dtaudit', True)" ] \
    && pass || fail "sarif header"

# One result per finding, with the finding's rule, level and message.
dta audit --format json --base $F/bf16-base "$@"
cp "$TMP/out" "$TMP/run.json"
py - "$TMP/run1.sarif" "$TMP/run.json" <<'PY' && pass || fail "results do not match the findings"
import json, sys
s = json.load(open(sys.argv[1]))["runs"][0]; j = json.load(open(sys.argv[2]))
res = s["results"]; fs = j["findings"]
level = {"error": "error", "warning": "warning", "info": "note"}
assert len(res) == len(fs) > 0, (len(res), len(fs))
got = sorted((r["ruleId"], r["level"], r["message"]["text"]) for r in res)
want = sorted((f["rule"], level[f["severity"]], f["message"]) for f in fs)
assert got == want, (got, want)
rules = s["tool"]["driver"]["rules"]
for r in res:   # ruleIndex points at the rule; every rule has help and a helpUri
    assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
for r in rules:
    assert r["help"]["text"] and r["shortDescription"]["text"] and r["fullDescription"]["text"]
    assert r["helpUri"].startswith("man:dtaudit(1)#"), r["helpUri"]
    assert r["defaultConfiguration"]["level"] in ("error", "warning", "note")
ids = [r["id"] for r in rules]
for rule in ("dtype-outlier", "mixed-module", "expect-mismatch", "config-mismatch", "adapter-mismatch",
             "index-mismatch", "unsafe-pickle", "meta-tensor"):
    assert rule in ids, rule
assert "dtype-changed" not in ids  # diff rules are not audit rules
by = {r["ruleId"]: r for r in res}
def uri(r): return r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
assert uri(by["dtype-outlier"]) == "tests/fixtures/seeds/001_distill_logit_projector.safetensors", uri(by["dtype-outlier"])
assert uri(by["adapter-mismatch"]) == "tests/fixtures/dirs/peft-f32-adapter/adapter_model.safetensors", uri(by["adapter-mismatch"])
assert uri(by["config-mismatch"]).endswith("/model/config.json"), uri(by["config-mismatch"])
assert uri(by["index-mismatch"]).endswith("/sharded/model.safetensors.index.json"), uri(by["index-mismatch"])
assert by["dtype-outlier"]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "logit_projector"
fps = [r["partialFingerprints"]["dtauditFinding/v1"] for r in res]
assert len(set(fps)) == len(fps), "fingerprints are not unique"
PY

# Fingerprints are stable: same run, other options that change messages or order.
dta audit --format sarif -v --fail-on never --base $F/bf16-base "$@"
fp() { py -c 'import json,sys; print(sorted((r["ruleId"], r["partialFingerprints"]["dtauditFinding/v1"]) for r in json.load(open(sys.argv[1]))["runs"][0]["results"]))' "$1"; }
[ "$(fp "$TMP/out")" = "$(fp "$TMP/run1.sarif")" ] && pass || fail "fingerprints changed between runs"
dta audit --format sarif tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$(fp "$TMP/out" | grep -o "'dtype-outlier', '[0-9a-f]*'")" = "$(fp "$TMP/run1.sarif" | grep -o "'dtype-outlier', '[0-9a-f]*'")" ] \
    && pass || fail "fingerprint depends on the other inputs"

# Policy severities become levels: info -> note; --fail-on keeps the exit status.
printf '{"severity": {"dtype-outlier": "info"}}' >"$TMP/p.json"
dta audit --format sarif --policy "$TMP/p.json" tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 0 ] && [ "$(pyj '[r["level"] for r in d["runs"][0]["results"]]')" = "['note']" ] && pass || fail "info -> note: exit $rc"
validate "$TMP/out" && pass || fail "policy SARIF invalid"

# A clean input: an empty results array, still valid.
dta audit --format sarif tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors
[ "$rc" -eq 0 ] && [ "$(pyj 'd["runs"][0]["results"]')" = "[]" ] && pass || fail "clean sarif: exit $rc"
validate "$TMP/out" && pass || fail "clean SARIF invalid"

# An unreadable input: exit 2, a tool execution notification, still valid SARIF.
dta audit --format sarif tests/fixtures/bad/offsets_hole.safetensors tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 2 ] && [ "$(pyj 'd["runs"][0]["invocations"][0]["executionSuccessful"], len(d["runs"][0]["invocations"][0]["toolExecutionNotifications"]), len(d["runs"][0]["results"])')" = "(False, 1, 1)" ] \
    && pass || fail "unreadable input in SARIF: exit $rc"
validate "$TMP/out" && pass || fail "SARIF with a notification invalid"

# Hostile names: a file name with a space, ':', '%', '#', and a tensor module with a newline,
# ',' and ':'; URIs are percent-encoded, annotations escaped as GitHub requires.
h="$TMP/we ird:50%#1.safetensors"
py - "$h" <<'PY'
import sys, stwrite
stwrite.write(sys.argv[1], [("layers.0.w", "BF16", [64], bytes(128)), ("a,b:c%d\ne.w", "F32", [2], bytes(8))])
PY
dta audit --format sarif "$h"
[ "$rc" -eq 1 ] && [ "$(pyj 'd["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].split("/")[-1]')" = "we%20ird%3A50%25%231.safetensors" ] \
    && pass || fail "percent-encoded uri: exit $rc"
validate "$TMP/out" && pass || fail "hostile-name SARIF invalid"
cp "$h" "$TMP/rel.safetensors"
(cd "$TMP" && $DTAUDIT_WRAPPER "$DTAUDIT" audit --format sarif ./rel.safetensors >"$TMP/out") || true
[ "$(pyj 'd["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]')" = rel.safetensors ] \
    && pass || fail "relative uri keeps its path, without ./"

dta audit --format github "$h"
[ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/out")" -eq 1 ] && pass || fail "github: one line per finding: exit $rc"
grep -q '^::warning file=.*/we ird%3A50%25#1.safetensors,title=dtaudit dtype-outlier%3A a%2Cb%3Ac%25d%0Ae::' "$TMP/out" \
    && grep -q "::'a,b:c%25d%0Ae' is F32 while" "$TMP/out" && pass || fail "github escaping: $(cat "$TMP/out")"
dta audit --format github --base $F/bf16-base "$@"
[ "$rc" -eq 1 ] && pass || fail "github exit: $rc"
cp "$TMP/out" "$TMP/gh"
cp "$TMP/run.json" "$TMP/out"
[ "$(grep -c '^::error ' "$TMP/gh")" = "$(pyj 'sum(f["severity"] == "error" for f in d["findings"])')" ] \
    && [ "$(grep -c '^::warning ' "$TMP/gh")" = "$(pyj 'sum(f["severity"] == "warning" for f in d["findings"])')" ] \
    && [ "$(grep -c '^::notice ' "$TMP/gh")" = "$(pyj 'sum(f["severity"] == "info" for f in d["findings"])')" ] \
    && grep -q '^::warning file=tests/fixtures/dirs/peft-f32-adapter/adapter_model.safetensors,title=dtaudit adapter-mismatch::' "$TMP/gh" \
    && pass || fail "github levels: $(cat "$TMP/gh")"
dta audit --format github tests/fixtures/bad/offsets_hole.safetensors
[ "$rc" -eq 2 ] && grep -q '^::error file=tests/fixtures/bad/offsets_hole.safetensors,title=dtaudit%3A unreadable input::' "$TMP/out" \
    && pass || fail "github unreadable input: exit $rc"

# Formats that only audit has.
dta scan --format sarif tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 2 ] && grep -q "applies to audit only" "$TMP/err" && pass || fail "scan --format sarif: exit $rc"
dta audit --format xml tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 2 ] && pass || fail "unknown format: exit $rc"

if [ -z "$VALIDATOR" ] && [ "$fails" -eq 0 ]; then finish; exit 77; fi
finish
