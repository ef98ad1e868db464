"""convert --dequantize of ComfyUI scaled FP8 against an independent reference written from
shared/quant.md 10.1-10.2 (the float8 decoders, scales and f32 product of
dequant_reference.py, rounded by torch's Tensor.to()): legacy scaled_fp8 files (E4M3 and
E5M2 under their own markers, every code, per-tensor F32 / BF16 / F16 scale_weight, a
per-row [out, 1] scale with zero and subnormal rows, a conv weight, scale_input dropped;
NaN and inf codes stay NaN and inf, as convert keeps them)
and comfy_quant files (a U8 JSON marker, __metadata__._quantization_metadata, which the
output drops), and comfy_quant nvfp4 / mxfp8 / int8_tensorwise layers built here from the
brief (high-nibble-first E2M1, the cuBLAS 128x4 swizzle by its offset formula, E4M3 and
E8M0 block scales, weight_scale_2, per-row int8 scales), to bf16, f16 and f32 with
--verify, then verify SRC OUT and an audit of the output; overflow refused and saturated;
refusals naming what is unsupported (a weight that may be padding, a bias that does not
fit, unswizzled scales, group_size, a 3-D bank, mxfp8 over E5M2, int8 convrot, the w4
formats, a format over the other float8 codes, codes under another format's marker, a 1-D
scale, pre_quant_scale, a layer without its scale), nothing written.

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


# ---- comfy_quant block formats (shared/quant.md 10.2) -------------------------------------

E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)


def swizzle(scales, rng):
    """[nr, nb] block-scale bytes -> the cuBLAS 128x4-swizzled [roundup(nr, 128),
    roundup(nb, 4)] bytes, by the brief's offset formula; the slots no block uses hold
    random bytes (nothing may read them)."""
    nr, nb = scales.shape
    ncb = -(-nb // 4)
    out = rng.integers(0, 256, (-(-nr // 128) * 128) * ncb * 4, dtype=np.uint8)
    for r in range(nr):
        for c in range(nb):
            rr = r % 128
            out[((r // 128 * ncb + c // 4) * 32 + rr % 32) * 16 + rr // 32 * 4 + c % 4] = \
                scales[r, c]
    return out, (-(-nr // 128) * 128, ncb * 4)


def e8m0_comfy(u):
    """comfy-kitchen's e8m0_to_f32: u << 23 as f32 bits (0 -> 0.0, 255 -> +inf)."""
    return (u.astype(np.uint32) << 23).view(np.float32)


