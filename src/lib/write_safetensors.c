/* safetensors writer: the header bytes of the reference writer (tensor.rs prepare()).
 *
 * Layout written:
 *   u64 LE N | {"__metadata__":{"format":"pt",...},"NAME":{"dtype":"F32","shape":[..],
 *   "data_offsets":[B,E]},...} padded with spaces to N % 8 == 0 | tensor data
 *   Tensors are ordered by dtype descending (safetensors enum order), then name bytes,
 *   with no gaps, so every tensor is naturally aligned and files are reproducible.
 *   JSON strings are escaped as serde_json does (\" \\ \b \f \n \r \t, else \u00xx). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src.h"
#include "write_safetensors.h"

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(buf *b, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    puts_(b, t);
}

static void put_str(buf *b, const char *s)
{
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        switch (*p) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", *p);
                puts_(b, e);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    put(b, "\"", 1);
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
    buf b = {0};
    uint64_t off = 0;
    bool has_format = false;

    *hdr = NULL;
    for (size_t i = 0; i < n; i++)
        if (!dta_dtype_get(t[i].dtype) || !dta_dtype_get(t[i].dtype)->in_safetensors)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "tensor '%.100s' has dtype %s, which safetensors cannot hold",
                                 t[i].name, dta_dtype_name(t[i].dtype));
    if (n > 1)
        qsort(t, n, sizeof *t, cmp_out);

    put(&b, "\0\0\0\0\0\0\0\0{", 9);
    put(&b, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < nmeta; i++)
        has_format |= strcmp(meta[i].key, "format") == 0;
    bool first = true;
    if (!has_format) {
        puts_(&b, "\"format\":\"pt\"");
        first = false;
    }
    for (size_t i = 0; i < nmeta; i++) {
        if (!first)
            put(&b, ",", 1);
        first = false;
        put_str(&b, meta[i].key);
        put(&b, ":", 1);
        put_str(&b, meta[i].value);
    }
    put(&b, "}", 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t end;
        if (dtap_add_u64(off, t[i].nbytes, &end) != 0) {
            free(b.p);
            return dta_error_set(err, DTA_E_LIMIT, 0, "tensor data exceeds 2^64 bytes");
        }
        t[i].offset = off;
        put(&b, ",", 1);
        put_str(&b, t[i].name);
        puts_(&b, ":{\"dtype\":\"");
        puts_(&b, dta_dtype_name(t[i].dtype));
        puts_(&b, "\",\"shape\":[");
        for (int k = 0; k < t[i].rank; k++) {
            if (k)
                put(&b, ",", 1);
            put_u64(&b, t[i].shape[k]);
        }
        puts_(&b, "],\"data_offsets\":[");
        put_u64(&b, off);
        put(&b, ",", 1);
        put_u64(&b, end);
        puts_(&b, "]}");
        off = end;
    }
    put(&b, "}", 1);
    while ((b.n - 8) % 8 != 0)
        put(&b, " ", 1);
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
