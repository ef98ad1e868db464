/* Legacy PyTorch stream reader (torch < 1.6, or _use_new_zipfile_serialization=False).
 *
 * Layout (docs/formats.md 2.12), all concatenated, no container:
 *   pickle: MAGIC_NUMBER 0x1950a86a20f9469cfc6c  (80 02 8A 0A 6C FC 9C 46 F9 20 6A A8 50 19 2E)
 *   pickle: protocol version 1001
 *   pickle: sys_info {'protocol_version', 'little_endian', 'type_sizes'}
 *   pickle: the saved object; storages as persistent ids
 *           ('storage', <torch.XStorage>, root_key, location, numel, view_metadata)
 *           with view_metadata None or (view_key, element offset, size)
 *   pickle: list of root keys, sorted as strings
 *   then for each key in that order: i64 LE element count, count * element size bytes.
 * Storage offsets are found by walking the counts in key order (checked arithmetic);
 * the element size of each key comes from its persistent id.
 *
 * The very old tar format (ustar at 257: sys_info, pickle, storages, tensors) is
 * recognised and refused as unsupported. */
#include "format.h"

#include <stdlib.h>
#include <string.h>

#include "model_build.h"
#include "pickle.h"
#include "pickle_opcodes.h"
#include "torch_graph.h"

#define LEGACY_FIRST_READ (4u * 1024u * 1024u) /* pickles are read in growing windows */

static const unsigned char magic_le[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static bool is_tar(const unsigned char *head, size_t n)
{
    return n >= 262 && !memcmp(head + 257, "ustar", 5);
}

int dtap_torchlegacy_bid(const unsigned char *head, size_t n, uint64_t size)
{
    (void)size;
    /* PROTO n, LONG1 10 <magic>: the binary protocols torch's pickle_module writes */
    if (n >= 15 && head[0] == DTAP_OP_PROTO && head[1] >= 2 && head[1] <= 5) {
        size_t i = 2;
        if (head[i] == DTAP_OP_FRAME && n >= 26) i += 9; /* FRAME */
        if (i + 12 <= n && head[i] == DTAP_OP_LONG1 && head[i + 1] == 10 && !memcmp(head + i + 2, magic_le, 10))
            return DTAP_BID_MAGIC;
    }
    /* protocol 0/1: LONG text */
    if (n >= 27 && !memcmp(head, "L119547037146038801333356L\n", 27)) return DTAP_BID_MAGIC;
    if (is_tar(head, n)) return DTAP_BID_LAYOUT;
    return DTAP_BID_NONE;
}

typedef struct {
    char *key;
    dta_dtype dtype;
    uint64_t numel;
    size_t storage;
    bool have;
} lkey;

typedef struct {
    lkey *keys;
    size_t n;
} lctx;

static int lkey_cmp(const void *a, const void *b)
{
    return strcmp(((const lkey *)a)->key, ((const lkey *)b)->key);
}

static lkey *lfind(lctx *c, const char *k)
{
    lkey probe = {.key = (char *)k};
    return c->n ? bsearch(&probe, c->keys, c->n, sizeof *c->keys, lkey_cmp) : NULL;
}

static bool pid_key(const dtap_pnode *s, char *buf, size_t cap)
{
    if (!s || (s->kind != DTAP_PK_STR && s->kind != DTAP_PK_BYTES) || s->len >= cap ||
        memchr(s->s, 0, s->len))
        return false;
    memcpy(buf, s->s, s->len);
    buf[s->len] = 0;
    return true;
}

static dta_status legacy_resolve(void *vctx, const dtap_pnode *pid, dta_dtype dtype, const char *tensor,
                                 size_t *storage, uint64_t *extra, dta_error *err)
{
    lctx *c = vctx;
    char key[300];
    *extra = 0;
    (void)dtype;
    /* torch: `storage_type, root_key, location, numel, view_metadata = saved_id[1:]` */
    if (!pid || pid->kind != DTAP_PK_TUPLE || pid->seq.n != 6 || !dtap_pnode_is_str(pid->seq.v[0], "storage") ||
        !pid_key(pid->seq.v[2], key, sizeof key))
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' has a malformed storage persistent id", tensor);
    lkey *k = lfind(c, key);
    if (!k || !k->have)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' uses storage '%s', which is not in the key list",
                             tensor, key);
    const dtap_pnode *view = pid->seq.n >= 6 ? pid->seq.v[5] : NULL;
    if (view && view->kind != DTAP_PK_NONE) {
        int64_t off;
        if (!dtap_pnode_int(dtap_pnode_item(view, 1), &off) || off < 0)
            return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' has a malformed storage view", tensor);
        *extra = (uint64_t)off;
    }
    *storage = k->storage;
    return DTA_OK;
}

