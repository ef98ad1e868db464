/* Conversion of one checkpoint file into one output file: safetensors (tied weights
 * written once, dequantized parameters under the weight's name) or a torch zip rewritten
 * storage by storage (write_torchzip.c); overflow/NaN/Inf recorded per storage
 * (convert_job.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert_job.h"
#include "convert_pool.h"
#include "format.h"
#include "model_build.h"
#include "src.h"
#include "util_io.h"
#include "write_safetensors.h"
#include "write_torchzip.h"

/* ---- results ------------------------------------------------------------------------ */

/* Records overflow/NaN/Inf of a storage against the tensors viewing it. */
static dta_status note_issue(dtap_job *j, const dta_model *m, size_t storage,
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
static dta_status note_issue_name(dtap_job *j, const char *name, const dta_convert_stats *st)
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

/* ---- safetensors output ---------------------------------------------------------------- */

typedef struct {
    int fd;
    const char *path;
} fd_sink;

static dta_status fd_write(void *ctx, const void *p, size_t n, dta_error *err)
{
    fd_sink *s = ctx;
    return dtap_write_all(s->fd, p, n, s->path, err);
}

/* pwrite at a moving offset: the tensors of one file written by several threads */
typedef struct {
    int fd;
    const char *path;
    uint64_t off;
} at_sink;

static dta_status at_write(void *ctx, const void *p, size_t n, dta_error *err)
{
    at_sink *s = ctx;
    const char *c = p;
    while (n > 0) {
        ssize_t w = pwrite(s->fd, c, n, (off_t)s->off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return dta_error_set(err, DTA_E_IO, errno, "%s: write failed: %s", s->path,
                                 strerror(errno));
        c += w;
        n -= (size_t)w;
        s->off += (uint64_t)w;
    }
    return DTA_OK;
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
typedef struct {
    const dta_model *m;
    const dtap_st_out *outs;
    const size_t *dqp;
    int fd;
    const char *path;
    uint64_t data;           /* where the data starts (the header's length) */
} tensor_ctx;

/* The data of output tensor i into sink, counted into j->res. */
static dta_status write_tensor(dtap_job *j, const tensor_ctx *c, size_t i, dtap_sink_fn sink,
                               void *sctx)
{
    const dta_model *m = c->m;
    const dtap_st_out *o = &c->outs[i];
    const dta_tensor *t = &m->tensors[o->tag];
    dta_convert_stats cs = {0};
    dta_status st;
    if (c->dqp[o->tag] != SIZE_MAX) {
        st = dtap_stream_dq(j, c->dqp[o->tag], sink, sctx, &cs);
        if (st == DTA_OK) {
            dtap_stats_add(&j->res->stats, &cs);
            j->res->tensors_converted++;
            j->res->params_dequantized++;
            st = note_issue_name(j, t->name, &cs);
        }
        return st;
    }
    st = dtap_stream_tensor(j, m, t, o->dtype, sink, sctx, &cs);
    if (st == DTA_OK && o->dtype != m->storages[t->storage].dtype) {
        dtap_stats_add(&j->res->stats, &cs);
        j->res->tensors_converted++;
        j->res->storages_converted++;
        st = note_issue(j, m, t->storage, &cs);
    }
    return st;
}

/* dtap_pool_run's item: tensor i written at its offset by a thread's own job */
static dta_status write_at(void *ctx, dtap_job *wj, size_t i)
{
    const tensor_ctx *c = ctx;
    at_sink s = {c->fd, c->path, c->data + c->outs[i].offset};
    return write_tensor(wj, c, i, at_write, &s);
}

static dta_status write_safetensors(dtap_job *j, const dta_model *m, const dta_dtype *nd,
                                    int fd, const char *path)
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
        if (!j->dq || !dtap_dq_drops_metadata(m->metadata[i].key))
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
        st = dtap_write_all(fd, hdr, hlen, path, j->err);
    fd_sink sink = {fd, path};
    tensor_ctx tc = {m, outs, dqp, fd, path, hlen};
    unsigned threads = dtap_inner_threads(j, j->sharing);
    if (st == DTA_OK && threads > 1 && n > 1) {
        /* --jobs inside one file: each thread writes whole tensors at their offsets */
        uint64_t end = hlen;
        for (size_t i = 0; i < n; i++)
            if (outs[i].nbytes && hlen + outs[i].offset + outs[i].nbytes > end)
                end = hlen + outs[i].offset + outs[i].nbytes;
        if (ftruncate(fd, (off_t)end) != 0)
            st = dta_error_set(j->err, DTA_E_IO, errno, "%s: write failed: %s", path,
                               strerror(errno));
        if (st == DTA_OK)
            st = dtap_pool_run(j, n, threads, write_at, &tc);
        if (st == DTA_OK && lseek(fd, (off_t)end, SEEK_SET) < 0)
            st = dta_error_set(j->err, DTA_E_IO, errno, "%s: seek failed: %s", path,
                               strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < n && st == DTA_OK; i++)
        st = write_tensor(j, &tc, i, fd_write, &sink);
out:
    free(hdr);
    free(outs);
    free(meta);
    free(dqp);
    return st;
}

/* ---- torch zip output ------------------------------------------------------------------ */

typedef struct {
    dtap_job *j;
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
    dta_status r =
        dtap_stream_range(c->j, st->offset, st->numel, st->dtype, c->nd[s], zip_sink, z, &cs);
    if (r == DTA_OK && c->nd[s] != st->dtype) {
        dtap_stats_add(&c->j->res->stats, &cs);
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
dta_status dtap_convert_file(dtap_job *j, const char *in, int fd, const char *path,
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
    dta_format in_fmt;
    st = dtap_detect(&src, true, &in_fmt, j->err);
    if (st == DTA_OK)
        st = in_fmt == DTA_FORMAT_TORCH_ZIP ? dtap_torchzip_load(&src, m, &tz, j->err)
                                            : dtap_read_as(&src, in_fmt, m, j->err);
    if (st != DTA_OK)
        goto out;
    dtap_model_finish(m);
    dta_format fmt = m->nfiles ? m->files[0].format_id : DTA_FORMAT_UNKNOWN;
    dta_out_format of = j->o->out_format;
    if (of == DTA_OUT_SAME)
        of = fmt == DTA_FORMAT_SAFETENSORS ? DTA_OUT_SAFETENSORS
             : fmt == DTA_FORMAT_TORCH_ZIP ? DTA_OUT_TORCH
                                           : DTA_OUT_SAME;
    if (of == DTA_OUT_SAME) {
        st = dta_error_set(j->err, DTA_E_UNSUPPORTED, 0,
                           "%s input is written only as safetensors: use --out-format "
                           "safetensors",
                           dta_format_name(fmt));
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
    if ((st = dtap_convert_plan(m, j->o, j->ap, j->quantized, j->only_hit, &nd, j->err)) != DTA_OK)
        goto out;
    j->res->tensors += m->ntensors;
    j->total += output_bytes(m, nd, of == DTA_OUT_SAFETENSORS);
    j->fd = src.fd;
    j->path = in;
    if (of == DTA_OUT_SAFETENSORS) {
        st = write_safetensors(j, m, nd, fd, path);
        *format = dta_format_name(DTA_FORMAT_SAFETENSORS);
    } else {
        torch_ctx c = {j, m, nd};
        st = dtap_torchzip_write_once(tz, m, nd, fd, write_storage, &c, j->err);
        *format = dta_format_name(DTA_FORMAT_TORCH_ZIP);
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
