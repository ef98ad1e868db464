/* Boundary tests of the readers' caps (tests/fuzz/LIMITS.md): each cap exactly at its
 * value is accepted (or fails for another reason than the cap), and one past it is
 * DTA_E_LIMIT. Inputs are built in memory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "model_build.h"
#include "pickle.h"
#include "zipread.h"

/* ---- safetensors ---------------------------------------------------------------------- */

static unsigned char *st_buf(const char *header, size_t hlen, size_t pad_to, size_t data_len,
                             size_t *n)
{
    size_t h = pad_to > hlen ? pad_to : hlen;
    *n = 8 + h + data_len;
    unsigned char *buf = calloc(1, *n);
    cr_assert_not_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', h - hlen);
    return buf;
}

static dta_status st_read(const unsigned char *buf, size_t n, dta_model **out, dta_error *err)
{
    dtap_src src;
    dtap_src_open_mem(&src, "mem", buf, n);
    dta_model *m = dtap_model_new("mem", err);
    cr_assert_not_null(m);
    dta_status st = dtap_read_src(&src, m, err);
    if (st != DTA_OK || !out) {
        dta_model_free(m);
        if (out) *out = NULL;
    } else {
        *out = m;
    }
    return st;
}

static dta_status st_name(size_t len, dta_error *err)
{
    char *name = malloc(len + 1);
    cr_assert_not_null(name);
    memset(name, 'a', len);
    name[len] = 0;
    size_t cap = len + 128, n;
    char *h = malloc(cap);
    cr_assert_not_null(h);
    int hl = snprintf(h, cap, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
    unsigned char *buf = st_buf(h, (size_t)hl, 0, 1, &n);
    dta_model *m = NULL;
    dta_status st = st_read(buf, n, &m, err);
    if (st == DTA_OK) {
        cr_assert_eq(m->ntensors, 1);
        cr_assert_eq(strlen(m->tensors[0].name), len);
        dta_model_free(m);
    }
    free(buf);
    free(h);
    free(name);
    return st;
}

Test(limits, tensor_name_len)
{
    dta_error err = {0};
    cr_assert_eq(st_name(DTA_MAX_NAME_LEN, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(st_name(DTA_MAX_NAME_LEN + 1, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "longer than"), "%s", err.msg);
}

Test(limits, model_rank)
{
    dta_error err = {0};
    uint64_t shape[DTA_MAX_RANK + 1];
    for (int i = 0; i <= DTA_MAX_RANK; i++) shape[i] = 1;
    dta_model *m = dtap_model_new("mem", &err);
    cr_assert_not_null(m);
    size_t file;
    cr_assert_eq(dtap_model_add_file(m, "mem", DTA_FORMAT_TORCH_ZIP, &file, &err), DTA_OK);
    cr_assert_eq(dtap_model_add_tensor(m, "a", 1, "", DTA_F32, DTA_MAX_RANK, shape, NULL, 0,
                                       SIZE_MAX, file, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_model_add_tensor(m, "b", 1, "", DTA_F32, DTA_MAX_RANK + 1, shape, NULL, 0,
                                       SIZE_MAX, file, &err), DTA_E_LIMIT);
    cr_assert_eq(dtap_model_add_tensor(m, "c", 1, "", DTA_F32, -1, shape, NULL, 0, SIZE_MAX, file,
                                       &err), DTA_E_LIMIT);
    cr_assert_eq(m->ntensors, 1);
    dta_model_free(m);
}

/* A header of exactly DTA_MAX_SAFETENSORS_HEADER bytes ("{}" and spaces) is read; one byte more is
 * refused before anything is allocated. */
Test(limits, safetensors_header_size)
{
    dta_error err = {0};
    size_t n;
    unsigned char *buf = st_buf("{}", 2, (size_t)DTA_MAX_SAFETENSORS_HEADER, 0, &n);
    dta_model *m = NULL;
    cr_assert_eq(st_read(buf, n, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 0);
    dta_model_free(m);
    free(buf);

    unsigned char small[64] = {0};
    uint64_t h = DTA_MAX_SAFETENSORS_HEADER + 1;
    for (int i = 0; i < 8; i++) small[i] = (unsigned char)(h >> (8 * i));
    memcpy(small + 8, "{}", 2);
    dtap_src src;
    dtap_src_open_mem(&src, "mem", small, sizeof small);
    m = dtap_model_new("mem", &err);
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "limit"), "%s", err.msg);
    /* the same length in a file too short for it is a format error, not the cap */
    h = DTA_MAX_SAFETENSORS_HEADER;
    for (int i = 0; i < 8; i++) small[i] = (unsigned char)(h >> (8 * i));
    cr_assert_eq(dtap_safetensors_open(&src, m, &err), DTA_E_FORMAT);
    dta_model_free(m);
}

/* ---- pickle ----------------------------------------------------------------------------- */

static dta_status pk_load(const unsigned char *p, size_t n, dta_error *err)
{
    dtap_pickle *pk = NULL;
    dta_status st = dtap_pickle_load(p, n, NULL, &pk, NULL, err);
    if (st == DTA_OK) cr_assert_not_null(pk);
    dtap_pickle_free(pk);
    return st;
}

/* k MARKs, then NONE STOP. */
static dta_status pk_marks(size_t k, dta_error *err)
{
    size_t n = 2 + k + 2;
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    p[0] = 0x80, p[1] = 2;
    memset(p + 2, '(', k);
    p[2 + k] = 'N', p[3 + k] = '.';
    dta_status st = pk_load(p, n, err);
    free(p);
    return st;
}

Test(limits, pickle_marks)
{
    dta_error err = {0};
    cr_assert_eq(pk_marks(DTA_MAX_PICKLE_MARKS, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(pk_marks(DTA_MAX_PICKLE_MARKS + 1, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "MARK"), "%s", err.msg);
}

/* k items on the stack: NONE BINPUT 0, then k-1 BINGET 0 (one node, k slots), STOP. */
static dta_status pk_stack(size_t k, dta_error *err)
{
    size_t n = 2 + 3 + 2 * (k - 1) + 1, o = 0;
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    p[o++] = 0x80, p[o++] = 2, p[o++] = 'N', p[o++] = 'q', p[o++] = 0;
    for (size_t i = 1; i < k; i++) p[o++] = 'h', p[o++] = 0;
    p[o++] = '.';
    dta_status st = pk_load(p, o, err);
    free(p);
    return st;
}

Test(limits, pickle_stack)
{
    dta_error err = {0};
    cr_assert_eq(pk_stack(DTA_MAX_PICKLE_STACK, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(pk_stack(DTA_MAX_PICKLE_STACK + 1, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "stack depth"), "%s", err.msg);
}

static dta_status pk_memo(uint32_t idx, dta_error *err)
{
    unsigned char p[] = {0x80, 2, 'N', 'r', (unsigned char)idx, (unsigned char)(idx >> 8),
                         (unsigned char)(idx >> 16), (unsigned char)(idx >> 24), '.'};
    return pk_load(p, sizeof p, err);
}

Test(limits, pickle_memo_index)
{
    dta_error err = {0};
    cr_assert_eq(pk_memo(DTA_MAX_PICKLE_MEMO - 1, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(pk_memo(DTA_MAX_PICKLE_MEMO, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "memo index"), "%s", err.msg);
}

/* A length prefix at the cap gets past the cap (and fails as truncated: the bytes are
 * not there); one more is DTA_E_LIMIT. Checked for the u32 and u64 length opcodes. */
static dta_status pk_len(unsigned char op, uint64_t len, int width, dta_error *err)
{
    unsigned char p[16];
    size_t o = 0;
    p[o++] = 0x80, p[o++] = 4, p[o++] = op;
    for (int i = 0; i < width; i++) p[o++] = (unsigned char)(len >> (8 * i));
    p[o++] = '.';
    return pk_load(p, o, err);
}

Test(limits, pickle_string_len)
{
    dta_error err = {0};
    static const unsigned char ops4[] = {'X', 'B', 'T', 0x8b};
    for (size_t i = 0; i < sizeof ops4; i++) {
        cr_assert_eq(pk_len(ops4[i], DTA_MAX_PICKLE_STRING, 4, &err), DTA_E_FORMAT,
                     "op 0x%02x: %s", ops4[i], err.msg);
        cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
        cr_assert_eq(pk_len(ops4[i], DTA_MAX_PICKLE_STRING + 1ull, 4, &err), DTA_E_LIMIT,
                     "op 0x%02x", ops4[i]);
    }
    static const unsigned char ops8[] = {0x8d, 0x8e, 0x96};
    for (size_t i = 0; i < sizeof ops8; i++) {
        cr_assert_eq(pk_len(ops8[i], DTA_MAX_PICKLE_STRING, 8, &err), DTA_E_FORMAT,
                     "op 0x%02x: %s", ops8[i], err.msg);
        cr_assert_eq(pk_len(ops8[i], DTA_MAX_PICKLE_STRING + 1ull, 8, &err), DTA_E_LIMIT,
                     "op 0x%02x", ops8[i]);
    }
}

/* A global name of 62 bytes ending in "Tensor" is the longest legacy_class() rewrites
 * into its 64-byte buffer; 63 bytes overflowed it (fuzz finding 1). */
Test(limits, pickle_legacy_class_name)
{
    dta_error err = {0};
    for (size_t len = 60; len <= 70; len++) {
        char p[128];
        size_t o = (size_t)snprintf(p, sizeof p, "ctorch\n");
        memset(p + o, 'X', len - 6);
        o += len - 6;
        o += (size_t)snprintf(p + o, sizeof p - o, "Tensor\n.");
        cr_assert_eq(pk_load((const unsigned char *)p, o, &err), DTA_OK, "%zu: %s", len, err.msg);
    }
}

/* ---- zip -------------------------------------------------------------------------------- */

static void put16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { put16(p, v), put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)v), put32(p + 4, (uint32_t)(v >> 32)); }

/* One local header ("a/data.pkl", stored, declared size `size`, followed by `size` bytes
 * of data), then 30 bytes for each further entry (where its local header would be: the
 * reader refuses overlapping records but reads local headers only when a record is
 * used), then `count` central entries (names a/0000000...), a zip64 end record, its
 * locator and an EOCD with saturated counts. overlap: every central entry points at
 * offset 0 instead. */
static unsigned char *zip_build_x(uint64_t count, uint32_t size, bool overlap, size_t *n)
{
    static const char lname[] = "a/data.pkl";
    size_t nl = 10, cnl = 9;
    size_t local = 30 + nl + size + 30 * (count - 1), cd = count * (46 + cnl);
    *n = local + cd + 56 + 20 + 22;
    unsigned char *b = calloc(1, *n), *p = b;
    cr_assert_not_null(b);
    put32(p, 0x04034b50), put16(p + 4, 20), put32(p + 18, size), put32(p + 22, size);
    put16(p + 26, (uint32_t)nl), memcpy(p + 30, lname, nl);
    p += local;
    for (uint64_t i = 0; i < count; i++, p += 46 + cnl) {
        char nm[24];
        snprintf(nm, sizeof nm, "a/%07llu", (unsigned long long)i);
        put32(p, 0x02014b50), put16(p + 4, 20), put16(p + 6, 20);
        uint32_t sz = i == 0 ? size : 0;
        put32(p + 20, sz), put32(p + 24, sz), put16(p + 28, (uint32_t)cnl);
        put32(p + 42, i == 0 || overlap ? 0 : (uint32_t)(30 + nl + size + 30 * (i - 1)));
        memcpy(p + 46, i == 0 ? "a/dat.pkl" : nm, cnl);
    }
    put32(p, 0x06064b50), put64(p + 4, 44), put16(p + 12, 45), put16(p + 14, 45);
    put64(p + 24, count), put64(p + 32, count), put64(p + 40, cd), put64(p + 48, local);
    p += 56;
    put32(p, 0x07064b50), put64(p + 8, local + cd), put32(p + 16, 1);
    p += 20;
    put32(p, 0x06054b50), put16(p + 8, 0xFFFF), put16(p + 10, 0xFFFF);
    put32(p + 12, 0xFFFFFFFFu), put32(p + 16, 0xFFFFFFFFu);
    return b;
}

static unsigned char *zip_build(uint64_t count, uint32_t size, size_t *n)
{
    return zip_build_x(count, size, false, n);
}

static dta_status zip_open_n(uint64_t count, dta_error *err)
{
    size_t n;
    unsigned char *b = zip_build(count, 0, &n);
    dtap_src src;
    dtap_zip *z = NULL;
    dtap_src_open_mem(&src, "mem", b, n);
    dta_status st = dtap_zip_open(&src, &z, err);
    if (st == DTA_OK) cr_assert_eq(dtap_zip_count(z), count);
    dtap_zip_close(z);
    free(b);
    return st;
}

Test(limits, zip_entries, .timeout = 120)
{
    dta_error err = {0};
    cr_assert_eq(zip_open_n(70000, &err), DTA_OK, "%s", err.msg); /* zip64 count parses */
    cr_assert_eq(zip_open_n(DTA_MAX_ZIP_ENTRIES, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(zip_open_n(DTA_MAX_ZIP_ENTRIES + 1, &err), DTA_E_LIMIT);
    cr_assert(strstr(err.msg, "cap"), "%s", err.msg);
}

/* dtap_zip_read's cap (DTA_MAX_PICKLE_BYTES for data.pkl) is checked against the declared
 * size before any allocation. */
Test(limits, zip_record_cap)
{
    dta_error err = {0};
    size_t n;
    unsigned char *b = zip_build(1, 4096, &n);
    dtap_src src;
    dtap_zip *z = NULL;
    dtap_src_open_mem(&src, "mem", b, n);
    cr_assert_eq(dtap_zip_open(&src, &z, &err), DTA_OK, "%s", err.msg);
    const dtap_zip_entry *e = dtap_zip_entry_at(z, 0);
    unsigned char *out = NULL;
    size_t got;
    cr_assert_eq(dtap_zip_read(z, e, 4095, &out, &got, &err), DTA_E_LIMIT);
    cr_assert_null(out);
    /* at the cap: reads it (the central name differs from the local one: refused) */
    cr_assert_eq(dtap_zip_read(z, e, 4096, &out, &got, &err), DTA_E_FORMAT, "%s", err.msg);
    cr_assert(strstr(err.msg, "local header names another file"), "%s", err.msg);
    cr_assert_null(out);
    dtap_zip_close(z);
    free(b);
}

/* Records that share bytes (the overlapping-entries zip bomb) are refused at open. */
Test(limits, zip_overlap)
{
    dta_error err = {0};
    size_t n;
    unsigned char *b = zip_build_x(3, 16, true, &n);
    dtap_src src;
    dtap_zip *z = NULL;
    dtap_src_open_mem(&src, "mem", b, n);
    cr_assert_eq(dtap_zip_open(&src, &z, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "overlaps"), "%s", err.msg);
    free(b);
}
