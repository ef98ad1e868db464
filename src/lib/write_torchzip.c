/* Torch zip checkpoint writer: re-serialises data.pkl with retyped storages and streams
 * a new archive.
 *
 * Records, in this order: <prefix>/data.pkl, <prefix>/byteorder ("little"),
 * <prefix>/data/<key> (first-appearance order in the new pickle), the input's other
 * records, <prefix>/version; written with torch's own zip layout by zip_write.c.
 *
 * data.pkl (docs/formats.md 2.6, 2.9) is the input's graph written again by the pickle
 * emitter (pickle_emit.c), whose hooks this file gives: a tensor whose storage is retyped
 * is written with a new storage class (typed, numel in elements) or UntypedStorage (numel
 * in bytes) plus _rebuild_tensor_v3 and a dtype argument; nothing shared (a memoised
 * FloatStorage global, the rebuild function global) is modified, new globals are emitted
 * instead. */
#define _POSIX_C_SOURCE 200809L
#include "write_torchzip.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "model_build.h"
#include "format_torchzip.h"
#include "pickle.h"
#include "pickle_emit.h"
#include "torch_graph.h"
#include "zipread.h"
#include "zip_write.h"


/* ==== reading ======================================================================= */

struct dtap_torchzip {
    const dtap_src *src;
    dtap_zip *zip;
    dtap_pickle *pk;
    char *prefix;
    size_t file;
    size_t stor_lo, stor_hi; /* model storages the load added */
    uint64_t zip64_threshold;
};

void dtap_torchzip_free(dtap_torchzip *t)
{
    if (!t) return;
    dtap_pickle_free(t->pk);
    dtap_zip_close(t->zip);
    free(t->prefix);
    free(t);
}

const char *dtap_torchzip_prefix(const dtap_torchzip *t) { return t ? t->prefix : ""; }
const dtap_pickle *dtap_torchzip_pickle(const dtap_torchzip *t) { return t ? t->pk : NULL; }

void dtap_torchzip_set_zip64_threshold(dtap_torchzip *t, uint64_t threshold)
{
    if (t) t->zip64_threshold = threshold;
}

dta_status dtap_torchzip_load(const dtap_src *src, dta_model *m, dtap_torchzip **out, dta_error *err)
{
    *out = NULL;
    if (!src || !m) return dta_error_set(err, DTA_E_ARG, 0, "torch zip load: NULL argument");
    size_t lo = m->nstorages;
    dtap_torchzip_parts p;
    dta_status st = dtap_torchzip_read(src, m, &p, err);
    if (st) return st;
    if (p.torchscript) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                           "TorchScript archives (torch.jit.save) cannot be rewritten");
        goto fail;
    }
    if (p.big_endian) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                           "big-endian checkpoints (byteorder 'big') cannot be rewritten yet");
        goto fail;
    }
    dtap_torchzip *t = calloc(1, sizeof *t);
    const char *pre = dtap_zip_prefix(p.zip);
    if (t) t->prefix = strdup(dtap_zipw_valid_prefix(pre) ? pre : "archive");
    if (!t || !t->prefix) {
        free(t);
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    t->src = src;
    t->zip = p.zip;
    t->pk = p.pkl;
    t->file = p.file;
    t->stor_lo = lo;
    t->stor_hi = m->nstorages;
    t->zip64_threshold = DTAP_ZIP64_LIMIT;
    *out = t;
    return DTA_OK;
fail:
    dtap_pickle_free(p.pkl);
    dtap_zip_close(p.zip);
    return st;
}

/* Streams a record's bytes (STORED in place, deflated ones inflated chunk by chunk). */
static dta_status copy_entry(const dtap_torchzip *t, const dtap_zip_entry *e, dtap_bytes_sink sink,
                             void *ctx, dta_error *err)
{
    return dtap_zip_stream(t->zip, e, sink, ctx, err);
}

static const dtap_zip_entry *storage_entry(const dtap_torchzip *t, const char *key, size_t klen)
{
    char stackbuf[300];
    if (klen + 6 > sizeof stackbuf) return NULL;
    memcpy(stackbuf, "data/", 5);
    memcpy(stackbuf + 5, key, klen);
    stackbuf[5 + klen] = 0;
    return dtap_zip_find(t->zip, stackbuf);
}

static bool own_storage(const dtap_torchzip *t, const dta_model *m, size_t i)
{
    return i >= t->stor_lo && i < t->stor_hi && i < m->nstorages && m->storages[i].file == t->file &&
           m->storages[i].key;
}

