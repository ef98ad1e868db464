/* Streaming of values through the conversion kernels (convert_cpu.c, or the CUDA back
 * end) into a sink, chunk by chunk: memory is bounded by the job's two chunk buffers
 * whatever the checkpoint size (convert_job.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/backend.h"
#include "convert_job.h"
#include "dequant_dev.h"
#include "model_build.h"
#include "src.h"

typedef dta_status (*convert_fn)(dta_dtype, dta_dtype, const void *, void *, size_t,
                                 dta_overflow_mode, dta_convert_stats *, dta_error *);

static bool cancelled(const dtap_job *j)
{
    return j->o->cancel && *j->o->cancel;
}

static dta_status cancel_error(dtap_job *j)
{
    return dta_error_set(j->err, DTA_E_IO, EINTR, "cancelled");
}

static void progress(dtap_job *j, uint64_t n)
{
    j->done += n;
    if (j->o->progress)
        j->o->progress(j->o->progress_ctx, j->done, j->total);
}

/* Converts n elements of dtype from at file offset off into sink, chunk by chunk. */
dta_status dtap_stream_range(dtap_job *j, uint64_t off, uint64_t n, dta_dtype from,
                             dta_dtype to, dtap_sink_fn sink, void *sctx,
                             dta_convert_stats *st)
{
    unsigned ei = elsize(from), eo = elsize(to);
    if (!ei || !eo)
        return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                             "%s -> %s cannot be converted element by element",
                             dta_dtype_name(from), dta_dtype_name(to));
    size_t per = j->chunk / (ei > eo ? ei : eo);
    while (n > 0) {
        if (cancelled(j))
            return cancel_error(j);
        size_t k = n < per ? (size_t)n : per;
        dta_status s = dtap_pread_all(j->fd, j->in, k * ei, off, j->path, NULL, j->err);
        if (s != DTA_OK)
            return s;
        s = (j->cuda ? (convert_fn)dta_convert_cuda : dta_convert)(from, to, j->in, j->out, k,
                                                                   j->o->overflow, st, j->err);
        if (s == DTA_OK)
            s = sink(sctx, j->out, k * eo, j->err);
        if (s != DTA_OK)
            return s;
        off += (uint64_t)k * ei;
        n -= k;
        j->res->bytes_in += (uint64_t)k * ei;
        j->res->bytes_out += (uint64_t)k * eo;
        progress(j, (uint64_t)k * eo);
    }
    return DTA_OK;
}

/* Streams one tensor's elements, in C order, converted to `to`. */
dta_status dtap_stream_tensor(dtap_job *j, const dta_model *m, const dta_tensor *t,
                              dta_dtype to, dtap_sink_fn sink, void *sctx,
                              dta_convert_stats *st)
{
    const dta_storage *s = &m->storages[t->storage];
    uint64_t first;
    if (t->numel == 0)
        return DTA_OK;
    if (s->offset == UINT64_MAX)
        return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                             "tensor '%.200s' is in a compressed record; dtaudit streams only "
                             "stored records",
                             t->name);
    unsigned ei = elsize(s->dtype);
    bool contiguous = dtap_contiguous_view(t, &first);
    if (!ei && s->dtype == to) { /* sub-byte or block values kept as they are: copy bytes */
        uint64_t off, len;
        if (!contiguous || !byte_range(to, first, t->numel, &off, &len))
            return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                                 "tensor '%.200s' is a view of %s values that does not start "
                                 "on a byte boundary; it cannot be copied",
                                 t->name, dta_dtype_name(to));
        dta_convert_stats bytes = {0};
        dta_status r =
            dtap_stream_range(j, s->offset + off, len, DTA_U8, DTA_U8, sink, sctx, &bytes);
        if (r == DTA_OK && st)
            st->elements += t->numel;
        return r;
    }
    if (contiguous)
        return dtap_stream_range(j, s->offset + first * ei, t->numel, s->dtype, to, sink, sctx, st);

    /* a strided view (transposed, expanded, sliced): gather it from its storage */
    if (!ei || !elsize(to))
        return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                             "tensor '%.200s' is a strided view of %s values, which have no "
                             "per-element address",
                             t->name, dta_dtype_name(s->dtype));
    unsigned char *g = NULL, *o = NULL;
    size_t gcap = 0;
    dta_status r = dtap_gather_view(j->fd, j->path, NULL, t, s, &g, &gcap, j->err);
    if (r == DTA_OK && !(o = malloc(t->numel * elsize(to))))
        r = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (r == DTA_OK)
        r = (j->cuda ? (convert_fn)dta_convert_cuda : dta_convert)(s->dtype, to, g, o, t->numel,
                                                                   j->o->overflow, st, j->err);
    if (r == DTA_OK)
        r = sink(sctx, o, t->numel * elsize(to), j->err);
    if (r == DTA_OK) {
        j->res->bytes_in += t->numel * ei;
        j->res->bytes_out += t->numel * elsize(to);
        progress(j, t->numel * elsize(to));
    }
    free(g);
    free(o);
    return r;
}

/* Streams the plain values of quantized parameter p (dequant.h), chunk by chunk. */
dta_status dtap_stream_dq(dtap_job *j, size_t p, dtap_sink_fn sink, void *sctx,
                          dta_convert_stats *st)
{
    int rank;
    const uint64_t *shape;
    uint64_t numel;
    unsigned eo = elsize(j->o->to);
    dtap_dq_shape(j->dq, p, &rank, &shape, &numel);
    size_t per = j->chunk / 4; /* j->out holds 2 * chunk bytes; eo <= 4 */
    if (per > dtap_dq_max_elems())
        per = dtap_dq_max_elems();
    if (!per)
        per = 1;
    for (uint64_t e = 0; e < numel;) {
        if (cancelled(j))
            return cancel_error(j);
        size_t k = numel - e < per ? (size_t)(numel - e) : per;
        dta_status s = (j->cuda ? dtap_dq_run_cuda : dtap_dq_run)(j->dq, p, e, k, j->o->to,
                                                                 j->o->overflow, j->out, st,
                                                                 j->err);
        if (s == DTA_OK)
            s = sink(sctx, j->out, k * eo, j->err);
        if (s != DTA_OK)
            return s;
        e += k;
        j->res->bytes_in += k; /* one byte per code */
        j->res->bytes_out += (uint64_t)k * eo;
        progress(j, (uint64_t)k * eo);
    }
    return DTA_OK;
}