/* Parses n consecutive pickles from buf; fails with the VM's error. */
static dta_status parse_all(const unsigned char *buf, size_t len, dtap_pickle **pk, size_t npk,
                            size_t *end, dta_error *err)
{
    size_t pos = 0;
    for (size_t i = 0; i < npk; i++) {
        size_t used = 0;
        dta_status st = dtap_pickle_load(buf + pos, len - pos, NULL, &pk[i], &used, err);
        if (st) return st;
        pos += used;
    }
    *end = pos;
    return DTA_OK;
}

static bool root_int_is(const dtap_pickle *p, int64_t v)
{
    int64_t x;
    return dtap_pnode_int(dtap_pickle_root(p), &x) && x == v;
}

static bool root_is_magic(const dtap_pickle *p)
{
    const dtap_pnode *r = dtap_pickle_root(p);
    if (!r || r->kind != DTAP_PK_INT || !r->big) return false;
    if (r->len < 10 || memcmp(r->s, magic_le, 10)) return false;
    for (size_t i = 10; i < r->len; i++)
        if (r->s[i]) return false;
    return true;
}

dta_status dtap_torchlegacy_open(const dtap_src *src, dta_model *m, dta_error *err)
{
    unsigned char head[512];
    size_t hn = dtap_src_peek(src, 0, head, sizeof head);
    if (is_tar(head, hn))
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                             "a tar archive: the pre-0.4 PyTorch tar checkpoint format (sys_info, pickle, "
                             "storages, tensors) is not supported; re-save it with a current torch");
    enum { NPK = 5 };
    dtap_pickle *pk[NPK] = {0};
    unsigned char *buf = NULL;
    size_t end = 0;
    dta_status st;
    uint64_t want = LEGACY_FIRST_READ;
    for (;;) {
        uint64_t len = src->size < want ? src->size : want;
        free(buf);
        buf = NULL;
        if ((st = dtap_src_alloc_read(src, 0, len, DTA_MAX_PICKLE_BYTES, &buf, err))) return st;
        for (size_t i = 0; i < NPK; i++) {
            dtap_pickle_free(pk[i]);
            pk[i] = NULL;
        }
        st = parse_all(buf, (size_t)len, pk, NPK, &end, err);
        if (st == DTA_OK) break;
        /* a bigger window helps only if the pickles were cut by it */
        if (st != DTA_E_FORMAT || len >= src->size || len >= DTA_MAX_PICKLE_BYTES) goto out;
        want = len * 4;
        if (want > DTA_MAX_PICKLE_BYTES) want = DTA_MAX_PICKLE_BYTES;
    }
    free(buf);
    buf = NULL;
    if (!root_is_magic(pk[0])) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "legacy torch stream: bad magic number");
        goto out;
    }
    if (!root_int_is(pk[1], 1001)) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0, "legacy torch stream: protocol version is not 1001");
        goto out;
    }
    size_t file;
    if ((st = dtap_model_add_file(m, src->name ? src->name : "", DTA_FORMAT_TORCH_LEGACY, &file, err))) goto out;
    /* sys_info: little_endian False means big-endian storages */
    const dtap_pnode *si = dtap_pickle_root(pk[2]);
    for (size_t i = 0; si && si->kind == DTAP_PK_DICT && i + 1 < si->kv.n; i += 2)
        if (dtap_pnode_is_str(si->kv.v[i], "little_endian") && si->kv.v[i + 1]->kind == DTAP_PK_BOOL &&
            !si->kv.v[i + 1]->i &&
            (st = dtap_model_add_note(m, DTA_RULE_BYTEORDER, "sys_info",
                                      "storages are big-endian (torch byte-swaps them on load)", err)))
            goto out;
    /* torch.load unpickles all five (with the same unpickler), so each one could run code */
    for (size_t i = 0; i < NPK; i++)
        if ((st = dtap_torch_unsafe_notes(pk[i], m, err))) goto out;
    if ((st = dtap_torch_check_pids(pk[3], true, err))) goto out;

    /* key list, then per key: dtype/numel from its persistent ids */
    const dtap_pnode *kl = dtap_pickle_root(pk[4]);
    if (!kl || (kl->kind != DTAP_PK_LIST && kl->kind != DTAP_PK_TUPLE)) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "legacy torch stream: storage key list is not a list");
        goto out;
    }
    lctx c = {0};
    c.n = kl->seq.n;
    c.keys = calloc(c.n ? c.n : 1, sizeof *c.keys);
    if (!c.keys) {
        st = dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        char key[300];
        if (!pid_key(kl->seq.v[i], key, sizeof key) || !(c.keys[i].key = malloc(strlen(key) + 1))) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "legacy torch stream: bad storage key %zu", i);
            goto done;
        }
        memcpy(c.keys[i].key, key, strlen(key) + 1);
    }
    /* keep list order for the offset walk, sorted copy for lookups */
    lkey *sorted = malloc((c.n ? c.n : 1) * sizeof *sorted);
    if (!sorted) {
        st = dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
        goto done;
    }
    memcpy(sorted, c.keys, c.n * sizeof *sorted);
    lkey *listed = c.keys;
    c.keys = sorted;
    qsort(c.keys, c.n, sizeof *c.keys, lkey_cmp);
    for (size_t i = 1; i < c.n; i++)
        if (!strcmp(c.keys[i - 1].key, c.keys[i].key)) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "legacy torch stream: storage key '%s' listed twice", c.keys[i].key);
            break;
        }
    for (size_t i = 0; !st && i < dtap_pickle_persid_count(pk[3]); i++) {
        const dtap_pnode *pid = dtap_pickle_persid(pk[3], i)->args;
        char key[300];
        int64_t numel;
        bool untyped;
        if (!pid || pid->kind != DTAP_PK_TUPLE || pid->seq.n < 5 || !dtap_pnode_is_str(pid->seq.v[0], "storage"))
            continue; /* ('module', ...) pids of old module pickles */
        dta_dtype dt = dtap_torch_storage_dtype(pid->seq.v[1], &untyped);
        if (!pid_key(pid->seq.v[2], key, sizeof key) || dt == DTA_DTYPE_NONE ||
            !dtap_pnode_int(pid->seq.v[4], &numel) || numel < 0) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "legacy torch stream: malformed storage persistent id");
            break;
        }
        lkey *k = lfind(&c, key);
        if (!k) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' is not in the key list", key);
            break;
        }
        if (!k->have) {
            k->have = true;
            k->dtype = dt;
            k->numel = (uint64_t)numel;
        }
    }
    /* storage data: walk the counts in list order */
    uint64_t pos = end;
    for (size_t i = 0; !st && i < c.n; i++) {
        lkey *k = lfind(&c, listed[i].key);
        unsigned char cnt[8];
        uint64_t count, nbytes, data;
        if (!k->have) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' is listed but never used", k->key);
            break;
        }
        if ((st = dtap_src_read(src, pos, cnt, 8, err))) break;
        count = dtap_le64(cnt);
        if (count != k->numel) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' has %llu elements, its id says %llu",
                               k->key, (unsigned long long)count, (unsigned long long)k->numel);
            break;
        }
        if (!dta_dtype_nbytes(k->dtype, count, &nbytes) || dtap_add_u64(pos, 8, &data) ||
            dtap_add_u64(data, nbytes, &pos) || pos > src->size) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' (%llu x %s) runs past the end of the file",
                               k->key, (unsigned long long)count, dta_dtype_name(k->dtype));
            break;
        }
        st = dtap_model_add_storage(m, file, k->key, k->dtype, count, data, &k->storage, err);
    }
    /* torch reads the storages and stops; bytes after them (a zip, another stream) are
     * what other readers would see instead: refused, like safetensors' trailing bytes */
    if (!st && pos != src->size)
        st = dta_error_set(err, DTA_E_FORMAT, 0,
                           "%llu bytes after the last storage of the legacy stream (at offset %llu): "
                           "torch.load ignores them, other readers may not; refused as ambiguous",
                           (unsigned long long)(src->size - pos), (unsigned long long)pos);
    if (!st) st = dtap_torch_walk(pk[3], m, file, NULL, legacy_resolve, &c, err);
    c.keys = listed; /* the strings are shared; free once */
    free(sorted);
done:
    for (size_t i = 0; i < c.n; i++) free(c.keys[i].key);
    free(c.keys);
out:
    free(buf);
    for (size_t i = 0; i < NPK; i++) dtap_pickle_free(pk[i]);
    return st;
}
