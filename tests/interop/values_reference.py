#!/usr/bin/env python3
"""`dtaudit audit --values` against a numpy reference (and torch's own conversions).

Fixtures are generated here, into a temporary directory: tensors holding every boundary
value of the f16 and bf16 targets (largest finite value, the rounding ties at the overflow
threshold and their neighbours, the smallest subnormal and the ties below it, the
subnormal/normal boundary, +-0, +-inf, NaN), in f32, f64 (with the values whose f64 -> f32
rounding lands on an f32 tie: torch rounds f64 via f32), bf16 and f16 sources (plus every
16-bit code), random values, and views (a transpose, a slice at an offset). They are saved
as safetensors, torch zip, legacy torch and a sharded directory with an index.

For every tensor and target the counts dtaudit reports must equal the reference:
  nan, pos_inf, neg_inf, zero        numpy on the source values;
  overflow / underflow / subnormal   the source converted as torch converts it: f16 with
                                     numpy (f64 first rounded to f32), bf16 with torch's
                                     .to(torch.bfloat16); numpy's f16 is checked against
                                     torch's on the way;
  max_abs, min_nonzero_abs           numpy on the finite source values.

Usage: values_reference.py [DTAUDIT]   (default: $DTAUDIT or src/cli/dtaudit)
Exit: 0 passed, 1 failed, 77 numpy/torch/safetensors missing (automake SKIP).
"""

import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from safetensors.torch import save_file
except ImportError as e:  # pragma: no cover
    print("SKIP: %s (needs numpy, torch and safetensors)" % e)
    sys.exit(77)

np.seterr(all="ignore")  # overflow to inf is what the fixtures are about
import warnings
warnings.simplefilter("ignore", RuntimeWarning)

SRC = os.environ.get("srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
DTAUDIT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "DTAUDIT", os.path.join(SRC, "src", "cli", "dtaudit"))
failed = passed = 0


def f32(bits):
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def boundaries_f32():
    """Every interesting f32 magnitude for the f16 and bf16 targets, with neighbours."""
    mags = []
    def around(x, k=2):
        x = np.float32(x)
        v = x
        for _ in range(k):
            v = np.nextafter(v, np.float32(np.inf))
            mags.append(v)
        v = x
        for _ in range(k):
            v = np.nextafter(v, np.float32(0))
            mags.append(v)
        mags.append(x)
    # f16: max finite, the overflow tie 65520, smallest subnormal 2^-24, the tie below it
    # 2^-25 (-> 0), 3*2^-26, the largest subnormal and the normal/subnormal tie
    for x in (65504.0, 65520.0, 65519.99, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
              2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 2.0 ** -14 - 2.0 ** -25, 1.5 * 2.0 ** -24,
              2.5 * 2.0 ** -24):
        around(x)
    # bf16: max finite 0x7F7F0000, its overflow tie 0x7F7F8000, smallest subnormal 2^-133
    # (0x00010000), the tie below 2^-134, the normal boundary 2^-126, a mid-range tie
    for b in (0x7F7F0000, 0x7F7F8000, 0x7F7FFFFF, 0x00010000, 0x00008000, 0x00018000,
              0x00800000, 0x007F8000, 0x007FFFFF, 0x3F808000, 0x3F818000, 0x00000001):
        around(f32(b))
    return [m for m in mags]


def with_specials(vals):
    v = list(vals) + [-x for x in vals]
    v += [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0]
    return v


def f64_double_rounding():
    """f64 values whose rounding to f32 lands exactly on a tie of the 16-bit targets: torch
    (f64 -> f32 -> target) and a single rounding disagree on them."""
    out = []
    for x in (65520.0, 2.0 ** -25, 2.0 ** -14 - 2.0 ** -25, float(f32(0x7F7F8000)),
              float(f32(0x00008000))):
        for k in (-40, -30, -26):
            out += [x * (1 + 2.0 ** k), x * (1 - 2.0 ** k)]
    out += [65519.99999999999, 1e39, -1e39, 1e-50, -1e-50, 3.5e38, 5e-324]
    return out


def reference(src, target):
    """src: a torch tensor (any float dtype, any view). Counts as dtaudit defines them."""
    x = src.detach().to(torch.float64).reshape(-1).numpy()  # exact for every source dtype
    finite = np.isfinite(x)
    if target == "f16":
        if src.dtype == torch.float64:
            y = x.astype(np.float32).astype(np.float16)
        else:
            y = src.detach().float().reshape(-1).numpy().astype(np.float16)
        tt = src.detach().reshape(-1).to(torch.float16).float().numpy()
        both = ~np.isnan(y.astype(np.float64)) | ~np.isnan(tt)
        if not np.array_equal(y.astype(np.float32)[both], tt[both]):
            raise AssertionError("numpy and torch disagree on f16 for %s" % src.dtype)
        y = y.astype(np.float64)
        tiny = float(np.finfo(np.float16).tiny)
    else:
        y = src.detach().reshape(-1).to(torch.bfloat16).to(torch.float64).numpy()
        tiny = float(torch.finfo(torch.bfloat16).tiny)
    ax = np.abs(x[finite])
    nz = ax[ax != 0]
    r = {
        "elements": int(x.size),
        "nan": int(np.isnan(x).sum()),
        "pos_inf": int((x == np.inf).sum()),
        "neg_inf": int((x == -np.inf).sum()),
        "zero": int((x == 0).sum()),
        "overflow": int((finite & np.isinf(y)).sum()),
        "underflow": int((finite & (x != 0) & (y == 0)).sum()),
        "subnormal": int((finite & np.isfinite(y) & (y != 0) & (np.abs(y) < tiny)).sum()),
        "max_abs": float(ax.max()) if ax.size else 0.0,
        "min_nonzero_abs": float(nz.min()) if nz.size else 0.0,
    }
    return r


