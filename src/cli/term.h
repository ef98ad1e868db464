/* The terminal: colour (palette, whether it is on), number and shape formatting, and the
 * escaping of text from hostile files (escape.c). Every text renderer and command uses
 * these; nothing here knows about reports. */
#ifndef DTA_CLI_TERM_H
#define DTA_CLI_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtaudit/audit.h"
#include "dtaudit/model.h"
#include "options.h"

#define BOLD "\033[1m"
#define DIM "\033[2m"
#define RED "\033[31m"
#define YELLOW "\033[33m"
#define CYAN "\033[36m"
#define GREEN "\033[32m"
#define RESET "\033[0m"

/* Colour of one text document: C(p, BOLD) is the code when colour is on, else "". */
typedef struct {
    bool on;
} palette;

static inline const char *C(const palette *p, const char *code) { return p->on ? code : ""; }

/* Colour on for text output: --color, else NO_COLOR, else whether stdout is a TTY. */
bool cli_use_color(const cli_options *o);
/* RED for errors, YELLOW for warnings, CYAN for info. */
const char *sev_color(dta_severity s);

const char *dtype_alias(dta_dtype t);               /* "bf16", "f16", "f32", else the code */
void fmt_count(char *buf, size_t cap, uint64_t v);  /* 1.23M */
void fmt_bytes(char *buf, size_t cap, uint64_t v);  /* 2.4 MiB */
void fmt_shape(char *buf, size_t cap, const dta_tensor *t); /* [2, 3] */

/* Escaping (escape.c). clean: s with control bytes and invalid UTF-8 shown as \xNN and
 * C1 / bidi / zero-width characters as \uNNNN (names from hostile files reach the
 * terminal). shell_quote: a shell word for a suggested command. glob_escape: an fnmatch
 * pattern matching s[0..n) literally, snprintf-like return. */
const char *clean(char *buf, size_t cap, const char *s);
const char *shell_quote(char *buf, size_t cap, const char *s);
size_t glob_escape(char *buf, size_t cap, const char *s, size_t n);
/* clean() into a rotating static buffer (four at a time): printf("%s -> %s", shown(a), shown(b)). */
const char *shown(const char *s);

#endif
