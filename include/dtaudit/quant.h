/* dtaudit: quantized checkpoints (shared/quant.md, DESIGN.md "Quantized checkpoints").
 *
 * dta_quant_analyse() recognises the quantization scheme of a model from its
 * quantization config (config.json "quantization_config", the sidecars
 * hf_quant_config.json / quantize_config.json / quant_config.json / quanto_qmap.json,
 * safetensors __metadata__) and from the tensors' names, dtypes and shapes alone when
 * there is no config. It groups each quantized weight with its companions (scales,
 * inverse scales, zero points, absmax, quant maps, g_idx, global and input scales,
 * quant-state blobs, weight_shape) into one logical parameter, and lists what does not
 * fit: a missing or misshapen companion, a companion without weight, a module quantized
 * against the config's ignore list or left in high precision among quantized siblings,
 * a config without quantized tensors (or the reverse), and high-precision weights
 * beside their companions (a blind cast).
 *
 * Only headers are used (names, dtypes, shapes): nothing reads tensor data.
 *
 * Ownership: a dta_quant owns every string and array reachable from it but the names of
 * parameters named as their codes tensor ("x.weight" for the codes "x.weight"), which
 * point at the model's tensor name; like its tensor indices, they refer to the model it
 * was built from: free the dta_quant before the model. */
#ifndef DTAUDIT_QUANT_H
#define DTAUDIT_QUANT_H

#include "dtaudit/model.h"
#include "dtaudit/rules.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DTA_QS_NONE = 0,
    DTA_QS_FP8_BLOCK,     /* "fp8-block": weight F8 + weight_scale_inv grid (DeepSeek, Qwen3) */
    DTA_QS_FP8,           /* "fp8": AutoFP8/vLLM per-tensor weight_scale */
    DTA_QS_FBGEMM_FP8,    /* "fbgemm-fp8": per-row weight_scale [out, 1] */
    DTA_QS_MODELOPT_FP8,  /* "modelopt-fp8" */
    DTA_QS_MODELOPT_NVFP4,/* "modelopt-nvfp4": U8 weight + F8 weight_scale + weight_scale_2 */
    DTA_QS_CT_FLOAT,      /* "compressed-tensors-float" (float-/naive-quantized) */
    DTA_QS_CT_INT,        /* "compressed-tensors-int" (int-quantized) */
    DTA_QS_CT_PACK,       /* "compressed-tensors-pack" (pack-quantized) */
    DTA_QS_CT_NVFP4,      /* "compressed-tensors-nvfp4" (nvfp4-pack-quantized) */
    DTA_QS_CT_MXFP4,      /* "compressed-tensors-mxfp4" (mxfp4-pack-quantized) */
    DTA_QS_BNB_4BIT,      /* "bnb-4bit": nf4 / fp4, optional double quantization */
    DTA_QS_BNB_8BIT,      /* "bnb-8bit": LLM.int8 weight + SCB */
    DTA_QS_GPTQ,          /* "gptq": qweight/qzeros/scales/g_idx, packed along the input */
    DTA_QS_AWQ,           /* "awq": qweight/qzeros/scales, GEMM packing */
    DTA_QS_MXFP4,         /* "mxfp4": gpt-oss *_blocks / *_scales */
    DTA_QS_COMFY_FP8,     /* "comfy-scaled-fp8": scale_weight + scaled_fp8 marker */
    DTA_QS_COMFY,         /* "comfy-quant": per-layer comfy_quant markers */
    DTA_QS_QUANTO,        /* "quanto": weight._data / weight._scale */
    DTA_QS_TORCHAO,       /* "torchao": _weight_qdata / _weight_scale */
    DTA_QS_HQQ,           /* "hqq": W_q / scale / zero + meta */
    DTA_QS_UNKNOWN,       /* a config names a scheme dtaudit does not know */
    DTA_QS_COUNT
} dta_quant_scheme;

typedef enum {
    DTA_QR_NONE = 0,
    DTA_QR_WEIGHT,        /* the codes: "weight" */
    DTA_QR_SCALE,         /* "scale" */
    DTA_QR_SCALE_INV,     /* "scale_inv" (multiplied despite the name) */
    DTA_QR_GLOBAL_SCALE,  /* "global_scale": weight_scale_2, weight_global_scale */
    DTA_QR_ZERO_POINT,    /* "zero_point": qzeros, weight_zero_point, zero, _shift */
    DTA_QR_G_IDX,         /* "g_idx" */
    DTA_QR_SHAPE,         /* "shape": weight_shape */
    DTA_QR_ABSMAX,        /* "absmax" */
    DTA_QR_QUANT_MAP,     /* "quant_map" */
    DTA_QR_NESTED_ABSMAX, /* "nested_absmax" */
    DTA_QR_NESTED_MAP,    /* "nested_quant_map" */
    DTA_QR_QUANT_STATE,   /* "quant_state": bnb JSON blob */
    DTA_QR_FORMAT,        /* "format": bnb weight_format */
    DTA_QR_INPUT_SCALE,   /* "input_scale": input/output/activation scales */
    DTA_QR_KV_SCALE,      /* "kv_scale": k_scale / v_scale of an attention module */
    DTA_QR_MARKER,        /* "marker": comfy_quant, scaled_fp8 */
    DTA_QR_META,          /* "meta": HQQ nbits/group_size/shape/... */
    DTA_QR_COUNT
} dta_quant_role;

