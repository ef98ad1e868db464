/* A map from strings to size_t values: open addressing over dtap_hash (src.h), kept at most
 * half full, growing by doubling. The keys are borrowed: the map holds pointers to
 * NUL-terminated strings the caller keeps alive as long as the map (a model's names,
 * cJSON strings, the caller's own copies). Lookups take a length, so a key may also be a
 * slice of a longer buffer (a pickle string). */
#ifndef DTAP_UTIL_STRMAP_H
#define DTAP_UTIL_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    const char **key; /* NULL: empty slot */
    size_t *val;
    size_t cap, n;
} dtap_strmap;

/* An empty map with room for n keys before it grows; false when out of memory (the map is
 * then empty, and dtap_strmap_free may still be called). {0} is an empty map too. */
bool dtap_strmap_init(dtap_strmap *t, size_t n);
void dtap_strmap_free(dtap_strmap *t);

/* Room for n keys in all, so that puts up to n keys cannot fail; false when out of
 * memory (the map is unchanged). */
bool dtap_strmap_reserve(dtap_strmap *t, size_t n);

/* The value of the len bytes at k, or SIZE_MAX when absent. */
size_t dtap_strmap_get(const dtap_strmap *t, const char *k, size_t len);

/* Maps k (len bytes, k[len] == 0, kept alive by the caller) to v unless it is present;
 * returns the value now stored: v when added, the earlier value when present. SIZE_MAX
 * when the map had to grow and could not (out of memory). */
size_t dtap_strmap_put(dtap_strmap *t, const char *k, size_t len, size_t v);

/* The same for a NUL-terminated k. */
static inline size_t dtap_strmap_gets(const dtap_strmap *t, const char *k)
{
    return dtap_strmap_get(t, k, strlen(k));
}
static inline size_t dtap_strmap_puts(dtap_strmap *t, const char *k, size_t v)
{
    return dtap_strmap_put(t, k, strlen(k), v);
}

#endif
