#!/usr/bin/python3
"""Generate the small PyTorch fixtures in tests/fixtures/torch/ with real torch.

Run with Debian's python3 (python3-torch, torch 1.13):  /usr/bin/python3 scripts/make-torch-fixtures.py
Each fixture is a few KiB. torch 2.x-only features (float8, uint16, _rebuild_tensor_v3)
cannot be produced by torch 1.13, so those files are hand-crafted byte by byte below,
following docs/formats.md 2.8 (a documented exception: no torch writes them here).
EXPECTED.json records, per fixture, the tensors (name -> dtype, shape, root) that
dtaudit must report; tests/interop/torch_compare.py checks them against torch.load.
"""
import collections
import io
import json
import os
import struct
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch")
torch.manual_seed(0)


def save(name, obj, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    return path


def small_model():
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def main():
    os.makedirs(OUT, exist_ok=True)
    m = small_model()
    # 1. plain state_dict: OrderedDict with _metadata
    save("state_dict.pt", m.state_dict())
    # 2. tied weights + a view into the same storage
    emb = torch.randn(5, 3)
    save("tied.pt", {"emb.weight": emb, "lm_head.weight": emb, "row1": emb[1]})
    # 3. views: slice with offset, transposed, expanded (stride 0)
    big = torch.arange(40, dtype=torch.float32)
    mat = torch.randn(2, 3)
    save("views.pt", {"slice": big[10:20], "transposed": mat.t(),
                      "expanded": torch.randn(3).expand(4, 3)})
    # 4. training checkpoint: model / ema / optimizer (int keys) / step
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(1, 4)).sum().backward()
    opt.step()
    ema = {k: v.detach().to(torch.bfloat16) for k, v in m.state_dict().items()}
    save("training.pt", {"model": m.state_dict(), "ema": ema,
                         "optimizer": opt.state_dict(), "step": 7})
    # 5. Lightning-like checkpoint
    save("lightning.ckpt", {
        "epoch": 3, "global_step": 30, "pytorch-lightning_version": "1.9.0",
        "state_dict": {"model." + k: v for k, v in m.state_dict().items()},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5)}},
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
        "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.001},
    })
    # 6. meta tensor
    save("meta.pt", {"w": torch.empty(3, 4, device="meta"), "b": torch.zeros(2)})
    # 7. quantized tensor
    q = torch.quantize_per_tensor(torch.randn(2, 3), 0.1, 0, torch.qint8)
    save("quantized.pt", {"q": q, "scale": torch.tensor(0.1)})
    # 8. dtypes
    base = torch.arange(6).reshape(2, 3)
    save("dtypes.pt", collections.OrderedDict([
        ("bf16", base.to(torch.bfloat16)), ("f16", base.to(torch.float16)),
        ("f32", base.to(torch.float32)), ("f64", base.to(torch.float64)),
        ("i8", base.to(torch.int8)), ("i16", base.to(torch.int16)),
        ("i32", base.to(torch.int32)), ("i64", base.to(torch.int64)),
        ("u8", base.to(torch.uint8)), ("bool", base.to(torch.bool)),
        ("c64", base.to(torch.complex64)), ("c128", base.to(torch.complex128)),
        ("scalar", torch.tensor(1.5)), ("empty", torch.zeros(0, 3)),
    ]))
    # 9. legacy stream
    save("legacy.pt", {"a": torch.randn(2, 2), "b": torch.arange(3), "a_view": None},
         _use_new_zipfile_serialization=False)
    # legacy with views sharing a storage
    base2 = torch.randn(6)
    save("legacy_views.pt", {"full": base2, "part": base2[2:5]}, _use_new_zipfile_serialization=False)
    # 10. TorchScript archive
    torch.jit.script(small_model()).save(os.path.join(OUT, "script.pt"))
    # 11. parameters (_rebuild_parameter)
    save("param.pt", {"p": torch.nn.Parameter(torch.randn(2, 2)),
                      "frozen": torch.nn.Parameter(torch.randn(3), requires_grad=False)})
    # 12. tensor with Python attributes -> _rebuild_from_type_v2
    t = torch.randn(2)
    t.note = "hello"
    save("subclass.pt", {"t": t})
    # 13. whole nn.Module pickled (tensors in _parameters of module state)
    save("module.pt", small_model())
    # 14. numpy array inside the pickle
    try:
        import numpy as np
        save("numpy.pt", {"arr": np.arange(4, dtype=np.float32), "t": torch.ones(2)})
    except ImportError:
        pass
    # 15. hand-crafted torch 2.x files
    handmade_v3()
    handmade_byteorder_big()
    handmade_bad()


