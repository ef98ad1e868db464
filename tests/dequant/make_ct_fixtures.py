"""Generates tests/dequant/ct/*: small compressed-tensors checkpoints and what
compressed-tensors' own decompressors make of them, for tests/cli/dequant_ct_real.sh.

Run with a Python that has compressed-tensors (the fixtures are committed; CI does not
run this):

    /work/venv-quant/bin/python tests/dequant/make_ct_fixtures.py tests/dequant/ct

Each case directory holds config.json and model.safetensors (the compressed tensors: codes
packed by compressed-tensors' own pack_to_int32, random BF16 scales, packed zero points,
random FP4 codes and F8_E4M3 block scales; MXFP4: E8M0 exponent scales, 0, 1, 252
and 255 among them) and expected.safetensors: every parameter as
PackedQuantizationCompressor / NVFP4PackedCompressor / MXFP4PackedCompressor.decompress
return it
(BF16), under the plain weight name. VERSIONS records the library versions used."""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import compressed_tensors
from compressed_tensors.compressors.mxfp4.base import MXFP4PackedCompressor
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

OUT = sys.argv[1]
g = torch.Generator().manual_seed(2026)


def rand_scale(shape):
    s = torch.rand(shape, generator=g) * 0.02 + 1e-4
    s.view(-1)[0] = 0.0
    return s.to(torch.bfloat16)


def pack_case(o, n, bits, group, symmetric):
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric,
                            strategy="group" if group else "channel", group_size=group)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = torch.randint(lo, hi + 1, (o, n), generator=g, dtype=torch.int8)
    G = n // group if group else 1
    sd = {"weight_packed": pack_to_int32(q, bits),
          "weight_scale": rand_scale((o, G)),
          "weight_shape": torch.tensor([o, n])}
    if not symmetric:
        z = torch.randint(lo, hi + 1, (o, G), generator=g, dtype=torch.int8)
        sd["weight_zero_point"] = pack_to_int32(z, bits, packed_dim=0).contiguous()
    out = PackedQuantizationCompressor.decompress(dict(sd), scheme)
    w = {"num_bits": bits, "type": "int", "symmetric": symmetric,
         "strategy": "group" if group else "channel", "group_size": group}
    return sd, out["weight"], w, "pack-quantized"


def nvfp4_case(o, n):
    args = QuantizationArgs(num_bits=4, type="float", symmetric=True,
                            strategy="tensor_group", group_size=16)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    packed = torch.randint(0, 256, (o, n // 2), generator=g, dtype=torch.uint8)
    packed.view(-1)[:256] = torch.arange(256, dtype=torch.uint8)
    bs = torch.randint(0, 256, (o, n // 16), generator=g, dtype=torch.uint8)
    bs[(bs & 0x7F) == 0x7F] = 0x38  # no NaN block scales
    bs.view(-1)[:3] = torch.tensor([0x00, 0x01, 0x80], dtype=torch.uint8)
    sd = {"weight_packed": packed,
          "weight_scale": bs.view(torch.float8_e4m3fn),
          "weight_global_scale": torch.tensor([448.0 * 6.0 / 3.7], dtype=torch.float32)}
    out = NVFP4PackedCompressor.decompress(dict(sd), scheme)
    w = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group",
         "group_size": 16}
    return sd, out["weight"], w, "nvfp4-pack-quantized"


def mxfp4_case(o, n):
    args = QuantizationArgs(num_bits=4, type="float", symmetric=True, strategy="group",
                            group_size=32)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    packed = torch.randint(0, 256, (o, n // 2), generator=g, dtype=torch.uint8)
    packed.view(-1)[:256] = torch.arange(256, dtype=torch.uint8)
    # E8M0 exponents: 0 (2^-127), 1, 252 (the largest whose products stay finite) and 255
    # (2^128 = inf in the library), the rest around 2^0
    e = torch.randint(112, 140, (o, n // 32), generator=g, dtype=torch.uint8)
    e.view(-1)[:4] = torch.tensor([0, 1, 252, 255], dtype=torch.uint8)
    sd = {"weight_packed": packed, "weight_scale": e}
    out = MXFP4PackedCompressor.decompress(dict(sd), scheme)
    w = {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "group",
         "group_size": 32, "scale_dtype": "torch.uint8"}
    return sd, out["weight"], w, "mxfp4-pack-quantized"


CASES = {
    "w4a16-group-asym": lambda: pack_case(24, 128, 4, 32, False),
    "w4a16-channel": lambda: pack_case(16, 96, 4, None, True),
    "w8a16-group": lambda: pack_case(12, 64, 8, 32, True),
    "nvfp4": lambda: nvfp4_case(32, 64),
    "mxfp4": lambda: mxfp4_case(24, 128),
}


def main():
    for case, make in CASES.items():
        sd, weight, wargs, fmt = make()
        d = os.path.join(OUT, case)
        os.makedirs(d, exist_ok=True)
        name = "model.layers.0.mlp.down_proj"
        tensors = {name + "." + k: v.contiguous() for k, v in sd.items()}
        save_file(tensors, os.path.join(d, "model.safetensors"), {"format": "pt"})
        save_file({name + ".weight": weight.contiguous()},
                  os.path.join(d, "expected.safetensors"), {"format": "pt"})
        qc = {"quant_method": "compressed-tensors", "format": fmt,
              "quantization_status": "compressed",
              "config_groups": {"group_0": {"targets": ["Linear"], "weights": wargs}}}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "llama", "torch_dtype": "bfloat16",
                       "quantization_config": qc}, f, indent=1)
    import safetensors
    with open(os.path.join(OUT, "VERSIONS"), "w") as f:
        f.write("generated by tests/dequant/make_ct_fixtures.py with\n")
        f.write("compressed-tensors %s\ntorch %s\nsafetensors %s\nnumpy %s\n" %
                (compressed_tensors.__version__, torch.__version__, safetensors.__version__,
                 np.__version__))


if __name__ == "__main__":
    main()
