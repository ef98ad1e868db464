#!/usr/bin/env python3
"""dtaudit against a real PyTorch >= 2.1: reading and writing torch 2.x checkpoints.

usage: torch2_check.py [--dtaudit PATH] [--helper PATH] [--keep DIR] [FIXTURE...]

With no FIXTURE, every file of tests/fixtures/torch2/ (made by
scripts/make-torch2-fixtures.py) is checked:
  scan     `dtaudit scan --format json` lists the tensors torch.load(weights_only=True)
           gives: same names, dtype codes (F8_E4M3, U16, ...) and shapes;
  convert  `dtaudit convert --to bf16|f16 --on-overflow inf` output loads with
           torch.load(weights_only=True) and with mmap=True; every floating tensor equals
           orig.to(dtype) bit for bit (NaN only as NaN), integers, optimizer roots and
           non-tensor objects are unchanged, shape/stride/storage_offset/requires_grad/class
           are kept, and tensors share a storage exactly when they did before;
           `dtaudit verify` accepts the output; the default --on-overflow error either
           writes the same bytes or refuses only when torch's .to() overflows to inf.
Then the torch 1.13 files of tests/fixtures/torch/ are converted the same way and loaded
with torch 2.x (weights_only + mmap), and the float8 (F8_E4M3) outputs of dtaudit's torch zip
writer (tests/unit/rewrite_torchzip_tool, the helper of torch_roundtrip.py) are loaded too.

Exits 77 with a SKIP line when torch < 2.1 is all there is (CI has torch 1.13), else
prints "N passed, M failed" and exits 1 when M > 0.
"""
import glob
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX2 = os.path.join(SRC, "tests", "fixtures", "torch2")
FIX1 = os.path.join(SRC, "tests", "fixtures", "torch")

try:
    import torch
except ImportError:
    print("SKIP: torch is not importable (needs torch >= 2.1)")
    sys.exit(77)


def version_tuple(v):
    out = []
    for part in v.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


if version_tuple(torch.__version__) < (2, 1):
    print("SKIP: torch %s < 2.1 (torch2_check needs a PyTorch 2.x; e.g. a venv with pip install torch)"
          % torch.__version__)
    sys.exit(77)

warnings.filterwarnings("ignore")

CODES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "int32": "I32", "int64": "I64",
    "uint16": "U16", "uint32": "U32", "uint64": "U64", "float16": "F16", "bfloat16": "BF16",
    "float32": "F32", "float64": "F64", "complex32": "C32", "complex64": "C64", "complex128": "C128",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0", "float4_e2m1fn_x2": "F4_X2",
    "bcomplex32": "BC32",
    "qint8": "QI8", "quint8": "QU8", "qint32": "QI32", "quint4x2": "QU4X2", "quint2x4": "QU2X4",
    "bits8": "BITS8", "bits16": "BITS16", "bits1x8": "BITS1X8", "bits2x4": "BITS2X4", "bits4x2": "BITS4X2",
}
# the floating dtypes dtaudit converts (man page, CONVERSION: F64, F32, F16, BF16, float8)
SOURCES = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
           "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"}
TARGETS = {"bf16": torch.bfloat16, "f16": torch.float16}

PASSED = []
FAILED = []
KNOWN_UNSUPPORTED = {"aliased_dtypes.pt"}


def ok(what):
    PASSED.append(what)
    print("ok   %s" % what)


def fail(what, why):
    FAILED.append(what)
    print("FAIL %s: %s" % (what, why))


def dname(dt):
    return str(dt).replace("torch.", "")


def code(dt):
    return CODES.get(dname(dt), dname(dt))


# ---------------------------------------------------------------- torch side helpers

def key(k):
    if isinstance(k, str):
        return k
    if isinstance(k, type):
        return "<class '%s.%s'>" % (k.__module__, k.__qualname__)
    return str(k) if isinstance(k, int) else repr(k)