def nvfp4_layer(rng, name, nr, nc, g, gdt="F32", bias=None, zero_rows=0, last_zero=None):
    """an nvfp4 layer [nr, nc] (stored as is): codes (every code), E4M3 block scales (every
    code, zero and subnormal included), global g; returns tensors and f32 reference."""
    codes = rng.integers(0, 16, (nr, nc), dtype=np.uint8)
    codes.flat[:16] = np.arange(16)
    codes[0, nc - 1] = 5  # the last column is not padding
    codes[nr - 1, 0] = 3  # nor the last row
    if zero_rows:
        codes[nr - zero_rows:] = 0
    if last_zero == "col":
        codes[:, nc - 1] = 0
    if last_zero == "row":
        codes[nr - 1] = 0
    bs = rng.integers(0, 256, (nr, nc // 16), dtype=np.uint8)
    bs.flat[:min(bs.size, 256)] = np.arange(min(bs.size, 256))
    bs[(bs & 0x7F) == 0x7F] = 0x38  # no NaN block scales here (1.0)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]  # even element in the high nibble
    sw, sshape = swizzle(bs, rng)
    graw = SCALE_BYTES[gdt]([g])
    gf = R.decode_scale(gdt, graw)[0]
    with np.errstate(all="ignore"):
        s = (R.CODE_TABLE["F8_E4M3"][bs] * np.float32(gf)).astype(np.float32)  # f32(bs x g)
        y = (E2M1[codes] * np.repeat(s, 16, axis=1)).astype(np.float32)
    mk = json.dumps({"format": "nvfp4"}).encode()
    ts = [(name + ".weight", "U8", (nr, nc // 2), packed.tobytes()),
          (name + ".weight_scale", "F8_E4M3", sshape, sw.tobytes()),
          (name + ".weight_scale_2", gdt, (), graw),
          (name + ".input_scale", "F32", (), R.f32b([0.25])),
          (name + ".comfy_quant", "U8", (len(mk),), mk)]
    if bias is not None:
        ts.append((name + ".bias", "BF16", (bias,), R.bf16b(np.linspace(-1, 1, bias))))
    return ts, y


def mxfp8_layer(rng, name, nr, nc, lo=100, hi=131, bias=None, specials=True):
    codes = R.every_code(rng, nr * nc).reshape(nr, nc) if nr * nc >= 256 else \
        R.rnd(rng, nr * nc).reshape(nr, nc)
    codes[0, nc - 1] = 0x38
    codes[nr - 1, 0] = 0x38
    u = rng.integers(lo, hi, (nr, nc // 32), dtype=np.uint8)
    if specials:
        u.flat[0] = 0    # 0.0 in comfy-kitchen
        u.flat[1] = 255  # +inf: the block's values are inf (or NaN for a zero code)
        u.flat[2] = 1    # 2^-126
    sw, sshape = swizzle(u, rng)
    with np.errstate(all="ignore"):
        y = (R.CODE_TABLE["F8_E4M3"][codes] *
             np.repeat(e8m0_comfy(u), 32, axis=1)).astype(np.float32)
    mk = json.dumps({"format": "mxfp8"}).encode()
    ts = [(name + ".weight", "F8_E4M3", (nr, nc), codes.tobytes()),
          (name + ".weight_scale", "F8_E8M0", sshape, sw.tobytes()),
          (name + ".comfy_quant", "U8", (len(mk),), mk)]
    if bias is not None:
        ts.append((name + ".bias", "BF16", (bias,), R.bf16b(np.linspace(-1, 1, bias))))
    return ts, y


def int8_layer(rng, name, Rr, C, sdt, per_row, extra=None):
    q = R.every_code(rng, Rr * C).reshape(Rr, C) if Rr * C >= 256 else R.rnd(rng, Rr * C)
    s = (rng.random(Rr if per_row else 1) * 0.01 + 1e-4).astype(np.float32)
    if per_row:
        s[0] = 0.0
        s[1] = np.float32(1e-40) if sdt == "F32" else np.float32(2.0 ** -20)  # subnormal
    sraw = SCALE_BYTES[sdt](s)
    sd = R.decode_scale(sdt, sraw).reshape((Rr, 1) if per_row else ())
    with np.errstate(all="ignore"):
        y = (R.CODE_TABLE["I8"][q.reshape(Rr, C)] * sd).astype(np.float32)
    mk = json.dumps(dict({"format": "int8_tensorwise"}, **(extra or {}))).encode()
    return [(name + ".weight", "I8", (Rr, C), q.tobytes()),
            (name + ".weight_scale", sdt, (Rr, 1) if per_row else (), sraw),
            (name + ".comfy_quant", "U8", (len(mk),), mk)], y


def block_formats(tmp, rng):
    """nvfp4 (rows > 128 over two swizzle bands, in/16 = 5 and 3 (not multiples of 4), a
    BF16 weight_scale_2, rows cropped to the bias, a height that cannot be padded), mxfp8
    (E8M0 0, 1 and 255, in/32 = 3), int8_tensorwise (per tensor, per row with zero and
    subnormal scales; an nvfp4 and an int8 layer listed in __metadata__ instead of marked),
    to bf16, f16 and f32."""
    P = "diffusion_model.double_blocks.0."
    ts, want = [], {}

    def add(lt, y, shape, name):
        ts.extend(lt)
        want[name + ".weight"] = (shape, y, None)
        for t in lt:
            if t[0].endswith(".bias"):
                want[t[0]] = (t[2], None, t[3])

    lt, y = nvfp4_layer(rng, P + "img_attn.qkv", 200, 80, 3.7e-5, bias=200)
    add(lt, y, (200, 80), P + "img_attn.qkv")
    lt, y = nvfp4_layer(rng, P + "img_attn.proj", 32, 48, 2.0 ** -10, gdt="BF16")
    add(lt, y, (32, 48), P + "img_attn.proj")
    lt, y = nvfp4_layer(rng, P + "img_mlp.0", 48, 32, 1e-3, bias=40, zero_rows=8)
    add(lt, y[:40], (40, 32), P + "img_mlp.0")
    lt, y = nvfp4_layer(rng, P + "img_mlp.2", 37, 16, 5e-4)
    add(lt, y, (37, 16), P + "img_mlp.2")
    lt, y = mxfp8_layer(rng, P + "txt_attn.qkv", 160, 96, bias=160)
    add(lt, y, (160, 96), P + "txt_attn.qkv")
    lt, y = mxfp8_layer(rng, P + "txt_attn.proj", 32, 64, specials=False)
    add(lt, y, (32, 64), P + "txt_attn.proj")
    lt, y = int8_layer(rng, P + "txt_mlp.0", 24, 32, "F32", False)
    add(lt, y, (24, 32), P + "txt_mlp.0")
    lt, y = int8_layer(rng, P + "txt_mlp.2", 20, 16, "F16", True, {"convrot": False})
    add(lt, y, (20, 16), P + "txt_mlp.2")
    lt, y = int8_layer(rng, P + "modulation.lin", 12, 16, "BF16", False)
    add(lt, y, (12, 16), P + "modulation.lin")
    # two layers listed in __metadata__._quantization_metadata instead of a marker
    lt, y = nvfp4_layer(rng, P + "txt_mod.lin", 32, 32, 2e-4)
    add([t for t in lt if not t[0].endswith(".comfy_quant")], y, (32, 32), P + "txt_mod.lin")
    lt, y = int8_layer(rng, P + "img_mod.lin", 16, 32, "F32", True)
    add([t for t in lt if not t[0].endswith(".comfy_quant")], y, (16, 32), P + "img_mod.lin")
    meta = {"format": "pt", "_quantization_metadata": json.dumps(
        {"format_version": "1.0", "layers": {P + "txt_mod.lin": {"format": "nvfp4"},
                                             P + "img_mod.lin": {"format": "int8_tensorwise"}}})}
    src = os.path.join(tmp, "comfy-block.safetensors")
    R.write_st(src, ts, meta)
    rc, so, se = run("audit", src)
    check(rc == 0, "block formats: audit of the input exit %d %s %s" % (rc, so, se))
    for target in ("BF16", "F16", "F32"):
        out = os.path.join(tmp, "comfy-block-%s.safetensors" % target.lower())
        rc, so, se = run("convert", "--to", target.lower(), "--dequantize", "--verify", src,
                         "-o", out)
        check(rc == 0, "block formats -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("block formats -> " + target, src, out, want, target, {"format": "pt"})
    # overflow: E8M0 137 (2^10) x 448 leaves F16: refused, written saturated when asked
    lt, y = mxfp8_layer(rng, "m", 32, 32, lo=137, hi=138, specials=False)
    src = os.path.join(tmp, "mx-big.safetensors")
    R.write_st(src, lt, {"format": "pt"})
    out = os.path.join(tmp, "mx-big-f16.safetensors")
    rc, so, se = run("convert", "--to", "f16", "--dequantize", src, "-o", out)
    check(rc == 1 and not os.path.exists(out), "mxfp8 overflow refused: exit %d %s" % (rc, se))
    rc, so, se = run("convert", "--to", "f16", "--dequantize", "--on-overflow", "saturate", src,
                     "-o", out)
    check(rc == 0, "mxfp8 overflow saturate: exit %d %s" % (rc, se))
    if rc == 0:
        got, _ = read_st(out)
        w = np.frombuffer(R.to_target(y.reshape(-1), "F16"), np.uint16).copy()
        hit = (w & 0x7FFF) == 0x7C00
        w[hit] = (w[hit] & 0x8000) | 0x7BFF
        check(R.same_values(got["m.weight"][2], w.tobytes(), "F16"), "mxfp8 saturated values")
    rc, so, se = run("convert", "--to", "bf16", "--dequantize", src, "-o", out + ".bf16")
    check(rc == 0, "mxfp8 2^10 x 448 fits BF16: exit %d %s" % (rc, se))


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
    # nvfp4 whose stored shape may be padding: the file does not say the original shape
    lt, _ = nvfp4_layer(rng, "m", 32, 48, 1e-3, last_zero="col")
    refused("nvfp4-cols", lt, ["m.weight", "nvfp4", "in_features"])
    lt, _ = nvfp4_layer(rng, "m", 32, 48, 1e-3, last_zero="row")
    refused("nvfp4-rows", lt, ["m.weight", "nvfp4", "out_features"])
    lt, _ = mxfp8_layer(rng, "m", 64, 64, specials=False)
    c = bytearray(lt[0][3])
    c[63 * 64:] = bytes(64)  # the last row zero, no bias
    refused("mxfp8-rows", [lt[0][:3] + (bytes(c),)] + lt[1:], ["m.weight", "mxfp8",
                                                               "out_features"])
    lt, _ = nvfp4_layer(rng, "m", 48, 32, 1e-3, bias=20)
    refused("nvfp4-bias", lt, ["m.weight", "bias does not fit"])
    lt, _ = nvfp4_layer(rng, "m", 48, 32, 1e-3, bias=40)  # rows 40..47 not zero
    refused("nvfp4-bias-rows", lt, ["m.weight", "not zero padding"])
    lt, _ = nvfp4_layer(rng, "m", 32, 48, 1e-3)
    plain = [t if not t[0].endswith("weight_scale") else
             (t[0], t[1], (32, 3), bytes(96)) for t in lt]  # unswizzled [out, in/16]
    refused("nvfp4-plain-scales", plain, ["m.weight", "swizzled"])
    refused("nvfp4-group", lt[:-1] + [marker({"format": "nvfp4", "group_size": 32})],
            ["m.weight", "group_size"])
    refused("nvfp4-prequant", lt + [("m.pre_quant_scale", "F32", (48,), R.f32b([1.0] * 48))],
            ["m.weight", "pre_quant_scale"])
    lt, _ = mxfp8_layer(rng, "m", 32, 64, specials=False)
    refused("mxfp8-e5m2", [(lt[0][0], "F8_E5M2") + lt[0][2:]] + lt[1:],
            ["m.weight", "mxfp8", "F8_E5M2"])
    lt, _ = int8_layer(rng, "m", 16, 16, "F32", True, {"convrot": True,
                                                       "convrot_groupsize": 16})
    refused("int8-convrot", lt, ["m.weight", "int8_tensorwise", "convrot"])
    refused("int8-1d", [lt[0], ("m.weight_scale", "F32", (16,), R.f32b([1.0] * 16)),
                        marker({"format": "int8_tensorwise"})], ["m.weight", "[16, 1]"])
    # a 3-D expert bank [E, out, in/2] (ComfyUI's MoEExperts), not dequantized here
    refused("nvfp4-bank", [("m.weight", "U8", (2, 16, 8), bytes(range(256))),
                           ("m.weight_scale", "F8_E4M3", (2, 128, 4), bytes(1024)),
                           ("m.weight_scale_2", "F32", (2,), R.f32b([1.0, 1.0])),
                           marker({"format": "nvfp4", "num_experts": 2})],
            ["m.weight", "nvfp4", "rank 3"])
    for fmt in ("convrot_w4a4", "asym_w4a8_int8", "awq_w4a16"):
        refused(fmt, [("m.weight", "I8", (16, 8), bytes(128)),
                      ("m.weight_scale", "F32", (16,), R.f32b([1.0] * 16)),
                      marker({"format": fmt})], ["m.weight", fmt])
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
        block_formats(tmp, rng)
        refusals(tmp, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (R.PASSES[0], len(R.FAILS)))
    sys.exit(1 if R.FAILS else 0)


if __name__ == "__main__":
    main()
