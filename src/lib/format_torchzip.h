/* The torch zip reader's parts that the writer (write_torchzip.c) keeps: the open archive
 * and the data.pkl graph (format_torchzip.c). Internal to the library. */
#ifndef DTAP_FORMAT_TORCHZIP_H
#define DTAP_FORMAT_TORCHZIP_H

#include <stdbool.h>
#include <stddef.h>

#include "dtaudit/model.h"
#include "pickle.h"
#include "zipread.h"

/* What dtap_torchzip_read keeps for a writer: the open archive and the data.pkl graph
 * (owned by the caller on success: dtap_zip_close / dtap_pickle_free). */
typedef struct {
    dtap_zip *zip;
    dtap_pickle *pkl;
    size_t file;         /* model file index it added */
    bool torchscript;    /* constants.pkl or code/ present */
    bool big_endian;     /* byteorder record says "big" */
} dtap_torchzip_parts;

/* dtap_torchzip_open, optionally keeping the archive and graph (keep may be NULL). */
dta_status dtap_torchzip_read(const dtap_src *src, dta_model *m, dtap_torchzip_parts *keep,
                              dta_error *err);

#endif
