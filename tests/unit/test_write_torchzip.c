/* Unit tests for the torch zip writer (src/lib/write_torchzip.c): round trips of every
 * torch fixture with and without retyping, the zip layout (alignment, CRC, zip64
 * fields), the opcodes and sharing of the re-emitted pickle, memo-shared storage classes
 * with a partial retype, hand-made pickles with unusual objects, and refusals. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dtaudit/model.h"
#include "format.h"
#include "model_build.h"
#include "pickle.h"
#include "write_torchzip.h"

/* ---- helpers ----------------------------------------------------------------------- */

static void fx_path(char *buf, size_t n, const char *name)
{
    const char *src = getenv("srcdir");
    snprintf(buf, n, "%s/tests/fixtures/torch/%s", src ? src : ".", name);
}

typedef struct {
    char path[64];
    int fd;
} tmpf;

static void tmp_open(tmpf *t)
{
    strcpy(t->path, "/tmp/dta-wtz-XXXXXX");
    t->fd = mkstemp(t->path);
    cr_assert(t->fd >= 0);
}

static void tmp_close(tmpf *t)
{
    if (t->fd >= 0) close(t->fd);
    unlink(t->path);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint64_t le64(const unsigned char *p) { return le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* Walks the archive the writer produced and checks torch's layout; returns data.pkl. */
typedef struct {
    size_t n, zip64;
    const unsigned char *pkl;
    size_t pkl_len;
    char names[64][128];
} zipinfo;

static void check_zip(const unsigned char *b, size_t n, zipinfo *zi)
{
    memset(zi, 0, sizeof *zi);
    cr_assert(n >= 22 + 20 + 56);
    const unsigned char *eocd = b + n - 22;
    cr_assert_eq(le32(eocd), 0x06054B50u, "EOCD last, no comment");
    const unsigned char *loc = eocd - 20;
    cr_assert_eq(le32(loc), 0x07064B50u, "zip64 locator always written");
    const unsigned char *z64 = b + le64(loc + 8);
    cr_assert_eq(le32(z64), 0x06064B50u);
    uint64_t count = le64(z64 + 32), cd_size = le64(z64 + 40), cd = le64(z64 + 48);
    cr_assert_eq(cd + cd_size, (uint64_t)(z64 - b));
    cr_assert_eq(le16(eocd + 10), count > 0xFFFF ? 0xFFFF : count);
    const unsigned char *p = b + cd;
    uint64_t expect_local = 0;
    for (uint64_t i = 0; i < count; i++) {
        cr_assert_eq(le32(p), 0x02014B50u);
        uint16_t flags = le16(p + 8), nl = le16(p + 28), xl = le16(p + 30);
        uint64_t comp = le32(p + 20), unc = le32(p + 24), lo = le32(p + 42);
        cr_assert_eq(le16(p + 10), 0, "STORED");
        const unsigned char *x = p + 46 + nl;
        bool z = false;
        if (xl) {
            cr_assert_eq(le16(x), 1, "only a zip64 extra in the central directory");
            size_t q = 4;
            if (unc == 0xFFFFFFFFu) unc = le64(x + q), q += 8;
            if (comp == 0xFFFFFFFFu) comp = le64(x + q), q += 8;
            if (lo == 0xFFFFFFFFu) lo = le64(x + q), q += 8;
            cr_assert_eq(q, (size_t)xl, "zip64 fields only for saturated values");
            z = true;
            zi->zip64++;
        }
        cr_assert_eq(comp, unc);
        cr_assert_eq(lo, expect_local, "records are contiguous");
        cr_assert_eq(flags, unc ? 0x0808 : 0x0800);
        const unsigned char *lh = b + lo;
        cr_assert_eq(le32(lh), 0x04034B50u);
        cr_assert_eq(le16(lh + 6), flags);
        cr_assert_eq(le16(lh + 26), nl);
        cr_assert(!memcmp(lh + 30, p + 46, nl), "local and central names agree");
        uint64_t data = lo + 30 + nl + le16(lh + 28);
        cr_assert_eq(data % 64, 0, "record %llu data at %llu is not 64-byte aligned", (unsigned long long)i,
                     (unsigned long long)data);
        const unsigned char *fb = lh + 30 + nl + (z ? 4 + le16(lh + 30 + nl + 2) : 0);
        cr_assert_eq(le16(fb), 0x4246, "FB padding extra");
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b + data, (uInt)unc);
        cr_assert_eq(crc, le32(p + 16), "CRC of record %llu", (unsigned long long)i);
        expect_local = data + unc;
        if (unc) {
            const unsigned char *dd = b + data + unc;
            cr_assert_eq(le32(dd), 0x08074B50u);
            cr_assert_eq(le32(dd + 4), crc);
            expect_local += z ? 24 : 16;
            if (z) cr_assert_eq(le64(dd + 16), unc);
            else cr_assert_eq(le32(dd + 12), unc);
        }
        if (i < 64) {
            size_t k = nl < 127 ? nl : 127;
            memcpy(zi->names[i], p + 46, k);
            zi->names[i][k] = 0;
        }
        if (nl >= 9 && !memcmp(p + 46 + nl - 9, "/data.pkl", 9)) {
            zi->pkl = b + data;
            zi->pkl_len = (size_t)unc;
        }
        p += 46 + nl + xl;
    }
    cr_assert_eq(expect_local, cd, "central directory follows the last record");
    zi->n = (size_t)count;
    cr_assert_not_null(zi->pkl);
}

/* Opcodes of a protocol-2 stream; fails on anything outside torch's weights_only set. */
static void check_opcodes(const unsigned char *p, size_t n)
{
    size_t i = 0;
    cr_assert(n >= 3 && p[0] == 0x80 && p[1] == 2, "PROTO 2 first");
    i = 2;
    while (i < n) {
        unsigned char op = p[i++];
        size_t arg = 0;
        switch (op) {
        case '.': cr_assert_eq(i, n, "STOP ends the stream"); return;
        case 'c': {
            for (int k = 0; k < 2; k++) {
                const unsigned char *nl = memchr(p + i, '\n', n - i);
                cr_assert(nl);
                i = (size_t)(nl - p) + 1;
            }
            continue;
        }
        case 'X': cr_assert(i + 4 <= n); arg = 4 + le32(p + i); break;
        case 'J': case 'r': case 'j': arg = 4; break;
        case 'K': case 'q': case 'h': arg = 1; break;
        case 'M': arg = 2; break;
        case 'G': arg = 8; break;
        case 0x8a: cr_assert(i < n); arg = 1 + p[i]; break;
        case 'R': case 'b': case 'a': case 'e': case 's': case 'u': case '(': case 't': case 0x85: case 0x86:
        case 0x87: case 'N': case 0x88: case 0x89: case ')': case ']': case '}': case 'Q': case 0x81:
            break;
        default:
            cr_assert_fail("opcode 0x%02x at %zu is not one weights_only accepts", op, i - 1);
        }
        i += arg;
        cr_assert(i <= n);
    }
    cr_assert_fail("no STOP");
}

/* Graph isomorphism that respects sharing: a node of a maps to exactly one node of b. */
typedef struct {
    const dtap_pnode **a, **b;
    size_t n, cap;
} nodemap;

static bool map_pair(nodemap *m, const dtap_pnode *a, const dtap_pnode *b, bool *seen)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->a[i] == a) {
            *seen = true;
            return m->b[i] == b;
        }
        if (m->b[i] == b) return false;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->a = realloc(m->a, m->cap * sizeof *m->a);
        m->b = realloc(m->b, m->cap * sizeof *m->b);
    }
    m->a[m->n] = a;
    m->b[m->n++] = b;
    *seen = false;
    return true;
}

