/* The neutral model: growth, checks shared by every reader, and freeing. */
#define _DEFAULT_SOURCE /* madvise MADV_HUGEPAGE */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fnmatch.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "model_build.h"
#include "src.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *dtap_alloc_big(size_t n)
{
    if (n < HUGE_PAGE)
        return malloc(n);
    void *p;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n & ~(HUGE_PAGE - 1), MADV_HUGEPAGE); /* advice: failure changes nothing */
#endif
    return p;
}

/* Grows *arr (of elem bytes, *cap slots) to hold n+1 items. */
static dta_status grow(void **arr, size_t *cap, size_t n, size_t elem, size_t max, dta_error *err)
{
    /* the cap first: a capacity past it (dtap_model_append doubles) must not let more in */
    if (n >= max)
        return dta_error_set(err, DTA_E_LIMIT, 0, "more than %zu entries", max);
    if (n < *cap)
        return DTA_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > max)
        ncap = max;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *arr = p;
    *cap = ncap;
    return DTA_OK;
}

/* The library's bookkeeping, kept out of the public dta_model: every model is allocated as
 * one of these by dtap_model_new, and the dta_model handed out is its first member. */
typedef struct {
    dta_model pub;
    size_t cap_files, cap_tensors, cap_storages, cap_notes, cap_metadata;
    void *arena;             /* tensor names, roots, shapes and strides (arena.h): a
                              * million tensors cost their bytes, not a million mallocs */
    const char *last_root;   /* the root most recently stored in the arena, shared */
} model_impl;

static model_impl *impl(dta_model *m) { return (model_impl *)m; }

static void *arena_alloc(dta_model *m, size_t n, size_t align)
{
    return dtap_arena_alloc(&impl(m)->arena, n, align);
}

static void arena_free(dta_model *m) { dtap_arena_free(&impl(m)->arena); }

static char *arena_dupn(dta_model *m, const char *s, size_t n)
{
    return dtap_arena_strndup(&impl(m)->arena, s, n);
}

dta_model *dtap_model_new(const char *path, dta_error *err)
{
    model_impl *mi = calloc(1, sizeof *mi);
    dta_model *m = mi ? &mi->pub : NULL;
    if (!m || !(m->path = strdup(path ? path : ""))) {
        free(mi);
        dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    m->format = "unknown";
    m->config_dtype = DTA_DTYPE_NONE;
    return m;
}

dta_status dtap_model_add_file(dta_model *m, const char *path, dta_format format, size_t *idx,
                               dta_error *err)
{
    dta_status st = grow((void **)&m->files, &impl(m)->cap_files, m->nfiles, sizeof *m->files,
                         DTA_MAX_FILES, err);
    if (st != DTA_OK)
        return st;
    char *p = strdup(path);
    if (!p)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    m->files[m->nfiles].path = p;
    m->files[m->nfiles].format = dta_format_name(format);
    m->files[m->nfiles].format_id = format;
    if (idx)
        *idx = m->nfiles;
    m->nfiles++;
    return DTA_OK;
}

dta_status dtap_model_add_storage(dta_model *m, size_t file, const char *key, dta_dtype dtype,
                                  uint64_t numel, uint64_t offset, size_t *idx, dta_error *err)
{
    uint64_t nbytes;
    if (!dta_dtype_nbytes(dtype, numel, &nbytes))
        return dta_error_set(err, DTA_E_FORMAT, 0, "storage '%s' of %llu x %s overflows",
                             key ? key : "?", (unsigned long long)numel, dta_dtype_name(dtype));
    dta_status st = grow((void **)&m->storages, &impl(m)->cap_storages, m->nstorages,
                         sizeof *m->storages, DTA_MAX_TENSORS, err);
    if (st != DTA_OK)
        return st;
    dta_storage *s = &m->storages[m->nstorages];
    memset(s, 0, sizeof *s);
    if (key && !(s->key = strdup(key)))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    s->file = file;
    s->dtype = dtype;
    s->numel = numel;
    s->nbytes = nbytes;
    s->offset = offset;
    if (idx)
        *idx = m->nstorages;
    m->nstorages++;
    return DTA_OK;
}

/* Highest element index a view touches must lie inside its storage. */
static dta_status check_extent(const dta_model *m, const char *raw, size_t raw_len, int rank,
                               const uint64_t *shape, const int64_t *stride, uint64_t numel,
                               uint64_t storage_offset, size_t storage, dta_error *err)
{
    const dta_storage *s = &m->storages[storage];
    uint64_t last = storage_offset, term;
    int shown = (int)(raw_len < 100 ? raw_len : 100); /* name length in messages */
    if (numel == 0)
        return DTA_OK;
    for (int k = rank - 1; k >= 0; k--) {
        uint64_t st;
        if (stride) {
            if (stride[k] < 0)
                return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%.*s' has a negative stride",
                                     shown, raw);
            st = (uint64_t)stride[k];
        } else {
            /* contiguous: stride = product of later dims, bounded by numel */
            st = 1;
            for (int j = k + 1; j < rank; j++)
                st *= shape[j];
        }
        if (dtap_mul_u64(shape[k] - 1, st, &term) != 0 || dtap_add_u64(last, term, &last) != 0)
            return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%.*s' view overflows", shown,
                                     raw);
    }
    if (last >= s->numel)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "tensor '%.*s' reaches element %llu of a storage of %llu elements",
                             shown, raw, (unsigned long long)last, (unsigned long long)s->numel);
    return DTA_OK;
}

