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
    const char *cached;       /* name of the tensor whose gathered strided view is kept */
    unsigned char *gathered;
    size_t gcap;
} reader;

/* Raw elements [first, first + n) of tensor t (a view of storage s) in C order into buf. */
static dta_status read_elems(reader *r, const dta_tensor *t, const dta_storage *s,
                             uint64_t first, size_t n, unsigned char *buf, dta_error *err)
{
    const dta_model *m = r->m;
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
    if (r->cached != t->name) { /* names are distinct pointers, one per tensor */
        r->cached = NULL;
        dta_status st = dtap_gather_view(r->fds[t->file], path, NULL, t, s, &r->gathered,
                                         &r->gcap, err);
        if (st != DTA_OK)
            return st;
        r->cached = t->name;
    }
    unsigned es = elsize(s->dtype);
    memcpy(buf, r->gathered + first * es, n * es);
    return DTA_OK;
}

/* What verify keeps of a source tensor: the model's tensor and storage records (152 bytes
 * a tensor) are released once these are made (72 bytes), so a source and its conversion
 * with a million tensors each are not two whole models in memory at once. The name, shape
 * and strides stay where the model keeps them. */
typedef struct {
    const char *name;
    const uint64_t *shape;
    const int64_t *stride;
    uint64_t numel, storage_offset;
    uint64_t s_offset, s_nbytes; /* its storage */
    uint32_t file, storage;      /* storage UINT32_MAX: none (meta) */
    uint32_t idx;                /* in the source's order */
    uint8_t dtype, s_dtype, rank;
    bool meta;
} vtensor;

static vtensor vt_make(const dta_model *m, size_t i)
{
    const dta_tensor *t = &m->tensors[i];
    vtensor v = {t->name, t->shape, t->stride, t->numel, t->storage_offset, UINT64_MAX, 0,
                 (uint32_t)t->file, UINT32_MAX, (uint32_t)i, (uint8_t)t->dtype, 0,
                 (uint8_t)t->rank, t->meta};
    if (t->storage != SIZE_MAX) {
        const dta_storage *s = &m->storages[t->storage];
        v.storage = (uint32_t)t->storage;
        v.s_offset = s->offset;
        v.s_nbytes = s->nbytes;
        v.s_dtype = (uint8_t)s->dtype;
    }
    return v;
}

/* The tensor and storage records of v again, for the comparison (on the stack). */
static void vt_unpack(const vtensor *v, dta_tensor *t, dta_storage *s)
{
    memset(t, 0, sizeof *t);
    memset(s, 0, sizeof *s);
    t->name = (char *)v->name;
    t->shape = (uint64_t *)v->shape;
    t->stride = (int64_t *)v->stride;
    t->numel = v->numel;
    t->storage_offset = v->storage_offset;
    t->storage = v->storage == UINT32_MAX ? SIZE_MAX : v->storage;
    t->file = v->file;
    t->dtype = (dta_dtype)v->dtype;
    t->rank = v->rank;
    t->meta = v->meta;
    s->file = v->file;
    s->dtype = (dta_dtype)v->s_dtype;
    s->offset = v->s_offset;
    s->nbytes = v->s_nbytes;
}

static int cmp_vt_name(const void *a, const void *b)
{
    return strcmp(((const vtensor *)a)->name, ((const vtensor *)b)->name);
}