# ---- hand-crafted pickles (docs/formats.md 2.8 / 2.11) ------------------------------------

def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def pint(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def ptuple(items):
    if not items:
        return b")"
    return b"(" + b"".join(pint(i) for i in items) + b"t"


def v3_tensor(key, nbytes, shape, stride, dtype):
    return (glob("torch._utils", "_rebuild_tensor_v3") + b"(" +
            b"(" + binunicode("storage") + glob("torch.storage", "UntypedStorage") +
            binunicode(key) + binunicode("cpu") + pint(nbytes) + b"tQ" +
            pint(0) + ptuple(shape) + ptuple(stride) + b"\x89" +
            glob("collections", "OrderedDict") + b")R" + glob("torch", dtype) + b"tR")


def write_zip(path, pkl, records, extra=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        for name, data in extra:
            z.writestr("archive/" + name, data)
        for k, data in records:
            z.writestr("archive/data/" + k, data)
        z.writestr("archive/version", "3\n")


def handmade_v3():
    # float8_e4m3fn [2,3] (6 bytes), uint16 [4] (8 bytes), float8_e5m2 [2] view of key 2
    pkl = (b"\x80\x02}(" +
           binunicode("f8") + v3_tensor("0", 6, [2, 3], [3, 1], "float8_e4m3fn") +
           binunicode("u16") + v3_tensor("1", 8, [4], [1], "uint16") +
           binunicode("e5m2") + v3_tensor("2", 2, [2], [1], "float8_e5m2") +
           b"u.")
    write_zip(os.path.join(OUT, "v3_handmade.pt"), pkl,
              [("0", bytes(6)), ("1", bytes(8)), ("2", bytes(2))])


def handmade_byteorder_big():
    pkl = (b"\x80\x02}(" + binunicode("w") +
           glob("torch._utils", "_rebuild_tensor_v2") + b"((" + binunicode("storage") +
           glob("torch", "FloatStorage") + binunicode("0") + binunicode("cpu") + pint(2) +
           b"tQ" + pint(0) + ptuple([2]) + ptuple([1]) + b"\x89" +
           glob("collections", "OrderedDict") + b")RtRu.")
    write_zip(os.path.join(OUT, "byteorder_big.pt"), pkl, [("0", bytes(8))],
              extra=[("byteorder", "big")])


def v2_pkl(key, numel, offset, shape, stride):
    return (b"\x80\x02}(" + binunicode("w") +
            glob("torch._utils", "_rebuild_tensor_v2") + b"((" + binunicode("storage") +
            glob("torch", "FloatStorage") + binunicode(key) + binunicode("cpu") + pint(numel) +
            b"tQ" + pint(offset) + ptuple(shape) + ptuple(stride) + b"\x89" +
            glob("collections", "OrderedDict") + b")RtRu.")


def handmade_bad():
    """Malformed files every reader must reject (exit 2), never crash on."""
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad, exist_ok=True)
    # record has 4 bytes, the storage needs 2 x F32 = 8
    write_zip(os.path.join(bad, "record_size.pt"), v2_pkl("0", 2, 0, [2], [1]), [("0", bytes(4))])
    # data/0 missing
    write_zip(os.path.join(bad, "missing_record.pt"), v2_pkl("0", 2, 0, [2], [1]), [])
    # view past the end of its storage: offset 1 + 2 elements in a 2-element storage
    write_zip(os.path.join(bad, "view_oob.pt"), v2_pkl("0", 2, 1, [2], [1]), [("0", bytes(8))])
    # truncated pickle
    write_zip(os.path.join(bad, "truncated_pickle.pt"), v2_pkl("0", 2, 0, [2], [1])[:-9],
              [("0", bytes(8))])
    # memo index used before it is defined
    write_zip(os.path.join(bad, "memo_undefined.pt"), b"\x80\x02h\x05.", [])
    # zip without data.pkl
    with zipfile.ZipFile(os.path.join(bad, "no_data_pkl.zip"), "w") as z:
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    main()
    print("fixtures written to", os.path.normpath(OUT))
