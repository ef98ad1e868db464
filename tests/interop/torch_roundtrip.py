#!/usr/bin/env python3
"""Real PyTorch loads what dtaudit's torch zip writer produces.

usage: torch_roundtrip.py [HELPER]
HELPER is tests/unit/rewrite_torchzip_tool (also taken from $DTAUDIT_TEST_HELPER, else
looked up next to this tree). For every torch zip fixture in tests/fixtures/torch and
every target (no change, bfloat16, float16, float32, and float8_e4m3fn when this torch
has it), the helper retypes every floating-point storage and this script checks, with
torch.load and torch.load(weights_only=True):
  * every tensor equals orig.to(target) bit for bit (NaN only as NaN), with the same
    shape, stride, storage_offset, requires_grad, class and Python attributes;
  * tensors that shared a storage still share one, and no others do;
  * everything that is not a tensor is unchanged;
  * weights_only=True loads the output whenever it loads the input;
  * zipfile.testzip() finds no CRC error and every record's data is 64-byte aligned.
Exits 77 (automake SKIP) when torch or the helper is missing, 1 on any failure.
"""
import collections
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(SRC, "tests", "fixtures", "torch")
REFUSED = {"byteorder_big.pt", "script.pt", "legacy.pt", "legacy_views.pt"}

try:
    import torch
except ImportError:
    # the interpreter is the caller's choice ($PYTHON, tests/cli/lib.sh), never switched here
    print("SKIP: torch is not importable by %s (scripts/setup --tests, or set PYTHON)" % sys.executable)
    sys.exit(77)


def find_helper():
    cands = [sys.argv[1]] if len(sys.argv) > 1 else []
    if os.environ.get("DTAUDIT_TEST_HELPER"):
        cands.append(os.environ["DTAUDIT_TEST_HELPER"])
    cands += [os.path.join(os.getcwd(), "tests", "unit", "rewrite_torchzip_tool"),
              os.path.join(SRC, "tests", "unit", "rewrite_torchzip_tool")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL:", msg)


def load(path, weights_only):
    if weights_only:
        return torch.load(path, weights_only=True)
    try:  # torch >= 2.6 defaults to weights_only=True; older ones lack the argument
        return torch.load(path, weights_only=False)
    except TypeError:
        return torch.load(path)


def storage_ptr(t):
    if t.device.type == "meta":
        return None
    if hasattr(t, "untyped_storage"):
        s = t.untyped_storage()
    else:
        s = t.storage()
    return s.data_ptr()


INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64, 1: torch.int8}


def same_bits(a, b):
    """a, b tensors of one dtype: equal bits, NaN matching any NaN."""
    if a.numel() == 0:
        return True
    if a.dtype.is_floating_point:
        na, nb = torch.isnan(a.float()), torch.isnan(b.float())
        if not torch.equal(na, nb):
            return False
        iv = INT_VIEW[a.element_size()]
        x, y = a.contiguous().view(iv), b.contiguous().view(iv)
        return torch.equal(x[~na], y[~nb])
    if a.is_quantized:
        return torch.equal(a.int_repr(), b.int_repr()) and a.q_scale() == b.q_scale()
    return torch.equal(a, b)


def expected(t, target):
    """What the helper writes for tensor t: floats become target (via float32 for f8)."""
    # meta tensors have no storage: the writer retypes storages, so they keep their dtype
    if target is None or not t.dtype.is_floating_point or t.dtype == target or t.device.type == "meta":
        return t
    if str(target).startswith("torch.float8") and t.dtype == torch.float64:
        return t.to(torch.float32).to(target)
    return t.to(target)


class Cmp:
    def __init__(self, target, where):
        self.target = target
        self.where = where
        self.pairs = []  # (orig tensor, new tensor, path)
        self.seen = set()

    def tensor(self, a, b, path):
        if type(a) is not type(b):
            return fail("%s %s: class %s became %s" % (self.where, path, type(a), type(b)))
        want = expected(a, self.target)
        if b.dtype != want.dtype:
            return fail("%s %s: dtype %s, expected %s" % (self.where, path, b.dtype, want.dtype))
        if tuple(a.shape) != tuple(b.shape):
            return fail("%s %s: shape %s became %s" % (self.where, path, tuple(a.shape), tuple(b.shape)))
        if a.device.type != "meta" and not a.is_quantized:
            if a.stride() != b.stride() or a.storage_offset() != b.storage_offset():
                return fail("%s %s: view (stride %s, offset %d) became (%s, %d)" % (
                    self.where, path, a.stride(), a.storage_offset(), b.stride(), b.storage_offset()))
            if not same_bits(want, b):
                return fail("%s %s: values differ from orig.to(%s)" % (self.where, path, want.dtype))
        if a.requires_grad != b.requires_grad:
            fail("%s %s: requires_grad changed" % (self.where, path))
        if getattr(a, "__dict__", {}) or getattr(b, "__dict__", {}):
            self.obj(dict(a.__dict__), dict(b.__dict__), path + ".__dict__")
        self.pairs.append((a, b, path))

    def obj(self, a, b, path="root"):
        if isinstance(a, torch.Tensor):
            return self.tensor(a, b, path)
        if type(a) is not type(b):
            return fail("%s %s: %s became %s" % (self.where, path, type(a).__name__, type(b).__name__))
        if id(a) in self.seen:
            return
        self.seen.add(id(a))
        if isinstance(a, dict):
            if list(a.keys()) != list(b.keys()):
                return fail("%s %s: keys differ" % (self.where, path))
            for k in a:
                self.obj(a[k], b[k], "%s.%s" % (path, k))
            if getattr(a, "__dict__", None) is not None:
                self.obj(dict(a.__dict__), dict(b.__dict__), path + ".__dict__")
        elif isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return fail("%s %s: length differs" % (self.where, path))
            for i, (x, y) in enumerate(zip(a, b)):
                self.obj(x, y, "%s.%d" % (path, i))
        elif isinstance(a, torch.nn.Module):
            self.obj(dict(a.__dict__), dict(b.__dict__), path + ".__dict__")
        elif type(a).__module__ == "numpy":
            if a.tobytes() != b.tobytes() or a.dtype != b.dtype or a.shape != b.shape:
                fail("%s %s: numpy value differs" % (self.where, path))
        elif isinstance(a, (int, float, str, bytes, bool, type(None), torch.dtype, torch.Size)):
            if a != b and not (isinstance(a, float) and a != a and b != b):
                fail("%s %s: %r became %r" % (self.where, path, a, b))
        elif hasattr(a, "__dict__"):
            self.obj(dict(a.__dict__), dict(b.__dict__), path + ".__dict__")
        elif a != b:
            fail("%s %s: %r became %r" % (self.where, path, a, b))

    def sharing(self):
        po = [storage_ptr(a) for a, _, _ in self.pairs]
        pn = [storage_ptr(b) for _, b, _ in self.pairs]
        for i in range(len(self.pairs)):
            for j in range(i + 1, len(self.pairs)):
                if po[i] is None or po[j] is None:
                    continue
                if (po[i] == po[j]) != (pn[i] == pn[j]):
                    fail("%s %s / %s: storage sharing %s" % (
                        self.where, self.pairs[i][2], self.pairs[j][2],
                        "lost" if po[i] == po[j] else "invented"))