dta_status dtap_torchzip_read_storage(const dtap_torchzip *t, const dta_model *m, size_t storage,
                                      dtap_bytes_sink sink, void *ctx, dta_error *err)
{
    if (!t || !m || !sink || !own_storage(t, m, storage))
        return dta_error_set(err, DTA_E_ARG, 0, "storage %zu is not one of this checkpoint's", storage);
    const dta_storage *s = &m->storages[storage];
    const dtap_zip_entry *e = storage_entry(t, s->key, strlen(s->key));
    if (!e) return dta_error_set(err, DTA_E_FORMAT, 0, "record '%s/data/%s' is missing", t->prefix, s->key);
    if (e->size != s->nbytes)
        return dta_error_set(err, DTA_E_FORMAT, 0, "record '%s' has %llu bytes, storage needs %llu", e->name,
                             (unsigned long long)e->size, (unsigned long long)s->nbytes);
    return copy_entry(t, e, sink, ctx, err);
}

/* ==== rewriting data.pkl (the emitter: pickle_emit.c) ================================ */

/* One output storage record. */
typedef struct {
    const char *key;      /* borrowed from the graph or the model */
    size_t klen;
    size_t storage;       /* model storage, SIZE_MAX for a pid no tensor reached */
    const dtap_zip_entry *in; /* input record */
    uint64_t size;        /* output bytes */
    dta_dtype dtype;      /* output dtype (storage class dtype for SIZE_MAX ones) */
    bool retyped;
} outrec;

typedef struct {
    const dtap_torchzip *t;
    const dta_model *m;
    const dta_dtype *nd;
    dtap_pemit *pe;        /* the emission in progress (synthetic nodes) */
    /* the new data.pkl */
    unsigned char *o;
    size_t on;
    /* key -> model storage (this file's storages) */
    size_t *kmap;          /* storage index per slot, SIZE_MAX empty */
    size_t kcap;
    /* output records, first-appearance order, with a key set */
    outrec *recs;
    size_t nrecs, caprecs;
    size_t *rset;          /* rec index + 1 per slot, 0 empty */
    size_t rcap;
    char *keys;            /* record keys copied when the input graph is released */
    dta_error *err;
} emitter;

static dta_status nomem(emitter *e) { return dta_error_set(e->err, DTA_E_NOMEM, ENOMEM, "out of memory"); }

/* synthetic nodes of the emission (pickle_emit.h) */
static dtap_pnode *syn_node(emitter *e, dtap_pkind kind) { return dtap_pemit_node(e->pe, kind); }
static dtap_pnode *syn_tuple(emitter *e, size_t cap) { return dtap_pemit_tuple(e->pe, cap); }
static dtap_pnode *syn_global(emitter *e, const char *mod, const char *name)
{
    return dtap_pemit_global(e->pe, mod, name);
}
static void tpush(dtap_pnode *t, const dtap_pnode *x) { dtap_pemit_push(t, x); }

/* ---- storage keys ---- */

static uint64_t key_hash(const char *s, size_t n) { return dtap_hash(s, n, 0x746f7263687a6970ull); }

static dta_status kmap_build(emitter *e)
{
    size_t n = 0;
    for (size_t i = e->t->stor_lo; i < e->t->stor_hi; i++)
        if (own_storage(e->t, e->m, i)) n++;
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    e->kmap = malloc(cap * sizeof *e->kmap);
    if (!e->kmap) return nomem(e);
    e->kcap = cap;
    for (size_t i = 0; i < cap; i++) e->kmap[i] = SIZE_MAX;
    for (size_t i = e->t->stor_lo; i < e->t->stor_hi; i++) {
        if (!own_storage(e->t, e->m, i)) continue;
        const char *k = e->m->storages[i].key;
        size_t h = (size_t)key_hash(k, strlen(k)) & (cap - 1);
        while (e->kmap[h] != SIZE_MAX) {
            if (!strcmp(e->m->storages[e->kmap[h]].key, k))
                return dta_error_set(e->err, DTA_E_ARG, 0, "model has two storages with key '%s'", k);
            h = (h + 1) & (cap - 1);
        }
        e->kmap[h] = i;
    }
    return DTA_OK;
}

static size_t key_storage(const emitter *e, const char *k, size_t n)
{
    if (!e->kcap) return SIZE_MAX;
    for (size_t h = (size_t)key_hash(k, n) & (e->kcap - 1); e->kmap[h] != SIZE_MAX; h = (h + 1) & (e->kcap - 1)) {
        const char *s = e->m->storages[e->kmap[h]].key;
        if (strlen(s) == n && !memcmp(s, k, n)) return e->kmap[h];
    }
    return SIZE_MAX;
}

