"""convert --dequantize against ComfyUI's own dequantization: the committed fixtures in
tests/dequant/comfy (made by tests/dequant/make_comfy_fixtures.py, versions in VERSIONS)
hold a legacy scaled-FP8 file and a comfy_quant float8 file, every weight as torch computes
ComfyUI's qdata.to(target) * scale on the CPU (expected.*), and comfy-kitchen's own
dequantize_per_tensor_fp8 output (kitchen.*). For bf16, f16 and f32 dtaudit's output must
equal expected.* bit for bit (a NaN matching any NaN); against comfy-kitchen's eager CPU
backend, which rounds the F32 scale to the target before multiplying, every element must
be within one unit in the last place and the elements that differ must be exactly the
count recorded in kitchen_diffs.json (none for f32).

The comfy_quant block formats (nvfp4, mxfp8, int8_tensorwise; quantized by comfy-kitchen
itself) the same way: expected.* is dtaudit's documented order computed with torch (nvfp4:
f32(E2M1 x f32(block x global)), comfy-kitchen's CUDA kernel order), bit for bit;
kitchen.* is comfy-kitchen's eager QuantizedTensor.dequantize(): the elements that differ
and the largest distance in ulps must be exactly what kitchen_diffs.json records (mxfp8
and int8: none; nvfp4: none for f32, for bf16/f16 the eager backend's three roundings in
the target). Each input and output audits clean and verify SRC OUT passes; nvfp4_padded
(a weight padded from 40 to 48 columns) is refused, nothing written. Standard library
only.

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


def order(dt, u):
    """the float's place in a monotone integer order (negative values mirrored below 0)"""
    sign = 0x80000000 if dt == "F32" else 0x8000
    return -(u & (sign - 1)) if u & sign else u


def compare(dt, got, want, far=False):
    """(elements that differ, elements more than one ulp apart); with far, (elements that
    differ, the largest distance in ulps)"""
    a, b = words(dt, got), words(dt, want)
    ndiff = nfar = top = 0
    for x, y in zip(a, b):
        if x == y or (is_nan(dt, x) and is_nan(dt, y)):
            continue
        ndiff += 1
        d = 1 << 40 if is_nan(dt, x) or is_nan(dt, y) else abs(order(dt, x) - order(dt, y))
        nfar += d != 1
        top = max(top, d)
    extra = abs(len(a) - len(b))
    return (ndiff + extra, (top if not extra else 1 << 40) if far else nfar + extra)


def run(*args):
    p = subprocess.run([DTAUDIT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def main():
    with open(os.path.join(ROOT, "kitchen_diffs.json")) as f:
        recorded = json.load(f)
    tmp = tempfile.mkdtemp(prefix="dtaudit-comfy-real.")
    try:
        src = os.path.join(tmp, "nvfp4_padded.safetensors")
        shutil.copy(os.path.join(ROOT, "nvfp4_padded.safetensors"), src)
        rc, _, se = run("audit", src)
        check(rc == 0, "nvfp4_padded: audit exit %d %s" % (rc, se))
        out = os.path.join(tmp, "padded-out.safetensors")
        rc, _, se = run("convert", "--to", "bf16", "--dequantize", src, "-o", out)
        check(rc == 1 and "in_features" in se and "attn.to_out.weight" in se and
              not os.path.exists(out), "nvfp4_padded refused: exit %d %s" % (rc, se))
        for case in ("scaled", "mixed", "nvfp4", "mxfp8", "int8"):
            src = os.path.join(tmp, case + ".safetensors")
            shutil.copy(os.path.join(ROOT, case + ".safetensors"), src)
            block = case in ("nvfp4", "mxfp8", "int8")
            if block:
                rc, _, se = run("audit", src)
                check(rc == 0, "%s: audit of the input exit %d %s" % (case, rc, se))
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
                if block:
                    rc, so, se = run("verify", src, out)
                    check(rc == 0, "%s -> %s: verify SRC OUT exit %d %s %s" % (case, target, rc,
                                                                               so, se))
                    rc, so, se = run("audit", out)
                    check(rc == 0, "%s -> %s: audit OUT exit %d %s %s" % (case, target, rc,
                                                                          so, se))
                kit, _ = read_st(os.path.join(ROOT, "%s.kitchen.%s.safetensors" %
                                              (case, target)))
                for name, (wdt, shape, raw) in sorted(kit.items()):
                    g = got.get(name)
                    if g is None:
                        continue
                    want_n = recorded[case][target][name]
                    if isinstance(want_n, dict):
                        ndiff, top = compare(dt, g[2], raw, far=True)
                        check(g[1] == shape and (ndiff, top) ==
                              (want_n["differ"], want_n["max_ulp"]),
                              "%s -> %s: %s against comfy-kitchen: %d elements differ, at most "
                              "%d ulps (recorded %r)" % (case, target, name, ndiff, top, want_n))
                        print("%s -> %s %s: %d of %d elements differ from comfy-kitchen's eager "
                              "backend, at most %d ulps" % (case, target, name, ndiff,
                                                            len(raw) // (4 if dt == "F32" else 2),
                                                            top))
                        continue
                    ndiff, nfar = compare(dt, g[2], raw)
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
