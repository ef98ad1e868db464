#!/usr/bin/env python3
"""Check dtaudit against the real-checkpoint corpus and its recorded truth.

Usage: python3 tests/interop/corpus_truth.py DTAUDIT CORPUS_DIR
           [--formats safetensors,index-json,torch-zip,torch-legacy]

CORPUS_DIR/TRUTH.json maps a path (relative to CORPUS_DIR) to an entry with a
`format` and a `tensors` map (name -> {dtype, shape}). For each entry whose format
is selected (default: safetensors), runs `DTAUDIT scan --format json PATH` and
checks that dtaudit lists exactly the truth's tensor names with the same dtype
and shape. Entries without tensor truth (config files, indexes whose shards are
absent) are skipped. An entry whose `validation` is not "ok" must be rejected
with exit status 2.

Tensor names: dtaudit's `name` is compared as is; when it does not start with
its `root` (a reader that reports names relative to the root), `root.name` is
used instead.

Exit status: 0 all passed, 1 a mismatch, 77 CORPUS_DIR or TRUTH.json absent
(automake's SKIP), 99 usage error.
"""

import argparse
import json
import os
import subprocess
import sys

NO_TENSORS = {"config-json", "adapter-config"}


def scan(binary, path):
    p = subprocess.run([binary, "scan", "--format", "json", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def tensor_map(doc):
    out, dups = {}, []
    for t in doc.get("tensors", []):
        name, root = t.get("name", ""), t.get("root") or ""
        if root and name != root and not name.startswith(root + "."):
            name = root + "." + name if name else root
        if name in out:
            dups.append(name)
        out[name] = (t.get("dtype"), t.get("shape"))
    return out, dups


def compare(truth, got, limit=20):
    lines = []
    for k in sorted(set(truth) | set(got)):
        if k not in got:
            lines.append("  missing in dtaudit: %r %s %s" % (k, truth[k][0], truth[k][1]))
        elif k not in truth:
            lines.append("  extra in dtaudit:   %r %s %s" % (k, got[k][0], got[k][1]))
        elif truth[k] != got[k]:
            lines.append("  %r: truth %s %s, dtaudit %s %s"
                         % (k, truth[k][0], truth[k][1], got[k][0], got[k][1]))
    if len(lines) > limit:
        lines = lines[:limit] + ["  ... %d more differences" % (len(lines) - limit)]
    return lines


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].replace("Usage: ", ""))
    ap.add_argument("dtaudit")
    ap.add_argument("corpus")
    ap.add_argument("--formats", default="safetensors",
                    help="comma-separated TRUTH.json formats to check (default: safetensors)")
    try:
        a = ap.parse_args()
    except SystemExit as e:
        return 99 if e.code else 0
    truth_path = os.path.join(a.corpus, "TRUTH.json")
    if not os.path.isdir(a.corpus) or not os.path.isfile(truth_path):
        print("SKIP: no corpus at %s (TRUTH.json not found)" % a.corpus)
        return 77
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    formats = {x.strip() for x in a.formats.split(",") if x.strip()}
    npass = nfail = nskip = 0
    for rel, entry in sorted(truth.items()):
        fmt = entry.get("format")
        if fmt not in formats:
            continue
        path = os.path.join(a.corpus, rel)
        tensors = entry.get("tensors") or {}
        index = entry.get("index") or {}
        if fmt in NO_TENSORS:
            nskip += 1
            print("SKIP %s: format %s has no tensors" % (rel, fmt))
            continue
        if fmt == "index-json" and (not tensors or
                                    len(index.get("shards_present_locally", [])) <
                                    len(index.get("shards", []))):
            nskip += 1
            print("SKIP %s: shards not present, no tensor truth" % rel)
            continue
        if not os.path.exists(path):
            nfail += 1
            print("FAIL %s: file missing from the corpus" % rel)
            continue
        rc, out, err = scan(a.dtaudit, path)
        if entry.get("validation", "ok") != "ok":
            if rc == 2 and len(err.splitlines()) == 1:
                npass += 1
                print("PASS %s (rejected as expected: %s)" % (rel, err.strip()))
            else:
                nfail += 1
                print("FAIL %s: truth says %r, expected exit 2 and one stderr line, got %d: %r"
                      % (rel, entry.get("validation"), rc, err.strip()))
            continue
        if rc != 0:
            nfail += 1
            print("FAIL %s: dtaudit exit %d: %s" % (rel, rc, err.strip()))
            continue
        try:
            doc = json.loads(out)
        except ValueError as e:
            nfail += 1
            print("FAIL %s: output is not JSON: %s" % (rel, e))
            continue
        got, dups = tensor_map(doc)
        want = {k: (v.get("dtype"), v.get("shape")) for k, v in tensors.items()}
        lines = ["  dtaudit lists %r twice" % d for d in dups] + compare(want, got)
        if lines:
            nfail += 1
            print("FAIL %s (%s)" % (rel, fmt))
            print("\n".join(lines))
        else:
            npass += 1
            print("PASS %s (%s, %d tensors)" % (rel, fmt, len(want)))
    print("%d passed, %d failed%s" % (npass, nfail, ", %d skipped" % nskip if nskip else ""))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