def flatten(obj, prefix, out, seen=frozenset()):
    """name -> tensor, named as dtaudit names them (dict keys and list indices joined by '.')."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return
    if id(obj) in seen:
        return
    seen = seen | {id(obj)}
    join = (lambda k: prefix + "." + k) if prefix else (lambda k: k)
    if isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict(keep_vars=True).items():
            flatten(v, join(k), out, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, join(key(k)), out, seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(str(i)), out, seen)


def load(path, weights_only=True, mmap=False):
    return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)


INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def raw(t):
    """The element bytes of t (honouring its view), as an integer tensor of the same shape."""
    if t.dtype in (torch.complex128,):
        t = torch.view_as_real(t)
    intdt = INTS[t.element_size()]
    r = torch.empty(0, dtype=intdt)
    r.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())
    return r.clone()


def same_bits(want, got):
    """Bit-identical, except that a NaN need only be a NaN."""
    if want.dtype != got.dtype or want.shape != got.shape:
        return False
    a, b = raw(want), raw(got)
    if torch.equal(a, b):
        return True
    if not want.is_floating_point():
        return False
    diff = a != b
    fa, fb = want.float()[diff], got.float()[diff]
    return bool(torch.isnan(fa).all() and torch.isnan(fb).all())


def storage_groups(tensors):
    """Partition of tensor names by the storage they use (storages with bytes only)."""
    groups = {}
    for name, t in tensors.items():
        if t.device.type == "meta" or t.is_quantized:
            continue
        st = t.untyped_storage()
        if st.nbytes() == 0:
            continue
        groups.setdefault(st.data_ptr(), set()).add(name)
    return sorted(sorted(g) for g in groups.values())


def eq_obj(a, b, path, errs, seen=None):
    """Non-tensor structure and values equal (tensors are checked elsewhere)."""
    seen = set() if seen is None else seen
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor):
            errs.append("%s: tensor became %s" % (path, type(b).__name__))
        elif type(a) is not type(b):
            errs.append("%s: class %s became %s" % (path, type(a).__name__, type(b).__name__))
        return
    if type(a) is not type(b):
        errs.append("%s: %s became %s" % (path, type(a).__name__, type(b).__name__))
        return
    if id(a) in seen or isinstance(a, torch.nn.Module):  # modules: tensors compared by name
        return
    seen.add(id(a))
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            errs.append("%s: keys %s became %s" % (path, list(a.keys())[:6], list(b.keys())[:6]))
            return
        for k in a:
            eq_obj(a[k], b[k], "%s.%s" % (path, key(k)), errs, seen)
        if hasattr(a, "__dict__") or hasattr(b, "__dict__"):
            if getattr(a, "__dict__", {}).keys() != getattr(b, "__dict__", {}).keys():
                errs.append("%s: attributes differ" % path)
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            errs.append("%s: length %d became %d" % (path, len(a), len(b)))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            eq_obj(x, y, "%s.%d" % (path, i), errs, seen)
    elif isinstance(a, float):
        if not (a == b or (math.isnan(a) and math.isnan(b))) or math.copysign(1, a) != math.copysign(1, b):
            errs.append("%s: %r became %r" % (path, a, b))
    else:
        try:
            same = a == b
            same = bool(same)
        except Exception:  # noqa: BLE001
            same = repr(a) == repr(b)
        if not same:
            errs.append("%s: %r became %r" % (path, a, b))


# ---------------------------------------------------------------- dtaudit side

def dtaudit_scan(exe, path):
    p = subprocess.run([exe, "scan", "--format", "json", path], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        return None, "exit %d: %s" % (p.returncode, p.stderr.strip())
    import json
    doc = json.loads(p.stdout)
    return doc["tensors"], None


def convert(exe, src, out, target, extra=()):
    if os.path.exists(out):
        os.remove(out)
    return subprocess.run([exe, "convert", "--to", target, src, "-o", out] + list(extra),
                          capture_output=True, text=True)


# ---------------------------------------------------------------- checks

def check_scan(exe, path, what):
    try:
        obj = load(path)
    except Exception as e:  # noqa: BLE001
        fail(what, "torch %s cannot load it with weights_only=True: %s" % (torch.__version__, e))
        return None
    want = {}
    flatten(obj, "", want)
    want = {k: (code(t.dtype), list(t.shape)) for k, t in want.items()}
    tensors, err = dtaudit_scan(exe, path)
    if err:
        fail(what, "dtaudit scan %s (torch reads %d tensors)" % (err, len(want)))
        return None
    got = {t["name"]: (t["dtype"], list(t["shape"])) for t in tensors}
    if got != want:
        lines = ["%s: dtaudit %s, torch %s" % (k, got.get(k), want.get(k))
                 for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        fail(what, "; ".join(lines[:8]))
    else:
        ok("%s (%d tensors)" % (what, len(got)))
    return {t["name"]: t.get("root", "") for t in tensors}


def expected_tensor(t, target, converted):
    if not converted or t.device.type == "meta" or t.is_quantized or dname(t.dtype) not in SOURCES:
        return t
    return t.to(target)


def check_output(orig, out_path, target, roots, what, optimizer, weights_only=True):
    """Compare torch.load of the converted file (plain and mmap) with orig."""
    for mm in (False, True):
        label = "%s [%s]" % (what, "weights_only+mmap" if mm else "weights_only" if weights_only
                             else "weights_only=False")
        try:
            new = load(out_path, weights_only=weights_only, mmap=mm)
        except Exception as e:  # noqa: BLE001
            fail(label, "torch %s cannot load the output: %s" % (torch.__version__, str(e).strip()[:400]))
            continue
        errs = []
        eq_obj(orig, new, "root", errs)
        a, b = {}, {}
        flatten(orig, "", a)
        flatten(new, "", b)
        if list(a) != list(b):
            errs.append("tensor names differ: %s" % sorted(set(a) ^ set(b))[:6])
        for name, t in a.items():
            if name not in b:
                continue
            u = b[name]
            root = roots.get(name, name.split(".")[0]) if roots else name.split(".")[0]
            conv = optimizer or not root.startswith("optimizer")
            want = expected_tensor(t, target, conv)
            if u.dtype != want.dtype:
                errs.append("%s: dtype %s, expected %s" % (name, dname(u.dtype), dname(want.dtype)))
                continue
            if tuple(u.shape) != tuple(t.shape):
                errs.append("%s: shape %s became %s" % (name, tuple(t.shape), tuple(u.shape)))
                continue
            if type(u) is not type(t) or u.requires_grad != t.requires_grad:
                errs.append("%s: class/requires_grad %s/%s became %s/%s" % (
                    name, type(t).__name__, t.requires_grad, type(u).__name__, u.requires_grad))
            if t.device.type == "meta":
                if u.device.type != "meta":
                    errs.append("%s: meta tensor became %s" % (name, u.device))
                continue
            if t.is_quantized:
                if not u.is_quantized or not torch.equal(t.int_repr(), u.int_repr()):
                    errs.append("%s: quantized tensor changed" % name)
                continue
            if u.stride() != t.stride() or u.storage_offset() != t.storage_offset():
                errs.append("%s: view (stride %s, offset %d) became (%s, %d)" % (
                    name, t.stride(), t.storage_offset(), u.stride(), u.storage_offset()))
                continue
            if not same_bits(want, u):
                n = int((raw(want) != raw(u)).sum())
                errs.append("%s: %d of %d values differ from orig%s" % (
                    name, n, t.numel(), ".to(%s)" % dname(target) if want is not t else ""))
        ga, gb = storage_groups(a), storage_groups(b)
        if ga != gb:
            errs.append("storage sharing %s became %s" % (
                [g for g in ga if len(g) > 1], [g for g in gb if len(g) > 1]))
        if errs:
            fail(label, "; ".join(errs[:6]) + (" (+%d more)" % (len(errs) - 6) if len(errs) > 6 else ""))
        else:
            ok("%s (%d tensors)" % (label, len(a)))


def overflows(orig, target, roots, optimizer):
    a = {}
    flatten(orig, "", a)
    for name, t in a.items():
        root = roots.get(name, name.split(".")[0]) if roots else name.split(".")[0]
        if (not optimizer and root.startswith("optimizer")) or dname(t.dtype) not in SOURCES:
            continue
        if t.device.type == "meta" or t.is_quantized:
            continue
        f = t.double() if t.dtype == torch.float64 else t.float()
        if bool((torch.isfinite(f) & torch.isinf(t.to(target).float())).any()):
            return True
    return False


def check_convert(exe, path, tmp, roots, tag, weights_only=True):
    base = os.path.basename(path)
    try:
        orig = load(path, weights_only=weights_only)
    except Exception as e:  # noqa: BLE001
        print("SKIP %s convert: torch %s cannot load the input: %s" % (tag, torch.__version__, e))
        return
    variants = [((), False)]
    a = {}
    flatten(orig, "", a)
    if any((roots or {}).get(n, n.split(".")[0]).startswith("optimizer") for n in a):
        variants.append((("--optimizer",), True))
    for tname, target in TARGETS.items():
        for extra, optimizer in variants:
            what = "%s convert --to %s%s" % (tag, tname, "".join(" " + x for x in extra))
            out = os.path.join(tmp, "%s.%s%s.pt" % (base, tname, "".join(extra).replace("-", "")))
            p = convert(exe, path, out, tname, ("--on-overflow", "inf") + extra)
            if p.returncode != 0 or not os.path.exists(out):
                fail(what, "dtaudit convert --on-overflow inf exit %d: %s" % (p.returncode, p.stderr.strip()[:300]))
                continue
            check_output(orig, out, target, roots, what, optimizer, weights_only)
            v = subprocess.run([exe, "verify", "--on-overflow", "inf", path, out],
                               capture_output=True, text=True)
            if v.returncode != 0:
                fail(what + " [verify]", "dtaudit verify exit %d: %s" % (v.returncode, (v.stderr or v.stdout).strip()[:300]))
            else:
                ok(what + " [verify]")
            # default --on-overflow error: same bytes, or a refusal that torch's .to() justifies
            out2 = out + ".default"
            p2 = convert(exe, path, out2, tname, extra)
            ov = overflows(orig, target, roots, optimizer)
            if p2.returncode == 0:
                if ov:
                    fail(what + " [default mode]", "wrote a file although orig.to(%s) overflows" % tname)
                elif open(out, "rb").read() != open(out2, "rb").read():
                    fail(what + " [default mode]", "output differs from the --on-overflow inf one")
                else:
                    ok(what + " [default mode]")
            elif p2.returncode == 1 and ov and not os.path.exists(out2):
                ok(what + " [default mode refuses: overflow]")
            else:
                fail(what + " [default mode]", "exit %d (torch overflow: %s): %s" % (
                    p2.returncode, ov, p2.stderr.strip()[:300]))
            for f in (out, out2):
                if os.path.exists(f):
                    os.remove(f)


def check_old_fixture(exe, path, tmp):
    """torch 1.13 fixtures: convert, then torch 2.x loads the outputs (weights_only + mmap)."""
    tag = "torch1.13/%s" % os.path.basename(path)
    try:
        load(path, weights_only=True)
        wo = True
    except Exception as e:  # noqa: BLE001
        try:
            load(path, weights_only=False)
        except Exception as e2:  # noqa: BLE001
            print("SKIP %s: torch %s cannot load the input at all: %s" % (tag, torch.__version__, str(e2)[:200]))
            return
        print("note %s: weights_only=True refuses the input (%s); outputs checked with weights_only=False"
              % (tag, str(e).splitlines()[0][:160]))
        wo = False
    tensors, err = dtaudit_scan(exe, path)
    roots = {t["name"]: t.get("root", "") for t in tensors} if tensors else None
    # files convert refuses by design are reported, not failed
    probe = convert(exe, path, os.path.join(tmp, "probe.pt"), "bf16", ("--on-overflow", "inf"))
    if probe.returncode != 0:
        print("note %s: dtaudit convert refuses it (exit %d): %s" % (tag, probe.returncode, probe.stderr.strip()[:200]))
        return
    os.remove(os.path.join(tmp, "probe.pt"))
    check_convert(exe, path, tmp, roots, tag, weights_only=wo)


def check_float8_outputs(helper, tmp):
    """Float8 outputs of dtaudit's torch zip writer (test helper) load in torch 2.x."""
    if not helper:
        print("SKIP float8 writer outputs: tests/unit/rewrite_torchzip_tool not built")
        return
    for path in sorted(glob.glob(os.path.join(FIX1, "*.pt")) + glob.glob(os.path.join(FIX1, "*.ckpt"))
                       + glob.glob(os.path.join(FIX2, "*.pt"))):
        tag = "%s/%s -> F8_E4M3 (writer helper)" % (os.path.basename(os.path.dirname(path)), os.path.basename(path))
        try:
            orig = load(path)
        except Exception:  # noqa: BLE001
            continue
        out = os.path.join(tmp, "f8-" + os.path.basename(path))
        r = subprocess.run([helper, path, out, "F8_E4M3"], capture_output=True, text=True)
        if r.returncode != 0:
            print("note %s: helper refuses: %s" % (tag, r.stderr.strip()[:200]))
            continue
        for mm in (False, True):
            label = tag + (" [weights_only+mmap]" if mm else " [weights_only]")
            try:
                new = load(out, mmap=mm)
            except Exception as e:  # noqa: BLE001
                fail(label, "torch cannot load it: %s" % str(e)[:300])
                continue
            a, b = {}, {}
            flatten(orig, "", a)
            flatten(new, "", b)
            errs = []
            saturated = 0
            for n, t in a.items():
                u = b.get(n)
                if u is None:
                    errs.append("%s missing" % n)
                    continue
                if t.device.type == "meta" or t.is_quantized:
                    continue
                if t.is_floating_point() and dname(t.dtype) in SOURCES:
                    want = t.to(torch.float32).to(torch.float8_e4m3fn) if t.dtype == torch.float64 \
                        else t.to(torch.float8_e4m3fn)
                else:
                    want = t
                if u.dtype == want.dtype and u.shape == want.shape and want.dtype == torch.float8_e4m3fn \
                        and not same_bits(want, u):
                    # torch >= 2.x (seen in 2.15) saturates |x| > 448 and +-inf to +-448 (0x7e);
                    # the helper follows docs/formats.md 5.3 (older torch): NaN (0x7f). Only there may they differ.
                    big = t.float().abs() > 464  # beyond the rounding boundary of 448
                    d = raw(want) != raw(u)
                    if not bool((d & ~big).any()) and bool((raw(u)[d] & 0x7f == 0x7f).all()):
                        saturated += int(d.sum())
                        want = u
                if u.dtype != want.dtype or not same_bits(want, u) or u.stride() != t.stride() \
                        or u.storage_offset() != t.storage_offset():
                    errs.append("%s: %s %s -> %s %s" % (n, dname(want.dtype), tuple(want.shape), dname(u.dtype), tuple(u.shape)))
            if storage_groups(a) != storage_groups(b):
                errs.append("storage sharing changed")
            if errs:
                fail(label, "; ".join(errs[:5]))
            else:
                ok("%s (%d tensors)%s" % (label, len(a), "; note: %d overflowing values are NaN (docs/formats.md 5.3), "
                   "torch %s gives +-448" % (saturated, torch.__version__) if saturated else ""))
        os.remove(out)


