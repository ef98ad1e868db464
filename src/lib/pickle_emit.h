/* The pickle emitter (pickle_emit.c): a graph of pickle objects (pickle.h) written back
 * as a protocol-2 pickle, shared objects memoised once. */
#ifndef DTAP_PICKLE_EMIT_H
#define DTAP_PICKLE_EMIT_H

#include <stddef.h>

#include "dtaudit/error.h"
#include "pickle.h"

typedef struct dtap_pemit dtap_pemit;

/* Called while emitting; a status other than DTA_OK ends the emission with it. */
typedef struct {
    /* A call fn(args) (REDUCE, NEWOBJ) about to be written: may replace *fn and *args,
     * with nodes from dtap_pemit_node/_tuple/_global (each of the first two used once). */
    dta_status (*call)(void *ctx, dtap_pemit *pe, const dtap_pnode **fn, const dtap_pnode **args);
    /* A persistent id about to be written (n->args, its value, is not NULL). */
    dta_status (*persid)(void *ctx, dtap_pemit *pe, const dtap_pnode *n);
    void *ctx;
} dtap_pemit_hooks;

/* Writes root as a whole pickle (PROTO 2 ... STOP) into a new buffer *out (*n bytes; the
 * caller frees it); hooks may be NULL. Caps: DTA_MAX_WRITE_PICKLE bytes, nesting
 * DTA_MAX_WRITE_DEPTH. */
dta_status dtap_pickle_emit(const dtap_pnode *root, const dtap_pemit_hooks *hooks,
                            unsigned char **out, size_t *n, dta_error *err);

/* Synthetic nodes for the call hook (NULL when out of memory): a node of a kind and a
 * tuple with room for cap items (dtap_pemit_push appends while there is room) live until
 * the call they were made for is written, and each may be written once; a global (one
 * node per module and name; mod and name must be static) lives to the end. */
dtap_pnode *dtap_pemit_node(dtap_pemit *pe, dtap_pkind kind);
dtap_pnode *dtap_pemit_tuple(dtap_pemit *pe, size_t cap);
void dtap_pemit_push(dtap_pnode *tuple, const dtap_pnode *x);
dtap_pnode *dtap_pemit_global(dtap_pemit *pe, const char *mod, const char *name);

#endif
