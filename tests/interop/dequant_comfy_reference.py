"""convert --dequantize of ComfyUI scaled FP8 against an independent reference written from
shared/quant.md 10.1-10.2 (the float8 decoders, scales and f32 product of
dequant_reference.py, rounded by torch's Tensor.to()): legacy scaled_fp8 files (E4M3 and
E5M2 under their own markers, every code, per-tensor F32 / BF16 / F16 scale_weight, a
per-row [out, 1] scale with zero and subnormal rows, a conv weight, scale_input dropped;
NaN and inf codes stay NaN and inf, as convert keeps them)
and comfy_quant files (a U8 JSON marker, __metadata__._quantization_metadata, which the
output drops), to bf16, f16 and f32 with --verify, then verify SRC OUT and an audit of the
output; overflow refused and saturated; refusals naming what is unsupported (nvfp4,
int8_tensorwise, convrot, a format over the other float8 codes, codes under another
format's marker, a 1-D scale, pre_quant_scale, a layer without its scale), nothing written.

Usage: dequant_comfy_reference.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch)."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dequant_reference as R  # noqa: E402  (exits 77 without numpy/torch)

np = R.np
check, run, write_st, read_st = R.check, R.run, R.write_st, R.read_st
SCALE_BYTES = {"F32": R.f32b, "BF16": R.bf16b, "F16": R.f16b}


def layer(rng, name, shape, code_dt, scale_dt="F32", per_row=False, scale_name=".scale_weight",
          big=False):
    """tensors and the reference f32 values of one layer."""
    n = int(np.prod(shape))
    c = R.every_code(rng, n) if n >= 256 else R.rnd(rng, n)
    rows = shape[0] if per_row else 1
    s = (rng.random(rows) * 0.01 + 1e-4).astype(np.float32)
    if big:
        s[:] = 3e30
    if per_row:
        s[0] = np.float32(1e-40)  # an f32 subnormal scale
        s[1] = 0.0
    sraw = SCALE_BYTES[scale_dt](s)
    sshape = (rows,) + (1,) * (len(shape) - 1) if per_row else ()
    x = R.CODE_TABLE[code_dt][c].reshape(shape)
    sd = R.decode_scale(scale_dt, sraw).reshape(sshape)
    with np.errstate(all="ignore"):
        y = (x * sd).astype(np.float32)  # one f32 multiply
    ts = [(name + ".weight", code_dt, shape, c.tobytes()),
          (name + scale_name, scale_dt, sshape, sraw)]
    return ts, y


def check_out(label, src, out, want, target, meta_want):
    got, meta = read_st(out)
    check(sorted(got) == sorted(want), "%s: tensors %s" % (label, sorted(set(got) ^ set(want))))
    check(meta == meta_want, "%s: __metadata__ %r" % (label, meta))
    for name, (shape, vals, raw) in want.items():
        if name not in got:
            continue
        dt, gshape, data = got[name]
        if raw is not None:  # a plain tensor: converted as convert does
            w = R.to_target(R.decode_scale("BF16", raw), target)
        else:
            w = R.to_target(np.ascontiguousarray(vals, np.float32).reshape(-1), target)
        check(dt == target and tuple(gshape) == tuple(shape) and R.same_values(data, w, target),
              "%s: %s differs from the reference" % (label, name))
    rc, so, se = run("verify", src, out)
    check(rc == 0, "%s: verify SRC OUT exit %d %s %s" % (label, rc, so, se))
    rc, so, se = run("audit", out)
    check(rc == 0, "%s: audit OUT exit %d %s %s" % (label, rc, so, se))


def legacy(tmp, rng):
    P, T = "model.diffusion_model.", "text_encoders.t5xxl."
    ts = [(P + "scaled_fp8", "F8_E4M3", (0,), b""), (T + "scaled_fp8", "F8_E5M2", (0,), b"")]
    want = {}
    for name, shape, code_dt, sdt, per_row in (
            (P + "double_blocks.0.img_attn.qkv", (24, 40), "F8_E4M3", "F32", False),
            (P + "double_blocks.1.img_attn.qkv", (24, 40), "F8_E4M3", "F32", True),
            (P + "double_blocks.2.img_mlp.0", (16, 24), "F8_E4M3", "BF16", False),
            (P + "img_in", (8, 4, 3, 3), "F8_E4M3", "F16", False),
            (T + "encoder.block.0.layer.0.SelfAttention.q", (20, 16), "F8_E5M2", "F32", False),
            (T + "encoder.block.0.layer.1.DenseReluDense.wi", (16, 20), "F8_E5M2", "F32",
             True)):
        lt, y = layer(rng, name, shape, code_dt, sdt, per_row)
        ts += lt + [(name + ".scale_input", "F32", (), R.f32b([1.0]))]
        want[name + ".weight"] = (shape, y, None)
    raw = R.bf16b(rng.standard_normal((16, 8)).astype(np.float32))
    ts.append((P + "final_layer.linear.weight", "BF16", (16, 8), raw))
    want[P + "final_layer.linear.weight"] = ((16, 8), None, raw)
    src = os.path.join(tmp, "flux-scaled.safetensors")
    write_st(src, ts, {"format": "pt"})
    for target in ("BF16", "F16", "F32"):
        out = os.path.join(tmp, "flux-%s.safetensors" % target.lower())
        rc, so, se = run("convert", "--to", target.lower(), "--dequantize", "--verify", src,
                         "-o", out)
        check(rc == 0, "legacy -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("legacy -> " + target, src, out, want, target, {"format": "pt"})
    # overflow: 448 x 3e30 leaves f32 and f16: refused, then saturated
    lt, y = layer(rng, "m.l", (16, 16), "F8_E4M3", "F32", big=True)
    src = os.path.join(tmp, "big.safetensors")
    c = bytearray(lt[0][3])
    for i, b in enumerate(c):
        if b & 0x7F == 0x7F:
            c[i] = 0x7E  # no NaN codes here
    lt[0] = lt[0][:3] + (bytes(c),)
    y = (R.CODE_TABLE["F8_E4M3"][np.frombuffer(bytes(c), np.uint8)].reshape(16, 16) *
         np.float32(3e30)).astype(np.float32)
    write_st(src, [("scaled_fp8", "F8_E4M3", (0,), b"")] + lt, {"format": "pt"})
    out = os.path.join(tmp, "big-f16.safetensors")
    rc, so, se = run("convert", "--to", "f16", "--dequantize", src, "-o", out)
    check(rc == 1 and not os.path.exists(out), "overflow refused: exit %d %s" % (rc, se))
    rc, so, se = run("convert", "--to", "bf16", "--dequantize", "--on-overflow", "saturate", src,
                     "-o", out)
    check(rc == 0, "overflow saturate: exit %d %s" % (rc, se))
    if rc == 0:
        got, _ = read_st(out)
        with np.errstate(all="ignore"):
            yy = y.reshape(-1)
        w = np.frombuffer(R.to_target(yy, "BF16"), np.uint16).copy()
        fin = np.isfinite(yy)
        hit = ~fin | ((w & 0x7FFF) == 0x7F80)
        w[hit] = (w[hit] & 0x8000) | 0x7F7F
        check(R.same_values(got["m.l.weight"][2], w.tobytes(), "BF16"), "saturated values")


def comfy_quant(tmp, rng):
    ts, want = [], {}
    a = "diffusion_model.blocks.0.attn.to_k"
    lt, y = layer(rng, a, (16, 32), "F8_E4M3", scale_name=".weight_scale")
    mk = json.dumps({"format": "float8_e4m3fn"}).encode()
    ts += lt + [(a + ".comfy_quant", "U8", (len(mk),), mk),
                (a + ".input_scale", "F32", (), R.f32b([0.5]))]
    want[a + ".weight"] = ((16, 32), y, None)
    b = "diffusion_model.blocks.1.attn.to_k"
    lt, y = layer(rng, b, (8, 32), "F8_E5M2", scale_name=".weight_scale")
    ts += lt
    want[b + ".weight"] = ((8, 32), y, None)
    meta = {"format": "pt", "_quantization_metadata": json.dumps(
        {"format_version": "1.0", "layers": {b: {"format": "float8_e5m2"}}})}
    src = os.path.join(tmp, "comfy-quant.safetensors")
    write_st(src, ts, meta)
    for target in ("BF16", "F32"):
        out = os.path.join(tmp, "comfy-quant-%s.safetensors" % target.lower())
        rc, so, se = run("convert", "--to", target.lower(), "--dequantize", "--verify", src,
                         "-o", out)
        check(rc == 0, "comfy_quant -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("comfy_quant -> " + target, src, out, want, target, {"format": "pt"})


def refusals(tmp, rng):
    def refused(label, tensors, words, meta=None):
        src = os.path.join(tmp, label + ".safetensors")
        write_st(src, tensors, meta if meta is not None else {"format": "pt"})
        out = os.path.join(tmp, label + "-out.safetensors")
        rc, so, se = run("convert", "--to", "bf16", "--dequantize", src, "-o", out)
        check(rc == 1 and all(w in se for w in words) and not os.path.exists(out),
              "%s refused: exit %d %s" % (label, rc, se))

    def marker(d):
        mk = json.dumps(d).encode()
        return ("m.comfy_quant", "U8", (len(mk),), mk)

    f8 = [("m.weight", "F8_E4M3", (16, 16), bytes(256)),
          ("m.weight_scale", "F32", (), R.f32b([1.0]))]
    refused("nvfp4", [("m.weight", "U8", (16, 8), bytes(128)),
                      ("m.weight_scale", "F8_E4M3", (128, 4), bytes(512)),
                      ("m.weight_scale_2", "F32", (), R.f32b([1.0])),
                      marker({"format": "nvfp4"})], ["m.weight", "nvfp4"])
    refused("int8", [("m.weight", "I8", (16, 16), bytes(256)),
                     ("m.weight_scale", "F32", (), R.f32b([1.0])),
                     marker({"format": "int8_tensorwise"})], ["m.weight", "int8_tensorwise"])
    refused("convrot", f8 + [marker({"format": "float8_e4m3fn", "convrot": True})],
            ["m.weight", "convrot"])
    refused("e5m2-format", f8 + [marker({"format": "float8_e5m2"})],
            ["m.weight", "float8_e5m2", "F8_E4M3"])
    refused("marker-dtype", [("scaled_fp8", "F8_E5M2", (0,), b""),
                             ("m.weight", "F8_E4M3", (16, 16), bytes(256)),
                             ("m.scale_weight", "F32", (), R.f32b([1.0]))],
            ["m.weight", "scaled_fp8", "F8_E5M2"])
    refused("1d-scale", [("scaled_fp8", "F8_E4M3", (0,), b""),
                         ("m.weight", "F8_E4M3", (16, 8), bytes(128)),
                         ("m.scale_weight", "F32", (16,), R.f32b([1.0] * 16))],
            ["m.weight", "[16]"])
    refused("pre-quant", f8 + [marker({"format": "float8_e4m3fn"}),
                               ("m.pre_quant_scale", "F32", (16,), R.f32b([1.0] * 16))],
            ["m.weight", "pre_quant_scale"])
    refused("no-scale", [("scaled_fp8", "F8_E4M3", (0,), b""),
                         ("a.weight", "F8_E4M3", (16, 16), bytes(256)),
                         ("a.scale_weight", "F32", (), R.f32b([1.0])),
                         ("m.weight", "F8_E4M3", (16, 16), bytes(256))], ["m.weight"])


def main():
    rng = np.random.default_rng(1014)
    tmp = tempfile.mkdtemp(prefix="dtaudit-dequant-comfy.")
    try:
        legacy(tmp, rng)
        comfy_quant(tmp, rng)
        refusals(tmp, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (R.PASSES[0], len(R.FAILS)))
    sys.exit(1 if R.FAILS else 0)


if __name__ == "__main__":
    main()
