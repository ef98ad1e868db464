/* Format detection: a table of readers, cheap bidders first (libarchive's bid()). Model
 * directories are read by format_hfdir.c, dta_model_open is in model_open.c. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "format.h"
#include "model_build.h"
#include "zipread.h"

/* The reader table. Each reader bids a DTAP_BID_* grade on the first bytes and the highest
 * bid wins, whatever the order; equal bids go to the earlier entry. In practice no two
 * readers bid the same on one file: a safetensors length that checks out holds zero bytes
 * that no JSON index or tar header starts with. */
static const dtap_reader readers[] = {
    {DTA_FORMAT_TORCH_ZIP, true, dtap_torchzip_bid, dtap_torchzip_open},
    {DTA_FORMAT_TORCH_LEGACY, true, dtap_torchlegacy_bid, dtap_torchlegacy_open},
    {DTA_FORMAT_SAFETENSORS, true, dtap_safetensors_bid, dtap_safetensors_open},
    {DTA_FORMAT_INDEX, false, dtap_index_bid, dtap_index_open},
};

static const dtap_reader *reader_of(dta_format f)
{
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (readers[i].id == f)
            return &readers[i];
    return NULL;
}

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
        return "a pickle without torch's legacy magic number (torch.load would unpickle it "
               "as a legacy stream, running what it calls): not supported";
    return "not a recognised checkpoint (safetensors, PyTorch zip or legacy PyTorch file)";
}

/* A file starting with "PK\3\4" is a zip to torch.load (torchzip_bid). The same four
 * bytes are also a valid safetensors header length (0x04034B50 = 67,324,752 bytes, under
 * the 100 MB cap), so a safetensors file with a header of exactly that size starts the
 * same way. The file is read as what it validly is: safetensors when it is a complete
 * safetensors file and no zip archive, a zip otherwise; a file that is both (a polyglot:
 * safetensors.load_file and torch.load would return different tensors) is refused. */
static dta_status zip_or_safetensors(const dtap_src *src, dta_format *fmt, dta_error *err)
{
    dta_model *scratch = dtap_model_new(src->name ? src->name : "", NULL);
    if (!scratch)
        return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
    bool st_ok = dtap_safetensors_open(src, scratch, NULL) == DTA_OK;
    dta_model_free(scratch);
    if (!st_ok)
        return DTA_OK; /* not safetensors: the zip reader says what is wrong */
    dtap_zip *z = NULL;
    bool zip_ok = dtap_zip_open(src, &z, NULL) == DTA_OK;
    dtap_zip_close(z);
    if (zip_ok)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "reads both as a safetensors file and as a zip archive (torch.load "
                             "would read the zip): refused as ambiguous");
    *fmt = DTA_FORMAT_SAFETENSORS;
    return DTA_OK;
}

/* The highest bidder on the n bytes at head (DTA_FORMAT_UNKNOWN when none bids); *st_bids
 * whether the safetensors reader bid at all. */
static dta_format best_bid(const unsigned char *head, size_t n, uint64_t size,
                           bool standalone_only, bool *st_bids)
{
    int best = DTAP_BID_NONE;
    dta_format fmt = DTA_FORMAT_UNKNOWN;
    *st_bids = false;
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++) {
        if (standalone_only && !readers[i].standalone)
            continue;
        int b = readers[i].bid(head, n, size);
        if (readers[i].id == DTA_FORMAT_SAFETENSORS)
            *st_bids = b > DTAP_BID_NONE;
        if (b > best) {
            best = b;
            fmt = readers[i].id;
        }
    }
    return fmt;
}

dta_status dtap_detect(const dtap_src *src, bool standalone_only, dta_format *fmt,
                       dta_error *err)
{
    unsigned char head[DTAP_BID_BYTES];
    size_t n = dtap_src_peek(src, 0, head, sizeof head);
    bool st_bids;
    *fmt = best_bid(head, n, src->size, standalone_only, &st_bids);
    if (*fmt == DTA_FORMAT_TORCH_ZIP && st_bids)
        return zip_or_safetensors(src, fmt, err);
    if (*fmt == DTA_FORMAT_UNKNOWN)
        return dta_error_set(err, n == 0 ? DTA_E_FORMAT : DTA_E_UNSUPPORTED, 0, "%s",
                             describe(head, n));
    return DTA_OK;
}

dta_status dtap_read_as(const dtap_src *src, dta_format fmt, dta_model *m, dta_error *err)
{
    const dtap_reader *r = reader_of(fmt);
    if (!r)
        return dta_error_set(err, DTA_E_ARG, 0, "no reader for format %s", dta_format_name(fmt));
    return r->open(src, m, err);
}

static dta_status read_with(const dtap_src *src, dta_model *m, bool standalone_only,
                            dta_error *err)
{
    dta_format fmt;
    dta_status st = dtap_detect(src, standalone_only, &fmt, err);
    return st != DTA_OK ? st : dtap_read_as(src, fmt, m, err);
}

dta_status dtap_read_src(const dtap_src *src, dta_model *m, dta_error *err)
{
    return read_with(src, m, false, err);
}

dta_status dtap_read_weights(const dtap_src *src, dta_model *m, dta_error *err)
{
    return read_with(src, m, true, err);
}

bool dtap_weights_threadsafe(const dtap_src *src)
{
    unsigned char head[DTAP_BID_BYTES];
    size_t n = dtap_src_peek(src, 0, head, sizeof head);
    bool st_bids;
    /* the safetensors reader wins only where no zip bids: no polyglot check then */
    return best_bid(head, n, src->size, true, &st_bids) == DTA_FORMAT_SAFETENSORS;
}

dta_status dtap_index_open(const dtap_src *src, dta_model *m, dta_error *err)
{
    return dtap_index_read(src, m, dtap_read_weights, dtap_weights_threadsafe, err);
}
