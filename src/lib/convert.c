/* Checkpoint conversion: decide a dtype per storage, stream the data through the kernels
 * (convert_cpu.c) into a writer, and publish the result atomically.
 *
 * Memory is bounded by two chunk buffers whatever the checkpoint size. Output goes to a
 * temporary name in the destination directory (".NAME.dtaudit-XXXXXX", held under an
 * flock while it is written), is fsynced, optionally verified, then renamed over NAME;
 * the directory is fsynced after. A later run removes temporaries whose writer died
 * (their lock is free). The input is opened read-only and never written. */
#define _GNU_SOURCE /* flock, O_CLOEXEC helpers, realpath */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#include "dtaudit/quant.h"
#include "convert_auto.h"
#include "format.h"
#include "model_build.h"
#include "copytree.h"
#include "dequant.h"
#include "pathsafe.h"
#include "publish.h"
#include "src.h"
#include "write_safetensors.h"
#include "write_torchzip.h"

#define CHUNK_DEFAULT (4u << 20)

typedef struct {
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
    struct qnames *quantized; /* --keep-quantized: the input's quantized tensors */
    dtap_dq *dq;             /* --dequantize of a quantized input (dequant.h), else NULL */
} job;

/* Sorted names of the tensors of quantized parameters (quant.h): never converted. */
typedef struct qnames {
    char **v;
    size_t n;
} qnames;

typedef dta_status (*convert_fn)(dta_dtype, dta_dtype, const void *, void *, size_t,
                                 dta_overflow_mode, dta_convert_stats *, dta_error *);
typedef dta_status (*verify_fn)(dta_dtype, dta_dtype, const void *, const void *, size_t,
                                dta_overflow_mode, dta_verify_stats *, dta_error *);

/* ---- small helpers ----------------------------------------------------------------- */

/* snprintf for paths: false when the result would not fit (callers refuse such paths). */
static bool fmt_path(char *buf, size_t cap, const char *fmt, ...) DTA_PRINTF(3, 4);
static bool fmt_path(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

/* Bytes per element; 0 for sub-byte and block types (F4, F6), which are only ever copied
 * whole (byte_range) and never addressed element by element. */
static unsigned elsize(dta_dtype t) { return (unsigned)dta_dtype_elem_size(t); }

/* Byte offset and length of elements [first, first + n) of dtype t; false when the range
 * does not start and end on a whole block (an F4 view starting at an odd element). */
static bool byte_range(dta_dtype t, uint64_t first, uint64_t n, uint64_t *off, uint64_t *len)
{
    return dta_dtype_nbytes(t, first, off) && dta_dtype_nbytes(t, n, len);
}

static dta_status write_all(int fd, const void *p, size_t n, const char *path, dta_error *err)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return dta_error_set(err, DTA_E_IO, errno, "%s: write failed: %s", path,
                                 strerror(errno));
        c += w;
        n -= (size_t)w;
    }
    return DTA_OK;
}

static bool cancelled(const job *j)
{
    return j->o->cancel && *j->o->cancel;
}

static dta_status cancel_error(job *j)
{
    return dta_error_set(j->err, DTA_E_IO, EINTR, "cancelled");
}

static void progress(job *j, uint64_t n)
{
    j->done += n;
    if (j->o->progress)
        j->o->progress(j->o->progress_ctx, j->done, j->total);
}

/* ---- selection ---------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_quantized(const qnames *q, const char *name)
{
    return q && q->n && bsearch(&name, q->v, q->n, sizeof *q->v, cmp_str) != NULL;
}

/* The tensor's target (DTA_DTYPE_NONE: it keeps its dtype). */
static dta_dtype selected(const dta_convert_options *o, const dtap_auto *ap, const qnames *qn,
                          const dta_tensor *t, bool *only_hit)
{
    for (size_t i = 0; i < o->nonly && only_hit; i++)
        if (!only_hit[i] && dtap_name_matches(o->only[i], t->name))
            only_hit[i] = true;
    dta_dtype to = dtap_auto_target(ap, o, t);
    if (to == DTA_DTYPE_NONE || !dta_convert_supported(t->dtype, to) || t->dtype == to ||
        !dta_dtype_is_float(t->dtype) || is_quantized(qn, t->name))
        return DTA_DTYPE_NONE;
    if (!o->optimizer && strncmp(t->root, "optimizer", 9) == 0)
        return DTA_DTYPE_NONE;
    bool in = o->nonly == 0;
    for (size_t i = 0; i < o->nonly && !in; i++)
        in = dtap_name_matches(o->only[i], t->name);
    for (size_t i = 0; i < o->nkeep && in; i++)
        in = !dtap_name_matches(o->keep[i], t->name);
    return in ? to : DTA_DTYPE_NONE;
}

/* new_dtype[s] for every storage: the target when every tensor viewing it is selected.
 * A storage whose views disagree cannot be half converted: refuse, naming them. */
static dta_status plan(const dta_model *m, const dta_convert_options *o, const dtap_auto *ap,
                       const qnames *qn, bool *only_hit, dta_dtype **out, dta_error *err)
{
    dta_dtype *nd = calloc(m->nstorages ? m->nstorages : 1, sizeof *nd);
    /* per storage: 0 no vote yet, 1 its first view keeps its dtype, else 2 + that view's target */
    int *vote = calloc(m->nstorages ? m->nstorages : 1, sizeof *vote);
    size_t *first = calloc(m->nstorages ? m->nstorages : 1, sizeof *first);
    if (!nd || !vote || !first) {
        free(nd);
        free(vote);
        free(first);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    for (size_t s = 0; s < m->nstorages; s++)
        nd[s] = m->storages[s].dtype;
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        if (t->storage == SIZE_MAX)
            continue;
        dta_dtype to = selected(o, ap, qn, t, only_hit);
        int v = to == DTA_DTYPE_NONE ? 1 : 2 + (int)to;
        if (vote[t->storage] == 0) {
            vote[t->storage] = v;
            first[t->storage] = i;
        } else if (vote[t->storage] != v) {
            const dta_tensor *a = &m->tensors[first[t->storage]];
            const dta_tensor *yes = to != DTA_DTYPE_NONE ? t : a, *no = yes == t ? a : t;
            dta_error_set(err, DTA_E_REFUSED, 0,
                          "tensors '%.120s' and '%.120s' share one storage but only '%.120s' "
                          "is selected for conversion; select both or neither (--only/--keep)",
                          yes->name, no->name, yes->name);
            free(nd);
            free(vote);
            free(first);
            return DTA_E_REFUSED;
        }
    }
    for (size_t s = 0; s < m->nstorages; s++)
        if (vote[s] >= 2)
            nd[s] = (dta_dtype)(vote[s] - 2);
    free(vote);
    free(first);
    *out = nd;
    return DTA_OK;
}

/* Records overflow/NaN/Inf of a storage against the tensors viewing it. */
static dta_status note_issue(job *j, const dta_model *m, size_t storage,
                             const dta_convert_stats *st)
{
    if (!st->overflow && !st->nan && !st->inf)
        return DTA_OK;
    dta_convert_result *r = j->res;
    for (size_t i = 0; i < m->ntensors; i++) {
        if (m->tensors[i].storage != storage)
            continue;
        dta_convert_issue *p = realloc(r->issues, (r->nissues + 1) * sizeof *p);
        if (!p)
            return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        r->issues = p;
        p[r->nissues] = (dta_convert_issue){strdup(m->tensors[i].name), st->overflow, st->nan,
                                            st->inf};
        if (!p[r->nissues].name)
            return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        r->nissues++;
        break; /* one name per storage is enough to find it */
    }
    return DTA_OK;
}

