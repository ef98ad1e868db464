/* The string map (util_strmap.h). */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src.h"
#include "util_strmap.h"

static bool alloc_slots(dtap_strmap *t, size_t cap)
{
    t->key = calloc(cap, sizeof *t->key);
    t->val = malloc(cap * sizeof *t->val);
    if (!t->key || !t->val) {
        free(t->key);
        free(t->val);
        t->key = NULL;
        t->val = NULL;
        t->cap = 0;
        return false;
    }
    t->cap = cap;
    return true;
}

bool dtap_strmap_init(dtap_strmap *t, size_t n)
{
    size_t cap = 16;
    memset(t, 0, sizeof *t);
    while (cap < 2 * n + 2) {
        if (cap > SIZE_MAX / 4 / sizeof(size_t))
            return false;
        cap *= 2;
    }
    return alloc_slots(t, cap);
}

void dtap_strmap_free(dtap_strmap *t)
{
    free(t->key);
    free(t->val);
    memset(t, 0, sizeof *t);
}

/* Whether the stored key s is the len bytes at k. Reads s only up to its NUL: memcmp may
 * read all len bytes of a shorter s (ASan: heap-buffer-overflow). */
static bool key_is(const char *s, const char *k, size_t len)
{
    return strncmp(s, k, len) == 0 && strnlen(s, len + 1) == len;
}

/* The slot of k, or the empty slot where it would go. */
static size_t slot_of(const dtap_strmap *t, const char *k, size_t len)
{
    size_t h = (size_t)dtap_hash(k, len, 0) & (t->cap - 1);
    while (t->key[h] && !key_is(t->key[h], k, len))
        h = (h + 1) & (t->cap - 1);
    return h;
}

size_t dtap_strmap_get(const dtap_strmap *t, const char *k, size_t len)
{
    if (!t->cap)
        return SIZE_MAX;
    size_t h = slot_of(t, k, len);
    return t->key[h] ? t->val[h] : SIZE_MAX;
}

static bool grow(dtap_strmap *t)
{
    dtap_strmap o = *t;
    if (o.cap > SIZE_MAX / 4 / sizeof(size_t) || !alloc_slots(t, o.cap ? 2 * o.cap : 16)) {
        *t = o;
        return false;
    }
    for (size_t i = 0; i < o.cap; i++)
        if (o.key[i]) {
            size_t h = slot_of(t, o.key[i], strlen(o.key[i]));
            t->key[h] = o.key[i];
            t->val[h] = o.val[i];
        }
    t->n = o.n;
    free(o.key);
    free(o.val);
    return true;
}

bool dtap_strmap_reserve(dtap_strmap *t, size_t n)
{
    while (2 * n > t->cap)
        if (!grow(t))
            return false;
    return true;
}

size_t dtap_strmap_put(dtap_strmap *t, const char *k, size_t len, size_t v)
{
    if (2 * (t->n + 1) > t->cap && !grow(t))
        return SIZE_MAX;
    size_t h = slot_of(t, k, len);
    if (!t->key[h]) {
        t->key[h] = k;
        t->val[h] = v;
        t->n++;
    }
    return t->val[h];
}