/* One logical parameter: a quantized weight and its companions. */
typedef struct {
    char *name;            /* "model.layers.0.mlp.down_proj.weight" (maybe the model's string:
                            * see Ownership) */
    char *module;          /* "model.layers.0.mlp.down_proj" */
    dta_quant_scheme scheme;
    dta_dtype storage;     /* dtype of the codes (DTA_DTYPE_NONE when missing) */
    size_t weight;         /* tensor index of the codes, SIZE_MAX when missing */
    size_t *tensors;       /* every tensor of the parameter, the codes first */
    size_t ntensors;
    const char *format;    /* static element format: "F8_E4M3", "NF4", "INT4", "MXFP4", ... */
    int rank;              /* logical shape, 0 when the header does not tell */
    uint32_t roles;        /* bit 1u << r set: a tensor of role r is among tensors */
    uint64_t shape[4];
    uint64_t numel;        /* logical elements (for bnb 4-bit: twice the packed bytes) */
    dta_dtype dequant;     /* the dtype it dequantizes to */
    bool cast;             /* high-precision codes beside companions (a blind cast) */
    bool broken;           /* a quant-incomplete problem was found */
} dta_quant_param;

/* A problem found while grouping (the audit turns these into findings). */
typedef struct {
    dta_rule rule;         /* DTA_RULE_QUANT_INCOMPLETE, _COVERAGE, _CONFIG, _CAST, or
                            * DTA_RULE_QUANTIZATION (info: a scheme dtaudit does not know) */
    char *module;          /* the module (or file-level subject) it is about */
    size_t *tensors;       /* tensor indices */
    size_t ntensors;
    char *message;
} dta_quant_issue;

typedef struct dta_quant {
    dta_quant_scheme scheme;  /* the input's scheme (config first, else the tensors') */
    dta_quant_scheme tensor_scheme; /* what the tensors alone say (NONE: no quantized ones) */
    char *method;             /* the config's quant_method (or quant_algo), NULL without config */
    const char *source;       /* static: "config.json", a sidecar's name, "__metadata__",
                               * "tensors", or NULL when not quantized */
    char *detail;             /* "nf4, double quantization", "gptq_v2", ..., NULL */
    uint32_t block[2];        /* block size (rows, cols), 0 when not a block scheme */
    uint32_t group;           /* group size, 0 when not a group scheme */
    uint32_t bits;            /* bits per code, 0 when unknown */
    char **ignore;            /* the config's list of modules not to quantize */
    size_t nignore;
    dta_quant_param *params;
    size_t nparams;
    int32_t *tensor_param;    /* per model tensor: index into params, -1 when none */
    uint8_t *tensor_role;     /* per model tensor: a dta_quant_role */
    dta_quant_issue *issues;
    size_t nissues;
    size_t ntensors;          /* entries of tensor_param/tensor_role */
} dta_quant;

/* Recognises the scheme and builds the logical parameters of m. *out is never NULL on
 * success (scheme DTA_QS_NONE for a plain checkpoint). */
dta_status dta_quant_analyse(const dta_model *m, dta_quant **out, dta_error *err);
void dta_quant_free(dta_quant *q);

/* "fp8-block", "bnb-4bit", ...; "none" for DTA_QS_NONE. */
const char *dta_quant_scheme_name(dta_quant_scheme s);
/* "weight", "scale_inv", ...; "none" for DTA_QR_NONE. */
const char *dta_quant_role_name(dta_quant_role r);

/* Whether tensor i belongs to a quantized parameter (its codes or a companion). */
bool dta_quant_tensor_is_quantized(const dta_quant *q, size_t i);
/* The logical parameter of tensor i, NULL when it is an ordinary tensor. */
const dta_quant_param *dta_quant_tensor_param(const dta_quant *q, size_t i);
dta_quant_role dta_quant_tensor_role(const dta_quant *q, size_t i);
/* "FP8_E4M3 block 128x128 -> BF16", "NF4 block 64 -> BF16": a short label. */
void dta_quant_param_label(const dta_quant *q, const dta_quant_param *p, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
