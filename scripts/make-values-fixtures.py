#!/usr/bin/env python3
"""Writes tests/fixtures/values/*.safetensors: small checkpoints for the audit --values
golden tests (tests/cli/golden/cases). Plain Python (struct), no torch or numpy needed, so
the bytes do not depend on a library version.

  boundaries.safetensors  one module per case, f32/f64/bf16/f16 sources:
    model.layers.{0..2}.mlp.up.weight   f32 with NaN, +-inf, values above f16's range
                                        (65520 is the first that overflows; 65519.99
                                        rounds to 65504), tiny values that flush in f16
    model.embed.weight                  bf16, ordinary weights (nothing to report)
    model.norm.weight                   f16 with subnormals and a NaN
    model.head.weight                   f64: 65519.999999999 rounds (via f32) to 65520
    model.ids                           i64 (not read)
"""
import json
import math
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "values")
os.makedirs(out, exist_ok=True)


def f32(v):
    return struct.pack("<f", v)


def f32bits(b):
    return struct.pack("<I", b)


def bf16_of(v):  # exact for the values used (bf16-representable)
    return struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:]


def f16(v):
    return struct.pack("<e", v)


nan, inf = float("nan"), float("inf")
tensors = []  # (name, dtype, shape, bytes)
ordinary = [0.5, -0.25, 1.0, 0.125, -2.0, 3.0, 0.0625, -0.75]
l0 = ordinary * 2 + [nan, inf, -inf, 70000.0, -1e5, 65520.0, 65519.99, 1e-9]
tensors.append(("model.layers.0.mlp.up.weight", "F32", [len(l0)], b"".join(f32(v) for v in l0)))
l1 = ordinary * 4 + [66000.0]
tensors.append(("model.layers.1.mlp.up.weight", "F32", [len(l1)], b"".join(f32(v) for v in l1)))
l2 = ordinary + [2.0 ** -25, 2.0 ** -26, 3e-8, 1e-10, 2.0 ** -24]
tensors.append(("model.layers.2.mlp.up.weight", "F32", [len(l2)], b"".join(f32(v) for v in l2)))
tensors.append(("model.embed.weight", "BF16", [4, 4], b"".join(bf16_of(v) for v in ordinary * 2)))
nrm = [1.0, 1.0, 2.0 ** -24, 2.0 ** -20, -(2.0 ** -15), nan, 0.0, 1.0]
tensors.append(("model.norm.weight", "F16", [len(nrm)], b"".join(f16(v) for v in nrm)))
hd = [0.5, 65519.999999999, -65519.9, 1e-300, 1.0]
tensors.append(("model.head.weight", "F64", [len(hd)], b"".join(struct.pack("<d", v) for v in hd)))
tensors.append(("model.ids", "I64", [3], struct.pack("<3q", 1, 2, 3)))

header, data = {}, b""
for name, dt, shape, raw in tensors:
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(out, "boundaries.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
