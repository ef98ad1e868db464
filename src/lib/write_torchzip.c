/* Torch zip checkpoint writer: re-serialises data.pkl with retyped storages and streams
 * a new archive.
 *
 * Records, in this order: <prefix>/data.pkl, <prefix>/byteorder ("little"),
 * <prefix>/data/<key> (first-appearance order in the new pickle), the input's other
 * records, <prefix>/version; written with torch's own zip layout by zip_write.c.
 *
 * data.pkl (docs/formats.md 2.6, 2.9): PROTO 2, objects, STOP, with only the opcodes torch's
 * weights_only unpickler accepts unless the input graph holds objects that need more
 * (NEWOBJ_EX, EXTn, LONG4, the POP of a recursive tuple). Every object except ints,
 * floats, bools and None is memoised on first emission (BINPUT) and BINGET'd after, so
 * objects shared in the input graph stay shared; containers are memoised before their
 * items, which makes self-references work. A tensor whose storage is retyped is written
 * with a new storage class (typed, numel in elements) or UntypedStorage (numel in bytes)
 * plus _rebuild_tensor_v3 and a dtype argument; nothing shared (a memoised FloatStorage
 * global, the rebuild function global) is modified, new globals are emitted instead. */
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
#include "pickle_opcodes.h"
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

/* ==== pickle emitter ================================================================ */

typedef struct syn_block {
    struct syn_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} syn_block;

typedef struct {
    const char *mod, *name;
    dtap_pnode *node;
} iglobal;

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
    /* output */
    unsigned char *o;
    size_t on, ocap;
    /* memo: node pointer -> index */
    const dtap_pnode **mk;
    uint32_t *mv;
    size_t mcap, mn;
    uint32_t next_memo;
    /* synthetic nodes */
    syn_block *arena;
    iglobal *globals;
    size_t nglobals, capglobals;
    /* key -> model storage (this file's storages) */
    size_t *kmap;          /* storage index per slot, SIZE_MAX empty */
    size_t kcap;
    /* output records, first-appearance order, with a key set */
    outrec *recs;
    size_t nrecs, caprecs;
    size_t *rset;          /* rec index + 1 per slot, 0 empty */
    size_t rcap;
    char *keys;            /* record keys copied when the input graph is released */
    unsigned depth;
    uint64_t unsafe_ops;
    dta_error *err;
} emitter;

/* ---- small utilities ---- */

static void *syn_alloc(emitter *e, size_t size)
{
    size = (size + 15u) & ~(size_t)15u;
    syn_block *b = e->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 64 * 1024 ? size : 64 * 1024;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = e->arena;
        b->used = 0;
        b->cap = cap;
        e->arena = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

static dta_status nomem(emitter *e) { return dta_error_set(e->err, DTA_E_NOMEM, ENOMEM, "out of memory"); }

/* A synthetic node (op 0: never produced by the VM). */
static dtap_pnode *syn_node(emitter *e, dtap_pkind kind)
{
    dtap_pnode *n = syn_alloc(e, sizeof *n);
    if (n) n->kind = kind;
    return n;
}

static dtap_pnode *syn_tuple(emitter *e, size_t cap)
{
    dtap_pnode *n = syn_node(e, DTAP_PK_TUPLE);
    if (!n) return NULL;
    n->seq.v = syn_alloc(e, (cap ? cap : 1) * sizeof *n->seq.v);
    if (!n->seq.v) return NULL;
    n->seq.cap = cap;
    return n;
}

static void tpush(dtap_pnode *t, const dtap_pnode *x)
{
    if (t->seq.n < t->seq.cap) t->seq.v[t->seq.n++] = (dtap_pnode *)x;
}

static dtap_pnode *syn_global(emitter *e, const char *mod, const char *name)
{
    for (size_t i = 0; i < e->nglobals; i++)
        if (!strcmp(e->globals[i].mod, mod) && !strcmp(e->globals[i].name, name)) return e->globals[i].node;
    if (e->nglobals == e->capglobals) {
        size_t nc = e->capglobals ? e->capglobals * 2 : 16;
        iglobal *ng = realloc(e->globals, nc * sizeof *ng);
        if (!ng) return NULL;
        e->globals = ng;
        e->capglobals = nc;
    }
    dtap_pnode *g = syn_node(e, DTAP_PK_GLOBAL);
    if (!g) return NULL;
    g->s = (char *)mod; /* static strings */
    g->len = strlen(mod);
    g->name = (char *)name;
    g->allowed = true;
    e->globals[e->nglobals++] = (iglobal){mod, name, g};
    return g;
}

static dta_status out(emitter *e, const void *p, size_t n)
{
    if (n > DTA_MAX_WRITE_PICKLE - e->on)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl would exceed the cap of %llu bytes",
                             (unsigned long long)DTA_MAX_WRITE_PICKLE);
    if (e->on + n > e->ocap) {
        size_t nc = e->ocap ? e->ocap : 4096;
        while (nc < e->on + n) nc *= 2;
        unsigned char *no = realloc(e->o, nc);
        if (!no) return nomem(e);
        e->o = no;
        e->ocap = nc;
    }
    memcpy(e->o + e->on, p, n);
    e->on += n;
    return DTA_OK;
}