static bool vec_eq(nodemap *m, const dtap_pvec *a, const dtap_pvec *b);

static bool graph_eq(nodemap *m, const dtap_pnode *a, const dtap_pnode *b)
{
    if (!a || !b) return a == b;
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case DTAP_PK_NONE: return true;
    case DTAP_PK_BOOL: return a->i == b->i;
    case DTAP_PK_FLOAT: return !memcmp(&a->f, &b->f, sizeof a->f);
    case DTAP_PK_INT:
        if (a->big != b->big) return false;
        return a->big ? a->len == b->len && !memcmp(a->s, b->s, a->len) : a->i == b->i;
    default: break;
    }
    bool seen;
    if (!map_pair(m, a, b, &seen)) return false;
    if (seen) return true;
    switch (a->kind) {
    case DTAP_PK_STR: case DTAP_PK_BYTES:
        if (a->len != b->len || memcmp(a->s, b->s, a->len)) return false;
        break;
    case DTAP_PK_GLOBAL:
        if (strcmp(a->s, b->s) || strcmp(a->name, b->name)) return false;
        break;
    case DTAP_PK_REDUCE: case DTAP_PK_NEWOBJ: case DTAP_PK_PERSID:
        if (!graph_eq(m, a->fn, b->fn) || !graph_eq(m, a->args, b->args) || !graph_eq(m, a->kwargs, b->kwargs))
            return false;
        break;
    case DTAP_PK_SET:
        if (a->frozen != b->frozen) return false;
        break;
    case DTAP_PK_OPAQUE:
        if (a->i != b->i) return false;
        break;
    default: break;
    }
    return vec_eq(m, &a->seq, &b->seq) && vec_eq(m, &a->kv, &b->kv) && vec_eq(m, &a->states, &b->states);
}

