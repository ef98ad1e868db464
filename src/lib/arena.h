/* A bump allocator of 1 MiB chunks, freed all at once: for the many small strings and
 * arrays of a model or a report (a million tensors or modules cost their bytes, not a
 * million mallocs with their headers). *head is the owner's chunk list, NULL when empty. */
#ifndef DTAP_ARENA_H
#define DTAP_ARENA_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct dtap_arena_chunk {
    struct dtap_arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
} dtap_arena_chunk;

#define DTAP_ARENA_CHUNK (1u << 20)

/* n bytes aligned to align (a power of two up to max_align_t), NULL when out of memory. */
static inline void *dtap_arena_alloc(void **head, size_t n, size_t align)
{
    dtap_arena_chunk *c = *head;
    if (c) {
        size_t at = (c->used + align - 1) & ~(align - 1);
        if (at <= c->cap && n <= c->cap - at) {
            c->used = at + n;
            return (char *)c->data + at;
        }
    }
    size_t cap = n > DTAP_ARENA_CHUNK / 4 ? n : DTAP_ARENA_CHUNK - sizeof *c;
    dtap_arena_chunk *nc = malloc(sizeof *nc + cap);
    if (!nc)
        return NULL;
    nc->cap = cap;
    nc->used = n;
    if (c && n > DTAP_ARENA_CHUNK / 4) { /* a big item: keep filling the current chunk */
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        *head = nc;
    }
    return nc->data;
}

static inline char *dtap_arena_strndup(void **head, const char *s, size_t n)
{
    char *p = dtap_arena_alloc(head, n + 1, 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Makes the n bytes at mem (from an allocator that free() frees; n > the chunk header) the
 * first chunk of the empty arena *head. */
static inline void dtap_arena_seed(void **head, void *mem, size_t n)
{
    dtap_arena_chunk *c = mem;
    c->next = NULL;
    c->used = 0;
    c->cap = n - sizeof *c;
    *head = c;
}

/* Moves the chunks of *from into *into (behind its first chunk, which stays the one being
 * filled); *from is left empty. */
static inline void dtap_arena_splice(void **into, void **from)
{
    dtap_arena_chunk *fc = *from, *ic = *into;
    if (!fc)
        return;
    if (!ic) {
        *into = fc;
    } else {
        dtap_arena_chunk *tail = fc;
        while (tail->next)
            tail = tail->next;
        tail->next = ic->next;
        ic->next = fc;
    }
    *from = NULL;
}

static inline void dtap_arena_free(void **head)
{
    for (dtap_arena_chunk *c = *head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    *head = NULL;
}

#endif
