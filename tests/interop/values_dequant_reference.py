#!/usr/bin/env python3
"""`dtaudit audit --values` on quantized parameters: their dequantized values, counted
exactly as `convert --dequantize` counts them, against a numpy reference.

The fixture is a block-FP8 checkpoint (DeepSeek-V3 config: weight_scale_inv 128x128, ragged
edge blocks) whose codes run through every E4M3 code (NaN included) in every block, and
whose F32 / BF16 block scales put the products on the boundaries of the targets:
  146.25       448 x 146.25 = 65520, the f16 overflow tie (-> inf); 146 stays finite
  73 x 2^113   448 x it = 0x7F7F8000, the bf16 overflow tie (-> inf)
  1e38         448 x 1e38 is beyond f32 (finite operands: an overflow in every target)
  2^-16        2^-9 (smallest code) x 2^-16 = 2^-25, the tie below f16's smallest
               subnormal (-> 0), 2 x 2^-9 lands on it, 3 x 2^-9 on the tie above
  2^-124/-125  the same for bf16 (2^-133 smallest subnormal, 2^-134 the tie below)
  2^-140/-141  products at f32's smallest subnormal and the tie below it: zero in f32
               although neither operand is (convert counts that as underflow)
  0, inf, NaN, an f32-subnormal scale, 3e30 (fits bf16/f32, not f16), 2^-20.

The reference (tests/interop/dequant_reference.py's decoders): p = f32(code) * f32(scale) in
numpy float32; then, as convert --dequantize classifies:
  nan / pos_inf / neg_inf   p non-finite because a code or a scale is (none are finite-
                            operand overflows);
  overflow                  finite operands and p beyond f32, or p rounding to inf in the
                            target (f16 by numpy, bf16 by torch);
  underflow                 finite nonzero operands and p, rounded to the target, is +-0;
  zero                      p == 0 from a zero code or a zero scale;
  subnormal                 p rounded to the target is subnormal there;
  max_abs / min_nonzero_abs over the finite p (a product beyond f32 counts as f32's max).
Also: convert --dequantize --to T refuses exactly when the overflow count is nonzero, the
companions are skipped with a reason, and a checkpoint dtaudit cannot dequantize keeps the
skip reason on its quantized tensors.

Usage: values_dequant_reference.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    from dequant_reference import CODE_TABLE, decode_scale, f32b, bf16b, write_st
except Exception as e:  # pragma: no cover
    print("SKIP: numpy/torch not available: %s" % e)
    sys.exit(77)

DTAUDIT = sys.argv[1]
FAILS = []
PASSES = [0]
np.seterr(all="ignore")


def check(cond, what):
    if cond:
        PASSES[0] += 1
    else:
        FAILS.append(what)
        print("FAIL: " + what)


def run(*args):
    p = subprocess.run([DTAUDIT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def f32(bits):
    return float(np.array([bits], np.uint32).view(np.float32)[0])


BLOCK_SCALES_1 = [146.25, 2.0 ** -16, 2.0 ** -125, 2.0 ** -141, 1e38, 73 * 2.0 ** 113, 0.0,
                  float("inf"), 1e-40]
BLOCK_SCALES_2 = [2.0 ** -124, 2.0 ** -140, 146.0, 3.0e30, 2.0 ** -20, float("nan")]


def fixture(root, boundary=True):
    """{name: (codes uint8 [o, n], scales f32 grid [gr, gc])} and the files."""
    os.makedirs(root)
    rng = np.random.default_rng(15)
    P = "model.layers.0."
    params = {}
    ts = []
    shapes = [("self_attn.kv_a_proj_with_mqa", (300, 260), BLOCK_SCALES_1, "F32"),
              ("mlp.up_proj", (256, 384), BLOCK_SCALES_2, "F32"),
              ("mlp.down_proj", (129, 513), None, "BF16")]
    for base, (o, n), scales, sdt in shapes:
        gr, gc = (o + 127) // 128, (n + 127) // 128
        if boundary:
            # every code in every block (and its sign), shuffled a little by the row
            codes = ((np.arange(o * n).reshape(o, n) + np.arange(o)[:, None] * 3) % 256)
            codes = codes.astype(np.uint8)
        else:
            codes = rng.integers(0, 256, (o, n), dtype=np.uint8)
            codes[(codes & 0x7F) == 0x7F] = 0x7E  # no NaN codes
        if scales is None or not boundary:
            s = (rng.random(gr * gc) * 0.01 + 1e-5).astype(np.float32)
        else:
            s = np.array(scales, np.float32)
        assert s.size == gr * gc, (base, s.size, gr, gc)
        raw = f32b(s) if sdt == "F32" else bf16b(s)
        s = decode_scale(sdt, raw).reshape(gr, gc)  # what the file holds
        ts.append((P + base + ".weight", "F8_E4M3", (o, n), codes.tobytes()))
        ts.append((P + base + ".weight_scale_inv", sdt, (gr, gc), raw))
        params[P + base + ".weight"] = (codes, s)
    emb = rng.standard_normal((64, 32)).astype(np.float32)
    emb[0, :3] = [np.nan, 1e-30, 7e4]
    ts.append(("model.embed_tokens.weight", "F32", (64, 32), f32b(emb)))
    # the dominant unquantized dtype (BF16) is what the parameters dequantize to
    lm = rng.standard_normal((128, 32)).astype(np.float32)
    ts.append(("lm_head.weight", "BF16", (128, 32), bf16b(lm)))
    write_st(os.path.join(root, "model.safetensors"), ts, {"format": "pt"})
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                   "torch_dtype": "bfloat16",
                   "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                           "quant_method": "fp8",
                                           "weight_block_size": [128, 128]}}, f)
    return params, emb


def to_target(p, target):
    """f32 array -> float64 array of the values rounded to the target (inf on overflow)."""
    if target == "F32":
        return p.astype(np.float64)
    if target == "F16":
        return p.astype(np.float16).astype(np.float64)
    return torch.from_numpy(p.copy()).to(torch.bfloat16).to(torch.float64).numpy()


TINY = {"F32": float(np.finfo(np.float32).tiny), "F16": float(np.finfo(np.float16).tiny),
        "BF16": float(torch.finfo(torch.bfloat16).tiny)}


def reference(codes, s, target):
    o, n = codes.shape
    x = CODE_TABLE["F8_E4M3"][codes]
    sb = np.repeat(np.repeat(s, 128, axis=0), 128, axis=1)[:o, :n].astype(np.float32)
    p = (x * sb).astype(np.float32).reshape(-1)
    x = x.reshape(-1)
    sb = sb.reshape(-1)
    fin_ops = np.isfinite(x) & np.isfinite(sb)
    f32_ovf = fin_ops & np.isinf(p)
    psat = np.where(f32_ovf, np.float32(np.finfo(np.float32).max) * np.sign(p), p)
    y = to_target(psat.astype(np.float32), target)
    nz_ops = fin_ops & (x != 0) & (sb != 0)
    a = np.abs(psat[fin_ops].astype(np.float64))
    nzv = a[a != 0]
    return {
        "elements": int(p.size),
        "nan": int(np.isnan(p).sum()),
        "pos_inf": int((~fin_ops & (p == np.inf)).sum()),
        "neg_inf": int((~fin_ops & (p == -np.inf)).sum()),
        "zero": int((fin_ops & (p == 0) & ~nz_ops).sum()),
        "overflow": int((f32_ovf | (fin_ops & np.isinf(y))).sum()),
        "underflow": int((nz_ops & np.isfinite(y) & (y == 0)).sum()),
        "subnormal": int((fin_ops & np.isfinite(y) & (y != 0) & (np.abs(y) < TINY[target])).sum()),
        "max_abs": float(a.max()) if a.size else 0.0,
        "min_nonzero_abs": float(nzv.min()) if nzv.size else 0.0,
    }


def plain_reference(v, target):
    x = v.reshape(-1).astype(np.float64)
    fin = np.isfinite(x)
    y = to_target(v.reshape(-1), target)
    a = np.abs(x[fin])
    nz = a[a != 0]
    return {"elements": int(x.size), "nan": int(np.isnan(x).sum()),
            "pos_inf": int((x == np.inf).sum()), "neg_inf": int((x == -np.inf).sum()),
            "zero": int((x == 0).sum()), "overflow": int((fin & np.isinf(y)).sum()),
            "underflow": int((fin & (x != 0) & (y == 0)).sum()),
            "subnormal": int((fin & (y != 0) & np.isfinite(y) & (np.abs(y) < TINY[target])).sum()),
            "max_abs": float(a.max()) if a.size else 0.0,
            "min_nonzero_abs": float(nz.min()) if nz.size else 0.0}


def audit(path, target):
    args = ["audit", "--values", "-f", "json", path]
    if target:
        args[2:2] = ["--target", target]
    rc, so, se = run(*args)
    check(rc in (0, 1), "audit %s --target %s: exit %d: %s" % (path, target, rc, se.strip()))
    try:
        doc = json.loads(so)
    except ValueError:
        return {}
    return {t["name"]: t["values"] for t in doc["inputs"][0]["tensors"]} if "inputs" in doc \
        and doc["inputs"] and "tensors" in doc["inputs"][0] else \
        {t["name"]: t["values"] for t in doc.get("tensors", [])}


def compare(label, got, want):
    bad = [k for k in want if got.get(k) != want[k]]
    check(not bad, "%s: %s" % (label, ", ".join("%s dtaudit %r numpy %r" %
                                                (k, got.get(k), want[k]) for k in bad)))


def main():
    tmp = tempfile.mkdtemp(prefix="dtaudit-values-dq.")
    try:
        src = os.path.join(tmp, "ds")
        params, emb = fixture(src)
        for target in ("f16", "bf16", "f32", None):
            T = target.upper() if target else "BF16"  # the dtype the parameters become
            got = audit(src, target)
            total_ovf = 0
            for name, (codes, s) in params.items():
                v = got.get(name, {})
                want = reference(codes, s, T)
                total_ovf += want["overflow"]
                compare("%s -> %s" % (name, T), v, want)
                check(v.get("dequantized") == "fp8-block" and v.get("target") == T,
                      "%s -> %s: dequantized %r target %r" % (name, T, v.get("dequantized"),
                                                              v.get("target")))
                sv = got.get(name + "_scale_inv", {})
                check("companion" in sv.get("skipped", ""),
                      "%s_scale_inv not skipped as a companion: %r" % (name, sv))
            if target:
                compare("plain embed -> " + T, got.get("model.embed_tokens.weight", {}),
                        plain_reference(emb, T))
                # convert --dequantize refuses exactly when values counts an overflow
                out = os.path.join(tmp, "out-" + target)
                rc, so, se = run("convert", "--dequantize", "--to", target, src, "-o", out)
                check((rc == 1) == (total_ovf > 0) and rc in (0, 1),
                      "convert --dequantize --to %s: exit %d with %d overflows counted: %s" %
                      (target, rc, total_ovf, se.strip()))
        # every boundary class is exercised (the fixture is what the test says it is)
        r16 = {k: sum(reference(c, s, "F16")[k] for c, s in params.values())
               for k in ("nan", "pos_inf", "neg_inf", "zero", "overflow", "underflow",
                         "subnormal")}
        check(all(r16.values()), "fixture misses a class: %r" % r16)
        # without boundary scales nothing overflows bf16: convert succeeds, values agree
        calm = os.path.join(tmp, "calm")
        params2, _ = fixture(calm, boundary=False)
        got = audit(calm, "bf16")
        for name, (codes, s) in params2.items():
            compare("calm %s" % name, got.get(name, {}), reference(codes, s, "BF16"))
        rc, so, se = run("convert", "--dequantize", "--to", "bf16", calm, "-o",
                         os.path.join(tmp, "calm-out"))
        check(rc == 0, "calm convert --dequantize: exit %d %s" % (rc, se.strip()))
        # a checkpoint dtaudit refuses to dequantize (an F8 weight without its scale):
        # its quantized tensors keep the skip reason, plain ones are read
        b = os.path.join(tmp, "bare")
        os.makedirs(b)
        write_st(os.path.join(b, "model.safetensors"), [
            ("a.weight", "F8_E4M3", (4, 4), bytes(16)),
            ("a.weight_scale_inv", "F32", (1, 1), f32b([1.0])),
            ("b.weight", "F8_E4M3", (4, 4), bytes(16)),
            ("c.bias", "F32", (4,), f32b([1, 2, 3, 4]))])
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump({"quantization_config": {"quant_method": "fp8",
                                               "weight_block_size": [128, 128]}}, f)
        got = audit(b, "bf16")
        check("does not dequantize" in got.get("a.weight", {}).get("skipped", ""),
              "refused scheme: a.weight %r" % got.get("a.weight"))
        check("does not dequantize" in got.get("a.weight_scale_inv", {}).get("skipped", ""),
              "refused scheme: a.weight_scale_inv %r" % got.get("a.weight_scale_inv"))
        check(got.get("c.bias", {}).get("elements") == 4, "plain tensor read: %r" %
              got.get("c.bias"))
        # text: the finding says the values are dequantized ones
        rc, so, se = run("audit", "--values", "--target", "f16", src)
        check(rc == 1 and "dequantized" in so and "range-overflow" in so,
              "text report: exit %d: %s" % (rc, so[-600:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (PASSES[0], len(FAILS)))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
