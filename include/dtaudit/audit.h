/* dtaudit: per-root summaries, the module tree and findings (docs/design.md "Findings").
 *
 * A report borrows its model: keep the model alive until dta_report_free(). */
#ifndef DTAUDIT_AUDIT_H
#define DTAUDIT_AUDIT_H

#include "dtaudit/intended.h"
#include "dtaudit/model.h"
#include "dtaudit/values.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --allow GLOB[=DTYPE]: tensors whose name, or one of whose modules, matches GLOB
 * (fnmatch, '*' also matches '.') and whose dtype is DTYPE (any when NONE). */
typedef struct {
    const char *glob;
    dta_dtype dtype;
} dta_allow;

/* A per-rule severity override (policy "severity"): severity is a dta_severity, or
 * DTA_SEV_OFF to drop the rule's findings. */
#define DTA_SEV_OFF (-1)
typedef struct {
    const char *rule;
    int severity;
} dta_rule_severity;

struct dta_report;

/* Fields may be added at the end: initialise with designated initialisers. */
typedef struct {
    dta_dtype expect;        /* DTA_DTYPE_NONE: no expect-mismatch findings */
    const dta_allow *allow;
    size_t nallow;
    bool findings;           /* false for scan: summaries and modules only */
    const dta_rule_severity *severity; /* overrides applied to every finding, last one wins */
    size_t nseverity;
    /* --base: the report of a PEFT adapter's base model (NULL: none). When the model is a
     * PEFT adapter, adapter-mismatch compares its dominant dtype with the base's (the
     * base's first analysed root with a dominant dtype, else its config.json dtype). */
    const struct dta_report *base;
    /* audit --values: the scan of this model (values.h; NULL: no value rules) and the share
     * of a tensor's nonzero values above which precision-underflow fires: 0 means the
     * default DTA_UNDERFLOW_SHARE_DEFAULT (0.001 = 0.1%), a negative value any underflow. */
    const struct dta_values *values;
    double underflow_share;
    /* The intended-precision table (intended.h; NULL: none). A tensor it matches raises no
     * dtype finding but an `intended` info finding, unless strict is set: then intended
     * islands are ordinary tensors again (dtype-outlier, mixed-module, expect-mismatch). */
    const dta_intended *intended;
    bool strict;
} dta_audit_options;

typedef struct {
    uint64_t tensors, numel, nbytes;
} dta_count;

typedef struct {
    char *name;
    bool analysed;           /* false for optimizer* roots */
    dta_dtype dominant;      /* floating dtype with the most elements, NONE if none */
    dta_count total;
    dta_count by_dtype[DTA_DTYPE_COUNT];
} dta_root_summary;

typedef struct {
    dta_dtype dtype;
    dta_count count;
} dta_dtype_count;

typedef struct {
    char *root;
    char *name;              /* full module name ("teacher.layers.0.fc1") */
    dta_count total;         /* whole subtree */
    dta_dtype_count *dtypes; /* the dtypes present in the subtree, in enum order; the
                              * tensors of a quantized parameter count under the dtype it
                              * dequantizes to (its logical dtype) */
    size_t ndtypes;
    uint64_t quantized;      /* tensors of quantized parameters in the subtree */
} dta_module;

typedef struct {
    const char *rule;        /* static: the catalogue's name of rule_id ("dtype-outlier") */
    dta_severity severity;
    char *root;
    size_t root_index;       /* into dta_report.roots, SIZE_MAX for file-level findings */
    char *module;            /* module, tensor or pickle global the finding is about */
    dta_dtype dtype;         /* the offending dtype (NONE when not about a dtype) */
    dta_dtype expected;      /* what it should be (NONE when not applicable) */
    char **tensors;
    size_t ntensors;
    uint64_t numel;          /* elements of the tensors listed */
    char *message;
    size_t file;             /* model->files index of the first tensor, SIZE_MAX when none */
    dta_rule rule_id;        /* the rule (dtaudit/rules.h); rule is its name */
    dta_values_tensor *values; /* value rules: counts summed over its tensors (owned), else NULL */
    /* `intended` findings: the rule matched (borrowed from the options' table), else NULL */
    const dta_intended_rule *intended;
} dta_finding;

typedef struct dta_report {
    const dta_model *model;
    dta_root_summary *roots;
    size_t nroots;
    dta_module *modules;     /* sorted by (root order, name) */
    size_t nmodules;
    dta_finding *findings;   /* sorted by (root order, module, rule) */
    size_t nfindings;
    dta_count total;         /* tensors sharing a storage count their bytes once */
    size_t *tensor_root;     /* per model tensor: its index into roots */
    /* per model tensor: the intended rule that matched it (NULL: none, or allowed by the
     * user); the array itself is NULL when no tensor matched, under strict, or without a
     * table */
    const dta_intended_rule **intended;
    /* Quantization (quant.h): the scheme, logical parameters and the role of each tensor;
     * owned by the report. Quantized parameters and their companions are left out of the
     * dominant (compute) dtype and never raise dtype-outlier, mixed-module or
     * expect-mismatch. */
    struct dta_quant *quant;
    /* private: module names and dtype arrays (one allocator, freed with the report) */
    void *arena;
} dta_report;

dta_status dta_report_build(const dta_model *m, const dta_audit_options *opt, dta_report **out,
                            dta_error *err);
void dta_report_free(dta_report *r);

const char *dta_severity_name(dta_severity s);
/* "error", "warning", "info", "never" -> severity; -1 when unknown. */
int dta_severity_from_name(const char *s);

#ifdef __cplusplus
}
#endif
#endif