/* The same for a dequantized parameter, by name. */
static dta_status note_issue_name(job *j, const char *name, const dta_convert_stats *st)
{
    if (!st->overflow && !st->nan && !st->inf)
        return DTA_OK;
    dta_convert_result *r = j->res;
    dta_convert_issue *p = realloc(r->issues, (r->nissues + 1) * sizeof *p);
    if (!p)
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    r->issues = p;
    p[r->nissues] = (dta_convert_issue){strdup(name), st->overflow, st->nan, st->inf};
    if (!p[r->nissues].name)
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    r->nissues++;
    return DTA_OK;
}

static void add_stats(dta_convert_stats *a, const dta_convert_stats *b)
{
    a->elements += b->elements;
    a->overflow += b->overflow;
    a->nan += b->nan;
    a->inf += b->inf;
    a->underflow += b->underflow;
}

/* ---- streaming ---------------------------------------------------------------------- */

typedef dta_status (*sink_fn)(void *ctx, const void *p, size_t n, dta_error *err);

/* Converts n elements of dtype from at file offset off into sink, chunk by chunk. */
static dta_status stream_range(job *j, uint64_t off, uint64_t n, dta_dtype from, dta_dtype to,
                               sink_fn sink, void *sctx, dta_convert_stats *st)
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
static dta_status stream_tensor(job *j, const dta_model *m, const dta_tensor *t, dta_dtype to,
                                sink_fn sink, void *sctx, dta_convert_stats *st)
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
        dta_status r = stream_range(j, s->offset + off, len, DTA_U8, DTA_U8, sink, sctx, &bytes);
        if (r == DTA_OK && st)
            st->elements += t->numel;
        return r;
    }
    if (contiguous)
        return stream_range(j, s->offset + first * ei, t->numel, s->dtype, to, sink, sctx, st);

    /* a strided view (transposed, expanded, sliced): gather it from its storage */
    if (!ei || !elsize(to))
        return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                             "tensor '%.200s' is a strided view of %s values, which have no "
                             "per-element address",
                             t->name, dta_dtype_name(s->dtype));
    if (s->nbytes > DTA_MAX_GATHER_BYTES || t->numel > DTA_MAX_GATHER_BYTES / ei)
        return dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                             "tensor '%.200s' is a non-contiguous view of a %llu-byte storage; "
                             "views above %u bytes are not gathered",
                             t->name, (unsigned long long)s->nbytes, DTA_MAX_GATHER_BYTES);
    unsigned char *whole = malloc(s->nbytes ? s->nbytes : 1);
    unsigned char *g = malloc(t->numel * ei);
    unsigned char *o = malloc(t->numel * elsize(to));
    dta_status r = whole && g && o ? DTA_OK
                                   : dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (r == DTA_OK)
        r = dtap_pread_all(j->fd, whole, s->nbytes, s->offset, j->path, NULL, j->err);
    if (r == DTA_OK) {
        uint64_t idx[DTA_MAX_RANK] = {0};
        for (uint64_t e = 0; e < t->numel; e++) {
            uint64_t at = t->storage_offset;
            for (int k = 0; k < t->rank; k++)
                at += idx[k] * (uint64_t)t->stride[k]; /* bounded: checked when read */
            memcpy(g + e * ei, whole + at * ei, ei);
            for (int k = t->rank - 1; k >= 0; k--) {
                if (++idx[k] < t->shape[k])
                    break;
                idx[k] = 0;
            }
        }
        r = (j->cuda ? (convert_fn)dta_convert_cuda : dta_convert)(s->dtype, to, g, o, t->numel,
                                                                   j->o->overflow, st, j->err);
    }
    if (r == DTA_OK)
        r = sink(sctx, o, t->numel * elsize(to), j->err);
    if (r == DTA_OK) {
        j->res->bytes_in += t->numel * ei;
        j->res->bytes_out += t->numel * elsize(to);
        progress(j, t->numel * elsize(to));
    }
    free(whole);
    free(g);
    free(o);
    return r;
}

/* Streams the plain values of quantized parameter p (dequant.h), chunk by chunk. */
static dta_status stream_dq(job *j, size_t p, sink_fn sink, void *sctx, dta_convert_stats *st)
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
        dta_status s = dtap_dq_run(j->dq, p, e, k, j->o->to, j->o->overflow, j->out, st, j->err);
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

/* ---- safetensors output ---------------------------------------------------------------- */

typedef struct {
    int fd;
    const char *path;
} fd_sink;

static dta_status fd_write(void *ctx, const void *p, size_t n, dta_error *err)
{
    fd_sink *s = ctx;
    return write_all(s->fd, p, n, s->path, err);
}

static bool same_view(const dta_tensor *a, const dta_tensor *b)
{
    if (a->storage != b->storage || a->storage_offset != b->storage_offset ||
        a->rank != b->rank || a->dtype != b->dtype)
        return false;
    for (int k = 0; k < a->rank; k++)
        if (a->shape[k] != b->shape[k] ||
            (a->stride ? a->stride[k] : 0) != (b->stride ? b->stride[k] : 0))
            return false;
    return (a->stride == NULL) == (b->stride == NULL);
}

/* Writes m as one safetensors file to fd. Tensors that are exact aliases of an earlier one
 * (tied weights) are written once and recorded in the metadata as safetensors.torch's
 * save_model does: metadata[dropped] = kept. */
static dta_status write_safetensors(job *j, const dta_model *m, const dta_dtype *nd, int fd,
                                    const char *path)
{
    dtap_st_out *outs = calloc(m->ntensors ? m->ntensors : 1, sizeof *outs);
    dta_kv *meta = calloc(m->nmetadata + m->ntensors + 1, sizeof *meta);
    size_t *dqp = malloc((m->ntensors ? m->ntensors : 1) * sizeof *dqp); /* per tensor */
    size_t n = 0, nmeta = 0;
    unsigned char *hdr = NULL;
    size_t hlen;
    dta_status st = DTA_OK;
    if (!outs || !meta || !dqp) {
        st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m->nmetadata; i++)
        meta[nmeta++] = m->metadata[i];
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        if (t->name_nul) {
            st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                               "tensor '%.200s...' has a NUL byte in its name; dtaudit does not "
                               "write such names to safetensors",
                               t->name);
            goto out;
        }
        if (t->meta) {
            st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                               "tensor '%.200s' was saved without data (meta device) and cannot "
                               "be written to safetensors",
                               t->name);
            goto out;
        }
        size_t pq;
        int role = j->dq ? dtap_dq_role(j->dq, t->name, &pq) : DTAP_DQ_PLAIN;
        dqp[i] = SIZE_MAX;
        if (role == DTAP_DQ_DROP) { /* a companion: the plain checkpoint has none */
            j->res->companions_dropped++;
            continue;
        }
        if (role == DTAP_DQ_WEIGHT) {
            int rank;
            const uint64_t *shape;
            uint64_t numel;
            dtap_dq_shape(j->dq, pq, &rank, &shape, &numel);
            dqp[i] = pq;
            outs[n] = (dtap_st_out){dtap_dq_out_name(j->dq, pq), j->o->to, rank, shape,
                                    numel * elsize(j->o->to), 0, i};
            n++;
            continue;
        }
        size_t alias = SIZE_MAX;
        if (t->shared)
            for (size_t k = 0; k < n && alias == SIZE_MAX; k++)
                if (same_view(&m->tensors[outs[k].tag], t))
                    alias = outs[k].tag;
        if (alias != SIZE_MAX) {
            meta[nmeta++] = (dta_kv){t->name, m->tensors[alias].name};
            continue;
        }
        dta_dtype to = nd[t->storage];
        uint64_t nb;
        if (!dta_dtype_nbytes(to, t->numel, &nb)) {
            st = dta_error_set(j->err, DTA_E_FORMAT, 0, "tensor '%.200s': %llu %s values are not "
                               "a whole number of bytes", t->name,
                               (unsigned long long)t->numel, dta_dtype_name(to));
            goto out;
        }
        outs[n] = (dtap_st_out){t->name, to, t->rank, t->shape, nb, 0, i};
        n++;
    }
    st = dtap_st_header(outs, n, meta, nmeta, &hdr, &hlen, j->err);
    if (st == DTA_OK)
        st = write_all(fd, hdr, hlen, path, j->err);
    fd_sink sink = {fd, path};
    for (size_t i = 0; i < n && st == DTA_OK; i++) {
        const dta_tensor *t = &m->tensors[outs[i].tag];
        dta_convert_stats cs = {0};
        if (dqp[outs[i].tag] != SIZE_MAX) {
            st = stream_dq(j, dqp[outs[i].tag], fd_write, &sink, &cs);
            if (st == DTA_OK) {
                add_stats(&j->res->stats, &cs);
                j->res->tensors_converted++;
                j->res->params_dequantized++;
                st = note_issue_name(j, t->name, &cs);
            }
            continue;
        }
        st = stream_tensor(j, m, t, outs[i].dtype, fd_write, &sink, &cs);
        if (st == DTA_OK && outs[i].dtype != m->storages[t->storage].dtype) {
            add_stats(&j->res->stats, &cs);
            j->res->tensors_converted++;
            j->res->storages_converted++;
            st = note_issue(j, m, t->storage, &cs);
        }
    }
