/* Private builder API used by readers to fill a dta_model. */
#ifndef DTAP_MODEL_BUILD_H
#define DTAP_MODEL_BUILD_H

#include "dtaudit/model.h"

/* Caps: dtaudit/limits.h (through dtaudit/model.h). */

dta_model *dtap_model_new(const char *path, dta_error *err);

/* malloc(n) (free() frees it), NULL when out of memory; from 2 MiB up, aligned to and
 * advised for 2 MiB pages, so that the kernel fills it with a fault per 2 MiB instead of
 * one per 4 KiB (where transparent huge pages are enabled for madvise; a no-op elsewhere). */
void *dtap_alloc_big(size_t n);

/* Adds a file read as format, returns its index through *idx. */
dta_status dtap_model_add_file(dta_model *m, const char *path, dta_format format,
                               size_t *idx, dta_error *err);

/* Sets the format of the model as a whole (format_id and its name). */
static inline void dtap_model_set_format(dta_model *m, dta_format f)
{
    m->format_id = f;
    m->format = dta_format_name(f);
}

/* Adds a storage; key may be NULL. Returns its index. */
dta_status dtap_model_add_storage(dta_model *m, size_t file, const char *key, dta_dtype dtype,
                                  uint64_t numel, uint64_t offset, size_t *idx, dta_error *err);

/* Adds a tensor. name/root are copied (name_len bytes of name). shape has rank entries,
 * stride may be NULL (contiguous). storage may be SIZE_MAX (meta tensor, no data).
 * Computes numel/nbytes with overflow checks (DTA_E_FORMAT on overflow) and, for a
 * tensor with a storage, checks its extent lies inside the storage. */
dta_status dtap_model_add_tensor(dta_model *m, const char *name, size_t name_len,
                                 const char *root, dta_dtype dtype, int rank,
                                 const uint64_t *shape, const int64_t *stride,
                                 uint64_t storage_offset, size_t storage, size_t file,
                                 dta_error *err);

/* n bytes of the model's own string storage (freed with the model), NULL when out of
 * memory: a reader that parses names straight into it hands them to
 * dtap_model_add_tensor_owned instead of copying each one (a header of a million names
 * then holds each name once, not once in the reader and once in the model). */
char *dtap_model_alloc_str(dta_model *m, size_t n);
/* The arena (arena.h) behind dtap_model_alloc_str, for a reader that allocates from it
 * inline, one name after another. */
void **dtap_model_arena(dta_model *m);

/* dtap_model_add_tensor for a name from dtap_model_alloc_str (NUL-terminated after
 * name_len bytes), kept as it is instead of copied. */
dta_status dtap_model_add_tensor_owned(dta_model *m, char *name, size_t name_len,
                                       const char *root, dta_dtype dtype, int rank,
                                       const uint64_t *shape, const int64_t *stride,
                                       uint64_t storage_offset, size_t storage, size_t file,
                                       dta_error *err);

/* For a reader that has checked what dtap_model_add_storage and dtap_model_add_tensor
 * check (name length, rank, dtype, numel = the shape's product without overflow, nbytes its
 * byte count): a tensor of root "" that is the whole of a storage of its own at offset,
 * both added in one step. name is the model's (dtap_model_alloc_str), NUL-terminated after
 * its length; name_nul says whether its bytes hold a NUL. Fails only as those two
 * fail at their limits (more than DTA_MAX_TENSORS) or out of memory. */
dta_status dtap_model_add_whole(dta_model *m, size_t file, char *name,
                                bool name_nul, dta_dtype dtype, int rank, const uint64_t *shape,
                                uint64_t numel, uint64_t nbytes, uint64_t offset, dta_error *err);

/* Room for n tensors and n storages in an empty model (dtap_alloc_big), for a reader that
 * knows how many are coming (an index's entries); nothing when the model has records or
 * the room cannot be had (they grow as usual then). */
void dtap_model_presize(dta_model *m, size_t n);

/* For a reader that fills the records itself (safetensors, add_entries): room for n more
 * tensors and n more storages, with the limit and the message of adding them one by one
 * ("more than DTA_MAX_TENSORS entries"), or out of memory. The records past ntensors and
 * nstorages are the caller's to fill (every field) before it counts them. */
dta_status dtap_model_reserve(dta_model *m, size_t n, dta_error *err);
/* n bytes aligned to align (a power of two) in the model's own storage, NULL when out of
 * memory; the shared "" root of a flat state dict, NULL when out of memory. */
void *dtap_model_alloc(dta_model *m, size_t n, size_t align);
const char *dtap_model_root_none(dta_model *m);

/* A note raised while reading; its severity is the catalogue's default for rule. */
dta_status dtap_model_add_note(dta_model *m, dta_rule rule, const char *subject,
                               const char *message, dta_error *err);

/* Moves part's files, storages, tensors, notes and metadata to the end of m, in their
 * order (the file and storage indexes they hold shifted to m's), and part's string storage
 * into m's; part is left empty, its arrays kept to read another file into. For a reader
 * that reads files into models of their own on other threads (format_index.c). DTA_E_LIMIT, m unchanged, when m
 * cannot take them under the caps that adding them one by one checks. */
dta_status dtap_model_append(dta_model *m, dta_model *part, dta_error *err);

dta_status dtap_model_add_metadata(dta_model *m, const char *key, const char *value,
                                   dta_error *err);

/* fnmatch(glob, name) for the name or any enclosing module ("a.b.c", "a.b", "a"); '*'
 * also matches '.'. Used by --allow, --only and --keep alike. */
bool dtap_name_matches(const char *glob, const char *name);

/* config.json's model_type (top level, then nested *_config), architectures and diffusers
 * _class_name into m (model_identity.c); doc is a cJSON object. */
struct cJSON;
dta_status dtap_model_read_identity(dta_model *m, const struct cJSON *doc, dta_error *err);

/* Marks tensors whose storage is viewed more than once as shared. Readers call it last. */
void dtap_model_finish(dta_model *m);

/* Frees the tensor and storage records (ntensors and nstorages become 0) but keeps what
 * they pointed to in the model's own storage (names, roots, shapes, strides) until
 * dta_model_free: for a caller that has copied what it needs of the records (verify). */
void dtap_model_release_records(dta_model *m);

/* Element offsets of a view in C order: true when they are one contiguous run (the common
 * case), with *first its first element. Shared by convert and the values scan. */
bool dtap_contiguous_view(const dta_tensor *t, uint64_t *first);

/* The elements of a strided view t of storage s, gathered in C order into *buf (grown to
 * t->numel element-size bytes when *cap is smaller; the caller frees it) from the storage
 * read whole from fd (path names it in messages, and tensor too in a read error when not
 * NULL). Sub-byte dtypes and storages above DTA_MAX_GATHER_BYTES are refused
 * (DTA_E_UNSUPPORTED). The one gather of convert, verify and the values scan. */
dta_status dtap_gather_view(int fd, const char *path, const char *tensor, const dta_tensor *t,
                            const dta_storage *s, unsigned char **buf, size_t *cap,
                            dta_error *err);

#endif