static bool vec_eq(nodemap *m, const dtap_pvec *a, const dtap_pvec *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (!graph_eq(m, a->v[i], b->v[i])) return false;
    return true;
}

/* ---- writing ------------------------------------------------------------------------ */

typedef struct {
    const dtap_torchzip *t;
    const dta_model *m;
    const dta_dtype *nd;
    unsigned calls;
} wctx;

/* Retyped storage data: a pattern of storage index and byte position. */
static dta_status pattern_writer(void *vctx, size_t s, dtap_zipw *z, dta_error *err)
{
    wctx *c = vctx;
    c->calls++;
    uint64_t n = c->m->storages[s].numel * (dta_dtype_get(c->nd[s])->bits / 8);
    unsigned char buf[256];
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = (unsigned char)(s * 31 + off + i);
        dta_status st = dtap_zipw_write(z, buf, k, err);
        if (st) return st;
        off += k;
    }
    return DTA_OK;
}

typedef struct {
    unsigned char *p;
    size_t n, cap;
} bytes;

static dta_status collect(void *ctx, const void *p, size_t n, dta_error *err)
{
    (void)err;
    bytes *b = ctx;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return DTA_OK;
}

typedef struct {
    dtap_src src;
    dta_model *m;
    dtap_torchzip *t;
} loaded;

static dta_status load_path(const char *path, loaded *l, dta_error *err)
{
    memset(l, 0, sizeof *l);
    dta_status st = dtap_src_open_file(&l->src, path, err);
    if (st) return st;
    l->m = dtap_model_new(path, err);
    cr_assert_not_null(l->m);
    st = dtap_torchzip_load(&l->src, l->m, &l->t, err);
    if (!st) dtap_model_finish(l->m);
    return st;
}

static void unload(loaded *l)
{
    dtap_torchzip_free(l->t);
    dta_model_free(l->m);
    dtap_src_close(&l->src);
}

/* A storage's bytes through the reader. */
static bytes storage_bytes(const loaded *l, size_t s)
{
    bytes b = {0};
    dta_error err = {0};
    cr_assert_eq(dtap_torchzip_read_storage(l->t, l->m, s, collect, &b, &err), DTA_OK, "%s", err.msg);
    return b;
}

/* Writes in with new dtypes chosen by pick(), re-reads, and compares everything. */
typedef dta_dtype (*picker)(const dta_model *m, size_t s, void *arg);

