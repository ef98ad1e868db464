/* safetensors writer: the header bytes of the reference writer (tensor.rs prepare()).
 *
 * Layout written:
 *   u64 LE N | {"__metadata__":{"format":"pt",...},"NAME":{"dtype":"F32","shape":[..],
 *   "data_offsets":[B,E]},...} padded with spaces to N % 8 == 0 | tensor data
 *   Tensors are ordered by dtype descending (safetensors enum order), then name bytes,
 *   with no gaps, so every tensor is naturally aligned and files are reproducible.
 *   JSON strings are escaped as serde_json does (\" \\ \b \f \n \r \t, else \u00xx). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src.h"
#include "util_sbuf.h"
#include "write_safetensors.h"


static void put_u64(dtap_sbuf *b, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    dtap_sbuf_add(b, t);
}

static void put_str(dtap_sbuf *b, const char *s)
{
    dtap_sbuf_addn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        switch (*p) {
        case '"': dtap_sbuf_add(b, "\\\""); break;
        case '\\': dtap_sbuf_add(b, "\\\\"); break;
        case '\b': dtap_sbuf_add(b, "\\b"); break;
        case '\f': dtap_sbuf_add(b, "\\f"); break;
        case '\n': dtap_sbuf_add(b, "\\n"); break;
        case '\r': dtap_sbuf_add(b, "\\r"); break;
        case '\t': dtap_sbuf_add(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", *p);
                dtap_sbuf_add(b, e);
            } else {
                dtap_sbuf_addn(b, (const char *)p, 1);
            }
        }
    }
    dtap_sbuf_addn(b, "\"", 1);
}

/* Strict UTF-8 (what serde_json accepts): no overlong forms, no surrogates, <= U+10FFFF. */
static bool utf8_ok(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p, n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, cp = c & 0x07;
        else
            return false;
        for (unsigned k = 1; k <= n; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

/* A name for a one-line message: bytes outside printable ASCII as \xNN, cut at 100. */
static const char *shown(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 5 < cap && o < 100; p++) {
        if (*p >= 0x20 && *p < 0x7F && *p != '\\')
            buf[o++] = (char)*p;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
    }
    buf[o] = 0;
    return buf;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What the reference reader would reject, or read differently: names that are not UTF-8,
 * a tensor named __metadata__, two tensors (or two metadata keys) of one name, as
 * flattening gives for {1: x, "1": y} or {"a.b": x, "a": {"b": y}}. */
static dta_status check_names(const dtap_st_out *t, size_t n, const dta_kv *meta, size_t nmeta,
                              dta_error *err)
{
    char b1[512];
    for (size_t i = 0; i < n; i++) {
        if (!utf8_ok(t[i].name))
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "tensor name '%s' is not valid UTF-8, as safetensors needs "
                                 "(a torch input can keep it with --out-format torch)",
                                 shown(t[i].name, b1, sizeof b1));
        if (!strcmp(t[i].name, "__metadata__"))
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "a tensor is named __metadata__, which safetensors reserves "
                                 "(a torch input can keep it with --out-format torch)");
    }
    for (size_t i = 0; i < nmeta; i++)
        if (!utf8_ok(meta[i].key) || !utf8_ok(meta[i].value))
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "metadata '%s' is not valid UTF-8; safetensors needs UTF-8",
                                 shown(meta[i].key, b1, sizeof b1));
    size_t cap = n > nmeta ? n : nmeta;
    const char **v = malloc((cap ? cap : 1) * sizeof *v);
    if (!v)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    dta_status st = DTA_OK;
    for (int pass = 0; pass < 2 && st == DTA_OK; pass++) {
        size_t k = pass ? nmeta : n;
        for (size_t i = 0; i < k; i++)
            v[i] = pass ? meta[i].key : t[i].name;
        if (k > 1)
            qsort(v, k, sizeof *v, cmp_name);
        for (size_t i = 1; i < k && st == DTA_OK; i++)
            if (!strcmp(v[i - 1], v[i]))
                st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                   pass ? "metadata key '%s' occurs twice; safetensors keeps one"
                                        : "two tensors are named '%s' once flattened (keys such "
                                          "as 1 and '1', or 'a.b' and 'a' -> 'b'); safetensors "
                                          "names must be unique (a torch input can keep it with --out-format torch)",
                                   shown(v[i], b1, sizeof b1));
    }
    free(v);
    return st;
}

