"""convert --dequantize against compressed-tensors' own decompressors: the committed
fixtures in tests/dequant/ct (made by tests/dequant/make_ct_fixtures.py, library versions
in tests/dequant/ct/VERSIONS) hold compressed checkpoints (pack-quantized, nvfp4- and
mxfp4-pack-quantized) and the library's decompressed weights; dtaudit's BF16 output must
equal them byte for byte (a NaN matching any NaN), and verify must pass.
Standard library only (no numpy/torch needed).

Usage: dequant_ct_real.py DTAUDIT FIXTURE_DIR. Exit 0 pass, 1 fail."""
import array
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

DTAUDIT, ROOT = sys.argv[1], sys.argv[2]


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    hdr.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:
                                              8 + n + v["data_offsets"][1]])
            for k, v in hdr.items()}


def same_bf16(got, want, dt):
    """Byte for byte, except that any BF16 NaN matches any NaN (the library's 0 x inf of an
    E8M0 255 scale is 0xFFFF, dtaudit writes torch's 0x7FC0)."""
    if got == want or dt != "BF16" or len(got) != len(want):
        return got == want
    a, b = array.array("H", got), array.array("H", want)
    return all(x == y or ((x & 0x7FFF) > 0x7F80 and (y & 0x7FFF) > 0x7F80) for x, y in zip(a, b))


def main():
    fails = passes = 0
    tmp = tempfile.mkdtemp(prefix="dtaudit-ct-real.")
    try:
        cases = sorted(c for c in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, c)))
        if not cases:
            print("FAIL: no fixtures in %s" % ROOT)
            return 1
        for case in cases:
            src = os.path.join(tmp, case)
            shutil.copytree(os.path.join(ROOT, case), src)
            want = read_st(os.path.join(src, "expected.safetensors"))
            os.remove(os.path.join(src, "expected.safetensors"))
            out = os.path.join(tmp, case + "-out")
            p = subprocess.run([DTAUDIT, "convert", "--to", "bf16", "--dequantize", "--verify",
                                src, "-o", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode != 0:
                print("FAIL: %s: exit %d %s" % (case, p.returncode, p.stderr.decode()))
                fails += 1
                continue
            got = read_st(os.path.join(out, "model.safetensors"))
            for name, (dt, shape, raw) in want.items():
                g = got.get(name)
                if g is None or g[0] != dt or g[1] != shape or not same_bf16(g[2], raw, dt):
                    print("FAIL: %s: %s differs from compressed-tensors' decompression (%s)"
                          % (case, name, g and (g[0], g[1], len(g[2]))))
                    fails += 1
                else:
                    passes += 1
            extra = sorted(set(got) - set(want))
            if extra:
                print("FAIL: %s: extra tensors %s" % (case, extra))
                fails += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passes, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