static void roundtrip(const char *path, picker pick, void *arg, uint64_t zip64_thr, bool graph_same)
{
    loaded in, outl;
    dta_error err = {0};
    cr_assert_eq(load_path(path, &in, &err), DTA_OK, "%s: %s", path, err.msg);
    dta_dtype *nd = calloc(in.m->nstorages + 1, sizeof *nd);
    size_t nretyped = 0;
    for (size_t i = 0; i < in.m->nstorages; i++) {
        nd[i] = pick ? pick(in.m, i, arg) : in.m->storages[i].dtype;
        nretyped += nd[i] != in.m->storages[i].dtype;
    }
    if (zip64_thr) dtap_torchzip_set_zip64_threshold(in.t, zip64_thr);
    tmpf tf;
    tmp_open(&tf);
    wctx c = {in.t, in.m, nd, 0};
    dta_status st = dtap_torchzip_write(in.t, in.m, nd, tf.fd, pattern_writer, &c, &err);
    cr_assert_eq(st, DTA_OK, "%s: %s", path, err.msg);
    cr_assert_eq(c.calls, nretyped, "the data writer runs once per retyped storage");

    size_t zn;
    unsigned char *zb = slurp(tf.path, &zn);
    zipinfo zi;
    check_zip(zb, zn, &zi);
    if (zip64_thr == 1) cr_assert_eq(zi.zip64, zi.n, "every record has zip64 fields");
    else if (!zip64_thr) cr_assert_eq(zi.zip64, 0);
    const char *pre = dtap_torchzip_prefix(in.t);
    char want[160];
    snprintf(want, sizeof want, "%s/data.pkl", pre);
    cr_assert_str_eq(zi.names[0], want);
    snprintf(want, sizeof want, "%s/byteorder", pre);
    cr_assert_str_eq(zi.names[1], want);
    snprintf(want, sizeof want, "%s/version", pre);
    cr_assert_str_eq(zi.names[zi.n - 1], want);
    bool unsafe_in = dtap_pickle_unsafe_count(dtap_torchzip_pickle(in.t)) > 0;
    if (!unsafe_in) check_opcodes(zi.pkl, zi.pkl_len);

    cr_assert_eq(load_path(tf.path, &outl, &err), DTA_OK, "re-read %s: %s", path, err.msg);
    const dta_model *a = in.m, *b = outl.m;
    cr_assert_eq(dtap_pickle_unsafe_count(dtap_torchzip_pickle(outl.t)),
                 dtap_pickle_unsafe_count(dtap_torchzip_pickle(in.t)));
    cr_assert_eq(a->ntensors, b->ntensors, "%s", path);
    cr_assert_eq(a->nstorages, b->nstorages, "%s", path);
    for (size_t i = 0; i < a->ntensors; i++) {
        const dta_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert_str_eq(x->root, y->root);
        cr_assert_eq(y->dtype, x->storage == SIZE_MAX ? x->dtype : nd[x->storage], "%s: %s", path, x->name);
        cr_assert_eq(x->rank, y->rank);
        cr_assert_eq(x->meta, y->meta);
        cr_assert_eq(x->shared, y->shared, "%s: %s sharing", path, x->name);
        cr_assert_eq(x->storage_offset, y->storage_offset);
        for (int k = 0; k < x->rank; k++) {
            cr_assert_eq(x->shape[k], y->shape[k]);
            if (x->stride && y->stride) cr_assert_eq(x->stride[k], y->stride[k]);
        }
        cr_assert_eq(x->storage == SIZE_MAX, y->storage == SIZE_MAX);
        if (x->storage == SIZE_MAX) continue;
        /* sharing: same storage pairs on both sides (keys are kept) */
        const dta_storage *sx = &a->storages[x->storage], *sy = &b->storages[y->storage];
        cr_assert_str_eq(sx->key, sy->key);
        cr_assert_eq(sx->numel, sy->numel);
        cr_assert_eq(sy->dtype, nd[x->storage]);
        cr_assert_eq(sy->offset % 64, 0);
    }
    /* data: unchanged storages byte for byte, retyped ones hold what the writer gave */
    for (size_t i = 0; i < a->nstorages; i++) {
        size_t j = SIZE_MAX;
        for (size_t k = 0; k < b->nstorages; k++)
            if (!strcmp(b->storages[k].key, a->storages[i].key)) j = k;
        cr_assert_neq(j, SIZE_MAX);
        bytes x = storage_bytes(&in, i), y = storage_bytes(&outl, j);
        if (nd[i] == a->storages[i].dtype) {
            cr_assert_eq(x.n, y.n);
            cr_assert(!x.n || !memcmp(x.p, y.p, x.n), "%s: storage %s copied", path, a->storages[i].key);
        } else {
            cr_assert_eq(y.n, a->storages[i].numel * (dta_dtype_get(nd[i])->bits / 8));
            for (size_t k = 0; k < y.n; k++) cr_assert_eq(y.p[k], (unsigned char)(i * 31 + k));
        }
        free(x.p);
        free(y.p);
    }
    if (graph_same) {
        nodemap nm = {0};
        cr_assert(graph_eq(&nm, dtap_pickle_root(dtap_torchzip_pickle(in.t)), dtap_pickle_root(dtap_torchzip_pickle(outl.t))),
                  "%s: re-read object graph differs (values or sharing)", path);
        free(nm.a);
        free(nm.b);
    }
    unload(&outl);
    free(zb);
    tmp_close(&tf);
    free(nd);
    unload(&in);
}

static dta_dtype pick_floats(const dta_model *m, size_t s, void *arg)
{
    dta_dtype d = m->storages[s].dtype;
    return dta_dtype_is_float(d) ? *(const dta_dtype *)arg : d;
}

static bool refused_fixture(const char *name)
{
    return !strcmp(name, "byteorder_big.pt") || !strcmp(name, "script.pt") || !strcmp(name, "legacy.pt") ||
           !strcmp(name, "legacy_views.pt");
}

static void each_fixture(void (*fn)(const char *path, const char *name))
{
    char dir[1024];
    fx_path(dir, sizeof dir, "");
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (!((l > 3 && !strcmp(de->d_name + l - 3, ".pt")) || (l > 5 && !strcmp(de->d_name + l - 5, ".ckpt"))))
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s%s", dir, de->d_name);
        fn(path, de->d_name);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 15);
}

/* ---- tests -------------------------------------------------------------------------- */

