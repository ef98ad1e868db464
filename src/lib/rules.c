/* The rule catalogue (include/dtaudit/rules.h): one entry per rule, indexed by dta_rule.
 *
 * Every place that needs to know about a rule reads it here: audit.c and the readers raise
 * findings and notes by enum and take the default severity from this table; diff.c maps
 * change kinds to rules; policy.c accepts exactly these names in "severity"; the CLI lists
 * them in --help (grouped by command and severity) and in SARIF's tool.driver.rules.
 *
 * How to add a rule (one line or one entry per place):
 *   1. include/dtaudit/rules.h: append DTA_RULE_NEW_THING just before DTA_RULE_COUNT.
 *   2. here: append its entry at the end of rules[] with every field set (.id, .name,
 *      .severity, .command "audit"|"diff", .category "correctness"|"security",
 *      .man_section "RULES"|"DIFF", .help_uri "man:dtaudit(1)#" + the section, .summary,
 *      .help; .rank only if its findings must sort before others, .security_severity only
 *      for a security rule).
 *   3. man/dtaudit.1: in that section, an item
 *          .TP
 *          .BR new-thing " (warning)"
 *          What it means, in a few lines.
 *      with the default severity; test_rules checks the man page against this table
 *      (both ways) and help_man.sh checks --help.
 *   4. raise it: add_finding(c, DTA_RULE_NEW_THING, ...) in audit.c, or
 *      dtap_model_add_note(m, DTA_RULE_NEW_THING, subject, message, err) in a reader.
 *      The severity comes from here; policies may override it by name.
 *   The golden --help and SARIF outputs (tests/cli/golden/) list every rule: regenerate
 *   them with UPDATE_GOLDEN=1 and review the diff. */
#include <string.h>

#include "dtaudit/rules.h"

