/* dtaudit: dtype drift between two checkpoints (dtaudit diff OLD NEW).
 *
 * Tensors are matched by their flattened name, whatever the formats (a PyTorch .bin
 * against its safetensors conversion compares tensor by tensor). Each difference is a
 * change with a rule of the catalogue (dtaudit/rules.h), like a finding:
 *   dtype-changed  (warning) same name, another dtype
 *   shape-changed  (error)   same name, another shape
 *   tensor-added   (warning) only in NEW
 *   tensor-removed (error)   only in OLD
 * A tensor whose dtype and shape both changed gives two changes.
 *
 * A dta_diff borrows both models: keep them alive until dta_diff_free(). */
#ifndef DTAUDIT_DIFF_H
#define DTAUDIT_DIFF_H

#include "dtaudit/audit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DTA_CHANGE_DTYPE = 0,
    DTA_CHANGE_SHAPE,
    DTA_CHANGE_ADDED,
    DTA_CHANGE_REMOVED,
    DTA_CHANGE_KINDS
} dta_change_kind;

typedef struct {
    dta_change_kind kind;
    const char *rule;        /* static: "dtype-changed", ... */
    dta_severity severity;   /* the rule's, after policy overrides */
    size_t old_tensor;       /* index into the old model's tensors, SIZE_MAX when added */
    size_t new_tensor;       /* index into the new model's tensors, SIZE_MAX when removed */
    size_t root;             /* index into dta_diff.roots */
    const char *name;        /* borrowed from the model that holds the tensor */
    dta_rule rule_id;        /* the rule (dtaudit/rules.h); rule is its name */
} dta_change;

/* Elements whose dtype moved from one type to another (dtype-changed, grouped). */
typedef struct {
    dta_dtype from, to;
    uint64_t tensors, numel;
} dta_dtype_move;

typedef struct {
    char *name;
    dta_dtype old_dominant, new_dominant; /* DTA_DTYPE_NONE when absent on that side */
    uint64_t old_tensors, new_tensors;
    uint64_t changes[DTA_CHANGE_KINDS];   /* reported changes per kind */
    dta_dtype_move *moves;                /* most elements first */
    size_t nmoves;
} dta_diff_root;

typedef struct {
    const dta_model *old_model, *new_model;
    dta_change *changes;     /* sorted by (root, name in natural order, kind) */
    size_t nchanges;
    dta_diff_root *roots;    /* the old model's roots in order, then roots only in NEW */
    size_t nroots;
    uint64_t changes_by_kind[DTA_CHANGE_KINDS];
} dta_diff;

typedef struct {
    const dta_rule_severity *severity; /* policy overrides; DTA_SEV_OFF drops a rule */
    size_t nseverity;
} dta_diff_options;

dta_status dta_diff_build(const dta_model *old_model, const dta_model *new_model,
                          const dta_diff_options *opt, dta_diff **out, dta_error *err);
void dta_diff_free(dta_diff *d);

/* "dtype-changed", "shape-changed", "tensor-added", "tensor-removed". */
const char *dta_change_rule(dta_change_kind k);
/* Compares names with digit runs as numbers: layers.2 < layers.10. */
int dta_name_cmp(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif
