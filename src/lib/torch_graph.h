/* The torch object graph (torch_graph.c): what torch.save pickles mean, shared by the
 * zip and legacy readers and the torch zip writer. Internal to the library.
 *
 * Walks a torch.save object graph and adds every tensor it finds to a model: flattened
 * names, roots (docs/design.md), meta tensors, numpy arrays (as notes). The reader supplies
 * the storage resolver for its container. */
#ifndef DTAP_TORCH_GRAPH_H
#define DTAP_TORCH_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/model.h"
#include "pickle.h"

/* Resolves a persistent id (the PERSID node's pid object) for a tensor of dtype; returns
 * the model storage index and an extra element offset (legacy view storages). */
typedef dta_status (*dtap_storage_fn)(void *ctx, const dtap_pnode *pid, dta_dtype dtype,
                                      const char *tensor, size_t *storage, uint64_t *extra_off,
                                      dta_error *err);

/* name_prefix: prepended with '.' to every name (e.g. "constants"), or NULL. */
dta_status dtap_torch_walk(const dtap_pickle *pk, dta_model *m, size_t file,
                           const char *name_prefix, dtap_storage_fn resolve, void *ctx,
                           dta_error *err);
/* Adds one unsafe-pickle note per unsafe global of pk (skipping ones already noted). */
dta_status dtap_torch_unsafe_notes(const dtap_pickle *pk, dta_model *m, dta_error *err);
/* The dtype of a storage class global (torch.FloatStorage, torch.storage.UntypedStorage
 * -> U8 with *untyped set). DTA_DTYPE_NONE when it is not one. */
dta_dtype dtap_torch_storage_dtype(const dtap_pnode *g, bool *untyped);
/* Refuses (DTA_E_FORMAT) storage pids that torch would resolve to a different storage
 * than the tensor's own pid says: one key under two storage classes or sizes, a legacy
 * view key reused (legacy: 6-tuple pids with view metadata), a bytes key in a zip
 * (torch_pids.c). */
dta_status dtap_torch_check_pids(const dtap_pickle *pk, bool legacy, dta_error *err);

#endif