static void identity_one(const char *path, const char *name)
{
    if (refused_fixture(name)) {
        loaded l;
        dta_error err = {0};
        dta_status st = load_path(path, &l, &err);
        cr_assert_neq(st, DTA_OK, "%s must be refused", name);
        if (strncmp(name, "legacy", 6)) cr_assert_eq(st, DTA_E_UNSUPPORTED, "%s: %s", name, err.msg);
        unload(&l);
        return;
    }
    roundtrip(path, NULL, NULL, 0, true);
}

Test(write_torchzip, identity_roundtrip_every_fixture) { each_fixture(identity_one); }

static dta_dtype g_target;
static void retype_one(const char *path, const char *name)
{
    if (refused_fixture(name)) return;
    roundtrip(path, pick_floats, &g_target, 0, false);
}

Test(write_torchzip, all_floats_to_bf16) { g_target = DTA_BF16; each_fixture(retype_one); }
Test(write_torchzip, all_floats_to_f16) { g_target = DTA_F16; each_fixture(retype_one); }
Test(write_torchzip, all_floats_to_f8_e4m3_v3_switch) { g_target = DTA_F8_E4M3; each_fixture(retype_one); }
Test(write_torchzip, all_floats_to_f32) { g_target = DTA_F32; each_fixture(retype_one); }

static void zip64_one(const char *path, const char *name)
{
    if (refused_fixture(name)) return;
    roundtrip(path, NULL, NULL, 1, true);          /* every size and offset saturated */
    roundtrip(path, pick_floats, &g_target, 700, false); /* only later offsets */
}

Test(write_torchzip, zip64_fields_forced)
{
    g_target = DTA_BF16;
    each_fixture(zip64_one);
}

/* Only the first storage changes: the memo-shared FloatStorage global must not flip the
 * others (docs/formats.md 3.2). */
static dta_dtype pick_first(const dta_model *m, size_t s, void *arg)
{
    (void)arg;
    return s == 0 ? DTA_BF16 : m->storages[s].dtype;
}

Test(write_torchzip, memo_shared_storage_class_partial_retype)
{
    char p[1024];
    fx_path(p, sizeof p, "state_dict.pt");
    /* the input shares one FloatStorage GLOBAL between its four storages */
    loaded l;
    dta_error err = {0};
    cr_assert_eq(load_path(p, &l, &err), DTA_OK);
    const dtap_pickle *pk = dtap_torchzip_pickle(l.t);
    cr_assert_geq(dtap_pickle_persid_count(pk), 2);
    cr_assert_eq(dtap_pnode_item(dtap_pickle_persid(pk, 0)->args, 1), dtap_pnode_item(dtap_pickle_persid(pk, 1)->args, 1),
                 "fixture shares the storage class global");
    unload(&l);
    roundtrip(p, pick_first, NULL, 0, false);
    fx_path(p, sizeof p, "training.pt");
    roundtrip(p, pick_first, NULL, 0, false);
    fx_path(p, sizeof p, "lightning.ckpt");
    roundtrip(p, pick_first, NULL, 0, false);
}

Test(write_torchzip, tied_weights_stay_tied)
{
    char p[1024];
    fx_path(p, sizeof p, "tied.pt");
    g_target = DTA_F8_E4M3;
    roundtrip(p, pick_floats, &g_target, 0, false);
}

/* ---- hand-made archives ------------------------------------------------------------- */

typedef struct {
    const char *rel;
    const void *p;
    size_t n;
} rec;

