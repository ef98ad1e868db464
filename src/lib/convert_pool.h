/* The one thread pool of convert --jobs (convert_pool.c): the shards of a directory
 * (convert_shards.c) and the tensors of one output file (convert_file.c). Internal to the
 * library. */
#ifndef DTAUDIT_CONVERT_POOL_H
#define DTAUDIT_CONVERT_POOL_H

#include <stddef.h>

#include "convert_job.h"

/* Does item i with the thread's own job copy wj: its own buffers, --only hits,
 * dequantization state, error (wj->err) and result wj->res (one per item). */
typedef dta_status (*dtap_pool_fn)(void *ctx, dtap_job *wj, size_t i);

/* Runs fn for every i in [0, n) on up to `threads` threads (capped at DTA_MAX_JOBS and n;
 * one runs on the calling thread) that take the next item from a shared counter. The first
 * failure stops the others and is returned in j->err; the caller's cancel flag stops them
 * too ("cancelled"). Progress is reported as j's plus the threads'. Afterwards each item's
 * result is added to j->res in item order (so the summary does not depend on timing), the
 * threads' --only hits to j->only_hit and their progress to j->done and j->total. */
dta_status dtap_pool_run(dtap_job *j, size_t n, unsigned threads, dtap_pool_fn fn, void *ctx);

/* The threads one file may use: j->o->jobs (0: the CPUs) shared by `files` files at once;
 * 1 with CUDA. */
unsigned dtap_inner_threads(const dtap_job *j, unsigned files);

#endif
