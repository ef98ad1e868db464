/* dta_verify_checkpoints: reads a source and its conversion side by side, tensor by
 * tensor, and compares every value with what the conversion (or the dequantization of a
 * quantized parameter, dequant.h) must have produced. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "convert_job.h"
#include "model_build.h"
#include "src.h"

typedef dta_status (*verify_fn)(dta_dtype, dta_dtype, const void *, const void *, size_t,
                                dta_overflow_mode, dta_verify_stats *, dta_error *);

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
