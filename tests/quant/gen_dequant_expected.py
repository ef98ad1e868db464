"""Expected dequantized bytes of the real-library quantized fixtures (tests/fixtures/quant),
computed by the libraries themselves, for tests/cli/dequant_real.sh (which needs none of
them): bitsandbytes' own dequantize_4bit (QuantState.from_dict of the saved tensors, CPU
backend) and its int8 dequantization (torch.ops.bitsandbytes.int8_vectorwise_dequant, or
transformers' dequantize_bnb_weight), then Tensor.to(target) as transformers does. Writes
tests/fixtures/quant/dequant_expected.json: per fixture, target and tensor, the SHA-256
of the little-endian output bytes, plus the library versions.

Usage (in a venv with bitsandbytes, torch, safetensors, transformers):
  python tests/quant/gen_dequant_expected.py tests/fixtures/quant [OUT.json]"""
import hashlib
import json
import os
import platform
import sys

import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
import safetensors
from safetensors import safe_open

ROOT = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "dequant_expected.json")
TARGETS = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def digest(t):
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()
                          if t.dtype != torch.bfloat16 else
                          t.contiguous().view(torch.int16).numpy().tobytes()).hexdigest()


def bnb4(f, keys):
    out = {}
    for k in keys:
        if ".quant_state.bitsandbytes__" not in k:
            continue
        base = k.split(".quant_state.")[0]  # "...weight"
        qs = {kk[len(base) + 1:]: f.get_tensor(kk) for kk in keys if kk.startswith(base + ".")}
        qs_state = F.QuantState.from_dict(qs, device=torch.device("cpu"))
        w = F.dequantize_4bit(f.get_tensor(base), qs_state)  # in quant_state.dtype
        out[base] = w
    return out


def bnb8(f, keys):
    out = {}
    for k in keys:
        if not k.endswith(".SCB"):
            continue
        base = k[:-len(".SCB")]
        q, scb = f.get_tensor(base + ".weight"), f.get_tensor(k)
        try:
            w = torch.ops.bitsandbytes.int8_vectorwise_dequant(q, scb)
            how = "torch.ops.bitsandbytes.int8_vectorwise_dequant"
        except Exception:  # pragma: no cover
            from transformers.integrations.bitsandbytes import dequantize_bnb_weight
            w = dequantize_bnb_weight(torch.nn.Parameter(q, requires_grad=False), torch.float32,
                                      type("S", (), {"SCB": scb})())
            how = "transformers dequantize_bnb_weight"
        out[base + ".weight"] = w.float()
    return out, how


def main():
    res = {"generator": "tests/quant/gen_dequant_expected.py",
           "versions": {"python": platform.python_version(), "torch": torch.__version__,
                        "bitsandbytes": bnb.__version__,
                        "safetensors": safetensors.__version__},
           "fixtures": {}}
    for name, kind in (("bnb-nf4-dq", 4), ("bnb-fp4", 4), ("bnb-int8", 8)):
        path = os.path.join(ROOT, name, "model.safetensors")
        with safe_open(path, "pt") as f:
            keys = list(f.keys())
            if kind == 4:
                vals, how = bnb4(f, keys), "bitsandbytes.functional.dequantize_4bit"
            else:
                vals, how = bnb8(f, keys)
        ent = {"reference": how + ", then Tensor.to(target)", "tensors": {}}
        for tname, tgt in TARGETS.items():
            ent["tensors"][tname] = {k: {"shape": list(v.shape), "sha256": digest(v.to(tgt))}
                                     for k, v in sorted(vals.items())}
        res["fixtures"][name] = ent
    with open(OUT, "w") as fo:
        json.dump(res, fo, indent=1, sort_keys=True)
        fo.write("\n")


if __name__ == "__main__":
    main()
