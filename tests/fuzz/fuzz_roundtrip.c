/* libFuzzer target: the safetensors writer round trip. An input the reader accepts as
 * safetensors is written again with the writer's header (dtap_st_header) and its tensors'
 * bytes, read back, and must come back equal: the same names, dtypes, shapes, metadata
 * and bytes. (read -> write -> read) */
#include "fuzz_common.h"
#include "write_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dtap_src src;
    dta_error err = {0};
    dta_model *a = dtap_model_new(FUZZ_SRC_NAME, &err), *b = NULL;
    if (!a) return 0;
    dtap_src_open_mem(&src, FUZZ_SRC_NAME, data, size);
    if (dtap_read_weights(&src, a, &err) != DTA_OK || a->nfiles != 1 ||
        strcmp(a->files[0].format, "safetensors") != 0) {
        dta_model_free(a);
        return 0;
    }
    dtap_model_finish(a);
    size_t n = a->ntensors;
    dtap_st_out *t = calloc(n ? n : 1, sizeof *t);
    if (!t) abort();
    for (size_t i = 0; i < n; i++) {
        const dta_tensor *x = &a->tensors[i];
        if (x->name_nul) goto out; /* a name the writer refuses by design */
        t[i] = (dtap_st_out){x->name, x->dtype, x->rank, x->shape, x->nbytes, 0, i};
    }
    unsigned char *hdr = NULL;
    size_t hl = 0;
    if (dtap_st_header(t, n, a->metadata, a->nmetadata, &hdr, &hl, &err) != DTA_OK) {
        if (!err.msg[0]) abort();
        goto out;
    }
    uint64_t total = hl;
    for (size_t i = 0; i < n; i++) total += t[i].nbytes;
    unsigned char *file = malloc(total ? total : 1);
    if (!file) abort();
    memcpy(file, hdr, hl);
    free(hdr);
    for (size_t i = 0; i < n; i++) {
        const dta_tensor *x = &a->tensors[t[i].tag];
        const dta_storage *s = &a->storages[x->storage];
        if (s->offset + x->nbytes > size) abort(); /* the reader let a tensor past the end */
        memcpy(file + hl + t[i].offset, data + s->offset, x->nbytes);
    }
    dtap_src src2;
    dtap_src_open_mem(&src2, FUZZ_SRC_NAME, file, total);
    b = dtap_model_new(FUZZ_SRC_NAME, &err);
    if (!b) abort();
    if (dtap_read_weights(&src2, b, &err) != DTA_OK) {
        fprintf(stderr, "re-read failed: %s\n", err.msg);
        abort(); /* the writer produced a file its own reader rejects */
    }
    dtap_model_finish(b);
    if (b->ntensors != n || b->nmetadata < a->nmetadata) abort();
    for (size_t i = 0; i < n; i++) {
        const dta_tensor *x = &a->tensors[i], *y = NULL;
        for (size_t j = 0; j < n && !y; j++)
            if (!strcmp(b->tensors[j].name, x->name)) y = &b->tensors[j];
        if (!y || y->dtype != x->dtype || y->rank != x->rank || y->nbytes != x->nbytes) abort();
        for (int k = 0; k < x->rank; k++)
            if (x->shape[k] != y->shape[k]) abort();
        const dta_storage *sx = &a->storages[x->storage], *sy = &b->storages[y->storage];
        if (memcmp(data + sx->offset, file + sy->offset, x->nbytes)) abort();
    }
    for (size_t i = 0; i < a->nmetadata; i++) {
        bool found = false;
        for (size_t j = 0; j < b->nmetadata && !found; j++)
            found = !strcmp(a->metadata[i].key, b->metadata[j].key) &&
                    !strcmp(a->metadata[i].value, b->metadata[j].value);
        if (!found) abort();
    }
    free(file);
out:
    free(t);
    dta_model_free(a);
    dta_model_free(b);
    return 0;
}
