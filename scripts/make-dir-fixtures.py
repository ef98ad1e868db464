#!/usr/bin/env python3
"""Writes the model-directory fixtures in tests/fixtures/dirs/ with real torch and safetensors.

    python3 scripts/make-dir-fixtures.py [OUTDIR]      (default: tests/fixtures/dirs)

Needs torch and safetensors (scripts/setup --tests installs them). The tensors are tiny
and seeded, so the files are small and the same on every run.

Sections:
  bf16-base/            a tiny causal LM in bfloat16: model.safetensors + config.json
                        ("torch_dtype": "bfloat16"), the base of the adapters below
  peft-f32-adapter/     a PEFT LoRA adapter saved in float32 over that base (what PEFT does by
                        default, and what fooled the training service of seed 004):
                        adapter_config.json + adapter_model.safetensors
  peft-bf16-adapter/    the same adapter in bfloat16, saved by torch.save as adapter_model.bin
  diff/old.bin          a bfloat16 state dict written by torch.save (zip format)
  diff/same.safetensors the same tensors written by safetensors: no drift against old.bin
  diff/new.safetensors  drifted: a module upcast to float32, a resized embedding, a tensor
                        removed and one added
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "dirs")

HIDDEN, VOCAB, LAYERS, RANK = 16, 32, 2, 4


def tiny_lm(dtype):
    g = torch.Generator().manual_seed(4)
    sd = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=g)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{proj}.weight"] = torch.randn(HIDDEN, HIDDEN, generator=g)
        sd[p + "input_layernorm.weight"] = torch.ones(HIDDEN)
        sd[p + "self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, 4, 2).float() / 4))
    sd["model.norm.weight"] = torch.ones(HIDDEN)
    sd["lm_head.weight"] = torch.randn(VOCAB, HIDDEN, generator=g)
    return {k: v.to(dtype).contiguous() for k, v in sd.items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def section_base():
    d = os.path.join(OUT, "bf16-base")
    os.makedirs(d, exist_ok=True)
    save_file(tiny_lm(torch.bfloat16), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "torch_dtype": "bfloat16"})


def lora(dtype):
    g = torch.Generator().manual_seed(5)
    sd = {}
    for i in range(LAYERS):
        for proj in ("q_proj", "v_proj"):
            p = f"base_model.model.model.layers.{i}.self_attn.{proj}."
            sd[p + "lora_A.weight"] = torch.randn(RANK, HIDDEN, generator=g)
            sd[p + "lora_B.weight"] = torch.zeros(HIDDEN, RANK)
    return {k: v.to(dtype).contiguous() for k, v in sd.items()}


def adapter_config(base):
    # the keys PEFT 0.13's LoraConfig writes (abridged)
    return {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base,
            "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
            "lora_alpha": 16, "lora_dropout": 0.05, "modules_to_save": None, "peft_type": "LORA",
            "r": RANK, "rank_pattern": {}, "revision": None,
            "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM",
            "use_dora": False, "use_rslora": False}


def section_adapters():
    d = os.path.join(OUT, "peft-f32-adapter")
    os.makedirs(d, exist_ok=True)
    save_file(lora(torch.float32), os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "adapter_config.json"), adapter_config("example/tiny-llama-bf16"))
    d = os.path.join(OUT, "peft-bf16-adapter")
    os.makedirs(d, exist_ok=True)
    torch.save(lora(torch.bfloat16), os.path.join(d, "adapter_model.bin"))
    write_json(os.path.join(d, "adapter_config.json"), adapter_config("example/tiny-llama-bf16"))


def section_diff():
    d = os.path.join(OUT, "diff")
    os.makedirs(d, exist_ok=True)
    old = tiny_lm(torch.bfloat16)
    torch.save(old, os.path.join(d, "old.bin"))
    save_file(old, os.path.join(d, "same.safetensors"))
    new = dict(old)
    for i in range(LAYERS):  # a module upcast to float32 in every layer
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            k = f"model.layers.{i}.self_attn.{proj}.weight"
            new[k] = new[k].float()
    new["model.embed_tokens.weight"] = torch.zeros(VOCAB + 8, HIDDEN, dtype=torch.bfloat16)
    del new["lm_head.weight"]  # tied to the embedding now
    new["model.norm.bias"] = torch.zeros(HIDDEN, dtype=torch.float32)
    save_file(new, os.path.join(d, "new.safetensors"))


if __name__ == "__main__":
    section_base()
    section_adapters()
    section_diff()
    for root, _, files in os.walk(OUT):  # safetensors creates its files 0600
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    print("wrote", os.path.normpath(OUT))
