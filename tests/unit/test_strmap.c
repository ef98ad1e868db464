/* The string map of src/lib/util_strmap.c: values by key, the first value kept for a key
 * put twice, growth from an empty map through many keys, lookups by a slice of a longer
 * buffer, keys that are prefixes of each other. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util_strmap.h"

Test(strmap, empty)
{
    dtap_strmap t = {0};
    cr_assert_eq(dtap_strmap_gets(&t, "a"), SIZE_MAX);
    dtap_strmap_free(&t);
    cr_assert(dtap_strmap_init(&t, 0));
    cr_assert_eq(dtap_strmap_gets(&t, ""), SIZE_MAX);
    dtap_strmap_free(&t);
}

Test(strmap, first_value_kept_and_prefixes)
{
    dtap_strmap t;
    cr_assert(dtap_strmap_init(&t, 4));
    cr_assert_eq(dtap_strmap_puts(&t, "layer", 1), 1);
    cr_assert_eq(dtap_strmap_puts(&t, "layer.0", 2), 2);
    cr_assert_eq(dtap_strmap_puts(&t, "", 3), 3);
    cr_assert_eq(dtap_strmap_puts(&t, "layer", 9), 1, "a key put twice keeps its first value");
    cr_assert_eq(t.n, 3);
    cr_assert_eq(dtap_strmap_gets(&t, "layer"), 1);
    cr_assert_eq(dtap_strmap_gets(&t, "layer.0"), 2);
    cr_assert_eq(dtap_strmap_gets(&t, ""), 3);
    cr_assert_eq(dtap_strmap_gets(&t, "layer."), SIZE_MAX);
    cr_assert_eq(dtap_strmap_gets(&t, "laye"), SIZE_MAX);
    /* a slice of a longer buffer finds the key of its length only */
    cr_assert_eq(dtap_strmap_get(&t, "layer.0.weight", 5), 1);
    cr_assert_eq(dtap_strmap_get(&t, "layer.0.weight", 7), 2);
    cr_assert_eq(dtap_strmap_get(&t, "layer.0.weight", 6), SIZE_MAX);
    dtap_strmap_free(&t);
}

Test(strmap, grows_from_empty)
{
    enum { N = 50000 };
    char (*keys)[24] = malloc(sizeof *keys * N);
    cr_assert_not_null(keys);
    dtap_strmap t = {0};
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "model.layers.%zu.w", i);
        cr_assert_eq(dtap_strmap_puts(&t, keys[i], i), i);
        cr_assert_leq(2 * t.n, t.cap, "at most half full");
    }
    cr_assert_eq(t.n, N);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(dtap_strmap_gets(&t, keys[i]), i);
    char other[32];
    for (size_t i = 0; i < 1000; i++) {
        snprintf(other, sizeof other, "model.layers.%zu.b", i);
        cr_assert_eq(dtap_strmap_gets(&t, other), SIZE_MAX);
    }
    dtap_strmap_free(&t);
    free(keys);
}

Test(strmap, reserve_then_puts_do_not_grow)
{
    static char keys[100][8];
    dtap_strmap t = {0};
    cr_assert(dtap_strmap_reserve(&t, 100));
    size_t cap = t.cap;
    cr_assert_geq(cap, 200);
    for (size_t i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        cr_assert_eq(dtap_strmap_puts(&t, keys[i], i), i);
    }
    cr_assert_eq(t.cap, cap, "reserved room: no growth");
    cr_assert(dtap_strmap_reserve(&t, 50), "less than held: nothing to do");
    cr_assert_eq(t.cap, cap);
    dtap_strmap_free(&t);
}
