/* The reader table: cheap bidders first, then open. */
#ifndef DTAP_FORMAT_H
#define DTAP_FORMAT_H

#include "src.h"
#include "dtaudit/model.h"

#define DTAP_BID_BYTES 512 /* bytes of the file given to bid() */

/* Bid grades. Every reader bids on the first bytes; the highest bid wins, and equal bids
 * go to the reader earlier in the table (format.c). */
enum {
    DTAP_BID_NONE = 0,
    DTAP_BID_CLAIM = 1,   /* the opening bytes fit, the layout does not check out: claimed
                           * so that the reader names the defect */
    DTAP_BID_TEXT = 20,   /* a text format's keys in the first bytes (an index's weight_map) */
    DTAP_BID_LAYOUT = 50, /* a binary layout that checks out against the file's size (the
                           * safetensors header length), or a container torch.load takes (tar) */
    DTAP_BID_MAGIC = 100, /* the magic number the format's own loader tests */
};

typedef struct {
    dta_format id;
    /* Holds its tensors itself, so it may be a shard; an index refers to other files. */
    bool standalone;
    /* A DTAP_BID_* grade; head holds the first n bytes of a file of size bytes. */
    int (*bid)(const unsigned char *head, size_t n, uint64_t size);
    /* Reads headers into m, adding its file with dtap_model_add_file. */
    dta_status (*open)(const dtap_src *src, dta_model *m, dta_error *err);
} dtap_reader;

/* The reader for src: the highest bid (standalone readers only with standalone_only, as
 * for a shard). *fmt is the winner's id: DTA_FORMAT_SAFETENSORS, _TORCH_ZIP (also for
 * TorchScript, which the zip reader tells apart), _TORCH_LEGACY or _INDEX. A "PK\3\4" file
 * that is also a complete safetensors file is read as what it validly is, and refused
 * when it is both (DTA_E_FORMAT). When no reader bids, the error says what the file looks
 * like (DTA_E_UNSUPPORTED; DTA_E_FORMAT for an empty file). */
dta_status dtap_detect(const dtap_src *src, bool standalone_only, dta_format *fmt,
                       dta_error *err);
/* Reads src into m with the reader whose id is fmt (from dtap_detect). */
dta_status dtap_read_as(const dtap_src *src, dta_format fmt, dta_model *m, dta_error *err);

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
 * depend on each other. A shard for which threadsafe (which may be NULL) is true may be
 * read by read_shard on another thread, into a model of its own. */
typedef dta_status (*dtap_read_fn)(const dtap_src *src, dta_model *m, dta_error *err);
typedef bool (*dtap_threadsafe_fn)(const dtap_src *src);
dta_status dtap_index_read(const dtap_src *src, dta_model *m, dtap_read_fn read_shard,
                           dtap_threadsafe_fn threadsafe, dta_error *err);
dta_status dtap_index_open(const dtap_src *src, dta_model *m, dta_error *err);

/* Reads a JSON object file (config.json, adapter_config.json, an index) whole; shown names
 * it in messages (util_json.c). */
struct cJSON;
dta_status dtap_read_json(const char *path, const char *shown, struct cJSON **out,
                          dta_error *err);

/* A model directory's quantization config (quant_config.c): config.json's
 * quantization_config, else a sidecar file, kept as JSON text in m->quant_config. */
dta_status dtap_quant_read_config(const char *dir, dta_model *m, dta_error *err);

/* A model directory (format_hfdir.c): its weights (an index first, safetensors before
 * .bin), config.json, adapter_config.json and quantization config. Every error names the
 * weights file it is about, else dir. */
dta_status dtap_read_directory(const char *dir, dta_model *m, dta_error *err);

/* Reads one source into m: dtap_detect, then dtap_read_as. */
dta_status dtap_read_src(const dtap_src *src, dta_model *m, dta_error *err);
/* The same, for a weights file only (a shard): standalone readers only. */
dta_status dtap_read_weights(const dtap_src *src, dta_model *m, dta_error *err);
/* Whether dtap_read_weights reads src with the safetensors reader alone, the one reader
 * that may run on several threads at once (each into a model of its own): it touches
 * nothing but its source, its model and its error. */
bool dtap_weights_threadsafe(const dtap_src *src);

#endif