static dta_status out1(emitter *e, unsigned char c) { return out(e, &c, 1); }

static dta_status out_u32op(emitter *e, unsigned char op, uint32_t v)
{
    unsigned char b[5] = {op};
    dtap_put_le32(b + 1, v);
    return out(e, b, 5);
}

/* ---- memo ---- */

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)(x & (cap - 1));
}

static bool memo_find(const emitter *e, const dtap_pnode *n, uint32_t *idx)
{
    if (!e->mcap) return false;
    for (size_t h = ptr_hash(n, e->mcap);; h = (h + 1) & (e->mcap - 1)) {
        if (!e->mk[h]) return false;
        if (e->mk[h] == n) {
            *idx = e->mv[h];
            return true;
        }
    }
}

static dta_status memo_put(emitter *e, const dtap_pnode *n)
{
    if (e->next_memo == UINT32_MAX)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: more than %u memoised objects", UINT32_MAX - 1);
    if ((e->mn + 1) * 4 > e->mcap * 3) { /* load at most 3/4: millions of objects */
        size_t nc = e->mcap ? e->mcap * 2 : 1024;
        const dtap_pnode **nk = calloc(nc, sizeof *nk);
        uint32_t *nv = malloc(nc * sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return nomem(e);
        }
        for (size_t i = 0; i < e->mcap; i++)
            if (e->mk[i]) {
                size_t h = ptr_hash(e->mk[i], nc);
                while (nk[h]) h = (h + 1) & (nc - 1);
                nk[h] = e->mk[i];
                nv[h] = e->mv[i];
            }
        free(e->mk);
        free(e->mv);
        e->mk = nk;
        e->mv = nv;
        e->mcap = nc;
    }
    size_t h = ptr_hash(n, e->mcap);
    while (e->mk[h]) h = (h + 1) & (e->mcap - 1);
    e->mk[h] = n;
    uint32_t idx = e->next_memo++;
    e->mv[h] = idx;
    e->mn++;
    if (idx < 256) {
        unsigned char b[2] = {DTAP_OP_BINPUT, (unsigned char)idx};
        return out(e, b, 2);
    }
    return out_u32op(e, DTAP_OP_LONG_BINPUT, idx);
}

static dta_status memo_get(emitter *e, uint32_t idx)
{
    if (idx < 256) {
        unsigned char b[2] = {DTAP_OP_BINGET, (unsigned char)idx};
        return out(e, b, 2);
    }
    return out_u32op(e, DTAP_OP_LONG_BINGET, idx);
}

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

/* ---- emitting ---- */

static dta_status emit(emitter *e, const dtap_pnode *n);