out:
    free(hdr);
    free(outs);
    free(meta);
    free(dqp);
    return st;
}

/* ---- torch zip output ------------------------------------------------------------------ */

typedef struct {
    job *j;
    const dta_model *m;
    const dta_dtype *nd;
} torch_ctx;

static dta_status zip_sink(void *ctx, const void *p, size_t n, dta_error *err)
{
    return dtap_zipw_write(ctx, p, n, err);
}

/* Writes storage s (whole: bytes no view covers are kept too), converted to nd[s]. */
static dta_status write_storage(void *ctx, size_t s, dtap_zipw *z, dta_error *err)
{
    torch_ctx *c = ctx;
    const dta_storage *st = &c->m->storages[s];
    dta_convert_stats cs = {0};
    (void)err;
    if (st->offset == UINT64_MAX)
        return dta_error_set(c->j->err, DTA_E_UNSUPPORTED, 0,
                             "storage '%s' is a compressed record; dtaudit streams only stored "
                             "records (re-save it with torch.save)",
                             st->key ? st->key : "?");
    dta_status r = stream_range(c->j, st->offset, st->numel, st->dtype, c->nd[s], zip_sink, z, &cs);
    if (r == DTA_OK && c->nd[s] != st->dtype) {
        add_stats(&c->j->res->stats, &cs);
        c->j->res->storages_converted++;
        c->j->res->tensors_converted += st->ntensors; /* the tensors viewing s (not a scan of
                                                       * every tensor per storage: quadratic) */
        r = note_issue(c->j, c->m, s, &cs);
    }
    return r;
}

/* ---- one file ------------------------------------------------------------------------ */

static uint64_t output_bytes(const dta_model *m, const dta_dtype *nd, bool per_tensor)
{
    uint64_t total = 0, nb;
    if (per_tensor) {
        for (size_t i = 0; i < m->ntensors; i++)
            if (m->tensors[i].storage != SIZE_MAX &&
                dta_dtype_nbytes(nd[m->tensors[i].storage], m->tensors[i].numel, &nb))
                total += nb;
    } else {
        for (size_t s = 0; s < m->nstorages; s++)
            if (dta_dtype_nbytes(nd[s], m->storages[s].numel, &nb))
                total += nb;
    }
    return total; /* for progress only */
}

/* Converts one checkpoint file into the open file fd (path for messages). *format gets
 * the format written. */
static dta_status convert_file(job *j, const char *in, int fd, const char *path,
                               const char **format)
{
    dtap_src src;
    dta_model *m = NULL;
    dtap_torchzip *tz = NULL;
    dta_dtype *nd = NULL;
    dta_status st = dtap_target_guard(j->target, in, j->err);
    if (st == DTA_OK)
        st = dtap_src_open_file(&src, in, j->err);
    if (st != DTA_OK) {
        if (strncmp(j->err->msg, in, strlen(in)) != 0)
            dta_error_prefix(j->err, in);
        return st;
    }
    m = dtap_model_new(in, j->err);
    if (!m) {
        dtap_src_close(&src);
        return DTA_E_NOMEM;
    }
    bool torch = false;
    st = dtap_detect_torchzip(&src, &torch, j->err);
    if (st == DTA_OK)
        st = torch ? dtap_torchzip_load(&src, m, &tz, j->err) : dtap_read_weights(&src, m, j->err);
    if (st != DTA_OK)
        goto out;
    dtap_model_finish(m);
    const char *fmt = m->nfiles ? m->files[0].format : "unknown";
    dta_out_format of = j->o->out_format;
    if (of == DTA_OUT_SAME)
        of = strcmp(fmt, "safetensors") == 0 ? DTA_OUT_SAFETENSORS
             : strcmp(fmt, "torch-zip") == 0 ? DTA_OUT_TORCH
                                             : DTA_OUT_SAME;
    if (of == DTA_OUT_SAME) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                           "%s input is written only as safetensors: use --out-format "
                           "safetensors",
                           fmt);
        goto out;
    }
    if (of == DTA_OUT_TORCH && j->dq) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                           "--dequantize writes safetensors: use --out-format safetensors");
        goto out;
    }
    if (of == DTA_OUT_TORCH && !tz) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                           "only torch zip checkpoints are written as torch files; use "
                           "--out-format safetensors");
        goto out;
    }
    if ((st = plan(m, j->o, j->ap, j->quantized, j->only_hit, &nd, j->err)) != DTA_OK)
        goto out;
    j->res->tensors += m->ntensors;
    j->total += output_bytes(m, nd, of == DTA_OUT_SAFETENSORS);
    j->fd = src.fd;
    j->path = in;
    if (of == DTA_OUT_SAFETENSORS) {
        st = write_safetensors(j, m, nd, fd, path);
        *format = "safetensors";
    } else {
        torch_ctx c = {j, m, nd};
        st = dtap_torchzip_write(tz, m, nd, fd, write_storage, &c, j->err);
        *format = "torch-zip";
    }
out:
    free(nd);
    dtap_torchzip_free(tz);
    dta_model_free(m);
    dtap_src_close(&src);
    /* name the input, as every dtaudit error does, unless the message names a file */
    if (st != DTA_OK && j->err && strncmp(j->err->msg, in, strlen(in)) != 0 &&
        strncmp(j->err->msg, path, strlen(path)) != 0)
        dta_error_prefix(j->err, in);
    return st;
}

/* ---- directories and sharded checkpoints ------------------------------------------- */

/* Output name of a weights file: pytorch_model-00001-of-00002.bin -> model-00001-of-00002
 * .safetensors when the format changes to safetensors; otherwise unchanged. */
