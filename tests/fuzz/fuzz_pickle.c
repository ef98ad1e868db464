/* libFuzzer target: the symbolic pickle VM (dtap_pickle_load) and the torch object-graph
 * walk (dtap_torch_walk) into a model, with a resolver that accepts any well-formed
 * ('storage', <StorageClass>, key, location, numel) persistent id, as the zip reader does
 * but without an archive behind it. Several concatenated pickles are loaded in turn, as
 * the legacy reader does. */
#include "fuzz_common.h"
#include "pickle.h"
#include "torch_graph.h"

#define FUZZ_MAX_KEYS 64

typedef struct {
    dta_model *m;
    size_t file;
    char keys[FUZZ_MAX_KEYS][64];
    size_t idx[FUZZ_MAX_KEYS];
    size_t n;
} fctx;

static dta_status resolve(void *vctx, const dtap_pnode *pid, dta_dtype dtype, const char *tensor,
                          size_t *storage, uint64_t *extra, dta_error *err)
{
    fctx *c = vctx;
    const dtap_pnode *key = dtap_pnode_item(pid, 2), *num = dtap_pnode_item(pid, 4);
    int64_t numel;
    *extra = 0;
    if (!pid || pid->kind != DTAP_PK_TUPLE || pid->seq.n < 5 ||
        !dtap_pnode_is_str(dtap_pnode_item(pid, 0), "storage") || !key ||
        (key->kind != DTAP_PK_STR && key->kind != DTAP_PK_BYTES) || key->len >= 64 ||
        memchr(key->s, 0, key->len) || !dtap_pnode_int(num, &numel) || numel < 0)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s': bad pid", tensor);
    bool untyped = false;
    dta_dtype sdt = dtap_torch_storage_dtype(dtap_pnode_item(pid, 1), &untyped);
    if (sdt == DTA_DTYPE_NONE)
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s': bad storage class", tensor);
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->keys[i]) == key->len && !memcmp(c->keys[i], key->s, key->len)) {
            *storage = c->idx[i];
            return DTA_OK;
        }
    if (c->n == FUZZ_MAX_KEYS)
        return dta_error_set(err, DTA_E_LIMIT, 0, "too many storages");
    if (untyped) sdt = dtype;
    if (!dta_dtype_get(sdt)) return dta_error_set(err, DTA_E_FORMAT, 0, "bad dtype");
    memcpy(c->keys[c->n], key->s, key->len);
    c->keys[c->n][key->len] = 0;
    dta_status st = dtap_model_add_storage(c->m, c->file, c->keys[c->n], sdt, (uint64_t)numel,
                                           UINT64_MAX, &c->idx[c->n], err);
    if (st) return st;
    *storage = c->idx[c->n++];
    return DTA_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dta_error err = {0};
    size_t pos = 0;
    /* torchscript allowlist when the input's length is odd: both paths get exercised */
    dtap_pickle_opts o = {.torchscript = (size & 1) != 0};
    dta_model *m = dtap_model_new(FUZZ_SRC_NAME, &err);
    if (!m) return 0;
    fctx c = {.m = m};
    if (dtap_model_add_file(m, FUZZ_SRC_NAME, DTA_FORMAT_TORCH_ZIP, &c.file, &err) != DTA_OK) {
        dta_model_free(m);
        return 0;
    }
    for (int k = 0; k < 5 && pos < size; k++) {
        dtap_pickle *pk = NULL;
        size_t used = 0;
        dta_status st = dtap_pickle_load(data + pos, size - pos, &o, &pk, &used, &err);
        if (st != DTA_OK) {
            if (pk || !err.msg[0]) abort();
            break;
        }
        if (used == 0 || used > size - pos) abort();
        pos += used;
        (void)dtap_pickle_protocol(pk);
        for (size_t i = 0; i < dtap_pickle_persid_count(pk); i++)
            if (!dtap_pickle_persid(pk, i)) abort();
        st = dtap_torch_unsafe_notes(pk, m, &err);
        if (st == DTA_OK)
            st = dtap_torch_walk(pk, m, c.file, k ? "constants" : NULL, resolve, &c, &err);
        dtap_pickle_free(pk);
        if (st != DTA_OK) break;
    }
    dtap_model_finish(m);
    dta_model_free(m);
    return 0;
}