static void make_zip(tmpf *tf, const char *prefix, const rec *r, size_t n)
{
    tmp_open(tf);
    dtap_zipw *z;
    dta_error err = {0};
    cr_assert_eq(dtap_zipw_open(tf->fd, prefix, &z, &err), DTA_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(dtap_zipw_begin(z, r[i].rel, r[i].n, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(dtap_zipw_write(z, r[i].p, r[i].n, &err), DTA_OK);
        cr_assert_eq(dtap_zipw_end(z, &err), DTA_OK);
    }
    cr_assert_eq(dtap_zipw_finish(z, &err), DTA_OK);
    dtap_zipw_free(z);
}

#define P(s) s, sizeof(s) - 1

/* A protocol-4 pickle with odd objects: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE,
 * BINBYTES, EMPTY_SET + ADDITEMS, a recursive list/tuple pair, an unknown class built with
 * NEWOBJ and BUILD, a big LONG1, BINFLOAT, a v1 _rebuild_tensor, a v2 tensor inside
 * _rebuild_parameter, a v2 tensor with metadata, and two tensors on one storage via a
 * shared FloatStorage global. */
static const char odd_pkl[] =
    "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" /* PROTO 4, FRAME */
    "}\x94(" /* dict, memo 0, MARK */
    "\x8c\x01" "b" "\x94" "C\x03\x00\xff\x41\x94"  /* 'b': b'\x00\xffA' */
    "\x8c\x01" "s" "\x94" "\x8f\x94(K\x01K\x02\x90" /* 's': {1, 2} */
    "\x8c\x01" "r" "\x94" "]\x94"  /* 'r': list L (memo 6) */
    "h\x06\x85\x94" /* tuple (L,) memo 7 */
    "a" /* L.append((L,)) */
    "\x8c\x01" "o" "\x94" "\x8c\x08" "argparse" "\x94\x8c\x09" "Namespace" "\x94\x93\x94)\x81\x94}\x94(\x8c\x02" "lr" "\x94G?\x1a" "6\xe2\xeb\x1c" "C-u" "b"
    "\x8c\x01" "n" "\x94" "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"
    "\x8c\x02" "t1" "\x94"
    "\x8c\x0c" "torch._utils" "\x94\x8c\x0f" "_rebuild_tensor" "\x94\x93\x94"
    "(" "(\x8c\x07" "storage" "\x94\x8c\x05" "torch" "\x94\x8c\x0c" "FloatStorage" "\x94\x93\x94\x8c\x01" "0" "\x94\x8c\x03" "cpu" "\x94K\x06t\x94Q"
    "K\x00K\x02K\x03\x86K\x03K\x01\x86t\x94R\x94"
    "\x8c\x02" "t2" "\x94"
    "\x8c\x0c" "torch._utils" "\x8c\x12" "_rebuild_parameter" "\x93"
    "\x8c\x0c" "torch._utils" "\x8c\x12" "_rebuild_tensor_v2" "\x93\x94"
    "((h\x14h\x17\x8c\x01" "1" "h\x19K\x04tQK\x01K\x03\x85K\x01\x85\x89\x8c\x0b" "collections" "\x8c\x0b" "OrderedDict" "\x93)Rt\x94R"
    "\x88\x8c\x0b" "collections" "\x8c\x0b" "OrderedDict" "\x93)R\x87R"
    "\x8c\x02" "t3" "h\x1e"
    "((h\x14h\x17\x8c\x01" "0" "h\x19K\x06tQK\x03K\x03\x85K\x01\x85\x89\x8c\x0b" "collections" "\x8c\x0b" "OrderedDict" "\x93)R}\x8c\x03" "neg" "\x88st\x94R"
    "u.";

static const unsigned char zeros64[64];

Test(write_torchzip, handmade_protocol4_graph_roundtrips)
{
    rec r[] = {{"data.pkl", P(odd_pkl)}, {"data/0", zeros64, 24}, {"data/1", zeros64, 16},
               {"extra/notes.txt", P("hello")}, {"version", P("3\n")}};
    tmpf in;
    make_zip(&in, "odd.name", r, 5);
    /* the pickle parses and yields the tensors we expect */
    loaded l;
    dta_error err = {0};
    cr_assert_eq(load_path(in.path, &l, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(l.m->ntensors, 3, "t1, t2, t3");
    cr_assert_eq(l.m->nstorages, 2);
    cr_assert_str_eq(dtap_torchzip_prefix(l.t), "odd.name");
    unload(&l);
    roundtrip(in.path, NULL, NULL, 0, false);
    g_target = DTA_BF16;
    roundtrip(in.path, pick_floats, &g_target, 0, false);
    g_target = DTA_F8_E4M3;
    roundtrip(in.path, pick_floats, &g_target, 0, false);

    /* the extra record is copied and the odd objects keep their meaning and sharing */
    tmpf out;
    tmp_open(&out);
    cr_assert_eq(load_path(in.path, &l, &err), DTA_OK);
    dta_dtype nd[2] = {DTA_F8_E4M3, DTA_F32};
    wctx c = {l.t, l.m, nd, 0};
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, pattern_writer, &c, &err), DTA_OK, "%s", err.msg);
    size_t zn;
    unsigned char *zb = slurp(out.path, &zn);
    zipinfo zi;
    check_zip(zb, zn, &zi);
    bool extra = false;
    for (size_t i = 0; i < zi.n; i++) extra |= !strcmp(zi.names[i], "odd.name/extra/notes.txt");
    cr_assert(extra, "other records are copied");
    loaded o;
    cr_assert_eq(load_path(out.path, &o, &err), DTA_OK, "%s", err.msg);
    const dtap_pnode *root = dtap_pickle_root(dtap_torchzip_pickle(o.t));
    cr_assert_eq(root->kind, DTAP_PK_DICT);
    const dtap_pnode *bval = root->kv.v[1], *sval = root->kv.v[3], *rval = root->kv.v[5];
    cr_assert(dtap_pnode_is_global(dtap_pnode_callee(bval), "_codecs", "encode"), "bytes via _codecs.encode");
    cr_assert_eq(dtap_pnode_item(bval->args, 0)->len, 4, "U+0000 U+00FF A as UTF-8");
    cr_assert(!memcmp(dtap_pnode_item(bval->args, 0)->s, "\x00\xc3\xbf" "A", 4));
    cr_assert(dtap_pnode_is_global(dtap_pnode_callee(sval), "builtins", "set"));
    cr_assert_eq(rval->kind, DTAP_PK_LIST);
    cr_assert_eq(rval->seq.v[0]->seq.v[0], rval, "recursive list/tuple kept");
    const dtap_pnode *oval = root->kv.v[7];
    cr_assert_eq(oval->kind, DTAP_PK_NEWOBJ);
    cr_assert_eq(oval->states.n, 1);
    cr_assert(o.m->tensors[0].dtype == DTA_F8_E4M3 && o.m->tensors[2].dtype == DTA_F8_E4M3);
    cr_assert_eq(o.m->tensors[1].dtype, DTA_F32);
    cr_assert_eq(o.m->tensors[2].storage_offset, 3);
    unload(&o);
    unload(&l);
    free(zb);
    tmp_close(&out);
    tmp_close(&in);
}

/* A pid of a retyped storage outside any tensor rebuild: refused, never half-retyped. */
static const char bare_pkl[] =
    "\x80\x02}(X\x01\x00\x00\x00w"
    "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0"
    "X\x03\x00\x00\x00" "cpuK\x02tq\x00QK\x00K\x02\x85K\x01\x85\x89" "ccollections\nOrderedDict\n)RtR"
    "X\x01\x00\x00\x00sh\x00Qu.";

Test(write_torchzip, refuses_bare_storage_retype)
{
    rec r[] = {{"data.pkl", P(bare_pkl)}, {"data/0", zeros64, 8}, {"version", P("3\n")}};
    tmpf in, out;
    make_zip(&in, "archive", r, 3);
    roundtrip(in.path, NULL, NULL, 0, true); /* unchanged: fine */
    loaded l;
    dta_error err = {0};
    cr_assert_eq(load_path(in.path, &l, &err), DTA_OK, "%s", err.msg);
    tmp_open(&out);
    dta_dtype nd[1] = {DTA_BF16};
    wctx c = {l.t, l.m, nd, 0};
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, pattern_writer, &c, &err), DTA_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "not a tensor rebuild"), "%s", err.msg);
    cr_assert_eq(c.calls, 0, "refused before any data");
    unload(&l);
    tmp_close(&out);
    tmp_close(&in);
}

