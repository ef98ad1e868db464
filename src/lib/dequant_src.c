/* The checkpoint side of dequantization (dequant_scheme.h): tensor bytes read from the
 * files (one descriptor per file, opened on first use) and the companion lookup. dequant.c
 * and every scheme module read through it; it calls neither, so the scheme modules never
 * call back into dequant.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "dequant_scheme.h"
#include "src.h"

struct dtap_dq_src {
    const dta_model *w;
    int *fds; /* per file of w, -1 until opened */
};

dta_status dtap_dq_src_new(const dta_model *w, dtap_dq_src **out, dta_error *err)
{
    dtap_dq_src *s = calloc(1, sizeof *s);
    if (s)
        s->fds = malloc((w->nfiles ? w->nfiles : 1) * sizeof *s->fds);
    if (!s || !s->fds) {
        free(s);
        *out = NULL;
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    s->w = w;
    for (size_t i = 0; i < w->nfiles; i++)
        s->fds[i] = -1;
    *out = s;
    return DTA_OK;
}

void dtap_dq_src_free(dtap_dq_src *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->w->nfiles; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    free(s->fds);
    free(s);
}

const dta_model *dtap_dq_model(const dtap_dq_src *s) { return s->w; }

dta_status dtap_dq_read_tensor(dtap_dq_src *s, const dta_tensor *t, uint64_t off, size_t n,
                               void *buf, dta_error *err)
{
    const dta_model *w = s->w;
    const char *path = w->files[t->file].path;
    if (s->fds[t->file] < 0 && (s->fds[t->file] = dtap_open_regular(path, NULL, err)) < 0) {
        dta_error_prefix(err, path);
        return err ? err->code : DTA_E_IO;
    }
    const dta_storage *st = &w->storages[t->storage];
    uint64_t es = dta_dtype_elem_size(t->dtype);
    return dtap_pread_all(s->fds[t->file], buf, n, st->offset + t->storage_offset * es + off,
                          path, NULL, err);
}

dta_status dtap_dq_read(dtap_dq_src *s, size_t ti, uint64_t off, size_t n, void *buf,
                        dta_error *err)
{
    return dtap_dq_read_tensor(s, &s->w->tensors[ti], off, n, buf, err);
}

bool dtap_dq_stored_plain(const dtap_dq_src *s, size_t ti)
{
    const dta_tensor *t = &s->w->tensors[ti];
    return t->storage != SIZE_MAX && !t->meta && t->stride == NULL &&
           s->w->storages[t->storage].offset != UINT64_MAX;
}

size_t dtap_dq_comp(const dta_quant *q, const dta_quant_param *p, dta_quant_role r)
{
    for (size_t i = 0; i < p->ntensors; i++)
        if (q->tensor_role[p->tensors[i]] == r)
            return p->tensors[i];
    return SIZE_MAX;
}
