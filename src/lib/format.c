/* Format detection: a table of readers, cheap bidders first (libarchive's bid()). */
#include <errno.h>
#include <string.h>

#include "format.h"
#include "model_build.h"

static const dtap_reader readers[] = {
    {"torch-zip", dtap_torchzip_bid, dtap_torchzip_open},
    {"torch-legacy", dtap_torchlegacy_bid, dtap_torchlegacy_open},
    {"safetensors", dtap_safetensors_bid, dtap_safetensors_open},
};

/* Names what a file looks like when no reader takes it, so the error says what it is. */
static const char *describe(const unsigned char *h, size_t n)
{
    if (n == 0)
        return "empty file";
    if (n < 8)
        return "file too short to be a checkpoint";
    if (n >= 4 && memcmp(h, "GGUF", 4) == 0)
        return "a GGUF file (not supported)";
    if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
        return "a NumPy .npy file (not supported)";
    if (n >= 8 && memcmp(h, "\x89HDF\r\n\x1a\n", 8) == 0)
        return "an HDF5 file (not supported)";
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        return "a gzip file (not supported)";
    if (n >= 1 && (h[0] == '{' || h[0] == '['))
        return "a JSON file, not a checkpoint";
    if (n >= 2 && h[0] == 0x80 && h[1] <= 5)
        return "a plain pickle without torch's legacy magic number (not supported)";
    return "not a recognised checkpoint (safetensors, PyTorch zip or legacy PyTorch file)";
}

dta_status dtap_read_src(const dtap_src *src, dta_model *m, dta_error *err)
{
    unsigned char head[DTAP_BID_BYTES];
    size_t n = dtap_src_peek(src, 0, head, sizeof head);
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (readers[i].bid(head, n, src->size) > 0)
            return readers[i].open(src, m, err);
    return dta_error_set(err, n == 0 ? DTA_E_FORMAT : DTA_E_UNSUPPORTED, 0, "%s",
                         describe(head, n));
}

dta_status dta_model_open(const char *path, dta_model **out, dta_error *err)
{
    dtap_src src;
    dta_status st;
    dta_model *m;

    *out = NULL;
    if (!path)
        return dta_error_set(err, DTA_E_ARG, 0, "no path");
    st = dtap_src_open_file(&src, path, err);
    if (st != DTA_OK) {
        dta_error_prefix(err, path);
        return st;
    }
    m = dtap_model_new(path, err);
    if (!m) {
        dtap_src_close(&src);
        dta_error_prefix(err, path);
        return DTA_E_NOMEM;
    }
    st = dtap_read_src(&src, m, err);
    dtap_src_close(&src);
    if (st != DTA_OK) {
        dta_error_prefix(err, path);
        dta_model_free(m);
        return st;
    }
    if (m->nfiles > 0)
        m->format = m->files[0].format;
    dtap_model_finish(m);
    *out = m;
    return DTA_OK;
}