static int cmp_out(const void *a, const void *b)
{
    const dtap_st_out *x = a, *y = b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

dta_status dtap_st_header(dtap_st_out *t, size_t n, const dta_kv *meta, size_t nmeta,
                          unsigned char **hdr, size_t *hdr_len, dta_error *err)
{
    dtap_sbuf b = {0};
    uint64_t off = 0;
    bool has_format = false;

    *hdr = NULL;
    dta_status cs = check_names(t, n, meta, nmeta, err);
    if (cs != DTA_OK)
        return cs;
    for (size_t i = 0; i < n; i++)
        if (!dta_dtype_get(t[i].dtype) || !dta_dtype_get(t[i].dtype)->in_safetensors)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "tensor '%.100s' has dtype %s, which safetensors cannot hold",
                                 t[i].name, dta_dtype_name(t[i].dtype));
    if (n > 1)
        qsort(t, n, sizeof *t, cmp_out);

    dtap_sbuf_addn(&b, "\0\0\0\0\0\0\0\0{", 9);
    dtap_sbuf_addn(&b, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < nmeta; i++)
        has_format |= strcmp(meta[i].key, "format") == 0;
    bool first = true;
    if (!has_format) {
        dtap_sbuf_add(&b, "\"format\":\"pt\"");
        first = false;
    }
    for (size_t i = 0; i < nmeta; i++) {
        if (!first)
            dtap_sbuf_addn(&b, ",", 1);
        first = false;
        put_str(&b, meta[i].key);
        dtap_sbuf_addn(&b, ":", 1);
        put_str(&b, meta[i].value);
    }
    dtap_sbuf_addn(&b, "}", 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t end;
        if (dtap_add_u64(off, t[i].nbytes, &end) != 0) {
            free(b.p);
            return dta_error_set(err, DTA_E_LIMIT, 0, "tensor data exceeds 2^64 bytes");
        }
        t[i].offset = off;
        dtap_sbuf_addn(&b, ",", 1);
        put_str(&b, t[i].name);
        dtap_sbuf_add(&b, ":{\"dtype\":\"");
        dtap_sbuf_add(&b, dta_dtype_name(t[i].dtype));
        dtap_sbuf_add(&b, "\",\"shape\":[");
        for (int k = 0; k < t[i].rank; k++) {
            if (k)
                dtap_sbuf_addn(&b, ",", 1);
            put_u64(&b, t[i].shape[k]);
        }
        dtap_sbuf_add(&b, "],\"data_offsets\":[");
        put_u64(&b, off);
        dtap_sbuf_addn(&b, ",", 1);
        put_u64(&b, end);
        dtap_sbuf_add(&b, "]}");
        off = end;
    }
    dtap_sbuf_addn(&b, "}", 1);
    while ((b.n - 8) % 8 != 0)
        dtap_sbuf_addn(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory building the header");
    }
    uint64_t hl = b.n - 8;
    if (hl > DTA_MAX_SAFETENSORS_HEADER) {
        free(b.p);
        return dta_error_set(err, DTA_E_LIMIT, 0,
                             "safetensors header of %llu bytes exceeds the %llu-byte limit",
                             (unsigned long long)hl, (unsigned long long)DTA_MAX_SAFETENSORS_HEADER);
    }
    for (int i = 0; i < 8; i++)
        b.p[i] = (char)(hl >> (8 * i));
    *hdr = (unsigned char *)b.p;
    *hdr_len = b.n;
    return DTA_OK;
}
