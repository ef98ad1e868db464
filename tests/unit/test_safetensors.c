/* safetensors reader: the reference reader's rules (docs/formats.md 1.4) plus ours, on buffers
 * built here, one defect per test (like llama.cpp's test-gguf). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "model_build.h"

/* Builds "u64 len | header | data_len zero bytes" and reads it. */
static dta_status read_st(const char *header, size_t hlen, size_t data_len, dta_model **out,
                          dta_error *err)
{
    size_t n = 8 + hlen + data_len;
    unsigned char *buf = calloc(1, n ? n : 1);
    cr_assert(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    dtap_src src;
    dtap_src_open_mem(&src, "mem", buf, n);
    dta_model *m = dtap_model_new("mem", err);
    cr_assert(m);
    dta_status st = dtap_read_src(&src, m, err);
    free(buf);
    if (st != DTA_OK) {
        dta_model_free(m);
        *out = NULL;
    } else {
        dtap_model_finish(m);
        *out = m;
    }
    return st;
}

static dta_status rd(const char *header, size_t data_len, dta_model **m, dta_error *err)
{
    return read_st(header, strlen(header), data_len, m, err);
}

static void expect_error(const char *header, size_t data_len, dta_status code, const char *needle)
{
    dta_model *m;
    dta_error err = {0};
    dta_status st = rd(header, data_len, &m, &err);
    cr_assert_eq(st, code, "header %s: status %d (%s), want %d", header, st, err.msg, code);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert_null(strchr(err.msg, '\n'));
}

Test(safetensors, minimal_file)
{
    dta_model *m;
    dta_error err;
    cr_assert_eq(rd("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, &m,
                    &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 1);
    cr_assert_str_eq(m->tensors[0].name, "w");
    cr_assert_eq(m->tensors[0].dtype, DTA_F32);
    cr_assert_eq(m->tensors[0].rank, 2);
    cr_assert_eq(m->tensors[0].numel, 6);
    cr_assert_eq(m->tensors[0].nbytes, 24);
    cr_assert_str_eq(m->tensors[0].root, "");
    cr_assert_eq(m->storages[m->tensors[0].storage].offset, 8 + strlen("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}"));
    cr_assert_str_eq(m->files[0].format, "safetensors");
    dta_model_free(m);
}

Test(safetensors, whitespace_metadata_unknown_fields_and_escapes)
{
    dta_model *m;
    dta_error err;
    const char *h = " \n{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\\\"q\"},"
                    "\"a\\u00e9\\ud83d\\ude00\":{\"extra\":[1,{\"x\":null}],\"dtype\":\"BF16\","
                    "\"shape\":[],\"data_offsets\":[0,2]},"
                    "\"z\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[2,4]},"
                    "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                    "\"e2\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[4,4]}} \t\r\n  ";
    cr_assert_eq(rd(h, 4, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 4);
    cr_assert_str_eq(m->tensors[0].name, "a\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(m->tensors[0].rank, 0);
    cr_assert_eq(m->tensors[0].numel, 1);
    cr_assert_eq(m->tensors[1].nbytes, 2);
    cr_assert_eq(m->tensors[2].numel, 0);
    cr_assert_eq(m->nmetadata, 2);
    cr_assert_str_eq(m->metadata[1].value, "v\"q");
    dta_model_free(m);
}

Test(safetensors, metadata_null_and_empty_header)
{
    dta_model *m;
    dta_error err;
    cr_assert_eq(rd("{\"__metadata__\":null}", 0, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 0);
    dta_model_free(m);
    cr_assert_eq(rd("{}      ", 0, &m, &err), DTA_OK, "%s", err.msg);
    dta_model_free(m);
}

Test(safetensors, unaligned_offsets_are_legal)
{
    dta_model *m;
    dta_error err;
    cr_assert_eq(rd("{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                    "\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[3,11]}}", 11, &m, &err),
                 DTA_OK, "%s", err.msg);
    dta_model_free(m);
}

Test(safetensors, defects)
{
    const char *t = "\"dtype\":\"F32\",\"shape\":[1],";
    char h[512];
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, DTA_E_FORMAT,
                 "duplicate tensor name 'w'");
    /* same name once escaped: still a duplicate */
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"\\u0077\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                 DTA_E_FORMAT, "duplicate tensor name");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[0,4]},\"b\":{%s\"data_offsets\":[8,12]}}", t, t);
    expect_error(h, 12, DTA_E_FORMAT, "hole");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}", t);
    expect_error(h, 10, DTA_E_FORMAT, "overlapping");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[4,8]}}", t);
    expect_error(h, 8, DTA_E_FORMAT, "hole");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[0,4]}}", t);
    expect_error(h, 5, DTA_E_FORMAT, "trailing");
    expect_error(h, 3, DTA_E_FORMAT, "truncated");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[0,8]}}", t);
    expect_error(h, 8, DTA_E_FORMAT, "needs 4");
    snprintf(h, sizeof h, "{\"a\":{%s\"data_offsets\":[4,0]}}", t);
    expect_error(h, 4, DTA_E_FORMAT, "ending before");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,9223372036854775808],\"data_offsets\":[0,0]}}",
                 0, DTA_E_FORMAT, "overflows");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                 0, DTA_E_FORMAT, "overflows");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,0]}}",
                 0, DTA_E_FORMAT, "64 bits");
    expect_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, DTA_E_FORMAT,
                 "whole bytes");
    expect_error("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT,
                 "unknown dtype");
    expect_error("{\"a\":{\"dtype\":\"C128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
                 DTA_E_FORMAT, "unknown dtype");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT,
                 "not a float");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT,
                 "non-negative");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT,
                 "leading zero");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, DTA_E_FORMAT,
                 "2 items");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, DTA_E_FORMAT,
                 "2 items");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 DTA_E_FORMAT, "duplicate field");
    expect_error("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT, "no dtype");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DTA_E_FORMAT, "no shape");
    expect_error("{\"__metadata__\":{},\"__metadata__\":{}}", 0, DTA_E_FORMAT, "duplicate __metadata__");
    expect_error("{\"__metadata__\":{\"a\":1}}", 0, DTA_E_FORMAT, "not a string");
    expect_error("[]", 0, DTA_E_FORMAT, "array");
    expect_error("{\"a\":1}", 0, DTA_E_FORMAT, "not an object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, DTA_E_FORMAT,
                 "expected");
    expect_error("{}x", 0, DTA_E_FORMAT, "trailing characters");
    expect_error("{\"a\\x\":{}}", 0, DTA_E_FORMAT, "bad escape");
    expect_error("{\"a\\ud800\":{}}", 0, DTA_E_FORMAT, "surrogate");
    expect_error("{\"a\x01\":{}}", 0, DTA_E_FORMAT, "control character");
    expect_error("{\"\xff\":{}}", 0, DTA_E_FORMAT, "UTF-8");
    expect_error("{\"\xc0\xaf\":{}}", 0, DTA_E_FORMAT, "UTF-8"); /* overlong '/' */
    expect_error("{\"\xed\xa0\x80\":{}}", 0, DTA_E_FORMAT, "UTF-8"); /* encoded surrogate */
}

