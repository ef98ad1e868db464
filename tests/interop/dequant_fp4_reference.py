"""convert --dequantize of the FP4 and packed schemes against an independent reference
written from shared/quant.md (sections 1.2, 1.5, 3.4, 3.5, 8.2-8.3, 9.2, 10.1, 15): codes
unpacked here with numpy from the documented bit layouts, scales decoded by numpy, the
product taken in numpy float32 (one multiply, round to nearest even), and the rounding to
BF16/F16 done by torch's Tensor.to(). Fixtures are generated at test time and small.

Schemes: gpt-oss MXFP4 expert stacks (every E2M1 code, E8M0 scale bytes 0, 1, 254 and
255, the [E, out, in] -> [E, in, out] transpose, a matrix larger than dtaudit's column
slab), ModelOpt NVFP4 (Linear weights, and Llama-4 / gpt-oss expert stacks built the way
ModelOpt's exporter stores them: quantized as [E, out, in], codes and block scales stored
transposed back, one global scale or one per expert), compressed-tensors
nvfp4-pack-quantized (odd logical width, zero / subnormal block scales), and refusals of
what is not supported.

Usage: dequant_fp4_reference.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch)."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dequant_reference as R  # noqa: E402  (skips with 77 itself without numpy/torch)

np = R.np
check, run, write_st, read_st = R.check, R.run, R.write_st, R.read_st

E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)
E4M3 = R.e4m3_table()


def e8m0(u):
    u = np.asarray(u, np.float64)
    v = np.exp2(u - 127.0)
    v[u == 255] = np.nan  # OCP: 0xFF is NaN
    return v.astype(np.float32)


def unpack_low_first(packed, n):
    """U8 bytes -> nibble codes, even element in the low nibble, cropped to n per row."""
    lo, hi = packed & 15, packed >> 4
    out = np.stack([lo, hi], axis=-1).reshape(packed.shape[:-1] + (packed.shape[-1] * 2,))
    return out[..., :n]


def mul(x, s):
    with np.errstate(all="ignore"):
        return (np.asarray(x, np.float32) * np.asarray(s, np.float32)).astype(np.float32)


def write_dir(root, tensors, config, extra_files=None):
    os.makedirs(root)
    write_st(os.path.join(root, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(config, f)
    for name, body in (extra_files or {}).items():
        with open(os.path.join(root, name), "w") as f:
            json.dump(body, f)


def convert(src, out, target="bf16", *extra):
    return run("convert", "--to", target, "--dequantize", *extra, src, "-o", out)


def check_out(label, src, out, want, target="BF16", sidecars=()):
    """want: name -> (shape, f32 values) for dequantized ones, name -> (shape, f32) plain."""
    got, meta = read_st(os.path.join(out, "model.safetensors"))
    check(sorted(got) == sorted(want), "%s: tensors %s" % (label, sorted(set(got) ^ set(want))))
    for name, (shape, vals) in want.items():
        if name not in got:
            continue
        dt, gshape, raw = got[name]
        check(dt == target and tuple(gshape) == tuple(shape),
              "%s: %s is %s %s, want %s %s" % (label, name, dt, gshape, target, shape))
        ref = R.to_target(np.ascontiguousarray(vals, np.float32).reshape(-1), target)
        ok = R.same_values(raw, ref, target)
        if not ok and len(raw) == len(ref):
            es = 4 if target == "F32" else 2
            bad = next(i for i in range(0, len(ref), es) if raw[i:i + es] != ref[i:i + es])
            print("  first difference in %s at element %d: got %s want %s" %
                  (name, bad // es, raw[bad:bad + es].hex(), ref[bad:bad + es].hex()))
        check(ok, "%s: %s values differ from the reference" % (label, name))
    check(meta == {"format": "pt"}, "%s: __metadata__ %r" % (label, meta))
    cfg = json.load(open(os.path.join(out, "config.json")))
    tn = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[target]
    check("quantization_config" not in cfg and cfg.get("torch_dtype") == tn,
          "%s: config.json %r" % (label, cfg))
    for side in sidecars:
        check(not os.path.exists(os.path.join(out, side)), "%s: %s copied" % (label, side))
    rc, so, se = run("verify", src, out)
    check(rc == 0, "%s: verify SRC OUT exit %d: %s %s" % (label, rc, so, se))
    rc, so, se = run("audit", out)
    check(rc == 0, "%s: audit OUT exit %d: %s %s" % (label, rc, so, se))


def plain(raw_bf16, shape):
    return (shape, R.decode_scale("BF16", raw_bf16).reshape(shape))


# ---- gpt-oss MXFP4 ----------------------------------------------------------------------------

def mxfp4_case(rng, E, out, nb, scale_bytes=None):
    blocks = R.rnd(rng, E * out * nb * 16).reshape(E, out, nb, 16)
    flat = blocks.reshape(-1)
    k = min(256, flat.size)
    flat[:k] = np.arange(k, dtype=np.uint8)  # every pair of codes
    if scale_bytes is None:
        scales = rng.integers(110, 140, E * out * nb, dtype=np.uint8).reshape(E, out, nb)
    else:
        scales = np.asarray(scale_bytes, np.uint8).reshape(E, out, nb)
    x = E2M1[unpack_low_first(blocks.reshape(E, out, nb * 16), nb * 32)]  # [E, out, in]
    s = np.repeat(e8m0(scales), 32, axis=-1)
    y = mul(x, s).transpose(0, 2, 1)  # HF layout [E, in, out]
    return blocks, scales, y


def mxfp4_dir(root, rng, E=3, I=10, H=64, scale_dt="U8", special=False):
    P = "model.layers.0."
    ts, want = [], {}
    gb, gs, gy = mxfp4_case(rng, E, 2 * I, H // 32)
    if special:
        # E8M0 0 (2^-127, an f32 subnormal) and 1 beside ordinary exponents
        flat = gs.reshape(-1)
        flat[0], flat[1], flat[2] = 0, 1, 127
        x = E2M1[unpack_low_first(gb.reshape(E, 2 * I, H // 32 * 16), H)]
        gy = mul(x, np.repeat(e8m0(gs), 32, axis=-1)).transpose(0, 2, 1)
    db, ds, dy = mxfp4_case(rng, E, H, 1)  # down_proj: in = 32
    ts += [(P + "mlp.experts.gate_up_proj_blocks", "U8", gb.shape, gb.tobytes()),
           (P + "mlp.experts.gate_up_proj_scales", scale_dt, gs.shape, gs.tobytes()),
           (P + "mlp.experts.down_proj_blocks", "U8", db.shape, db.tobytes()),
           (P + "mlp.experts.down_proj_scales", scale_dt, ds.shape, ds.tobytes())]
    want[P + "mlp.experts.gate_up_proj"] = (gy.shape, gy)
    want[P + "mlp.experts.down_proj"] = (dy.shape, dy)
    for name, shape in ((P + "mlp.experts.gate_up_proj_bias", (E, 2 * I)),
                        (P + "mlp.experts.down_proj_bias", (E, H)),
                        (P + "self_attn.q_proj.weight", (16, H)),
                        (P + "mlp.router.weight", (E, H))):
        raw = R.bf16b(rng.standard_normal(shape).astype(np.float32))
        ts.append((name, "BF16", shape, raw))
        want[name] = plain(raw, shape)
    write_dir(root, ts, {"model_type": "gpt_oss", "torch_dtype": "bfloat16",
                         "quantization_config": {
                             "quant_method": "mxfp4",
                             "modules_to_not_convert": ["model.layers.*.self_attn",
                                                        "model.layers.*.mlp.router",
                                                        "model.embed_tokens", "lm_head"]}})
    return want


def test_mxfp4(tmp, rng):
    wants = {}
    for scale_dt in ("U8", "F8_E8M0"):
        src = os.path.join(tmp, "mx-" + scale_dt)
        want = wants[scale_dt] = mxfp4_dir(src, rng, scale_dt=scale_dt, special=True)
        for target in ("bf16", "f32"):
            out = src + "-" + target
            rc, so, se = convert(src, out, target, "--verify")
            check(rc == 0, "mxfp4 %s -> %s: exit %d %s" % (scale_dt, target, rc, se))
            if rc == 0:
                check_out("mxfp4 %s -> %s" % (scale_dt, target), src, out, want, target.upper())
    # f16: 2^-127-scaled values underflow to zero (counted, converted)
    src = os.path.join(tmp, "mx-U8")
    out = src + "-f16"
    rc, so, se = convert(src, out, "f16")
    check(rc == 0, "mxfp4 -> f16: exit %d %s" % (rc, se))
    if rc == 0:
        check_out("mxfp4 -> f16", src, out, wants["U8"], "F16")
    # sharded: the blocks in one shard, their scales in the other; the index maps the
    # plain name, drops the scales and gets the right total_size
    src = os.path.join(tmp, "mx-sharded")
    os.makedirs(src)
    gb, gs, gy = mxfp4_case(rng, 2, 6, 2)
    db, ds, dy = mxfp4_case(rng, 2, 64, 1)
    P = "model.layers.0.mlp.experts."
    shards = {"model-00001-of-00002.safetensors": [
                  (P + "gate_up_proj_blocks", "U8", gb.shape, gb.tobytes()),
                  (P + "down_proj_scales", "U8", ds.shape, ds.tobytes())],
              "model-00002-of-00002.safetensors": [
                  (P + "gate_up_proj_scales", "U8", gs.shape, gs.tobytes()),
                  (P + "down_proj_blocks", "U8", db.shape, db.tobytes())]}
    wm = {}
    for fn, ts in shards.items():
        write_st(os.path.join(src, fn), ts, {"format": "pt"})
        wm.update({t[0]: fn for t in ts})
    with open(os.path.join(src, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, f)
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump({"model_type": "gpt_oss", "quantization_config": {"quant_method": "mxfp4"}}, f)
    out = src + "-out"
    rc, so, se = convert(src, out, "bf16", "--verify")
    check(rc == 0, "mxfp4 sharded: exit %d %s" % (rc, se))
    if rc == 0:
        got, _ = R.load_dir(out)
        idx = json.load(open(os.path.join(out, "model.safetensors.index.json")))
        check(idx["weight_map"] == {P + "gate_up_proj": "model-00001-of-00002.safetensors",
                                    P + "down_proj": "model-00002-of-00002.safetensors"},
              "mxfp4 sharded: weight_map %r" % idx["weight_map"])
        check(idx["metadata"]["total_size"] == (gy.size + dy.size) * 2,
              "mxfp4 sharded: total_size %r" % idx["metadata"])
        for name, y in ((P + "gate_up_proj", gy), (P + "down_proj", dy)):
            check(name in got and got[name][1] == y.shape and
                  R.same_values(got[name][2], R.to_target(y.reshape(-1), "BF16"), "BF16"),
                  "mxfp4 sharded: %s" % name)
        rc, so, se = run("verify", src, out)
        check(rc == 0, "mxfp4 sharded: verify exit %d %s" % (rc, so))
    # a matrix larger than the column slab (8 MiB): partial slabs, chunk boundaries
    src = os.path.join(tmp, "mx-big")
    E, out_rows, nb = 1, 4096, 130
    b, s, y = mxfp4_case(rng, E, out_rows, nb)
    write_dir(src, [("model.layers.0.mlp.experts.down_proj_blocks", "U8", b.shape, b.tobytes()),
                    ("model.layers.0.mlp.experts.down_proj_scales", "U8", s.shape, s.tobytes())],
              {"model_type": "gpt_oss", "quantization_config": {"quant_method": "mxfp4"}})
    out = src + "-bf16"
    rc, so, se = convert(src, out, "bf16")
    check(rc == 0, "mxfp4 big: exit %d %s" % (rc, se))
    if rc == 0:
        check_out("mxfp4 big", src, out, {"model.layers.0.mlp.experts.down_proj": (y.shape, y)})
    # E8M0 254 with |x| >= 2 overflows f32: refused by default, saturated on request;
    # E8M0 255 is NaN (OCP), written as NaN and counted
    src = os.path.join(tmp, "mx-edge")
    sb = np.full((1, 2, 1), 254, np.uint8)
    sb[0, 1, 0] = 255
    b, s, y = mxfp4_case(rng, 1, 2, 1, scale_bytes=sb)
    write_dir(src, [("model.layers.0.mlp.experts.down_proj_blocks", "U8", b.shape, b.tobytes()),
                    ("model.layers.0.mlp.experts.down_proj_scales", "U8", s.shape, s.tobytes())],
              {"model_type": "gpt_oss", "quantization_config": {"quant_method": "mxfp4"}})
    out = src + "-out"
    rc, so, se = convert(src, out)
    check(rc == 1 and not os.path.exists(out), "mxfp4 E8M0 254 overflow: exit %d, exists %s %s"
          % (rc, os.path.exists(out), se))
    rc, so, se = convert(src, out, "bf16", "--on-overflow", "inf")
    check(rc == 0, "mxfp4 E8M0 254/255 --on-overflow inf: exit %d %s" % (rc, se))
    if rc == 0:
        got, _ = read_st(os.path.join(out, "model.safetensors"))
        raw = got["model.layers.0.mlp.experts.down_proj"][2]
        ref = R.to_target(y.reshape(-1), "BF16")
        check(R.same_values(raw, ref, "BF16"), "mxfp4 254/255 values (inf and NaN)")
        v = np.frombuffer(raw, np.uint16).reshape(32, 2)
        check(bool(np.all((v[:, 1] & 0x7FFF) > 0x7F80)), "mxfp4 scale 255 gives NaN")


# ---- NVFP4: ModelOpt and compressed-tensors -----------------------------------------------------

def nvfp4_case(rng, out, n, ct):
    cols = (n + 1) // 2
    packed = R.rnd(rng, out * cols).reshape(out, cols)
    k = min(256, packed.size)
    packed.reshape(-1)[:k] = np.arange(k, dtype=np.uint8)
    gc = (n + 15) // 16
    bs = R.rnd(rng, out * gc).reshape(out, gc)
    bs[bs & 0x7F == 0x7F] = 0x38  # no NaN block scales
    bs.reshape(-1)[:4] = [0x00, 0x01, 0x80, 0x08]  # zero, subnormal, -0, min normal
    g = np.float32(448.0 * 6.0 / 3.7) if ct else np.float32(3.7 / (448.0 * 6.0))
    x = E2M1[unpack_low_first(packed, n)]
    b = np.repeat(E4M3[bs], 16, axis=-1)[:, :n]
    s = (b / g).astype(np.float32) if ct else (b * g).astype(np.float32)
    return packed, bs, g, mul(x, s)


def test_nvfp4(tmp, rng):
    # ModelOpt: config quant_method modelopt + hf_quant_config.json sidecar
    src = os.path.join(tmp, "nv-modelopt")
    ts, want = [], {}
    for i, (o, n) in enumerate(((40, 64), (17, 48))):
        name = "model.layers.%d.mlp.down_proj" % i
        p, bs, g, y = nvfp4_case(rng, o, n, False)
        ts += [(name + ".weight", "U8", p.shape, p.tobytes()),
               (name + ".weight_scale", "F8_E4M3", bs.shape, bs.tobytes()),
               (name + ".weight_scale_2", "F32", (), R.f32b([g])),
               (name + ".input_scale", "F32", (), R.f32b([0.5]))]
        want[name + ".weight"] = (y.shape, y)
    raw = R.bf16b(rng.standard_normal((8, 64)).astype(np.float32))
    ts.append(("lm_head.weight", "BF16", (8, 64), raw))
    want["lm_head.weight"] = plain(raw, (8, 64))
    qc = {"quant_method": "modelopt", "quant_algo": "NVFP4", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float",
                                                    "group_size": 16}}}}
    side = {"producer": {"name": "modelopt", "version": "0.37"},
            "quantization": {"quant_algo": "NVFP4", "group_size": 16,
                             "exclude_modules": ["lm_head"]}}
    write_dir(src, ts, {"model_type": "llama", "torch_dtype": "bfloat16",
                        "quantization_config": qc}, {"hf_quant_config.json": side})
    for target in ("bf16", "f16", "f32"):
        out = src + "-" + target
        rc, so, se = convert(src, out, target, "--verify")
        check(rc == 0, "modelopt nvfp4 -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("modelopt nvfp4 -> " + target, src, out, want, target.upper(),
                      ("hf_quant_config.json",))
    # pre_quant_scale (NVFP4_AWQ): refused, nothing written
    src2 = os.path.join(tmp, "nv-awq")
    write_dir(src2, ts + [("model.layers.0.mlp.down_proj.pre_quant_scale", "BF16", (64,),
                           R.bf16b(np.ones(64, np.float32)))],
              {"model_type": "llama", "quantization_config": qc})
    out = src2 + "-out"
    rc, so, se = convert(src2, out)
    check(rc == 1 and "pre_quant_scale" in se and not os.path.exists(out),
          "nvfp4 pre_quant_scale refused: exit %d %s" % (rc, se))

    # compressed-tensors nvfp4-pack-quantized: odd logical width via weight_shape
    src = os.path.join(tmp, "nv-ct")
    ts, want = [], {}
    for i, (o, n) in enumerate(((33, 64), (5, 37))):
        name = "model.layers.%d.self_attn.o_proj" % i
        p, bs, g, y = nvfp4_case(rng, o, n, True)
        ts += [(name + ".weight_packed", "U8", p.shape, p.tobytes()),
               (name + ".weight_scale", "F8_E4M3", bs.shape, bs.tobytes()),
               (name + ".weight_global_scale", "F32", (1,), R.f32b([g])),
               (name + ".input_global_scale", "F32", (1,), R.f32b([1.0]))]
        if n % 2:
            ts.append((name + ".weight_shape", "I64", (2,), np.array([o, n], np.int64).tobytes()))
        want[name + ".weight"] = (y.shape, y)
    qc = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
          "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"],
                                        "weights": {"num_bits": 4, "type": "float",
                                                    "strategy": "tensor_group",
                                                    "group_size": 16, "symmetric": True}}}}
    write_dir(src, ts, {"model_type": "llama", "torch_dtype": "bfloat16",
                        "quantization_config": qc})
    for target in ("bf16", "f32"):
        out = src + "-" + target
        rc, so, se = convert(src, out, target, "--verify")
        check(rc == 0, "ct nvfp4 -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("ct nvfp4 -> " + target, src, out, want, target.upper())


# ---- ModelOpt NVFP4 expert stacks (Llama4TextExperts / GptOssExperts) --------------------------

def nvfp4_stack_case(rng, E, n_in, out, per_expert=False):
    """A bmm expert stack as ModelOpt's exporter writes it: the [E, in, out] weight is
    quantized transposed, [E, out, in] (codes packed along in, block scales per 16 of in),
    and the codes and block scales are stored transposed back: [E, in/2, out] and
    [E, in/16, out]. Returns the stored tensors and the values in the stored layout
    [E, in, out]: y[e, i, o] = f32(E2M1 * f32(bs * g[e])) of the transposed element."""
    cols, gc = n_in // 2, (n_in + 15) // 16
    q = R.rnd(rng, E * out * cols).reshape(E, out, cols)  # [E, out, in/2]
    k = min(256, q.size)
    q.reshape(-1)[:k] = np.arange(k, dtype=np.uint8)      # every pair of codes
    bs = R.rnd(rng, E * out * gc).reshape(E, out, gc)
    bs[bs & 0x7F == 0x7F] = 0x38                          # no NaN block scales
    bs.reshape(-1)[:4] = [0x00, 0x01, 0x80, 0x08]         # zero, subnormal, -0, min normal
    g = (np.linspace(0.5, 3.7, E) / (448.0 * 6.0)).astype(np.float32) if per_expert \
        else np.full(E, 3.7 / (448.0 * 6.0), np.float32)
    x = E2M1[unpack_low_first(q, n_in)]                   # [E, out, in]
    b = np.repeat(E4M3[bs], 16, axis=-1)[..., :n_in]
    s = (b * g[:, None, None]).astype(np.float32)
    y = mul(x, s).transpose(0, 2, 1)                      # [E, in, out]
    codes = np.ascontiguousarray(q.transpose(0, 2, 1))    # [E, in/2, out]
    scales = np.ascontiguousarray(bs.transpose(0, 2, 1))  # [E, in/16, out]
    gt = (("F32", (E,), R.f32b(g)) if per_expert else ("F32", (), R.f32b(g[:1])))
    return codes, scales, gt, y


def stack_tensors(name, codes, scales, gt):
    return [(name, "U8", codes.shape, codes.tobytes()),
            (name + "_weight_scale", "F8_E4M3", scales.shape, scales.tobytes()),
            (name + "_weight_scale_2",) + gt,
            (name + "_input_scale", "F32", (), R.f32b([0.25]))]


NV_STACK_QC = {"quant_method": "modelopt", "quant_algo": "NVFP4",
               "ignore": ["lm_head", "model.layers.*.mlp.router"],
               "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float",
                                                         "group_size": 16}}}}
NV_STACK_SIDE = {"hf_quant_config.json": {
    "producer": {"name": "modelopt", "version": "0.37"},
    "quantization": {"quant_algo": "NVFP4", "group_size": 16,
                     "exclude_modules": ["lm_head", "model.layers.*.mlp.router"]}}}


def audit_findings(path):
    """(exit code, [rule module] of the warnings and errors) of dtaudit audit PATH."""
    rc, so, se = run("audit", "--format", "json", path)
    try:
        doc = json.loads(so)
    except ValueError:
        return rc, ["unparsable: " + se]
    return rc, ["%s %s" % (f["rule"], f["module"]) for f in doc["findings"]
                if f["severity"] != "info"]


def test_nvfp4_stacks(tmp, rng):
    # gpt-oss-shaped: gate_up_proj (in 64, out 2 x 24) with one global scale, down_proj
    # (in 24: a ragged last block of 8) with one global scale per expert; BF16 biases and
    # router beside them
    E, H, I = 3, 64, 24
    P = "model.layers.0.mlp.experts."
    src = os.path.join(tmp, "nv-stack")
    gc, gs, gg, gy = nvfp4_stack_case(rng, E, H, 2 * I)
    dc, ds, dg, dy = nvfp4_stack_case(rng, E, I, H, per_expert=True)
    ts = stack_tensors(P + "gate_up_proj", gc, gs, gg) + stack_tensors(P + "down_proj", dc, ds, dg)
    want = {P + "gate_up_proj": (gy.shape, gy), P + "down_proj": (dy.shape, dy)}
    check(gy.shape == (E, H, 2 * I) and dy.shape == (E, I, H),
          "nvfp4 stack reference shapes %s %s" % (gy.shape, dy.shape))
    for name, shape in ((P + "gate_up_proj_bias", (E, 2 * I)), (P + "down_proj_bias", (E, H)),
                        ("model.layers.0.mlp.router.weight", (E, H)), ("lm_head.weight", (8, H))):
        raw = R.bf16b(rng.standard_normal(shape).astype(np.float32))
        ts.append((name, "BF16", shape, raw))
        want[name] = plain(raw, shape)
    write_dir(src, ts, {"model_type": "gpt_oss", "torch_dtype": "bfloat16",
                        "quantization_config": NV_STACK_QC}, NV_STACK_SIDE)
    rc, got = audit_findings(src)
    check(rc == 0 and not got, "nvfp4 stack: audit of the input exit %d %s" % (rc, got))
    rc, so, se = run("scan", "--format", "json", src)
    params = {}
    if rc == 0:
        for p in json.loads(so)["inputs"][0]["quantization"]["parameters"]:
            params[p["name"]] = p
    check(params.get(P + "gate_up_proj", {}).get("shape") == [E, H, 2 * I] and
          params.get(P + "down_proj", {}).get("shape") == [E, I, H] and
          len(params.get(P + "down_proj", {}).get("tensors", {})) == 4,
          "nvfp4 stack: scan parameters %r" % sorted(params))
    for target in ("bf16", "f16", "f32"):
        out = src + "-" + target
        rc, so, se = convert(src, out, target, "--verify")
        check(rc == 0, "nvfp4 stack -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("nvfp4 stack -> " + target, src, out, want, target.upper(),
                      ("hf_quant_config.json",))

    # sharded: each stack's codes in one shard, its block scales in the other
    src = os.path.join(tmp, "nv-stack-sharded")
    os.makedirs(src)
    a, b = stack_tensors(P + "gate_up_proj", gc, gs, gg), stack_tensors(P + "down_proj", dc, ds, dg)
    shards = {"model-00001-of-00002.safetensors": [a[0], a[2], b[1], b[3]],
              "model-00002-of-00002.safetensors": [a[1], a[3], b[0], b[2]]}
    wm = {}
    for fn, tl in shards.items():
        write_st(os.path.join(src, fn), tl, {"format": "pt"})
        wm.update({t[0]: fn for t in tl})
    with open(os.path.join(src, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, f)
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump({"model_type": "gpt_oss", "quantization_config": NV_STACK_QC}, f)
    out = src + "-out"
    rc, so, se = convert(src, out, "bf16", "--verify")
    check(rc == 0, "nvfp4 stack sharded: exit %d %s" % (rc, se))
    if rc == 0:
        got, _ = R.load_dir(out)
        idx = json.load(open(os.path.join(out, "model.safetensors.index.json")))
        check(idx["weight_map"] == {P + "gate_up_proj": "model-00001-of-00002.safetensors",
                                    P + "down_proj": "model-00002-of-00002.safetensors"},
              "nvfp4 stack sharded: weight_map %r" % idx["weight_map"])
        check(idx["metadata"]["total_size"] == (gy.size + dy.size) * 2,
              "nvfp4 stack sharded: total_size %r" % idx["metadata"])
        for name, y in ((P + "gate_up_proj", gy), (P + "down_proj", dy)):
            check(name in got and got[name][1] == y.shape and
                  R.same_values(got[name][2], R.to_target(y.reshape(-1), "BF16"), "BF16"),
                  "nvfp4 stack sharded: %s" % name)
        rc, so, se = run("verify", src, out)
        check(rc == 0, "nvfp4 stack sharded: verify exit %d %s" % (rc, so))
        rc, got = audit_findings(out)
        check(rc == 0 and not got, "nvfp4 stack sharded: audit OUT exit %d %s" % (rc, got))

    # a stack past dtaudit's 8 MiB slab: one expert's 912 rows of block scales (14592 inputs,
    # 9 x 1024 bytes a row) take two loads, and the second expert starts inside the run
    src = os.path.join(tmp, "nv-stack-big")
    c, sc, g, y = nvfp4_stack_case(rng, 2, 14592, 1024, per_expert=True)
    write_dir(src, stack_tensors(P + "down_proj", c, sc, g),
              {"model_type": "gpt_oss", "quantization_config": NV_STACK_QC})
    out = src + "-bf16"
    rc, so, se = convert(src, out, "bf16")
    check(rc == 0, "nvfp4 stack big: exit %d %s" % (rc, se))
    if rc == 0:
        check_out("nvfp4 stack big", src, out, {P + "down_proj": (y.shape, y)})

    # broken: a stack without its weight_scale_2: quant-incomplete naming the module, and
    # convert --dequantize refuses it, nothing written
    src = os.path.join(tmp, "nv-stack-noglobal")
    write_dir(src, [t for t in ts if t[0] != P + "down_proj_weight_scale_2"],
              {"model_type": "gpt_oss", "quantization_config": NV_STACK_QC})
    rc, got = audit_findings(src)
    check(rc == 1 and got == ["quant-incomplete model.layers.0.mlp.experts"],
          "nvfp4 stack without weight_scale_2: audit exit %d %s" % (rc, got))
    out = src + "-out"
    rc, so, se = convert(src, out)
    check(rc == 1 and "down_proj" in se and not os.path.exists(out),
          "nvfp4 stack without weight_scale_2 refused: exit %d %s" % (rc, se))

    # refused by name: a stack stored [E, out, in/2] (no ModelOpt export writes one; its
    # unquantized layout is unknown), and a compressed-tensors 3-D weight_packed
    src = os.path.join(tmp, "nv-stack-outmajor")
    oc = np.ascontiguousarray(dc.transpose(0, 2, 1))
    osc = np.ascontiguousarray(ds.transpose(0, 2, 1))
    write_dir(src, stack_tensors(P + "down_proj", oc, osc, dg),
              {"model_type": "gpt_oss", "quantization_config": NV_STACK_QC})
    rc, got = audit_findings(src)
    check(rc == 0 and not got, "nvfp4 [E, out, in/2] stack: audit exit %d %s" % (rc, got))
    out = src + "-out"
    rc, so, se = convert(src, out)
    check(rc == 1 and "down_proj" in se and "[E, out, in/2]" in se and not os.path.exists(out),
          "nvfp4 [E, out, in/2] stack refused: exit %d %s" % (rc, se))
    src = os.path.join(tmp, "ct-stack")
    qc = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
          "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"],
                                        "weights": {"num_bits": 4, "type": "float",
                                                    "strategy": "tensor_group",
                                                    "group_size": 16, "symmetric": True}}}}
    write_dir(src, [(P + "down_proj.weight_packed", "U8", oc.shape, oc.tobytes()),
                    (P + "down_proj.weight_scale", "F8_E4M3", osc.shape, osc.tobytes()),
                    (P + "down_proj.weight_global_scale", "F32", (1,), R.f32b([1.0]))],
              {"model_type": "gpt_oss", "quantization_config": qc})
    out = src + "-out"
    rc, so, se = convert(src, out)
    check(rc == 1 and "down_proj" in se and "compressed-tensors" in se and not os.path.exists(out),
          "ct nvfp4 3-D weight_packed refused: exit %d %s" % (rc, se))


def test_ct_mxfp4(tmp, rng):
    # compressed-tensors mxfp4-pack-quantized: E8M0 exponent scales per 32 (U8 or F8_E8M0),
    # no global scale, a short last group; 255 is 2^128 = inf as the library computes it
    qc = {"quant_method": "compressed-tensors", "format": "mxfp4-pack-quantized",
          "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"],
                                        "weights": {"num_bits": 4, "type": "float",
                                                    "strategy": "group", "group_size": 32,
                                                    "symmetric": True}}}}
    src = os.path.join(tmp, "mx-ct")
    ts, want = [], {}
    for i, (o, n, sdt) in enumerate(((20, 96, "U8"), (7, 80, "F8_E8M0"))):
        name = "model.layers.%d.mlp.up_proj" % i
        cols, gc = n // 2, -(-n // 32)
        packed = R.rnd(rng, o * cols).reshape(o, cols)
        packed.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)[:o * cols]
        u = rng.integers(100, 150, (o, gc)).astype(np.uint8)
        u.reshape(-1)[:4] = [0, 1, 252, 255]
        sc = np.exp2(u.astype(np.float64) - 127.0)
        sc[u == 255] = np.inf
        x = E2M1[unpack_low_first(packed, n)]
        y = mul(x, np.repeat(sc.astype(np.float32), 32, axis=-1)[:, :n])
        ts += [(name + ".weight_packed", "U8", packed.shape, packed.tobytes()),
               (name + ".weight_scale", sdt, u.shape, u.tobytes())]
        want[name + ".weight"] = (y.shape, y)
    write_dir(src, ts, {"model_type": "llama", "torch_dtype": "bfloat16",
                        "quantization_config": qc})
    for target in ("bf16", "f16", "f32"):
        out = src + "-" + target
        extra = ("--on-overflow", "inf") if target == "f16" else ()
        rc, so, se = convert(src, out, target, "--verify", *extra)
        check(rc == 0, "ct mxfp4 -> %s: exit %d %s" % (target, rc, se))
        if rc == 0:
            check_out("ct mxfp4 -> " + target, src, out, want, target.upper())
    # 6 x 2^127 leaves f32: an overflow, refused by default
    src2 = os.path.join(tmp, "mx-ct-ovf")
    t = [(k, d, sh, np.full(sh, 254, np.uint8).tobytes() if k.endswith("scale") else r)
         for k, d, sh, r in ts[:2]]
    write_dir(src2, t, {"model_type": "llama", "quantization_config": qc})
    out = src2 + "-out"
    rc, so, se = convert(src2, out)
    check(rc == 1 and not os.path.exists(out), "ct mxfp4 overflow refused: exit %d %s" % (rc, se))
    # a global scale (not part of the format; the tensors then read as NVFP4 with U8 block
    # scales, incomplete) is refused
    src3 = os.path.join(tmp, "mx-ct-global")
    write_dir(src3, ts[:2] + [(ts[0][0].replace("weight_packed", "weight_global_scale"), "F32",
                               (1,), R.f32b([1.0]))],
              {"model_type": "llama", "quantization_config": qc})
    rc, so, se = convert(src3, src3 + "-out")
    check(rc == 1 and "up_proj" in se and not os.path.exists(src3 + "-out"),
          "ct mxfp4 with a global scale refused: exit %d %s" % (rc, se))


# ---- compressed-tensors pack-quantized ----------------------------------------------------------

def pack_rows(u, b):
    """unsigned fields [rows, n] -> I32 words [rows, ceil(n*b/32)], element j at bits
    [j*b, j*b+b) of the row's little-endian word stream (shared/quant.md 3.4)."""
    rows, n = u.shape
    nw = (n * b + 31) // 32
    out = np.zeros((rows, nw), np.uint64)
    for j in range(n):
        bit = j * b
        out[:, bit // 32] |= u[:, j].astype(np.uint64) << np.uint64(bit % 32)
    return (out & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)


def ct_pack_case(rng, o, n, b, group, asym=False, gidx=False, E=None):
    lead = (E,) if E else ()
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    q = rng.integers(lo, hi + 1, lead + (o, n))
    q.reshape(-1)[:2] = [lo, hi]  # both ends of the range
    G = 1 if group is None else (n + group - 1) // group
    sc = (rng.random(lead + (o, G)) * 0.02 + 1e-4).astype(np.float32)
    sc.reshape(-1)[0] = 0.0
    sc.reshape(-1)[1] = np.float32(1e-38)  # a subnormal BF16 scale
    sraw = R.bf16b(sc)
    sdec = R.decode_scale("BF16", sraw).reshape(lead + (o, G))
    z = rng.integers(lo, hi + 1, lead + (o, G)) if asym else np.zeros(lead + (o, G), int)
    if gidx:
        g = (np.arange(n) // group)[rng.permutation(n)].astype(np.int32)  # act-order map
    else:
        g = np.minimum(np.arange(n) // (group or n), G - 1)
    x = (q - z[..., g]).astype(np.float32)
    y = mul(x, sdec[..., g])
    off = 1 << (b - 1)
    mats = [q] if not E else list(q)
    packed = np.stack([pack_rows((m + off).astype(np.uint64), b) for m in mats])
    packed = packed[0] if not E else packed
    t = {"weight_packed": ("I32", packed.shape, packed.tobytes()),
         "weight_scale": ("BF16", lead + (o, G), sraw),
         "weight_shape": ("I64", (len(lead) + 2,), np.array(lead + (o, n), np.int64).tobytes())}
    if asym:
        zm = [z] if not E else list(z)
        zp = np.stack([pack_rows((m + off).astype(np.uint64).T, b).T for m in zm])
        zp = zp[0] if not E else zp
        t["weight_zero_point"] = ("I32", zp.shape, np.ascontiguousarray(zp).tobytes())
    if gidx:
        t["weight_g_idx"] = ("I32", (n,), g.tobytes())
    return t, y


def ct_pack_dir(root, rng, b, group, cases, symmetric=True, actorder=None):
    ts, want = [], {}
    for name, (t, y) in cases.items():
        for k, (dt, shape, raw) in t.items():
            ts.append((name + "." + k, dt, shape, raw))
        want[name + ".weight"] = (y.shape, y)
    raw = R.bf16b(rng.standard_normal((8, 16)).astype(np.float32))
    ts.append(("lm_head.weight", "BF16", (8, 16), raw))
    want["lm_head.weight"] = plain(raw, (8, 16))
    w = {"num_bits": b, "type": "int", "symmetric": symmetric,
         "strategy": "group" if group else "channel", "group_size": group, "actorder": actorder}
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized",
          "quantization_status": "compressed", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": w}}}
    write_dir(root, ts, {"model_type": "llama", "torch_dtype": "bfloat16",
                         "quantization_config": qc})
    return want


def test_ct_pack(tmp, rng):
    runs = [
        # int4, group 32 with a ragged last group, asymmetric (zero points packed on dim 0)
        ("w4a16-asym", 4, 32, False, None, {
            "model.layers.0.mlp.down_proj": ct_pack_case(rng, 19, 100, 4, 32, asym=True),
            "model.layers.0.mlp.up_proj": ct_pack_case(rng, 8, 64, 4, 32, asym=True)}),
        # int4 symmetric with act-order g_idx
        ("w4a16-gidx", 4, 16, True, "group", {
            "model.layers.0.self_attn.q_proj": ct_pack_case(rng, 12, 64, 4, 16, gidx=True)}),
        # int8 weight-only: packed 4 per int32, per channel, odd width
        ("w8a16", 8, None, True, None, {
            "model.layers.0.self_attn.o_proj": ct_pack_case(rng, 9, 37, 8, None)}),
        # int2 per channel; MoE experts stacked [E, out, in] with packed zero points
        ("w2", 2, None, True, None, {
            "model.layers.0.mlp.gate_proj": ct_pack_case(rng, 5, 70, 2, None)}),
        ("w4-moe", 4, 32, False, None, {
            "model.layers.0.mlp.experts.gate_up_proj": ct_pack_case(rng, 10, 64, 4, 32,
                                                                    asym=True, E=3)}),
    ]
    for label, b, group, sym, actorder, cases in runs:
        src = os.path.join(tmp, "pack-" + label)
        want = ct_pack_dir(src, rng, b, group, cases, sym, actorder)
        out = src + "-bf16"
        rc, so, se = convert(src, out, "bf16", "--verify")
        check(rc == 0, "ct pack %s: exit %d %s" % (label, rc, se))
        if rc == 0:
            check_out("ct pack " + label, src, out, want)
    # 3-bit: refused, naming it
    src = os.path.join(tmp, "pack-w3")
    ct_pack_dir(src, rng, 3, None, {"l.q_proj": ct_pack_case(rng, 4, 32, 3, None)})
    out = src + "-out"
    rc, so, se = convert(src, out)
    check(rc == 1 and "3-bit" in se and not os.path.exists(out),
          "ct pack 3-bit refused: exit %d %s" % (rc, se))


def main():
    rng = np.random.default_rng(41)
    tmp = tempfile.mkdtemp(prefix="dtaudit-dequant-fp4.")
    try:
        test_mxfp4(tmp, rng)
        test_nvfp4(tmp, rng)
        test_nvfp4_stacks(tmp, rng)
        test_ct_mxfp4(tmp, rng)
        test_ct_pack(tmp, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (R.PASSES[0], len(R.FAILS)))
    sys.exit(1 if R.FAILS else 0)


if __name__ == "__main__":
    main()