void **dtap_model_arena(dta_model *m)
{
    return &impl(m)->arena;
}

char *dtap_model_alloc_str(dta_model *m, size_t n)
{
    return arena_alloc(m, n, 1);
}

/* owned: name is already in the model's arena (dtap_model_alloc_str), NUL-terminated */
static dta_status add_tensor(dta_model *m, const char *name, size_t name_len, bool owned,
                             const char *root, dta_dtype dtype, int rank, const uint64_t *shape,
                             const int64_t *stride, uint64_t storage_offset, size_t storage,
                             size_t file, dta_error *err)
{
    uint64_t numel = 1, nbytes;
    dta_status st;
    char shown[128];

    /* the name, shortened, for messages; formatted only on the way to an error */
#define SHOWN (snprintf(shown, sizeof shown, "%.*s", (int)(name_len < 100 ? name_len : 100), name), shown)
    if (name_len > DTA_MAX_NAME_LEN)
        return dta_error_set(err, DTA_E_LIMIT, 0, "tensor name '%s...' longer than %u bytes",
                             SHOWN, DTA_MAX_NAME_LEN);
    if (rank < 0 || rank > DTA_MAX_RANK)
        return dta_error_set(err, DTA_E_LIMIT, 0, "tensor '%s' has rank %d (max %d)", SHOWN,
                             rank, DTA_MAX_RANK);
    if (!dta_dtype_get(dtype))
        return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' has no valid dtype", SHOWN);
    for (int k = 0; k < rank; k++)
        if (dtap_mul_u64(numel, shape[k], &numel) != 0)
            return dta_error_set(err, DTA_E_FORMAT, 0, "tensor '%s' shape product overflows",
                                 SHOWN);
    if (!dta_dtype_nbytes(dtype, numel, &nbytes))
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "tensor '%s': %llu elements of %s is not a whole number of bytes "
                             "or overflows",
                             SHOWN, (unsigned long long)numel, dta_dtype_name(dtype));
    if (storage != SIZE_MAX) {
        if (storage >= m->nstorages)
            return dta_error_set(err, DTA_E_ARG, 0, "tensor '%s': bad storage index", SHOWN);
        st = check_extent(m, name, name_len, rank, shape, stride, numel, storage_offset, storage, err);
        if (st != DTA_OK)
            return st;
    }