def main():
    args = sys.argv[1:]
    exe = os.environ.get("DTAUDIT", os.path.join(SRC, "src", "cli", "dtaudit"))
    helper = os.environ.get("DTAUDIT_TEST_HELPER", os.path.join(SRC, "tests", "unit", "rewrite_torchzip_tool"))
    keep = None
    files = []
    i = 0
    while i < len(args):
        if args[i] == "--dtaudit":
            exe = args[i + 1]
            i += 2
        elif args[i] == "--helper":
            helper = args[i + 1]
            i += 2
        elif args[i] == "--keep":
            keep = args[i + 1]
            i += 2
        else:
            files.append(args[i])
            i += 1
    if not os.access(exe, os.X_OK):
        print("SKIP: dtaudit not built (%s)" % exe)
        return 77
    if not os.access(helper, os.X_OK):
        helper = None
    print("torch %s, dtaudit %s" % (torch.__version__, exe))
    tmp = keep or tempfile.mkdtemp(prefix="dtaudit-torch2-")
    os.makedirs(tmp, exist_ok=True)
    try:
        only = bool(files)
        if not files:
            files = sorted(glob.glob(os.path.join(FIX2, "*.pt")) + glob.glob(os.path.join(FIX2, "*.ckpt")))
        if not files:
            print("SKIP: no fixtures in %s (run scripts/make-torch2-fixtures.py with torch >= 2.1)" % FIX2)
            return 77
        for path in files:
            tag = "torch2/%s" % os.path.basename(path)
            if os.path.basename(path) in KNOWN_UNSUPPORTED:
                # a storage viewed with different element sizes: dtaudit refuses it (exit 2)
                # rather than guess; a known gap, kept here so a fix shows up
                r = subprocess.run([exe, "scan", path], capture_output=True, text=True)
                print("note %s: known unsupported (exit %d): %s" % (tag, r.returncode, r.stderr.strip()))
                continue
            roots = check_scan(exe, path, tag + " scan")
            if roots is None:
                tensors, err = dtaudit_scan(exe, path)
                roots = None
            check_convert(exe, path, tmp, roots, tag)
        if not only:
            for path in sorted(glob.glob(os.path.join(FIX1, "*.pt")) + glob.glob(os.path.join(FIX1, "*.ckpt"))):
                check_old_fixture(exe, path, tmp)
            check_float8_outputs(helper, tmp)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("torch %s: %d passed, %d failed" % (torch.__version__, len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
