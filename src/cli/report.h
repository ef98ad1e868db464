/* The renderers: what each command's result looks like as text, JSON, SARIF or GitHub
 * annotations. One file per renderer (report_*.c); they write through jsonw.c and term.c. */
#ifndef DTA_CLI_REPORT_H
#define DTA_CLI_REPORT_H

#include <stdio.h>

#include "dtaudit/audit.h"
#include "dtaudit/convert.h"
#include "dtaudit/diff.h"
#include "dtaudit/model.h"
#include "dtaudit/values.h"
#include "jsonw.h"
#include "options.h"
#include "term.h"

typedef struct {
    const char *path;        /* the PATH as given */
    dta_model *model;        /* NULL when reading failed */
    dta_report *report;
    dta_values *values;      /* audit --values: the scan, else NULL */
    dta_error err;
} input_result;

/* scan / audit: text (report_text.c), JSON (report_json.c); SARIF 2.1.0 and GitHub workflow
 * annotations (report_sarif.c), audit only. The int ones return 0, or 2 when the document
 * could not be built (reported on stderr). */
void report_text(FILE *out, const cli_options *o, const input_result *in, size_t n, bool color);
int report_json(FILE *out, const cli_options *o, const input_result *in, size_t n);
int report_sarif(FILE *out, const cli_options *o, const input_result *in, size_t n);
int report_github(FILE *out, const cli_options *o, const input_result *in, size_t n);
/* One element of JSON "inputs": path, format, files, config_dtype, adapter, metadata. */
void json_input(jw *w, const input_result *r, const cli_options *o);
/* "findings": {"error": N, "warning": N, "info": N} of a summary. */
void json_findings_count(jw *w, const uint64_t sev[3]);

/* diff OLD NEW (report_diff.c): text or JSON by o->format; in[0] old, in[1] new. */
int report_diff(FILE *out, const cli_options *o, const input_result *in, const dta_diff *d);

/* convert and verify summaries (report_convert.c). */
void report_convert_text(FILE *out, const cli_options *o, const dta_convert_result *r);
void report_convert_json(FILE *out, const cli_options *o, const dta_convert_result *r);
void report_verify(FILE *out, const cli_options *o, const dta_verify_result *v, bool ok);

#endif
