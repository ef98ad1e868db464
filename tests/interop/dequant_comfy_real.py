"""convert --dequantize against ComfyUI's own dequantization: the committed fixtures in
tests/dequant/comfy (made by tests/dequant/make_comfy_fixtures.py, versions in VERSIONS)
hold a legacy scaled-FP8 file and a comfy_quant file, every weight as torch computes
ComfyUI's qdata.to(target) * scale on the CPU (expected.*), and comfy-kitchen's own
dequantize_per_tensor_fp8 output (kitchen.*). For bf16, f16 and f32 dtaudit's output must
equal expected.* bit for bit (a NaN matching any NaN); against comfy-kitchen's eager CPU
backend, which rounds the F32 scale to the target before multiplying, every element must
be within one unit in the last place and the elements that differ must be exactly the
count recorded in kitchen_diffs.json (none for f32). Standard library only.

Usage: dequant_comfy_real.py DTAUDIT FIXTURE_DIR. Exit 0 pass, 1 fail."""
import array
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

DTAUDIT, ROOT = sys.argv[1], sys.argv[2]
FAILS, PASSES = [], [0]


def check(cond, what):
    if cond:
        PASSES[0] += 1
    else:
        FAILS.append(what)
        print("FAIL: " + what)


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:
                                              8 + n + v["data_offsets"][1]])
            for k, v in hdr.items()}, meta


def words(dt, raw):
    a = array.array("I" if dt == "F32" else "H")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def is_nan(dt, u):
    if dt == "F32":
        return (u & 0x7FFFFFFF) > 0x7F800000
    return (u & 0x7FFF) > (0x7F80 if dt == "BF16" else 0x7C00)


def compare(dt, got, want):
    """(elements that differ, elements more than one ulp apart)"""
    a, b = words(dt, got), words(dt, want)
    ndiff = nfar = 0
    for x, y in zip(a, b):
        if x == y or (is_nan(dt, x) and is_nan(dt, y)):
            continue
        ndiff += 1
        nfar += is_nan(dt, x) or is_nan(dt, y) or abs(x - y) != 1
    return ndiff + abs(len(a) - len(b)), nfar + abs(len(a) - len(b))


def main():
    with open(os.path.join(ROOT, "kitchen_diffs.json")) as f:
        recorded = json.load(f)
    tmp = tempfile.mkdtemp(prefix="dtaudit-comfy-real.")
    try:
        for case in ("scaled", "mixed"):
            src = os.path.join(tmp, case + ".safetensors")
            shutil.copy(os.path.join(ROOT, case + ".safetensors"), src)
            for target in ("bf16", "f16", "f32"):
                dt = target.upper()
                out = os.path.join(tmp, "%s-%s.safetensors" % (case, target))
                p = subprocess.run([DTAUDIT, "convert", "--to", target, "--dequantize",
                                    "--verify", src, "-o", out],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                check(p.returncode == 0, "%s -> %s: exit %d %s" % (case, target, p.returncode,
                                                                    p.stderr.decode()))
                if p.returncode != 0:
                    continue
                got, meta = read_st(out)
                check(meta == {"format": "pt"}, "%s -> %s: __metadata__ %r" % (case, target,
                                                                                 meta))
                want, _ = read_st(os.path.join(ROOT, "%s.expected.%s.safetensors" %
                                               (case, target)))
                check(sorted(got) == sorted(want), "%s -> %s: tensors %s" %
                      (case, target, sorted(set(got) ^ set(want))))
                for name, (wdt, shape, raw) in sorted(want.items()):
                    g = got.get(name)
                    ok = g is not None and g[0] == wdt == dt and g[1] == shape
                    check(ok and compare(dt, g[2], raw) == (0, 0),
                          "%s -> %s: %s differs from torch's qdata.to(%s) * scale (%s)" %
                          (case, target, name, target, ok and compare(dt, g[2], raw)))
                kit, _ = read_st(os.path.join(ROOT, "%s.kitchen.%s.safetensors" %
                                              (case, target)))
                for name, (wdt, shape, raw) in sorted(kit.items()):
                    g = got.get(name)
                    if g is None:
                        continue
                    ndiff, nfar = compare(dt, g[2], raw)
                    want_n = recorded[case][target][name]
                    check(nfar == 0 and ndiff == want_n,
                          "%s -> %s: %s against comfy-kitchen: %d elements differ (recorded "
                          "%d), %d by more than one ulp" % (case, target, name, ndiff, want_n,
                                                            nfar))
                    if target == "bf16":
                        print("%s %s: %d of %d elements one BF16 ulp from comfy-kitchen's "
                              "eager CPU backend" % (case, name, ndiff, len(raw) // 2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (PASSES[0], len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