static void out_name(const char *in_base, bool to_safetensors, char *out, size_t cap)
{
    size_t n = strlen(in_base);
    if (!to_safetensors || (n > 12 && !strcmp(in_base + n - 12, ".safetensors"))) {
        snprintf(out, cap, "%s", in_base);
        return;
    }
    const char *dot = strrchr(in_base, '.');
    size_t stem = dot ? (size_t)(dot - in_base) : n;
    if (stem >= 13 && !strncmp(in_base, "pytorch_model", 13))
        snprintf(out, cap, "model%.*s.safetensors", (int)(stem - 13), in_base + 13);
    else
        snprintf(out, cap, "%.*s.safetensors", (int)stem, in_base);
}

static const char *base_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* cJSON prints with tabs; model folders use two-space JSON. Raw tabs in cJSON output are
 * only indentation and the separator after ':' (tabs inside strings are escaped). */
static void two_spaces(char *text, char **out)
{
    size_t tabs = 0;
    for (const char *p = text; *p; p++)
        tabs += *p == '\t';
    char *o = malloc(strlen(text) + tabs + 1), *q = o;
    if (!o) {
        *out = NULL;
        return;
    }
    for (const char *p = text; *p; p++) {
        if (*p != '\t') {
            *q++ = *p;
        } else if (p > text && p[-1] == ':') {
            *q++ = ' ';
        } else {
            *q++ = ' ';
            *q++ = ' ';
        }
    }
    *q = 0;
    *out = o;
}

/* Writes text to dir/name, fsynced. */
static dta_status write_text(const char *dir, const char *name, const char *raw,
                             dta_error *err)
{
    char p[PATH_MAX], *text;
    two_spaces((char *)raw, &text);
    if (!text)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (!fmt_path(p, sizeof p, "%s/%s", dir, name)) {
        free(text);
        return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", name);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(text);
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", p, strerror(errno));
    }
    dta_status st = write_all(fd, text, strlen(text), p, err);
    if (st == DTA_OK && (write_all(fd, "\n", 1, p, err) != DTA_OK || fsync(fd) != 0))
        st = dta_error_set(err, DTA_E_IO, errno, "%s: write failed", p);
    close(fd);
    free(text);
    return st;
}

/* config.json with torch_dtype / dtype (top level and nested *_config) set to `to`. */
static dta_status rewrite_config(const char *in, const char *dir, dta_dtype to, bool dequant,
                                 dta_error *err)
{
    cJSON *doc;
    dta_status rs = dtap_read_json(in, in, &doc, err);
    if (rs != DTA_OK)
        return rs;
    const char *tn = dta_dtype_get(to)->torch_name;
    cJSON *objs[64];
    size_t n = 0;
    if (dequant) { /* first: the nested configs collected below are *_config objects too */
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "compression_config");
    }
    objs[n++] = doc;
    for (cJSON *c = doc->child; c && n < 64; c = c->next)
        if (cJSON_IsObject(c) && c->string && strlen(c->string) > 7 &&
            !strcmp(c->string + strlen(c->string) - 7, "_config"))
            objs[n++] = c;
    /* dequantized: the plain checkpoint has no quantization config (shared/quant.md 15) */
    for (size_t i = 1; i < n && dequant; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "compression_config");
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "dtype" : "torch_dtype";
            cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[i], key);
            if (cJSON_IsString(v))
                cJSON_ReplaceItemInObjectCaseSensitive(objs[i], key, cJSON_CreateString(tn));
            else if (i == 0 && k == 0 && !v)
                cJSON_AddStringToObject(doc, "torch_dtype", tn);
        }
    char *out = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!out)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = write_text(dir, "config.json", out, err);
    free(out);
    return st;
}

/* The index of a sharded input, rewritten: shard names mapped, total_size recomputed. */
static dta_status rewrite_index(const char *in, const char *dir, const char *const *from,
                                char *const *to, size_t n, uint64_t total_size, bool st_out,
                                const dtap_dq *dq, dta_error *err)
{
    cJSON *doc;
    dta_status rs = dtap_read_json(in, in, &doc, err);
    if (rs != DTA_OK)
        return rs;
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(doc, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: no weight_map", in);
    }
    size_t nren = 0;
    for (cJSON *e = wm->child, *next; dq && e; e = next) { /* dropped companions */
        next = e->next;
        size_t p;
        if (e->string && dtap_dq_dropped(dq, e->string))
            cJSON_Delete(cJSON_DetachItemViaPointer(wm, e));
        else if (e->string && dtap_dq_role(dq, e->string, &p) == DTAP_DQ_WEIGHT &&
                 strcmp(dtap_dq_out_name(dq, p), e->string) != 0)
            nren++;
    }
    /* codes with a name of their own ("*_blocks", "weight_packed") map their plain name */
    for (cJSON *e = wm->child, *next; nren && e; e = next) {
        next = e->next;
        size_t p;
        if (!e->string || dtap_dq_role(dq, e->string, &p) != DTAP_DQ_WEIGHT ||
            !strcmp(dtap_dq_out_name(dq, p), e->string))
            continue;
        cJSON_AddItemToObject(wm, dtap_dq_out_name(dq, p), cJSON_DetachItemViaPointer(wm, e));
        nren--;
    }
    for (cJSON *e = wm->child; e; e = e->next)
        for (size_t i = 0; i < n; i++)
            if (cJSON_IsString(e) && !strcmp(e->valuestring, from[i])) {
                cJSON_SetValuestring(e, to[i]);
                break;
            }
    cJSON *md = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    if (!cJSON_IsObject(md))
        md = cJSON_AddObjectToObject(doc, "metadata");
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)total_size);
    if (cJSON_GetObjectItemCaseSensitive(md, "total_size"))
        cJSON_ReplaceItemInObjectCaseSensitive(md, "total_size", cJSON_CreateRaw(num));
    else
        cJSON_AddRawToObject(md, "total_size", num);
    char *out = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!out)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    const char *name = base_of(in);
    char renamed[NAME_MAX + 1];
    if (st_out && strstr(name, ".bin.index.json")) /* pytorch_model.bin.index.json */
        snprintf(renamed, sizeof renamed, "model.safetensors.index.json");
    else
        snprintf(renamed, sizeof renamed, "%s", name);
    dta_status st = write_text(dir, renamed, out, err);
    free(out);
    return st;
}

/* mkdir -p of the folder part of rel under top */
static dta_status make_parents(const char *top, const char *rel, dta_error *err)
{
    char p[PATH_MAX];
    for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
        struct stat st;
        if (!fmt_path(p, sizeof p, "%s/%.*s", top, (int)(s - rel), rel))
            return dta_error_set(err, DTA_E_ARG, 0, "%s: path too long", rel);
        if (mkdir(p, 0755) != 0 && !(errno == EEXIST && lstat(p, &st) == 0 && S_ISDIR(st.st_mode)))
            return dta_error_set(err, DTA_E_IO, errno, "%s: cannot create: %s", p,
                                 strerror(errno));
    }
    return DTA_OK;
}

/* path relative to the folder prefix pre ("dir/"), or NULL when it is not under it */
static const char *rel_to(const char *path, const char *pre, size_t npre)
{
    if (strncmp(path, pre, npre) != 0)
        return NULL;
    path += npre;
    while (*path == '/')
        path++;
    return *path ? path : NULL;
}

/* Converts a model directory, or a sharded index and its shards, into the directory tmp:
 * same layout (shards in subfolders stay there), converted shards, index and config.json
 * updated; for a directory input every other file, folder and inner link is copied
 * (copytree.h: nothing from outside the input; what is left out is reported). */