static dta_status emit_int(emitter *e, int64_t v)
{
    unsigned char b[10];
    if (v >= 0 && v < 256) {
        b[0] = DTAP_OP_BININT1;
        b[1] = (unsigned char)v;
        return out(e, b, 2);
    }
    if (v >= 0 && v < 65536) {
        b[0] = DTAP_OP_BININT2;
        dtap_put_le16(b + 1, (uint16_t)v);
        return out(e, b, 3);
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = DTAP_OP_BININT;
        dtap_put_le32(b + 1, (uint32_t)v);
        return out(e, b, 5);
    }
    uint64_t u = (uint64_t)v;
    size_t k = 8;
    b[0] = DTAP_OP_LONG1;
    for (int i = 0; i < 8; i++) b[2 + i] = (unsigned char)(u >> (8 * i));
    while (k > 1 && ((b[1 + k] == 0 && !(b[k] & 0x80)) || (b[1 + k] == 0xff && (b[k] & 0x80)))) k--;
    b[1] = (unsigned char)k;
    return out(e, b, 2 + k);
}

static dta_status emit_unicode(emitter *e, const void *p, size_t n)
{
    if (n > UINT32_MAX) return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: string of %zu bytes", n);
    dta_status st = out_u32op(e, DTAP_OP_BINUNICODE, (uint32_t)n);
    return st ? st : out(e, p, n);
}

