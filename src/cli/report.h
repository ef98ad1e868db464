/* Rendering of scan/audit results: text for people, JSON for machines. */
#ifndef DTA_CLI_REPORT_H
#define DTA_CLI_REPORT_H

#include <stdio.h>

#include "dtaudit/audit.h"
#include "dtaudit/model.h"
#include "options.h"

typedef struct {
    const char *path;        /* the PATH as given */
    dta_model *model;        /* NULL when reading failed */
    dta_report *report;
    dta_error err;
} input_result;

void report_text(FILE *out, const cli_options *o, const input_result *in, size_t n, bool color);
/* Returns 0, or 2 when the document could not be built (reported on stderr). */
int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n);

/* Helpers shared by the renderers. */
const char *dtype_alias(dta_dtype t);     /* "bf16", "f16", "f32", else the code */
void fmt_count(char *buf, size_t cap, uint64_t v);  /* 1.23M */
void fmt_bytes(char *buf, size_t cap, uint64_t v);  /* 2.4 MiB */
/* Suggested output path for a fix command ("x.safetensors" -> "x.bf16.safetensors"). */
void suggest_output(char *buf, size_t cap, const char *path, dta_dtype to);

#endif
