/* The reader table: cheap bidders first, then open. */
#ifndef DTAP_FORMAT_H
#define DTAP_FORMAT_H

#include "src.h"
#include "dtaudit/model.h"

#define DTAP_BID_BYTES 512 /* bytes of the file given to bid() */

typedef struct {
    const char *name;
    /* > 0 when this reader claims the file; head holds the first n bytes of size. */
    int (*bid)(const unsigned char *head, size_t n, uint64_t size);
    /* Reads headers into m, adding its file with dtap_model_add_file. */
    dta_status (*open)(const dtap_src *src, dta_model *m, dta_error *err);
} dtap_reader;

/* Readers (one file per format). */
int dtap_safetensors_bid(const unsigned char *head, size_t n, uint64_t size);
dta_status dtap_safetensors_open(const dtap_src *src, dta_model *m, dta_error *err);
int dtap_torchzip_bid(const unsigned char *head, size_t n, uint64_t size);
dta_status dtap_torchzip_open(const dtap_src *src, dta_model *m, dta_error *err);
int dtap_torchlegacy_bid(const unsigned char *head, size_t n, uint64_t size);
dta_status dtap_torchlegacy_open(const dtap_src *src, dta_model *m, dta_error *err);

int dtap_index_bid(const unsigned char *head, size_t n, uint64_t size);
/* The index reader (format_index.c) reads each shard with read_shard; dtap_index_open
 * (format.c) passes dtap_read_weights, so the reader table and the index reader do not
 * depend on each other. */
typedef dta_status (*dtap_read_fn)(const dtap_src *src, dta_model *m, dta_error *err);
dta_status dtap_index_read(const dtap_src *src, dta_model *m, dtap_read_fn read_shard,
                           dta_error *err);
dta_status dtap_index_open(const dtap_src *src, dta_model *m, dta_error *err);

/* Reads a JSON object file (config.json, adapter_config.json, an index) whole; shown names
 * it in messages (util_json.c). */
struct cJSON;
dta_status dtap_read_json(const char *path, const char *shown, struct cJSON **out,
                          dta_error *err);

/* Whether src is read as a torch zip: "PK\3\4" first (as torch.load decides), unless it
 * is a complete safetensors file that no zip reader accepts; a file that is both is an
 * error (DTA_E_FORMAT). */
dta_status dtap_detect_torchzip(const dtap_src *src, bool *torchzip, dta_error *err);

/* A model directory's quantization config (quant_config.c): config.json's
 * quantization_config, else a sidecar file, kept as JSON text in m->quant_config. */
dta_status dtap_quant_read_config(const char *dir, dta_model *m, dta_error *err);

/* A model directory (format_hfdir.c): its weights (an index first, safetensors before
 * .bin), config.json, adapter_config.json and quantization config. */
dta_status dtap_read_directory(const char *dir, dta_model *m, dta_error *err);

/* Reads one source into m with the first reader that bids. */
dta_status dtap_read_src(const dtap_src *src, dta_model *m, dta_error *err);
/* The same, for a weights file only (a shard): no index reader. */
dta_status dtap_read_weights(const dtap_src *src, dta_model *m, dta_error *err);

#endif
