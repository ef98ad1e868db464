#!/usr/bin/env python3
"""Generate dtaudit's committed test fixtures (deterministic).

Usage:
    scripts/make-fixtures.py [--root DIR]          write the fixtures
    scripts/make-fixtures.py --check DTAUDIT [--root DIR]
                                                   run DTAUDIT against them:
        good/ and interop/ must scan with exit 0, bad/ must fail with exit 2 and
        one stderr line containing the substring from bad/EXPECTED.tsv, seeds/
        must audit to exactly the findings in seeds/EXPECTED.json.

Writes (relative to the repository root):
    tests/fixtures/good/      valid safetensors files: every dtype code, edge cases
    tests/fixtures/bad/       one malformed file per defect + EXPECTED.tsv
    tests/fixtures/seeds/     the seed scenarios (001-003) + *_fixed + EXPECTED.json
    tests/fixtures/interop/   files written by the real `safetensors` package
    examples/                 copies of the seed files for the README quickstart

Only the Python standard library is needed for good/, bad/, seeds/ and
examples/: those files come from the small writer below, which produces the same
byte stream as the reference writer (docs/formats.md 1.5: dtype-descending-then-name
order, compact JSON, space padding to a multiple of 8). interop/ needs numpy
and the `safetensors` package and is skipped with a note when they are missing.
Tensor data comes from SHA-256 in counter mode, so the bytes never depend on the
Python or package versions.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys


# (code, bits) in safetensors enum order (docs/formats.md 1.3); the order is the
# reference writer's sort key (descending).
DTYPES = [
    ("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8),
    ("F8_E5M2", 8), ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8),
    ("F8_E5M2FNUZ", 8), ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16),
    ("I32", 32), ("U32", 32), ("F32", 32), ("C64", 64), ("F64", 64), ("I64", 64),
    ("U64", 64),
]
DTYPE_INDEX = {c: i for i, (c, _) in enumerate(DTYPES)}
DTYPE_BITS = dict(DTYPES)


# ---------------------------------------------------------------- data

def det_bytes(seed, n):
    """n deterministic pseudo-random bytes for a string seed."""
    out = bytearray()
    ctr = 0
    while len(out) < n:
        out += hashlib.sha256(("%s/%d" % (seed, ctr)).encode()).digest()
        ctr += 1
    return bytes(out[:n])


def det_f32(seed, n, scale=0.05):
    """n deterministic float32 values in [-scale, scale), as Python floats."""
    raw = det_bytes(seed, 4 * n)
    out = []
    for (u,) in struct.iter_unpack("<I", raw):
        x = (u / 4294967296.0 - 0.5) * 2.0 * scale
        out.append(struct.unpack("<f", struct.pack("<f", x))[0])  # round to float32
    return out


def f32_to_bf16(x):
    """bf16 bits of a float32 value, round to nearest even (no NaN here)."""
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    return (b + 0x7FFF + ((b >> 16) & 1)) >> 16


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def tensor_data(seed, dtype, shape, values=None):
    """Little-endian bytes of a tensor. Floats are small finite values; the
    narrow float codes get bytes chosen away from NaN/Inf encodings."""
    n = numel(shape)
    nbits = n * DTYPE_BITS[dtype]
    assert nbits % 8 == 0, (dtype, shape)
    nbytes = nbits // 8
    if dtype in ("F32", "F16", "BF16", "F64", "C64"):
        k = 2 * n if dtype == "C64" else n
        v = det_f32(seed, k) if values is None else [float(x) for x in values]
        assert len(v) == k, (dtype, shape)
        fmt = {"F32": "<%df", "C64": "<%df", "F16": "<%de", "F64": "<%dd"}.get(dtype)
        if fmt:
            return struct.pack(fmt % k, *v)
        return struct.pack("<%dH" % k, *[f32_to_bf16(x) for x in v])
    raw = bytearray(det_bytes(seed, nbytes))
    if dtype == "BOOL":
        raw = bytearray(b & 1 for b in raw)
    elif dtype in ("F8_E4M3", "F8_E5M2", "F8_E8M0"):
        # keep the exponent field well below all-ones: no NaN or Inf
        raw = bytearray((b & 0x80 if dtype != "F8_E8M0" else 0) | (b & 0x3F) for b in raw)
    elif dtype in ("F8_E4M3FNUZ", "F8_E5M2FNUZ"):
        # 0x80 is the only NaN: never emit a zero magnitude with the sign bit
        raw = bytearray((b & 0x80) | ((b & 0x3F) or 1) for b in raw)
    return bytes(raw)


# ---------------------------------------------------------------- writer

def header_json(obj):
    """Compact JSON as serde_json writes it (same escapes as Python's
    ensure_ascii=False: \\" \\\\ \\b \\f \\n \\r \\t, other controls \\u00xx)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def serialize(tensors, metadata=None, order="reference", pad=True):
    """Bytes of a safetensors file.

    tensors: list of (name, dtype, shape, data_bytes).
    order: "reference" (dtype descending, then name bytewise, docs/formats.md 1.5) or
           "name" (old writers: name order only, no alignment) or "given".
    """
    if order == "reference":
        items = sorted(tensors, key=lambda t: (-DTYPE_INDEX[t[1]], t[0].encode()))
    elif order == "name":
        items = sorted(tensors, key=lambda t: t[0].encode())
    else:
        items = list(tensors)
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = dict(sorted(metadata.items()))
    off = 0
    data = bytearray()
    for name, dtype, shape, blob in items:
        assert name not in hdr, name
        assert len(blob) * 8 == numel(shape) * DTYPE_BITS[dtype], name
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        data += blob
    text = header_json(hdr).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


def raw_file(header, data=b"", n=None):
    """A file from an explicit header (str or bytes) and data; n overrides N."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def mk(name, dtype, shape, seed=None, values=None):
    return (name, dtype, list(shape), tensor_data(seed or name, dtype, shape, values))


def write(path, blob):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


# ---------------------------------------------------------------- good/

DTYPE_SHAPES = {"F4": [2, 4], "F6_E2M3": [4, 4], "F6_E3M2": [4, 4]}


def good_files():
    files = {}
    # every dtype in one file and in one file each
    allt = []
    for code, _ in DTYPES:
        shape = DTYPE_SHAPES.get(code, [2, 3])
        allt.append(mk("t_" + code.lower(), code, shape))
        files["dtype_%s.safetensors" % code] = serialize(
            [mk("x." + code.lower(), code, shape)], {"format": "pt"})
    files["all_dtypes.safetensors"] = serialize(allt, {"format": "pt"})

    # a scalar of each common float type
    files["scalar.safetensors"] = serialize(
        [mk("step", "I64", []), mk("scale", "F32", []), mk("temp", "BF16", []),
         mk("flag", "BOOL", [])], {"format": "pt"})

    # zero-size tensors sharing an offset with each other and with a scalar
    zs = [
        ("empty.a", "F32", [0], b""),
        ("empty.b", "F16", [0, 4], b""),
        ("empty.c", "BF16", [3, 0, 2], b""),
        ("scalar", "F32", [], tensor_data("scalar", "F32", [])),
        ("empty.d", "I64", [0], b""),
        ("empty.huge", "F32", [0, 1 << 40], b""),
    ]
    hdr = {"__metadata__": {"format": "pt"}}
    # offsets: three zero-size at [0,0], the scalar [0,4], two zero-size at [4,4]
    offs = {"empty.a": [0, 0], "empty.b": [0, 0], "empty.c": [0, 0],
            "scalar": [0, 4], "empty.d": [4, 4], "empty.huge": [4, 4]}
    for name, dt, shape, _ in zs:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": offs[name]}
    text = header_json(hdr)
    text += " " * (-len(text) % 8)
    files["zero_size_shared_offset.safetensors"] = raw_file(text, zs[3][3])

    base = [mk("model.embed.weight", "F32", [4, 2]), mk("model.norm.weight", "F32", [2])]
    base_data = b"".join(t[3] for t in sorted(base, key=lambda t: t[0]))

    def hdr_for(extra_field=False, meta=True):
        h = {"__metadata__": {"format": "pt"}} if meta else {}
        off = 0
        for name, dt, shape, blob in sorted(base, key=lambda t: t[0]):
            e = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(blob)]}
            if extra_field:
                e["foo"] = 1
            h[name] = e
            off += len(blob)
        return header_json(h)

    # leading whitespace before '{' (accepted since safetensors commit 96305fc)
    files["leading_whitespace.safetensors"] = raw_file(" \n\t\r " + hdr_for() + "   ", base_data)
    # trailing padding made of every JSON whitespace byte
    files["trailing_whitespace.safetensors"] = raw_file(hdr_for() + " \t\n\r\t \n", base_data)
    # unknown extra field in a tensor entry (ignored by the reference)
    files["unknown_field.safetensors"] = raw_file(hdr_for(extra_field=True), base_data)
    # __metadata__ present with several keys / absent / empty
    files["metadata_present.safetensors"] = serialize(
        base, {"format": "pt", "framework": "dtaudit-fixtures", "note": "x=\"1\" \\ y",
               "total_params": "10"})
    files["metadata_absent.safetensors"] = serialize(base, None)
    files["metadata_empty.safetensors"] = serialize(base, {})
    # no tensors at all (upstream test: {} padded to 8)
    files["empty_header.safetensors"] = serialize([], None)
    files["metadata_only.safetensors"] = serialize([], {"format": "pt"})
    # a tensor literally named __metadata__x is a tensor
    files["metadata_like_name.safetensors"] = serialize(
        [mk("__metadata__x", "F32", [2]), mk("w", "F32", [2])], {"format": "pt"})

    # old writer: name order, odd sizes, unaligned data, N not a multiple of 8
    old = [mk("a.mask", "U8", [3]), mk("b.weight", "F32", [3]), mk("c.bias", "F16", [3]),
           mk("d.table", "F64", [2]), mk("e.ids", "I64", [1])]
    blob = serialize(old, None, order="name", pad=False)
    n = struct.unpack("<Q", blob[:8])[0]
    if n % 2 == 0:   # make N odd so that the data start is unaligned too
        text = blob[8:8 + n] + b" "
        blob = struct.pack("<Q", len(text)) + text + blob[8 + n:]
    files["unaligned_old_writer.safetensors"] = blob

    # JSON key order unrelated to the offset order
    t = [mk("z.first", "F32", [2]), mk("a.second", "F32", [3]), mk("m.third", "F16", [2])]
    h = {}
    off = 0
    placed = []
    for name, dt, shape, b in t:
        h[name] = {"data_offsets": [off, off + len(b)], "shape": shape, "dtype": dt}
        placed.append(b)
        off += len(b)
    h = dict(sorted(h.items()))
    h["__metadata__"] = {"format": "pt"}
    files["keys_unsorted.safetensors"] = raw_file(header_json(h) + "  ", b"".join(placed))

    # names: non-ASCII UTF-8, quote, backslash, control characters, slash, spaces
    names = ["модель.слой.вес", "日本語.weight", "emoji.\U0001F600.bias", 'quote".weight',
             "back\\slash.weight", "tab\there.weight", "nl\nhere.weight", "ctl\x01.weight",
             "path/like/name.weight", "space here.weight", "", "."]
    files["names_unicode_escapes.safetensors"] = serialize(
        [mk(nm, "F32", [2], seed="nm%d" % i) for i, nm in enumerate(names)],
        {"format": "pt"})

    # high rank and big-but-valid dims
    files["rank8.safetensors"] = serialize(
        [mk("r8", "F16", [1, 2, 1, 2, 1, 2, 1, 2]), mk("r1", "F16", [5])], {"format": "pt"})

    # a typical small transformer in float32 (module tree, int buffer)
    tiny = [mk("model.embed_tokens.weight", "F32", [16, 8])]
    for i in range(2):
        p = "model.layers.%d." % i
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tiny.append(mk(p + "self_attn.%s.weight" % proj, "F32", [8, 8]))
        tiny.append(mk(p + "mlp.fc1.weight", "F32", [16, 8]))
        tiny.append(mk(p + "mlp.fc1.bias", "F32", [16]))
        tiny.append(mk(p + "mlp.fc2.weight", "F32", [8, 16]))
        tiny.append(mk(p + "input_layernorm.weight", "F32", [8]))
    tiny.append(mk("model.norm.weight", "F32", [8]))
    tiny.append(mk("model.position_ids", "I64", [1, 16]))
    files["tiny_f32_model.safetensors"] = serialize(tiny, {"format": "pt"})
    return files


# ---------------------------------------------------------------- bad/

def bad_files():
    """name -> bytes of a malformed file (expected messages: BAD_EXPECT)."""
    f = {}
    one = mk("w", "F32", [2])
    ok_hdr = lambda e: header_json({"w": e})                      # noqa: E731
    ent = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    good = serialize([one], {"format": "pt"})
    d8 = one[3]

    f["empty_file.safetensors"] = b""
    f["truncated_short.safetensors"] = b"\x10\x00\x00\x00\x00"
    f["header_len_zero.safetensors"] = struct.pack("<Q", 0) + b"{}      "
    f["header_too_large.safetensors"] = raw_file(ok_hdr(ent), d8, n=100_000_001)
    f["header_len_huge.safetensors"] = raw_file(ok_hdr(ent), d8, n=(1 << 64) - 1)
    f["header_beyond_file.safetensors"] = raw_file(ok_hdr(ent), d8, n=len(ok_hdr(ent)) + 200)
    f["truncated_last_tensor.safetensors"] = good[:-3]
    f["trailing_bytes.safetensors"] = good + b"\x00\x00\x00\x00"

    def two(e1, e2, data_len):
        h = header_json({"a": e1, "b": e2})
        return raw_file(h, det_bytes("two", data_len))

    f["offsets_overlap.safetensors"] = two(
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}, 12)
    f["offsets_hole.safetensors"] = two(
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}, 20)
    f["offsets_first_nonzero.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}), det_bytes("x", 12))
    f["offsets_end_before_begin.safetensors"] = two(
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}, 8)
    f["offsets_size_mismatch.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}), d8)
    f["offsets_three_elements.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}), d8)
    f["offsets_one_element.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2], "data_offsets": [8]}), d8)
    f["offsets_negative.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}), d8)
    f["shape_overflow.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2, 1 << 63], "data_offsets": [0, 8]}), d8)
    # numel = 2^62 fits in u64, numel * 32 bits does not
    f["shape_overflow_bits.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 8]}), d8)
    f["shape_dim_exceeds_u64.safetensors"] = raw_file(
        '{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}', d8)
    f["shape_float.safetensors"] = raw_file(
        '{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', d8)
    f["shape_negative.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}), d8)
    f["shape_not_array.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}), d8)
    f["dtype_unknown.safetensors"] = raw_file(
        ok_hdr({"dtype": "C128", "shape": [1], "data_offsets": [0, 16]}), det_bytes("c", 16))
    f["dtype_lowercase.safetensors"] = raw_file(
        ok_hdr({"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}), d8)
    f["dtype_not_string.safetensors"] = raw_file(
        ok_hdr({"dtype": 17, "shape": [2], "data_offsets": [0, 8]}), d8)
    f["dtype_missing.safetensors"] = raw_file(
        ok_hdr({"shape": [2], "data_offsets": [0, 8]}), d8)
    f["shape_missing.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "data_offsets": [0, 8]}), d8)
    f["offsets_missing.safetensors"] = raw_file(
        ok_hdr({"dtype": "F32", "shape": [2]}), d8)
    f["entry_not_object.safetensors"] = raw_file('{"w":[1,2,3]}', b"")
    f["f4_odd_count.safetensors"] = raw_file(
        ok_hdr({"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}), b"\x11\x01")
    f["f6_partial_byte.safetensors"] = raw_file(
        ok_hdr({"dtype": "F6_E2M3", "shape": [3], "data_offsets": [0, 3]}), b"\x01\x02\x03")
    # identical duplicates: the reference keeps the last one, dtaudit must refuse
    f["duplicate_tensor_name.safetensors"] = raw_file(
        '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8)
    f["duplicate_metadata.safetensors"] = raw_file(
        '{"__metadata__":{"format":"pt"},"__metadata__":{"format":"pt"},'
        '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8)
    f["metadata_value_not_string.safetensors"] = raw_file(
        '{"__metadata__":{"format":"pt","step":7},'
        '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8)
    f["metadata_not_object.safetensors"] = raw_file(
        '{"__metadata__":"pt","w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8)
    f["nul_padding.safetensors"] = raw_file(ok_hdr(ent).encode() + b"\x00" * 6, d8)
    f["header_trailing_garbage.safetensors"] = raw_file(ok_hdr(ent) + " x", d8)
    f["header_not_utf8.safetensors"] = raw_file(
        b'{"w\xff\xfe":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8)
    f["header_top_level_array.safetensors"] = raw_file("[]      ")
    f["header_top_level_string.safetensors"] = raw_file('"hello" ')
    f["header_unterminated.safetensors"] = raw_file(
        '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', d8)
    f["header_whitespace_only.safetensors"] = raw_file("        ")
    rnd = bytearray(det_bytes("random", 4096))
    f["random_bytes.safetensors"] = bytes(rnd)
    # random JSON-ish length: N points inside the file, body is garbage
    body = det_bytes("random2", 1000)
    f["random_header.safetensors"] = struct.pack("<Q", 600) + body
    return f


# Substring the one stderr line must contain (case-insensitive; "" = any message).
# Short and generic, taken from the wording of src/lib/format_safetensors.c and
# src/lib/format.c; files that no reader claims get "not a recognised checkpoint".
BAD_EXPECT = {
    "empty_file.safetensors": "empty",
    "truncated_short.safetensors": "short",
    "header_len_zero.safetensors": "length",
    "header_too_large.safetensors": "limit",
    "header_len_huge.safetensors": "limit",
    "header_beyond_file.safetensors": "end of the file",
    "truncated_last_tensor.safetensors": "truncated",
    "trailing_bytes.safetensors": "trailing",
    "offsets_overlap.safetensors": "overlap",
    "offsets_hole.safetensors": "hole",
    "offsets_first_nonzero.safetensors": "data_offsets",
    "offsets_end_before_begin.safetensors": "data_offsets",
    "offsets_size_mismatch.safetensors": "bytes",
    "offsets_three_elements.safetensors": "data_offsets",
    "offsets_one_element.safetensors": "data_offsets",
    "offsets_negative.safetensors": "data_offsets",
    "shape_overflow.safetensors": "overflow",
    "shape_overflow_bits.safetensors": "overflow",
    "shape_dim_exceeds_u64.safetensors": "64 bits",
    "shape_float.safetensors": "integer",
    "shape_negative.safetensors": "integer",
    "shape_not_array.safetensors": "shape",
    "dtype_unknown.safetensors": "dtype",
    "dtype_lowercase.safetensors": "dtype",
    "dtype_not_string.safetensors": "dtype",
    "dtype_missing.safetensors": "dtype",
    "shape_missing.safetensors": "shape",
    "offsets_missing.safetensors": "data_offsets",
    "entry_not_object.safetensors": "not an object",
    "f4_odd_count.safetensors": "F4",
    "f6_partial_byte.safetensors": "F6_E2M3",
    "duplicate_tensor_name.safetensors": "duplicate",
    "duplicate_metadata.safetensors": "duplicate",
    "metadata_value_not_string.safetensors": "__metadata__",
    "metadata_not_object.safetensors": "__metadata__",
    "nul_padding.safetensors": "NUL",
    "header_trailing_garbage.safetensors": "trailing",
    "header_not_utf8.safetensors": "UTF-8",
    "header_top_level_array.safetensors": "array",
    "header_top_level_string.safetensors": "",
    "header_unterminated.safetensors": "JSON",
    "header_whitespace_only.safetensors": "",
    "random_bytes.safetensors": "",
    "random_header.safetensors": "",
}


# ---------------------------------------------------------------- seeds/

def seed_001(fixed=False):
    """Distillation: float16 teacher, float32 logit projector (seed 001)."""
    H, I, V, SV, SH = 8, 16, 32, 40, 12
    T = []
    t = "teacher."
    T.append(mk(t + "embed_tokens.weight", "F16", [V, H]))
    for i in range(4):
        p = t + "layers.%d." % i
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            T.append(mk(p + "self_attn.%s.weight" % proj, "F16", [H, H]))
        T.append(mk(p + "mlp.gate_proj.weight", "F16", [I, H]))
        T.append(mk(p + "mlp.up_proj.weight", "F16", [I, H]))
        T.append(mk(p + "mlp.down_proj.weight", "F16", [H, I]))
        T.append(mk(p + "input_layernorm.weight", "F16", [H], values=[1.0] * H))
        T.append(mk(p + "post_attention_layernorm.weight", "F16", [H], values=[1.0] * H))
    T.append(mk(t + "norm.weight", "F16", [H], values=[1.0] * H))
    T.append(mk(t + "lm_head.weight", "F16", [V, H]))
    pd = "F16" if fixed else "F32"
    T.append(mk("logit_projector.hidden_projector.weight", pd, [SH, H]))
    T.append(mk("logit_projector.hidden_projector.bias", pd, [SH]))
    T.append(mk("logit_projector.vocab_projector.weight", pd, [SV, V]))
    return serialize(T, {"format": "pt"})


def seed_002(fixed=False):
    """Test-time training: bfloat16 model, float32 TTT states (seed 002)."""
    H, NH, HD, I, V = 16, 2, 8, 32, 32
    T = [mk("embed.weight", "BF16", [V, H])]
    sd = "BF16" if fixed else "F32"
    for i in range(4):
        p = "layers.%d." % i
        for proj in ("wq", "wk", "wv", "wo"):
            T.append(mk(p + "attn.%s.weight" % proj, "BF16", [H, H]))
        T.append(mk(p + "mlp.w1.weight", "BF16", [I, H]))
        T.append(mk(p + "mlp.w2.weight", "BF16", [H, I]))
        T.append(mk(p + "mlp.w3.weight", "BF16", [I, H]))
        T.append(mk(p + "norm.weight", "BF16", [H], values=[1.0] * H))
        T.append(mk(p + "ttt.W1_states", sd, [NH, HD, 4 * HD]))
        T.append(mk(p + "ttt.b1_states", sd, [NH, 1, 4 * HD]))
        T.append(mk(p + "ttt.W2_states", sd, [NH, 4 * HD, HD]))
        T.append(mk(p + "ttt.b2_states", sd, [NH, 1, HD]))
        T.append(mk(p + "ttt.ttt_norm_weight", "BF16", [NH, HD], values=[1.0] * (NH * HD)))
        T.append(mk(p + "ttt.ttt_norm_bias", "BF16", [NH, HD], values=[0.0] * (NH * HD)))
    T.append(mk("norm.weight", "BF16", [H], values=[1.0] * H))
    T.append(mk("output.weight", "BF16", [V, H]))
    return serialize(T, {"format": "pt"})


def seed_003(fixed=False):
    """Higgs audio: bfloat16 LM, float32 audio embeddings/projector (seed 003)."""
    H, I, V, NCB, CBS = 16, 32, 64, 8, 10
    T = [mk("embed_tokens.weight", "BF16", [V, H])]
    for i in range(2):
        p = "layers.%d." % i
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            T.append(mk(p + "self_attn.%s.weight" % proj, "BF16", [H, H]))
        T.append(mk(p + "mlp.gate_proj.weight", "BF16", [I, H]))
        T.append(mk(p + "mlp.up_proj.weight", "BF16", [I, H]))
        T.append(mk(p + "mlp.down_proj.weight", "BF16", [H, I]))
        T.append(mk(p + "input_layernorm.weight", "BF16", [H], values=[1.0] * H))
        T.append(mk(p + "post_attention_layernorm.weight", "BF16", [H], values=[1.0] * H))
    T.append(mk("norm.weight", "BF16", [H], values=[1.0] * H))
    T.append(mk("lm_head.weight", "BF16", [V, H]))
    ad = "BF16" if fixed else "F32"
    T.append(mk("audio_codebook_embeddings.weight", ad, [NCB * CBS, H]))
    T.append(mk("audio_out_embed_projector.weight", ad, [H, H]))
    T.append(mk("audio_out_embed_projector.bias", ad, [H]))
    return serialize(T, {"format": "pt"})


def finding(rule, module, dtype, expected, tensors, severity="warning"):
    return {"rule": rule, "severity": severity, "root": "", "module": module,
            "dtype": dtype, "expected": expected, "tensors": sorted(tensors)}


def seeds_expected():
    ttt = ["W1_states", "b1_states", "W2_states", "b2_states"]
    mixed = [finding("mixed-module", "layers.%d.ttt" % i, "F32", "BF16",
                     ["layers.%d.ttt.%s" % (i, s) for s in ttt]) for i in range(4)]
    return {
        "_comment": ("Expected `dtaudit audit --format json` findings for each seed file "
                     "(default options). findings are sorted by (rule, module); each "
                     "tensors list is sorted. 'exit' is the status with --fail-on warning. "
                     "For mixed-module, dtype is the module's minority floating dtype, "
                     "expected the root's dominant one, and tensors the minority tensors."),
        "files": {
            "001_distill_logit_projector.safetensors": {
                "dominant": "F16", "exit": 1,
                "findings": [finding("dtype-outlier", "logit_projector", "F32", "F16", [
                    "logit_projector.hidden_projector.bias",
                    "logit_projector.hidden_projector.weight",
                    "logit_projector.vocab_projector.weight"])]},
            "001_distill_logit_projector_fixed.safetensors": {
                "dominant": "F16", "exit": 0, "findings": []},
            "002_ttt_mixed.safetensors": {"dominant": "BF16", "exit": 1, "findings": mixed},
            "002_ttt_mixed_fixed.safetensors": {"dominant": "BF16", "exit": 0, "findings": []},
            "003_higgs_audio.safetensors": {
                "dominant": "BF16", "exit": 1,
                "findings": [
                    finding("dtype-outlier", "audio_codebook_embeddings", "F32", "BF16",
                            ["audio_codebook_embeddings.weight"]),
                    finding("dtype-outlier", "audio_out_embed_projector", "F32", "BF16",
                            ["audio_out_embed_projector.bias",
                             "audio_out_embed_projector.weight"])]},
            "003_higgs_audio_fixed.safetensors": {"dominant": "BF16", "exit": 0, "findings": []},
        },
    }


EXAMPLES = {
    "001-distill-f16-teacher-f32-projector.safetensors": "001_distill_logit_projector.safetensors",
    "002-ttt-bf16-model-f32-states.safetensors": "002_ttt_mixed.safetensors",
    "003-higgs-audio-bf16-lm-f32-audio-embed.safetensors": "003_higgs_audio.safetensors",
    "clean-bf16.safetensors": "003_higgs_audio_fixed.safetensors",
}


# ---------------------------------------------------------------- interop/

def interop_files(outdir):
    try:
        import numpy as np
        from safetensors.numpy import save_file
    except ImportError:
        print("note: numpy or safetensors package missing: tests/fixtures/interop/ not regenerated",
              file=sys.stderr)
        return []

    def arr(seed, dtype, shape):
        n = numel(shape)
        dt = np.dtype(dtype)
        if dt.kind == "f" or dt.kind == "c":
            k = n * (2 if dt.kind == "c" else 1)
            v = np.array(det_f32(seed, k), dtype=np.float32)
            if dt.kind == "c":
                return v.view(np.complex64).astype(dt).reshape(shape)
            return v.astype(dt).reshape(shape)
        if dt.kind == "b":
            return (np.frombuffer(det_bytes(seed, n), np.uint8) & 1).astype(bool).reshape(shape)
        raw = np.frombuffer(det_bytes(seed, n * dt.itemsize), dtype=dt.newbyteorder("<"))
        return raw.astype(dt).reshape(shape)

    sets = {
        "np_all_dtypes.safetensors": (
            {("t_" + str(np.dtype(d))): arr("i" + str(d), d, [2, 3]) for d in
             ["bool", "uint8", "int8", "int16", "uint16", "float16", "int32", "uint32",
              "float32", "complex64", "float64", "int64", "uint64"]},
            {"format": "np"}),
        "np_shapes.safetensors": (
            {"scalar": arr("s", "float32", []), "vec": arr("v", "float32", [7]),
             "mat": arr("m", "float16", [3, 5]), "cube": arr("c", "float64", [2, 3, 4]),
             "img": arr("im", "uint8", [1, 3, 4, 4]), "zero": arr("z", "float32", [0]),
             "zero2": arr("z2", "int64", [4, 0]), "long": arr("l", "int32", [1, 1, 1, 1, 1, 2])},
            None),
        "np_model_f32.safetensors": (
            {"encoder.layer.%d.%s" % (i, k): arr("e%d%s" % (i, k), "float32", s)
             for i in range(3) for k, s in (("attention.query.weight", [8, 8]),
                                            ("attention.query.bias", [8]),
                                            ("output.dense.weight", [8, 16]),
                                            ("output.LayerNorm.weight", [8]))},
            {"format": "pt"}),
        "np_mixed_f16_f32.safetensors": (
            {"backbone.conv.weight": arr("bc", "float16", [4, 3, 3, 3]),
             "backbone.bn.running_mean": arr("bm", "float32", [4]),
             "backbone.bn.num_batches_tracked": np.array(7, dtype=np.int64),
             "head.fc.weight": arr("hf", "float16", [10, 4]),
             "head.fc.bias": arr("hb", "float16", [10])},
            {"format": "pt"}),
        "np_unicode_names.safetensors": (
            {"ключ.вес": arr("u1", "float32", [2]), "名前": arr("u2", "float32", [2]),
             'q"uote': arr("u3", "int8", [3]), "back\\slash": arr("u4", "int8", [3])},
            {"format": "np"}),
    }
    os.makedirs(outdir, exist_ok=True)
    out = []
    for fname, (tensors, meta) in sets.items():
        p = os.path.join(outdir, fname)
        save_file(tensors, p, metadata=meta)
        out.append(p)
    return out


# ---------------------------------------------------------------- main

def generate(root):
    fx = os.path.join(root, "tests", "fixtures")
    for sub in ("good", "bad", "seeds"):
        d = os.path.join(fx, sub)
        if os.path.isdir(d):
            for n in os.listdir(d):
                if n.endswith(".safetensors") or n in ("EXPECTED.tsv", "EXPECTED.json"):
                    os.unlink(os.path.join(d, n))
    for name, blob in good_files().items():
        write(os.path.join(fx, "good", name), blob)
    rows = []
    bad = bad_files()
    assert sorted(bad) == sorted(BAD_EXPECT), set(bad) ^ set(BAD_EXPECT)
    for name, blob in sorted(bad.items()):
        write(os.path.join(fx, "bad", name), blob)
        rows.append("%s\t%s\n" % (name, BAD_EXPECT[name]))
    with open(os.path.join(fx, "bad", "EXPECTED.tsv"), "w") as f:
        f.write("# file\tsubstring the one stderr line must contain (case-insensitive; "
                "empty: any); exit status must be 2\n")
        f.writelines(rows)
    seeds = {
        "001_distill_logit_projector.safetensors": seed_001(),
        "001_distill_logit_projector_fixed.safetensors": seed_001(True),
        "002_ttt_mixed.safetensors": seed_002(),
        "002_ttt_mixed_fixed.safetensors": seed_002(True),
        "003_higgs_audio.safetensors": seed_003(),
        "003_higgs_audio_fixed.safetensors": seed_003(True),
    }
    for name, blob in seeds.items():
        write(os.path.join(fx, "seeds", name), blob)
    with open(os.path.join(fx, "seeds", "EXPECTED.json"), "w") as f:
        json.dump(seeds_expected(), f, indent=1, sort_keys=True)
        f.write("\n")
    ex = os.path.join(root, "examples")
    os.makedirs(ex, exist_ok=True)
    for dst, src in EXAMPLES.items():
        write(os.path.join(ex, dst), seeds[src])
    interop_files(os.path.join(fx, "interop"))
    total = 0
    for d in ("good", "bad", "seeds", "interop"):
        p = os.path.join(fx, d)
        if os.path.isdir(p):
            total += sum(os.path.getsize(os.path.join(p, n)) for n in os.listdir(p))
    total += sum(os.path.getsize(os.path.join(ex, n)) for n in EXAMPLES)
    print("fixtures written under %s (%d bytes in all)" % (root, total))


def run(binary, args):
    p = subprocess.run([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(root, binary):
    fx = os.path.join(root, "tests", "fixtures")
    fails = []
    npass = 0

    def fail(what):
        fails.append(what)
        print("FAIL " + what)

    for sub in ("good", "interop"):
        d = os.path.join(fx, sub)
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d)):
            if not n.endswith(".safetensors"):
                continue
            p = os.path.join(d, n)
            rc, out, err = run(binary, ["scan", "--format", "json", p])
            if rc != 0:
                fail("%s/%s: scan exit %d, expected 0: %s" % (sub, n, rc, err.strip()))
                continue
            try:
                json.loads(out)
            except ValueError as e:
                fail("%s/%s: scan output is not JSON: %s" % (sub, n, e))
                continue
            npass += 1
    with open(os.path.join(fx, "bad", "EXPECTED.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            n, sub = (line.rstrip("\n").split("\t") + [""])[:2]
            p = os.path.join(fx, "bad", n)
            rc, out, err = run(binary, ["scan", p])
            lines = err.splitlines()
            if rc != 2:
                fail("bad/%s: exit %d, expected 2 (stderr %r)" % (n, rc, err))
            elif len(lines) != 1:
                fail("bad/%s: %d stderr lines, expected 1: %r" % (n, len(lines), err))
            elif not lines[0].startswith("dtaudit: "):
                fail("bad/%s: stderr does not start with 'dtaudit: ': %r" % (n, lines[0]))
            elif sub.lower() not in lines[0].lower():
                fail("bad/%s: stderr %r lacks %r" % (n, lines[0], sub))
            elif out:
                fail("bad/%s: unexpected stdout %r" % (n, out[:200]))
            else:
                npass += 1
    with open(os.path.join(fx, "seeds", "EXPECTED.json")) as f:
        exp = json.load(f)["files"]
    for n, e in sorted(exp.items()):
        p = os.path.join(fx, "seeds", n)
        rc, out, err = run(binary, ["audit", "--format", "json", p])
        if rc != e["exit"]:
            fail("seeds/%s: exit %d, expected %d (%s)" % (n, rc, e["exit"], err.strip()))
            continue
        try:
            doc = json.loads(out)
        except ValueError as ex:
            fail("seeds/%s: output is not JSON: %s" % (n, ex))
            continue
        keys = ("rule", "severity", "root", "module", "dtype", "expected", "tensors")
        got = sorted(({k: (sorted(x[k]) if k == "tensors" else x.get(k)) for k in keys}
                      for x in doc.get("findings", [])),
                     key=lambda x: (x["rule"], x["module"] or ""))
        want = sorted(e["findings"], key=lambda x: (x["rule"], x["module"]))
        dom = {r.get("name"): r.get("dominant") for r in doc.get("roots", [])}
        if got != want:
            fail("seeds/%s: findings differ\n  expected %s\n  got      %s"
                 % (n, json.dumps(want), json.dumps(got)))
        elif dom.get("") != e["dominant"]:
            fail("seeds/%s: dominant %r, expected %r" % (n, dom.get(""), e["dominant"]))
        else:
            npass += 1
    print("%d passed, %d failed" % (npass, len(fails)))
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.dirname(here), help="repository root")
    ap.add_argument("--check", metavar="DTAUDIT", help="check a dtaudit binary against the fixtures")
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a.root, a.check))
    generate(a.root)


if __name__ == "__main__":
    main()