static bool pid_key(const dtap_pnode *pid, const char **k, size_t *n)
{
    const dtap_pnode *key = dtap_pnode_item(pid, 2);
    if (!pid || pid->kind != DTAP_PK_TUPLE || pid->seq.n < 5 || !dtap_pnode_is_str(dtap_pnode_item(pid, 0), "storage") ||
        !key || (key->kind != DTAP_PK_STR && key->kind != DTAP_PK_BYTES) || key->len == 0 || key->len > 256 ||
        memchr(key->s, 0, key->len))
        return false;
    *k = key->s;
    *n = key->len;
    return true;
}

/* Storage index of a PERSID node, SIZE_MAX when no model storage has its key. */
static size_t persid_storage(const emitter *e, const dtap_pnode *ps)
{
    const char *k;
    size_t n;
    if (!ps || ps->kind != DTAP_PK_PERSID || !pid_key(ps->args, &k, &n)) return SIZE_MAX;
    return key_storage(e, k, n);
}

static bool retyped(const emitter *e, size_t s)
{
    return s != SIZE_MAX && e->nd[s] != e->m->storages[s].dtype;
}

static size_t rset_find(const emitter *e, const char *k, size_t n)
{
    if (!e->rcap) return SIZE_MAX;
    for (size_t h = (size_t)key_hash(k, n) & (e->rcap - 1); e->rset[h]; h = (h + 1) & (e->rcap - 1)) {
        const outrec *r = &e->recs[e->rset[h] - 1];
        if (r->klen == n && !memcmp(r->key, k, n)) return e->rset[h] - 1;
    }
    return SIZE_MAX;
}

/* Registers the record a pid refers to, on its first appearance. */
static dta_status note_pid(emitter *e, const dtap_pnode *pid)
{
    const char *k;
    size_t n;
    if (!pid_key(pid, &k, &n))
        return dta_error_set(e->err, DTA_E_FORMAT, 0,
                             "data.pkl: a persistent id is not a ('storage', class, key, location, numel) tuple");
    if (rset_find(e, k, n) != SIZE_MAX) return DTA_OK;
    if (e->nrecs == e->caprecs) {
        size_t nc = e->caprecs ? e->caprecs * 2 : 64;
        outrec *nr = realloc(e->recs, nc * sizeof *nr);
        if (!nr) return nomem(e);
        e->recs = nr;
        e->caprecs = nc;
    }
    if ((e->nrecs + 1) * 2 > e->rcap) {
        size_t nc = e->rcap ? e->rcap * 2 : 128;
        size_t *ns = calloc(nc, sizeof *ns);
        if (!ns) return nomem(e);
        for (size_t i = 0; i < e->nrecs; i++) {
            size_t h = (size_t)key_hash(e->recs[i].key, e->recs[i].klen) & (nc - 1);
            while (ns[h]) h = (h + 1) & (nc - 1);
            ns[h] = i + 1;
        }
        free(e->rset);
        e->rset = ns;
        e->rcap = nc;
    }
    outrec r = {.key = k, .klen = n, .storage = key_storage(e, k, n)};
    r.in = storage_entry(e->t, k, n);
    if (!r.in)
        return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl refers to record '%s/data/%.*s', which is missing",
                             e->t->prefix, (int)n, k);
    if (r.storage != SIZE_MAX) {
        const dta_storage *s = &e->m->storages[r.storage];
        r.dtype = e->nd[r.storage];
        r.retyped = retyped(e, r.storage);
        if (!dta_dtype_nbytes(r.dtype, s->numel, &r.size))
            return dta_error_set(e->err, DTA_E_LIMIT, 0, "storage '%s' as %s overflows", s->key, dta_dtype_name(r.dtype));
    } else {
        /* a storage no tensor rebuild reached (a bare storage object): copied as it is */
        bool untyped;
        int64_t numel;
        r.dtype = dtap_torch_storage_dtype(dtap_pnode_item(pid, 1), &untyped);
        if (r.dtype == DTA_DTYPE_NONE || !dtap_pnode_int(dtap_pnode_item(pid, 4), &numel) || numel < 0 ||
            !dta_dtype_nbytes(r.dtype, (uint64_t)numel, &r.size) || r.size != r.in->size)
            return dta_error_set(e->err, DTA_E_FORMAT, 0, "record '%s' does not match its persistent id", r.in->name);
    }
    size_t h = (size_t)key_hash(k, n) & (e->rcap - 1);
    while (e->rset[h]) h = (h + 1) & (e->rcap - 1);
    e->recs[e->nrecs] = r;
    e->rset[h] = ++e->nrecs;
    return DTA_OK;
}

