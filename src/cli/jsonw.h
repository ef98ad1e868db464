/* The one JSON writer of the CLI: scan/audit JSON, SARIF, diff, convert and verify all
 * write through it. A stream (no document tree in memory), buffered in 64 KiB; strings are
 * escaped so that any bytes (control bytes, invalid UTF-8, bidi characters) give valid
 * JSON that cannot drive a terminal when printed; integers are exact to 64 bits; no bare
 * inf or nan is ever written. */
#ifndef DTA_CLI_JSONW_H
#define DTA_CLI_JSONW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dtaudit/dtype.h"
#include "dtaudit/model.h"

typedef struct jw jw;
jw *jw_new(FILE *out);             /* NULL when out of memory (reported) */
int jw_end(jw *w);                 /* newline, flush, free: 0, or 2 on a write error */
/* Opens the document object with its header: tool, version, schema, command. */
void jw_doc(jw *w, const char *command);
void jw_obj(jw *w);
void jw_obj_end(jw *w);
void jw_arr(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *k); /* member name of the open object */
void jw_item(jw *w, bool newline); /* before each array element */
void jw_str(jw *w, const char *s);
void jw_u64(jw *w, uint64_t v);
void jw_num(jw *w, double v);      /* shortest exact form; null when not finite */
void jw_raw(jw *w, const char *s); /* null, true, a number */
void jw_kv_num(jw *w, const char *k, double v);
void jw_kv_null(jw *w, const char *k);
void jw_kv_str(jw *w, const char *k, const char *v);
void jw_kv_u64(jw *w, const char *k, uint64_t v);
void jw_kv_bool(jw *w, const char *k, bool v);
void jw_kv_dtype(jw *w, const char *k, dta_dtype t); /* null for DTA_DTYPE_NONE */
void jw_dims(jw *w, const uint64_t *shape, int rank); /* [2, 3] */
void jw_shape(jw *w, const dta_tensor *t);            /* the tensor's shape as jw_dims */

#endif
