#!/usr/bin/env python3
"""Small quantized checkpoints written by the real quantization libraries (issue 12).

Not run by the tests: it needs torch, transformers and the quantization libraries, which
CI does not install. It was run once in a venv outside the tree (/work/venv-quant, plain
PyPI wheels, CPU only) and its output is committed under tests/fixtures/quant/, one
directory per fixture, with the versions used in tests/fixtures/quant/VERSIONS.txt.
tests/cli/quant_real.sh audits the committed files.

    python gen_real_fixtures.py OUTDIR [NAME...]     # every fixture when none is named

Every fixture starts from the same tiny Llama (transformers LlamaForCausalLM: hidden 64,
intermediate 128, one layer, 2 heads / 1 KV head, vocab 32, untied lm_head, BF16,
seeded), so the names, dtypes and configs are the ones each library writes for a real
model; only the dims are small (each fixture under 64 KiB). Fixtures whose library does
not run here (no CPU path) are skipped with a line on stderr, never faked.
"""
import json
import os
import shutil
import sys
import tempfile
import traceback

import torch

LIMIT = 64 * 1024


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, vocab_size=32,
                      max_position_embeddings=64, tie_word_embeddings=False,
                      dtype="bfloat16")
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for p in m.parameters():  # norms are ones; give every tensor distinct values
            p.add_(torch.randn_like(p) * 0.02)
    return m


def base_dir(tmp):
    """The tiny Llama saved in BF16 (what from_pretrained quantizers start from)."""
    d = os.path.join(tmp, "base")
    if not os.path.isdir(d):
        tiny_llama().save_pretrained(d, safe_serialization=True)
    return d


# ---- compressed-tensors (the library llm-compressor saves with) -------------------------