/* ---- tensor rewriting ---- */

/* The pid of storage s as it is written with dtype d. */
static dtap_pnode *new_pid(emitter *e, const dtap_pnode *pid, size_t s, dta_dtype d)
{
    const dta_dtype_info *di = dta_dtype_get(d);
    const dta_storage *st = &e->m->storages[s];
    bool v3 = !di->storage_name;
    uint64_t numel = st->numel;
    if (v3 && !dta_dtype_nbytes(d, numel, &numel)) return NULL; /* untyped storages count bytes */
    if (numel > INT64_MAX) return NULL;
    dtap_pnode *t = syn_tuple(e, pid->seq.n);
    dtap_pnode *cls = v3 ? syn_global(e, "torch.storage", "UntypedStorage") : syn_global(e, "torch", di->storage_name);
    dtap_pnode *num = syn_node(e, DTAP_PK_INT);
    if (!t || !cls || !num) return NULL;
    num->i = (int64_t)numel;
    const dtap_pnode *key = pid->seq.v[2];
    if (key->kind != DTAP_PK_STR) { /* torch names the record with str(key): write a str */
        dtap_pnode *k = syn_node(e, DTAP_PK_STR);
        if (!k) return NULL;
        k->s = key->s;
        k->len = key->len;
        key = k;
    }
    tpush(t, pid->seq.v[0]);
    tpush(t, cls);
    tpush(t, key);
    tpush(t, pid->seq.v[3]);
    tpush(t, num);
    for (size_t i = 5; i < pid->seq.n; i++) tpush(t, pid->seq.v[i]);
    return t;
}

/* g(A) with g a torch._utils tensor rebuild whose storage is retyped: fn and args receive
 * the rewritten call (synthetic nodes); *done false when there is nothing to rewrite. */
static dta_status rewrite_tensor(emitter *e, const dtap_pnode *g, const dtap_pnode *A, const dtap_pnode **fn,
                                 const dtap_pnode **args, bool *done)
{
    *done = false;
    if (!g || g->kind != DTAP_PK_GLOBAL || strcmp(g->s, "torch._utils") || !A || A->kind != DTAP_PK_TUPLE)
        return DTA_OK;
    int ver = !strcmp(g->name, "_rebuild_tensor") ? 1 : !strcmp(g->name, "_rebuild_tensor_v2") ? 2
            : !strcmp(g->name, "_rebuild_tensor_v3") ? 3 : 0;
    if (!ver || A->seq.n < 1) return DTA_OK;
    const dtap_pnode *ps = A->seq.v[0];
    size_t s = persid_storage(e, ps);
    if (!retyped(e, s)) return DTA_OK;
    size_t minargs = ver == 1 ? 4 : ver == 2 ? 6 : 7;
    const char *sk = e->m->storages[s].key;
    if (A->seq.n < minargs)
        return dta_error_set(e->err, DTA_E_UNSUPPORTED, 0, "storage '%s': %s call with %zu arguments", sk, g->name,
                             (size_t)A->seq.n);
    dta_dtype d = e->nd[s];
    const dta_dtype_info *di = dta_dtype_get(d);
    bool v3 = !di->storage_name;
    dtap_pnode *pers = syn_node(e, DTAP_PK_PERSID);
    dtap_pnode *na = syn_tuple(e, A->seq.n + 3);
    if (!pers || !na || !(pers->args = new_pid(e, ps->args, s, d))) return nomem(e);
    tpush(na, pers);
    for (size_t i = 1; i < 4; i++) tpush(na, A->seq.v[i]);
    size_t rest = 4;
    if (v3) {
        if (ver == 1) {
            dtap_pnode *f = syn_node(e, DTAP_PK_BOOL), *hooks = syn_node(e, DTAP_PK_REDUCE);
            dtap_pnode *od = syn_global(e, "collections", "OrderedDict"), *empty = syn_tuple(e, 0);
            if (!f || !hooks || !od || !empty) return nomem(e);
            hooks->fn = od;
            hooks->args = empty;
            tpush(na, f);
            tpush(na, hooks);
        } else {
            tpush(na, A->seq.v[4]);
            tpush(na, A->seq.v[5]);
            rest = ver == 3 ? 7 : 6;
        }
        dtap_pnode *dt = syn_global(e, "torch", di->torch_name);
        if (!dt) return nomem(e);
        tpush(na, dt);
        *fn = ver == 3 ? g : syn_global(e, "torch._utils", "_rebuild_tensor_v3");
    } else {
        if (ver >= 2) {
            tpush(na, A->seq.v[4]);
            tpush(na, A->seq.v[5]);
            rest = ver == 3 ? 7 : 6;
        }
        *fn = ver == 3 ? syn_global(e, "torch._utils", "_rebuild_tensor_v2") : g;
    }
    if (!*fn) return nomem(e);
    for (size_t i = rest; i < A->seq.n; i++) tpush(na, A->seq.v[i]);
    *args = na;
    *done = true;
    return DTA_OK;
}

