#!/usr/bin/env python3
"""Compare dtaudit's reading of safetensors files with the reference `safetensors`
package.

Usage: python3 tests/interop/safetensors_interop.py DTAUDIT FIXTURE_DIR...

For every *.safetensors file under the given directories that the safetensors
package can open, runs `DTAUDIT scan --format json FILE` and compares the tensor
map (name -> dtype, shape) with what `safetensors.safe_open` reports through
`get_slice(name).get_dtype()/get_shape()` (these work for every dtype code,
bf16 and float8 included, without converting data). Also checks the contract
fields numel, nbytes and file of each tensor. Files the package refuses are
skipped (they belong to tests/fixtures/bad/).

Exit status: 0 all passed, 1 a mismatch (a diff is printed), 77 the safetensors
package is missing (automake's SKIP), 99 usage error.
"""

import json
import os
import subprocess
import sys

BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
        "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16,
        "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
        "F64": 64, "I64": 64, "U64": 64}


def reference(path, framework):
    """name -> (dtype, shape) from the safetensors package; raises if it refuses."""
    from safetensors import safe_open
    out = {}
    with safe_open(path, framework=framework) as f:
        for k in f.keys():
            s = f.get_slice(k)
            out[k] = (s.get_dtype(), list(s.get_shape()))
    return out


def dtaudit_map(binary, path):
    """name -> (dtype, shape), plus a list of contract problems."""
    p = subprocess.run([binary, "scan", "--format", "json", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return None, ["dtaudit exit %d: %s" % (p.returncode,
                                               p.stderr.decode("utf-8", "replace").strip())]
    try:
        doc = json.loads(p.stdout.decode("utf-8"))
    except ValueError as e:
        return None, ["dtaudit output is not JSON: %s" % e]
    out, problems = {}, []
    for t in doc.get("tensors", []):
        name, dt, shape = t.get("name"), t.get("dtype"), t.get("shape")
        if name in out:
            problems.append("dtaudit lists %r twice" % name)
        out[name] = (dt, shape)
        if not isinstance(shape, list):
            problems.append("%r: shape %r is not a list" % (name, shape))
            continue
        n = 1
        for d in shape:
            n *= d
        if t.get("numel") != n:
            problems.append("%r: numel %r, expected %d" % (name, t.get("numel"), n))
        if dt in BITS and t.get("nbytes") != n * BITS[dt] // 8:
            problems.append("%r: nbytes %r, expected %d" % (name, t.get("nbytes"),
                                                           n * BITS[dt] // 8))
        if t.get("file") is not None and os.path.abspath(t["file"]) != os.path.abspath(path):
            problems.append("%r: file %r, expected %r" % (name, t.get("file"), path))
    return out, problems


def diff(ref, got):
    lines = []
    for k in sorted(set(ref) | set(got)):
        if k not in got:
            lines.append("  missing in dtaudit: %r %s %s" % (k, ref[k][0], ref[k][1]))
        elif k not in ref:
            lines.append("  extra in dtaudit:   %r %s %s" % (k, got[k][0], got[k][1]))
        elif ref[k] != tuple(got[k]):
            lines.append("  %r: safetensors %s %s, dtaudit %s %s"
                         % (k, ref[k][0], ref[k][1], got[k][0], got[k][1]))
    return lines


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 99
    binary, dirs = argv[1], argv[2:]
    try:
        import safetensors
    except ImportError:
        print("SKIP: the Python package 'safetensors' is not installed "
              "(pip install safetensors)")
        return 77
    try:
        import torch  # noqa: F401
        framework = "pt"
    except ImportError:
        framework = "numpy"
    print("# safetensors %s, framework=%s" % (safetensors.__version__, framework))

    files = []
    for d in dirs:
        if os.path.isfile(d):
            files.append(d)
            continue
        if not os.path.isdir(d):
            print("FAIL %s: no such directory" % d)
            return 1
        for root, _, names in os.walk(d):
            files += [os.path.join(root, n) for n in names if n.endswith(".safetensors")]
    npass = nfail = nskip = 0
    for path in sorted(files):
        try:
            ref = reference(path, framework)
        except Exception as e:  # the package refused it: not an interop case
            try:
                ref = reference(path, "numpy") if framework != "numpy" else None
            except Exception:
                ref = None
            if ref is None:
                nskip += 1
                print("SKIP %s: safetensors cannot open it (%s)"
                      % (path, str(e).splitlines()[0][:100]))
                continue
        got, problems = dtaudit_map(binary, path)
        lines = problems + ([] if got is None else diff(ref, got))
        if lines:
            nfail += 1
            print("FAIL %s" % path)
            for ln in lines:
                print(ln if ln.startswith("  ") else "  " + ln)
        else:
            npass += 1
            print("PASS %s (%d tensors)" % (path, len(ref)))
    print("%d passed, %d failed%s" % (npass, nfail,
                                      ", %d skipped" % nskip if nskip else ""))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
