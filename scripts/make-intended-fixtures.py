#!/usr/bin/env python3
"""Writes the intended-precision fixtures into OUTDIR (tests generate them at test time).

Each fixture has the real tensor names and dtype layout of the release it imitates, tiny
shapes, and (for directories) a config.json with the real model_type / architectures:

  t5-bf16/             T5 saved in bf16, DenseReluDense.wo kept float32 (transformers'
                       _keep_in_fp32_modules = ["wo"])             -> intended
  t5-f16/              the same in fp16                             -> intended
  t5-wo-f16-in-bf16/   a bf16 T5 whose wo is fp16: not a kept dtype -> dtype-outlier
  deepseek-v3-bf16/    DeepSeek-V3 dequantized to bf16: e_score_correction_bias float32
                       beside the bf16 router weight               -> intended
  kimi-k2-bf16/        the same layout under model_type kimi_k2, keyed by
                       architectures ["DeepseekV3ForCausalLM"]       -> intended
  mixtral-f32-router/  Mixtral with a float32 router gate: NOT intended upstream -> warns
  llama-inv-freq.safetensors  fp16 Llama with persisted rotary_emb.inv_freq (float32),
                       no config.json (universal rule)             -> intended
  mamba-bf16.safetensors  Mamba-1 mixers, A_log and D float32, no config.json -> intended
  mamba-extra.safetensors the same plus a float32 tensor no rule covers in one mixer
                       -> mixed-module there (its fix must keep A_log and D)
  wan-transformer/     diffusers Wan component (config _class_name WanTransformer3DModel):
                       time_embedder, scale_shift_table, norm2 float32 -> intended
  openai-clip-f16.safetensors  OpenAI CLIP after convert_weights: LayerNorms, embeddings,
                       logit_scale float32 beside fp16 GEMMs; no config (signature) -> intended
  ttt-policy.json      a policy that declares seed 002's TTT states intended locally

Usage: make-intended-fixtures.py OUTDIR   (needs torch and safetensors)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

g = torch.Generator().manual_seed(13)


def t(shape, dtype):
    return (torch.randn(*shape, generator=g) * 0.05).to(dtype)


def write_dir(path, tensors, config):
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def t5(dtype, wo_dtype):
    d, ff = 8, 16
    s = {"shared.weight": t((32, d), dtype), "lm_head.weight": t((32, d), dtype)}
    for stack, nblocks, ffl in (("encoder", 2, 1), ("decoder", 2, 2)):
        for b in range(nblocks):
            p = "%s.block.%d.layer." % (stack, b)
            for x in "qkvo":
                s[p + "0.SelfAttention.%s.weight" % x] = t((d, d), dtype)
            s[p + "0.layer_norm.weight"] = t((d,), dtype)
            if ffl == 2:
                for x in "qkvo":
                    s[p + "1.EncDecAttention.%s.weight" % x] = t((d, d), dtype)
                s[p + "1.layer_norm.weight"] = t((d,), dtype)
            s[p + "%d.DenseReluDense.wi.weight" % ffl] = t((ff, d), dtype)
            s[p + "%d.DenseReluDense.wo.weight" % ffl] = t((d, ff), wo_dtype)
            s[p + "%d.layer_norm.weight" % ffl] = t((d,), dtype)
        s[stack + ".final_layer_norm.weight"] = t((d,), dtype)
    s["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = t((32, 2), dtype)
    return s


def deepseek(dtype=torch.bfloat16):
    d, ff, nexp = 8, 16, 4
    s = {"model.embed_tokens.weight": t((32, d), dtype), "model.norm.weight": t((d,), dtype),
         "lm_head.weight": t((32, d), dtype)}
    for layer in range(3):
        p = "model.layers.%d." % layer
        s[p + "input_layernorm.weight"] = t((d,), dtype)
        s[p + "post_attention_layernorm.weight"] = t((d,), dtype)
        s[p + "self_attn.q_a_proj.weight"] = t((4, d), dtype)
        s[p + "self_attn.q_a_layernorm.weight"] = t((4,), dtype)
        s[p + "self_attn.q_b_proj.weight"] = t((d, 4), dtype)
        s[p + "self_attn.kv_a_proj_with_mqa.weight"] = t((6, d), dtype)
        s[p + "self_attn.kv_a_layernorm.weight"] = t((4,), dtype)
        s[p + "self_attn.kv_b_proj.weight"] = t((d, 4), dtype)
        s[p + "self_attn.o_proj.weight"] = t((d, d), dtype)
        if layer == 0:
            for x in ("gate_proj", "up_proj"):
                s[p + "mlp.%s.weight" % x] = t((ff, d), dtype)
            s[p + "mlp.down_proj.weight"] = t((d, ff), dtype)
            continue
        s[p + "mlp.gate.weight"] = t((nexp, d), dtype)
        s[p + "mlp.gate.e_score_correction_bias"] = t((nexp,), torch.float32)
        for e in range(nexp):
            for x in ("gate_proj", "up_proj"):
                s[p + "mlp.experts.%d.%s.weight" % (e, x)] = t((ff, d), dtype)
            s[p + "mlp.experts.%d.down_proj.weight" % e] = t((d, ff), dtype)
        for x in ("gate_proj", "up_proj"):
            s[p + "mlp.shared_experts.%s.weight" % x] = t((ff, d), dtype)
        s[p + "mlp.shared_experts.down_proj.weight"] = t((d, ff), dtype)
    return s


def mixtral():
    d, ff, nexp, dt = 8, 16, 4, torch.bfloat16
    s = {"model.embed_tokens.weight": t((32, d), dt), "model.norm.weight": t((d,), dt),
         "lm_head.weight": t((32, d), dt)}
    for layer in range(2):
        p = "model.layers.%d." % layer
        for x in ("q_proj", "k_proj", "v_proj", "o_proj"):
            s[p + "self_attn.%s.weight" % x] = t((d, d), dt)
        s[p + "input_layernorm.weight"] = t((d,), dt)
        s[p + "post_attention_layernorm.weight"] = t((d,), dt)
        s[p + "block_sparse_moe.gate.weight"] = t((nexp, d), torch.float32)
        for e in range(nexp):
            s[p + "block_sparse_moe.experts.%d.w1.weight" % e] = t((ff, d), dt)
            s[p + "block_sparse_moe.experts.%d.w2.weight" % e] = t((d, ff), dt)
            s[p + "block_sparse_moe.experts.%d.w3.weight" % e] = t((ff, d), dt)
    return s


def llama_inv_freq():
    d, ff, dt = 8, 16, torch.float16
    s = {"model.embed_tokens.weight": t((32, d), dt), "model.norm.weight": t((d,), dt),
         "lm_head.weight": t((32, d), dt)}
    for layer in range(4):
        p = "model.layers.%d." % layer
        for x in ("q_proj", "k_proj", "v_proj", "o_proj"):
            s[p + "self_attn.%s.weight" % x] = t((d, d), dt)
        s[p + "self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, 4, 2).float() / 4))
        for x in ("gate_proj", "up_proj"):
            s[p + "mlp.%s.weight" % x] = t((ff, d), dt)
        s[p + "mlp.down_proj.weight"] = t((d, ff), dt)
        s[p + "input_layernorm.weight"] = t((d,), dt)
        s[p + "post_attention_layernorm.weight"] = t((d,), dt)
    return s


def mamba():
    d, inner, state, dt = 8, 16, 4, torch.bfloat16
    s = {"backbone.embeddings.weight": t((32, d), dt), "backbone.norm_f.weight": t((d,), dt),
         "lm_head.weight": t((32, d), dt)}
    for layer in range(3):
        p = "backbone.layers.%d." % layer
        s[p + "norm.weight"] = t((d,), dt)
        s[p + "mixer.in_proj.weight"] = t((2 * inner, d), dt)
        s[p + "mixer.conv1d.weight"] = t((inner, 1, 4), dt)
        s[p + "mixer.conv1d.bias"] = t((inner,), dt)
        s[p + "mixer.x_proj.weight"] = t((2 + 2 * state, inner), dt)
        s[p + "mixer.dt_proj.weight"] = t((inner, 2), dt)
        s[p + "mixer.dt_proj.bias"] = t((inner,), dt)
        s[p + "mixer.A_log"] = torch.log(torch.arange(1, state + 1).float()).repeat(inner, 1)
        s[p + "mixer.D"] = torch.ones(inner)
        s[p + "mixer.out_proj.weight"] = t((d, inner), dt)
    return s


def wan():
    d, dt = 8, torch.bfloat16
    s = {"patch_embedding.weight": t((d, 4, 1, 2, 2), dt), "proj_out.weight": t((16, d), dt),
         "scale_shift_table": t((1, 2, d), torch.float32),
         "condition_embedder.time_embedder.linear_1.weight": t((d, 4), torch.float32),
         "condition_embedder.time_embedder.linear_2.weight": t((d, d), torch.float32),
         "condition_embedder.text_embedder.linear_1.weight": t((d, 16), dt)}
    for b in range(2):
        p = "blocks.%d." % b
        s[p + "scale_shift_table"] = t((1, 6, d), torch.float32)
        s[p + "norm2.weight"] = t((d,), torch.float32)
        for a in ("attn1", "attn2"):
            for x in ("to_q", "to_k", "to_v"):
                s[p + "%s.%s.weight" % (a, x)] = t((d, d), dt)
            s[p + "%s.to_out.0.weight" % a] = t((d, d), dt)
        s[p + "ffn.net.0.proj.weight"] = t((16, d), dt)
        s[p + "ffn.net.2.weight"] = t((d, 16), dt)
    return s


def clip():
    d, dt = 8, torch.float16
    s = {"logit_scale": torch.tensor(4.6), "positional_embedding": t((7, d), torch.float32),
         "token_embedding.weight": t((32, d), torch.float32), "ln_final.weight": t((d,), torch.float32),
         "text_projection": t((d, d), dt), "visual.class_embedding": t((d,), torch.float32),
         "visual.proj": t((d, d), dt), "visual.conv1.weight": t((d, 3, 2, 2), dt)}
    for b in range(2):
        for tower in ("transformer", "visual.transformer"):
            p = "%s.resblocks.%d." % (tower, b)
            s[p + "attn.in_proj_weight"] = t((3 * d, d), dt)
            s[p + "attn.out_proj.weight"] = t((d, d), dt)
            s[p + "ln_1.weight"] = t((d,), torch.float32)
            s[p + "ln_2.weight"] = t((d,), torch.float32)
            s[p + "mlp.c_fc.weight"] = t((4 * d, d), dt)
            s[p + "mlp.c_proj.weight"] = t((d, 4 * d), dt)
    return s


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    bf, h, f32 = torch.bfloat16, torch.float16, torch.float32
    t5cfg = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 8}
    write_dir(os.path.join(out, "t5-bf16"), t5(bf, f32), dict(t5cfg, torch_dtype="bfloat16"))
    write_dir(os.path.join(out, "t5-f16"), t5(h, f32), dict(t5cfg, torch_dtype="float16"))
    write_dir(os.path.join(out, "t5-wo-f16-in-bf16"), t5(bf, h), dict(t5cfg, torch_dtype="bfloat16"))
    write_dir(os.path.join(out, "deepseek-v3-bf16"), deepseek(),
              {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
               "torch_dtype": "bfloat16", "n_routed_experts": 4})
    write_dir(os.path.join(out, "kimi-k2-bf16"), deepseek(),
              {"model_type": "kimi_k2", "architectures": ["DeepseekV3ForCausalLM"],
               "torch_dtype": "bfloat16"})
    write_dir(os.path.join(out, "mixtral-f32-router"), mixtral(),
              {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
               "torch_dtype": "bfloat16"})
    save_file(llama_inv_freq(), os.path.join(out, "llama-inv-freq.safetensors"))
    os.makedirs(os.path.join(out, "wan-transformer"), exist_ok=True)
    save_file(wan(), os.path.join(out, "wan-transformer", "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(out, "wan-transformer", "config.json"), "w") as f:
        json.dump({"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.33.0"}, f)
    save_file(clip(), os.path.join(out, "openai-clip-f16.safetensors"))
    save_file(mamba(), os.path.join(out, "mamba-bf16.safetensors"))
    extra = mamba()
    extra["backbone.layers.1.mixer.extra_scale"] = torch.ones(16)  # float32, in no table
    save_file(extra, os.path.join(out, "mamba-extra.safetensors"))
    with open(os.path.join(out, "ttt-policy.json"), "w") as f:
        json.dump({"version": 1, "description": "our TTT port keeps fast-weight states in fp32",
                   "intended": [{"id": "local.ttt-states", "patterns": ["ttt.*_states"],
                                 "dtypes": ["F32"], "when": "half", "kind": "local",
                                 "why": "TTT fast-weight states updated in fp32 by our trainer",
                                 "evidence": "internal design note"}]}, f, indent=2)


if __name__ == "__main__":
    main()
