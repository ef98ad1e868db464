#!/usr/bin/env python3
"""`dtaudit convert` against real PyTorch and the real safetensors package.

For each fixture (safetensors and torch.save files) and target dtype:
  * the converted file loads with torch.load (weights_only too when the source did) or
    safetensors.torch.load_file, and zipfile.testzip() passes for torch files;
  * every converted floating tensor equals torch's own `orig.to(dtype)` bit for bit
    (NaN compared as NaN), everything else (integers, optimizer state) is unchanged;
  * tied weights stay tied (one storage) in torch output;
then the seed scenarios: before conversion a forward pass without autocast fails with
torch's dtype error, after `dtaudit convert` it runs.

Usage: convert_interop.py [DTAUDIT]   (default: $DTAUDIT or src/cli/dtaudit)
Exit: 0 passed, 1 failed, 77 torch or safetensors missing (automake SKIP).
"""

import os
import subprocess
import sys
import tempfile
import zipfile

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
except ImportError as e:  # pragma: no cover
    # the interpreter is the caller's choice ($PYTHON, tests/cli/lib.sh), never switched here
    print("SKIP: %s for %s (needs torch and safetensors; set PYTHON)" % (e, sys.executable))
    sys.exit(77)

SRC = os.environ.get("srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
DTAUDIT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "DTAUDIT", os.path.join(SRC, "src", "cli", "dtaudit"))
TARGETS = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
passed = failed = 0


def tload(path, **kw):
    """torch.load of our own fixtures, full unpickling (torch >= 2.6 defaults to weights_only)."""
    if "weights_only" not in kw:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, **kw)
        except TypeError:  # torch < 1.13.1 has no weights_only
            pass
    return torch.load(path, map_location="cpu", **kw)


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def convert(src, out, to, *extra):
    r = subprocess.run([DTAUDIT, "convert", "--to", to, "--force", "-q", *extra, src, "-o", out],
                       capture_output=True, text=True, env={**os.environ, "DTAUDIT_NO_PROGRESS": "1"})
    return r.returncode, r.stderr.strip()


def bits_equal(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        na, nb = torch.isnan(a), torch.isnan(b)
        if not torch.equal(na, nb):
            return False
        a, b = a.masked_fill(na, 0), b.masked_fill(nb, 0)
        # compare bits, so -0.0 vs 0.0 counts
        width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(width), b.contiguous().view(width))
    return torch.equal(a, b)


def flatten(obj, prefix="", out=None):
    """name -> tensor for every tensor in a loaded checkpoint (dicts, lists, modules)."""
    out = {} if out is None else out
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, "%s.%d" % (prefix, i) if prefix else str(i), out)
    return out


def expected(name, t, to):
    if name.startswith("optimizer") or not t.is_floating_point() or t.is_quantized or t.is_meta:
        return t
    return t.to(to)


def compare(tag, a, b, to):
    names = sorted(a)
    check(sorted(b) == names, "%s: tensor names differ" % tag)
    for n in names:
        if n not in b:
            continue
        if a[n].is_meta:
            check(b[n].is_meta and b[n].shape == a[n].shape, "%s: meta tensor %s" % (tag, n))
            continue
        if a[n].is_quantized:
            check(torch.equal(a[n].int_repr(), b[n].int_repr()), "%s: quantized %s" % (tag, n))
            continue
        e = expected(n, a[n], to)
        ok = bits_equal(e, b[n]) and b[n].stride() == a[n].stride() and \
            b[n].storage_offset() == a[n].storage_offset()
        check(ok, "%s: %s (%s -> %s, got %s)" % (tag, n, a[n].dtype, e.dtype, b[n].dtype))


def torch_files():
    d = os.path.join(SRC, "tests", "fixtures", "torch")
    skip = {"byteorder_big.pt", "script.pt", "legacy.pt", "legacy_views.pt", "v3_handmade.pt"}
    return [os.path.join(d, f) for f in sorted(os.listdir(d))
            if f.endswith((".pt", ".ckpt")) and f not in skip]