def check_zip(path):
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            fail("%s: CRC error in %s" % (path, bad))
        prefixes = {n.split("/", 1)[0] for n in z.namelist()}
        if len(prefixes) != 1:
            fail("%s: several archive prefixes %s" % (path, prefixes))
        with open(path, "rb") as f:
            for info in z.infolist():
                f.seek(info.header_offset)
                h = f.read(30)
                nl, xl = struct.unpack("<HH", h[26:30])
                if (info.header_offset + 30 + nl + xl) % 64:
                    fail("%s: record %s is not 64-byte aligned" % (path, info.filename))
                if info.compress_type != zipfile.ZIP_STORED:
                    fail("%s: record %s is compressed" % (path, info.filename))
        names = [n.split("/", 1)[1] for n in z.namelist()]
        if names[0] != "data.pkl" or "version" not in names:
            fail("%s: records %s" % (path, names))


def main():
    helper = find_helper()
    if not helper:
        print("SKIP: rewrite_torchzip_tool not built (make check builds it; or pass its path)")
        return 77
    targets = [("same", None), ("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)]
    if hasattr(torch, "float8_e4m3fn"):
        targets.append(("F8_E4M3", torch.float8_e4m3fn))
    else:
        print("note: torch %s has no float8_e4m3fn: float8 outputs are not loaded" % torch.__version__)
    has_v3 = hasattr(torch._utils, "_rebuild_tensor_v3")
    fixtures = sorted(f for f in os.listdir(FIX) if f.endswith((".pt", ".ckpt")) and f not in REFUSED)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fx in fixtures:
            src = os.path.join(FIX, fx)
            try:
                orig = load(src, False)
            except Exception as e:  # noqa: BLE001 (hand-made torch 2.x files on an old torch)
                if not has_v3:
                    print("skip %s: this torch cannot load it (%s)" % (fx, type(e).__name__))
                    continue
                raise
            try:
                load(src, True)
                wo = True
            except Exception:  # noqa: BLE001
                wo = False
            for name, target in targets:
                out = os.path.join(tmp, "%s.%s.pt" % (fx, name))
                r = subprocess.run([helper, src, out, name], capture_output=True, text=True)
                if r.returncode != 0:
                    fail("%s -> %s: helper failed: %s" % (fx, name, r.stderr.strip()))
                    continue
                check_zip(out)
                for weights_only in ([False, True] if wo else [False]):
                    where = "%s->%s%s" % (fx, name, " (weights_only)" if weights_only else "")
                    try:
                        new = load(out, weights_only)
                    except Exception as e:  # noqa: BLE001
                        fail("%s: torch.load failed: %s" % (where, str(e).splitlines()[-1][:300]))
                        continue
                    c = Cmp(target, where)
                    c.obj(orig, new)
                    c.sharing()
                    checked += 1
            # zip64 fields forced on every record (threshold 1): torch and zipfile still read it
            out = os.path.join(tmp, "%s.zip64.pt" % fx)
            r = subprocess.run([helper, src, out, "same", "1"], capture_output=True, text=True)
            if r.returncode != 0:
                fail("%s zip64: helper failed: %s" % (fx, r.stderr.strip()))
            else:
                check_zip(out)
                try:
                    c = Cmp(None, fx + " zip64")
                    c.obj(orig, load(out, False))
                    checked += 1
                except Exception as e:  # noqa: BLE001
                    with zipfile.ZipFile(out) as z:
                        empty = any(i.file_size == 0 for i in z.infolist())
                    if empty:
                        # miniz adds the saturated 32-bit offset of an empty record to its
                        # size and compares with the archive size: only a real > 4 GiB
                        # archive passes that, not this forced-zip64 small one
                        print("note: %s zip64 (forced on a small archive with an empty record): "
                              "torch's miniz refuses it: %s" % (fx, str(e)[:80]))
                    else:
                        fail("%s zip64: torch.load failed: %s" % (fx, e))
    print("%d loads checked against torch %s, %d failures" % (checked, torch.__version__, len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