static dta_status convert_tree(job *j, const char *in, const char *tmp, const char **format)
{
    dta_model *m;
    dta_status st = dta_model_open(in, &m, j->err);
    struct stat sb;
    bool in_is_dir = stat(in, &sb) == 0 && S_ISDIR(sb.st_mode);
    char **newn = NULL;
    const char **oldn = NULL, **skip = NULL;
    size_t nskip = 0;
    char pre[PATH_MAX], cfg[PATH_MAX + 16];
    if (st != DTA_OK)
        return st;
    if (m->nfiles == 0) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0, "%s: no shard is present to convert", in);
        goto out;
    }
    /* the folder shard names are relative to: the index's, else the input directory */
    if (m->index_path) {
        const char *sl = strrchr(m->index_path, '/');
        snprintf(pre, sizeof pre, "%.*s", sl ? (int)(sl - m->index_path + 1) : 0, m->index_path);
    } else if (!fmt_path(pre, sizeof pre, "%s/", in)) {
        st = dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", in);
        goto out;
    }
    size_t npre = strlen(pre);
    newn = calloc(m->nfiles, sizeof *newn);
    oldn = calloc(m->nfiles, sizeof *oldn);
    skip = calloc(m->nfiles + 8, sizeof *skip);
    if (!newn || !oldn || !skip) {
        st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    uint64_t total_size = 0;
    for (size_t i = 0; i < m->nfiles && st == DTA_OK; i++) {
        char name[NAME_MAX + 1], rel[PATH_MAX], path[PATH_MAX];
        bool to_st = j->o->out_format == DTA_OUT_SAFETENSORS;
        const char *r = rel_to(m->files[i].path, pre, npre);
        if (!r)
            r = base_of(m->files[i].path);
        const char *b = base_of(r);
        out_name(b, to_st, name, sizeof name);
        oldn[i] = r;
        skip[nskip++] = r;
        if (!fmt_path(rel, sizeof rel, "%.*s%s", (int)(b - r), r, name) || !(newn[i] = strdup(rel))) {
            st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(newn[k], rel))
                st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                                   "two shards would both be written as '%s'", rel);
        if (st == DTA_OK && !fmt_path(path, sizeof path, "%s/%s", tmp, rel))
            st = dta_error_set(j->err, DTA_E_ARG, 0, "%s: path too long", rel);
        if (st == DTA_OK)
            st = make_parents(tmp, rel, j->err);
        int fd = st == DTA_OK ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
        if (st == DTA_OK && fd < 0)
            st = dta_error_set(j->err, DTA_E_IO, errno, "%s: cannot create: %s", path,
                               strerror(errno));
        if (st != DTA_OK)
            break;
        uint64_t before = j->res->bytes_out;
        const char *f;
        st = convert_file(j, m->files[i].path, fd, path, &f);
        if (st == DTA_OK && fsync(fd) != 0)
            st = dta_error_set(j->err, DTA_E_IO, errno, "%s: fsync failed: %s", path,
                               strerror(errno));
        close(fd);
        if (st != DTA_OK && strncmp(j->err->msg, m->files[i].path, strlen(m->files[i].path)))
            dta_error_prefix(j->err, m->files[i].path);
        total_size += j->res->bytes_out - before;
    }
    if (st == DTA_OK && m->index_path) {
        st = rewrite_index(m->index_path, tmp, oldn, newn, m->nfiles, total_size,
                           j->o->out_format == DTA_OUT_SAFETENSORS, j->dq, j->err);
        const char *r = rel_to(m->index_path, in, strlen(in));
        skip[nskip++] = r ? r : base_of(m->index_path);
    }
    if (st == DTA_OK && in_is_dir) {
        /* config.json updated (read only when it is inside the input); the rest copied */
        char root[PATH_MAX], where[PATH_MAX];
        struct stat cs;
        if (fmt_path(cfg, sizeof cfg, "%s/config.json", in) && lstat(cfg, &cs) == 0) {
            int inside = realpath(in, root) ? dtap_resolves_inside(root, cfg, where, sizeof where)
                                            : -1;
            struct stat fs;
            if (inside != 1 || stat(cfg, &fs) != 0 || !S_ISREG(fs.st_mode))
                st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                                   "%s: not a regular file inside the input%s%.300s; not read",
                                   cfg, inside == 0 ? " (it leads to " : "",
                                   inside == 0 ? where : "");
            /* its dtype becomes the target (--to auto: the first root's; when no root has a
             * dtype convert writes, it is copied as it is); dequantized: it loses its
             * quantization_config whatever the dtype */
            else if (j->ap->config_to != DTA_DTYPE_NONE || j->o->dequantize) {
                st = rewrite_config(cfg, tmp,
                                    j->ap->config_to != DTA_DTYPE_NONE ? j->ap->config_to
                                                                       : j->o->to,
                                    j->o->dequantize, j->err);
                skip[nskip++] = "config.json";
            }
        }
        /* dequantized: the quantization sidecars describe what is no longer there */
        static const char *const sidecars[] = {"hf_quant_config.json", "quantize_config.json",
                                               "quant_config.json", "quantization_config.json",
                                               "quanto_qmap.json"};
        for (size_t k = 0; k < 5 && j->o->dequantize; k++)
            skip[nskip++] = sidecars[k];
        dtap_copy_report rep = {0};
        if (st == DTA_OK)
            st = dtap_copy_tree(in, tmp, skip, nskip, &rep, j->err);
        j->res->files_copied = rep.files + rep.links;
        j->res->left_out = rep.left_out;
        j->res->nleft_out = rep.nleft_out;
        j->res->copied_weights = rep.weights;
        j->res->ncopied_weights = rep.nweights;
    }
    *format = "directory";
out:
    for (size_t i = 0; newn && i < m->nfiles; i++)
        free(newn[i]);
    free(newn);
    free(oldn);
    free(skip);
    dta_model_free(m);
    return st;
}

/* ---- the job --------------------------------------------------------------------------- */

static bool is_index_file(const char *path)
{
    dtap_src s;
    dta_error e;
    unsigned char head[DTAP_BID_BYTES];
    if (dtap_src_open_file(&s, path, &e) != DTA_OK)
        return false;
    size_t n = dtap_src_peek(&s, 0, head, sizeof head);
    bool r = !dtap_safetensors_bid(head, n, s.size) && dtap_index_bid(head, n, s.size);
    dtap_src_close(&s);
    return r;
}

/* Quantized input: refused (nothing written), or with keep_quantized the names of its
 * quantized tensors, which are then copied as they are. Only headers are read. */
