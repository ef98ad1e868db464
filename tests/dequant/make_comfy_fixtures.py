"""Generates tests/dequant/comfy/*: small ComfyUI scaled-FP8 files and what ComfyUI's own
code makes of them, for tests/cli/dequant_comfy.sh.

Run with a Python that has torch >= 2.1 (float8 dtypes) and comfy-kitchen (the fixtures
are committed; CI does not run this):

    PYTHONPATH=/path/to/comfy-kitchen /work/venv-quant/bin/python \
        tests/dequant/make_comfy_fixtures.py tests/dequant/comfy

scaled.safetensors: a legacy "scaled fp8" file (shared/quant.md 10.1) as ComfyUI writes it:
a scaled_fp8 marker per model prefix (an empty tensor of the weights' float8 dtype), per
layer weight F8_E4M3 / F8_E5M2 (every code, NaN and inf included), an F32 0-dim
scale_weight, scale_input; one layer with a BF16 scale, one with a per-row [out, 1] F32
scale (a zero and a subnormal row), a plain BF16 tensor. mixed.safetensors: comfy_quant
markers (U8 JSON) over float8_e4m3fn / float8_e5m2 layers with 0-dim F32 weight_scale.

expected.<target>.safetensors (bf16, f16, f32): every weight as torch computes
qdata.to(target) * scale on the CPU (the form of ComfyUI's comfy/quant_ops.py
TensorCoreFP8Layout.dequantize @0411153, shared/quant.md 10.1: a 0-dim F32 scale, the
product in f32, rounded once; the [out, 1] layer: qdata.to(float32) * scale, then
.to(target)); the
plain tensor as Tensor.to(target). kitchen.<target>.safetensors: the per-tensor layers
through comfy-kitchen's own dequantize_per_tensor_fp8 (the backend it picks on the CPU:
eager, which rounds the scale to the target first). nvfp4 / mxfp8 / int8 (.safetensors,
.expected.*, .kitchen.*) and nvfp4_padded.safetensors: comfy_quant block formats quantized
by comfy-kitchen itself (block_formats() below). VERSIONS records the versions."""
import dataclasses
import importlib.metadata
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import comfy_kitchen as ck
from comfy_kitchen.float_utils import e8m0_to_f32, from_blocked
from comfy_kitchen.tensor import QuantizedTensor

OUT = sys.argv[1]
rng = np.random.default_rng(2027)
F8 = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
TARGETS = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def codes(shape, dt):
    n = int(np.prod(shape))
    c = rng.integers(0, 256, n, dtype=np.uint8)
    if n >= 256:
        c[:256] = np.arange(256, dtype=np.uint8)
    return torch.from_numpy(c).view(F8[dt]).reshape(shape)


def scale(shape, dt=torch.float32):
    s = torch.from_numpy(np.asarray(rng.random(shape) * 0.01 + 1e-4, np.float32))
    return s.to(dt)


