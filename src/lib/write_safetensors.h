/* safetensors writer: the header of the reference writer (docs/formats.md 1.5). */
#ifndef DTAP_WRITE_SAFETENSORS_H
#define DTAP_WRITE_SAFETENSORS_H

#include "dtaudit/model.h"

typedef struct {
    const char *name;
    dta_dtype dtype;
    int rank;
    const uint64_t *shape;
    uint64_t nbytes;
    uint64_t offset;  /* out: data offset relative to the data buffer */
    size_t tag;       /* the caller's, carried through the sort */
} dtap_st_out;

/* Sorts t[] into the reference writer's order (dtype descending in safetensors enum order,
 * then name bytes ascending), assigns offsets, and builds the file's first 8 + N bytes:
 * the length, then compact JSON ({"__metadata__":{...}} first, "format":"pt" added when
 * absent) padded with spaces to a multiple of 8. *hdr is malloc'd. */
dta_status dtap_st_header(dtap_st_out *t, size_t n, const dta_kv *meta, size_t nmeta,
                          unsigned char **hdr, size_t *hdr_len, dta_error *err);

#endif