Test(safetensors, nul_padding_rejected)
{
    dta_model *m;
    dta_error err;
    cr_assert_eq(read_st("{}\0\0\0\0\0\0", 8, 0, &m, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "NUL"), "%s", err.msg);
}

Test(safetensors, header_length_rules)
{
    unsigned char buf[16] = {0};
    dtap_src src;
    dta_error err;
    dta_model *m = dtap_model_new("x", &err);
    /* N = 0 */
    dtap_src_open_mem(&src, "x", buf, 16);
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "length is 0"));
    /* N beyond the cap */
    uint64_t big = 100000001;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(big >> (8 * i));
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_LIMIT);
    /* N past the end of the file */
    buf[0] = 100, buf[1] = buf[2] = buf[3] = 0;
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "past the end"), "%s", err.msg);
    /* UINT64_MAX: 8 + N must not wrap */
    memset(buf, 0xff, 8);
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_LIMIT);
    /* shorter than 8 bytes */
    dtap_src_open_mem(&src, "x", buf, 5);
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_FORMAT);
    cr_assert_eq(m->ntensors, 0);
    dta_model_free(m);
}

Test(safetensors, rank_cap)
{
    char h[2048];
    size_t o = (size_t)snprintf(h, sizeof h, "{\"a\":{\"dtype\":\"U8\",\"shape\":[");
    for (int i = 0; i < DTA_MAX_RANK + 1; i++)
        o += (size_t)snprintf(h + o, sizeof h - o, "%s1", i ? "," : "");
    snprintf(h + o, sizeof h - o, "],\"data_offsets\":[0,1]}}");
    expect_error(h, 1, DTA_E_LIMIT, "more than 64");
    /* exactly at the cap is fine */
    o = (size_t)snprintf(h, sizeof h, "{\"a\":{\"dtype\":\"U8\",\"shape\":[");
    for (int i = 0; i < DTA_MAX_RANK; i++)
        o += (size_t)snprintf(h + o, sizeof h - o, "%s1", i ? "," : "");
    snprintf(h + o, sizeof h - o, "],\"data_offsets\":[0,1]}}");
    dta_model *m;
    dta_error err;
    cr_assert_eq(rd(h, 1, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->tensors[0].rank, DTA_MAX_RANK);
    dta_model_free(m);
}

Test(safetensors, skip_depth_cap)
{
    char h[1024];
    size_t o = (size_t)snprintf(h, sizeof h, "{\"a\":{\"x\":");
    for (int i = 0; i < 100; i++)
        h[o++] = '[';
    for (int i = 0; i < 100; i++)
        h[o++] = ']';
    snprintf(h + o, sizeof h - o, ",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
    expect_error(h, 1, DTA_E_LIMIT, "too deep");
}