def build():
    g = torch.Generator().manual_seed(15)
    base = with_specials(boundaries_f32())
    t = {}
    t["src.f32.bounds"] = torch.tensor(np.array(base, dtype=np.float32))
    t["src.f64.bounds"] = torch.tensor(np.array(base + f64_double_rounding(), dtype=np.float64))
    t["src.bf16.bounds"] = torch.tensor(np.array(base, dtype=np.float32)).to(torch.bfloat16)
    t["src.f16.bounds"] = torch.tensor(np.array(base, dtype=np.float32)).to(torch.float16)
    codes = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    t["src.bf16.every_code"] = codes.view(torch.bfloat16).clone()
    t["src.f16.every_code"] = codes.view(torch.float16).clone()
    # random: normal weights, tiny ones that flush, large ones that overflow f16
    r = torch.randn(4096 * 9 + 7, generator=g)
    r[::5] *= 1e-7
    r[::97] *= 1e5
    t["rand.layers.0.mlp.weight"] = r.clone()
    t["rand.layers.1.mlp.weight"] = r.to(torch.float64) * 3
    t["rand.layers.2.mlp.weight"] = (r * 100).to(torch.bfloat16)
    t["rand.ids"] = torch.arange(10)
    return t


def views():
    """torch-only: views of one storage (non-contiguous and offset)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 48, generator=g) * 3e4
    w[0, :5] = torch.tensor([np.nan, np.inf, -np.inf, 1e-9, 0.0])
    return {"view.w": w, "view.wt": w.t(), "view.slice": w[5:9, 7:20], "view.row": w[10],
            "view.tied": w}  # an exact alias (tied weights): counted, read once


def audit(path, target):
    p = subprocess.run([DTAUDIT, "audit", "--values", "--target", target, "-f", "json", path],
                       capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise AssertionError("%s: exit %d: %s" % (path, p.returncode, p.stderr.strip()))
    return json.loads(p.stdout)


def compare(where, doc, tensors, target):
    global failed, passed
    got = {x["name"]: x for x in doc["tensors"]}
    for name, ten in tensors.items():
        if name not in got:
            print("FAIL %s: %s missing" % (where, name))
            failed += 1
            continue
        v = got[name]["values"]
        if not ten.is_floating_point():
            if "skipped" not in v:
                print("FAIL %s: %s: integer tensor not skipped" % (where, name))
                failed += 1
            else:
                passed += 1
            continue
        want = reference(ten, target)
        bad = [k for k in want if v.get(k) != want[k]]
        if bad:
            print("FAIL %s: %s -> %s: %s" % (where, name, target,
                  ", ".join("%s dtaudit %r numpy %r" % (k, v.get(k), want[k]) for k in bad)))
            failed += 1
        else:
            passed += 1


def main():
    global failed
    tensors = build()
    with tempfile.TemporaryDirectory() as d:
        st = os.path.join(d, "m.safetensors")
        save_file(tensors, st)
        pt = os.path.join(d, "m.pt")
        both = dict(tensors)
        both.update(views())
        torch.save(both, pt)
        legacy = os.path.join(d, "legacy.pt")
        torch.save(both, legacy, _use_new_zipfile_serialization=False)
        shard_dir = os.path.join(d, "sharded")
        os.mkdir(shard_dir)
        names = sorted(tensors)
        half = len(names) // 2
        wm, total = {}, 0
        for i, part in enumerate((names[:half], names[half:])):
            fn = "model-%05d-of-00002.safetensors" % (i + 1)
            save_file({n: tensors[n] for n in part}, os.path.join(shard_dir, fn))
            for n in part:
                wm[n] = fn
                total += tensors[n].numel() * tensors[n].element_size()
        with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f)
        for target in ("f16", "bf16"):
            compare("safetensors", audit(st, target), tensors, target)
            compare("torch-zip", audit(pt, target), both, target)
            compare("torch-legacy", audit(legacy, target), both, target)
            compare("sharded-dir", audit(shard_dir, target), tensors, target)
        # the findings agree with the counts: range-overflow lists exactly the tensors
        # (of another dtype than the target) that overflow
        doc = audit(st, "f16")
        listed = {n for f in doc["findings"] if f["rule"] == "range-overflow" for n in f["tensors"]}
        want = {n for n, ten in tensors.items() if ten.is_floating_point() and
                ten.dtype != torch.float16 and reference(ten, "f16")["overflow"] > 0}
        if listed != want:
            print("FAIL findings: range-overflow lists %s, want %s" % (sorted(listed), sorted(want)))
            failed += 1
        # convert refuses exactly when values reports overflow
        out = os.path.join(d, "out.safetensors")
        one = {"x": tensors["src.f32.bounds"]}
        save_file(one, os.path.join(d, "one.safetensors"))
        p = subprocess.run([DTAUDIT, "convert", "--to", "f16", os.path.join(d, "one.safetensors"),
                            "-o", out], capture_output=True, text=True)
        if p.returncode != 1 or os.path.exists(out):
            print("FAIL convert did not refuse the overflowing tensor: %d %s" % (p.returncode, p.stderr))
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