def main():
    os.makedirs(OUT, exist_ok=True)
    P, T = "model.diffusion_model.", "text_encoders.t5xxl."
    scaled = {P + "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn),
              T + "scaled_fp8": torch.empty(0, dtype=torch.float8_e5m2)}
    layers = []  # (file, weight name, scale name, per_tensor)
    for name, shape, dt, sdt in (
            (P + "double_blocks.0.img_attn.qkv", (48, 64), "F8_E4M3", torch.float32),
            (P + "double_blocks.0.img_mlp.0", (40, 48), "F8_E4M3", torch.float32),
            (P + "double_blocks.0.img_mlp.2", (32, 40), "F8_E4M3", torch.bfloat16),
            (T + "encoder.block.0.layer.0.SelfAttention.q", (32, 48), "F8_E5M2",
             torch.float32)):
        scaled[name + ".weight"] = codes(shape, dt)
        scaled[name + ".scale_weight"] = scale((), sdt)
        scaled[name + ".scale_input"] = torch.tensor(1.0)
        layers.append(("scaled", name + ".weight", name + ".scale_weight", True))
    row = P + "double_blocks.1.img_attn.proj"
    scaled[row + ".weight"] = codes((24, 32), "F8_E4M3")
    s = scale((24, 1))
    s[0, 0] = 0.0
    s[1, 0] = 1e-40
    scaled[row + ".scale_weight"] = s
    layers.append(("scaled", row + ".weight", row + ".scale_weight", False))
    plain = P + "final_layer.linear.weight"
    scaled[plain] = torch.from_numpy(rng.standard_normal((16, 24)).astype(np.float32)).to(
        torch.bfloat16)

    mixed = {}
    A, B = "diffusion_model.blocks.0.attn.to_q", "diffusion_model.blocks.0.attn.to_k"
    for name, dt, fmt in ((A, "F8_E4M3", "float8_e4m3fn"), (B, "F8_E5M2", "float8_e5m2")):
        mixed[name + ".weight"] = codes((32, 64), dt)
        mixed[name + ".weight_scale"] = scale(())
        mixed[name + ".input_scale"] = scale(())
        mixed[name + ".comfy_quant"] = torch.tensor(list(json.dumps({"format": fmt}).encode()),
                                                    dtype=torch.uint8)
        layers.append(("mixed", name + ".weight", name + ".weight_scale", True))
    files = {"scaled": scaled, "mixed": mixed}
    for f, sd in files.items():
        save_file(sd, os.path.join(OUT, f + ".safetensors"), metadata={"format": "pt"})

    diffs = {}
    for tname, tdt in TARGETS.items():
        for f, sd in files.items():
            exp, kit = {}, {}
            for lf, w, s, per_tensor in layers:
                if lf != f:
                    continue
                q, sc = sd[w], sd[s]
                if per_tensor:
                    exp[w] = q.to(tdt) * sc.to(torch.float32)
                    kit[w] = ck.dequantize_per_tensor_fp8(q, sc.to(torch.float32), tdt)
                    a, b = exp[w].view(-1), kit[w].view(-1)
                    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
                    diffs.setdefault(f, {}).setdefault(tname, {})[w] = int((~same).sum())
                else:
                    exp[w] = (q.to(torch.float32) * sc.to(torch.float32)).to(tdt)
            if f == "scaled":
                exp[plain] = sd[plain].to(tdt)
            save_file(exp, os.path.join(OUT, "%s.expected.%s.safetensors" % (f, tname)))
            save_file(kit, os.path.join(OUT, "%s.kitchen.%s.safetensors" % (f, tname)))
    block_formats(diffs)
    with open(os.path.join(OUT, "kitchen_diffs.json"), "w") as fh:
        json.dump(diffs, fh, indent=1, sort_keys=True)
        fh.write("\n")
    import safetensors
    with open(os.path.join(OUT, "VERSIONS"), "w") as fh:
        fh.write("generated by tests/dequant/make_comfy_fixtures.py with\n")
        fh.write("comfy-kitchen %s (its backend on the CPU: eager)\n" %
                 importlib.metadata.version("comfy-kitchen"))
        fh.write("torch %s\nsafetensors %s\nnumpy %s\n" % (
            torch.__version__, safetensors.__version__, np.__version__))


def ulps(dt, a, b):
    """(elements that differ, the largest distance in units in the last place) of two
    tensors of dtype dt, a NaN matching any NaN"""
    w = {torch.float32: torch.int32, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}[dt]
    x = a.contiguous().view(w).to(torch.int64).view(-1)
    y = b.contiguous().view(w).to(torch.int64).view(-1)
    bits = 32 if dt == torch.float32 else 16
    sign = 1 << (bits - 1)
    # monotone integer order of the floats: negative values mirrored below zero
    mx = torch.where(x & sign != 0, -(x & (sign - 1)), x & (sign - 1))
    my = torch.where(y & sign != 0, -(y & (sign - 1)), y & (sign - 1))
    nan = torch.isnan(a.view(-1)) & torch.isnan(b.view(-1))
    d = torch.where(nan, torch.zeros_like(mx), (mx - my).abs())
    return int((d != 0).sum()), int(d.max()) if d.numel() else 0


def layer_sd(qt, name, extra):
    sd = {k: v for k, v in qt.state_dict(name + ".weight").items()}
    mk = json.dumps(extra).encode()
    sd[name + ".comfy_quant"] = torch.tensor(list(mk), dtype=torch.uint8)
    return sd