#undef SHOWN
    st = grow((void **)&m->tensors, &impl(m)->cap_tensors, m->ntensors, sizeof *m->tensors,
              DTA_MAX_TENSORS, err);
    if (st != DTA_OK)
        return st;

    dta_tensor *t = &m->tensors[m->ntensors];
    memset(t, 0, sizeof *t);
    if (!root)
        root = "";
    if (!impl(m)->last_root || strcmp(impl(m)->last_root, root) != 0)
        impl(m)->last_root = arena_dupn(m, root, strlen(root));
    t->root = (char *)impl(m)->last_root;
    t->name = owned ? (char *)name : arena_dupn(m, name, name_len);
    t->name_nul = memchr(name, 0, name_len) != NULL;
    t->shape = arena_alloc(m, sizeof(uint64_t) * (size_t)(rank ? rank : 1), sizeof(uint64_t));
    if (stride)
        t->stride = arena_alloc(m, sizeof(int64_t) * (size_t)(rank ? rank : 1), sizeof(int64_t));
    if (!t->name || !t->root || !t->shape || (stride && !t->stride))
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (rank)
        memcpy(t->shape, shape, sizeof(uint64_t) * (size_t)rank);
    if (stride && rank)
        memcpy(t->stride, stride, sizeof(int64_t) * (size_t)rank);
    t->dtype = dtype;
    t->rank = rank;
    t->numel = numel;
    t->nbytes = nbytes;
    t->storage_offset = storage_offset;
    t->storage = storage;
    t->file = file;
    t->meta = storage == SIZE_MAX;
    if (storage != SIZE_MAX)
        m->storages[storage].ntensors++;
    m->ntensors++;
    return DTA_OK;
}

dta_status dtap_model_add_tensor(dta_model *m, const char *name, size_t name_len,
                                 const char *root, dta_dtype dtype, int rank,
                                 const uint64_t *shape, const int64_t *stride,
                                 uint64_t storage_offset, size_t storage, size_t file,
                                 dta_error *err)
{
    return add_tensor(m, name, name_len, false, root, dtype, rank, shape, stride,
                      storage_offset, storage, file, err);
}

dta_status dtap_model_add_tensor_owned(dta_model *m, char *name, size_t name_len,
                                       const char *root, dta_dtype dtype, int rank,
                                       const uint64_t *shape, const int64_t *stride,
                                       uint64_t storage_offset, size_t storage, size_t file,
                                       dta_error *err)
{
    return add_tensor(m, name, name_len, true, root, dtype, rank, shape, stride,
                      storage_offset, storage, file, err);
}

void dtap_model_presize(dta_model *m, size_t n)
{
    model_impl *mi = impl(m);
    if (m->tensors || m->storages || !n || n > DTA_MAX_TENSORS)
        return;
    dta_tensor *t = dtap_alloc_big(n * sizeof *t);
    dta_storage *s = dtap_alloc_big(n * sizeof *s);
    if (!t || !s) { /* only advice: the arrays grow as before */
        free(t);
        free(s);
        return;
    }
    m->tensors = t;
    m->storages = s;
    mi->cap_tensors = mi->cap_storages = n;
}

dta_status dtap_model_reserve(dta_model *m, size_t n, dta_error *err)
{
    model_impl *mi = impl(m);
    size_t *caps[2] = {&mi->cap_storages, &mi->cap_tensors}, counts[2] = {m->nstorages, m->ntensors};
    void **arrs[2] = {(void **)&m->storages, (void **)&m->tensors};
    size_t elems[2] = {sizeof *m->storages, sizeof *m->tensors};
    for (int k = 0; k < 2; k++) {
        if (n > DTA_MAX_TENSORS - counts[k]) /* counts[k] <= DTA_MAX_TENSORS */
            return dta_error_set(err, DTA_E_LIMIT, 0, "more than %zu entries",
                                 (size_t)DTA_MAX_TENSORS);
        size_t need = counts[k] + n, ncap = *caps[k] ? *caps[k] : 16;
        if (need <= *caps[k])
            continue;
        while (ncap < need)
            ncap = ncap > DTA_MAX_TENSORS / 2 ? DTA_MAX_TENSORS : ncap * 2;
        void *p = realloc(*arrs[k], ncap * elems[k]);
        if (!p)
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        *arrs[k] = p;
        *caps[k] = ncap;
    }
    return DTA_OK;
}

