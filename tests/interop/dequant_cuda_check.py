"""convert --dequantize on the GPU equals the CPU, on every hostile case of the reference tests.

Runs the four independent-reference scripts (dequant_reference.py: block / per-tensor /
per-row FP8, compressed-tensors; dequant_fp4_reference.py: MXFP4, NVFP4, pack-quantized;
dequant_int_reference.py: bitsandbytes, GPTQ, AWQ; dequant_comfy_reference.py: ComfyUI
scaled FP8 and comfy_quant float8 / nvfp4 / mxfp8 / int8_tensorwise) with their `run`
wrapped: each `convert --dequantize` they make is run twice, `--device cuda` into a twin of
the output and `--device cpu` into the output itself. The exit codes must match and, on
success, the two output trees must be equal file for file, byte for byte. The references
then check the CPU output as they always do. So every boundary the references build (ragged
blocks, zero / subnormal / NaN scales, E8M0 0 and 255, every code, odd packed sizes,
overflow refusals and saturation) is compared on the device.

Usage: dequant_cuda_check.py DTAUDIT. Exit 0 pass, 1 fail, 77 skip (no numpy/torch, CUDA
not built in, or no usable device). DTAUDIT_GPU_CHECK_DEVICE=cpu puts `--device cpu` on
the "GPU" side too: a self-test of this harness on a machine without a GPU.

DTAUDIT_GPU_CHECK_DEVICE=emulate (needs DTAUDIT_DQ_EMULATE, the path of
tests/unit/dq_emulate_tool; no GPU, no CUDA needed): instead of a second conversion, every
source model a reference converts goes once through that tool, which runs the device's
jobs (the packed schemes' stored bytes as dequant_packed.c gathers them for the GPU; a job
of operands decoded on the host fails) and the kernel's per-element function dqb_elem on
the host against the CPU path, to every target and overflow mode, whole and in ranges;
each model must compare equal (or be one dtaudit refuses). So every hostile case of the
references is checked against the kernel's code on any machine."""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DTAUDIT = sys.argv[1]
DEVICE = os.environ.get("DTAUDIT_GPU_CHECK_DEVICE", "cuda")


def probe():
    """None when `--device cuda` dequantizes here, else why not."""
    p = subprocess.run([DTAUDIT, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if b"cuda" not in p.stdout:
        return "CUDA is not built in"
    fixture = os.path.join(HERE, "..", "fixtures", "quant", "ct-fp8-block")
    tmp = tempfile.mkdtemp(prefix="dtaudit-cuda-probe.")
    try:
        p = subprocess.run([DTAUDIT, "convert", "--device", "cuda", "--to", "bf16",
                            "--dequantize", fixture, "-o", os.path.join(tmp, "out")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode == 3:
            return p.stderr.decode(errors="replace").strip()
        if p.returncode != 0:
            return None  # not a device problem: let the comparison report it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


EMULATE = os.environ.get("DTAUDIT_DQ_EMULATE", "")
if DEVICE == "emulate" and not (EMULATE and os.access(EMULATE, os.X_OK)):
    print("skip: DTAUDIT_GPU_CHECK_DEVICE=emulate needs DTAUDIT_DQ_EMULATE (dq_emulate_tool)")
    sys.exit(77)

if DEVICE == "cuda":
    why = probe()
    if why:
        print("skip: no GPU dequantization here: %s" % why)
        sys.exit(77)

import dequant_reference as R  # noqa: E402  (exits 77 itself without numpy/torch)

ORIG_RUN = R.run
COUNTS = {"compared": 0, "outputs": 0, "models": 0}
SEEN = set()


def model_key(src):
    """A source model's identity: its path and every file's size and mtime."""
    if os.path.isfile(src):
        st = os.stat(src)
        return (src, st.st_size, st.st_mtime_ns)
    files = []
    for root, _dirs, names in os.walk(src):
        for fn in names:
            st = os.stat(os.path.join(root, fn))
            files.append((os.path.relpath(os.path.join(root, fn), src), st.st_size,
                          st.st_mtime_ns))
    return (src, tuple(sorted(files)))


def emulate(args):
    """The model a `convert` call reads, through dq_emulate_tool (once per version)."""
    a = list(args[1:])
    k = a.index("-o")
    srcs = [x for x in a[:k] + a[k + 2:] if not x.startswith("-") and os.path.exists(x)]
    if not srcs:
        return
    src = srcs[-1]
    key = model_key(src)
    if key in SEEN:
        return
    SEEN.add(key)
    p = subprocess.run([EMULATE, src], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = p.stdout.decode(errors="replace").strip()
    COUNTS["compared"] += 1
    if "skipped" not in text:
        COUNTS["outputs"] += 1
    R.check(p.returncode == 0, "dq_emulate_tool %s: exit %d: %s" % (src, p.returncode, text))


def tree(path):
    """{relative path: bytes} of a file or directory (empty when absent)."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": f.read()}
    out = {}
    for root, _dirs, files in os.walk(path):
        for fn in files:
            p = os.path.join(root, fn)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
    return out


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def run(*args):
    if not (args and args[0] == "convert" and "--dequantize" in args and "-o" in args and
            "--device" not in args and "--part" not in args):
        return ORIG_RUN(*args)
    if DEVICE == "emulate":
        emulate(args)
        return ORIG_RUN(*args)
    a = list(args[1:])
    k = a.index("-o")
    out = a[k + 1]
    twin = out + ".gpu-twin"
    remove(twin)
    if os.path.isdir(out):  # a case about an existing output: the twin starts the same
        shutil.copytree(out, twin, symlinks=True)
    elif os.path.lexists(out):
        shutil.copy2(out, twin, follow_symlinks=False)
    g = list(a)
    g[k + 1] = twin
    rg, _sg, eg = ORIG_RUN("convert", "--device", DEVICE, *g)
    rc, so, se = ORIG_RUN("convert", "--device", "cpu", *a)
    label = "convert %s" % " ".join(os.path.basename(x) for x in a)
    COUNTS["compared"] += 1
    R.check(rg == rc, "%s: --device %s exit %d, --device cpu exit %d: %s" %
            (label, DEVICE, rg, rc, eg.strip()))
    if rg == rc == 0:
        COUNTS["outputs"] += 1
        tg, tc = tree(twin), tree(out)
        R.check(sorted(tg) == sorted(tc), "%s: files differ: %s vs %s" %
                (label, sorted(tg), sorted(tc)))
        for name in sorted(set(tg) & set(tc)):
            R.check(tg[name] == tc[name], "%s: %s differs between --device %s and cpu" %
                    (label, name or os.path.basename(out), DEVICE))
    remove(twin)
    return rc, so, se


R.run = run
import dequant_fp4_reference as F  # noqa: E402  (binds R.run, now the wrapper)
import dequant_int_reference as I  # noqa: E402
import dequant_comfy_reference as C  # noqa: E402


def main():
    for mod in (R, F, I, C):
        try:
            mod.main()
        except SystemExit:
            pass
    if DEVICE == "emulate":
        print("GPU check (emulated on the host): %d source models through dq_emulate_tool, "
              "%d dequantized and compared" % (COUNTS["compared"], COUNTS["outputs"]))
    else:
        print("GPU check (--device %s): %d conversions compared with --device cpu, %d with "
              "output" % (DEVICE, COUNTS["compared"], COUNTS["outputs"]))
    if COUNTS["outputs"] == 0:
        R.check(False, "no conversion compared")
    print("%d passed, %d failed" % (R.PASSES[0], len(R.FAILS)))
    sys.exit(1 if R.FAILS else 0)


if __name__ == "__main__":
    main()
