#!/usr/bin/env python3
"""Quantized checkpoint layouts for the tests and the benchmark (shared/quant.md).

Each layout is a model directory with the real tensor names, dtypes and shapes of a
published release (or its exact rules at smaller dims), a config.json (or sidecar) as the
producing library writes it, and safetensors files whose headers are real and whose data
are sparse zeros (files are truncated to size, so even DeepSeek-V3 dims cost no disk).

    make_layouts.py OUTDIR [LAYOUT...]        # every layout when none is named
    make_layouts.py --bench OUTDIR            # 163-shard DeepSeek-V3 FP8 + the same BF16

Broken variants are derived from the correct ones: LAYOUT+VARIANT, e.g.
deepseek-v3+missing-companion. Only the standard library is used.
"""
import json
import math
import os
import struct
import sys

ELSIZE = {"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U8": 1, "I8": 1, "BF16": 2, "F16": 2,
          "F32": 4, "I32": 4, "I64": 8, "BOOL": 1}


def cdiv(a, b):
    return (a + b - 1) // b


def write_st(path, tensors, metadata=None):
    """tensors: list of (name, dtype, shape). Data are sparse zeros."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = ELSIZE[dt] * math.prod(shape)
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + off)


def write_model(d, tensors, config=None, shards=1, sidecars=None, metadata=None):
    os.makedirs(d, exist_ok=True)
    if config is not None:
        json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    for name, doc in (sidecars or {}).items():
        json.dump(doc, open(os.path.join(d, name), "w"), indent=2)
    if shards == 1:
        write_st(os.path.join(d, "model.safetensors"), tensors, metadata or {"format": "pt"})
        return
    per = cdiv(len(tensors), shards)
    wm, total = {}, 0
    for s in range(shards):
        part = tensors[s * per:(s + 1) * per]
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        write_st(os.path.join(d, fn), part, metadata or {"format": "pt"})
        for name, dt, shape in part:
            wm[name] = fn
            total += ELSIZE[dt] * math.prod(shape)
    json.dump({"metadata": {"total_size": total}, "weight_map": wm},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=1)


# ---- DeepSeek-V3 / R1 block FP8 (quant.md §2.2: real per-layer shapes) ------------------

DSV3_FULL = dict(H=7168, layers=61, dense=3, experts=256, inter=18432, moe_inter=2048,
                 q_lora=1536, kv_lora=512, heads=128, vocab=129280)
DSV3_SMALL = dict(H=7168, layers=4, dense=1, experts=4, inter=18432, moe_inter=2048,
                  q_lora=1536, kv_lora=512, heads=128, vocab=1024)
# the same rules at dims small enough to convert in a test (ragged grids kept: 160 rows)
DSV3_TINY = dict(H=256, layers=2, dense=1, experts=2, inter=384, moe_inter=128,
                 q_lora=192, kv_lora=96, heads=2, vocab=512)


def fp8_block(name, out, inp, scale_dt="F32", blk=128):
    return [(name + ".weight", "F8_E4M3", [out, inp]),
            (name + ".weight_scale_inv", scale_dt, [cdiv(out, blk), cdiv(inp, blk)])]


def deepseek_v3(dims, fp8=True):
    H, t = dims["H"], []
    lin = fp8_block if fp8 else (lambda n, o, i, *a: [(n + ".weight", "BF16", [o, i])])
    t.append(("model.embed_tokens.weight", "BF16", [dims["vocab"], H]))
    for L in range(dims["layers"]):
        p = "model.layers.%d." % L
        t.append((p + "input_layernorm.weight", "BF16", [H]))
        t.append((p + "post_attention_layernorm.weight", "BF16", [H]))
        a = p + "self_attn."
        t += lin(a + "q_a_proj", dims["q_lora"], H)
        t.append((a + "q_a_layernorm.weight", "BF16", [dims["q_lora"]]))
        t += lin(a + "q_b_proj", dims["heads"] * 192, dims["q_lora"])
        t += lin(a + "kv_a_proj_with_mqa", dims["kv_lora"] + 64, H)
        t.append((a + "kv_a_layernorm.weight", "BF16", [dims["kv_lora"]]))
        t += lin(a + "kv_b_proj", dims["heads"] * 256, dims["kv_lora"])
        t += lin(a + "o_proj", H, dims["heads"] * 128)
        m = p + "mlp."
        if L < dims["dense"]:
            t += lin(m + "gate_proj", dims["inter"], H)
            t += lin(m + "up_proj", dims["inter"], H)
            t += lin(m + "down_proj", H, dims["inter"])
            continue
        t.append((m + "gate.weight", "BF16", [dims["experts"], H]))
        t.append((m + "gate.e_score_correction_bias", "F32", [dims["experts"]]))
        for e in range(dims["experts"]):
            x = m + "experts.%d." % e
            t += lin(x + "gate_proj", dims["moe_inter"], H)
            t += lin(x + "up_proj", dims["moe_inter"], H)
            t += lin(x + "down_proj", H, dims["moe_inter"])
        t += lin(m + "shared_experts.gate_proj", dims["moe_inter"], H)
        t += lin(m + "shared_experts.up_proj", dims["moe_inter"], H)
        t += lin(m + "shared_experts.down_proj", H, dims["moe_inter"])
    t.append(("model.norm.weight", "BF16", [H]))
    t.append(("lm_head.weight", "BF16", [dims["vocab"], H]))
    return t


DSV3_CONFIG = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
               "torch_dtype": "bfloat16",
               "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                       "quant_method": "fp8", "weight_block_size": [128, 128]}}


def layout_deepseek_v3(d, dims=DSV3_SMALL, shards=2):
    write_model(d, deepseek_v3(dims), DSV3_CONFIG, shards=shards)


# ---- Qwen3 FP8 (dense, BF16 scale_inv, modules_to_not_convert) -----------------------------

def layout_qwen3_fp8(d):
    H, I, t = 2048, 6144, []
    t.append(("model.embed_tokens.weight", "BF16", [4096, H]))
    for L in range(2):
        p = "model.layers.%d." % L
        t += [(p + "input_layernorm.weight", "BF16", [H]),
              (p + "post_attention_layernorm.weight", "BF16", [H]),
              (p + "self_attn.q_norm.weight", "BF16", [128]),
              (p + "self_attn.k_norm.weight", "BF16", [128])]
        for n, o, i in (("q_proj", 2048, H), ("k_proj", 1024, H), ("v_proj", 1024, H),
                        ("o_proj", H, 2048)):
            t += fp8_block(p + "self_attn." + n, o, i, "BF16")
        for n, o, i in (("gate_proj", I, H), ("up_proj", I, H), ("down_proj", H, I)):
            t += fp8_block(p + "mlp." + n, o, i, "BF16")
    t += [("model.norm.weight", "BF16", [H]), ("lm_head.weight", "BF16", [4096, H])]
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "torch_dtype": "bfloat16",
           "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                   "quant_method": "fp8", "weight_block_size": [128, 128],
                                   "modules_to_not_convert": ["lm_head", "model.embed_tokens"]}}
    write_model(d, t, cfg)


# ---- Llama FP8 from llm-compressor (compressed-tensors float-quantized, channel) ----------

def llama_layers(H, I, L, lin, extra=None):
    t = [("model.embed_tokens.weight", "BF16", [2048, H])]
    for n in range(L):
        p = "model.layers.%d." % n
        t += [(p + "input_layernorm.weight", "BF16", [H]),
              (p + "post_attention_layernorm.weight", "BF16", [H])]
        for m, o, i in (("self_attn.q_proj", H, H), ("self_attn.k_proj", H // 4, H),
                        ("self_attn.v_proj", H // 4, H), ("self_attn.o_proj", H, H),
                        ("mlp.gate_proj", I, H), ("mlp.up_proj", I, H), ("mlp.down_proj", H, I)):
            t += lin(p + m, o, i)
    t += [("model.norm.weight", "BF16", [H]), ("lm_head.weight", "BF16", [2048, H])]
    return t


def layout_llama_fp8_ct(d):
    lin = lambda n, o, i: [(n + ".weight", "F8_E4M3", [o, i]), (n + ".weight_scale", "BF16", [o, 1])]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
           "quantization_config": {
               "quant_method": "compressed-tensors", "format": "float-quantized",
               "quantization_status": "compressed", "ignore": ["lm_head"],
               "config_groups": {"group_0": {
                   "targets": ["Linear"], "input_activations": {
                       "num_bits": 8, "type": "float", "strategy": "token", "dynamic": True,
                       "symmetric": True},
                   "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                               "dynamic": False, "symmetric": True}}}}}
    write_model(d, llama_layers(512, 1536, 2, lin), cfg)


# ---- gpt-oss MXFP4 (quant.md §8) ---------------------------------------------------------

def layout_gpt_oss(d):
    H, I, E, t = 2880, 2880, 4, []
    t.append(("model.embed_tokens.weight", "BF16", [2048, H]))
    for L in range(2):
        p = "model.layers.%d." % L
        t += [(p + "input_layernorm.weight", "BF16", [H]),
              (p + "post_attention_layernorm.weight", "BF16", [H]),
              (p + "self_attn.sinks", "BF16", [64])]
        for n, o in (("q_proj", 4096), ("k_proj", 512), ("v_proj", 512)):
            t += [(p + "self_attn.%s.weight" % n, "BF16", [o, H]), (p + "self_attn.%s.bias" % n, "BF16", [o])]
        t += [(p + "self_attn.o_proj.weight", "BF16", [H, 4096]), (p + "self_attn.o_proj.bias", "BF16", [H])]
        t += [(p + "mlp.router.weight", "BF16", [E, H]), (p + "mlp.router.bias", "BF16", [E])]
        x = p + "mlp.experts."
        t += [(x + "gate_up_proj_blocks", "U8", [E, 2 * I, H // 32, 16]),
              (x + "gate_up_proj_scales", "U8", [E, 2 * I, H // 32]),
              (x + "gate_up_proj_bias", "BF16", [E, 2 * I]),
              (x + "down_proj_blocks", "U8", [E, H, I // 32, 16]),
              (x + "down_proj_scales", "U8", [E, H, I // 32]),
              (x + "down_proj_bias", "BF16", [E, H])]
    t += [("model.norm.weight", "BF16", [H]), ("lm_head.weight", "BF16", [2048, H])]
    cfg = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
               "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
               "lm_head"]}}
    write_model(d, t, cfg)


# ---- ModelOpt NVFP4 (quant.md §9) --------------------------------------------------------

def layout_nvfp4(d):
    def lin(n, o, i):
        return [(n + ".weight", "U8", [o, i // 2]), (n + ".weight_scale", "F8_E4M3", [o, i // 16]),
                (n + ".weight_scale_2", "F32", []), (n + ".input_scale", "F32", [])]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                   "producer": {"name": "modelopt", "version": "0.35.0"},
                                   "ignore": ["lm_head"],
                                   "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                       "num_bits": 4, "type": "float", "group_size": 16}}}}}
    side = {"hf_quant_config.json": {"producer": {"name": "modelopt", "version": "0.35.0"},
                                     "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None,
                                                      "group_size": 16, "exclude_modules": ["lm_head"]}}}
    write_model(d, llama_layers(512, 1536, 2, lin), cfg, sidecars=side)


def layout_llama4_nvfp4(d):
    """Llama-4-Scout (H 5120, expert dim 8192, 16 experts) through ModelOpt's NVFP4 export:
    Linear layers as in layout_nvfp4; the bmm expert stacks (Llama4TextExperts, in memory
    [E, in, out]) are quantized transposed and transposed back
    (unified_export_hf._export_quantized_weight, maybe_transpose_expert_weight_dimensions),
    so on disk the codes are [E, in/2, out] and the block scales [E, in/16, out], named
    after the stack with quantizer_attr_names' '_' suffixes; one weight quantizer per stack:
    weight_scale_2 and input_scale are scalars."""
    H, I, E, V = 5120, 8192, 16, 2048

    def lin(n, o, i):
        return [(n + ".weight", "U8", [o, i // 2]), (n + ".weight_scale", "F8_E4M3", [o, i // 16]),
                (n + ".weight_scale_2", "F32", []), (n + ".input_scale", "F32", [])]

    def stack(n, i, o):
        return [(n, "U8", [E, i // 2, o]), (n + "_weight_scale", "F8_E4M3", [E, i // 16, o]),
                (n + "_weight_scale_2", "F32", []), (n + "_input_scale", "F32", [])]
    t = [("language_model.model.embed_tokens.weight", "BF16", [V, H])]
    for L in range(2):
        p = "language_model.model.layers.%d." % L
        t += [(p + "input_layernorm.weight", "BF16", [H]),
              (p + "post_attention_layernorm.weight", "BF16", [H])]
        for m, o, i in (("q_proj", 5120, H), ("k_proj", 1024, H), ("v_proj", 1024, H), ("o_proj", H, 5120)):
            t += lin(p + "self_attn." + m, o, i)
        f = p + "feed_forward."
        t += [(f + "router.weight", "BF16", [E, H])]
        t += stack(f + "experts.gate_up_proj", H, 2 * I) + stack(f + "experts.down_proj", I, H)
        for m, o, i in (("gate_proj", I, H), ("up_proj", I, H), ("down_proj", H, I)):
            t += lin(f + "shared_expert." + m, o, i)
    t += [("language_model.model.norm.weight", "BF16", [H]), ("language_model.lm_head.weight", "BF16", [V, H])]
    excl = ["language_model.lm_head", "language_model.model.layers.*.feed_forward.router"]
    cfg = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
           "text_config": {"model_type": "llama4_text", "hidden_size": H, "intermediate_size": I,
                           "num_local_experts": E, "torch_dtype": "bfloat16"},
           "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                   "producer": {"name": "modelopt", "version": "0.35.0"}, "ignore": excl,
                                   "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                       "num_bits": 4, "type": "float", "group_size": 16}}}}}
    side = {"hf_quant_config.json": {"producer": {"name": "modelopt", "version": "0.35.0"},
                                     "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None,
                                                      "group_size": 16, "exclude_modules": excl}}}
    write_model(d, t, cfg, shards=2, sidecars=side)


# ---- bitsandbytes 4-bit NF4, double quantization (quant.md §5.1) --------------------------

def layout_bnb_nf4(d):
    def lin(n, o, i):
        nb = cdiv(o * i, 64)
        w = n + ".weight"
        return [(w, "U8", [cdiv(o * i, 2), 1]), (w + ".absmax", "U8", [nb]),
                (w + ".quant_map", "F32", [16]), (w + ".nested_absmax", "F32", [cdiv(nb, 256)]),
                (w + ".nested_quant_map", "F32", [256]),
                (w + ".quant_state.bitsandbytes__nf4", "U8", [180])]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
           "quantization_config": {
               "_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "bfloat16",
               "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
               "bnb_4bit_use_double_quant": True, "llm_int8_enable_fp32_cpu_offload": False,
               "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
               "llm_int8_threshold": 6.0, "load_in_4bit": True, "load_in_8bit": False,
               "quant_method": "bitsandbytes"}}
    write_model(d, llama_layers(512, 1536, 2, lin), cfg)


# ---- GPTQ 4-bit group 128 (quant.md §6) ---------------------------------------------------

def layout_gptq(d):
    def lin(n, o, i):
        G = cdiv(i, 128)
        return [(n + ".qweight", "I32", [i // 8, o]), (n + ".qzeros", "I32", [G, o // 8]),
                (n + ".scales", "F16", [G, o]), (n + ".g_idx", "I32", [i])]
    t = [(n, "F16" if dt == "BF16" else dt, s) for n, dt, s in llama_layers(512, 1536, 2, lin)]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16",
           "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
                                   "desc_act": True, "sym": True, "damp_percent": 0.1,
                                   "true_sequential": True, "checkpoint_format": "gptq"}}
    write_model(d, t, cfg)


# ---- AWQ GEMM 4-bit group 128 (quant.md §7) ------------------------------------------------

def layout_awq(d):
    def lin(n, o, i):
        G = cdiv(i, 128)
        return [(n + ".qweight", "I32", [i, o // 8]), (n + ".qzeros", "I32", [G, o // 8]),
                (n + ".scales", "F16", [G, o])]
    t = [(n, "F16" if dt == "BF16" else dt, s) for n, dt, s in llama_layers(512, 1536, 2, lin)]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16",
           "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128,
                                   "zero_point": True, "version": "gemm",
                                   "modules_to_not_convert": None}}
    write_model(d, t, cfg)


# ---- layouts whose Linear helpers honour PLAIN --------------------------------------------

# modules the helpers below write unquantized (BF16 weight): the unquantized-module variant
# names one, the stale-config variant "*" (every module, as a dequantizer that keeps the
# config leaves them)
PLAIN = set()


def plain(n):
    return n in PLAIN or "*" in PLAIN


def bf16_lin(n, o, i):
    return [(n + ".weight", "BF16", [o, i])]


# ---- torchao safetensors, Float8 weight-only per row (quant.md §12.1) ---------------------

def torchao_metadata(t, describe):
    """__metadata__ as torchao's flatten_tensor_state_dict writes it: every original name,
    and one JSON description per name (describe(qdata shape) for a quantized weight)."""
    meta, names = {"format": "pt"}, []
    for n, dt, s in t:
        if n.endswith("._weight_qdata"):
            base = n[:-len("._weight_qdata")] + ".weight"
            meta[base] = json.dumps(describe(s))
            names.append(base)
        elif not n.endswith(("._weight_scale", "._weight_zero_point")):
            meta[n] = json.dumps({"_type": "Tensor"})
            names.append(n)
    meta["tensor_names"] = json.dumps(names)
    return meta


def layout_torchao(d):
    def lin(n, o, i):
        if plain(n):
            return bf16_lin(n, o, i)
        return [(n + "._weight_qdata", "F8_E4M3", [o, i]), (n + "._weight_scale", "F32", [o, 1])]
    t = llama_layers(512, 1536, 2, lin)
    meta = torchao_metadata(t, lambda s: {"_type": "Float8Tensor", "_data": {
        "block_size": [1, s[1]], "mm_config": None, "act_quant_kwargs": None,
        "kernel_preference": {"_type": "KernelPreference", "_data": "AUTO"},
        "dtype": {"_type": "torch.dtype", "_data": "bfloat16"}},
        "_tensor_data_names": ["qdata", "scale"]})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
           "quantization_config": {
               "quant_method": "torchao", "include_input_output_embeddings": False,
               "modules_to_not_convert": None, "untie_embedding_weights": False,
               "quant_type": {"default": {"_type": "Float8WeightOnlyConfig", "_version": 2, "_data": {
                   "granularity": {"_type": "PerRow", "_version": 1, "_data": {"dim": -1}},
                   "set_inductor_config": True,
                   "weight_dtype": {"_type": "torch.dtype", "_data": "float8_e4m3fn"}}}}}}
    write_model(d, t, cfg, metadata=meta)


def layout_torchao_int4(d):
    """torchao Int4WeightOnlyConfig (Int4Tensor, plain packing, group 128): qdata U8
    [N, K/2] (two codes a byte), scale and zero_point BF16 [K/128, N]; the __metadata__
    description of each weight as torchao 0.18.0's flatten_tensor_state_dict writes it (its
    logical shape [N, K] and block_size), the config as TorchAoConfig.to_dict() gives it."""
    G = 128

    def lin(n, o, i):
        if plain(n):
            return bf16_lin(n, o, i)
        return [(n + "._weight_qdata", "U8", [o, i // 2]), (n + "._weight_scale", "BF16", [i // G, o]),
                (n + "._weight_zero_point", "BF16", [i // G, o])]
    t = llama_layers(512, 1536, 2, lin)
    meta = torchao_metadata(t, lambda s: {"_type": "Int4Tensor", "_data": {
        "activation_dtype": {"_type": "torch.dtype", "_data": "bfloat16"},
        "block_size": [1, G], "shape": [s[0], s[1] * 2]},
        "_tensor_data_names": ["qdata", "scale", "zero_point"]})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
           "quantization_config": {
               "quant_method": "torchao", "modules_to_not_convert": None,
               "include_input_output_embeddings": False, "untie_embedding_weights": False,
               "quant_type": {"default": {"_type": "Int4WeightOnlyConfig", "_version": 2, "_data": {
                   "group_size": G, "set_inductor_config": True,
                   "int4_packing_format": {"_type": "Int4PackingFormat", "_data": "PLAIN"},
                   "int4_choose_qparams_algorithm": {"_type": "Int4ChooseQParamsAlgorithm",
                                                     "_data": "TINYGEMM"},
                   "int4_tile_packed_ntile": 8}}}}}
    write_model(d, t, cfg, metadata=meta)


# ---- HQQ 4-bit, group 64, axis 1 (quant.md §13: HQQLinear's encoded state dict) ------------

HQQ_META = [("nbits", "I32", []), ("group_size", "I32", []), ("axis", "I32", []),
            ("shape", "I64", [2]), ("channel_wise", "U8", []), ("compute_dtype", "U8", [14]),
            ("encoded_state_dict", "U8", []), ("offload_meta", "U8", []), ("optimize", "U8", []),
            ("packing", "U8", [7]), ("quant_scale", "U8", []), ("quant_zero", "U8", []),
            ("round_zero", "U8", []), ("stores_quant_config", "U8", []),
            ("unpack_view_dtype", "U8", [11]), ("view_as_float", "U8", [])]


def layout_hqq(d):
    def lin(n, o, i, gs=64):
        if plain(n):
            return bf16_lin(n, o, i)
        R = o * i // gs  # the grouped [R, gs] codes, 4-bit: two rows a byte
        return ([(n + ".W_q", "U8", [R // 2, gs]), (n + ".scale", "BF16", [R, 1]),
                 (n + ".zero", "BF16", [R, 1])] + [(n + "." + k, dt, s) for k, dt, s in HQQ_META])
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
           "quantization_config": {
               "quant_method": "hqq", "skip_modules": ["lm_head"],
               "quant_config": {"weight_quant_params": {
                   "nbits": 4, "channel_wise": True, "group_size": 64, "optimize": True,
                   "round_zero": True, "axis": 1, "view_as_float": False},
                   "scale_quant_params": None, "zero_quant_params": None, "offload_meta": False}}}
    write_model(d, llama_layers(512, 1536, 2, lin), cfg)


# ---- optimum-quanto int4 (qbits, group 128; quant.md §11) with quanto_qmap.json ----------

def layout_quanto(d):
    mods = []

    def lin(n, o, i, gs=128):
        mods.append(n)
        if plain(n):
            return bf16_lin(n, o, i)
        R = o * i // gs  # grouped rows, packed planar two to a byte
        return [(n + ".weight._data._data", "U8", [cdiv(R, 2), gs]),
                (n + ".weight._scale", "BF16", [R, 1]), (n + ".weight._shift", "BF16", [R, 1]),
                (n + ".input_scale", "BF16", []), (n + ".output_scale", "BF16", [])]
    t = llama_layers(512, 1536, 2, lin)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16"}
    qmap = {m: {"weights": "qint4", "activations": "none"} for m in mods}
    write_model(d, t, cfg, sidecars={"quanto_qmap.json": qmap})


# ---- ComfyUI single files (quant.md §10): a Flux-shaped diffusion model ---------------------

FLUX_H = 3072


def flux(lin, blocks=2):
    """Flux.1 names and shapes (hidden 3072, MLP 4x, 2 double + 2 single blocks of 19 + 38)."""
    P, H, t = "model.diffusion_model.", FLUX_H, []
    hp = lambda n, o, i: [(P + n + ".weight", "BF16", [o, i]), (P + n + ".bias", "BF16", [o])]
    t += hp("img_in", H, 64) + hp("txt_in", H, 4096) + hp("time_in.in_layer", H, 256)
    t += hp("time_in.out_layer", H, H) + hp("vector_in.in_layer", H, 768) + hp("vector_in.out_layer", H, H)
    for b in range(blocks):
        x = P + "double_blocks.%d." % b
        for s in ("img", "txt"):
            t += lin(x + s + "_attn.qkv", 3 * H, H) + lin(x + s + "_attn.proj", H, H)
            t += lin(x + s + "_mlp.0", 4 * H, H) + lin(x + s + "_mlp.2", H, 4 * H)
            t += lin(x + s + "_mod.lin", 6 * H, H)
            t += [(x + s + "_attn.norm.query_norm.scale", "BF16", [128]),
                  (x + s + "_attn.norm.key_norm.scale", "BF16", [128])]
    for b in range(blocks):
        x = P + "single_blocks.%d." % b
        t += lin(x + "linear1", 3 * H + 4 * H, H) + lin(x + "linear2", H, H + 4 * H)
        t += lin(x + "modulation.lin", 3 * H, H)
        t += [(x + "norm.query_norm.scale", "BF16", [128]), (x + "norm.key_norm.scale", "BF16", [128])]
    t += hp("final_layer.linear", 64, H) + hp("final_layer.adaLN_modulation.1", 2 * H, H)
    return t


def layout_comfy_fp8(d):
    """Legacy scaled FP8 (flux_dev_fp8_scaled): F8 weights, F32 scalar scale_weight, the
    scaled_fp8 marker; a bare file, no config."""
    def lin(n, o, i):
        if plain(n):
            return bf16_lin(n, o, i) + [(n + ".bias", "BF16", [o])]
        return [(n + ".weight", "F8_E4M3", [o, i]), (n + ".bias", "BF16", [o]),
                (n + ".scale_weight", "F32", [])]
    t = flux(lin) + [("model.diffusion_model.scaled_fp8", "F8_E4M3", [0])]
    os.makedirs(d, exist_ok=True)
    write_st(os.path.join(d, "flux1-dev-fp8-scaled.safetensors"), t, {"format": "pt"})


def layout_comfy_nvfp4(d):
    """Mixed-precision comfy_quant: NVFP4 layers (U8 codes, F8 block scales in cuBLAS'
    128x4-swizzled layout, F32 weight_scale_2 and input_scale) and FP8 modulation layers,
    each with its comfy_quant marker (U8 JSON bytes); a bare file, no config."""
    def marker(n, fmt):
        return (n + ".comfy_quant", "U8", [len(json.dumps({"format": fmt}))])

    def lin(n, o, i):
        if plain(n):
            return bf16_lin(n, o, i) + [(n + ".bias", "BF16", [o])]
        if n.endswith(".lin"):
            return [(n + ".weight", "F8_E4M3", [o, i]), (n + ".bias", "BF16", [o]),
                    (n + ".weight_scale", "F32", []), marker(n, "float8_e4m3fn")]
        return [(n + ".weight", "U8", [o, i // 2]), (n + ".bias", "BF16", [o]),
                (n + ".weight_scale", "F8_E4M3", [cdiv(o, 128) * 128, cdiv(i // 16, 4) * 4]),
                (n + ".weight_scale_2", "F32", []), (n + ".input_scale", "F32", []), marker(n, "nvfp4")]
    os.makedirs(d, exist_ok=True)
    write_st(os.path.join(d, "flux1-dev-nvfp4.safetensors"), flux(lin), {"format": "pt"})


def layout_comfy_nvfp4_meta(d):
    """comfy-nvfp4 with its layers listed in the file's __metadata__._quantization_metadata
    ({"layers": {layer: {"format": ...}}}, which ComfyUI turns into comfy_quant markers)
    instead of marker tensors; a plain (unquantized-module) layer stays listed."""
    layers = {}

    def lin(n, o, i):
        fmt = "float8_e4m3fn" if n.endswith(".lin") else "nvfp4"
        layers[n] = {"format": fmt}
        if plain(n):
            return bf16_lin(n, o, i) + [(n + ".bias", "BF16", [o])]
        if fmt == "float8_e4m3fn":
            return [(n + ".weight", "F8_E4M3", [o, i]), (n + ".bias", "BF16", [o]),
                    (n + ".weight_scale", "F32", [])]
        return [(n + ".weight", "U8", [o, i // 2]), (n + ".bias", "BF16", [o]),
                (n + ".weight_scale", "F8_E4M3", [cdiv(o, 128) * 128, cdiv(i // 16, 4) * 4]),
                (n + ".weight_scale_2", "F32", []), (n + ".input_scale", "F32", [])]
    t = flux(lin)
    meta = {"format": "pt",
            "_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
    os.makedirs(d, exist_ok=True)
    write_st(os.path.join(d, "flux1-dev-nvfp4-meta.safetensors"), t, meta)


PLAIN_LAYOUTS = {"torchao", "torchao-int4", "hqq", "quanto", "comfy-fp8", "comfy-nvfp4", "comfy-nvfp4-meta"}
IGNORE_KEY = {"hqq": "skip_modules"}

LAYOUTS = {"deepseek-v3": layout_deepseek_v3,
           "deepseek-v3-tiny": lambda d: layout_deepseek_v3(d, DSV3_TINY, shards=2), "qwen3-fp8": layout_qwen3_fp8,
           "llama-fp8-ct": layout_llama_fp8_ct, "gpt-oss": layout_gpt_oss, "nvfp4": layout_nvfp4,
           "llama4-nvfp4": layout_llama4_nvfp4,
           "bnb-nf4": layout_bnb_nf4, "gptq": layout_gptq, "awq": layout_awq,
           "torchao": layout_torchao, "torchao-int4": layout_torchao_int4, "hqq": layout_hqq, "quanto": layout_quanto,
           "comfy-fp8": layout_comfy_fp8, "comfy-nvfp4": layout_comfy_nvfp4,
           "comfy-nvfp4-meta": layout_comfy_nvfp4_meta}


# ---- broken variants ----------------------------------------------------------------------

def read_header(path):
    raw = open(path, "rb").read(8)
    n = struct.unpack("<Q", raw)[0]
    with open(path, "rb") as f:
        f.seek(8)
        h = json.loads(f.read(n))
    meta = h.pop("__metadata__", None)
    return [(k, v["dtype"], v["shape"]) for k, v in h.items()], meta


def rewrite(d, fn):
    """fn(list of (name, dtype, shape)) -> new list, applied to every shard; index rebuilt."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    wm, total = {}, 0
    for f in files:
        t, meta = read_header(os.path.join(d, f))
        t = fn(t)
        write_st(os.path.join(d, f), t, meta)
        for name, dt, shape in t:
            wm[name] = f
            total += ELSIZE[dt] * math.prod(shape)
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, open(idx, "w"), indent=1)