void *dtap_model_alloc(dta_model *m, size_t n, size_t align)
{
    return arena_alloc(m, n, align);
}

const char *dtap_model_root_none(dta_model *m)
{
    model_impl *mi = impl(m);
    if (!mi->last_root || mi->last_root[0] != 0)
        mi->last_root = arena_dupn(m, "", 0);
    return mi->last_root;
}

dta_status dtap_model_add_whole(dta_model *m, size_t file, char *name,
                                bool name_nul, dta_dtype dtype, int rank, const uint64_t *shape,
                                uint64_t numel, uint64_t nbytes, uint64_t offset, dta_error *err)
{
    model_impl *mi = impl(m);
    dta_status st;
    /* the same limits and messages as add_storage then add_tensor */
    if (m->nstorages >= mi->cap_storages &&
        (st = grow((void **)&m->storages, &mi->cap_storages, m->nstorages, sizeof *m->storages,
                   DTA_MAX_TENSORS, err)) != DTA_OK)
        return st;
    if (m->ntensors >= mi->cap_tensors &&
        (st = grow((void **)&m->tensors, &mi->cap_tensors, m->ntensors, sizeof *m->tensors,
                   DTA_MAX_TENSORS, err)) != DTA_OK)
        return st;
    if (!mi->last_root || mi->last_root[0] != 0)
        mi->last_root = arena_dupn(m, "", 0);
    uint64_t *sh = arena_alloc(m, sizeof(uint64_t) * (size_t)(rank ? rank : 1), sizeof(uint64_t));
    if (!mi->last_root || !sh)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (int k = 0; k < rank; k++)
        sh[k] = shape[k];
    size_t sidx = m->nstorages++;
    m->storages[sidx] = (dta_storage){.file = file, .dtype = dtype, .numel = numel,
                                      .nbytes = nbytes, .offset = offset, .ntensors = 1};
    m->tensors[m->ntensors++] = (dta_tensor){.name = name, .root = (char *)mi->last_root,
                                             .name_nul = name_nul, .shape = sh, .dtype = dtype,
                                             .rank = rank, .numel = numel, .nbytes = nbytes,
                                             .storage = sidx, .file = file};
    return DTA_OK;
}

/* Room in *arr (of elem bytes, *cap slots) for need items, doubling; need <= the caller's
 * cap on them. */
static dta_status reserve_n(void **arr, size_t *cap, size_t need, size_t elem, dta_error *err)
{
    if (need <= *cap)
        return DTA_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2; /* need <= DTA_MAX_TENSORS or DTA_MAX_FILES: no overflow */
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *arr = p;
    *cap = ncap;
    return DTA_OK;
}

