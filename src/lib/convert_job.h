/* One checkpoint conversion (dta_convert_checkpoint, convert.c) and the files that carry
 * it out: the plan of which storage becomes which dtype (convert_plan.c), the streaming of
 * values through the kernels (convert_stream.c), the writer of one output file
 * (convert_file.c) and of a model directory or sharded checkpoint (convert_tree.c).
 * Verification (convert_verify.c) shares only the element helpers below. Internal to the
 * library. */
#ifndef DTAUDIT_CONVERT_JOB_H
#define DTAUDIT_CONVERT_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/convert.h"
#include "convert_auto.h"
#include "dtaudit/limits.h"

#include <unistd.h>

/* One merge of conversion statistics (per tensor into a file, per file or thread into the job). */
static inline void dtap_stats_add(dta_convert_stats *a, const dta_convert_stats *b)
{
    a->elements += b->elements;
    a->overflow += b->overflow;
    a->nan += b->nan;
    a->inf += b->inf;
    a->underflow += b->underflow;
}

/* --jobs' default: the online CPUs, at least 1, at most DTA_MAX_JOBS. */
static inline unsigned dtap_jobs_default(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > (long)DTA_MAX_JOBS ? DTA_MAX_JOBS : (unsigned)n;
}
#include "dequant.h"
#include "publish.h"

/* Sorted names of the tensors of quantized parameters (quant.h): never converted. */
typedef struct {
    char **v;
    size_t n;
} dtap_qnames;

typedef struct dtap_job_ {
    const dta_convert_options *o;
    dta_convert_result *res;
    dta_error *err;
    unsigned char *in, *out; /* chunk buffers */
    size_t chunk;            /* bytes of in; out holds the same elements in the target */
    uint64_t done, total;    /* output bytes, for progress */
    int fd;                  /* input file being read */
    const char *path;
    bool cuda;               /* kernels run on the GPU (backend.h) */
    bool *only_hit;          /* per --only glob: it named a tensor of the input */
    const dtap_target *target; /* the output: never one of the files read */
    const dtap_auto *ap;     /* per-tensor targets (--to auto, --keep-intended) */
    dtap_qnames *quantized;  /* --keep-quantized: the input's quantized tensors */
    dtap_dq *dq;             /* --dequantize of a quantized input (dequant.h), else NULL */
    /* --jobs / --part (convert_shards.h) */
    const dta_model *dq_model; /* --dequantize: the whole checkpoint (per-thread states) */
    const char *stage;       /* --part: the staging directory, else NULL */
    bool stage_link;         /* --part, publishing: link the staged shards in */
    unsigned sharing;        /* files converted at once by sibling threads (0: one) */
    /* dtap_convert_file and dtap_convert_tree, for convert_shards.c (set by convert.c:
     * called through the job, so the files do not call each other in a cycle) */
    dta_status (*convert_file)(struct dtap_job_ *, const char *, int, const char *,
                               const char **);
    dta_status (*convert_tree)(struct dtap_job_ *, const char *, const char *, const char **);
} dtap_job;

/* Bytes per element; 0 for sub-byte and block types (F4, F6), which are only ever copied
 * whole (byte_range) and never addressed element by element. */
static inline unsigned elsize(dta_dtype t) { return (unsigned)dta_dtype_elem_size(t); }

/* Byte offset and length of elements [first, first + n) of dtype t; false when the range
 * does not start and end on a whole block (an F4 view starting at an odd element). */
static inline bool byte_range(dta_dtype t, uint64_t first, uint64_t n, uint64_t *off,
                              uint64_t *len)
{
    return dta_dtype_nbytes(t, first, off) && dta_dtype_nbytes(t, n, len);
}

/* ---- plan (convert_plan.c) ---- */

/* new_dtype[s] for every storage: the target when every tensor viewing it is selected.
 * A storage whose views disagree cannot be half converted: refuse, naming them. */
dta_status dtap_convert_plan(const dta_model *m, const dta_convert_options *o,
                             const dtap_auto *ap, const dtap_qnames *qn, bool *only_hit,
                             dta_dtype **out, dta_error *err);

/* Quantized input: refused (nothing written), or with keep_quantized the names of its
 * quantized tensors, which are then copied as they are. Only headers are read. */
dta_status dtap_quantized_names(const char *in, const dta_convert_options *o,
                                dtap_qnames *out, dta_error *err);
void dtap_qnames_free(dtap_qnames *q);

/* ---- streaming (convert_stream.c) ---- */

/* Where converted bytes go: a file, a zip entry. */
typedef dta_status (*dtap_sink_fn)(void *ctx, const void *p, size_t n, dta_error *err);

/* Converts n elements of dtype from at file offset off into sink, chunk by chunk. */
dta_status dtap_stream_range(dtap_job *j, uint64_t off, uint64_t n, dta_dtype from,
                             dta_dtype to, dtap_sink_fn sink, void *sctx,
                             dta_convert_stats *st);

/* Streams one tensor's elements, in C order, converted to `to`. */
dta_status dtap_stream_tensor(dtap_job *j, const dta_model *m, const dta_tensor *t,
                              dta_dtype to, dtap_sink_fn sink, void *sctx,
                              dta_convert_stats *st);

/* Streams the plain values of quantized parameter p (dequant.h), chunk by chunk. */
dta_status dtap_stream_dq(dtap_job *j, size_t p, dtap_sink_fn sink, void *sctx,
                          dta_convert_stats *st);

/* ---- outputs (convert_file.c, convert_tree.c) ---- */

/* Converts one checkpoint file into the open file fd (path for messages). *format gets
 * the format written. */
dta_status dtap_convert_file(dtap_job *j, const char *in, int fd, const char *path,
                             const char **format);

/* Converts a model directory, or a sharded index and its shards, into the directory tmp:
 * same layout (shards in subfolders stay there), converted shards, index and config.json
 * updated; for a directory input every other file, folder and inner link is copied
 * (copytree.h: nothing from outside the input; what is left out is reported). */
dta_status dtap_convert_tree(dtap_job *j, const char *in, const char *tmp,
                             const char **format);

/* --verify before publishing (convert_verify.c): the conversion written to tmp is read
 * back and compared with in; its totals go to j->res->verify, and any difference is an
 * error naming out (the temporary is never shown). */
dta_status dtap_verify_unpublished(dtap_job *j, const char *in, const char *tmp,
                                   const char *out);

#endif