static dta_status quantized_names(const char *in, const dta_convert_options *o, qnames *out,
                                  dta_error *err)
{
    dta_model *m;
    dta_quant *q = NULL;
    if (o->dequantize) /* dequant.c plans (and refuses) the quantized parameters itself */
        return DTA_OK;
    dta_status st = dta_model_open(in, &m, err);
    if (st != DTA_OK)
        return st;
    st = dta_quant_analyse(m, &q, err);
    size_t nparams = 0, first = SIZE_MAX;
    for (size_t i = 0; st == DTA_OK && i < q->nparams; i++)
        if (q->params[i].weight != SIZE_MAX) {
            nparams++;
            if (first == SIZE_MAX)
                first = i;
        }
    if (st == DTA_OK && q->scheme == DTA_QS_UNKNOWN)
        st = dta_error_set(err, DTA_E_REFUSED, 0,
                           "%s: quantized with the scheme '%.80s' (%s), which dtaudit does not "
                           "know: it cannot tell the quantized tensors from the plain ones, so it "
                           "converts nothing; nothing written",
                           in, q->method ? q->method : "?", q->source ? q->source : "config");
    else if (st == DTA_OK && nparams && !o->keep_quantized)
        st = dta_error_set(err, DTA_E_REFUSED, 0,
                           "%s: holds %zu quantized parameters (%s, e.g. '%.120s'); converting "
                           "them would cast the raw codes without their scales; nothing written. "
                           "Use --keep-quantized to convert only the unquantized tensors and keep "
                           "the quantized ones byte-identical, or --dequantize to dequantize them",
                           in, nparams, dta_quant_scheme_name(q->scheme), q->params[first].name);
    else if (st == DTA_OK && nparams) {
        size_t n = 0;
        for (size_t i = 0; i < m->ntensors; i++)
            n += dta_quant_tensor_is_quantized(q, i);
        out->v = calloc(n ? n : 1, sizeof *out->v);
        if (!out->v)
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        for (size_t i = 0; st == DTA_OK && i < m->ntensors; i++)
            if (dta_quant_tensor_is_quantized(q, i)) {
                if (!(out->v[out->n] = strdup(m->tensors[i].name)))
                    st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                else
                    out->n++;
            }
        if (out->n > 1)
            qsort(out->v, out->n, sizeof *out->v, cmp_str);
    }
    dta_quant_free(q);
    dta_model_free(m);
    return st;
}

static void qnames_free(qnames *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i]);
    free(q->v);
}

dta_status dta_convert_checkpoint(const char *in, const char *out, const dta_convert_options *o,
                                  dta_convert_result **res, dta_error *err)
{
    job j;
    dtap_target t;
    struct stat sb;
    dta_status st;
    *res = NULL;
    if (!in || !out || !o)
        return dta_error_set(err, DTA_E_ARG, 0, "convert: missing argument");
    if (!o->to_auto && o->to != DTA_F32 && o->to != DTA_F16 && o->to != DTA_BF16)
        return dta_error_set(err, DTA_E_ARG, 0, "convert: target must be F32, F16 or BF16, not %s",
                             dta_dtype_name(o->to));
    if (o->dequantize && o->to_auto)
        return dta_error_set(err, DTA_E_ARG, 0,
                             "convert: --dequantize needs --to f32, f16 or bf16, not auto");
    if (o->dequantize && o->keep_quantized)
        return dta_error_set(err, DTA_E_ARG, 0,
                             "convert: --dequantize and --keep-quantized exclude each other");
    qnames qn = {NULL, 0};
    if ((st = quantized_names(in, o, &qn, err)) != DTA_OK) {
        qnames_free(&qn);
        return st;
    }
    dtap_auto ap;
    st = dtap_auto_plan(in, o, &ap, err);
    if (st != DTA_OK) {
        qnames_free(&qn);
        return st;
    }
    if (stat(in, &sb) != 0)
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot open: %s", in, strerror(errno));
    bool tree = S_ISDIR(sb.st_mode) || is_index_file(in);

    memset(&j, 0, sizeof j);
    j.o = o;
    j.err = err;
    j.cuda = o->device == DTA_DEVICE_CUDA ||
             (o->device == DTA_DEVICE_AUTO && dta_cuda_auto((uint64_t)sb.st_size));
    j.chunk = o->chunk_bytes ? o->chunk_bytes : CHUNK_DEFAULT;
    if (j.chunk < 64)
        j.chunk = 64;
    j.res = calloc(1, sizeof *j.res);
    j.only_hit = calloc(o->nonly ? o->nonly : 1, sizeof *j.only_hit);
    j.in = malloc(j.chunk);
    j.out = malloc(j.chunk * 2); /* the target may be wider than the source (bf16 -> f32) */
    j.ap = &ap;
    j.quantized = &qn;
    if (!j.res || !j.in || !j.out || !j.only_hit) {
        free(j.only_hit);
        free(j.in);
        free(j.out);
        free(j.res);
        dtap_auto_free(&ap);
        qnames_free(&qn);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    j.res->kept_intended = ap.kept_intended;
    j.res->auto_to = o->to_auto ? ap.config_to : DTA_DTYPE_NONE;
    dta_model *whole = NULL; /* --dequantize: every shard, for the scales */
    if (o->dequantize) {
        st = dta_model_open(in, &whole, err);
        if (st == DTA_OK)
            st = dtap_dq_open(whole, &j.dq, err);
        if (st != DTA_OK) {
            dtap_dq_free(j.dq);
            dta_model_free(whole);
            free(j.only_hit);
            free(j.in);
            free(j.out);
            free(j.res);
            dtap_auto_free(&ap);
            qnames_free(&qn);
            return st;
        }
    }
    st = dtap_target_open(&t, out, tree, tree && !S_ISDIR(sb.st_mode), o->force, in, err);
    j.target = &t;
    char tmpname[sizeof t.tmp]; /* for error messages: named as OUT, see below */
    snprintf(tmpname, sizeof tmpname, "%s", t.tmp);
    const char *fmt = "?";
    if (st == DTA_OK)
        st = tree ? convert_tree(&j, in, t.tmp, &fmt) : convert_file(&j, in, t.fd, t.tmp, &fmt);
    /* a glob that names nothing is a mistake (a typo, or ''): the run would convert less
     * than asked, silently */
    for (size_t i = 0; i < o->nonly && st == DTA_OK; i++)
        if (!j.only_hit[i])
            st = dta_error_set(err, DTA_E_ARG, 0,
                               "%s: --only '%.200s' matches no tensor; nothing written", in,
                               o->only[i]);
    if (st == DTA_OK && o->overflow == DTA_OVERFLOW_ERROR && j.res->stats.overflow > 0)
        j.res->refused = true;
    if (st == DTA_OK && !j.res->refused && o->verify) {
        dta_verify_result vr;
        if (!tree && fsync(t.fd) != 0)
            st = dta_error_set(err, DTA_E_IO, errno, "%s: fsync failed", t.tmp);
        if (st == DTA_OK)
            st = dta_verify_checkpoints(in, t.tmp, o->overflow,
                                        j.cuda ? DTA_DEVICE_CUDA : DTA_DEVICE_CPU, &vr, err);
        if (st == DTA_OK) {
            j.res->verify = vr.total;
            if (vr.tensors_bad || vr.missing || vr.extra || vr.shape_changed)
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "%s: verification failed before publishing: %zu tensors "
                                   "differ (first: %.200s), %zu missing, %zu extra",
                                   out, vr.tensors_bad, vr.first_bad ? vr.first_bad : "-",
                                   vr.missing, vr.extra);
            free(vr.first_bad);
            free(vr.first_missing);
        }
    }
    if (st == DTA_OK && !j.res->refused)
        st = dtap_target_publish(&t, err);
    else if (t.tmp[0] || t.fd >= 0)
        dtap_target_abort(&t);
    if (st != DTA_OK)
        dtap_target_name_final(&t, tmpname, err);
    free(j.in);
    free(j.out);
    free(j.only_hit);
    dtap_auto_free(&ap);
    qnames_free(&qn);
    dtap_dq_free(j.dq);
    dta_model_free(whole);
    if (st != DTA_OK) {
        dta_convert_result_free(j.res);
        return st;
    }
    j.res->written = j.res->refused ? NULL : strdup(t.final);
    j.res->out_format = strdup(fmt);
    *res = j.res;
    return DTA_OK;
}