Test(write_torchzip, refusals)
{
    char p[1024];
    loaded l;
    dta_error err = {0};
    fx_path(p, sizeof p, "byteorder_big.pt");
    cr_assert_eq(load_path(p, &l, &err), DTA_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "big-endian"), "%s", err.msg);
    unload(&l);
    fx_path(p, sizeof p, "script.pt");
    cr_assert_eq(load_path(p, &l, &err), DTA_E_UNSUPPORTED);
    unload(&l);
    /* quantized storages and sub-byte targets */
    fx_path(p, sizeof p, "quantized.pt");
    cr_assert_eq(load_path(p, &l, &err), DTA_OK);
    dta_dtype nd[8];
    for (size_t i = 0; i < l.m->nstorages; i++) nd[i] = l.m->storages[i].dtype == DTA_QI8 ? DTA_I8 : l.m->storages[i].dtype;
    tmpf out;
    tmp_open(&out);
    wctx c = {l.t, l.m, nd, 0};
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, pattern_writer, &c, &err), DTA_E_UNSUPPORTED, "%s", err.msg);
    for (size_t i = 0; i < l.m->nstorages; i++) nd[i] = l.m->storages[i].dtype == DTA_F32 ? DTA_F4 : l.m->storages[i].dtype;
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, pattern_writer, &c, &err), DTA_E_UNSUPPORTED);
    for (size_t i = 0; i < l.m->nstorages; i++) nd[i] = l.m->storages[i].dtype == DTA_F32 ? DTA_BF16 : l.m->storages[i].dtype;
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, NULL, NULL, &err), DTA_E_ARG, "a retype needs a writer");
    tmp_close(&out);
    unload(&l);
}

