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
    dta_values *values;      /* audit --values: the scan, else NULL */
    dta_error err;
} input_result;

void report_text(FILE *out, const cli_options *o, const input_result *in, size_t n, bool color);
/* Returns 0, or 2 when the document could not be built (reported on stderr). */
int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n);

/* SARIF 2.1.0 and GitHub workflow annotations (report_sarif.c); audit only. */
int report_sarif(FILE *out, const cli_options *o, const input_result *in, size_t n);
int report_github(FILE *out, const cli_options *o, const input_result *in, size_t n);

/* dtaudit diff OLD NEW (cmd_diff.c): returns the exit status. */
int run_diff(const cli_options *o);

/* Streaming JSON writer (report_json.c), shared by the JSON, SARIF and diff renderers:
 * strings are escaped (control bytes, invalid UTF-8), integers exact to 64 bits. */
typedef struct jw jw;
jw *jw_new(FILE *out);             /* NULL when out of memory (reported) */
int jw_end(jw *w);                 /* newline, flush, free: 0, or 2 on a write error */
void jw_obj(jw *w);
void jw_obj_end(jw *w);
void jw_arr(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *k); /* member name of the open object */
void jw_item(jw *w, bool newline); /* before each array element */
void jw_str(jw *w, const char *s);
void jw_u64(jw *w, uint64_t v);
void jw_num(jw *w, double v);     /* shortest exact form; null when not finite */
void jw_kv_num(jw *w, const char *k, double v);
void jw_kv_null(jw *w, const char *k);
void jw_raw(jw *w, const char *s); /* null, true, a number */
void jw_kv_str(jw *w, const char *k, const char *v);
void jw_kv_u64(jw *w, const char *k, uint64_t v);
void jw_kv_bool(jw *w, const char *k, bool v);
void jw_kv_dtype(jw *w, const char *k, dta_dtype t); /* null for DTA_DTYPE_NONE */
void jw_shape(jw *w, const dta_tensor *t);           /* [2, 3] */
/* One element of "inputs": path, format, files, config_dtype, adapter, metadata. */
void jw_input(jw *w, const input_result *r, const cli_options *o);

/* Helpers shared by the renderers. */
const char *dtype_alias(dta_dtype t);     /* "bf16", "f16", "f32", else the code */
void fmt_count(char *buf, size_t cap, uint64_t v);  /* 1.23M */
void fmt_bytes(char *buf, size_t cap, uint64_t v);  /* 2.4 MiB */
/* Escaping (escape.c). clean: s with control bytes and invalid UTF-8 shown as \xNN and
 * C1 / bidi / zero-width characters as \uNNNN (names from hostile files reach the
 * terminal). shell_quote: a shell word for a suggested command. glob_escape: an fnmatch
 * pattern matching s[0..n) literally, snprintf-like return. */
const char *clean(char *buf, size_t cap, const char *s);
const char *shell_quote(char *buf, size_t cap, const char *s);
size_t glob_escape(char *buf, size_t cap, const char *s, size_t n);
/* clean() into a rotating static buffer (four at a time): printf("%s -> %s", shown(a), shown(b)). */
const char *shown(const char *s);
/* "{0..3,5,7..9}" from sorted distinct indices (the collapsed numeric siblings). */
void fmt_indices(char *buf, size_t cap, const uint64_t *idx, size_t n);
/* Colour on for text output: --color, else NO_COLOR, else whether stdout is a TTY. */
bool cli_use_color(const cli_options *o);

/* Suggested output path for a fix command ("x.safetensors" -> "x.bf16.safetensors"). */
void suggest_output(char *buf, size_t cap, const char *path, dta_dtype to);

#endif