void dta_convert_result_free(dta_convert_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nissues; i++)
        free(r->issues[i].name);
    free(r->issues);
    free(r->written);
    free(r->out_format);
    for (size_t i = 0; i < r->nleft_out; i++)
        free(r->left_out[i]);
    free(r->left_out);
    for (size_t i = 0; i < r->ncopied_weights; i++)
        free(r->copied_weights[i]);
    free(r->copied_weights);
    free(r);
}

/* ---- verify ------------------------------------------------------------------------------ */

typedef struct {
    const dta_model *m;
    int *fds;                 /* per file, opened lazily */
    const dta_tensor *cached; /* gathered strided view, when one is in use */
    unsigned char *gathered;
} reader;

/* Raw elements [first, first + n) of tensor t in C order into buf. */
static dta_status read_elems(reader *r, const dta_tensor *t, uint64_t first, size_t n,
                             unsigned char *buf, dta_error *err)
{
    const dta_model *m = r->m;
    const dta_storage *s = &m->storages[t->storage];
    unsigned es = elsize(s->dtype);
    const char *path = m->files[t->file].path;
    if (r->fds[t->file] < 0 && (r->fds[t->file] = dtap_open_regular(path, NULL, err)) < 0) {
        dta_error_prefix(err, path);
        return err ? err->code : DTA_E_IO;
    }
    if (s->offset == UINT64_MAX)
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                             "%s: tensor '%.200s' is in a compressed record", path, t->name);
    uint64_t start, off, len;
    if (dtap_contiguous_view(t, &start)) {
        if (!byte_range(s->dtype, start + first, n, &off, &len))
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "%s: tensor '%.200s' is a view of %s values that does not "
                                 "start on a byte boundary", path, t->name,
                                 dta_dtype_name(s->dtype));
        return dtap_pread_all(r->fds[t->file], buf, (size_t)len, s->offset + off, path, NULL, err);
    }
    if (!es)
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                             "%s: tensor '%.200s' is a strided view of %s values, which have no "
                             "per-element address", path, t->name, dta_dtype_name(s->dtype));
    if (r->cached != t) {
        if (t->numel > DTA_MAX_GATHER_BYTES / es || s->nbytes > DTA_MAX_GATHER_BYTES)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "%s: tensor '%.200s' is a large non-contiguous view", path,
                                 t->name);
        unsigned char *whole = malloc(s->nbytes ? s->nbytes : 1);
        unsigned char *g = realloc(r->gathered, t->numel ? t->numel * es : 1);
        if (!whole || !g) {
            free(whole);
            if (g)
                r->gathered = g;
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        }
        r->gathered = g;
        dta_status st = dtap_pread_all(r->fds[t->file], whole, s->nbytes, s->offset, path, NULL, err);
        if (st != DTA_OK) {
            free(whole);
            return st;
        }
        uint64_t idx[DTA_MAX_RANK] = {0};
        for (uint64_t e = 0; e < t->numel; e++) {
            uint64_t at = t->storage_offset;
            for (int k = 0; k < t->rank; k++)
                at += idx[k] * (uint64_t)t->stride[k];
            memcpy(g + e * es, whole + at * es, es);
            for (int k = t->rank - 1; k >= 0; k--) {
                if (++idx[k] < t->shape[k])
                    break;
                idx[k] = 0;
            }
        }
        free(whole);
        r->cached = t;
    }
    memcpy(buf, r->gathered + first * es, n * es);
    return DTA_OK;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const dta_tensor *const *)a)->name, (*(const dta_tensor *const *)b)->name);
}

static const dta_tensor *find_tensor(const dta_tensor **sorted, size_t n, const char *name)
{
    dta_tensor key = {0};
    key.name = (char *)name;
    const dta_tensor *kp = &key;
    const dta_tensor **hit = bsearch(&kp, sorted, n, sizeof *sorted, cmp_tensor_name);
    return hit ? *hit : NULL;
}

static const char *meta_value(const dta_model *m, const char *key)
{
    for (size_t i = 0; i < m->nmetadata; i++)
        if (!strcmp(m->metadata[i].key, key))
            return m->metadata[i].value;
    return NULL;
}

/* Compares source tensor ta with converted tensor tb into res (tensors, tensors_bad,
 * shape_changed, totals, first_bad). */
