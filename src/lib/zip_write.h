/* Streaming zip writer (zip_write.c). Internal to the library. */
#ifndef DTAP_ZIP_WRITE_H
#define DTAP_ZIP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/error.h"

/* Sizes and offsets from this one on are written as zip64 fields. */
#define DTAP_ZIP64_LIMIT 0xFFFFFFFFull

/* Streaming zip writer with torch's exact layout (docs/formats.md 2.3/2.4): STORED records
 * named "<prefix>/<rel>", "FB" padding so each record's data starts at a multiple of 64,
 * flags 0x0808 and a data descriptor (0x0800 and none for empty records), zero
 * timestamps, real CRC-32 (zlib), zip64 extra + 24-byte descriptor for records whose size
 * or local header offset is >= 0xFFFFFFFF, zip64 end records always, EOCD counts
 * saturated. Writes sequentially to fd (no seeking; a pipe works). fd stays the caller's. */
typedef struct dtap_zipw dtap_zipw;

/* An archive directory name the writer takes: 1 to 1024 bytes, no '/' or '\\'. */
bool dtap_zipw_valid_prefix(const char *p);

dta_status dtap_zipw_open(int fd, const char *prefix, dtap_zipw **out, dta_error *err);
/* Starts record rel of exactly size bytes. */
dta_status dtap_zipw_begin(dtap_zipw *z, const char *rel, uint64_t size, dta_error *err);
dta_status dtap_zipw_write(dtap_zipw *z, const void *p, size_t n, dta_error *err);
/* Ends the record; DTA_E_ARG unless exactly size bytes came. */
dta_status dtap_zipw_end(dtap_zipw *z, dta_error *err);
/* Writes the central directory and end records and flushes. */
dta_status dtap_zipw_finish(dtap_zipw *z, dta_error *err);
void dtap_zipw_free(dtap_zipw *z);
/* Bytes written so far (the archive size after finish). */
uint64_t dtap_zipw_offset(const dtap_zipw *z);
/* Test hook: the zip64 threshold (0xFFFFFFFF by default; tests lower it to exercise the
 * zip64 fields on small archives, which stay valid zip files). */
void dtap_zipw_set_zip64_threshold(dtap_zipw *z, uint64_t threshold);

#endif
