#!/usr/bin/env python3
"""Load each torch fixture with real PyTorch and compare dtype + shape of every tensor
with `dtaudit scan --format json`.

usage: torch_compare.py [FIXTURE_DIR] [--dtaudit PATH]
Exits 77 with a SKIP line when torch is not importable. Files torch cannot load
(torch 2.x dtypes on an older torch) are compared with their expected list instead.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

try:
    import torch
except Exception as e:  # noqa: BLE001
    print("SKIP: PyTorch is not importable (%s); install python3-torch to run this test" % e)
    sys.exit(77)

CODES = {
    "torch.bool": "BOOL", "torch.uint8": "U8", "torch.int8": "I8", "torch.int16": "I16",
    "torch.int32": "I32", "torch.int64": "I64", "torch.float16": "F16", "torch.bfloat16": "BF16",
    "torch.float32": "F32", "torch.float64": "F64", "torch.complex64": "C64",
    "torch.complex128": "C128", "torch.complex32": "C32", "torch.qint8": "QI8", "torch.quint8": "QU8",
    "torch.qint32": "QI32", "torch.quint4x2": "QU4X2", "torch.uint16": "U16", "torch.uint32": "U32",
    "torch.uint64": "U64", "torch.float8_e4m3fn": "F8_E4M3", "torch.float8_e5m2": "F8_E5M2",
}

# Files an old torch cannot load: expected tensors (name -> (dtype, shape)).
HANDMADE = {
    "v3_handmade.pt": {"f8": ("F8_E4M3", [2, 3]), "u16": ("U16", [4]), "e5m2": ("F8_E5M2", [2])},
}


def key(k):
    if isinstance(k, str):
        return k
    if isinstance(k, type):
        return "<class '%s.%s'>" % (k.__module__, k.__qualname__)
    return repr(k) if not isinstance(k, int) else str(k)


def flatten(obj, prefix, out, seen):
    if id(obj) in seen and not isinstance(obj, torch.Tensor):
        return
    join = (lambda k: prefix + "." + k) if prefix else (lambda k: k)
    if isinstance(obj, torch.Tensor):
        out[prefix] = (CODES.get(str(obj.dtype), str(obj.dtype)), list(obj.shape))
        return
    seen = seen | {id(obj)}
    if isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict(keep_vars=True).items():
            flatten(v, join(k), out, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, join(key(k)), out, seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(str(i)), out, seen)


def load(path):
    obj = torch.load(path, map_location="cpu")
    if "weights_only" in torch.load.__code__.co_varnames:
        try:  # weights_only must give the same tensors when it accepts the file
            wo = torch.load(path, map_location="cpu", weights_only=True)
            a, b = {}, {}
            flatten(obj, "", a, frozenset())
            flatten(wo, "", b, frozenset())
            if a != b:
                raise AssertionError("weights_only load differs for %s" % path)
        except Exception as e:  # noqa: BLE001
            if isinstance(e, AssertionError):
                raise
    return obj


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    dtaudit = os.environ.get("DTAUDIT", os.path.join(REPO, "src", "cli", "dtaudit"))
    if "--dtaudit" in sys.argv:
        dtaudit = sys.argv[sys.argv.index("--dtaudit") + 1]
        args = [a for a in args if a != dtaudit]
    fixdir = args[0] if args else os.path.join(REPO, "tests", "fixtures", "torch")
    failed = 0
    for name in sorted(os.listdir(fixdir)):
        path = os.path.join(fixdir, name)
        if not os.path.isfile(path) or name.endswith((".json", ".md")):
            continue
        if name in HANDMADE:
            want = HANDMADE[name]
        else:
            try:
                obj = load(path)
            except Exception as e:  # noqa: BLE001
                print("SKIP %s: torch %s cannot load it: %s" % (name, torch.__version__, e))
                continue
            want = {}
            flatten(obj, "", want, frozenset())
        p = subprocess.run([dtaudit, "scan", "--format", "json", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode not in (0, 1):
            print("FAIL %s: dtaudit exit %d: %s" % (name, p.returncode, p.stderr.decode().strip()))
            failed += 1
            continue
        got = {t["name"]: (t["dtype"], list(t["shape"])) for t in json.loads(p.stdout)["tensors"]}
        want = {k: (v[0], list(v[1])) for k, v in want.items()}
        if got != want:
            failed += 1
            print("FAIL %s" % name)
            for k in sorted(set(got) | set(want)):
                if got.get(k) != want.get(k):
                    print("    %s: dtaudit %s, torch %s" % (k, got.get(k), want.get(k)))
        else:
            print("ok   %s (%d tensors)" % (name, len(got)))
    print("torch %s: %d failed" % (torch.__version__, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