static dta_status compare_pair(reader *ra, reader *rb, const dta_tensor *ta,
                               const dta_tensor *tb, dta_overflow_mode mode, bool cuda,
                               unsigned char *ba, unsigned char *bb, size_t chunk,
                               dta_verify_result *res, dta_error *err)
{
    dta_status st = DTA_OK;
    res->tensors++;
    bool shape_ok = ta->rank == tb->rank;
    for (int k = 0; shape_ok && k < ta->rank; k++)
        shape_ok = ta->shape[k] == tb->shape[k];
    bool bad = !shape_ok || ta->meta != tb->meta ||
               (ta->dtype != tb->dtype && !dta_convert_supported(ta->dtype, tb->dtype));
    if (!shape_ok)
        res->shape_changed++;
    dta_verify_stats vs = {0};
    for (uint64_t e = 0; !bad && !ta->meta && e < ta->numel && st == DTA_OK; e += chunk) {
        size_t k = ta->numel - e < chunk ? (size_t)(ta->numel - e) : chunk;
        if ((st = read_elems(ra, ta, e, k, ba, err)) == DTA_OK &&
            (st = read_elems(rb, tb, e, k, bb, err)) == DTA_OK)
            st = (cuda ? (verify_fn)dta_verify_cuda : dta_verify)(ta->dtype, tb->dtype, ba, bb, k,
                                                                 mode, &vs, err);
    }
    /* inf from overflow is the exact conversion under --on-overflow inf: reported in
     * nonfinite_added, a failure only when the bytes differ */
    if (vs.mismatches)
        bad = true;
    res->total.elements += vs.elements;
    res->total.mismatches += vs.mismatches;
    res->total.nonfinite_added += vs.nonfinite_added;
    if (vs.max_abs_err > res->total.max_abs_err)
        res->total.max_abs_err = vs.max_abs_err;
    if (vs.max_rel_err > res->total.max_rel_err)
        res->total.max_rel_err = vs.max_rel_err;
    if (bad) {
        res->tensors_bad++;
        if (!res->first_bad && !(res->first_bad = strdup(tb->name)) && st == DTA_OK)
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    return st;
}

/* Compares converted tensor tb with the dequantization of source parameter p. */
static dta_status compare_dq(dtap_dq *dq, size_t p, reader *rb, const dta_tensor *tb,
                             dta_overflow_mode mode, unsigned char *ba, unsigned char *bb,
                             size_t chunk, dta_verify_result *res, dta_error *err)
{
    dta_status st = DTA_OK;
    int rank;
    const uint64_t *shape;
    uint64_t numel;
    dtap_dq_shape(dq, p, &rank, &shape, &numel);
    res->tensors++;
    bool shape_ok = rank == tb->rank;
    for (int k = 0; shape_ok && k < rank; k++)
        shape_ok = shape[k] == tb->shape[k];
    bool bad = !shape_ok || tb->meta ||
               (tb->dtype != DTA_F32 && tb->dtype != DTA_F16 && tb->dtype != DTA_BF16);
    if (!shape_ok)
        res->shape_changed++;
    if (chunk > dtap_dq_max_elems())
        chunk = dtap_dq_max_elems();
    dta_verify_stats vs = {0};
    for (uint64_t e = 0; !bad && e < numel && st == DTA_OK; e += chunk) {
        size_t k = numel - e < chunk ? (size_t)(numel - e) : chunk;
        if ((st = dtap_dq_run(dq, p, e, k, tb->dtype, mode, ba, NULL, err)) == DTA_OK &&
            (st = read_elems(rb, tb, e, k, bb, err)) == DTA_OK)
            st = dta_verify(tb->dtype, tb->dtype, ba, bb, k, mode, &vs, err);
    }
    if (vs.mismatches)
        bad = true;
    res->total.elements += vs.elements;
    res->total.mismatches += vs.mismatches;
    res->total.nonfinite_added += vs.nonfinite_added;
    if (bad) {
        res->tensors_bad++;
        if (!res->first_bad && !(res->first_bad = strdup(tb->name)) && st == DTA_OK)
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    return st;
}

dta_status dta_verify_checkpoints(const char *source, const char *converted,
                                  dta_overflow_mode mode, dta_device device,
                                  dta_verify_result *res, dta_error *err)
{
    dta_model *a = NULL, *b = NULL;
    const dta_tensor **sa = NULL;
    reader ra = {0}, rb = {0};
    unsigned char *ba = NULL, *bb = NULL;
    dtap_dq *dq = NULL;
    const dta_tensor **sbn = NULL;
    const size_t chunk = 1u << 20; /* elements per step */
    dta_status st;

    memset(res, 0, sizeof *res);
    struct stat ss;
    bool cuda = device == DTA_DEVICE_CUDA ||
                (device == DTA_DEVICE_AUTO && stat(source, &ss) == 0 &&
                 dta_cuda_auto((uint64_t)ss.st_size));
    if ((st = dta_model_open(source, &a, err)) != DTA_OK)
        return st;
    if ((st = dta_model_open(converted, &b, err)) != DTA_OK) {
        dta_model_free(a);
        return st;
    }
    /* a quantized source whose output dropped the companions was dequantized: its
     * parameters are compared with their dequantization (dequant.h) */
    dta_error qe;
    if (dtap_dq_open(a, &dq, &qe) != DTA_OK)
        dq = NULL;
    sa = malloc(sizeof *sa * (a->ntensors ? a->ntensors : 1));
    ra = (reader){a, malloc(sizeof(int) * (a->nfiles ? a->nfiles : 1)), NULL, NULL};
    rb = (reader){b, malloc(sizeof(int) * (b->nfiles ? b->nfiles : 1)), NULL, NULL};
    ba = malloc(chunk * 8);
    bb = malloc(chunk * 8);
    if (!sa || !ra.fds || !rb.fds || !ba || !bb) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < a->nfiles; i++)
        ra.fds[i] = -1;
    for (size_t i = 0; i < b->nfiles; i++)
        rb.fds[i] = -1;
    for (size_t i = 0; i < a->ntensors; i++)
        sa[i] = &a->tensors[i];
    qsort(sa, a->ntensors, sizeof *sa, cmp_tensor_name);
    if (dq) {
        if (!(sbn = malloc(sizeof *sbn * (b->ntensors ? b->ntensors : 1)))) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < b->ntensors; i++)
            sbn[i] = &b->tensors[i];
        qsort(sbn, b->ntensors, sizeof *sbn, cmp_tensor_name);
    }

    size_t matched = 0, dropped = 0;
    for (size_t i = 0; i < b->ntensors && st == DTA_OK; i++) {
        const dta_tensor *tb = &b->tensors[i], *ta = find_tensor(sa, a->ntensors, tb->name);
        size_t p;
        if (!ta && dq && dtap_dq_find_out(dq, tb->name, &p) &&
            !find_tensor(sbn, b->ntensors, dtap_dq_scale_name(dq, p))) {
            /* a parameter written under its plain name ("*_blocks" -> its base) */
            matched++;
            st = compare_dq(dq, p, &rb, tb, mode, ba, bb, chunk, res, err);
            continue;
        }
        if (!ta) {
            res->extra++;
            continue;
        }
        matched++;
        if (dq && dtap_dq_role(dq, ta->name, &p) == DTAP_DQ_WEIGHT &&
            !find_tensor(sbn, b->ntensors, dtap_dq_scale_name(dq, p)))
            st = compare_dq(dq, p, &rb, tb, mode, ba, bb, chunk, res, err);
        else
            st = compare_pair(&ra, &rb, ta, tb, mode, cuda, ba, bb, chunk, res, err);
    }
    /* companions the dequantized output does not have are not missing */
    for (size_t i = 0; dq && i < a->ntensors; i++)
        if (dtap_dq_dropped(dq, a->tensors[i].name) &&
            !find_tensor(sbn, b->ntensors, a->tensors[i].name))
            dropped++;
    /* Source tensors absent from the output. One counts as present only when the output
     * records it as a dropped alias (metadata NAME = KEPT, as safetensors' save_model
     * writes) and KEPT is an output tensor holding exactly NAME's converted values: a
     * metadata key alone proves nothing (it may just share the name). */
    if (st == DTA_OK && matched + dropped < a->ntensors) {
        const dta_tensor **sb = malloc(sizeof *sb * (b->ntensors ? b->ntensors : 1));
        if (!sb) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < b->ntensors; i++)
            sb[i] = &b->tensors[i];
        qsort(sb, b->ntensors, sizeof *sb, cmp_tensor_name);
        for (size_t i = 0; i < a->ntensors && st == DTA_OK; i++) {
            const dta_tensor *ta = &a->tensors[i];
            size_t p;
            if (find_tensor(sb, b->ntensors, ta->name) || dtap_dq_dropped(dq, ta->name))
                continue;
            if (dq && dtap_dq_role(dq, ta->name, &p) == DTAP_DQ_WEIGHT &&
                find_tensor(sb, b->ntensors, dtap_dq_out_name(dq, p)))
                continue; /* written under its plain name */
            const char *kept = meta_value(b, ta->name);
            const dta_tensor *tb = kept ? find_tensor(sb, b->ntensors, kept) : NULL;
            const dta_tensor *ka = kept ? find_tensor(sa, a->ntensors, kept) : NULL;
            /* the kept tensor must stand for the same source data: an alias of it there */
            if (!tb || !ka || ka->storage != ta->storage || ka->storage == SIZE_MAX) {
                res->missing++;
                if (!res->first_missing && !(res->first_missing = strdup(ta->name)))
                    st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                continue;
            }
            size_t bad_before = res->tensors_bad;
            res->tensors--; /* compare_pair counts it; an alias is not a tensor of its own */
            st = compare_pair(&ra, &rb, ta, tb, mode, cuda, ba, bb, chunk, res, err);
            if (res->tensors_bad != bad_before) {
                /* not an alias of the kept tensor after all: the source tensor is lost */
                res->tensors_bad = bad_before;
                res->missing++;
                if (!res->first_missing && !(res->first_missing = strdup(ta->name)))
                    st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            }
        }
        free(sb);
    }
out:
    for (size_t i = 0; ra.fds && i < a->nfiles; i++)
        if (ra.fds[i] >= 0)
            close(ra.fds[i]);
    for (size_t i = 0; rb.fds && i < b->nfiles; i++)
        if (rb.fds[i] >= 0)
            close(rb.fds[i]);
    free(ra.fds);
    free(rb.fds);
    free(ra.gathered);
    free(rb.gathered);
    free(ba);
    free(bb);
    free(sa);
    free(sbn);
    dtap_dq_free(dq);
    dta_model_free(a);
    dta_model_free(b);
    return st;
}
