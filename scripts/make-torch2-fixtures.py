#!/usr/bin/env python3
"""Generate the PyTorch 2.x fixtures in tests/fixtures/torch2/ with a real torch >= 2.1.

usage: /path/to/venv/bin/python scripts/make-torch2-fixtures.py [OUTDIR]

Unlike scripts/make-torch-fixtures.py (torch 1.13, which hand-crafts its v3 file), every
file here is written by torch.save of a torch 2.x, so it carries what that version
writes: _rebuild_tensor_v3 with torch.storage.UntypedStorage pids for the "new" dtypes
(float8_*, uint16/32/64, ...), and the byteorder / .format_version / .storage_alignment /
.data/serialization_id records of recent torch. Each file is a few KiB (< 64 KiB).
The torch version that wrote them is recorded in README.md next to them;
tests/interop/torch2_check.py compares dtaudit with torch on each of them.
Exits 77 (SKIP) when torch < 2.1.
"""
import collections
import os
import sys

try:
    import torch
except ImportError:
    print("SKIP: torch is not importable")
    sys.exit(77)


def version_tuple(v):
    out = []
    for part in v.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


if version_tuple(torch.__version__) < (2, 1):
    print("SKIP: torch %s < 2.1 cannot write these fixtures" % torch.__version__)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures", "torch2")
LIMIT = 64 * 1024
torch.manual_seed(0)

F8_NAMES = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]
WRITTEN = []


def save(name, obj, note):
    path = os.path.join(OUT, name)
    torch.save(obj, path)
    size = os.path.getsize(path)
    if size >= LIMIT:
        raise SystemExit("%s is %d bytes (limit %d)" % (name, size, LIMIT))
    WRITTEN.append((name, size, note))


def all_bytes(dt, shape=(16, 16)):
    """Every 8-bit pattern once, reinterpreted as dt (inf, NaN, subnormals included)."""
    return torch.arange(256, dtype=torch.uint8).view(dt).reshape(shape)


