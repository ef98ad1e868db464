#!/usr/bin/env python3
"""Compare dtaudit's reading of every torch-zip / torch-legacy file of the real corpus
with the corpus ground truth (TRUTH.json: flattened name -> dtype + shape).

usage: corpus_torch.py [CORPUS_DIR] [--dtaudit PATH] [-v]
CORPUS_DIR defaults to ../shared/corpus/real next to the repository. Exits 77 (skip)
when the corpus is absent. Known disagreements that are TRUTH errors are listed in
tests/interop/TRUTH-NOTES.md and in KNOWN below.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# file -> reason; disagreements there are reported but do not fail (see TRUTH-NOTES.md)
KNOWN = {}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    verbose = "-v" in sys.argv
    dtaudit = os.environ.get("DTAUDIT", os.path.join(REPO, "src", "cli", "dtaudit"))
    if "--dtaudit" in sys.argv:
        dtaudit = sys.argv[sys.argv.index("--dtaudit") + 1]
        args = [a for a in args if a != dtaudit]
    corpus = args[0] if args else os.path.join(os.path.dirname(REPO), "shared", "corpus", "real")
    truth_path = os.path.join(corpus, "TRUTH.json")
    if not os.path.exists(truth_path):
        print("SKIP: corpus not found at %s" % corpus)
        return 77
    if not os.access(dtaudit, os.X_OK):
        print("SKIP: dtaudit binary not found at %s (build first)" % dtaudit)
        return 77
    truth = json.load(open(truth_path))
    failed = 0
    checked = 0
    for rel, entry in sorted(truth.items()):
        if entry.get("format") not in ("torch-zip", "torch-legacy"):
            continue
        path = os.path.join(corpus, rel)
        if not os.path.exists(path):
            print("MISSING %s" % rel)
            failed += 1
            continue
        checked += 1
        p = subprocess.run([dtaudit, "scan", "--format", "json", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode not in (0, 1):
            print("FAIL %s: exit %d: %s" % (rel, p.returncode, p.stderr.decode(errors="replace").strip()))
            failed += 1
            continue
        doc = json.loads(p.stdout)
        got = {t["name"]: (t["dtype"], list(t["shape"])) for t in doc.get("tensors", [])}
        want = {n: (t["dtype"], list(t["shape"])) for n, t in entry.get("tensors", {}).items()}
        problems = []
        for n in sorted(set(want) - set(got)):
            problems.append("missing %s %s" % (n, want[n]))
        for n in sorted(set(got) - set(want)):
            problems.append("extra %s %s" % (n, got[n]))
        for n in sorted(set(got) & set(want)):
            if got[n] != want[n]:
                problems.append("differs %s: got %s, truth %s" % (n, got[n], want[n]))
        if len(doc.get("tensors", [])) != len(got):
            problems.append("duplicate tensor names in dtaudit output")
        if problems:
            tag = "KNOWN" if rel in KNOWN else "FAIL"
            print("%s %s (%d problems)%s" % (tag, rel, len(problems),
                                              (": " + KNOWN[rel]) if rel in KNOWN else ""))
            for pr in problems[: (1000 if verbose else 10)]:
                print("    " + pr)
            if rel not in KNOWN:
                failed += 1
        else:
            print("ok   %s (%d tensors)" % (rel, len(got)))
    print("%d files checked, %d failed" % (checked, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