/* ---- hooks of the emission ---- */

/* A call: a tensor rebuild of a retyped storage is rewritten (inside
 * _rebuild_from_type_v2 too). */
static dta_status on_call(void *ctx, dtap_pemit *pe, const dtap_pnode **fn, const dtap_pnode **args)
{
    emitter *e = ctx;
    const dtap_pnode *a = *args;
    bool done = false;
    dta_status st;
    e->pe = pe;
    if (dtap_pnode_is_global(*fn, "torch._tensor", "_rebuild_from_type_v2") && a && a->kind == DTAP_PK_TUPLE &&
        a->seq.n >= 3) {
        const dtap_pnode *f2, *a2;
        if ((st = rewrite_tensor(e, a->seq.v[0], a->seq.v[2], &f2, &a2, &done))) return st;
        if (done) {
            dtap_pnode *nb = syn_tuple(e, a->seq.n);
            if (!nb) return nomem(e);
            for (size_t i = 0; i < a->seq.n; i++)
                tpush(nb, i == 0 ? f2 : i == 2 ? a2 : a->seq.v[i]);
            *args = nb;
        }
        return DTA_OK;
    }
    return rewrite_tensor(e, *fn, *args, fn, args, &done);
}

/* A persistent id: its record is noted; a retyped storage only tensor rebuilds may use. */
static dta_status on_persid(void *ctx, dtap_pemit *pe, const dtap_pnode *n)
{
    emitter *e = ctx;
    e->pe = pe;
    size_t s = persid_storage(e, n);
    if (n->op != 0 && retyped(e, s))
        return dta_error_set(e->err, DTA_E_UNSUPPORTED, 0,
                             "storage '%s' is used by an object that is not a tensor rebuild; it cannot be retyped",
                             e->m->storages[s].key);
    return note_pid(e, n->args);
}

static void emitter_free(emitter *e)
{
    free(e->o);
    free(e->kmap);
    free(e->recs);
    free(e->rset);
    free(e->keys);
}

/* Once the new pickle is made, the input's graph (and the key map) goes before
 * the new pickle is parsed back to check it: two graphs of a 200k-tensor checkpoint at
 * once were the peak of a torch -> torch convert. The record keys, borrowed from the
 * graph, move to the model's storage keys (the same bytes) or to a copy. */
static dta_status release_graph(emitter *e, dtap_pickle **graph)
{
    size_t need = 1;
    for (size_t i = 0; i < e->nrecs; i++)
        if (e->recs[i].storage == SIZE_MAX) need += e->recs[i].klen;
    if (!(e->keys = malloc(need))) return nomem(e);
    char *p = e->keys;
    for (size_t i = 0; i < e->nrecs; i++) {
        outrec *r = &e->recs[i];
        if (r->storage != SIZE_MAX) {
            r->key = e->m->storages[r->storage].key;
            continue;
        }
        memcpy(p, r->key, r->klen);
        r->key = p;
        p += r->klen;
    }
    free(e->kmap);
    e->kmap = NULL;
    e->kcap = 0;
    dtap_pickle_free(*graph);
    *graph = NULL;
    return DTA_OK;
}

/* ==== checking the new pickle (docs/formats.md 3.3) ====================================== */

typedef struct {
    emitter *e;
    dta_model *scratch;
    size_t *sidx;     /* scratch storage per output record, SIZE_MAX until seen */
} checker;

