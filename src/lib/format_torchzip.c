/* PyTorch zip checkpoint reader (torch.save >= 1.6, and TorchScript archives).
 *
 * Layout (docs/formats.md 2.2-2.8): a zip archive whose entries all sit under one directory,
 * the archive name (text before the first '/' of the first central entry):
 *   <prefix>/data.pkl        pickle (protocol 2) of the saved object; tensors appear as
 *                            REDUCE(torch._utils._rebuild_tensor_v2, (BINPERSID pid,
 *                            storage_offset, size, stride, requires_grad, hooks[, meta]))
 *                            and friends; pid = ('storage', <StorageClass>, key,
 *                            location, numel)
 *   <prefix>/data/<key>      raw little-endian storage bytes, STORED, exactly
 *                            numel * element size of the pid's storage class
 *   <prefix>/version         "3\n" (TorchScript: larger); <prefix>/byteorder "little"|"big"
 *   <prefix>/.data/serialization_id, .format_version, .storage_alignment (optional)
 * TorchScript archives (torch.jit.save) also hold constants.pkl (tensors under
 * constants/<key>), code/ and bytecode.pkl; their data.pkl describes the module tree.
 *
 * Tensors are found by walking data.pkl's object graph (torch_graph.c). */
#include "format.h"
#include "format_torchzip.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_build.h"
#include "pickle.h"
#include "torch_graph.h"
#include "util_strmap.h"
#include "zipread.h"

/* ---- zip storage resolver ---------------------------------------------------------- */

typedef struct {
    const dtap_zip *z;
    dta_model *m;
    size_t file;
    const char *dir;      /* "data" or "constants" */
    dtap_strmap keys;     /* storage key -> storage index (the model's copy of the key) */
    bool deflated_noted;
} zctx;

static dta_status zip_resolve(void *vctx, const dtap_pnode *pid, dta_dtype dtype, const char *tensor,
                              size_t *storage, uint64_t *extra, dta_error *err)
{
    zctx *c = vctx;
    *extra = 0;
    const dtap_pnode *tag = dtap_pnode_item(pid, 0), *cls = dtap_pnode_item(pid, 1),
                     *key = dtap_pnode_item(pid, 2), *num = dtap_pnode_item(pid, 4);
    int64_t numel;
    /* torch: `storage_type, key, location, numel = saved_id[1:]`, so exactly 5 items */
    if (!pid || pid->kind != DTAP_PK_TUPLE || pid->seq.n != 5 || !dtap_pnode_is_str(tag, "storage") ||
        !key || key->kind != DTAP_PK_STR || key->len > DTA_MAX_STORAGE_KEY ||
        memchr(key->s, 0, key->len) || !dtap_pnode_int(num, &numel) || numel < 0)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' has a malformed storage persistent id", tensor);
    bool untyped;
    dta_dtype sdt = dtap_torch_storage_dtype(cls, &untyped);
    if (sdt == DTA_DTYPE_NONE)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' has an unknown storage class", tensor);

    /* cached by key: tied weights and views share one storage */
    size_t hit = dtap_strmap_get(&c->keys, key->s, key->len);
    if (hit != SIZE_MAX) {
        const dta_storage *s = &c->m->storages[hit];
        if (s->dtype != dtype && dta_dtype_get(s->dtype)->bits != dta_dtype_get(dtype)->bits)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "tensor '%s' views storage '%s' (%s) as %s", tensor, s->key,
                                 dta_dtype_name(s->dtype), dta_dtype_name(dtype));
        *storage = hit;
        return DTA_OK;
    }
    char rel[300];
    snprintf(rel, sizeof rel, "%s/%.*s", c->dir, (int)key->len, key->s);
    const dtap_zip_entry *e = dtap_zip_find(c->z, rel);
    if (!e)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' needs record '%s/%s', which is missing",
                             tensor, dtap_zip_prefix(c->z), rel);
    uint64_t nbytes;
    if (!dta_dtype_nbytes(sdt, (uint64_t)numel, &nbytes))
        return dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' size overflows", rel);
    if (e->size != nbytes)
        return dta_error_set(err, DTA_E_FORMAT, 0, "record '%s' has %llu bytes, storage needs %llu (%lld x %s)",
                             e->name, (unsigned long long)e->size, (unsigned long long)nbytes,
                             (long long)numel, dta_dtype_name(sdt));
    uint64_t off = UINT64_MAX;
    if (e->method == DTAP_ZIP_STORED) {
        dta_status st = dtap_zip_data_offset(c->z, e, &off, err);
        if (st) return st;
    } else if (!c->deflated_noted) {
        c->deflated_noted = true;
        dta_status st = dtap_model_add_note(c->m, DTA_RULE_COMPRESSED_RECORD, e->name,
                                            "storage records are compressed: torch.load(mmap=True) cannot read them",
                                            err);
        if (st) return st;
    }
    dta_dtype keep = sdt;
    uint64_t n = (uint64_t)numel;
    if (untyped) { /* bytes: count in elements of the tensor's dtype (v3) */
        size_t es = dta_dtype_elem_size(dtype);
        if (!es || nbytes % es)
            return dta_error_set(err, DTA_E_FORMAT, 0, "record '%s' has %llu bytes, not a whole number of %s",
                                 e->name, (unsigned long long)nbytes, dta_dtype_name(dtype));
        keep = dtype;
        n = nbytes / es;
    }
    char *kcopy = malloc(key->len + 1);
    if (!kcopy) return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    memcpy(kcopy, key->s, key->len);
    kcopy[key->len] = 0;
    size_t idx;
    dta_status st = dtap_model_add_storage(c->m, c->file, kcopy, keep, n, off, &idx, err);
    free(kcopy);
    if (st) return st;
    if (dtap_strmap_put(&c->keys, c->m->storages[idx].key, key->len, idx) == SIZE_MAX)
        return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    *storage = idx;
    return DTA_OK;
}