static const vtensor *find_vt(const vtensor *sorted, size_t n, const char *name)
{
    vtensor key = {0};
    key.name = name;
    return bsearch(&key, sorted, n, sizeof *sorted, cmp_vt_name);
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

/* b's tensors sorted by name (pointers into b), NULL when out of memory. */
static const dta_tensor **sorted_tensors(const dta_model *b)
{
    const dta_tensor **sb = malloc(sizeof *sb * (b->ntensors ? b->ntensors : 1));
    if (!sb)
        return NULL;
    for (size_t i = 0; i < b->ntensors; i++)
        sb[i] = &b->tensors[i];
    qsort(sb, b->ntensors, sizeof *sb, cmp_tensor_name);
    return sb;
}

static const char *meta_value(const dta_model *m, const char *key)
{
    for (size_t i = 0; i < m->nmetadata; i++)
        if (!strcmp(m->metadata[i].key, key))
            return m->metadata[i].value;
    return NULL;
}

/* Adds one tensor's value statistics to the result; a bad tensor is counted and the first
 * one named. */
static dta_status add_result(dta_verify_result *res, const dta_verify_stats *vs, bool bad,
                             bool errs, const char *name, dta_status st, dta_error *err)
{
    res->total.elements += vs->elements;
    res->total.mismatches += vs->mismatches;
    res->total.nonfinite_added += vs->nonfinite_added;
    if (errs) {
        if (vs->max_abs_err > res->total.max_abs_err)
            res->total.max_abs_err = vs->max_abs_err;
        if (vs->max_rel_err > res->total.max_rel_err)
            res->total.max_rel_err = vs->max_rel_err;
    }
    if (bad) {
        res->tensors_bad++;
        if (!res->first_bad && !(res->first_bad = strdup(name)) && st == DTA_OK)
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    return st;
}

/* Compares source tensor ta (of storage sa) with converted tensor tb into res (tensors,
 * tensors_bad, shape_changed, totals, first_bad). */
static dta_status compare_pair(reader *ra, reader *rb, const dta_tensor *ta,
                               const dta_storage *sa, const dta_tensor *tb,
                               dta_overflow_mode mode, bool cuda, unsigned char *ba,
                               unsigned char *bb, size_t chunk, dta_verify_result *res,
                               dta_error *err)
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
    const dta_storage *sb = tb->meta ? NULL : &rb->m->storages[tb->storage];
    for (uint64_t e = 0; !bad && !ta->meta && e < ta->numel && st == DTA_OK; e += chunk) {
        size_t k = ta->numel - e < chunk ? (size_t)(ta->numel - e) : chunk;
        if ((st = read_elems(ra, ta, sa, e, k, ba, err)) == DTA_OK &&
            (st = read_elems(rb, tb, sb, e, k, bb, err)) == DTA_OK)
            st = (cuda ? (verify_fn)dta_verify_cuda : dta_verify)(ta->dtype, tb->dtype, ba, bb, k,
                                                                 mode, &vs, err);
    }
    /* inf from overflow is the exact conversion under --on-overflow inf: reported in
     * nonfinite_added, a failure only when the bytes differ */
    return add_result(res, &vs, bad || vs.mismatches, true, tb->name, st, err);
}

/* compare_pair for a source tensor kept as a vtensor. */
static dta_status compare_vt(reader *ra, reader *rb, const vtensor *va, const dta_tensor *tb,
                             dta_overflow_mode mode, bool cuda, unsigned char *ba,
                             unsigned char *bb, size_t chunk, dta_verify_result *res,
                             dta_error *err)
{
    dta_tensor ta;
    dta_storage sa;
    vt_unpack(va, &ta, &sa);
    return compare_pair(ra, rb, &ta, &sa, tb, mode, cuda, ba, bb, chunk, res, err);
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
            (st = read_elems(rb, tb, &rb->m->storages[tb->storage], e, k, bb, err)) == DTA_OK)
            st = dta_verify(tb->dtype, tb->dtype, ba, bb, k, mode, &vs, err);
    }
    return add_result(res, &vs, bad || vs.mismatches, false, tb->name, st, err);
}

static void close_all(reader *r, size_t nfiles)
{
    for (size_t i = 0; r->fds && i < nfiles; i++)
        if (r->fds[i] >= 0)
            close(r->fds[i]);
    free(r->fds);
    free(r->gathered);
}

static dta_status open_reader(reader *r, const dta_model *m, dta_error *err)
{
    *r = (reader){m, malloc(sizeof(int) * (m->nfiles ? m->nfiles : 1)), NULL, NULL, 0};
    if (!r->fds)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < m->nfiles; i++)
        r->fds[i] = -1;
    return DTA_OK;
}

