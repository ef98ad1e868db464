#!/usr/bin/env python3
"""Every fix dtaudit prints works, and `convert --to auto` normalises a checkpoint.

Usage: fixes.py DTAUDIT TMPDIR INTENDED_FIXTURES_DIR [QUANT_LAYOUTS_DIR] (run by fixes.sh)

1. Fixes: for each case (audit arguments + a fixture that has findings: the seeds, the
   examples, directory and adapter fixtures, torch fixtures, a config.json mismatch, the
   intended-precision fixtures under --strict, --expect runs, the quantized layouts), every
   finding whose JSON
   "fix" is not null is applied: its argv is run (with -o redirected into TMPDIR) and must
   exit 0; auditing the output with the same arguments must no longer report that finding
   (rule, root, module) and must report nothing the input did not (no new finding).
   The text output must show the same command (words shell-quoted) for single findings.
2. --to auto: for each fixture whose findings are all dtype findings, `convert --to auto`
   exits 0 and `audit` of the output exits 0 with no warning or error.
Prints one line per check and a summary; exits 1 on any failure.
"""
import json
import os
import shlex
import subprocess
import sys

DTA, TMP, IFX = sys.argv[1], sys.argv[2], sys.argv[3]
QFX = sys.argv[4] if len(sys.argv) > 4 else None  # tests/quant/make_layouts.py output
fails = passes = 0