dta_status dtap_model_append(dta_model *m, dta_model *part, dta_error *err)
{
    model_impl *mi = impl(m);
    dta_status st;
    /* the caps that adding them one by one checks (every count is within its cap) */
    if (part->nfiles > DTA_MAX_FILES - m->nfiles || part->ntensors > DTA_MAX_TENSORS - m->ntensors ||
        part->nstorages > DTA_MAX_TENSORS - m->nstorages ||
        part->nnotes > DTA_MAX_TENSORS - m->nnotes ||
        part->nmetadata > DTA_MAX_TENSORS - m->nmetadata)
        return dta_error_set(err, DTA_E_LIMIT, 0, "more than %zu entries",
                             (size_t)DTA_MAX_TENSORS);
    if ((st = reserve_n((void **)&m->files, &mi->cap_files, m->nfiles + part->nfiles,
                        sizeof *m->files, err)) != DTA_OK ||
        (st = reserve_n((void **)&m->storages, &mi->cap_storages, m->nstorages + part->nstorages,
                        sizeof *m->storages, err)) != DTA_OK ||
        (st = reserve_n((void **)&m->tensors, &mi->cap_tensors, m->ntensors + part->ntensors,
                        sizeof *m->tensors, err)) != DTA_OK ||
        (st = reserve_n((void **)&m->notes, &mi->cap_notes, m->nnotes + part->nnotes,
                        sizeof *m->notes, err)) != DTA_OK ||
        (st = reserve_n((void **)&m->metadata, &mi->cap_metadata, m->nmetadata + part->nmetadata,
                        sizeof *m->metadata, err)) != DTA_OK)
        return st;
    size_t f0 = m->nfiles, s0 = m->nstorages;
    for (size_t i = 0; i < part->nfiles; i++)
        m->files[m->nfiles++] = part->files[i];
    for (size_t i = 0; i < part->nstorages; i++) {
        dta_storage *s = &m->storages[m->nstorages++];
        *s = part->storages[i];
        s->file += f0;
    }
    for (size_t i = 0; i < part->ntensors; i++) {
        dta_tensor *t = &m->tensors[m->ntensors++];
        *t = part->tensors[i];
        t->file += f0;
        if (t->storage != SIZE_MAX)
            t->storage += s0;
    }
    if (part->nnotes)
        memcpy(m->notes + m->nnotes, part->notes, part->nnotes * sizeof *m->notes);
    m->nnotes += part->nnotes;
    if (part->nmetadata)
        memcpy(m->metadata + m->nmetadata, part->metadata, part->nmetadata * sizeof *m->metadata);
    m->nmetadata += part->nmetadata;
    dtap_arena_splice(&mi->arena, &impl(part)->arena);
    impl(part)->last_root = NULL;
    part->nfiles = part->nstorages = part->ntensors = part->nnotes = part->nmetadata = 0;
    return DTA_OK;
}

dta_status dtap_model_add_note(dta_model *m, dta_rule rule, const char *subject,
                               const char *message, dta_error *err)
{
    const dta_rule_info *ri = dta_rule_get(rule);
    if (!ri)
        return dta_error_set(err, DTA_E_ARG, 0, "note with unknown rule %d", (int)rule);
    dta_status st = grow((void **)&m->notes, &impl(m)->cap_notes, m->nnotes, sizeof *m->notes,
                         DTA_MAX_TENSORS, err);
    if (st != DTA_OK)
        return st;
    dta_note *n = &m->notes[m->nnotes];
    n->rule = ri->name;
    n->rule_id = rule;
    n->severity = ri->severity;
    n->subject = strdup(subject ? subject : "");
    n->message = strdup(message ? message : "");
    if (!n->subject || !n->message) {
        free(n->subject);
        free(n->message);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    m->nnotes++;
    return DTA_OK;
}

dta_status dtap_model_add_metadata(dta_model *m, const char *key, const char *value,
                                   dta_error *err)
{
    dta_status st = grow((void **)&m->metadata, &impl(m)->cap_metadata, m->nmetadata,
                         sizeof *m->metadata, DTA_MAX_TENSORS, err);
    if (st != DTA_OK)
        return st;
    dta_kv *kv = &m->metadata[m->nmetadata];
    kv->key = strdup(key);
    kv->value = strdup(value);
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    m->nmetadata++;
    return DTA_OK;
}

bool dtap_name_matches(const char *glob, const char *name)
{
    char buf[DTA_MAX_NAME_LEN + 1];
    size_t n = strlen(name);
    if (n > DTA_MAX_NAME_LEN)
        n = DTA_MAX_NAME_LEN;
    memcpy(buf, name, n);
    buf[n] = 0;
    for (;;) {
        if (fnmatch(glob, buf, 0) == 0)
            return true;
        char *dot = strrchr(buf, '.');
        if (!dot)
            return false;
        *dot = 0;
    }
}

void dtap_model_finish(dta_model *m)
{
    for (size_t i = 0; i < m->ntensors; i++) {
        dta_tensor *t = &m->tensors[i];
        t->shared = t->storage != SIZE_MAX && m->storages[t->storage].ntensors > 1;
    }
}

void dtap_model_release_records(dta_model *m)
{
    for (size_t i = 0; i < m->nstorages; i++)
        free(m->storages[i].key);
    free(m->tensors);
    free(m->storages);
    m->tensors = NULL;
    m->storages = NULL;
    m->ntensors = m->nstorages = 0;
    impl(m)->cap_tensors = impl(m)->cap_storages = 0;
}

void dta_model_free(dta_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nfiles; i++)
        free(m->files[i].path);
    arena_free(m); /* tensor names, roots, shapes, strides */
    for (size_t i = 0; i < m->nstorages; i++)
        free(m->storages[i].key);
    for (size_t i = 0; i < m->nnotes; i++) {
        free(m->notes[i].subject);
        free(m->notes[i].message);
    }
    for (size_t i = 0; i < m->nmetadata; i++) {
        free(m->metadata[i].key);
        free(m->metadata[i].value);
    }
    free(m->files);
    free(m->tensors);
    free(m->storages);
    free(m->notes);
    free(m->metadata);
    free(m->adapter); /* one block */
    for (size_t i = 0; i < m->nmodel_types; i++)
        free(m->model_types[i]);
    free(m->model_types);
    for (size_t i = 0; i < m->narchitectures; i++)
        free(m->architectures[i]);
    free(m->architectures);
    free(m->class_name);
    free(m->index_path);
    free(m->quant_config);
    free(m->path);
    free(m);
}