static dta_status check_resolve(void *vctx, const dtap_pnode *pid, dta_dtype dtype, const char *tensor,
                                size_t *storage, uint64_t *extra, dta_error *err)
{
    checker *c = vctx;
    emitter *e = c->e;
    *extra = 0;
    const char *k;
    size_t kn;
    int64_t numel;
    bool untyped;
    if (!pid_key(pid, &k, &kn) || !dtap_pnode_int(dtap_pnode_item(pid, 4), &numel) || numel < 0)
        return dta_error_set(err, DTA_E_FORMAT, 0, "rewritten tensor '%s' has a malformed persistent id", tensor);
    size_t r = rset_find(e, k, kn);
    dta_dtype sdt = dtap_torch_storage_dtype(dtap_pnode_item(pid, 1), &untyped);
    uint64_t nbytes;
    if (r == SIZE_MAX || sdt == DTA_DTYPE_NONE || !dta_dtype_nbytes(sdt, (uint64_t)numel, &nbytes) ||
        nbytes != e->recs[r].size)
        return dta_error_set(err, DTA_E_FORMAT, 0, "rewritten tensor '%s': pid and record data/%.*s disagree",
                             tensor, (int)kn, k);
    const outrec *rec = &e->recs[r];
    if (rec->retyped) {
        const dta_dtype_info *di = dta_dtype_get(rec->dtype);
        bool want_untyped = !di->storage_name;
        if (untyped != want_untyped || (!untyped && sdt != rec->dtype) || dtype != rec->dtype)
            return dta_error_set(err, DTA_E_FORMAT, 0, "rewritten tensor '%s' does not name storage type %s",
                                 tensor, dta_dtype_name(rec->dtype));
    }
    if (c->sidx[r] == SIZE_MAX) {
        dta_dtype keep = untyped ? dtype : sdt;
        size_t es = dta_dtype_elem_size(keep);
        if (!es || nbytes % es)
            return dta_error_set(err, DTA_E_FORMAT, 0, "rewritten record data/%.*s is not a whole number of %s",
                                 (int)kn, k, dta_dtype_name(keep));
        dta_status st = dtap_model_add_storage(c->scratch, 0, NULL, keep, nbytes / es, UINT64_MAX,
                                               &c->sidx[r], err);
        if (st) return st;
    }
    *storage = c->sidx[r];
    return DTA_OK;
}

static const int64_t *eff_stride(const dta_tensor *t, int64_t *buf)
{
    if (t->stride) return t->stride;
    int64_t s = 1;
    for (int k = t->rank; k-- > 0;) {
        buf[k] = s;
        s *= (int64_t)t->shape[k];
    }
    return buf;
}

static dta_status check_pickle(emitter *e)
{
    dtap_pickle *pk = NULL;
    dta_status st = dtap_pickle_load(e->o, e->on, NULL, &pk, NULL, e->err);
    if (st) {
        dta_error_prefix(e->err, "rewritten data.pkl");
        return st;
    }
    checker c = {.e = e};
    c.scratch = dtap_model_new("", e->err);
    c.sidx = malloc((e->nrecs ? e->nrecs : 1) * sizeof *c.sidx);
    if (!c.scratch || !c.sidx) {
        st = nomem(e);
        goto out;
    }
    for (size_t i = 0; i < e->nrecs; i++) c.sidx[i] = SIZE_MAX;
    if ((st = dtap_model_add_file(c.scratch, "", DTA_FORMAT_TORCH_ZIP, NULL, e->err))) goto out;
    if ((st = dtap_torch_walk(pk, c.scratch, 0, NULL, check_resolve, &c, e->err))) {
        dta_error_prefix(e->err, "rewritten data.pkl");
        goto out;
    }
    dtap_pickle_free(pk); /* the scratch model holds what is compared */
    pk = NULL;
    /* same tensors, in the same walk order, with the new dtypes and the same views */
    const dta_model *m = e->m;
    size_t j = 0;
    size_t *map = calloc(c.scratch->nstorages + 1, sizeof *map); /* scratch storage -> model storage + 1 */
    if (!map) {
        st = nomem(e);
        goto out;
    }
    for (size_t i = 0; i < m->ntensors && !st; i++) {
        const dta_tensor *a = &m->tensors[i];
        if (a->file != e->t->file) continue;
        if (j >= c.scratch->ntensors) {
            st = dta_error_set(e->err, DTA_E_FORMAT, 0, "rewritten data.pkl lost tensor '%s'", a->name);
            break;
        }
        const dta_tensor *b = &c.scratch->tensors[j++];
        int64_t sa[DTA_MAX_RANK], sb[DTA_MAX_RANK];
        dta_dtype want = a->storage == SIZE_MAX ? a->dtype : e->nd[a->storage];
        bool ok = a->rank == b->rank && b->dtype == want && a->storage_offset == b->storage_offset &&
                  (a->storage == SIZE_MAX) == (b->storage == SIZE_MAX);
        if (ok && a->rank > 0)
            ok = !memcmp(a->shape, b->shape, (size_t)a->rank * sizeof *a->shape) &&
                 !memcmp(eff_stride(a, sa), eff_stride(b, sb), (size_t)a->rank * sizeof(int64_t));
        if (ok && a->storage != SIZE_MAX) {
            size_t *slot = &map[b->storage];
            if (!*slot) *slot = a->storage + 1;
            ok = *slot == a->storage + 1 && c.scratch->storages[b->storage].numel == m->storages[a->storage].numel;
        }
        if (!ok)
            st = dta_error_set(e->err, DTA_E_FORMAT, 0,
                               "rewritten data.pkl: tensor '%s' differs from the input (internal error)", a->name);
    }
    if (!st && j != c.scratch->ntensors)
        st = dta_error_set(e->err, DTA_E_FORMAT, 0, "rewritten data.pkl has %zu tensors more than the input",
                           c.scratch->ntensors - j);
    /* two model storages must not have merged into one scratch storage (checked above),
     * nor one model storage split into two */
    if (!st) {
        /* one pass with a mark per model storage (a pairwise scan was quadratic) */
        bool *used = calloc(m->nstorages + 1, sizeof *used);
        if (!used)
            st = nomem(e);
        for (size_t x = 0; used && x < c.scratch->nstorages && !st; x++)
            if (map[x]) {
                if (used[map[x] - 1])
                    st = dta_error_set(e->err, DTA_E_FORMAT, 0, "rewritten data.pkl split storage '%s'",
                                       m->storages[map[x] - 1].key);
                used[map[x] - 1] = true;
            }
        free(used);
    }
    free(map);
out:
    free(c.sidx);
    dta_model_free(c.scratch);
    dtap_pickle_free(pk);
    return st;
}

