/* The safetensors writer's header (src/lib/write_safetensors.c, docs/formats.md 1.5):
 * the reference writer's order, offsets, compact JSON, escaping and padding, and a file
 * built from it reads back through the reader. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/model.h"
#include "write_safetensors.h"

static const uint64_t S23[] = {2, 3}, S4[] = {4}, S1[] = {1};

Test(write_safetensors, reference_order_offsets_and_padding)
{
    dtap_st_out t[] = {
        {"b", DTA_BF16, 2, S23, 12, 0, 0}, {"a", DTA_F32, 1, S4, 16, 0, 1},
        {"c", DTA_BF16, 1, S4, 8, 0, 2},   {"i", DTA_I64, 1, S1, 8, 0, 3},
        {"z", DTA_U8, 1, S4, 4, 0, 4},
    };
    unsigned char *h = NULL;
    size_t hl = 0;
    dta_error err = {0};
    cr_assert_eq(dtap_st_header(t, 5, NULL, 0, &h, &hl, &err), DTA_OK, "%s", err.msg);
    /* dtype descending in the safetensors enum (I64 > F32 > BF16 > U8), then name */
    static const char *order[] = {"i", "a", "b", "c", "z"};
    static const uint64_t offs[] = {0, 8, 24, 36, 44};
    for (int k = 0; k < 5; k++) {
        cr_assert_str_eq(t[k].name, order[k]);
        cr_assert_eq(t[k].offset, offs[k], "%s", t[k].name);
    }
    cr_assert_eq(t[0].tag, 3u, "tags travel with their entries");
    cr_assert_eq(hl % 8, 0u);
    uint64_t n = 0;
    for (int k = 0; k < 8; k++)
        n |= (uint64_t)h[k] << (8 * k);
    cr_assert_eq(n + 8, hl);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[24,36]},"
                       "\"c\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[36,44]},"
                       "\"z\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[44,48]}}";
    size_t wl = strlen(want);
    cr_assert_geq(n, wl);
    cr_assert(memcmp(h + 8, want, wl) == 0, "%.*s", (int)n, h + 8);
    for (size_t k = 8 + wl; k < hl; k++)
        cr_assert_eq(h[k], ' ', "padding is spaces");
    cr_assert_lt(hl - 8 - wl, 8u);

    /* the file it heads reads back */
    unsigned char *f = calloc(1, hl + 48);
    memcpy(f, h, hl);
    dta_model *m = NULL;
    cr_assert_eq(dta_model_open_memory("w.safetensors", f, hl + 48, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 5u);
    cr_assert_eq(m->nmetadata, 1u);
    dta_model_free(m);
    free(f);
    free(h);
}

Test(write_safetensors, metadata_kept_first_and_names_escaped)
{
    const char *name = "we\"ird\\na\x01me/\xc3\xa9";
    dtap_st_out t[] = {{name, DTA_F16, 1, S1, 2, 0, 0}};
    const dta_kv meta[] = {{"format", "pt"}, {"dropped", "kept"}};
    unsigned char *h = NULL;
    size_t hl = 0;
    dta_error err = {0};
    cr_assert_eq(dtap_st_header(t, 1, meta, 2, &h, &hl, &err), DTA_OK, "%s", err.msg);
    const char *json = (const char *)h + 8;
    cr_assert(strncmp(json, "{\"__metadata__\":{", 17) == 0, "%.80s", json);
    cr_assert(strstr(json, "\"dropped\":\"kept\""), "%.200s", json);
    cr_assert(strstr(json, "\"we\\\"ird\\\\na\\u0001me/\xc3\xa9\""), "%.200s", json);
    /* and the reader gives the same name back */
    unsigned char *f = calloc(1, hl + 2);
    memcpy(f, h, hl);
    dta_model *m = NULL;
    cr_assert_eq(dta_model_open_memory("e.safetensors", f, hl + 2, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_str_eq(m->tensors[0].name, name);
    dta_model_free(m);
    free(f);
    free(h);
}

Test(write_safetensors, format_pt_added_when_absent)
{
    dtap_st_out t[] = {{"x", DTA_F32, 1, S1, 4, 0, 0}};
    const dta_kv meta[] = {{"k", "v"}};
    unsigned char *h = NULL;
    size_t hl = 0;
    dta_error err = {0};
    cr_assert_eq(dtap_st_header(t, 1, meta, 1, &h, &hl, &err), DTA_OK, "%s", err.msg);
    cr_assert(strstr((const char *)h + 8, "\"format\":\"pt\""), "%.100s", h + 8);
    cr_assert(strstr((const char *)h + 8, "\"k\":\"v\""));
    free(h);
    cr_assert_eq(dtap_st_header(t, 0, NULL, 0, &h, &hl, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(hl % 8, 0u);
    free(h);
}
