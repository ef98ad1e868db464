/* dtaudit: the table of intended mixed precision (data/intended.json, compiled in).
 *
 * Real checkpoints keep some tensors in another dtype on purpose: T5's feed-forward `wo`
 * in float32 (transformers' _keep_in_fp32_modules), DeepSeek-V3's routing bias, Mamba's
 * A_log/D, rotary inv_freq buffers of old Llama checkpoints. Each rule of the table says
 * which tensors (name patterns), in which dtypes, beside which compute dtype ("when"), for
 * which models (config.json model_type / architectures, diffusers _class_name, or a tensor
 * signature; no key: every model), and why (evidence). Audit reports a matched tensor as an
 * `intended` info finding instead of a dtype warning; convert --keep-intended keeps it.
 *
 * Pattern semantics (dotted components): a pattern is '.'-separated components, each an
 * fnmatch glob confined to one component; it matches a tensor name when its components
 * equal a contiguous run of the name's components. "wo" matches
 * "encoder.block.0.layer.1.DenseReluDense.wo.weight", not "word_embeddings.weight";
 * "gate.weight" matches "mlp.gate.weight", not "mlp.gate_proj.weight".
 *
 * Ownership: a dta_intended owns its rules and every string reachable from them; rule
 * pointers are borrowed and valid until dta_intended_free(). */
#ifndef DTAUDIT_INTENDED_H
#define DTAUDIT_INTENDED_H

#include <stddef.h>
#include <stdint.h>

#include "dtaudit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DTA_INTENDED_MAX_BYTES (4u << 20)  /* a table (or a policy's "intended") of at most 4 MiB */
#define DTA_INTENDED_MAX_RULES 16384u      /* rules per table */
#define DTA_INTENDED_MAX_PATTERNS 256u     /* patterns (and match keys) per rule */
#define DTA_INTENDED_MAX_PATTERN 512u      /* bytes per pattern */

/* Which compute dtype of the root a rule applies beside. */
typedef enum {
    DTA_WHEN_ANY = 0,  /* any floating compute dtype */
    DTA_WHEN_HALF,     /* F16 or BF16 (transformers' _keep_in_fp32_modules_strict, diffusers) */
    DTA_WHEN_FP16      /* F16 only (transformers' non-strict _keep_in_fp32_modules) */
} dta_intended_when;

typedef struct {
    const char *id;          /* "t5.ffn-wo", "transformers.deepseek_v3.strict" */
    const char *origin;      /* "curated", "transformers", "diffusers", "policy" */
    const char *kind;        /* "declared-upcast", "released-on-file", "legacy-buffer", ... */
    const char *why;         /* one sentence */
    const char *evidence;    /* sources joined with "; " */
    const char *since, *until; /* version bounds (documentation; NULL when none) */
    const char *const *model_type;    /* config.json model_type values (any of them) */
    size_t nmodel_type;
    const char *const *architectures; /* config.json architectures entries */
    size_t narchitectures;
    const char *const *class_name;    /* diffusers _class_name values */
    size_t nclass_name;
    const char *const *has_tensor;    /* patterns that must all match some tensor */
    size_t nhas_tensor;
    const char *const *patterns;      /* the tensors the rule covers */
    size_t npatterns;
    const char *sibling;     /* the tensor's module must also hold this name (NULL: no need) */
    uint64_t dtypes;         /* bit (1 << dta_dtype) per allowed dtype */
    dta_intended_when when;
} dta_intended_rule;

typedef struct dta_intended dta_intended;

/* The compiled-in table (data/intended.json of this build). */
dta_status dta_intended_builtin(dta_intended **out, dta_error *err);
/* A table from JSON text: an object with "rules", or an array of rules (a policy's
 * "intended"). name is used in messages ("p.json: intended[2]: unknown dtype 'F33'");
 * default_origin fills rules without "origin". */
dta_status dta_intended_parse(const char *text, size_t n, const char *name,
                              const char *default_origin, dta_intended **out, dta_error *err);
/* Moves more's rules in front of t's (more is consumed and freed): local rules first. */
dta_status dta_intended_prepend(dta_intended *t, dta_intended *more, dta_error *err);
void dta_intended_free(dta_intended *t);

const dta_intended_rule *dta_intended_rules(const dta_intended *t, size_t *n);
/* "transformers 5.24.0" (or NULL): the transformers version the generated rules were read from. */
const char *dta_intended_source_version(const dta_intended *t);

/* True when pattern matches name under the dotted-component semantics above. */
bool dta_intended_pattern_matches(const char *pattern, const char *name);

/* For each tensor of m: the first rule that makes it an intended island, or NULL. A tensor
 * is one when it is floating, its dtype is not its root's compute dtype
 * (tensor_dominant[i], DTA_DTYPE_NONE: none), the rule applies to the model (its
 * model_type / architectures / class_name / has_tensor, or no key at all), one of its
 * patterns matches, its sibling exists, its dtypes hold the tensor's dtype and "when"
 * admits the compute dtype. out has m->ntensors entries. */
dta_status dta_intended_mark(const dta_intended *t, const dta_model *m,
                             const dta_dtype *tensor_dominant, const dta_intended_rule **out,
                             dta_error *err);

#ifdef __cplusplus
}
#endif
#endif