/* ==== writing ======================================================================= */

static dta_status zsink(void *ctx, const void *p, size_t n, dta_error *err) { return dtap_zipw_write(ctx, p, n, err); }

static bool skip_record(const char *rel)
{
    static const char *const fixed[] = {"data.pkl", "byteorder", "version", ".data/version", ".format_version",
                                        ".storage_alignment", ".data/serialization_id", NULL};
    for (size_t i = 0; fixed[i]; i++)
        if (!strcmp(rel, fixed[i])) return true;
    return !strncmp(rel, "data/", 5) || rel[strlen(rel) - 1] == '/' || !*rel;
}

/* version: the input's when it is a decimal >= 3, else "3\n". */
static dta_status version_bytes(const dtap_torchzip *t, unsigned char **buf, size_t *n, dta_error *err)
{
    const dtap_zip_entry *v = dtap_zip_find(t->zip, "version");
    if (!v) v = dtap_zip_find(t->zip, ".data/version");
    *buf = NULL;
    *n = 0;
    if (v && v->size <= 64) { /* anything longer is not a version number */
        unsigned char *b;
        size_t bn;
        dta_status st = dtap_zip_read(t->zip, v, 64, &b, &bn, err);
        if (st) return st;
        size_t i = 0, digits = 0;
        uint64_t val = 0;
        while (i < bn && (b[i] == ' ' || b[i] == '\t')) i++;
        for (; i < bn && b[i] >= '0' && b[i] <= '9' && digits < 18; i++, digits++) val = val * 10 + (uint64_t)(b[i] - '0');
        while (i < bn && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) i++;
        if (digits && i == bn && val >= 3) {
            *buf = b;
            *n = bn;
            return DTA_OK;
        }
        free(b);
    }
    *buf = (unsigned char *)strdup("3\n");
    if (!*buf) return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *n = 2;
    return DTA_OK;
}

static dta_status write_small(dtap_zipw *z, const char *rel, const void *p, size_t n, dta_error *err)
{
    dta_status st;
    if ((st = dtap_zipw_begin(z, rel, n, err)) || (st = dtap_zipw_write(z, p, n, err))) return st;
    return dtap_zipw_end(z, err);
}