/* One source tensor absent from the output (the last pass of dta_verify_checkpoints). It
 * counts as present only when the output records it as a dropped alias (metadata NAME =
 * KEPT, as safetensors' save_model writes) and KEPT is an output tensor holding exactly
 * NAME's converted values: a metadata key alone proves nothing (it may just share the
 * name). */
static dta_status check_absent(reader *ra, reader *rb, const vtensor *va, const vtensor *sa,
                               size_t na, const dta_tensor **sb, dtap_dq *dq,
                               dta_overflow_mode mode, bool cuda, unsigned char *ba,
                               unsigned char *bb, size_t chunk, dta_verify_result *res,
                               dta_error *err)
{
    const dta_model *b = rb->m;
    size_t p;
    if (find_tensor(sb, b->ntensors, va->name) || dtap_dq_dropped(dq, va->name))
        return DTA_OK;
    if (dq && dtap_dq_role(dq, va->name, &p) == DTAP_DQ_WEIGHT &&
        find_tensor(sb, b->ntensors, dtap_dq_out_name(dq, p)))
        return DTA_OK; /* written under its plain name */
    const char *kept = meta_value(b, va->name);
    const dta_tensor *tb = kept ? find_tensor(sb, b->ntensors, kept) : NULL;
    const vtensor *ka = kept ? find_vt(sa, na, kept) : NULL;
    /* the kept tensor must stand for the same source data: an alias of it there */
    if (tb && ka && ka->storage == va->storage && ka->storage != UINT32_MAX) {
        size_t bad_before = res->tensors_bad;
        res->tensors--; /* compare_pair counts it; an alias is not a tensor of its own */
        dta_status st = compare_vt(ra, rb, va, tb, mode, cuda, ba, bb, chunk, res, err);
        if (res->tensors_bad == bad_before)
            return st;
        /* not an alias of the kept tensor after all: the source tensor is lost */
        res->tensors_bad = bad_before;
        res->missing++;
        if (!res->first_missing && !(res->first_missing = strdup(va->name)))
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        return st;
    }
    res->missing++;
    if (!res->first_missing && !(res->first_missing = strdup(va->name)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    return DTA_OK;
}

dta_status dta_verify_checkpoints(const char *source, const char *converted,
                                  dta_overflow_mode mode, dta_device device,
                                  dta_verify_result *res, dta_error *err)
{
    dta_model *a = NULL, *b = NULL;
    vtensor *sa = NULL; /* the source's tensors sorted by name */
    size_t na = 0;
    reader ra = {0}, rb = {0};
    unsigned char *ba = NULL, *bb = NULL;
    dtap_dq *dq = NULL;
    const dta_tensor **sbn = NULL, **sb = NULL;
    uint32_t *order = NULL;
    const size_t chunk = 1u << 20; /* elements per step */
    dta_status st;

    memset(res, 0, sizeof *res);
    struct stat ss;
    bool cuda = device == DTA_DEVICE_CUDA ||
                (device == DTA_DEVICE_AUTO && stat(source, &ss) == 0 &&
                 dta_cuda_auto((uint64_t)ss.st_size));
    /* The source is reduced to what verify needs before the converted file is opened:
     * its transient memory (quantization analysis, sorting) and its records then never
     * add to the second model. */
    if ((st = dta_model_open(source, &a, err)) != DTA_OK)
        return st;
    /* a quantized source whose output dropped the companions was dequantized: its
     * parameters are compared with their dequantization (dequant.h) */
    dta_error qe;
    if (dtap_dq_open(a, &dq, &qe) != DTA_OK)
        dq = NULL;
    na = a->ntensors;
    if (a->nstorages >= UINT32_MAX || na >= UINT32_MAX || a->nfiles >= UINT32_MAX) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "%s: too many tensors to verify", source);
        goto out;
    }
    if (!(sa = malloc(sizeof *sa * (na ? na : 1)))) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < na; i++)
        sa[i] = vt_make(a, i);
    qsort(sa, na, sizeof *sa, cmp_vt_name);
    if (!dq) /* dequantization reads the source's records; else they are not needed */
        dtap_model_release_records(a);
    if ((st = open_reader(&ra, a, err)) != DTA_OK ||
        (st = dta_model_open(converted, &b, err)) != DTA_OK ||
        (st = open_reader(&rb, b, err)) != DTA_OK)
        goto out;
    ba = malloc(chunk * 8);
    bb = malloc(chunk * 8);
    if (!ba || !bb || (dq && !(sbn = sorted_tensors(b)))) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }

    size_t matched = 0, dropped = 0;
    for (size_t i = 0; i < b->ntensors && st == DTA_OK; i++) {
        const dta_tensor *tb = &b->tensors[i];
        const vtensor *va = find_vt(sa, na, tb->name);
        size_t p;
        if (!va && dq && dtap_dq_find_out(dq, tb->name, &p) &&
            !find_tensor(sbn, b->ntensors, dtap_dq_scale_name(dq, p))) {
            /* a parameter written under its plain name ("*_blocks" -> its base) */
            matched++;
            st = compare_dq(dq, p, &rb, tb, mode, ba, bb, chunk, res, err);
            continue;
        }
        if (!va) {
            res->extra++;
            continue;
        }
        matched++;
        if (dq && dtap_dq_role(dq, va->name, &p) == DTAP_DQ_WEIGHT &&
            !find_tensor(sbn, b->ntensors, dtap_dq_scale_name(dq, p)))
            st = compare_dq(dq, p, &rb, tb, mode, ba, bb, chunk, res, err);
        else
            st = compare_vt(&ra, &rb, va, tb, mode, cuda, ba, bb, chunk, res, err);
    }
    /* companions the dequantized output does not have are not missing */
    for (size_t i = 0; dq && i < na; i++)
        if (dtap_dq_dropped(dq, sa[i].name) && !find_tensor(sbn, b->ntensors, sa[i].name))
            dropped++;
    /* source tensors absent from the output, in the source's order */
    if (st == DTA_OK && matched + dropped < na) {
        if (!(sb = sorted_tensors(b)) || !(order = malloc(sizeof *order * (na ? na : 1)))) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < na; i++)
            order[sa[i].idx] = (uint32_t)i;
        for (size_t i = 0; i < na && st == DTA_OK; i++)
            st = check_absent(&ra, &rb, &sa[order[i]], sa, na, sb, dq, mode, cuda, ba, bb, chunk,
                              res, err);
    }
out:
    close_all(&ra, a ? a->nfiles : 0);
    close_all(&rb, b ? b->nfiles : 0);
    free(ba);
    free(bb);
    free(sa);
    free(sb);
    free(sbn);
    free(order);
    dtap_dq_free(dq);
    dta_model_free(a);
    dta_model_free(b);
    return st;
}

dta_status dtap_verify_unpublished(dtap_job *j, const char *in, const char *tmp,
                                   const char *out)
{
    dta_verify_result vr;
    dta_status st = dta_verify_checkpoints(in, tmp, j->o->overflow,
                                           j->cuda ? DTA_DEVICE_CUDA : DTA_DEVICE_CPU, &vr,
                                           j->err);
    if (st != DTA_OK)
        return st;
    j->res->verify = vr.total;
    if (vr.tensors_bad || vr.missing || vr.extra || vr.shape_changed)
        st = dta_error_set(j->err, DTA_E_FORMAT, 0,
                           "%s: verification failed before publishing: %zu tensors differ "
                           "(first: %.200s), %zu missing, %zu extra", out, vr.tensors_bad,
                           vr.first_bad ? vr.first_bad : "-", vr.missing, vr.extra);
    free(vr.first_bad);
    free(vr.first_missing);
    return st;
}
