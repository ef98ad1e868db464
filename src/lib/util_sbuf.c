/* A growable byte string (util_sbuf.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util_sbuf.h"

void dtap_sbuf_addn(dtap_sbuf *b, const void *s, size_t n)
{
    if (b->oom || b->cut) return;
    if (b->max && n > b->max - b->n) {
        n = b->max - b->n;
        b->cut = true;
    }
    if (n > SIZE_MAX - 1 - b->n) { /* checked: the length plus its NUL must fit */
        b->oom = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 128;
        while (nc < b->n + n + 1) {
            if (nc > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            nc *= 2;
        }
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void dtap_sbuf_add(dtap_sbuf *b, const char *s) { dtap_sbuf_addn(b, s, strlen(s)); }
