"""convert --dequantize of the integer / lookup-table schemes against an independent numpy
reference written from shared/quant.md: bitsandbytes 4-bit NF4 / FP4 with and without
double quantization (5.1) and LLM.int8 (5.2). The reference decodes the packing here
(high nibble first, blocks over the flattened tensor), takes every product in numpy
float32 (one rounding per step, in the brief's order) and rounds to BF16/F16 with torch's
Tensor.to(). Fixtures are generated at test time and small: odd element counts (a padding
nibble), blocks crossing rows, zero absmax, FP4 code 8, a non-uint8 quant_storage, the
double-quantization offset, refusals (a foreign quant_map, a tiled int8 layout).

Usage: dequant_int_reference.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch)."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dequant_reference as R  # noqa: E402  (exits 77 without numpy/torch)

np, torch = R.np, R.torch
check, run, write_st, read_st, same_values = R.check, R.run, R.write_st, R.read_st, R.same_values

# ---- bitsandbytes tables (brief 1.2), as f32 bit patterns ------------------------------------
NF4 = np.array([0xBF800000, 0xBF3239B1, 0xBF066B30, 0xBECA32A0, 0xBE91A24D, 0xBE3D353F,
                0xBDBA7871, 0x00000000, 0x3DA2FAFF, 0x3E24CAE3, 0x3E7C04DD, 0x3EAD033A,
                0x3EE1A4B8, 0x3F1007AB, 0x3F3913B3, 0x3F800000], np.uint32).view(np.float32)
# FP4: raw [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12, codes 8..15 the negatives, code 8 = +0
_fp4 = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3], np.float64) / 12).astype(np.float32)
FP4 = np.concatenate([_fp4, -_fp4])
FP4[8] = 0.0
TORCH_DT = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def f32(a):
    return np.asarray(a, np.float32)


def to_dtype_bytes(v32, name):
    """f32 values -> bytes of torch dtype `name` (RNE)."""
    if name == "float32":
        return f32(v32).tobytes()
    return torch.from_numpy(f32(v32).copy()).to(TORCH_DT[name]).view(torch.int16).numpy().tobytes()


def from_dtype_bytes(raw, name):
    if name == "float32":
        return np.frombuffer(raw, np.float32).copy()
    t = torch.from_numpy(np.frombuffer(raw, np.int16).copy()).view(TORCH_DT[name])
    return t.float().numpy()


def target_bytes(v32, target):
    return to_dtype_bytes(v32, {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[target])


def dynamic_map(rng):
    """A signed 256-entry nested map (the file's map is what counts; not bnb's exact one)."""
    m = np.sort(rng.uniform(-1, 1, 256)).astype(np.float32)
    m[0], m[128], m[255] = -1.0, 0.0, 1.0
    return np.sort(m)


def bnb4_param(rng, prefix, shape, qtype, blocksize, dtype, nested, storage="U8"):
    """Quantizes a random tensor; returns (tensors, reference f32 values before the dtype
    rounding, dtype name)."""
    n = int(np.prod(shape))
    lut = NF4 if qtype == "nf4" else FP4
    w = rng.standard_normal(n).astype(np.float32)
    nb = -(-n // blocksize)
    absmax = np.zeros(nb, np.float32)
    codes = np.zeros(n, np.uint8)
    for b in range(nb):
        blk = w[b * blocksize:(b + 1) * blocksize]
        a = np.float32(np.abs(blk).max())
        if b == 1:
            a = np.float32(0.0)  # a zero absmax block
        absmax[b] = a
        x = blk / a if a else np.zeros_like(blk)
        codes[b * blocksize:b * blocksize + len(blk)] = np.abs(x[:, None] - lut[None, :]).argmin(1)
    if qtype == "fp4":
        codes[:16] = np.arange(16)  # every code, 8 (+0) included
    else:
        codes[:16] = np.arange(16)
    packed = np.zeros(-(-n // 2), np.uint8)
    packed |= (codes[0::2] << 4).astype(np.uint8)
    packed[:n // 2] |= codes[1::2]
    ts = []
    st = {"quant_type": qtype, "blocksize": blocksize, "dtype": dtype, "shape": list(shape)}
    if nested:
        offset = np.float32(absmax.mean())
        nmap = dynamic_map(rng)
        centered = absmax - offset
        nnb = -(-nb // 256)
        nabs = np.zeros(nnb, np.float32)
        u = np.zeros(nb, np.uint8)
        for k in range(nnb):
            c = centered[k * 256:(k + 1) * 256]
            nabs[k] = np.abs(c).max()
            u[k * 256:k * 256 + len(c)] = np.abs((c / nabs[k])[:, None] - nmap[None, :]).argmin(1)
        # the reference: f32(f32(nmap[u] * nabs[b // 256]) + offset)
        am = (nmap[u] * nabs[np.arange(nb) // 256]).astype(np.float32)
        am = (am + offset).astype(np.float32)
        st.update(nested_blocksize=256, nested_dtype="float32", nested_offset=float(offset))
        ts += [(prefix + ".weight.absmax", "U8", (nb,), u.tobytes()),
               (prefix + ".weight.nested_absmax", "F32", (nnb,), nabs.tobytes()),
               (prefix + ".weight.nested_quant_map", "F32", (256,), nmap.tobytes())]
    else:
        am = absmax
        ts += [(prefix + ".weight.absmax", "F32", (nb,), absmax.tobytes())]
    raw = packed.tobytes()
    if storage == "U8":
        wt = (prefix + ".weight", "U8", (len(raw), 1), raw)
    else:  # bnb_4bit_quant_storage: the same bytes reinterpreted, trailing dim 1
        es = R.ESZ[storage]
        raw += bytes((-len(raw)) % es)
        wt = (prefix + ".weight", storage, (len(raw) // es, 1), raw)
    blob = json.dumps(st).encode()
    ts = [wt] + ts + [
        (prefix + ".weight.quant_map", "F32", (16,), lut.tobytes()),
        (prefix + ".weight.quant_state.bitsandbytes__" + qtype, "U8", (len(blob),), blob)]
    vals = (lut[codes] * am[np.arange(n) // blocksize]).astype(np.float32)
    return ts, vals, dtype, raw != packed.tobytes()


def bnb4_dir(root, rng):
    os.makedirs(root)
    ts, ref = [], {}
    cases = [  # prefix, shape, qtype, blocksize, dtype, nested, storage
        ("model.layers.0.self_attn.q_proj", (48, 40), "nf4", 64, "bfloat16", True, "U8"),
        ("model.layers.0.self_attn.k_proj", (7, 37), "nf4", 64, "bfloat16", False, "U8"),
        ("model.layers.0.mlp.up_proj", (33, 31), "fp4", 128, "float16", True, "U8"),
        ("model.layers.0.mlp.down_proj", (20, 300), "fp4", 32, "float32", False, "U8"),
        ("model.layers.0.mlp.gate_proj", (64, 130), "nf4", 64, "bfloat16", True, "BF16"),
        ("model.layers.1.mlp.gate_proj", (5, 11), "nf4", 64, "float16", False, "F32"),
        ("model.layers.1.mlp.up_proj", (300, 260), "nf4", 64, "float32", True, "U8"),
    ]
    for prefix, shape, qt, bs, dt, nested, storage in cases:
        t, vals, dt, _ = bnb4_param(rng, prefix, shape, qt, bs, dt, nested, storage)
        ts += t
        ref[prefix + ".weight"] = ("bnb4", shape, vals, dt)
    lm = R.bf16b(rng.standard_normal((8, 4)).astype(np.float32))
    ts.append(("lm_head.weight", "BF16", (8, 4), lm))
    ref["lm_head.weight"] = ("plain", (8, 4), R.decode_scale("BF16", lm))
    write_st(os.path.join(root, "model.safetensors"), ts, {"format": "pt"})
    qc = {"_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "bfloat16",
          "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
          "bnb_4bit_use_double_quant": True, "llm_int8_skip_modules": None,
          "load_in_4bit": True, "load_in_8bit": False, "quant_method": "bitsandbytes"}
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": qc}, f)
    return ref


def bnb8_dir(root, rng):
    os.makedirs(root)
    ts, ref = [], {}
    for i, (o, n) in enumerate(((40, 33), (3, 1), (17, 64))):
        prefix = "model.layers.%d.mlp.down_proj" % i
        q = rng.integers(-127, 128, (o, n)).astype(np.int8)
        q.reshape(-1)[:3] = [-128, 0, 127]
        scb = (rng.random(o) * 4).astype(np.float32)
        scb[0] = 0.0 if o > 1 else scb[0]
        if o > 2:
            scb[2] = np.float32(3.0e38)  # * 127 overflows f32: counted as overflow
            q[2, :] = np.where(q[2, :] == 0, 1, q[2, :])
            scb[2] = np.float32(1e-30) if i else scb[2]
        ts += [(prefix + ".weight", "I8", (o, n), q.tobytes()),
               (prefix + ".SCB", "F32", (o,), scb.tobytes()),
               (prefix + ".weight_format", "U8", (), bytes([0]))]
        with np.errstate(all="ignore"):
            p = (q.astype(np.float32) * scb[:, None]).astype(np.float32)
            v = (p * np.float32(1.0 / 127.0)).astype(np.float32)
        ref[prefix + ".weight"] = ("bnb8", (o, n), v.reshape(-1), None)
    write_st(os.path.join(root, "model.safetensors"), ts, {"format": "pt"})
    qc = {"_load_in_4bit": False, "_load_in_8bit": True, "llm_int8_threshold": 6.0,
          "load_in_4bit": False, "load_in_8bit": True, "quant_method": "bitsandbytes"}
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "float16", "quantization_config": qc}, f)
    return ref


# ---- GPTQ / AWQ (brief 6, 7) -------------------------------------------------------------------

def pack_stream(vals, b):
    """vals [K, N] (ints < 2^b) -> int32 words [K*b/32, N]: value k of a column at bits
    [b*k, b*k + b) of the column's LSB-first stream (brief 6.2 for 2/4/8 bits: pf = 32/b
    values per word, the k-th at shift b*(k mod pf))."""
    K, N = vals.shape
    pf = 32 // b
    assert K % pf == 0
    out = np.zeros((K // pf, N), np.uint64)
    for k in range(K):
        out[k // pf] |= vals[k].astype(np.uint64) << np.uint64(b * (k % pf))
    return (out & 0xFFFFFFFF).astype(np.uint32)


def pack3(vals):
    """AutoGPTQ's 3-bit packing as the brief spells it: 3 words per 32 values (word0: 0-9
    at 0,3,..,27 and value 10's low 2 bits at 30-31; word1: value 10's bit 2 at 0, 11-20 at
    1,4,..,28, value 21's bit 0 at 31; word2: value 21's bits 1-2 at 0-1, 22-31 at 2,..,29)."""
    K, N = vals.shape
    assert K % 32 == 0
    v = vals.astype(np.uint64)
    out = np.zeros((K // 32 * 3, N), np.uint64)
    for blk in range(K // 32):
        i, r = blk * 32, blk * 3
        for j in range(10):
            out[r] |= v[i + j] << np.uint64(3 * j)
        out[r] |= v[i + 10] << np.uint64(30)
        out[r + 1] |= (v[i + 10] >> np.uint64(2)) & np.uint64(1)
        for j in range(10):
            out[r + 1] |= v[i + 11 + j] << np.uint64(3 * j + 1)
        out[r + 1] |= v[i + 21] << np.uint64(31)
        out[r + 2] |= (v[i + 21] >> np.uint64(1)) & np.uint64(3)
        for j in range(10):
            out[r + 2] |= v[i + 22 + j] << np.uint64(3 * j + 2)
    return (out & 0xFFFFFFFF).astype(np.uint32)


def gptq_pack(vals, b):
    return pack3(vals) if b == 3 else pack_stream(vals, b)


def i32b(words):
    return np.ascontiguousarray(words).astype(np.uint32).tobytes()


def scale_bytes(sc, dt):
    return sc.astype(np.float16).tobytes() if dt == "F16" else R.bf16b(sc) if dt == "BF16" \
        else f32(sc).tobytes()


def gptq_param(rng, prefix, inp, out, b, gs, version, sym, act_order=False, sdt="F16",
               zero_scale=False, zeros_override=None, bias=True):
    """Returns (tensors, reference f32 values [out, in])."""
    mask = (1 << b) - 1
    G = 1 if gs <= 0 else -(-inp // gs)
    q = rng.integers(0, 1 << b, (inp, out))
    if sym:
        z = np.full((G, out), 1 << (b - 1))
    else:
        z = rng.integers(0, 1 << b, (G, out))
        z[0, :3] = [0, mask, 1 << (b - 1)]  # v1 stores z = 0 as the field 2^b - 1
    if zeros_override is not None:
        z = np.full((G, out), zeros_override)
    stored = (z - 1) & mask if version == "v1" else z
    sc = (rng.random((G, out)) * 0.02 + 1e-4).astype(np.float32)
    if zero_scale:
        sc[0, 0] = 0.0
    if sdt == "F16":
        sc = sc.astype(np.float16).astype(np.float32)
    elif sdt == "BF16":
        sc = R.decode_scale("BF16", R.bf16b(sc)).reshape(G, out)
    if gs <= 0:
        g = np.zeros(inp, np.int64)
    elif act_order:  # desc_act: groups follow a permutation of the inputs
        perm = rng.permutation(inp)
        g = np.empty(inp, np.int64)
        g[perm] = np.arange(inp) // gs
    else:
        g = np.arange(inp) // gs
    ts = [(prefix + ".qweight", "I32", (inp * b // 32, out), i32b(gptq_pack(q, b))),
          (prefix + ".qzeros", "I32", None, i32b(gptq_pack_zeros(stored, b, out))),
          (prefix + ".scales", sdt, (G, out), scale_bytes(sc, sdt)),
          (prefix + ".g_idx", "I32", (inp,), g.astype(np.int32).tobytes())]
    zw = len(ts[1][3]) // 4 // G
    ts[1] = (ts[1][0], "I32", (G, zw), ts[1][3])
    if bias:
        ts.append((prefix + ".bias", "F16", (out,), rng.standard_normal(out).astype(np.float16).tobytes()))
    # W[o][i] = (q[i][o] - z[g[i]][o]) * scales[g[i]][o], one f32 product
    x = (q - z[g, :]).astype(np.float32)
    vals = (x * sc[g, :]).astype(np.float32).T
    return ts, vals


def gptq_pack_zeros(stored, b, out):
    """zero points [G, out] packed along the output (the same streams, transposed)."""
    G = stored.shape[0]
    if b == 3:
        padded = np.zeros((G, -(-out // 32) * 32), np.int64)
        padded[:, :out] = stored
        return pack3(padded.T).T
    pf = 32 // b
    padded = np.zeros((G, -(-out // pf) * pf), np.int64)
    padded[:, :out] = stored
    return pack_stream(padded.T, b).T


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_pack(vals):
    """[K, N] 4-bit values -> [K, N/8] words: nibble slot k of word c holds column
    8c + AWQ_ORDER[k] (brief 7, from_linear)."""
    K, N = vals.shape
    out = np.zeros((K, N // 8), np.uint64)
    for c in range(N // 8):
        for k in range(8):
            out[:, c] |= vals[:, 8 * c + AWQ_ORDER[k]].astype(np.uint64) << np.uint64(4 * k)
    return out.astype(np.uint32)


def awq_param(rng, prefix, inp, out, gs):
    G = -(-inp // gs)
    q = rng.integers(0, 16, (inp, out))
    z = rng.integers(0, 16, (G, out))
    sc = (rng.random((G, out)) * 0.02 + 1e-4).astype(np.float16).astype(np.float32)
    ts = [(prefix + ".qweight", "I32", (inp, out // 8), i32b(awq_pack(q))),
          (prefix + ".qzeros", "I32", (G, out // 8), i32b(awq_pack(z))),
          (prefix + ".scales", "F16", (G, out), sc.astype(np.float16).tobytes())]
    g = np.arange(inp) // gs
    vals = ((q - z[g, :]).astype(np.float32) * sc[g, :]).astype(np.float32).T
    return ts, vals


def write_model(root, tensors, qc=None, sidecar=None, shards=1):
    os.makedirs(root)
    if shards == 1:
        write_st(os.path.join(root, "model.safetensors"), tensors, {"format": "pt"})
    else:
        wm = {}
        per = -(-len(tensors) // shards)
        for k in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            part = tensors[k * per:(k + 1) * per]
            write_st(os.path.join(root, fn), part, {"format": "pt"})
            wm.update({t[0]: fn for t in part})
        with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, f)
    cfg = {"model_type": "llama", "torch_dtype": "float16"}
    if qc is not None:
        cfg["quantization_config"] = qc
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(cfg, f)
    if sidecar:
        with open(os.path.join(root, sidecar[0]), "w") as f:
            json.dump(sidecar[1], f)


def int_ref(ts, vals_by_prefix):
    ref = {}
    for prefix, (vals, _) in vals_by_prefix.items():
        ref[prefix + ".weight"] = ("int", vals.shape, vals.reshape(-1), None)
    for name, dt, shape, raw in ts:
        if name.endswith(".bias") or name == "lm_head.weight":
            ref[name] = ("plain", tuple(shape), from_dtype_bytes(
                raw, {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}[dt]), None)
    return ref


def expected(ref, target):
    out = {}
    for name, r in ref.items():
        kind, shape, vals, mid = r[0], r[1], r[2], r[3] if len(r) > 3 else None
        if kind == "bnb4" and mid != "float32":
            vals = from_dtype_bytes(to_dtype_bytes(vals, mid), mid)  # rounded to the JSON dtype
        out[name] = (target, tuple(shape), target_bytes(vals, target))
    return out


def check_out(label, src, out, ref, target, verify=True):
    want = expected(ref, target)
    got = {}
    for fn in sorted(os.listdir(out)):
        if fn.endswith(".safetensors"):
            ts, meta = read_st(os.path.join(out, fn))
            got.update(ts)
            check(meta is not None and meta.get("format") == "pt", "%s: __metadata__ %r" %
                  (label, meta))
    check(sorted(got) == sorted(want), "%s: tensors differ: %s" %
          (label, sorted(set(got) ^ set(want))))
    for name, (dt, shape, raw) in want.items():
        if name not in got:
            continue
        gdt, gshape, graw = got[name]
        check(gdt == dt and tuple(gshape) == shape, "%s: %s is %s %s, want %s %s" %
              (label, name, gdt, gshape, dt, shape))
        ok = same_values(graw, raw, dt)
        if not ok and len(graw) == len(raw):
            es = 4 if dt == "F32" else 2
            bad = next(i for i in range(0, len(raw), es) if graw[i:i + es] != raw[i:i + es])
            print("  first difference in %s at element %d: got %s want %s" %
                  (name, bad // es, graw[bad:bad + es].hex(), raw[bad:bad + es].hex()))
        check(ok, "%s: %s values differ from the reference" % (label, name))
    cfg = json.load(open(os.path.join(out, "config.json")))
    tn = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[target]
    check("quantization_config" not in cfg and cfg.get("torch_dtype") == tn,
          "%s: config.json %r" % (label, cfg))
    for side in ("quantize_config.json", "quant_config.json", "quantization_config.json"):
        check(not os.path.exists(os.path.join(out, side)), "%s: %s copied" % (label, side))
    idx = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        check(sorted(wm) == sorted(got), "%s: index weight_map %s" %
              (label, sorted(set(wm) ^ set(got))))
    if verify:
        rc, so, se = run("verify", src, out)
        check(rc == 0, "%s: verify SRC OUT exit %d: %s %s" % (label, rc, so, se))
    rc, so, se = run("audit", out)
    check(rc == 0, "%s: audit OUT exit %d: %s %s" % (label, rc, so, se))


def convert(src, out, target, *extra):
    return run("convert", "--to", target, "--dequantize", *extra, src, "-o", out)


def refused(label, src, out, words, code=1):
    rc, so, se = convert(src, out, "bf16")
    check(rc == code and all(w in se for w in words) and not os.path.exists(out),
          "%s: exit %d, exists %s: %s" % (label, rc, os.path.exists(out), se.strip()))


def edit_st(path, fn):
    """Rewrites the single-file checkpoint at path with fn(list of tensors)."""
    ts, meta = read_st(path)
    items = [(k, v[0], v[1], v[2]) for k, v in ts.items()]
    write_st(path, fn(items), meta)


def main():
    rng = np.random.default_rng(1404)
    tmp = tempfile.mkdtemp(prefix="dtaudit-dequant-int.")
    try:
        # 1. bitsandbytes 4-bit: nf4/fp4, nested or not, odd sizes, quant_storage
        src = os.path.join(tmp, "bnb4")
        ref = bnb4_dir(src, rng)
        for target, extra in (("bf16", ["--verify"]), ("f32", []), ("f16", [])):
            out = os.path.join(tmp, "bnb4-" + target)
            rc, so, se = convert(src, out, target, *extra)
            check(rc == 0, "bnb4 -> %s: exit %d %s" % (target, rc, se.strip()))
            if rc == 0:
                check_out("bnb4 -> " + target, src, out, ref, target.upper())
        # a single file (no config.json): recognised from the quant_state key
        one = os.path.join(tmp, "bnb4-one.safetensors")
        rc, so, se = run("convert", "--to", "bf16", "--dequantize",
                         os.path.join(src, "model.safetensors"), "-o", one)
        check(rc == 0, "bnb4 single file: exit %d %s" % (rc, se.strip()))
        if rc == 0:
            got, _ = read_st(one)
            want = expected(ref, "BF16")
            check(sorted(got) == sorted(want) and
                  all(same_values(got[k][2], want[k][2], "BF16") for k in want),
                  "bnb4 single file: values")
        # refusals: a quant_map that is not bnb's table; a malformed quant_state
        bad = os.path.join(tmp, "bnb4-badmap")
        shutil.copytree(src, bad)
        edit_st(os.path.join(bad, "model.safetensors"), lambda ts: [
            (k, d, s, (np.frombuffer(r, np.float32) * 2).astype(np.float32).tobytes()
             if k.endswith("k_proj.weight.quant_map") else r) for k, d, s, r in ts])
        refused("bnb4 foreign quant_map", bad, os.path.join(tmp, "o1"),
                ["k_proj", "quant_map", "nf4"])
        bad = os.path.join(tmp, "bnb4-badstate")
        shutil.copytree(src, bad)
        blob = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16",
                           "shape": [7, 38]}).encode()
        edit_st(os.path.join(bad, "model.safetensors"), lambda ts: [
            (k, d, (len(blob),) if "k_proj.weight.quant_state" in k else s,
             blob if "k_proj.weight.quant_state" in k else r) for k, d, s, r in ts])
        refused("bnb4 shape/bytes mismatch", bad, os.path.join(tmp, "o2"),
                ["k_proj", "packed bytes"], code=2)

        # 2. LLM.int8
        src = os.path.join(tmp, "bnb8")
        ref = bnb8_dir(src, rng)
        out = os.path.join(tmp, "bnb8-f32")
        rc, so, se = convert(src, out, "f32", "--verify")
        check(rc == 1 and "overflow" in se and not os.path.exists(out),
              "bnb8 f32 overflow refused: exit %d %s" % (rc, se.strip()))
        rc, so, se = convert(src, out, "f32", "--on-overflow", "saturate", "--verify")
        check(rc == 0, "bnb8 -> f32 saturate: exit %d %s" % (rc, se.strip()))
        if rc == 0:
            sat = {}
            for k, r in ref.items():
                v = r[2].copy()
                v[np.isinf(v)] = np.copysign(np.finfo(np.float32).max, v[np.isinf(v)])
                sat[k] = (r[0], r[1], v, None)
            check_out("bnb8 -> f32 saturate", src, out, sat, "F32", verify=False)
            rc, so, se = run("verify", "--on-overflow", "saturate", src, out)
            check(rc == 0, "bnb8 verify saturate: exit %d %s" % (rc, so))
        # without the overflow row
        fine = os.path.join(tmp, "bnb8-fine")
        shutil.copytree(src, fine)
        edit_st(os.path.join(fine, "model.safetensors"), lambda ts: [
            (k, d, s, (lambda a: (a.__setitem__(2, 1.5), a)[1])(
                np.frombuffer(r, np.float32).copy()).tobytes()
             if k == "model.layers.0.mlp.down_proj.SCB" else r) for k, d, s, r in ts])
        ref0 = ref["model.layers.0.mlp.down_proj.weight"]
        ts, _ = read_st(os.path.join(fine, "model.safetensors"))
        q = np.frombuffer(ts["model.layers.0.mlp.down_proj.weight"][2], np.int8).reshape(40, 33)
        scb = np.frombuffer(ts["model.layers.0.mlp.down_proj.SCB"][2], np.float32)
        p = (q.astype(np.float32) * scb[:, None]).astype(np.float32)
        ref["model.layers.0.mlp.down_proj.weight"] = (
            "bnb8", ref0[1], (p * np.float32(1.0 / 127.0)).astype(np.float32).reshape(-1), None)
        for target in ("bf16", "f16"):
            out = os.path.join(tmp, "bnb8-" + target)
            rc, so, se = convert(fine, out, target, "--verify")
            check(rc == 0, "bnb8 -> %s: exit %d %s" % (target, rc, se.strip()))
            if rc == 0:
                check_out("bnb8 -> " + target, fine, out, ref, target.upper())
        bad = os.path.join(tmp, "bnb8-col32")
        shutil.copytree(fine, bad)
        edit_st(os.path.join(bad, "model.safetensors"), lambda ts: [
            (k, d, s, bytes([1]) if k == "model.layers.1.mlp.down_proj.weight_format" else r)
            for k, d, s, r in ts])
        refused("bnb8 col32", bad, os.path.join(tmp, "o3"), ["layers.1", "weight_format", "col32"])

        # 3. GPTQ: 2/3/4/8 bits, v1/v2, act-order g_idx, ragged groups, group -1, zero and
        # BF16 scales, a mislabelled v2 checkpoint, two shards, a quantize_config.json sidecar
        cases = [  # prefix, in, out, bits, group, version, sym, act_order, scale dtype
            ("model.layers.0.self_attn.q_proj", 128, 48, 4, 32, "v1", True, True, "F16"),
            ("model.layers.0.self_attn.k_proj", 64, 64, 3, 32, "v1", False, False, "F16"),
            ("model.layers.0.mlp.up_proj", 96, 24, 2, 64, "v1", False, True, "BF16"),
            ("model.layers.0.mlp.down_proj", 36, 20, 8, 16, "v1", False, False, "F32"),
            ("model.layers.1.mlp.down_proj", 64, 32, 3, -1, "v1", False, False, "F16"),
        ]
        for fmt in ("gptq", "gptq_v2"):
            ts, vals = [], {}
            for prefix, inp, outn, b, gs, ver, sym, act, sdt in cases:
                ver = "v2" if fmt == "gptq_v2" else "v1"
                t, v = gptq_param(rng, prefix, inp, outn, b, gs, ver, sym, act, sdt,
                                  zero_scale=prefix.endswith("q_proj"))
                ts += t
                vals[prefix] = (v, b)
            # the quantization_config says 4 bits: the other widths go in their own dirs
            for prefix, inp, outn, b, gs, ver, sym, act, sdt in cases:
                src = os.path.join(tmp, "gptq-%s-%d-%s" % (fmt, b, prefix.split(".")[-1]))
                mine = [t for t in ts if t[0].startswith(prefix + ".")]
                qc = {"quant_method": "gptq", "bits": b, "group_size": gs, "desc_act": act,
                      "sym": sym, "checkpoint_format": fmt}
                side = None
                if prefix.endswith("up_proj"):  # AutoGPTQ: the config in a sidecar only
                    side, qc = ("quantize_config.json", dict(qc)), None
                    del side[1]["checkpoint_format"]
                    if fmt == "gptq_v2":
                        side[1]["checkpoint_format"] = fmt
                lm = R.bf16b(rng.standard_normal((8, 4)).astype(np.float32))
                mine = mine + [("lm_head.weight", "BF16", (8, 4), lm)]
                write_model(src, mine, qc, side, shards=2 if b == 4 else 1)
                ref = int_ref(mine, {prefix: vals[prefix]})
                for target in ("f16", "bf16") if b in (3, 4) else ("bf16",):
                    out = src + "-" + target
                    rc, so, se = convert(src, out, target, "--verify")
                    label = "%s %d-bit %s -> %s" % (fmt, b, prefix.split(".")[-1], target)
                    check(rc == 0, "%s: exit %d %s" % (label, rc, se.strip()))
                    if rc == 0:
                        check_out(label, src, out, ref, target.upper())
        # symmetric, labelled v1 but every zero field 2^(b-1): read as v2 (vllm#38966)
        t, v = gptq_param(rng, "model.layers.0.mlp.gate_proj", 64, 16, 4, 32, "v2", True)
        src = os.path.join(tmp, "gptq-mislabel")
        write_model(src, t, {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True,
                             "checkpoint_format": "gptq"})
        out = src + "-bf16"
        rc, so, se = convert(src, out, "bf16", "--verify")
        check(rc == 0, "gptq mislabelled v2: exit %d %s" % (rc, se.strip()))
        if rc == 0:
            check_out("gptq mislabelled v2", src, out,
                      int_ref(t, {"model.layers.0.mlp.gate_proj": (v, 4)}), "BF16")
        # GPTQModel "dynamic": per-module bits / group_size by pattern (the first match at the
        # start of the module name decides, "-:" leaves a module unquantized)
        dyn = {r"-:.*lm_head": {},
               r"+:model\.layers\.\d+\.mlp\.down_proj": {"bits": 8, "group_size": 64},
               r"model\.layers\.[0-9]+\.mlp\.(?:up|gate)_pro.?j$": {"bits": 2, "group_size": -1},
               r"+:.*k_proj": {"bits": 3}}
        mods = [("model.layers.0.self_attn.q_proj", 128, 64, 4, 32, False),
                ("model.layers.0.self_attn.k_proj", 128, 64, 3, 32, False),
                ("model.layers.0.mlp.down_proj", 128, 64, 8, 64, False),
                ("model.layers.0.mlp.up_proj", 96, 32, 2, -1, True),
                ("model.layers.1.mlp.down_proj", 192, 32, 8, 64, True)]
        ts, vals = [], {}
        for prefix, inp, outn, b, gs, drop_gidx in mods:
            t, v = gptq_param(rng, prefix, inp, outn, b, gs, "v1", False)
            if drop_gidx:
                t = [x for x in t if not x[0].endswith(".g_idx")]
            ts += t
            vals[prefix] = (v, b)
        lm = R.bf16b(rng.standard_normal((8, 4)).astype(np.float32))
        ts.append(("lm_head.weight", "BF16", (8, 4), lm))
        src = os.path.join(tmp, "gptq-dynamic")
        qc = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": False,
              "desc_act": False, "checkpoint_format": "gptq", "dynamic": dyn}
        write_model(src, ts, qc)
        rc, so, se = run("audit", src)
        check(rc in (0, 1) and "quant-incomplete" not in so and "quant-config" not in so and
              "INT8" in so and "INT2" in so,
              "gptq dynamic: audit of the input: quantization findings %s" % so)
        for target in ("f16", "bf16"):
            out = src + "-" + target
            rc, so, se = convert(src, out, target, "--verify")
            check(rc == 0, "gptq dynamic -> %s: exit %d %s" % (target, rc, se.strip()))
            if rc == 0:
                check_out("gptq dynamic -> " + target, src, out, int_ref(ts, vals),
                          target.upper())
        # a module a "-:" rule leaves unquantized but holding GPTQ tensors; a pattern outside
        # the evaluated subset (a lookbehind) before any match: refused, named
        for label, rules, words in (
                ("skip", {r"-:.*q_proj": {}}, ["q_proj", "-:.*q_proj", "not quantized"]),
                ("lookbehind", {r"(?<=model)\.layers": {"bits": 4}},
                 ["q_proj", "(?<=model)", "dynamic"])):
            src = os.path.join(tmp, "gptq-dynamic-" + label)
            t = [x for x in ts if x[0].startswith("model.layers.0.self_attn.q_proj.")]
            write_model(src, t, dict(qc, dynamic=rules))
            refused("gptq dynamic " + label, src, src + "-out", words)

        # refusals: a Marlin checkpoint_format; g_idx out of range (exit 2)
        t, v = gptq_param(rng, "model.layers.0.mlp.gate_proj", 64, 16, 4, 32, "v1", True)
        src = os.path.join(tmp, "gptq-marlin")
        write_model(src, t, {"quant_method": "gptq", "bits": 4, "group_size": 32,
                             "checkpoint_format": "marlin"})
        refused("gptq marlin", src, src + "-out", ["gate_proj", "marlin"])
        src = os.path.join(tmp, "gptq-badgidx")
        t = [(k, d, sh, np.full(64, 7, np.int32).tobytes() if k.endswith("g_idx") else r)
             for k, d, sh, r in t]
        write_model(src, t, {"quant_method": "gptq", "bits": 4, "group_size": 32})
        refused("gptq g_idx out of range", src, src + "-out", ["g_idx", "outside"], code=2)

        # 4. AWQ GEMM: interleaved nibbles, asymmetric zeros, ragged last group, sidecar
        ts, vals = [], {}
        for prefix, inp, outn, gs in (("model.layers.0.self_attn.o_proj", 64, 32, 32),
                                      ("model.layers.0.mlp.up_proj", 80, 16, 32)):
            t, v = awq_param(rng, prefix, inp, outn, gs)
            ts += t
            vals[prefix] = (v, 4)
        for side in (False, True):
            src = os.path.join(tmp, "awq%s" % ("-side" if side else ""))
            qc = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
                  "version": "gemm", "modules_to_not_convert": None}
            write_model(src, ts, None if side else qc,
                        ("quant_config.json", {"zero_point": True, "q_group_size": 32,
                                               "w_bit": 4, "version": "GEMM"}) if side else None)
            ref = int_ref(ts, vals)
            for target in ("f16", "bf16", "f32"):
                out = src + "-" + target
                rc, so, se = convert(src, out, target, "--verify")
                check(rc == 0, "awq -> %s: exit %d %s" % (target, rc, se.strip()))
                if rc == 0:
                    check_out("awq%s -> %s" % (" sidecar" if side else "", target), src, out,
                              ref, target.upper())
        src = os.path.join(tmp, "awq-gemv")
        write_model(src, ts, {"quant_method": "awq", "bits": 4, "group_size": 32,
                              "zero_point": True, "version": "gemv"})
        refused("awq gemv", src, src + "-out", ["awq", "gemv"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (R.PASSES[0], len(R.FAILS)))
    sys.exit(1 if R.FAILS else 0)


if __name__ == "__main__":
    main()
