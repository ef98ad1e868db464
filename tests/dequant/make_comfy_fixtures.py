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
eager, which rounds the scale to the target first). VERSIONS records the versions."""
import importlib.metadata
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import comfy_kitchen as ck

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


if __name__ == "__main__":
    main()