/* ---- reader ------------------------------------------------------------------------ */

/* torch.serialization._is_zipfile() reads exactly the first four bytes and compares them
 * with "PK\3\4"; anything else goes to _legacy_load, which unpickles from offset 0. So a
 * zip behind a preamble (a legacy stream, a pickle, anything) is not a zip to torch and
 * is not bid for here: reading the zip would audit a different object than the one
 * torch.load builds. */
int dtap_torchzip_bid(const unsigned char *head, size_t n, uint64_t size)
{
    (void)size;
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return DTAP_BID_MAGIC;
    return 0;
}

static bool has_dir(const dtap_zip *z, const char *dir)
{
    const char *p = dtap_zip_prefix(z);
    size_t pl = strlen(p), dl = strlen(dir);
    for (size_t i = 0; i < dtap_zip_count(z); i++) {
        const dtap_zip_entry *e = dtap_zip_entry_at(z, i);
        if (e->name_len > pl + 1 + dl && !memcmp(e->name, p, pl) && e->name[pl] == '/' &&
            !memcmp(e->name + pl + 1, dir, dl))
            return true;
    }
    return false;
}

static dta_status load_pickle(const dtap_zip *z, const dtap_zip_entry *e, bool torchscript,
                              dtap_pickle **pk, dta_error *err)
{
    unsigned char *buf;
    size_t n;
    dta_status st = dtap_zip_read(z, e, DTA_MAX_PICKLE_BYTES, &buf, &n, err);
    if (st) return st;
    dtap_pickle_opts o = {.torchscript = torchscript};
    size_t used;
    st = dtap_pickle_load(buf, n, &o, pk, &used, err);
    free(buf);
    if (st && err) dta_error_prefix(err, e->name); /* name the record it happened in */
    return st;
}

/* keep (may be NULL): receives the parsed graph instead of freeing it. */
static dta_status scan_pickle(const dtap_zip *z, dta_model *m, size_t file, const char *rel,
                              const char *dir, const char *name_prefix, bool torchscript,
                              dtap_pickle **keep, dta_error *err)
{
    const dtap_zip_entry *e = dtap_zip_find(z, rel);
    if (!e) return DTA_OK;
    dtap_pickle *pk = NULL;
    dta_status st = load_pickle(z, e, torchscript, &pk, err);
    if (st) return st;
    zctx c;
    memset(&c, 0, sizeof c);
    c.z = z;
    c.m = m;
    c.file = file;
    c.dir = dir;
    st = dtap_torch_unsafe_notes(pk, m, err);
    if (!st) st = dtap_torch_check_pids(pk, false, err);
    if (st && err) dta_error_prefix(err, e->name);
    if (!st) st = dtap_torch_walk(pk, m, file, name_prefix, zip_resolve, &c, err);
    dtap_strmap_free(&c.keys);
    if (keep && !st) *keep = pk;
    else dtap_pickle_free(pk);
    return st;
}

dta_status dtap_torchzip_open(const dtap_src *src, dta_model *m, dta_error *err)
{
    return dtap_torchzip_read(src, m, NULL, err);
}

dta_status dtap_torchzip_read(const dtap_src *src, dta_model *m, dtap_torchzip_parts *keep,
                              dta_error *err)
{
    dtap_zip *z = NULL;
    dtap_pickle *pk = NULL;
    bool big = false;
    if (keep) memset(keep, 0, sizeof *keep);
    dta_status st = dtap_zip_open(src, &z, err);
    if (st) return st;
    const char *prefix = dtap_zip_prefix(z);
    const dtap_zip_entry *pkl = dtap_zip_find(z, "data.pkl");
    if (!pkl) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                           "zip archive without '%s/data.pkl': not a PyTorch checkpoint", prefix);
        goto out;
    }
    bool ts = dtap_zip_find(z, "constants.pkl") || has_dir(z, "code/");
    size_t file;
    if ((st = dtap_model_add_file(m, src->name ? src->name : "", ts ? DTA_FORMAT_TORCHSCRIPT : DTA_FORMAT_TORCH_ZIP, &file, err)))
        goto out;
    const dtap_zip_entry *bo = dtap_zip_find(z, "byteorder");
    if (bo) {
        unsigned char *b;
        size_t n;
        if ((st = dtap_zip_read(z, bo, 64, &b, &n, err))) goto out;
        big = n >= 3 && !memcmp(b, "big", 3);
        bool little = n >= 6 && !memcmp(b, "little", 6);
        free(b);
        if (big)
            st = dtap_model_add_note(m, DTA_RULE_BYTEORDER, bo->name,
                                     "storages are big-endian (torch byte-swaps them on load)", err);
        else if (!little)
            st = dta_error_set(err, DTA_E_FORMAT, 0, "record '%s' is neither 'little' nor 'big'", bo->name);
        if (st) goto out;
    }
    if ((st = scan_pickle(z, m, file, "data.pkl", "data", NULL, ts, keep ? &pk : NULL, err))) goto out;
    if (ts && (st = scan_pickle(z, m, file, "constants.pkl", "constants", "constants", ts, NULL, err))) goto out;
    if (keep) {
        keep->zip = z;
        keep->pkl = pk;
        keep->file = file;
        keep->torchscript = ts;
        keep->big_endian = big;
        return DTA_OK;
    }
out:
    dtap_pickle_free(pk);
    dtap_zip_close(z);
    return st;
}
