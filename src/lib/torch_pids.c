/* Storage persistent ids as torch.load resolves them, checked for ambiguity.
 *
 * torch.load caches storages by key (torch/serialization.py):
 *   zip    _load.persistent_load: `if key in loaded_storages: typed_storage =
 *          loaded_storages[key]`, else the record "data/{key}" is read with nbytes =
 *          numel * element_size(storage class dtype) of THIS pid;
 *   legacy _legacy_load.persistent_load: `if root_key not in deserialized_objects:` a
 *          storage of the pid's class and numel is made; later pids with the same key
 *          get that storage; view_metadata (view_key, offset, size) is cached the same
 *          way under view_key, in the same dictionary.
 * So the FIRST pid executed for a key (stream order) fixes the storage's dtype and size,
 * and _rebuild_tensor_v2 gives every tensor on it that dtype. A later pid that names a
 * different storage class (BFloat16Storage after HalfStorage: same width, so the bytes
 * fit) would make dtaudit, which reads each tensor's own pid, report a dtype that torch
 * does not load. torch.save never writes such files ("Cannot save multiple tensors or
 * storages that view the same data as different types"), so every pid naming a key
 * must agree on the storage class and element count, and a view key must always name
 * the same view; anything else is refused. In the zip format the key must be a str:
 * torch formats a bytes key as "data/b'0'", not "data/0". */
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "text_safe.h"
#include "torch_graph.h"

typedef struct {
    const dtap_pnode *key;
    const dtap_pnode *pid;
    size_t order;
    bool view; /* a legacy view key (pid item 5, item 0) */
} pidref;

static int key_cmp(const dtap_pnode *a, const dtap_pnode *b)
{
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int ref_cmp(const void *x, const void *y)
{
    const pidref *a = x, *b = y;
    int c = key_cmp(a->key, b->key);
    if (c)
        return c;
    return a->order < b->order ? -1 : a->order > b->order;
}

static bool is_key(const dtap_pnode *k)
{
    return k && (k->kind == DTAP_PK_STR || k->kind == DTAP_PK_BYTES);
}

static bool same_int(const dtap_pnode *a, const dtap_pnode *b)
{
    int64_t x, y;
    if (dtap_pnode_int(a, &x) && dtap_pnode_int(b, &y))
        return x == y;
    if (a && b && a->kind == DTAP_PK_INT && b->kind == DTAP_PK_INT && a->big && b->big)
        return a->len == b->len && !memcmp(a->s, b->s, a->len);
    return a == b;
}

static const char *kname(const dtap_pnode *k, char *buf, size_t cap)
{
    return dtap_escape(buf, cap, k->s, k->len); /* may hold NUL and any byte */
}

static bool same_storage_class(const pidref *a, const pidref *b)
{
    bool ua, ub;
    dta_dtype da = dtap_torch_storage_dtype(dtap_pnode_item(a->pid, 1), &ua);
    dta_dtype db = dtap_torch_storage_dtype(dtap_pnode_item(b->pid, 1), &ub);
    return da == db && ua == ub;
}

/* Does pid b name the same storage as pid a (first)? */
static bool same_storage(const pidref *a, const pidref *b)
{
    if (a->view != b->view)
        return false; /* one key used both as a root key and as a view key */
    if (a->view) {
        const dtap_pnode *va = dtap_pnode_item(a->pid, 5), *vb = dtap_pnode_item(b->pid, 5);
        const dtap_pnode *ra = dtap_pnode_item(a->pid, 2), *rb = dtap_pnode_item(b->pid, 2);
        return is_key(ra) && is_key(rb) && !key_cmp(ra, rb) &&
               same_int(dtap_pnode_item(va, 1), dtap_pnode_item(vb, 1)) &&
               same_int(dtap_pnode_item(va, 2), dtap_pnode_item(vb, 2)) && same_storage_class(a, b);
    }
    return same_storage_class(a, b) && same_int(dtap_pnode_item(a->pid, 4), dtap_pnode_item(b->pid, 4));
}

dta_status dtap_torch_check_pids(const dtap_pickle *pk, bool legacy, dta_error *err)
{
    size_t n = dtap_pickle_persid_count(pk);
    if (n == 0)
        return DTA_OK;
    if (n > SIZE_MAX / 2 / sizeof(pidref))
        return dta_error_set(err, DTA_E_LIMIT, 0, "too many persistent ids");
    pidref *v = malloc(2 * n * sizeof *v);
    if (!v)
        return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    size_t m = 0;
    dta_status st = DTA_OK;
    char b1[64];
    for (size_t i = 0; i < n && !st; i++) {
        const dtap_pnode *pid = dtap_pickle_persid(pk, i)->args;
        if (!pid || pid->kind != DTAP_PK_TUPLE || !dtap_pnode_is_str(dtap_pnode_item(pid, 0), "storage"))
            continue; /* not a storage: the walkers say what is wrong if a tensor uses it */
        const dtap_pnode *key = dtap_pnode_item(pid, 2);
        if (!is_key(key))
            continue;
        if (!legacy && key->kind != DTAP_PK_STR) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "storage key b'%s' is bytes: torch.load would look for record "
                               "\"data/b'%s'\", not \"data/%s\"",
                               kname(key, b1, sizeof b1), b1, b1);
            break;
        }
        v[m++] = (pidref){key, pid, i, false};
        const dtap_pnode *view = legacy ? dtap_pnode_item(pid, 5) : NULL;
        if (view && view->kind != DTAP_PK_NONE && is_key(dtap_pnode_item(view, 0)))
            v[m++] = (pidref){dtap_pnode_item(view, 0), pid, i, true};
    }
    if (!st && m > 1) {
        qsort(v, m, sizeof *v, ref_cmp);
        for (size_t i = 1; i < m; i++) {
            size_t first = i - 1;
            while (first > 0 && !key_cmp(v[first - 1].key, v[i].key))
                first--;
            if (key_cmp(v[i - 1].key, v[i].key) || same_storage(&v[first], &v[i]))
                continue;
            const dtap_pnode *ca = dtap_pnode_item(v[first].pid, 1), *cb = dtap_pnode_item(v[i].pid, 1);
            bool ok_a = ca && ca->kind == DTAP_PK_GLOBAL, ok_b = cb && cb->kind == DTAP_PK_GLOBAL;
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "storage '%s' is referenced as %s%s%s and again as %s%s%s%s: torch.load "
                               "keeps the first and gives every tensor on it that dtype; refused as "
                               "ambiguous",
                               kname(v[i].key, b1, sizeof b1), ok_a ? ca->s : "?", ok_a ? "." : "",
                               ok_a ? ca->name : "", ok_b ? cb->s : "?", ok_b ? "." : "",
                               ok_b ? cb->name : "",
                               v[first].view != v[i].view ? " (a view key reused as a storage key)"
                               : v[i].view                ? " (with a different view)"
                               : same_storage_class(&v[first], &v[i]) ? " (with a different size)"
                                                                      : "");
            break;
        }
    }
    free(v);
    return st;
}
