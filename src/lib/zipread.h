/* Zip directory reading for torch checkpoints (libzip underneath).
 *
 * Ownership: entries and names are owned by the dtap_zip and valid until
 * dtap_zip_close(). */
#ifndef DTAP_ZIPREAD_H
#define DTAP_ZIPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/limits.h"
#include "src.h"

#define DTAP_ZIP_STORED  0
#define DTAP_ZIP_DEFLATE 8

typedef struct {
    const char *name;     /* full name, NUL-terminated */
    size_t name_len;
    uint64_t size;        /* uncompressed */
    uint64_t comp_size;
    uint16_t method;      /* DTAP_ZIP_STORED, DTAP_ZIP_DEFLATE, ... */
    uint32_t crc;
    uint64_t local_offset; /* absolute offset of the local header (archive prefix included) */
} dtap_zip_entry;

typedef struct dtap_zip dtap_zip;

/* Opens the archive over src (borrowed; must outlive the zip). DTA_E_FORMAT when it is
 * not a zip archive libzip can read. */
dta_status dtap_zip_open(const dtap_src *src, dtap_zip **out, dta_error *err);
void dtap_zip_close(dtap_zip *z);

size_t dtap_zip_count(const dtap_zip *z);
const dtap_zip_entry *dtap_zip_entry_at(const dtap_zip *z, size_t i);
/* Archive name: the text before the first '/' of the first central entry ("" if none). */
const char *dtap_zip_prefix(const dtap_zip *z);
/* Looks up "<prefix>/<rel>" (exact match). NULL when absent. */
const dtap_zip_entry *dtap_zip_find(const dtap_zip *z, const char *rel);
/* Absolute offset of a STORED entry's data, from its local header (30 + name + extra). */
dta_status dtap_zip_data_offset(const dtap_zip *z, const dtap_zip_entry *e, uint64_t *off,
                                dta_error *err);
/* Bytes a record may hold after inflating: UINT64_MAX for stored records, else
 * DTA_MAX_INFLATE_FREE + DTA_MAX_INFLATE_RATIO per compressed byte (zip bombs). */
uint64_t dtap_zip_inflate_cap(const dtap_zip_entry *e);
/* Passes a record's bytes (stored: read in place; deflated: inflated) to sink in chunks
 * of at most 1 MiB; memory stays bounded whatever the record's size. */
typedef dta_status (*dtap_zip_sink)(void *ctx, const void *data, size_t n, dta_error *err);
dta_status dtap_zip_stream(const dtap_zip *z, const dtap_zip_entry *e, dtap_zip_sink sink, void *ctx,
                           dta_error *err);
/* Reads a whole entry (stored or compressed) into a malloc'd buffer (NUL-terminated
 * for convenience; *n excludes the NUL). DTA_E_LIMIT when its size exceeds cap. */
dta_status dtap_zip_read(const dtap_zip *z, const dtap_zip_entry *e, uint64_t cap,
                         unsigned char **out, size_t *n, dta_error *err);

#endif