/* A data writer that writes too little or too much is caught. */
static dta_status short_writer(void *vctx, size_t s, dtap_zipw *z, dta_error *err)
{
    (void)vctx;
    (void)s;
    return dtap_zipw_write(z, "ab", 2, err);
}

Test(write_torchzip, data_writer_must_write_exact_sizes)
{
    char p[1024];
    fx_path(p, sizeof p, "tied.pt");
    loaded l;
    dta_error err = {0};
    cr_assert_eq(load_path(p, &l, &err), DTA_OK);
    dta_dtype nd[1] = {DTA_BF16};
    tmpf out;
    tmp_open(&out);
    cr_assert_eq(dtap_torchzip_write(l.t, l.m, nd, out.fd, short_writer, NULL, &err), DTA_E_ARG);
    cr_assert(strstr(err.msg, "got 2 of its 30 bytes"), "%s", err.msg);
    tmp_close(&out);
    unload(&l);
}

Test(write_torchzip, zipw_api_misuse)
{
    tmpf tf;
    tmp_open(&tf);
    dtap_zipw *z;
    dta_error err = {0};
    cr_assert_eq(dtap_zipw_open(tf.fd, "a/b", &z, &err), DTA_E_ARG, "prefix without '/'");
    cr_assert_eq(dtap_zipw_open(tf.fd, "archive", &z, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_write(z, "x", 1, &err), DTA_E_ARG, "no record open");
    cr_assert_eq(dtap_zipw_begin(z, "r", 3, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_begin(z, "s", 3, &err), DTA_E_ARG, "record still open");
    cr_assert_eq(dtap_zipw_write(z, "abcd", 4, &err), DTA_E_ARG, "too many bytes");
    cr_assert_eq(dtap_zipw_write(z, "ab", 2, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_end(z, &err), DTA_E_ARG, "too few bytes");
    cr_assert_eq(dtap_zipw_write(z, "c", 1, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_end(z, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_begin(z, "r", 0, &err), DTA_E_ARG, "duplicate name");
    cr_assert_eq(dtap_zipw_begin(z, "empty", 0, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_end(z, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_finish(z, &err), DTA_OK);
    cr_assert_eq(dtap_zipw_begin(z, "late", 0, &err), DTA_E_ARG, "finished");
    uint64_t size = dtap_zipw_offset(z);
    dtap_zipw_free(z);
    size_t n;
    unsigned char *b = slurp(tf.path, &n);
    cr_assert_eq(n, size);
    /* torch's exact layout: first data at 64, next local header right after the descriptor */
    cr_assert_eq(le16(b + 28), 64 - 30 - 9, "FB pad to 64 for 'archive/r'");
    cr_assert(!memcmp(b + 64, "abc", 3));
    cr_assert_eq(le32(b + 67), 0x08074B50u);
    cr_assert_eq(le32(b + 83), 0x04034B50u, "second record at 64 + 3 + 16");
    cr_assert_eq(le16(b + 83 + 6), 0x0800, "empty record: no descriptor flag");
    free(b);
    tmp_close(&tf);
}

/* The malicious corpus: every file that loads either round-trips with its meaning or is
 * refused with an error; none crashes. */
Test(write_torchzip, malicious_corpus_never_crashes)
{
    const char *src = getenv("srcdir");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/malicious/", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d) cr_skip_test("no malicious corpus");
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof path, "%s%s", dir, de->d_name);
        loaded l;
        dta_error err = {0};
        if (load_path(path, &l, &err) == DTA_OK) {
            dta_dtype *nd = calloc(l.m->nstorages + 1, sizeof *nd);
            for (size_t i = 0; i < l.m->nstorages; i++)
                nd[i] = dta_dtype_is_float(l.m->storages[i].dtype) ? DTA_BF16 : l.m->storages[i].dtype;
            tmpf out;
            tmp_open(&out);
            wctx c = {l.t, l.m, nd, 0};
            dta_status st = dtap_torchzip_write(l.t, l.m, nd, out.fd, pattern_writer, &c, &err);
            if (st == DTA_OK) {
                loaded o;
                cr_assert_eq(load_path(out.path, &o, &err), DTA_OK, "%s: re-read: %s", de->d_name, err.msg);
                cr_assert_eq(dtap_pickle_unsafe_count(dtap_torchzip_pickle(o.t)),
                             dtap_pickle_unsafe_count(dtap_torchzip_pickle(l.t)), "%s: unsafe globals kept", de->d_name);
                unload(&o);
            }
            tmp_close(&out);
            free(nd);
        }
        unload(&l);
    }
    closedir(d);
}