def edit_config(d, fn):
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    fn(cfg)
    json.dump(cfg, open(p, "w"), indent=2)


CODES = (".weight", ".qweight", "._weight_qdata", ".W_q", ".weight._data", ".weight._data._data")
SCALES = (".weight_scale_inv", ".weight_scale", "._weight_scale", ".scale", ".weight._scale",
          ".scale_weight", ".scales")


def edit_sidecar(d, name, fn):
    p = os.path.join(d, name)
    doc = json.load(open(p))
    fn(doc)
    json.dump(doc, open(p, "w"), indent=2)


def variant(d, base, name, target):
    """Applies a broken variant; target is the module it concerns (the test checks it)."""
    if name == "missing-companion":
        # every companion of target's weight goes; its bias and comfy_quant marker stay
        rewrite(d, lambda t: [x for x in t if not x[0].startswith(target + ".") or
                              x[0] in [target + c for c in CODES] or
                              x[0].endswith((".bias", ".comfy_quant"))])
    elif name == "wrong-grid" and base in PLAIN_LAYOUTS:
        # the first scale companion of target one row too many (a scalar gets two values)
        def f(t):
            names = [n for n, _, _ in t]
            sc = next(target + s for s in SCALES if target + s in names)
            return [(n, dt, ([s[0] + 1] + s[1:] if s else [2]) if n == sc else s) for n, dt, s in t]
        rewrite(d, f)
    elif name == "unpacked-qdata":
        # target's Int4Tensor qdata stored one code a byte: [N, K] where its logical shape
        # says [N, K/2]
        rewrite(d, lambda t: [(n, dt, [s[0], s[1] * 2]) if n == target + "._weight_qdata" else (n, dt, s)
                              for n, dt, s in t])
    elif name == "missing-marker" and base == "comfy-nvfp4-meta":
        # target left out of __metadata__._quantization_metadata's layers
        for f in os.listdir(d):
            t, meta = read_header(os.path.join(d, f))
            q = json.loads(meta["_quantization_metadata"])
            del q["layers"][target]
            meta["_quantization_metadata"] = json.dumps(q)
            write_st(os.path.join(d, f), t, meta)
    elif name == "missing-marker":
        # ComfyUI: the scaled_fp8 marker (no target) or target's comfy_quant marker
        gone = target + ".comfy_quant" if target else None
        rewrite(d, lambda t: [x for x in t if not (x[0] == gone or (not gone and x[0].endswith("scaled_fp8")))])
    elif name == "bits-mismatch":
        # the config declares other bits than the tensors hold
        if base == "quanto":
            edit_sidecar(d, "quanto_qmap.json", lambda q: [v.__setitem__("weights", "qint8") for v in q.values()])
        elif base == "hqq":
            edit_config(d, lambda c: c["quantization_config"]["quant_config"]["weight_quant_params"].__setitem__("nbits", 2))
        elif base == "llama-ct-w4":
            edit_config(d, lambda c: c["quantization_config"]["config_groups"]["group_0"]["weights"].__setitem__("num_bits", 8))
        else:
            edit_config(d, lambda c: c["quantization_config"].__setitem__("bits", 8))
    elif name == "group-mismatch":
        if base == "hqq":
            edit_config(d, lambda c: c["quantization_config"]["quant_config"]["weight_quant_params"].__setitem__("group_size", 128))
        else:
            edit_config(d, lambda c: c["quantization_config"].__setitem__("group_size", 64))
    elif name == "block-mismatch":
        edit_config(d, lambda c: c["quantization_config"].__setitem__("weight_block_size", [64, 64]))
    elif name == "missing-global":
        # target's NVFP4 global scale goes (a Linear's ".weight_scale_2", an expert stack's
        # "_weight_scale_2")
        rewrite(d, lambda t: [x for x in t if x[0] not in (target + ".weight_scale_2", target + "_weight_scale_2")])
    elif name == "missing-weight":
        rewrite(d, lambda t: [x for x in t if x[0] not in (target + ".weight", target + ".qweight")])
    elif name == "wrong-grid":
        rewrite(d, lambda t: [(n, dt, [s[0] + 1] + s[1:]) if n == target + ".weight_scale_inv" else (n, dt, s)
                              for n, dt, s in t])
    elif name == "unquantized-module":
        def f(t):
            out = []
            for n, dt, s in t:
                if n == target + ".weight":
                    out.append((n, "BF16", s))
                elif n.startswith(target + ".weight_scale"):
                    continue
                else:
                    out.append((n, dt, s))
            return out
        rewrite(d, f)
    elif name == "quantized-ignored":
        edit_config(d, lambda c: c["quantization_config"].__setitem__(
            IGNORE_KEY.get(base, "modules_to_not_convert"), [target, "lm_head"]))
    elif name == "stale-config":
        # what a dequantizer that forgets the config leaves: BF16 weights, no scales
        def f(t):
            out = []
            for n, dt, s in t:
                if n.endswith("_scale_inv"):
                    continue
                out.append((n, "BF16" if dt == "F8_E4M3" else dt, s))
            return out
        rewrite(d, f)
    elif name == "missing-config":
        if os.path.exists(os.path.join(d, "quanto_qmap.json")):
            os.remove(os.path.join(d, "quanto_qmap.json"))
        else:
            edit_config(d, lambda c: c.pop("quantization_config"))
    elif name == "blind-cast":
        # what a blind convert --to bf16 leaves: every float tensor BF16, scales kept
        rewrite(d, lambda t: [(n, "BF16" if dt in ("F8_E4M3", "F32") else dt, s) for n, dt, s in t])
    elif name == "plain":
        pass  # applied while the layout was written (PLAIN)
    else:
        raise SystemExit("unknown variant " + name)


def main(argv):
    if argv and argv[0] == "--bench":
        out = argv[1]
        layout_deepseek_v3(os.path.join(out, "deepseek-v3-fp8"), DSV3_FULL, shards=163)
        d = os.path.join(out, "deepseek-v3-bf16")
        cfg = dict(DSV3_CONFIG)
        cfg.pop("quantization_config")
        write_model(d, deepseek_v3(DSV3_FULL, fp8=False), cfg, shards=163)
        return
    out, names = argv[0], argv[1:] or list(LAYOUTS)
    for spec in names:
        base, _, rest = spec.partition("+")
        d = os.path.join(out, spec)
        v, _, target = rest.partition("@")
        PLAIN.clear()
        if base in PLAIN_LAYOUTS and v in ("unquantized-module", "stale-config"):
            PLAIN.add(target if v == "unquantized-module" else "*")
            v = "plain"
        LAYOUTS[base](d)
        if v:
            variant(d, base, v, target)


if __name__ == "__main__":
    main(sys.argv[1:])