bool dtap_contiguous_view(const dta_tensor *t, uint64_t *first)
{
    *first = t->storage_offset;
    if (!t->stride || t->numel <= 1)
        return true;
    uint64_t want = 1;
    for (int k = t->rank - 1; k >= 0; k--) {
        if (t->shape[k] != 1 && (uint64_t)t->stride[k] != want)
            return false;
        want *= t->shape[k];
    }
    return true;
}

dta_status dtap_gather_view(int fd, const char *path, const char *tensor, const dta_tensor *t,
                            const dta_storage *s, unsigned char **buf, size_t *cap,
                            dta_error *err)
{
    unsigned es = dta_dtype_elem_size(s->dtype);
    if (!es)
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                             "%s: tensor '%.200s' is a strided view of %s values, which have no "
                             "per-element address",
                             path, t->name, dta_dtype_name(s->dtype));
    if (s->nbytes > DTA_MAX_GATHER_BYTES || t->numel > DTA_MAX_GATHER_BYTES / es)
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                             "%s: tensor '%.200s' is a non-contiguous view of a %llu-byte "
                             "storage; views above %u bytes are not gathered",
                             path, t->name, (unsigned long long)s->nbytes, DTA_MAX_GATHER_BYTES);
    size_t need = (size_t)t->numel * es;
    if (need > *cap || !*buf) {
        unsigned char *nb = realloc(*buf, need ? need : 1);
        if (!nb)
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        *buf = nb;
        *cap = need;
    }
    unsigned char *whole = malloc(s->nbytes ? s->nbytes : 1), *g = *buf;
    if (!whole)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = dtap_pread_all(fd, whole, s->nbytes, s->offset, path, tensor, err);
    if (st == DTA_OK) {
        uint64_t idx[DTA_MAX_RANK] = {0};
        for (uint64_t e = 0; e < t->numel; e++) {
            uint64_t at = t->storage_offset;
            for (int k = 0; k < t->rank; k++)
                at += idx[k] * (uint64_t)t->stride[k]; /* bounded: checked when read */
            memcpy(g + e * es, whole + at * es, es);
            for (int k = t->rank - 1; k >= 0; k--) {
                if (++idx[k] < t->shape[k])
                    break;
                idx[k] = 0;
            }
        }
    }
    free(whole);
    return st;
}