def model():
    return torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.LayerNorm(6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 4))


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith((".pt", ".ckpt", ".bin")):
            os.remove(os.path.join(OUT, old))
    f8 = [n for n in F8_NAMES if hasattr(torch, n)]

    # 1. one file per float8 dtype: all 256 bit patterns, a randn-derived matrix, a scalar,
    #    an empty tensor and an offset slice of the all-patterns storage
    for n in f8:
        dt = getattr(torch, n)
        pat = all_bytes(dt)
        src = torch.randn(4, 8) * (4.0 if n != "float8_e8m0fnu" else 1.0)
        if n == "float8_e8m0fnu":
            src = src.abs() + 1e-3  # e8m0 holds only powers of two (no sign)
        save("%s.pt" % n, collections.OrderedDict([
            ("patterns", pat),
            ("weight", src.to(dt)),
            ("scalar", torch.tensor(1.5).to(dt)),
            ("empty", torch.zeros(0, 4).to(dt)),
            ("row", pat[3]),                      # view: storage_offset 48 elements
        ]), "%s: every bit pattern, a 4x8 weight, a scalar, an empty tensor, a row view" % n)

    # 2. all float8 dtypes of this torch in one state dict, with their scale tensors
    sd = collections.OrderedDict()
    for n in f8:
        w = torch.randn(6, 4)
        sd["%s.weight" % n] = w.to(getattr(torch, n))
        sd["%s.scale" % n] = torch.tensor(0.125)
    save("float8_mixed.pt", sd, "all float8 dtypes (%s) with f32 scales" % ", ".join(f8))

    # 3. unsigned integers of torch >= 2.3 (uint16 / uint32 / uint64), extremes included
    uints = collections.OrderedDict()
    for n, top in (("uint16", 2 ** 16 - 1), ("uint32", 2 ** 32 - 1), ("uint64", 2 ** 64 - 1)):
        if not hasattr(torch, n):
            continue
        dt = getattr(torch, n)
        uints[n] = torch.tensor([0, 1, 2, top // 2, top // 2 + 1, top - 1, top], dtype=dt)
        uints[n + "_2d"] = torch.arange(12, dtype=torch.int64).to(dt).reshape(3, 4)
        uints[n + "_col"] = uints[n + "_2d"][:, 1]      # view: offset 1, stride 4
    uints["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    uints["f32"] = torch.randn(3)                      # a floating tensor among them
    save("uints.pt", uints, "uint16/uint32/uint64 (extremes, 2-D, column view), uint8, f32")

    # 4. plain state dicts: float32, bfloat16, float16, float64 (nn.Module.state_dict())
    m = model()
    save("state_dict_f32.pt", m.state_dict(), "nn.Sequential state_dict, float32 (OrderedDict + _metadata)")
    save("state_dict_bf16.pt", m.to(torch.bfloat16).state_dict(), "the same model in bfloat16")
    m = model()
    save("state_dict_f16.pt", m.to(torch.float16).state_dict(), "the same model in float16")
    save("state_dict_f64.pt", model().to(torch.float64).state_dict(), "float64 state_dict")
    # special values: overflow for f16/bf16, subnormals, NaN with payload, signed zeros
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 1e5, -1e5, 3.4e38, float("inf"),
                            float("-inf"), float("nan"), 1e-8, 6e-8, 1e-40, -1e-45, 3.0e-5,
                            1.00390625, 1.01171875, 2 ** -24, 2 ** -25, 2 ** -133, 2 ** -134])
    nanpay = torch.tensor([0x7FC00001, 0xFFC00000 - 2 ** 32, 0x7F800001], dtype=torch.int32).view(torch.float32)
    save("special_f32.pt", {"special": special, "nan_payloads": nanpay,
                            "special_f64": special.double(), "big_f64": torch.tensor([1e300, -1e-300], dtype=torch.float64)},
         "f32/f64 specials: overflow for f16/bf16, subnormals, NaN payloads (needs --on-overflow inf)")

    # 5. tied weights, f32 and float8 (v3: UntypedStorage pids with the same key)
    emb = torch.randn(10, 4)
    f8w = torch.randn(5, 4).to(torch.float8_e4m3fn)
    save("tied.pt", collections.OrderedDict([
        ("embed.weight", emb), ("lm_head.weight", emb), ("row3", emb[3]),
        ("f8.weight", f8w), ("f8.tied", f8w), ("f8.row1", f8w[1]),
        ("u16", torch.arange(6, dtype=torch.int64).to(torch.uint16)),
    ]), "tied weights: f32 embed/lm_head + row view, float8_e4m3fn pair + row view")
    # tied through Parameters of a module (weight tying as HF does it)
    lin = torch.nn.Linear(4, 10, bias=False)
    embm = torch.nn.Embedding(10, 4)
    lin.weight = embm.weight
    save("tied_module.pt", collections.OrderedDict([("emb", embm.state_dict()), ("head", lin.state_dict())]),
         "nested state dicts whose weights are one Parameter (bf16 conversion must keep the tie)")

    # 6. views: slices with offsets, transposed, expanded (stride 0), narrow, float8 + uint16 views
    big = torch.randn(64)
    mat = torch.randn(4, 6)
    f8big = torch.randn(8, 8).to(torch.float8_e5m2)
    u16big = torch.arange(40, dtype=torch.int64).to(torch.uint16)
    save("views.pt", collections.OrderedDict([
        ("slice", big[10:20]), ("strided", big[1::3]), ("transposed", mat.t()),
        ("narrow", mat[1:3, 2:5]), ("expanded", torch.randn(3).expand(4, 3)),
        ("f8_t", f8big.t()), ("f8_slice", f8big[2:5, 1:7]), ("f8_full", f8big),
        ("u16_slice", u16big[5:15]), ("u16_strided", u16big[::4]),
        ("bf16_t", torch.randn(3, 5).to(torch.bfloat16).t()),
    ]), "views: slices with offset, strided, transposed, narrow, expanded, float8 and uint16 views")

    # 7. nested training checkpoint: model, ema (bf16), optimizer (Adam, int keys, tensor steps),
    #    scheduler, scaler-like state, rng state, float8 weights of an fp8 training run
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    for _ in range(2):
        m(torch.randn(2, 8)).sum().backward()
        opt.step()
        sched.step()
    save("training.pt", {
        "model": m.state_dict(),
        "ema": {k: v.detach().to(torch.bfloat16) for k, v in m.state_dict().items()},
        "fp8": {"0.weight": m[0].weight.detach().to(torch.float8_e4m3fn),
                "0.weight_scale": torch.tensor([0.5]),
                "3.weight": m[3].weight.detach().to(torch.float8_e5m2)},
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "rng": {"torch": torch.get_rng_state()},
        "epoch": 3, "global_step": 120, "best": (0.25, [1, 2]),
        "args": {"lr": 1e-3, "dtype": "bf16", "layers": [8, 6, 4]},
    }, "training checkpoint: model, ema bf16, fp8 weights, AdamW state, scheduler, rng, args")

    # 8. Parameters with requires_grad kept in a plain dict (pickled via _rebuild_parameter)
    p = torch.nn.Parameter(torch.randn(3, 3))
    q = torch.nn.Parameter(torch.randn(2).to(torch.bfloat16), requires_grad=False)
    save("params.pt", {"p": p, "q": q, "p_again": p},
         "nn.Parameter objects (requires_grad True/False) and a repeated Parameter")

    # 9. one storage seen with two dtypes. torch refuses to save f32 + int32 views of one
    #    storage, but v3 dtypes pickle an UntypedStorage (bytes) and uint8 tensors a
    #    ByteStorage, both "uint8" to torch's check, so float8 + uint8 / uint16 views pass.
    x = torch.randn(8).to(torch.float8_e4m3fn)
    save("aliased_dtypes.pt", collections.OrderedDict([
        ("f8", x), ("raw_u8", x.view(torch.uint8)), ("raw_u16", x.view(torch.uint16))]),
         "one storage as float8_e4m3fn, uint8 and uint16 (convert must refuse or keep all right)")

    # 10. dtypes no released dtaudit test covers: complex32, float4_e2m1fn_x2, bits16, bcomplex32
    exotic = collections.OrderedDict()
    exotic["c32"] = torch.randn(3, dtype=torch.complex64).to(torch.complex32)
    if hasattr(torch, "float4_e2m1fn_x2"):
        exotic["f4x2"] = torch.arange(16, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).reshape(4, 4)
    exotic["bits16"] = torch.arange(4, dtype=torch.int16).view(torch.bits16)
    exotic["bits8"] = torch.arange(4, dtype=torch.uint8).view(torch.bits8)
    exotic["f32"] = torch.ones(2)
    save("exotic.pt", exotic, "complex32, float4_e2m1fn_x2 (packed: 1 byte per element), bits16, bits8")
    if hasattr(torch, "bcomplex32"):
        save("bcomplex32.pt", {"bc32": torch.zeros(3, dtype=torch.bcomplex32), "f32": torch.ones(2)},
             "bcomplex32 (new in recent torch)")

    write_readme(f8)
    for name, size, _ in WRITTEN:
        print("%-24s %6d bytes" % (name, size))


def write_readme(f8):
    lines = [
        "# PyTorch 2.x fixtures",
        "",
        "Written by `scripts/make-torch2-fixtures.py` with **torch %s** (Python %s), "
        "every file by a real `torch.save`." % (torch.__version__, sys.version.split()[0]),
        "float8 dtypes of that torch: %s." % ", ".join(f8),
        "Checked by `tests/interop/torch2_check.py` (needs torch >= 2.1; exits 77 otherwise).",
        "",
        "| file | bytes | content |",
        "|---|---|---|",
    ]
    for name, size, note in WRITTEN:
        lines.append("| `%s` | %d | %s |" % (name, size, note))
    lines.append("")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