def ct_fixture(out, preset, fmt=None, group_size=None):
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationConfig, apply_quantization_config,
                                                 preset_name_to_scheme)
    from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam
    m = tiny_llama()
    scheme = preset_name_to_scheme(preset, ["Linear"])
    if group_size:  # the presets' group of 128 does not divide the tiny model's 64 inputs
        scheme.weights.group_size = group_size
    qc = QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    apply_quantization_config(m, qc)
    # what an observer (llm-compressor's MinMax) computes from the weights
    for _, mod in m.named_modules():
        s = getattr(mod, "quantization_scheme", None)
        if s is None or s.weights is None:
            continue
        a, w = s.weights, mod.weight.data.float()
        strategy = str(a.strategy.value if hasattr(a.strategy, "value") else a.strategy)
        gs = None
        if strategy == "tensor_group":
            gs = generate_gparam(w.amin(), w.amax())
            mod.weight_global_scale.data.copy_(gs)
        if strategy in ("group", "tensor_group"):
            g = w.unflatten(-1, (w.shape[-1] // a.group_size, a.group_size))
            mn, mx = g.amin(-1), g.amax(-1)
        elif strategy == "channel":
            mn, mx = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
        elif strategy == "block":
            bo, bi = a.block_structure
            o, i = w.shape
            pad = torch.nn.functional.pad(w, (0, -i % bi, 0, -o % bo))
            b = pad.unflatten(0, (-1, bo)).unflatten(-1, (-1, bi))
            mn, mx = b.amin((1, 3)), b.amax((1, 3))
        elif strategy == "tensor":
            mn, mx = w.amin().reshape(1), w.amax().reshape(1)
        else:
            raise SystemExit("strategy " + strategy)
        sc, zp = calculate_qparams(mn, mx, a, global_scale=gs)
        mod.weight_scale.data.copy_(sc.reshape(mod.weight_scale.shape))
        if hasattr(mod, "weight_zero_point"):
            mod.weight_zero_point.data.copy_(zp.reshape(mod.weight_zero_point.shape))
    comp = ModelCompressor.from_pretrained_model(m, quantization_format=fmt)
    comp.compress_model(m)
    m.save_pretrained(out, safe_serialization=True)
    comp.update_config(out)


# ---- bitsandbytes (transformers' quantizer, CPU backend) --------------------------------

def bnb_fixture(out, tmp, **kw):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    m = AutoModelForCausalLM.from_pretrained(base_dir(tmp), device_map="cpu",
                                             quantization_config=BitsAndBytesConfig(**kw))
    m.save_pretrained(out, safe_serialization=True)


# ---- optimum-quanto -------------------------------------------------------------------

def quanto_fixture(out, weights):
    from optimum.quanto import QuantizedModelForCausalLM, qint4, qint8, qfloat8
    w = {"int8": qint8, "int4": qint4, "float8": qfloat8}[weights]
    qm = QuantizedModelForCausalLM.quantize(tiny_llama(), weights=w, exclude="lm_head")
    qm.save_pretrained(out)


# ---- torchao (transformers' quantizer, safetensors serialization) ------------------------

def torchao_fixture(out, tmp, kind):
    from transformers import AutoModelForCausalLM, TorchAoConfig
    import torchao.quantization as tq
    qt = {"float8": lambda: tq.Float8WeightOnlyConfig(),
          "int8": lambda: tq.Int8WeightOnlyConfig(version=2)}[kind]()
    m = AutoModelForCausalLM.from_pretrained(base_dir(tmp), device_map="cpu", dtype=torch.bfloat16,
                                             quantization_config=TorchAoConfig(quant_type=qt))
    m.save_pretrained(out, safe_serialization=True)


# ---- HQQ (the hqq library's own quantizer and safetensors saver) ---------------------------

def hqq_fixture(out, nbits, group_size):
    """transformers 5 no longer loads HQQ (from_pretrained raises NotImplementedError), so
    the hqq library quantizes (AutoHQQHFModel.quantize_model, CPU) and saves
    (save_to_safetensors: HQQLinear's encoded state dict). Its saver writes config.json
    without a quantization_config; the one transformers 4.x wrote for the same settings
    (HqqConfig(...).to_dict(), skip_modules ["lm_head"]) is added so the checkpoint says
    what it holds, as a transformers-saved HQQ checkpoint does."""
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel
    from transformers import HqqConfig
    m = tiny_llama()
    AutoHQQHFModel.quantize_model(m, quant_config=BaseQuantizeConfig(nbits=nbits, group_size=group_size),
                                  compute_dtype=torch.bfloat16, device="cpu")
    AutoHQQHFModel.save_to_safetensors(m, out, verbose=False)
    p = os.path.join(out, "config.json")
    cfg = json.load(open(p))
    q = HqqConfig(nbits=nbits, group_size=group_size).to_dict()
    q["quant_method"] = "hqq"
    cfg["quantization_config"] = q
    json.dump(cfg, open(p, "w"), indent=2, sort_keys=True)


FIXTURES = {
    "ct-fp8-dynamic": lambda o, t: ct_fixture(o, "FP8_DYNAMIC"),
    "ct-int8-w8a8": lambda o, t: ct_fixture(o, "W8A8"),
    "ct-fp8-block": lambda o, t: ct_fixture(o, "FP8_BLOCK"),
    "ct-mxfp4a16": lambda o, t: ct_fixture(o, "MXFP4A16"),
    "ct-w4a16": lambda o, t: ct_fixture(o, "W4A16", group_size=32),
    "ct-w4a16-asym": lambda o, t: ct_fixture(o, "W4A16_ASYM", group_size=32),
    "ct-nvfp4a16": lambda o, t: ct_fixture(o, "NVFP4A16"),
    "bnb-nf4-dq": lambda o, t: bnb_fixture(o, t, load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_use_double_quant=True,
                                           bnb_4bit_compute_dtype=torch.bfloat16),
    "bnb-fp4": lambda o, t: bnb_fixture(o, t, load_in_4bit=True, bnb_4bit_quant_type="fp4",
                                        bnb_4bit_compute_dtype=torch.bfloat16),
    "bnb-int8": lambda o, t: bnb_fixture(o, t, load_in_8bit=True),
    "quanto-int8": lambda o, t: quanto_fixture(o, "int8"),
    "quanto-int4": lambda o, t: quanto_fixture(o, "int4"),
    "quanto-float8": lambda o, t: quanto_fixture(o, "float8"),
    "torchao-float8": lambda o, t: torchao_fixture(o, t, "float8"),
    "torchao-int8": lambda o, t: torchao_fixture(o, t, "int8"),
    "hqq-4bit": lambda o, t: hqq_fixture(o, 4, 64),
}

KEEP = (".safetensors", ".json")
DROP = ("generation_config.json",)


def main(argv):
    out, names = argv[0], argv[1:] or list(FIXTURES)
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    made = []
    try:
        for n in names:
            d = os.path.join(out, n)
            shutil.rmtree(d, ignore_errors=True)
            try:
                FIXTURES[n](d, tmp)
            except Exception as e:  # report and go on: a library without a CPU path
                traceback.print_exc()
                print("SKIP %s: %s: %s" % (n, type(e).__name__, str(e).splitlines()[0] if str(e) else ""),
                      file=sys.stderr)
                shutil.rmtree(d, ignore_errors=True)
                continue
            for f in os.listdir(d):
                if not f.endswith(KEEP) or f in DROP:
                    os.remove(os.path.join(d, f))
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            if size > LIMIT:
                raise SystemExit("%s: %d bytes, over the %d limit" % (n, size, LIMIT))
            made.append((n, size))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for n, size in made:
        print("%-16s %6d bytes" % (n, size))


if __name__ == "__main__":
    main(sys.argv[1:])
