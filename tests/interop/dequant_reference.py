"""convert --dequantize against an independent reference written from shared/quant.md
(sections 1.2-1.4, 2.4-2.6, 4, 15): float8 codes decoded here from their bit layout,
scales decoded by numpy, the product taken in numpy float32, and the rounding to BF16/F16
done by torch's own Tensor.to() (torch 1.13 has no float8 dtypes, so nothing here asks
torch to decode a code). Fixtures are generated at test time: ragged 128x128 blocks, F32 /
BF16 / F16 / E8M0 block scales, a scale in another shard than its codes, zero and
subnormal scales, every float8 code (NaN included), per-tensor (AutoFP8) and per-row
(FBGEMM) scales, and refusals (GPTQ, a bare F8 weight, overflow).

Usage: dequant_reference.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch)."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except Exception as e:  # pragma: no cover
    print("skip: numpy/torch not available: %s" % e)
    sys.exit(77)

DTAUDIT = sys.argv[1]
FAILS = []
PASSES = [0]


def check(cond, what):
    if cond:
        PASSES[0] += 1
    else:
        FAILS.append(what)
        print("FAIL: " + what)


# ---- safetensors by hand (numpy has no bf16 / f8 dtypes) ------------------------------------

ESZ = {"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U8": 1, "I8": 1, "BF16": 2, "F16": 2,
       "F32": 4, "I32": 4, "I64": 8}


def write_st(path, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    hdr, off, blobs = {}, 0, []
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        n = int(np.prod(shape)) if shape else 1
        assert len(raw) == n * ESZ[dt], (name, len(raw), n)
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__", None)
    out = {}
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        out[k] = (v["dtype"], tuple(v["shape"]), data[8 + n + a:8 + n + b])
    return out, meta


# ---- the reference ------------------------------------------------------------------------

def e4m3_table():
    t = np.zeros(256, np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = m * 2.0 ** -9
        else:
            v = (8 + m) * 2.0 ** (e - 10)
        t[c] = -v if s else v
    return t.astype(np.float32)  # every value is exact in f32


def e5m2_table():
    return (np.arange(256, dtype=np.uint16) << 8).view(np.float16).astype(np.float32)


CODE_TABLE = {"F8_E4M3": e4m3_table(), "F8_E5M2": e5m2_table(),
              "I8": np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float32)}


def decode_scale(dt, raw):
    if dt == "F32":
        return np.frombuffer(raw, np.float32).copy()
    if dt == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dt == "F16":
        return np.frombuffer(raw, np.float16).astype(np.float32)
    if dt in ("U8", "F8_E8M0"):
        u = np.frombuffer(raw, np.uint8).astype(np.float64)
        v = np.exp2(u - 127.0)
        if dt == "F8_E8M0":
            v[u == 255] = np.nan
        return v.astype(np.float32)
    raise ValueError(dt)


def to_target(p32, target):
    """f32 values -> target bytes, rounded by torch (round to nearest even)."""
    t = torch.from_numpy(p32.copy())
    if target == "F32":
        return p32.astype(np.float32).tobytes()
    dt = torch.bfloat16 if target == "BF16" else torch.float16
    return t.to(dt).view(torch.int16).numpy().tobytes()


def dequant(codes_raw, code_dt, shape, scale_raw, scale_dt, scale_shape, block):
    """block: (bm, bn) or None for a per-tensor / per-row scale broadcast."""
    x = CODE_TABLE[code_dt][np.frombuffer(codes_raw, np.uint8)].reshape(shape)
    s = decode_scale(scale_dt, scale_raw).reshape(scale_shape if scale_shape else ())
    if block is not None:
        bm, bn = block
        rows, cols = shape[-2], shape[-1]
        s = np.repeat(np.repeat(s, bm, axis=-2), bn, axis=-1)[..., :rows, :cols]
    with np.errstate(all="ignore"):
        return (x * s).astype(np.float32)  # one f32 multiply, numpy rounds it RNE


def rnd(rng, n):
    return rng.integers(0, 256, n, dtype=np.uint8)


def every_code(rng, n):
    c = rnd(rng, n)
    c[:256] = np.arange(256, dtype=np.uint8)
    return c


def f32b(a):
    return np.asarray(a, np.float32).tobytes()


def bf16b(a):
    return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).view(
        torch.int16).numpy().tobytes()


def f16b(a):
    return np.asarray(a, np.float16).tobytes()


def run(*args):
    p = subprocess.run([DTAUDIT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def same_values(got, want, dt):
    """Bytes equal, any NaN matching any NaN."""
    if got == want:
        return True
    if dt == "F32":
        a, b = np.frombuffer(got, np.float32), np.frombuffer(want, np.float32)
        return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) |
                                                  (np.isnan(a) & np.isnan(b))))
    a, b = np.frombuffer(got, np.uint16), np.frombuffer(want, np.uint16)
    if a.shape != b.shape:
        return False
    if dt == "BF16":
        na, nb = (a & 0x7FFF) > 0x7F80, (b & 0x7FFF) > 0x7F80
    else:
        na, nb = (a & 0x7FFF) > 0x7C00, (b & 0x7FFF) > 0x7C00
    return bool(np.all((a == b) | (na & nb)))


# ---- fixtures -------------------------------------------------------------------------------

def block_fp8_dir(root, rng):
    """DeepSeek-V3-shaped layout, two shards, ragged blocks, three scale dtypes."""
    os.makedirs(root)
    P = "model.layers.0."
    ref = {}  # name -> (kind, args)
    # kv_a_proj_with_mqa: ragged [300, 260] / [3, 3] F32, every code, zero + subnormal scales
    c1 = every_code(rng, 300 * 260)
    s1 = (rng.random(9) * 2.0 ** -6).astype(np.float32)
    s1[0] = 0.0
    s1[1] = np.float32(1e-40)  # f32 subnormal
    s1[2] = np.float32(2.0 ** -126)
    s1[3] = np.float32(3.0e30)  # 448 * 3e30 fits BF16/F32 (not F16: overflow test)
    # down_proj: [129, 513] / [2, 5] BF16 scales
    c2 = rnd(rng, 129 * 513)
    s2 = bf16b(rng.random(10).astype(np.float32) * 0.01 + 1e-4)
    # up_proj: [128, 128] / [1, 1] F16 scale
    c3 = rnd(rng, 128 * 128)
    s3 = f16b([0.00123])
    # gate_proj: [200, 64] / [2, 1] F32, its scale in the other shard
    c4 = rnd(rng, 200 * 64)
    s4 = f32b([0.5, 2.0 ** -20])
    # o_proj: [130, 140] / [2, 2] E8M0 exponent bytes (U8, DeepSeek-V3.1 ue8m0)
    c5 = rnd(rng, 130 * 140)
    s5 = bytes([0, 120, 127, 130])
    emb = bf16b(rng.standard_normal((64, 32)).astype(np.float32))
    norm = f32b(rng.standard_normal(32).astype(np.float32))
    bias = f32b(rng.standard_normal(8).astype(np.float32))
    shard1 = [
        (P + "self_attn.kv_a_proj_with_mqa.weight", "F8_E4M3", (300, 260), c1.tobytes()),
        (P + "self_attn.kv_a_proj_with_mqa.weight_scale_inv", "F32", (3, 3), f32b(s1)),
        (P + "mlp.gate_proj.weight_scale_inv", "F32", (2, 1), s4),
        ("model.embed_tokens.weight", "BF16", (64, 32), emb),
        ("model.norm.weight", "F32", (32,), norm),
    ]
    shard2 = [
        (P + "mlp.down_proj.weight", "F8_E4M3", (129, 513), c2.tobytes()),
        (P + "mlp.down_proj.weight_scale_inv", "BF16", (2, 5), s2),
        (P + "mlp.up_proj.weight", "F8_E4M3", (128, 128), c3.tobytes()),
        (P + "mlp.up_proj.weight_scale_inv", "F16", (1, 1), s3),
        (P + "mlp.gate_proj.weight", "F8_E4M3", (200, 64), c4.tobytes()),
        (P + "self_attn.o_proj.weight", "F8_E4M3", (130, 140), c5.tobytes()),
        (P + "self_attn.o_proj.weight_scale_inv", "U8", (2, 2), s5),
        (P + "mlp.gate.e_score_correction_bias", "F32", (8,), bias),
    ]
    names = {"model-00001-of-00002.safetensors": shard1,
             "model-00002-of-00002.safetensors": shard2}
    wm = {}
    for fn, ts in names.items():
        write_st(os.path.join(root, fn), ts, {"format": "pt"})
        for t in ts:
            wm[t[0]] = fn
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, f)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                   "torch_dtype": "bfloat16",
                   "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                           "quant_method": "fp8",
                                           "weight_block_size": [128, 128]}}, f)
    with open(os.path.join(root, "generation_config.json"), "w") as f:
        json.dump({"do_sample": True}, f)
    allt = {t[0]: t for t in shard1 + shard2}
    for base, blk in (("self_attn.kv_a_proj_with_mqa", True), ("mlp.down_proj", True),
                      ("mlp.up_proj", True), ("mlp.gate_proj", True), ("self_attn.o_proj", True)):
        w = allt[P + base + ".weight"]
        s = allt[P + base + ".weight_scale_inv"]
        ref[w[0]] = ("dq", w[1], w[2], w[3], s[1], s[2], s[3], (128, 128))
    for t in shard1 + shard2:
        if t[0] not in ref and not t[0].endswith("_scale_inv"):
            ref[t[0]] = ("cast", t[1], t[2], t[3])
    return ref


def per_tensor_dir(root, rng, method):
    """AutoFP8 (per-tensor F32 [] scale + input_scale) or FBGEMM (per-row [out, 1])."""
    os.makedirs(root)
    ref, ts = {}, []
    for i, (o, n) in enumerate(((70, 33), (16, 33), (1, 7))):
        name = "model.layers.%d.self_attn.q_proj" % i
        c = every_code(rng, o * n) if o * n >= 256 else rnd(rng, o * n)
        c[c == 0x7F] = 0x7E  # no NaN codes here
        c[c == 0xFF] = 0xFE
        if method == "fp8":
            sc = (rng.random(1) * 0.01).astype(np.float32)
            sshape = ()
        else:
            sc = (rng.random(o) * 0.01).astype(np.float32)
            sc[0] = 0.0
            sshape = (o, 1)
        ts.append((name + ".weight", "F8_E4M3", (o, n), c.tobytes()))
        ts.append((name + ".weight_scale", "F32", sshape, f32b(sc)))
        if method == "fp8":
            ts.append((name + ".input_scale", "F32", (), f32b([0.25])))
        ref[name + ".weight"] = ("dq", "F8_E4M3", (o, n), c.tobytes(), "F32", sshape, f32b(sc),
                                 None)
    lm = bf16b(rng.standard_normal((8, 4)).astype(np.float32))
    ts.append(("lm_head.weight", "BF16", (8, 4), lm))
    ref["lm_head.weight"] = ("cast", "BF16", (8, 4), lm)
    write_st(os.path.join(root, "model.safetensors"), ts, {"format": "pt", "note": "kept"})
    qc = ({"quant_method": "fp8", "activation_scheme": "static"} if method == "fp8" else
          {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0})
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": qc},
                  f)
    return ref


def ct_dir(root, rng, strategy):
    """compressed-tensors float-quantized (FP8) with BF16 scales per channel, per group
    (ragged) or per 128x128 block (ragged), and int-quantized int8 per channel."""
    os.makedirs(root)
    o, n = 200, 300
    w = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": strategy}
    fmt = "float-quantized"
    code_dt = "F8_E4M3"
    if strategy == "channel":
        sshape, block = (o, 1), None
    elif strategy == "group":
        w["group_size"] = 32
        sshape, block = (o, (n + 31) // 32), (1, 32)
    elif strategy == "block":
        w["block_structure"] = [128, 128]
        sshape, block = ((o + 127) // 128, (n + 127) // 128), (128, 128)
    else:  # int8 per channel
        w.update(type="int", strategy="channel")
        fmt = "int-quantized"
        code_dt = "I8"
        sshape, block = (o, 1), None
    c = every_code(rng, o * n)
    if code_dt == "F8_E4M3":
        c[c == 0x7F] = 0x7E
        c[c == 0xFF] = 0xFE
    sc = bf16b((rng.random(int(np.prod(sshape))) * 0.01 + 1e-5).astype(np.float32))
    name = "model.layers.0.mlp.down_proj"
    lm = bf16b(rng.standard_normal((8, 4)).astype(np.float32))
    ts = [(name + ".weight", code_dt, (o, n), c.tobytes()),
          (name + ".weight_scale", "BF16", sshape, sc),
          ("lm_head.weight", "BF16", (8, 4), lm)]
    write_st(os.path.join(root, "model.safetensors"), ts, {"format": "pt"})
    qc = {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": w,
                                        "input_activations": {"num_bits": 8, "type": w["type"],
                                                              "dynamic": True,
                                                              "strategy": "token"}}},
          "ignore": ["lm_head"]}
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": qc},
                  f)
    return {name + ".weight": ("dq", code_dt, (o, n), c.tobytes(), "BF16", sshape, sc, block),
            "lm_head.weight": ("cast", "BF16", (8, 4), lm)}


def expected(ref, target):
    out = {}
    for name, r in ref.items():
        if r[0] == "dq":
            _, cdt, shape, craw, sdt, sshape, sraw, block = r
            out[name] = (target, shape, to_target(dequant(craw, cdt, shape, sraw, sdt, sshape,
                                                          block).reshape(-1), target))
        else:
            _, dt, shape, raw = r
            if dt == "F32":
                v = np.frombuffer(raw, np.float32)
            elif dt == "BF16":
                v = decode_scale("BF16", raw)
            out[name] = (target, shape, to_target(v.astype(np.float32), target))
    return out


def load_dir(d):
    got, metas = {}, {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            ts, meta = read_st(os.path.join(d, fn))
            for k, v in ts.items():
                got[k] = v + (fn,)
            metas[fn] = meta
    return got, metas


def check_output(label, src, out, ref, target, sharded):
    want = expected(ref, target)
    got, metas = load_dir(out)
    check(sorted(got) == sorted(want),
          "%s: tensors %s, want %s" % (label, sorted(set(got) ^ set(want)), ""))
    for name, (dt, shape, raw) in want.items():
        if name not in got:
            continue
        gdt, gshape, graw, _ = got[name]
        check(gdt == dt and gshape == shape, "%s: %s is %s %s, want %s %s" %
              (label, name, gdt, gshape, dt, shape))
        ok = same_values(graw, raw, dt)
        if not ok and len(graw) == len(raw):
            es = 4 if dt == "F32" else 2
            bad = next(i for i in range(0, len(raw), es) if graw[i:i + es] != raw[i:i + es])
            print("  first difference in %s at element %d: got %s want %s" %
                  (name, bad // es, graw[bad:bad + es].hex(), raw[bad:bad + es].hex()))
        check(ok, "%s: %s values differ from the reference" % (label, name))
    for fn, meta in metas.items():
        check(meta is not None and meta.get("format") == "pt",
              "%s: %s lost __metadata__ (%r)" % (label, fn, meta))
    cfg = json.load(open(os.path.join(out, "config.json")))
    tn = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[target]
    check("quantization_config" not in cfg and cfg.get("torch_dtype") == tn,
          "%s: config.json %r" % (label, cfg))
    for side in ("hf_quant_config.json", "quantize_config.json", "quant_config.json"):
        check(not os.path.exists(os.path.join(out, side)), "%s: %s copied" % (label, side))
    if sharded:
        idx = json.load(open(os.path.join(out, "model.safetensors.index.json")))
        wm = idx["weight_map"]
        check(sorted(wm) == sorted(got), "%s: index weight_map %s" %
              (label, sorted(set(wm) ^ set(got))))
        check(all(wm.get(k) == v[3] for k, v in got.items()), "%s: index shards" % label)
        total = sum(len(v[2]) for v in got.values())
        check(idx["metadata"]["total_size"] == total, "%s: total_size %s, want %d" %
              (label, idx["metadata"]["total_size"], total))
    rc, so, se = run("verify", src, out)
    check(rc == 0, "%s: verify SRC OUT exit %d: %s %s" % (label, rc, so, se))
    rc, so, se = run("audit", out)
    check(rc == 0, "%s: audit OUT exit %d: %s %s" % (label, rc, so, se))


def main():
    rng = np.random.default_rng(14)
    tmp = tempfile.mkdtemp(prefix="dtaudit-dequant.")
    try:
        # 1. block FP8, sharded, BF16 and F32 targets (with --verify)
        src = os.path.join(tmp, "ds")
        ref = block_fp8_dir(src, rng)
        for target, extra in (("bf16", []), ("f32", ["--verify"])):
            out = os.path.join(tmp, "ds-" + target)
            rc, so, se = run("convert", "--to", target, "--dequantize", *extra, src, "-o", out)
            check(rc == 0, "block fp8 -> %s: exit %d: %s" % (target, rc, se.strip()))
            if rc == 0:
                check_output("block fp8 -> " + target, src, out, ref, target.upper(), True)
                check(os.path.exists(os.path.join(out, "generation_config.json")),
                      "generation_config.json not copied")
        # a corrupted output fails verify
        out = os.path.join(tmp, "ds-bf16")
        fn = os.path.join(out, "model-00001-of-00002.safetensors")
        with open(fn, "r+b") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            a = hdr["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"]["data_offsets"][0]
            f.seek(8 + n + a + 2000)
            b = f.read(1)
            f.seek(8 + n + a + 2000)
            f.write(bytes([b[0] ^ 1]))
        rc, so, se = run("verify", src, out)
        check(rc == 1 and "kv_a_proj_with_mqa" in so, "verify of a corrupted output: exit %d %s"
              % (rc, so))

        # 2. F16 target: 448 * 3e30 overflows: refused, nothing written; saturate converts
        out = os.path.join(tmp, "ds-f16")
        rc, so, se = run("convert", "--to", "f16", "--dequantize", src, "-o", out)
        check(rc == 1 and not os.path.exists(out), "f16 overflow: exit %d, exists %s" %
              (rc, os.path.exists(out)))
        rc, so, se = run("convert", "--to", "f16", "--dequantize", "--on-overflow", "saturate",
                         src, "-o", out)
        check(rc == 0, "f16 saturate: exit %d %s" % (rc, se))
        if rc == 0:
            got, _ = load_dir(out)
            name = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"
            r = ref[name]
            p = dequant(r[3], r[1], r[2], r[6], r[4], r[5], r[7]).reshape(-1)
            w = np.frombuffer(to_target(p, "F16"), np.uint16).copy()
            fin = np.isfinite(p)
            w[fin & (w & 0x7FFF == 0x7C00)] = (w[fin & (w & 0x7FFF == 0x7C00)] & 0x8000) | 0x7BFF
            check(same_values(got[name][2], w.tobytes(), "F16"), "f16 saturate values")
            rc, so, se = run("verify", "--on-overflow", "saturate", src, out)
            check(rc == 0, "verify f16 saturate: exit %d %s" % (rc, so))

        # 3. per-tensor (AutoFP8) and per-row (FBGEMM), directory and single file
        for method in ("fp8", "fbgemm_fp8"):
            src = os.path.join(tmp, method)
            ref = per_tensor_dir(src, rng, method)
            out = os.path.join(tmp, method + "-out")
            rc, so, se = run("convert", "--to", "bf16", "--dequantize", "--verify", src, "-o", out)
            check(rc == 0, "%s: exit %d %s" % (method, rc, se))
            if rc == 0:
                check_output(method, src, out, ref, "BF16", False)
            fout = os.path.join(tmp, method + ".safetensors")
            rc, so, se = run("convert", "--to", "f32", "--dequantize",
                             os.path.join(src, "model.safetensors"), "-o", fout)
            check(rc == 0, "%s single file: exit %d %s" % (method, rc, se))
            if rc == 0:
                got, meta = read_st(fout)
                want = expected(ref, "F32")
                check(sorted(got) == sorted(want), "%s single file: names" % method)
                check(all(same_values(got[k][2], want[k][2], "F32") for k in want if k in got),
                      "%s single file: values" % method)
                check(meta == {"format": "pt", "note": "kept"}, "%s: metadata %r" % (method, meta))

        # 4. compressed-tensors: FP8 per channel, group, block; int8 per channel
        for strategy in ("channel", "group", "block", "int8"):
            src = os.path.join(tmp, "ct-" + strategy)
            ref = ct_dir(src, rng, strategy)
            out = os.path.join(tmp, "ct-%s-out" % strategy)
            rc, so, se = run("convert", "--to", "bf16", "--dequantize", "--verify", src, "-o", out)
            check(rc == 0, "ct %s: exit %d %s" % (strategy, rc, se))
            if rc == 0:
                check_output("ct " + strategy, src, out, ref, "BF16", False)

        # 5. usage: plain convert of a quantized input points at --dequantize; the flag
        # needs a concrete target and excludes --keep-quantized (exit 2, nothing written)
        src = os.path.join(tmp, "ds")
        out = os.path.join(tmp, "usage-out")
        rc, so, se = run("convert", "--to", "bf16", src, "-o", out)
        check(rc == 1 and "--dequantize" in se and not os.path.exists(out),
              "quantized input without --dequantize: exit %d %s" % (rc, se))
        for extra in (["--to", "auto"], ["--to", "bf16", "--keep-quantized"]):
            rc, so, se = run("convert", "--dequantize", *extra, src, "-o", out)
            check(rc == 2 and not os.path.exists(out), "--dequantize %s: exit %d %s" %
                  (" ".join(extra), rc, se))

        # 6. refusals: exit 1, the scheme named, nothing written
        g = os.path.join(tmp, "gptq")
        os.makedirs(g)
        write_st(os.path.join(g, "model.safetensors"), [
            ("l.qweight", "I32", (4, 8), bytes(128)), ("l.qzeros", "I32", (1, 1), bytes(4)),
            ("l.scales", "F16", (1, 8), bytes(16)), ("l.g_idx", "I32", (32,), bytes(128))])
        with open(os.path.join(g, "config.json"), "w") as f:
            json.dump({"quantization_config": {"quant_method": "gptq", "bits": 4,
                                               "group_size": 32,
                                               "checkpoint_format": "marlin"}}, f)
        out = os.path.join(tmp, "gptq-out")
        rc, so, se = run("convert", "--to", "bf16", "--dequantize", g, "-o", out)
        check(rc == 1 and "gptq" in se and "marlin" in se and not os.path.exists(out),
              "gptq refused: exit %d %s" % (rc, se))
        b = os.path.join(tmp, "bare")
        os.makedirs(b)
        write_st(os.path.join(b, "model.safetensors"), [
            ("a.weight", "F8_E4M3", (4, 4), bytes(16)), ("a.weight_scale_inv", "F32", (1, 1),
                                                          f32b([1.0])),
            ("b.weight", "F8_E4M3", (4, 4), bytes(16))])
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump({"quantization_config": {"quant_method": "fp8",
                                               "weight_block_size": [128, 128]}}, f)
        out = os.path.join(tmp, "bare-out")
        rc, so, se = run("convert", "--to", "bf16", "--dequantize", b, "-o", out)
        check(rc == 1 and "b.weight" in se and not os.path.exists(out),
              "bare F8 refused: exit %d %s" % (rc, se))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (PASSES[0], len(FAILS)))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