def main():
    if not os.path.exists(DTAUDIT):
        print("SKIP: no dtaudit binary at %s" % DTAUDIT)
        return 77
    tmp = tempfile.mkdtemp(prefix="dtaudit-convert-")
    # torch zip -> torch zip, and -> safetensors
    for f in torch_files():
        orig = tload(f)
        a = flatten(orig)
        try:
            tload(f, weights_only=True)
            wo = True
        except Exception:
            wo = False
        for to in ("bf16", "f16"):
            out = os.path.join(tmp, "%s.%s.pt" % (os.path.basename(f), to))
            rc, err = convert(f, out, to)
            check(rc == 0, "%s -> %s: exit %d %s" % (f, to, rc, err))
            if rc:
                continue
            with zipfile.ZipFile(out) as z:
                check(z.testzip() is None, "%s: testzip" % out)
            conv = tload(out)
            compare("%s %s" % (os.path.basename(f), to), a, flatten(conv), TARGETS[to])
            if wo:
                try:
                    tload(out, weights_only=True)
                    check(True, "")
                except Exception as e:
                    check(False, "%s: weights_only load: %s" % (out, e))
            if os.path.basename(f) == "tied.pt":
                ca = flatten(conv)
                pairs = [(x, y) for x in ca for y in ca if x < y and a[x].data_ptr() == a[y].data_ptr()]
                check(pairs and all(ca[x].data_ptr() == ca[y].data_ptr() for x, y in pairs),
                      "tied.pt: tied weights no longer share a storage")
        # torch -> safetensors (aliases written once, views made contiguous)
        if "meta" in f or "quantized" in f or "dtypes" in f:  # no safetensors dtype for them
            continue
        out = os.path.join(tmp, os.path.basename(f) + ".safetensors")
        rc, err = convert(f, out, "bf16", "--out-format", "safetensors")
        check(rc == 0, "%s -> safetensors: exit %d %s" % (f, rc, err))
        if rc == 0:
            b = load_file(out)
            for n, t in a.items():
                if n in b:
                    check(bits_equal(expected(n, t, torch.bfloat16).contiguous(), b[n]),
                          "%s safetensors: %s" % (f, n))
    # safetensors -> safetensors
    for sub in ("seeds", "interop"):
        d = os.path.join(SRC, "tests", "fixtures", sub)
        for f in sorted(os.listdir(d)):
            if not f.endswith(".safetensors"):
                continue
            path = os.path.join(d, f)
            try:
                a = load_file(path)
            except (AttributeError, TypeError, RuntimeError) as e:  # e.g. uint64 on torch < 2.3
                print("skip %s: this torch cannot load it (%s)" % (f, e))
                continue
            for to in ("bf16", "f16", "f32"):
                out = os.path.join(tmp, "%s.%s.safetensors" % (f, to))
                rc, err = convert(path, out, to, "--on-overflow", "inf")
                check(rc == 0, "%s -> %s: exit %d %s" % (path, to, rc, err))
                if rc == 0:
                    compare("%s %s" % (f, to), a, load_file(out), TARGETS[to])
    # the seed crashes: a forward pass without autocast fails before, runs after
    seeds = os.path.join(SRC, "tests", "fixtures", "seeds")
    for f in ("002_ttt_mixed.safetensors", "003_higgs_audio.safetensors"):
        before = load_file(os.path.join(seeds, f))
        out = os.path.join(tmp, f + ".fixed.safetensors")
        rc, err = convert(os.path.join(seeds, f), out, "bf16")
        after = load_file(out) if rc == 0 else {}
        check(forward_fails(before), "%s: the unconverted weights should fail like the seed report" % f)
        check(rc == 0 and not forward_fails(after), "%s: forward pass after conversion" % f)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def forward_fails(sd):
    """Runs every 2-D weight as a linear layer on bf16 activations, without autocast, as an
    evaluation loop does; True when torch raises its dtype mismatch error."""
    torch.manual_seed(0)
    for name, w in sorted(sd.items()):
        if w.dim() < 2 or not w.is_floating_point():
            continue
        try:
            with torch.no_grad():
                if w.dim() == 2 and name.endswith(".weight"):  # a Linear layer
                    bias = sd.get(name[:-len("weight")] + "bias")
                    if bias is not None and (bias.dim() != 1 or bias.shape[0] != w.shape[0]):
                        bias = None
                    F.linear(torch.randn(2, w.shape[1], dtype=torch.bfloat16), w, bias)
                else:  # states used in matmuls, like the TTT W1_states of seed 002
                    torch.matmul(torch.randn(2, w.shape[-2], dtype=torch.bfloat16), w)
        except RuntimeError as e:
            if "dtype" in str(e) or "same" in str(e) or "Float" in str(e):
                return True
            raise
    return False


if __name__ == "__main__":
    sys.exit(main())
