/* A growable byte string (util_sbuf.c), for names and headers built piece by piece.
 * Internal to the library. */
#ifndef DTAP_UTIL_SBUF_H
#define DTAP_UTIL_SBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialise, optionally with a max; free p when done. */
typedef struct {
    char *p;    /* NUL-terminated once anything was added (n excludes the NUL) */
    size_t n, cap;
    size_t max; /* 0: no limit; else appends stop at max bytes and set cut */
    bool oom;   /* an allocation failed: later appends do nothing */
    bool cut;   /* max was reached: later appends do nothing */
} dtap_sbuf;

void dtap_sbuf_addn(dtap_sbuf *b, const void *s, size_t n);
void dtap_sbuf_add(dtap_sbuf *b, const char *s);

#endif
