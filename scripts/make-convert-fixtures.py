#!/usr/bin/python3
"""Write the conversion fixtures in tests/fixtures/convert/ with real PyTorch (CPU).

Run with Debian's python3 (python3-torch, torch 1.13):
    /usr/bin/python3 scripts/make-convert-fixtures.py
tests/unit/test_convert.c compares dta_convert's output with these bytes (NaN-ness only for
NaNs: torch's vector path writes 0xFFFF for a bf16 NaN, its scalar path 0x7FC0).

Every file is raw little-endian elements, no header:
  f32_in.bin        65536 float32: specials, bf16/f16 ties and boundaries, random bits
  f32_to_bf16.bin   torch: t.to(torch.bfloat16)
  f32_to_f16.bin    torch: t.to(torch.float16)
  f64_in.bin        16384 float64: double-rounding cases, f32 ties, specials, random bits
  f64_to_f32.bin / f64_to_bf16.bin / f64_to_f16.bin
  f16_all_to_bf16.bin   the 65536 float16 codes 0..65535 in order, to bfloat16
  bf16_all_to_f16.bin   the 65536 bfloat16 codes 0..65535 in order, to float16
float8 sources do not exist in torch 1.13; the unit test checks them against docs/formats.md 5.
"""
import os
import struct
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "convert")
rng = np.random.default_rng(20240611)


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f32_inputs():
    special = [
        0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000,
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000,
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F7EFFFF,
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x00000001, 0x80000001, 0x00008000,
        0x00018000, 0x00007FFF, 0x00010000, 0x007FFFFF, 0x00800000, 0x00808000,
        f32bits(65504.0), f32bits(65519.99), f32bits(65520.0), f32bits(-65520.0),
        f32bits(2.0 ** -24), f32bits(2.0 ** -25), f32bits(3 * 2.0 ** -26), f32bits(-(2.0 ** -25)),
        f32bits(2.0 ** -14), f32bits(2.0 ** -15), f32bits(1.0 + 2.0 ** -11),
        f32bits(1.0 + 3 * 2.0 ** -11), f32bits(448.0), f32bits(57344.0), f32bits(65536.0),
    ]
    n = 65536
    parts = [np.array(special, dtype=np.uint32)]
    k = (n - len(special)) // 8
    # uniformly random bit patterns (about 0.4% NaN)
    parts.append(rng.integers(0, 2**32, size=3 * k, dtype=np.uint64).astype(np.uint32))
    # exact bf16 ties and their neighbours
    hi = rng.integers(0, 2**16, size=k, dtype=np.uint64).astype(np.uint32) << 16
    parts.append(hi | (0x8000 + rng.integers(-1, 2, size=k)).astype(np.uint32))
    # values in the float16 range (normal and subnormal), random bits
    e = rng.integers(127 - 27, 127 + 17, size=2 * k).astype(np.uint32)
    m = rng.integers(0, 2**23, size=2 * k, dtype=np.uint64).astype(np.uint32)
    s = rng.integers(0, 2, size=2 * k).astype(np.uint32) << 31
    parts.append(s | (e << 23) | m)
    # exact float16 ties (13 low bits 0x1000) in and below the normal range
    e = rng.integers(127 - 26, 127 + 16, size=k).astype(np.uint32)
    m = (rng.integers(0, 2**10, size=k).astype(np.uint32) << 13) | 0x1000
    parts.append((e << 23) | m)
    a = np.concatenate(parts)
    rest = n - len(a)
    a = np.concatenate([a, rng.integers(0, 2**32, size=rest, dtype=np.uint64).astype(np.uint32)])
    assert len(a) == n
    return a


def f64_inputs():
    n = 16384
    special = [
        1.0, -0.0, 0.0, float("inf"), -float("inf"), float("nan"), 1e300, -1e300, 1e-300,
        3.4028234663852886e38, 3.4028235677973366e38, 3.4028235677973362e38,
        2.0 ** -149, 2.0 ** -150, 1.5 * 2.0 ** -150, 2.0 ** -151, 1.0 + 2.0 ** -24,
        1.0 + 3 * 2.0 ** -24, 1.0 + 2.0 ** -8 + 2.0 ** -30, 1.0 + 2.0 ** -11 + 2.0 ** -30,
        65519.999, 65520.0, 2.0 ** -25 + 2.0 ** -60,
    ]
    bits = [struct.unpack("<Q", struct.pack("<d", x))[0] for x in special]
    bits += [0x7FF0000000000001, 0xFFF8000000000001, 0x7FF4000000000000]
    parts = [np.array(bits, dtype=np.uint64)]
    k = (n - len(bits)) // 4
    # random bit patterns
    parts.append(rng.integers(0, 2**64 - 1, size=k, dtype=np.uint64))
    # double-rounding cases: an exact bf16 or f16 tie in f32, nudged by a tiny f64 amount
    for low in (0x8000, 0x1000):
        hi = rng.integers(0, 2**31, size=k // 2, dtype=np.uint64)
        if low == 0x1000:  # keep the f16 ones within the f16 range
            e = rng.integers(127 - 24, 127 + 16, size=k // 2, dtype=np.uint64)
            hi = (e << np.uint64(23)) | (rng.integers(0, 2**10, size=k // 2, dtype=np.uint64) << np.uint64(13))
        else:
            hi = hi & np.uint64(0x7FFF0000)
            hi[hi >= np.uint64(0x7F800000)] = np.uint64(0x3F800000)
        f = (hi | np.uint64(low)).astype(np.uint32).view(np.float32).astype(np.float64)
        nudge = rng.choice(np.array([-1, 1], dtype=np.float64), size=k // 2)
        parts.append((f + nudge * np.abs(f) * 2.0 ** -40).view(np.uint64))
        parts.append(f.view(np.uint64))
    a = np.concatenate(parts)
    a = np.concatenate([a, rng.integers(0, 2**64 - 1, size=n - len(a), dtype=np.uint64)])
    assert len(a) == n
    return a


def to(arr_bits, src_dtype, dst_dtype, view_np):
    t = torch.from_numpy(arr_bits.copy()).view(src_dtype)
    out = t.to(dst_dtype)
    return out.view(view_np[0]).numpy().astype(view_np[1])


def main():
    os.makedirs(OUT, exist_ok=True)
    print("torch", torch.__version__, file=sys.stderr)
    f32 = f32_inputs().view(np.int32)
    f32.astype("<i4").tofile(os.path.join(OUT, "f32_in.bin"))
    to(f32, torch.float32, torch.bfloat16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "f32_to_bf16.bin"))
    to(f32, torch.float32, torch.float16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "f32_to_f16.bin"))

    f64 = f64_inputs().view(np.int64)
    f64.astype("<i8").tofile(os.path.join(OUT, "f64_in.bin"))
    to(f64, torch.float64, torch.float32, (torch.int32, "<i4")).tofile(os.path.join(OUT, "f64_to_f32.bin"))
    to(f64, torch.float64, torch.bfloat16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "f64_to_bf16.bin"))
    to(f64, torch.float64, torch.float16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "f64_to_f16.bin"))

    codes = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16)
    to(codes, torch.float16, torch.bfloat16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "f16_all_to_bf16.bin"))
    to(codes, torch.bfloat16, torch.float16, (torch.int16, "<i2")).tofile(os.path.join(OUT, "bf16_all_to_f16.bin"))


if __name__ == "__main__":
    main()
