/* dtaudit: the neutral model every reader fills and audit/writers consume.
 *
 * Ownership: a dta_model owns every string and array reachable from it;
 * pointers obtained from it are borrowed and valid until dta_model_free(). */
#ifndef DTAUDIT_MODEL_H
#define DTAUDIT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/dtype.h"
#include "dtaudit/error.h"
#include "dtaudit/limits.h"
#include "dtaudit/rules.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dta_severity and dta_rule: dtaudit/rules.h */

/* What a file or a model was read as. dta_format_name() gives the string that
 * dta_file.format and dta_model.format hold and reports print; names and values stay. */
typedef enum {
    DTA_FORMAT_UNKNOWN = 0,       /* "unknown" */
    DTA_FORMAT_SAFETENSORS,       /* "safetensors" */
    DTA_FORMAT_TORCH_ZIP,         /* "torch-zip": torch.save's zip archive */
    DTA_FORMAT_TORCHSCRIPT,       /* "torchscript": a zip with code/ or constants.pkl */
    DTA_FORMAT_TORCH_LEGACY,      /* "torch-legacy": the stream before torch 1.6, or its tar */
    DTA_FORMAT_INDEX,             /* "index": a sharded checkpoint's index, as detected; a
                                   * model read from one is one of the next two */
    DTA_FORMAT_SAFETENSORS_INDEX, /* "safetensors-index": an index of safetensors shards */
    DTA_FORMAT_TORCH_INDEX,       /* "torch-index": an index with other shards */
    DTA_FORMAT_DIRECTORY,         /* "directory": a model directory */
    DTA_FORMAT_COUNT
} dta_format;

/* The name of f ("safetensors", ...); "unknown" for a value out of range. Static. */
const char *dta_format_name(dta_format f);

/* A file that contributed tensors. */
typedef struct {
    char *path;
    const char *format;   /* static: dta_format_name(format_id) */
    dta_format format_id; /* DTA_FORMAT_SAFETENSORS, _TORCH_ZIP, _TORCHSCRIPT, _TORCH_LEGACY */
} dta_file;

/* A storage (torch) or the byte range of one tensor (safetensors). */
typedef struct {
    size_t file;          /* index into model->files */
    char *key;            /* torch storage key ("0"), NULL for safetensors */
    dta_dtype dtype;      /* element type of the storage */
    uint64_t numel;       /* elements of dtype */
    uint64_t nbytes;
    uint64_t offset;      /* absolute byte offset of the data in the file, UINT64_MAX if unknown */
    size_t ntensors;      /* tensors viewing it */
} dta_storage;

typedef struct {
    char *name;           /* flattened, '.'-joined */
    char *root;           /* state dict it belongs to ("" for a flat one) */
    dta_dtype dtype;
    int rank;
    uint64_t *shape;      /* rank entries */
    int64_t *stride;      /* rank entries, elements; NULL = C-contiguous */
    uint64_t numel;
    uint64_t nbytes;      /* numel * element size */
    uint64_t storage_offset; /* elements into the storage */
    size_t storage;       /* index into model->storages, SIZE_MAX when none (meta) */
    size_t file;          /* index into model->files */
    bool meta;            /* saved without storage */
    bool shared;          /* its storage is viewed by other tensors too */
    bool name_nul;        /* the stored name holds a NUL byte: name is the part before it */
} dta_tensor;

/* A finding raised while reading (unsafe-pickle, meta-tensor, ...). */
typedef struct {
    const char *rule;     /* static: the catalogue's name of rule_id */
    dta_severity severity; /* the catalogue's default */
    char *subject;        /* tensor, module or "module.name" of a pickle global */
    char *message;
    dta_rule rule_id;
} dta_note;

typedef struct {
    char *key;
    char *value;
} dta_kv;

/* A PEFT adapter directory's adapter_config.json (a config with a string "peft_type").
 * One allocation: the strings and the target_modules array live in the same block. */
typedef struct {
    const char *peft_type;      /* "LORA", "IA3", ... */
    const char *base_model;     /* base_model_name_or_path, NULL when absent or null */
    const char *task_type;      /* NULL when absent */
    const char *revision;       /* NULL when absent */
    int64_t r;                  /* LoRA rank, -1 when absent */
    double lora_alpha;          /* -1 when absent */
    const char **target_modules;  /* NULL when absent or given as one regex string */
    size_t ntarget_modules;
    const char *target_regex;   /* target_modules given as a string (a regex), else NULL */
} dta_adapter;

typedef struct dta_model {
    char *path;           /* the PATH given by the user */
    const char *format;   /* format of the input as a whole: dta_format_name(format_id) */
    dta_file *files;
    size_t nfiles;
    dta_tensor *tensors;
    size_t ntensors;
    dta_storage *storages;
    size_t nstorages;
    dta_note *notes;
    size_t nnotes;
    dta_kv *metadata;     /* safetensors __metadata__, in file order */
    size_t nmetadata;
    dta_dtype config_dtype; /* from config.json, DTA_DTYPE_NONE if absent */
    char *index_path;     /* the sharded index read, NULL if none */
    dta_adapter *adapter; /* PEFT adapter_config.json of a directory, NULL if none */
    /* config.json's model identity (intended.h keys on it): "model_type" of the top level,
     * then of nested *_config objects; "architectures"; diffusers' "_class_name". */
    char **model_types;
    size_t nmodel_types;
    char **architectures;
    size_t narchitectures;
    char *class_name;     /* NULL when absent */
    /* The quantization config as compact JSON text (config.json "quantization_config" or
     * "compression_config", else a sidecar: hf_quant_config.json, quantize_config.json,
     * quant_config.json, quantization_config.json, quanto_qmap.json), NULL if none;
     * quant_config_source names where it came from (static string). Read by
     * dta_quant_analyse (quant.h). */
    char *quant_config;
    const char *quant_config_source;
    dta_format format_id; /* the format of the input as a whole: format is its name */
} dta_model;

/* Detects the format from content and reads headers only. */
dta_status dta_model_open(const char *path, dta_model **out, dta_error *err);
/* The same for a checkpoint file held in memory (size bytes at data; name, which may be
 * NULL, names it in the model and in messages). The model keeps offsets into the buffer,
 * never pointers: the buffer may be freed after the call. A sharded index read this way
 * resolves its shards on disk, relative to name. */
dta_status dta_model_open_memory(const char *name, const void *data, size_t size,
                                 dta_model **out, dta_error *err);
void dta_model_free(dta_model *m);

#ifdef __cplusplus
}
#endif
#endif