/* graph: &t->pk when the input's graph is to be freed once the new pickle is made. */
static dta_status write_zip(const dtap_torchzip *t, dtap_pickle **graph, const dta_model *m,
                            const dta_dtype *new_dtype, int fd, dtap_storage_writer write_data,
                            void *ctx, dta_error *err)
{
    if (!t || !m || !new_dtype || fd < 0 || m->nstorages < t->stor_hi)
        return dta_error_set(err, DTA_E_ARG, 0, "torch zip write: bad arguments");
    bool any = false;
    for (size_t i = t->stor_lo; i < t->stor_hi; i++) {
        if (!own_storage(t, m, i) || new_dtype[i] == m->storages[i].dtype) continue;
        const dta_dtype_info *di = dta_dtype_get(new_dtype[i]);
        dta_dtype d = new_dtype[i];
        if (!di || di->bits % 8 || !di->torch_name || d == DTA_QI8 || d == DTA_QU8 || d == DTA_QI32 ||
            d == DTA_QU4X2 || d == DTA_QU2X4)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "storage '%s' cannot be written as %s",
                                 m->storages[i].key, di ? di->name : "an unknown dtype");
        any = true;
    }
    if (any && !write_data)
        return dta_error_set(err, DTA_E_ARG, 0, "torch zip write: storages are retyped but no data writer given");

    emitter e;
    memset(&e, 0, sizeof e);
    e.t = t;
    e.m = m;
    e.nd = new_dtype;
    e.err = err;
    dtap_zipw *z = NULL;
    unsigned char *ver = NULL;
    size_t vn = 0;
    dta_status st;
    const dtap_pemit_hooks hooks = {on_call, on_persid, &e};
    if ((st = kmap_build(&e)) || (st = dtap_pickle_emit(dtap_pickle_root(t->pk), &hooks, &e.o, &e.on, err)))
        goto done;
    if (graph && (st = release_graph(&e, graph))) goto done;
    if ((st = check_pickle(&e))) goto done;
    if ((st = version_bytes(t, &ver, &vn, err))) goto done;

    if ((st = dtap_zipw_open(fd, t->prefix, &z, err))) goto done;
    dtap_zipw_set_zip64_threshold(z, t->zip64_threshold);
    if ((st = write_small(z, "data.pkl", e.o, e.on, err)) || (st = write_small(z, "byteorder", "little", 6, err)))
        goto done;
    for (size_t i = 0; i < e.nrecs; i++) {
        const outrec *r = &e.recs[i];
        char rel[300];
        snprintf(rel, sizeof rel, "data/%.*s", (int)r->klen, r->key);
        if ((st = dtap_zipw_begin(z, rel, r->size, err))) goto done;
        if (r->retyped) st = write_data(ctx, r->storage, z, err);
        else if (r->storage != SIZE_MAX) st = dtap_torchzip_read_storage(t, m, r->storage, zsink, z, err);
        else st = copy_entry(t, r->in, zsink, z, err);
        if (st || (st = dtap_zipw_end(z, err))) goto done;
    }
    /* the input's other records (extra files), under the same names */
    size_t pl = strlen(dtap_zip_prefix(t->zip));
    for (size_t i = 0; i < dtap_zip_count(t->zip); i++) {
        const dtap_zip_entry *ze = dtap_zip_entry_at(t->zip, i);
        if (ze->name_len <= pl || memcmp(ze->name, dtap_zip_prefix(t->zip), pl) || ze->name[pl] != '/') {
            if (ze->name_len && ze->name[ze->name_len - 1] == '/' && ze->size == 0) continue; /* a directory */
            st = dta_error_set(err, DTA_E_UNSUPPORTED, 0, "record '%s' is outside the archive directory '%s/'",
                               ze->name, dtap_zip_prefix(t->zip));
            goto done;
        }
        const char *rel = ze->name + pl + 1;
        if (skip_record(rel)) continue;
        if ((st = dtap_zipw_begin(z, rel, ze->size, err)) || (st = copy_entry(t, ze, zsink, z, err)) ||
            (st = dtap_zipw_end(z, err)))
            goto done;
    }
    if ((st = write_small(z, "version", ver, vn, err))) goto done;
    st = dtap_zipw_finish(z, err);
done:
    dtap_zipw_free(z);
    free(ver);
    emitter_free(&e);
    return st;
}

dta_status dtap_torchzip_write(const dtap_torchzip *t, const dta_model *m, const dta_dtype *new_dtype,
                               int fd, dtap_storage_writer write_data, void *ctx, dta_error *err)
{
    return write_zip(t, NULL, m, new_dtype, fd, write_data, ctx, err);
}

dta_status dtap_torchzip_write_once(dtap_torchzip *t, const dta_model *m, const dta_dtype *new_dtype,
                                    int fd, dtap_storage_writer write_data, void *ctx,
                                    dta_error *err)
{
    return write_zip(t, t ? &t->pk : NULL, m, new_dtype, fd, write_data, ctx, err);
}