static const dta_rule_info rules[DTA_RULE_COUNT] = {
    [DTA_RULE_DTYPE_OUTLIER] = {
        .id = DTA_RULE_DTYPE_OUTLIER,
        .name = "dtype-outlier",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 6,
        .summary = "A module whose floating tensors are all of one dtype that is not the root's dominant "
                   "dtype.",
        .help = "Outside autocast, ops that mix the outlier with the rest of the model fail with errors "
                "such as 'mat1 and mat2 must have the same dtype', or silently run in another precision. "
                "Convert the module to the dominant dtype (dtaudit convert --to DTYPE --only "
                "'MODULE.*'), or, when the exception is intended (norms, rotary inv_freq kept in "
                "float32), declare it with --allow 'GLOB=DTYPE' or a policy's \"allow\".",
    },
    [DTA_RULE_MIXED_MODULE] = {
        .id = DTA_RULE_MIXED_MODULE,
        .name = "mixed-module",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 7,
        .summary = "A module whose own floating tensors hold more than one dtype.",
        .help = "The module's forward sees two dtypes at once (for example float32 states beside "
                "bfloat16 weights). Convert the tensors off the root's dominant dtype, or allow them "
                "if the module is meant to be mixed.",
    },
    [DTA_RULE_EXPECT_MISMATCH] = {
        .id = DTA_RULE_EXPECT_MISMATCH,
        .name = "expect-mismatch",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 3,
        .summary = "A floating tensor whose dtype is not the expected one (--expect or a policy's "
                   "\"expect\").",
        .help = "The checkpoint does not have the precision the pipeline expects. Convert it with "
                "dtaudit convert --to DTYPE, or allow the intended exceptions.",
    },
    [DTA_RULE_CONFIG_MISMATCH] = {
        .id = DTA_RULE_CONFIG_MISMATCH,
        .name = "config-mismatch",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 4,
        .summary = "config.json's torch_dtype (or dtype) is not the weights' dominant dtype.",
        .help = "Loaders that take the dtype from the config (from_pretrained with torch_dtype=\"auto\", "
                "training services that guess the precision) cast the weights or pick the wrong "
                "precision. Set \"torch_dtype\" to the weights' dtype, or convert the weights.",
    },
    [DTA_RULE_ADAPTER_MISMATCH] = {
        .id = DTA_RULE_ADAPTER_MISMATCH,
        .name = "adapter-mismatch",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 5,
        .summary = "A PEFT adapter's dominant dtype is not its base model's (--base).",
        .help = "After PEFT wrapping, code that takes the model's dtype from its first parameter sees "
                "the adapter's dtype and picks the wrong training precision (fp16 against a bfloat16 "
                "base); merging casts the adapter to the base's dtype. PEFT keeps adapters in float32 "
                "by default, so lower this rule's severity in a policy when that is intended.",
    },
    [DTA_RULE_INDEX_MISMATCH] = {
        .id = DTA_RULE_INDEX_MISMATCH,
        .name = "index-mismatch",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 2,
        .summary = "A sharded checkpoint's index disagrees with its shards.",
        .help = "A shard is missing, a tensor is mapped to a shard that does not hold it, a shard holds "
                "a tensor the index does not list, or metadata.total_size is wrong. Loaders fail or "
                "load a partial model. Re-save the checkpoint, or correct the index.",
    },
    [DTA_RULE_UNSAFE_PICKLE] = {
        .id = DTA_RULE_UNSAFE_PICKLE,
        .name = "unsafe-pickle",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "security",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .security_severity = "8.8", /* code execution on torch.load */
        .rank = 1,
        .summary = "A PyTorch pickle names a callable outside torch's weights_only allowlist.",
        .help = "torch.load without weights_only=True would call it: loading the file can run "
                "arbitrary code. dtaudit never executes it. Load the file only with "
                "torch.load(weights_only=True), or re-save its tensors as safetensors from a trusted "
                "environment.",
    },
    [DTA_RULE_META_TENSOR] = {
        .id = DTA_RULE_META_TENSOR,
        .name = "meta-tensor",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 8,
        .summary = "A tensor saved without storage (meta device).",
        .help = "The tensor has a shape and dtype but no data; loading it gives uninitialised or meta "
                "weights. Re-save from a model materialised on a real device.",
    },
    [DTA_RULE_COMPRESSED_RECORD] = {
        .id = DTA_RULE_COMPRESSED_RECORD,
        .name = "compressed-record",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A deflated record in a PyTorch zip checkpoint.",
        .help = "torch.load(mmap=True) cannot map compressed records. Re-save with torch.save.",
    },
    [DTA_RULE_WEIGHTS_CHOICE] = {
        .id = DTA_RULE_WEIGHTS_CHOICE,
        .name = "weights-choice",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "Which weights of a model directory were read.",
        .help = "The directory holds both safetensors and PyTorch .bin weights; the safetensors ones "
                "were read. Remove the stale copy if the two disagree.",
    },
    [DTA_RULE_QUANTIZATION] = {
        .id = DTA_RULE_QUANTIZATION,
        .name = "quantization",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "config.json has a quantization_config.",
        .help = "The weights' dtypes are those of the quantized storage, not the compute dtype.",
    },
    [DTA_RULE_ADAPTER_CONFIG] = {
        .id = DTA_RULE_ADAPTER_CONFIG,
        .name = "adapter-config",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A directory's adapter_config.json is not a PEFT config.",
        .help = "It has no \"peft_type\" (MLX and other tools write their own adapter_config.json); the "
                "weights are read as a plain checkpoint and no base model is reported.",
    },
    [DTA_RULE_NUMPY_ARRAY] = {
        .id = DTA_RULE_NUMPY_ARRAY,
        .name = "numpy-array",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A NumPy array inside a PyTorch pickle.",
        .help = "It is listed with its dtype; torch.load(weights_only=True) refuses it unless allowed.",
    },
    [DTA_RULE_BYTEORDER] = {
        .id = DTA_RULE_BYTEORDER,
        .name = "byteorder",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A big-endian PyTorch file.",
        .help = "The file was written on a big-endian machine; readers must swap bytes.",
    },
    [DTA_RULE_DTYPE_CHANGED] = {
        .id = DTA_RULE_DTYPE_CHANGED,
        .name = "dtype-changed",
        .severity = DTA_SEV_WARNING,
        .command = "diff",
        .category = "correctness",
        .man_section = "DIFF",
        .help_uri = "man:dtaudit(1)#DIFF",
        .summary = "A tensor's dtype differs between the old and the new checkpoint.",
        .help = "load_state_dict casts it silently, so precision changes without an error. Convert it "
                "back, or accept the drift.",
    },
    [DTA_RULE_SHAPE_CHANGED] = {
        .id = DTA_RULE_SHAPE_CHANGED,
        .name = "shape-changed",
        .severity = DTA_SEV_ERROR,
        .command = "diff",
        .category = "correctness",
        .man_section = "DIFF",
        .help_uri = "man:dtaudit(1)#DIFF",
        .summary = "A tensor's shape differs between the old and the new checkpoint.",
        .help = "load_state_dict fails with 'size mismatch'.",
    },
    [DTA_RULE_TENSOR_ADDED] = {
        .id = DTA_RULE_TENSOR_ADDED,
        .name = "tensor-added",
        .severity = DTA_SEV_WARNING,
        .command = "diff",
        .category = "correctness",
        .man_section = "DIFF",
        .help_uri = "man:dtaudit(1)#DIFF",
        .summary = "A tensor of the new checkpoint is not in the old one.",
        .help = "A strict load_state_dict into the old model fails with 'Unexpected key(s)'.",
    },
    [DTA_RULE_TENSOR_REMOVED] = {
        .id = DTA_RULE_TENSOR_REMOVED,
        .name = "tensor-removed",
        .severity = DTA_SEV_ERROR,
        .command = "diff",
        .category = "correctness",
        .man_section = "DIFF",
        .help_uri = "man:dtaudit(1)#DIFF",
        .summary = "A tensor of the old checkpoint is not in the new one.",
        .help = "A strict load_state_dict fails with 'Missing key(s)'; a non-strict one leaves the "
                "parameter at its initial value.",
    },
    [DTA_RULE_NONFINITE] = {
        .id = DTA_RULE_NONFINITE,
        .name = "nonfinite",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 9,
        .summary = "With --values: NaN or +-inf in a tensor's data.",
        .help = "A divergent training run, a bad merge or a broken export left NaN or inf in the "
                "weights; every activation they touch becomes NaN. Re-export from a good step, or "
                "find the operation that produced them; no dtype conversion repairs them.",
    },
    [DTA_RULE_RANGE_OVERFLOW] = {
        .id = DTA_RULE_RANGE_OVERFLOW,
        .name = "range-overflow",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 10,
        .summary = "With --values and a target (--target, or --expect): finite values the target "
                   "dtype cannot hold.",
        .help = "Converting makes them inf (fp16 tops out at 65504): dtaudit convert refuses, "
                "torch's .to() silently produces inf and later NaN (black images from fp16 VAEs). "
                "Keep those tensors in their dtype (convert --keep GLOB), clamp them (convert "
                "--on-overflow saturate), or choose a target with more range (bf16).",
    },
    [DTA_RULE_PRECISION_UNDERFLOW] = {
        .id = DTA_RULE_PRECISION_UNDERFLOW,
        .name = "precision-underflow",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .rank = 11,
        .summary = "With --values and a target: more than a share (policy \"underflow_share\", "
                   "default 0.1%) of a tensor's nonzero values become zero in the target.",
        .help = "Small weights silently flush to zero in fp16 (below 2^-25) and lose precision as "
                "subnormals. Keep those tensors in their dtype (convert --keep GLOB), or choose a "
                "target with more range (bf16).",
    },
    [DTA_RULE_INTENDED] = {
        .id = DTA_RULE_INTENDED,
        .name = "intended",
        .severity = DTA_SEV_INFO,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A tensor its model's authors keep in another dtype on purpose (the "
                   "intended-precision table).",
        .help = "The tensor matches a rule of dtaudit's intended-precision table (data/intended.json: "
                "transformers' _keep_in_fp32_modules lists, diffusers' lists, released MoE routing "
                "biases, state-space A_log/D, legacy rotary inv_freq buffers, ...) and raises no dtype "
                "warning; the message names the rule and why. Converting it to the dominant dtype would "
                "change the model. --strict, or \"strict\": true in a policy, reports it as an "
                "ordinary finding; a policy's \"intended\" adds local rules.",
    },
    [DTA_RULE_QUANT_INCOMPLETE] = {
        .id = DTA_RULE_QUANT_INCOMPLETE,
        .name = "quant-incomplete",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A quantized weight lacks a companion, a companion does not fit its weight, or a "
                   "companion has no weight.",
        .help = "A quantized weight is only usable with all its companions (scales, inverse scales, "
                "zero points, absmax, quant maps, global scales, weight_shape) in the shapes the scheme "
                "defines: a block grid of ceil(out/128) x ceil(in/128) including ragged edges, one "
                "scale per group, packed sizes. Without them the loader fails, or reads the raw codes "
                "as weights. Re-export the checkpoint from the quantizer, or restore the missing "
                "tensors.",
    },
    [DTA_RULE_QUANT_COVERAGE] = {
        .id = DTA_RULE_QUANT_COVERAGE,
        .name = "quant-coverage",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "A module the quantization config says is quantized is stored in high precision, or a "
                   "module on its ignore list is quantized.",
        .help = "Loaders build each Linear from the config: a high-precision module among quantized "
                "siblings (one expert left BF16 among FP8 experts) is built as a quantized layer and "
                "fails or is misread; a quantized module on the ignore list (ignore, "
                "modules_to_not_convert, exclude_modules, llm_int8_skip_modules) is built as a plain "
                "layer that reads the raw codes. Quantize the module, or correct the config's list.",
    },
    [DTA_RULE_QUANT_CONFIG] = {
        .id = DTA_RULE_QUANT_CONFIG,
        .name = "quant-config",
        .severity = DTA_SEV_WARNING,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "The quantization config and the tensors disagree.",
        .help = "A quantization_config with no quantized tensors is stale (left after a "
                "dequantization): transformers then fails or quantizes again. Quantized tensors in a "
                "model directory with no config are read as raw codes. A config naming another "
                "scheme, block or group size or bits than the tensors have makes the loader "
                "dequantize wrongly (one finding for the config, with the sizes that fit). A "
                "ComfyUI file keeps its config in markers: scale_weight layers without the "
                "scaled_fp8 tensor, or a quantized layer without comfy_quant among layers that "
                "have it, are read unscaled. Remove or correct the config.",
    },
    [DTA_RULE_QUANT_CAST] = {
        .id = DTA_RULE_QUANT_CAST,
        .name = "quant-cast",
        .severity = DTA_SEV_ERROR,
        .command = "audit",
        .category = "correctness",
        .man_section = "RULES",
        .help_uri = "man:dtaudit(1)#RULES",
        .summary = "High-precision weights beside their quantization companions.",
        .help = "The signature of a blind cast: the quantized codes were converted to BF16/F16/F32 "
                "without applying their scales, and the scales were left behind. The values are wrong "
                "by the scale factors and the model outputs garbage. Convert the original quantized "
                "checkpoint again with a dequantizing converter; dtaudit convert refuses quantized "
                "input unless told --keep-quantized.",
    },
};

const dta_rule_info *dta_rules(size_t *n)
{
    if (n)
        *n = DTA_RULE_COUNT;
    return rules;
}

const dta_rule_info *dta_rule_find(const char *name)
{
    for (size_t i = 0; name && i < DTA_RULE_COUNT; i++)
        if (rules[i].name && strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
}

const dta_rule_info *dta_rule_get(dta_rule id)
{
    return (unsigned)id < DTA_RULE_COUNT ? &rules[id] : NULL;
}

const char *dta_rule_name(dta_rule id)
{
    return (unsigned)id < DTA_RULE_COUNT && rules[id].name ? rules[id].name : "?";
}
