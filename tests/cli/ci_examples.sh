#!/bin/sh
# examples/ci: the GitHub Actions workflow and the pre-commit hook parse as YAML, and the
# dtaudit commands they run are valid invocations: they are run here against fixtures.
# Skips (77) without Python's yaml module.
. "$(dirname "$0")/lib.sh"
py_start
YPY=""
if py -c 'import yaml' 2>/dev/null; then YPY=py
elif python3 -c 'import yaml' 2>/dev/null; then YPY=python3; fi
[ -n "$YPY" ] || { echo "SKIP: no Python with yaml (pip install pyyaml)"; exit 77; }
SHELL_=bash; command -v bash >/dev/null 2>&1 || SHELL_=sh
BIN=$(cd "$(dirname "$DTAUDIT")" && pwd)
[ "$(basename "$DTAUDIT")" = dtaudit ] || { mkdir -p "$TMP/bin"; ln -s "$DTAUDIT" "$TMP/bin/dtaudit"; BIN=$TMP/bin; }
W=examples/ci/dtaudit-audit.yml
H=examples/ci/.pre-commit-hooks.yaml

# The workflow: its structure, and the run scripts of the steps that call dtaudit, written
# out to files with the workflow's env (CHECKPOINTS replaced by fixtures below).
"$YPY" - "$W" "$TMP" <<'PY' && pass || fail "workflow structure"
import json, re, sys
import yaml
w = yaml.safe_load(open(sys.argv[1])); tmp = sys.argv[2]
on = w.get("on", w.get(True))          # YAML 1.1 reads the key 'on' as True
assert "pull_request" in on and "push" in on, on
assert w["permissions"]["security-events"] == "write"
steps = w["jobs"]["audit"]["steps"]
uses = [s.get("uses", "") for s in steps]
assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses), uses
assert sum(u.startswith("actions/checkout@") for u in uses) == 2
up = [s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")][0]
assert "always()" in up["if"]
build = [s for s in steps if "autoreconf" in s.get("run", "")][0]["run"]
for pkg in "gcc make autoconf automake pkg-config libcjson-dev libzip-dev zlib1g-dev".split():
    assert re.search(r"\b%s\b" % re.escape(pkg), build), pkg
audit = [s for s in steps if "--format sarif" in s.get("run", "")]
assert len(audit) == 1 and "dtaudit audit" in audit[0]["run"]
assert "> " + up["with"]["sarif_file"] in audit[0]["run"], "the audit step writes the uploaded file"
gh = [s for s in steps if "--format github" in s.get("run", "")]
assert len(gh) == 1
with open(tmp + "/env.sh", "w") as f:
    for k, v in w["env"].items():
        if k != "CHECKPOINTS":
            f.write("export %s='%s'\n" % (k, v))
open(tmp + "/audit-step.sh", "w").write(audit[0]["run"])
open(tmp + "/annotate-step.sh", "w").write(gh[0]["run"])
PY
grep -q "DTAUDIT_ARGS='--fail-on warning'" "$TMP/env.sh" && pass || fail "workflow env"

# step SCRIPT CHECKPOINTS...: runs a workflow step as GitHub does (bash -e), in a work dir.
step() {
    script=$1; shift
    mkdir -p "$TMP/work"
    set +e
    (cd "$TMP/work" && . "$TMP/env.sh" && PATH="$BIN:$PATH" CHECKPOINTS="$*" \
        GITHUB_PATH=/dev/null "$SHELL_" -e "$TMP/$script" >"$TMP/out" 2>"$TMP/err")
    rc=$?
    set -e
}
clean="$srcdir/tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors"
warn="$srcdir/tests/fixtures/seeds/001_distill_logit_projector.safetensors"
step audit-step.sh "$clean" "$srcdir/tests/fixtures/dirs/bf16-base"
[ "$rc" -eq 0 ] && [ "$(py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["version"], len(d["runs"][0]["results"]))' "$TMP/work/dtaudit.sarif")" = "2.1.0 0" ] \
    && pass || fail "workflow audit step, clean: exit $rc $(cat "$TMP/err")"
step audit-step.sh "$clean" "$warn"
[ "$rc" -eq 1 ] && [ "$(py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["runs"][0]["results"]))' "$TMP/work/dtaudit.sarif")" = 1 ] \
    && pass || fail "workflow audit step, a finding: exit $rc $(cat "$TMP/err")"
step annotate-step.sh "$clean" "$warn"
[ "$rc" -eq 0 ] && grep -q "^::warning file=$warn,title=dtaudit dtype-outlier%3A logit_projector::" "$TMP/out" \
    && pass || fail "workflow annotate step: exit $rc $(cat "$TMP/out" "$TMP/err")"

# The pre-commit hook: a system hook whose entry, given the staged files, is a dtaudit run.
"$YPY" - "$H" "$TMP" <<'PY' && pass || fail "pre-commit hook definition"
import re, shlex, sys
import yaml
hooks = yaml.safe_load(open(sys.argv[1]))
assert isinstance(hooks, list) and hooks
h = [x for x in hooks if x["id"] == "dtaudit"][0]
assert h["language"] == "system" and h["entry"] == "dtaudit audit --fail-on error", h
rx = re.compile(h["files"])
for name in ("model.safetensors", "pytorch_model.bin", "ckpt/last.ckpt", "a.pt", "b.pth"):
    assert rx.search(name), name
for name in ("config.json", "train.py", "model.safetensors.index.json", "README.md"):
    assert not rx.search(name), name
for x in hooks:
    assert shlex.split(x["entry"])[0] == "dtaudit", x
open(sys.argv[2] + "/entry", "w").write(h["entry"])
PY
entry=$(cat "$TMP/entry")
hook() { set +e; PATH="$BIN:$PATH" $entry "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; set -e; }
hook tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors tests/fixtures/torch/state_dict.pt
[ "$rc" -eq 0 ] && pass || fail "hook on clean files: exit $rc"
hook tests/fixtures/seeds/001_distill_logit_projector.safetensors
[ "$rc" -eq 0 ] && grep -q "warning dtype-outlier" "$TMP/out" && pass || fail "hook: a warning does not block: exit $rc"
hook tests/fixtures/seeds/001_distill_logit_projector_fixed.safetensors tests/fixtures/malicious/builtins_exec.pt
[ "$rc" -eq 1 ] && grep -q "error   unsafe-pickle" "$TMP/out" && pass || fail "hook: an error blocks: exit $rc"
finish
