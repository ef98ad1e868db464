/* Per-tensor targets for convert --to auto and --keep-intended (convert_auto.c). */
#ifndef DTAP_CONVERT_AUTO_H
#define DTAP_CONVERT_AUTO_H

#include "dtaudit/convert.h"
#include "dtaudit/model.h"

typedef struct {
    const char *name;    /* points into model's tensor names */
    dta_dtype to;        /* the tensor's target; DTA_DTYPE_NONE: it keeps its dtype */
    const char *why;     /* why it is kept: intended rule id, or NULL */
} dtap_auto_entry;

typedef struct {
    dta_model *model;        /* the whole input, headers only */
    dtap_auto_entry *e;      /* sorted by name */
    size_t n;
    dta_dtype config_to;     /* what config.json's torch_dtype becomes (auto: the first root's) */
    size_t kept_intended;    /* floating tensors kept because they are intended islands */
} dtap_auto;

/* Needed when o->to_auto or o->keep_intended; otherwise a->n == 0 and every tensor's
 * target is o->to. */
dta_status dtap_auto_plan(const char *in, const dta_convert_options *o, dtap_auto *a,
                          dta_error *err);
/* The target of tensor t (by name): o->to, its root's compute dtype (auto), or
 * DTA_DTYPE_NONE (kept: an intended island, or a root whose dtype convert cannot write). */
dta_dtype dtap_auto_target(const dtap_auto *a, const dta_convert_options *o, const dta_tensor *t);
void dtap_auto_free(dtap_auto *a);

#endif