def block_formats(diffs):
    """comfy_quant nvfp4, mxfp8 and int8_tensorwise layers quantized by comfy-kitchen itself
    (QuantizedTensor.from_float, its CPU backend: eager), one file per format.

    <f>.kitchen.<target>: comfy-kitchen's own dequantization (QuantizedTensor.dequantize(),
    the eager backend on the CPU, cropped to the original shape as ComfyUI crops it).
    <f>.expected.<target>: what dtaudit computes, written here with torch in f32: nvfp4
    f32(f32(block) x weight_scale_2) x E2M1 rounded once to the target (the order of
    comfy-kitchen's CUDA kernel dequantize_nvfp4_kernel, read in source, and of its eager
    backend for F32); mxfp8 f32(E4M3) x 2^(u-127) (u = 0: 0, as comfy-kitchen's
    e8m0_to_f32), rounded once; int8 f32(q) x scale rounded once (the eager backend's
    q.float() * scale, then .to(target)). kitchen_diffs.json records per weight and target
    how many elements comfy-kitchen's eager output differs in and by how many ulps at most.
    """
    rng2 = np.random.default_rng(4242)
    torch.manual_seed(4242)

    def data(shape, zero_block=None, tiny_rows=0):
        x = torch.from_numpy(rng2.standard_normal(shape).astype(np.float32) * 0.05)
        if zero_block is not None:
            r, c0, c1 = zero_block
            x[r, c0:c1] = 0.0
        if tiny_rows:  # rows whose block scales are E4M3 subnormals
            x[-tiny_rows:] *= 1e-4
        return x.to(torch.bfloat16)

    files = {"nvfp4": {}, "mxfp8": {}, "int8": {}, "nvfp4_padded": {}}
    layers = []  # (file, name, qt, orig shape)
    P = "diffusion_model.blocks.0."
    for f, name, layout, shape, kw, extra in (
            # rows > 128 (two swizzle tiles), in/16 = 3 (not a multiple of 4), a zero block,
            # subnormal block scales
            ("nvfp4", P + "attn.to_q", "TensorCoreNVFP4Layout", (136, 48),
             dict(zero_block=(5, 16, 32), tiny_rows=3), {"format": "nvfp4"}),
            ("nvfp4", P + "attn.to_k", "TensorCoreNVFP4Layout", (32, 64), {},
             {"format": "nvfp4"}),
            # 20 rows padded to 32: ComfyUI crops to out_features, the bias's length (to_q's
            # 136 rows are padded to 144 the same way; to_k has no bias: its last row shows
            # it is not padding)
            ("nvfp4", P + "attn.to_v", "TensorCoreNVFP4Layout", (20, 48), {},
             {"format": "nvfp4"}),
            # 40 columns padded to 48: the original width is not in the file (refused)
            ("nvfp4_padded", P + "attn.to_out", "TensorCoreNVFP4Layout", (32, 40), {},
             {"format": "nvfp4"}),
            # in/32 = 2 scale columns (not a multiple of 4), rows > 128, a zero block
            ("mxfp8", P + "ff.net.0.proj", "TensorCoreMXFP8Layout", (136, 64),
             dict(zero_block=(7, 32, 64)), {"format": "mxfp8"}),
            ("mxfp8", P + "ff.net.2", "TensorCoreMXFP8Layout", (32, 96), {},
             {"format": "mxfp8"}),
            ("int8", P + "proj_in", "TensorWiseINT8Layout", (48, 64), {},
             {"format": "int8_tensorwise"}),
            ("int8", P + "proj_out", "TensorWiseINT8Layout", (40, 64), {"per_channel": True},
             {"format": "int8_tensorwise"})):
        dkw = {k: v for k, v in kw.items() if k in ("zero_block", "tiny_rows")}
        qkw = {k: v for k, v in kw.items() if k not in dkw}
        x = data(shape, **dkw)
        qt = QuantizedTensor.from_float(x, layout, **qkw)
        files[f].update(layer_sd(qt, name, extra))
        if name.endswith(("to_q", "to_v", "net.0.proj")):  # out_features not padded
            files[f][name + ".bias"] = torch.from_numpy(
                rng2.standard_normal(shape[0]).astype(np.float32)).to(torch.bfloat16)
        layers.append((f, name, qt, shape))
    for f, sd in files.items():
        save_file(sd, os.path.join(OUT, f + ".safetensors"), metadata={"format": "pt"})
    lut = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                        -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
    for tname, tdt in TARGETS.items():
        for f in ("nvfp4", "mxfp8", "int8"):
            exp, kit = {}, {}
            for lf, name, qt, shape in layers:
                if lf != f:
                    continue
                w = name + ".weight"
                p = qt._params
                q = qt._qdata
                if f == "nvfp4":
                    codes = torch.stack([q >> 4, q & 15], -1).view(q.shape[0], -1).long()
                    rows, cols = codes.shape
                    bs = from_blocked(p.block_scale, rows, cols // 16).to(torch.float32)
                    s = bs * p.scale.to(torch.float32)  # f32(block x global)
                    y = lut[codes] * s.repeat_interleave(16, 1)
                elif f == "mxfp8":
                    rows, cols = q.shape
                    u = from_blocked(p.scale.view(torch.uint8), rows, cols // 32)
                    s = e8m0_to_f32(u)
                    y = q.to(torch.float32) * s.repeat_interleave(32, 1)
                else:
                    y = q.to(torch.float32) * p.scale.to(torch.float32)
                exp[w] = y[:shape[0], :shape[1]].to(tdt).contiguous()
                qk = QuantizedTensor(q, qt._layout_cls, dataclasses.replace(p, orig_dtype=tdt))
                with ck.use_backend("eager"):
                    kit[w] = qk.dequantize().contiguous()
                assert kit[w].dtype == tdt and tuple(kit[w].shape) == shape
                n, m = ulps(tdt, exp[w], kit[w])
                diffs.setdefault(f, {}).setdefault(tname, {})[w] = {"differ": n, "max_ulp": m}
            for k, v in files[f].items():  # the biases: Tensor.to(target)
                if k.endswith(".bias"):
                    exp[k] = v.to(tdt)
            save_file(exp, os.path.join(OUT, "%s.expected.%s.safetensors" % (f, tname)))
            save_file(kit, os.path.join(OUT, "%s.kitchen.%s.safetensors" % (f, tname)))


if __name__ == "__main__":
    main()