static size_t utf8_put(unsigned char *d, uint32_t c)
{
    if (c < 0x80) {
        d[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (unsigned char)(0xC0 | (c >> 6));
        d[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (c >> 12));
        d[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (c >> 18));
    d[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Latin-1 bytes (raw_unicode=false) or a protocol-0 raw-unicode-escape text -> UTF-8. */
static dta_status emit_latin1(emitter *e, const unsigned char *s, size_t n, bool raw_unicode)
{
    if (n > (SIZE_MAX - 1) / 4) return nomem(e);
    unsigned char *d = malloc(n * 4 + 1);
    if (!d) return nomem(e);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (raw_unicode && s[i] == '\\') {
            size_t j = i;
            while (j < n && s[j] == '\\') j++;
            size_t bs = j - i;
            unsigned w = j < n ? (s[j] == 'u' ? 4u : s[j] == 'U' ? 8u : 0u) : 0u;
            if (bs % 2 == 1 && w && n - j - 1 >= w) {
                uint32_t c = 0;
                bool ok = true;
                for (unsigned k = 0; k < w; k++) {
                    int h = hexval(s[j + 1 + k]);
                    if (h < 0) ok = false;
                    else c = (c << 4) | (uint32_t)h;
                }
                if (ok && c <= 0x10FFFF) {
                    for (size_t k = 0; k + 1 < bs; k++) d[o++] = '\\';
                    o += utf8_put(d + o, c);
                    i = j + 1 + w;
                    continue;
                }
                free(d);
                return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: bad \\u escape in a protocol-0 string");
            }
            for (size_t k = 0; k < bs; k++) d[o++] = '\\';
            i = j;
            continue;
        }
        o += utf8_put(d + o, s[i]);
        i++;
    }
    dta_status st = emit_unicode(e, d, o);
    free(d);
    return st;
}

/* bytes value: _codecs.encode(latin1 text, 'latin1'), not memoised */
static dta_status emit_bytes_value(emitter *e, const dtap_pnode *n)
{
    const dtap_pnode *g = syn_global(e, "_codecs", "encode");
    if (!g) return nomem(e);
    dta_status st;
    if ((st = emit(e, g)) || (st = emit_latin1(e, (const unsigned char *)n->s, n->len, false)) ||
        (st = emit_unicode(e, "latin1", 6)) || (st = out1(e, DTAP_OP_TUPLE2)))
        return st;
    return out1(e, DTAP_OP_REDUCE);
}

static dta_status emit_global(emitter *e, const dtap_pnode *g)
{
    const char *m = g->s, *nm = g->name;
    if (strchr(m, '\n') || strchr(nm, '\n') || !*m || !*nm)
        return dta_error_set(e->err, DTA_E_UNSUPPORTED, 0, "data.pkl: global '%.64s.%.64s' cannot be written as GLOBAL",
                             m, nm);
    dta_status st;
    if ((st = out1(e, DTAP_OP_GLOBAL)) || (st = out(e, m, strlen(m))) || (st = out1(e, '\n')) || (st = out(e, nm, strlen(nm))))
        return st;
    return out1(e, '\n');
}

/* items as APPEND / MARK ... APPENDS batches of 1000 */
static dta_status emit_appends(emitter *e, const dtap_pvec *v)
{
    dta_status st;
    if (v->n == 1) return (st = emit(e, v->v[0])) ? st : out1(e, DTAP_OP_APPEND);
    for (size_t i = 0; i < v->n; i += 1000) {
        size_t end = v->n - i > 1000 ? i + 1000 : v->n;
        if ((st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t k = i; k < end; k++)
            if ((st = emit(e, v->v[k]))) return st;
        if ((st = out1(e, DTAP_OP_APPENDS))) return st;
    }
    return DTA_OK;
}

static dta_status emit_setitems(emitter *e, const dtap_pvec *v)
{
    dta_status st;
    size_t pairs = v->n / 2;
    if (pairs == 1) {
        if ((st = emit(e, v->v[0])) || (st = emit(e, v->v[1]))) return st;
        return out1(e, DTAP_OP_SETITEM);
    }
    for (size_t i = 0; i < pairs; i += 1000) {
        size_t end = pairs - i > 1000 ? i + 1000 : pairs;
        if ((st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t k = i; k < end; k++)
            if ((st = emit(e, v->v[2 * k])) || (st = emit(e, v->v[2 * k + 1]))) return st;
        if ((st = out1(e, DTAP_OP_SETITEMS))) return st;
    }
    return DTA_OK;
}

/* What was applied to an object after it was made: APPEND(S), SETITEM(S), BUILD. */
static dta_status emit_extras(emitter *e, const dtap_pnode *n)
{
    dta_status st;
    bool own_seq = n->kind == DTAP_PK_TUPLE || n->kind == DTAP_PK_LIST || n->kind == DTAP_PK_SET;
    if (!own_seq && n->seq.n && (st = emit_appends(e, &n->seq))) return st;
    if (n->kind != DTAP_PK_DICT && n->kv.n >= 2 && (st = emit_setitems(e, &n->kv))) return st;
    for (size_t i = 0; i < n->states.n; i++)
        if ((st = emit(e, n->states.v[i])) || (st = out1(e, DTAP_OP_BUILD))) return st;
    return DTA_OK;
}

static bool has_extras(const dtap_pnode *n)
{
    bool own_seq = n->kind == DTAP_PK_TUPLE || n->kind == DTAP_PK_LIST || n->kind == DTAP_PK_SET;
    return (!own_seq && n->seq.n) || (n->kind != DTAP_PK_DICT && n->kv.n >= 2) || n->states.n;
}

/* After the parts of an object made from them (tuple, call) were emitted: if emitting
 * them memoised the object itself (a recursive structure), drop the parts and fetch it. */
static dta_status finish_made(emitter *e, const dtap_pnode *n, unsigned char pop, size_t npops, bool *was)
{
    uint32_t idx;
    *was = memo_find(e, n, &idx);
    if (!*was) return DTA_OK;
    e->unsafe_ops++;
    dta_status st = DTA_OK;
    for (size_t i = 0; i < npops && !st; i++) st = out1(e, pop);
    return st ? st : memo_get(e, idx);
}

static dta_status emit_node(emitter *e, const dtap_pnode *n)
{
    dta_status st;
    bool was;
    unsigned char b[9];
    switch (n->kind) {
    case DTAP_PK_NONE:
        if ((st = out1(e, DTAP_OP_NONE))) return st;
        break;
    case DTAP_PK_BOOL:
        if ((st = out1(e, n->i ? DTAP_OP_NEWTRUE : DTAP_OP_NEWFALSE))) return st;
        break;
    case DTAP_PK_INT:
        if (!n->big) {
            if ((st = emit_int(e, n->i))) return st;
        } else if (n->len < 256) {
            b[0] = DTAP_OP_LONG1;
            b[1] = (unsigned char)n->len;
            if ((st = out(e, b, 2)) || (st = out(e, n->s, n->len))) return st;
        } else {
            e->unsafe_ops++; /* LONG4 */
            if (n->len > INT32_MAX) return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: integer too long");
            if ((st = out_u32op(e, DTAP_OP_LONG4, (uint32_t)n->len)) || (st = out(e, n->s, n->len))) return st;
        }
        break;
    case DTAP_PK_FLOAT: {
        uint64_t u;
        memcpy(&u, &n->f, 8);
        b[0] = DTAP_OP_BINFLOAT;
        for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(u >> (56 - 8 * i));
        if ((st = out(e, b, 9))) return st;
        break;
    }
    case DTAP_PK_STR:
        if (n->op == DTAP_OP_UNICODE) st = emit_latin1(e, (const unsigned char *)n->s, n->len, true);
        else st = emit_unicode(e, n->s, n->len);
        if (st || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_BYTES:
        if (n->op == DTAP_OP_BYTEARRAY8) { /* bytearray */
            const dtap_pnode *g = syn_global(e, "builtins", "bytearray");
            if (!g) return nomem(e);
            if ((st = emit(e, g)) || (st = emit_bytes_value(e, n)) || (st = out1(e, DTAP_OP_TUPLE1)) || (st = out1(e, DTAP_OP_REDUCE)))
                return st;
        } else if ((st = emit_bytes_value(e, n))) {
            return st;
        }
        if ((st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_GLOBAL:
        if ((st = emit_global(e, n)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_TUPLE: {
        size_t k = n->seq.n;
        if (k == 0) {
            if ((st = out1(e, DTAP_OP_EMPTY_TUPLE))) return st;
            break;
        }
        if (k > 3 && (st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t i = 0; i < k; i++)
            if ((st = emit(e, n->seq.v[i]))) return st;
        if ((st = k > 3 ? finish_made(e, n, DTAP_OP_POP_MARK, 1, &was) : finish_made(e, n, DTAP_OP_POP, k, &was)))
            return st;
        if (was) return DTA_OK;
        if ((st = out1(e, k > 3 ? DTAP_OP_TUPLE : (unsigned char)(DTAP_OP_TUPLE1 - 1 + k))) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_LIST:
        if ((st = out1(e, DTAP_OP_EMPTY_LIST)) || (st = memo_put(e, n))) return st;
        if (n->seq.n && (st = emit_appends(e, &n->seq))) return st;
        return emit_extras(e, n);
    case DTAP_PK_DICT:
        if ((st = out1(e, DTAP_OP_EMPTY_DICT)) || (st = memo_put(e, n))) return st;
        if (n->kv.n >= 2 && (st = emit_setitems(e, &n->kv))) return st;
        return emit_extras(e, n);
    case DTAP_PK_SET: {
        const dtap_pnode *g = syn_global(e, "builtins", n->frozen ? "frozenset" : "set");
        if (!g) return nomem(e);
        if ((st = emit(e, g)) || (st = out1(e, DTAP_OP_EMPTY_LIST))) return st;
        if (n->seq.n && (st = emit_appends(e, &n->seq))) return st;
        if ((st = out1(e, DTAP_OP_TUPLE1)) || (st = finish_made(e, n, DTAP_OP_POP, 2, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, DTAP_OP_REDUCE)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_REDUCE:
    case DTAP_PK_NEWOBJ: {
        const dtap_pnode *fn = n->fn, *args = n->args;
        bool done = false;
        if (dtap_pnode_is_global(fn, "torch._tensor", "_rebuild_from_type_v2") && args &&
            args->kind == DTAP_PK_TUPLE && args->seq.n >= 3) {
            const dtap_pnode *f2, *a2;
            if ((st = rewrite_tensor(e, args->seq.v[0], args->seq.v[2], &f2, &a2, &done))) return st;
            if (done) {
                dtap_pnode *nb = syn_tuple(e, args->seq.n);
                if (!nb) return nomem(e);
                for (size_t i = 0; i < args->seq.n; i++)
                    tpush(nb, i == 0 ? f2 : i == 2 ? a2 : args->seq.v[i]);
                args = nb;
            }
        } else if ((st = rewrite_tensor(e, fn, args, &fn, &args, &done))) {
            return st;
        }
        if (!fn || !args) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: call without a callable");
        if ((st = emit(e, fn)) || (st = emit(e, args))) return st;
        if (n->kind == DTAP_PK_NEWOBJ && n->kwargs) {
            e->unsafe_ops++; /* NEWOBJ_EX */
            if ((st = emit(e, n->kwargs))) return st;
            if ((st = finish_made(e, n, DTAP_OP_POP, 3, &was))) return st;
            if (was) return DTA_OK;
            if ((st = out1(e, DTAP_OP_NEWOBJ_EX))) return st;
        } else {
            if ((st = finish_made(e, n, DTAP_OP_POP, 2, &was))) return st;
            if (was) return DTA_OK;
            if ((st = out1(e, n->kind == DTAP_PK_NEWOBJ ? DTAP_OP_NEWOBJ : DTAP_OP_REDUCE))) return st;
        }
        if ((st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_PERSID: {
        size_t s = persid_storage(e, n);
        if (n->op != 0 && retyped(e, s))
            return dta_error_set(e->err, DTA_E_UNSUPPORTED, 0,
                                 "storage '%s' is used by an object that is not a tensor rebuild; it cannot be retyped",
                                 e->m->storages[s].key);
        if (!n->args) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: persistent id without a value");
        if ((st = note_pid(e, n->args)) || (st = emit(e, n->args))) return st;
        if ((st = finish_made(e, n, DTAP_OP_POP, 1, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, DTAP_OP_BINPERSID)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_OPAQUE:
        e->unsafe_ops++;
        if (n->i < 0) {
            st = out1(e, DTAP_OP_NEXT_BUFFER);
        } else if (n->i < 256) {
            b[0] = DTAP_OP_EXT1;
            b[1] = (unsigned char)n->i;
            st = out(e, b, 2);
        } else if (n->i < 65536) {
            b[0] = DTAP_OP_EXT2;
            dtap_put_le16(b + 1, (uint16_t)n->i);
            st = out(e, b, 3);
        } else {
            st = out_u32op(e, DTAP_OP_EXT4, (uint32_t)n->i);
        }
        if (st || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    default:
        return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: unknown object kind %d", (int)n->kind);
    }
    /* scalars and the empty tuple: memoised only when something was applied to them */
    if (has_extras(n)) {
        if ((st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    return DTA_OK;
}

static dta_status emit(emitter *e, const dtap_pnode *n)
{
    if (!n) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: missing object");
    uint32_t idx;
    if (memo_find(e, n, &idx)) return memo_get(e, idx);
    if (e->depth >= DTA_MAX_WRITE_DEPTH)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: object nesting exceeds the cap of %u",
                             DTA_MAX_WRITE_DEPTH);
    e->depth++;
    dta_status st = emit_node(e, n);
    e->depth--;
    return st;
}

/* What only emitting needs: the memo, the synthetic nodes, the key map. */
static void emitter_free_emitting(emitter *e)
{
    free(e->mk);
    free(e->mv);
    e->mk = NULL;
    e->mv = NULL;
    e->mcap = e->mn = 0;
    while (e->arena) {
        syn_block *n = e->arena->next;
        free(e->arena);
        e->arena = n;
    }
    free(e->globals);
    e->globals = NULL;
    e->nglobals = e->capglobals = 0;
    free(e->kmap);
    e->kmap = NULL;
    e->kcap = 0;
}

static void emitter_free(emitter *e)
{
    emitter_free_emitting(e);
    free(e->o);
    free(e->recs);
    free(e->rset);
    free(e->keys);
}

/* Once the new pickle is made, the input's graph (and what emitting needed) goes before
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
    emitter_free_emitting(e);
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
    static const unsigned char head[2] = {0x80, 0x02};
    if ((st = kmap_build(&e)) || (st = out(&e, head, 2)) || (st = emit(&e, dtap_pickle_root(t->pk))) ||
        (st = out1(&e, '.')))
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