def run(args):
    p = subprocess.run([DTA] + args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def audit(args, path):
    rc, out, err = run(["audit", "--format", "json"] + args + [path])
    if rc not in (0, 1):
        raise RuntimeError("audit %s %s: exit %d: %s" % (args, path, rc, err.strip()))
    return json.loads(out)["findings"]


def key(f):
    return (f["rule"], f["root"], f["module"])


def check(ok, what):
    global fails, passes
    if ok:
        passes += 1
    else:
        fails += 1
        print("FAIL: " + what)


DTYPE_RULES = {"dtype-outlier", "mixed-module", "expect-mismatch", "config-mismatch", "adapter-mismatch"}

seeds = "tests/fixtures/seeds"
cases = [
    ([], seeds + "/001_distill_logit_projector.safetensors"),
    ([], seeds + "/002_ttt_mixed.safetensors"),
    ([], seeds + "/003_higgs_audio.safetensors"),
    (["--expect", "bf16"], seeds + "/003_higgs_audio.safetensors"),
    (["--expect", "f16"], seeds + "/001_distill_logit_projector.safetensors"),
    (["--expect", "f32", "--allow", "*norm*"], seeds + "/002_ttt_mixed.safetensors"),
    ([], "examples/001-distill-f16-teacher-f32-projector.safetensors"),
    ([], "examples/002-ttt-bf16-model-f32-states.safetensors"),
    ([], "examples/003-higgs-audio-bf16-lm-f32-audio-embed.safetensors"),
    (["--base", "tests/fixtures/dirs/bf16-base"], "tests/fixtures/dirs/peft-f32-adapter"),
    ([], "tests/fixtures/dirs/diff/old.bin"),
    ([], "tests/fixtures/dirs/diff/new.safetensors"),
    ([], "tests/fixtures/torch/dtypes.pt"),
    ([], "tests/fixtures/good/all_dtypes.safetensors"),
]
# a directory whose config.json disagrees with its weights
cfgdir = os.path.join(TMP, "cfg-mismatch")
os.makedirs(cfgdir, exist_ok=True)
with open(seeds + "/003_higgs_audio_fixed.safetensors", "rb") as f, \
        open(os.path.join(cfgdir, "model.safetensors"), "wb") as g:
    g.write(f.read())
with open(os.path.join(cfgdir, "config.json"), "w") as f:
    json.dump({"model_type": "higgs", "torch_dtype": "float16"}, f)
cases.append(([], cfgdir))
# the intended-precision fixtures: islands reported as ordinary findings under --strict
for name in sorted(os.listdir(IFX)):
    if name.endswith(".json"):
        continue
    cases.append((["--strict"], os.path.join(IFX, name)))
    cases.append(([], os.path.join(IFX, name)))

# the quantized layouts (DeepSeek-V3 FP8, compressed-tensors, NVFP4, MXFP4, bnb, GPTQ, AWQ,
# and their broken variants): fixes must keep quantized parameters (--keep-quantized)
for name in sorted(os.listdir(QFX)) if QFX else []:
    cases.append(([], os.path.join(QFX, name)))

n = 0
for args, path in cases:
    before = audit(args, path)
    fixes = [f for f in before if f.get("fix")]
    # text shows the same commands (single findings are not grouped)
    rc, text, _ = run(["audit", "--color", "never"] + args + [path])
    for f in fixes:
        line = " ".join(shlex.quote(a) if any(c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:,=@" for c in a) else a
                        for a in f["fix"]["argv"])
        grouped = sum(1 for g in before if g["rule"] == f["rule"]) > 1
        check(grouped or line in text, "%s %s: text does not show %r" % (args, path, line))
    for f in before:
        check(f.get("fix") is None or (isinstance(f["fix"].get("argv"), list) and f["fix"].get("description")),
              "%s: malformed fix %r" % (path, f.get("fix")))
    for f in fixes:
        n += 1
        argv = list(f["fix"]["argv"])
        check(argv[:2] == ["dtaudit", "convert"], "fix is not a convert command: %r" % argv)
        o = argv.index("-o")
        out = os.path.join(TMP, "fix%d-%s" % (n, os.path.basename(argv[o + 1])))
        argv[o + 1] = out
        rc, _, err = run(argv[1:] + ["-q"])
        what = "%s %s: %s: %s" % (" ".join(args), path, f["rule"], " ".join(argv))
        check(rc == 0, "%s: exit %d: %s" % (what, rc, err.strip()))
        if rc != 0:
            continue
        after = audit(args, out)
        check(key(f) not in {key(g) for g in after}, "%s: the finding is still there" % what)
        new = {key(g) for g in after} - {key(g) for g in before}
        check(not new, "%s: new findings %r" % (what, sorted(new)))
print("fixes: %d fix commands run over %d cases" % (n, len(cases)))

# --to auto over every fixture whose findings are all dtype findings
m = 0
for args, path in cases:
    if args:
        continue
    before = audit([], path)
    if not before or not all(f["rule"] in DTYPE_RULES or f["severity"] == "info" for f in before):
        continue
    # a root whose compute dtype convert cannot write (F8, F6, ...) is left as it is
    if any(f["expected"] not in ("F32", "F16", "BF16", None) for f in before if f["rule"] in DTYPE_RULES):
        print("--to auto: %s skipped: a root's dtype is not one convert writes" % path)
        continue
    m += 1
    out = os.path.join(TMP, "auto%d-%s" % (m, os.path.basename(path.rstrip("/"))))
    rc, _, err = run(["convert", "--to", "auto", "-q", path, "-o", out])
    check(rc == 0, "convert --to auto %s: exit %d: %s" % (path, rc, err.strip()))
    if rc != 0:
        continue
    rc, outp, err = run(["audit", "--format", "json", out])
    left = [key(f) for f in json.loads(outp)["findings"] if f["severity"] != "info"] if rc in (0, 1) else err
    check(rc == 0 and not left, "convert --to auto %s: audit exit %d, left %r" % (path, rc, left))
    # the intended islands survive --to auto, and --no-keep-intended converts them
    kept = sorted(key(f) for f in before if f["rule"] == "intended")
    after = sorted(key(f) for f in json.loads(outp)["findings"] if f["rule"] == "intended")
    check(kept == after, "convert --to auto %s: intended %r became %r" % (path, kept, after))
    if kept:
        out2 = out + "-nokeep"
        rc, _, err = run(["convert", "--to", "auto", "--no-keep-intended", "-q", path, "-o", out2])
        gone = [f for f in audit([], out2) if f["rule"] == "intended"] if rc == 0 else ["exit %d" % rc]
        check(not gone, "--no-keep-intended %s: left %r" % (path, gone))
print("--to auto: %d fixtures normalised" % m)
print("%d passed, %d failed" % (passes, fails))
sys.exit(1 if fails else 0)
