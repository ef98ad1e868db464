/* safetensors reader (header only; tensor data is never read).
 *
 * Layout (docs/formats.md 1.1):
 *   u64 LE N | N bytes of UTF-8 JSON, whitespace-padded | data buffer
 *   JSON: {"__metadata__": {str: str}?, NAME: {"dtype": CODE, "shape": [u64...],
 *          "data_offsets": [BEGIN, END]}, ...}
 *   Offsets are relative to the data buffer (file offset 8 + N), must tile [0, last_end)
 *   with no hole or overlap once sorted by (BEGIN, END), and the file ends at last_end.
 *
 * The checks are those of the reference reader (tensor.rs, Metadata::validate), plus:
 * duplicate tensor names are rejected (the reference silently keeps the last one).
 * The JSON parser is our own so integers stay exact u64 and duplicates are visible. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "format.h"
#include "model_build.h"

/* One tensor of the header while it is parsed and checked: 40 bytes. The name is already
 * the model's (dtap_model_alloc_str), so a header of a million names holds each name once. */
typedef struct {
    char *name;         /* NUL-terminated after name_len bytes */
    uint64_t begin, end;
    uint32_t name_len;  /* < the header cap (DTA_MAX_SAFETENSORS_HEADER) */
    uint32_t shape_at;  /* index of the rank dims in the shared pool (one array for every
                         * entry, not a DTA_MAX_RANK array each) */
    int8_t dtype;       /* dta_dtype, DTA_DTYPE_NONE until read */
    uint8_t rank;
    bool name_nul;      /* the name's bytes hold a NUL (only from a \u0000 escape) */
} st_entry;

typedef struct {
    const unsigned char *p, *end, *start;
    dta_error *err;
    /* the last dtype strings looked up (in the header): a header holds a few dtypes */
    const unsigned char *dt_text[4];
    uint8_t dt_len[4];
    int8_t dt_val[4];
    unsigned dt_next;
    /* entry_fast's dtypes: the code and its closing quote as the first bytes of a word */
    uint64_t dw_word[4], dw_mask[4];
    uint8_t dw_len[4];
    int8_t dw_val[4];
    unsigned dw_n;
    /* the text of the last end offset entry_fast read (1 to 15 digits, as two words and
     * their masks) and its value: the next entry's begin is most often the same text */
    uint64_t pe_w[2], pe_m[2], pe_val;
    unsigned pe_len; /* 0: none */
} jp;

static dta_status jerr(jp *j, dta_status code, const char *what)
{
    return dta_error_set(j->err, code, 0, "header JSON: %s at byte %zu", what,
                         (size_t)(j->p - j->start));
}

static inline void ws(jp *j)
{
    if (j->p < j->end && *j->p > ' ') /* the common case: no whitespace at all */
        return;
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Length of s[0..) before its first '"', '\\' or control character (or end - s), sixteen
 * bytes a step (a byte-at-a-time scan of the names was a fifth of the header's cost). */
static inline size_t plain_len(const unsigned char *s, const unsigned char *end)
{
    return dtap_json_plain_len(s, end, 0x20);
}

static int peek(jp *j)
{
    ws(j);
    return j->p < j->end ? *j->p : -1;
}

static dta_status expect(jp *j, char c)
{
    char what[32];
    if (j->p < j->end && *j->p == (unsigned char)c) { /* no whitespace before it */
        j->p++;
        return DTA_OK;
    }
    if (peek(j) != (unsigned char)c) {
        snprintf(what, sizeof what, "expected '%c'", c);
        return jerr(j, DTA_E_FORMAT, what);
    }
    j->p++;
    return DTA_OK;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static dta_status hex4(jp *j, unsigned *out)
{
    unsigned v = 0;
    if (j->end - j->p < 4)
        return jerr(j, DTA_E_FORMAT, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0)
            return jerr(j, DTA_E_FORMAT, "bad \\u escape");
        v = v * 16 + (unsigned)h;
    }
    j->p += 4;
    *out = v;
    return DTA_OK;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Frees a string_to() buffer: one in the model's storage stays there. */
static void drop(char *buf, dta_model *into)
{
    if (!into)
        free(buf);
}

/* Parses a JSON string; out may be NULL to skip. *out is NUL-terminated, malloc'd, or in
 * the model's string storage when into is not NULL (never freed then). */
static dta_status string_to(jp *j, char **out, size_t *len, dta_model *into)
{
    dta_status st = expect(j, '"');
    if (st != DTA_OK)
        return st;
    const unsigned char *s = j->p;
    /* decoded text is never longer than the source text */
    size_t cap = plain_len(s, j->end);
    bool plain = true; /* no escape, no control character: the text is the string */
    while (s + cap < j->end && s[cap] != '"') {
        if (s[cap] == '\\') {
            plain = false;
            if (s + cap + 1 < j->end)
                cap++;
        } else if (s[cap] < 0x20)
            plain = false;
        cap++;
    }
    char *buf = !out ? NULL : into ? dtap_model_alloc_str(into, cap + 1) : malloc(cap + 1);
    if (out && !buf)
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (plain && s + cap < j->end) { /* the common case: copied as it is */
        if (out) {
            memcpy(buf, s, cap);
            buf[cap] = 0;
            *out = buf;
        }
        if (len)
            *len = cap;
        j->p = s + cap + 1;
        return DTA_OK;
    }
    size_t n = 0;
    for (;;) {
        if (j->p >= j->end) {
            drop(buf, into);
            return jerr(j, DTA_E_FORMAT, "unterminated string");
        }
        unsigned c = *j->p++;
        if (c == '"')
            break;
        if (c < 0x20) {
            drop(buf, into);
            return jerr(j, DTA_E_FORMAT, "control character in string");
        }
        if (c != '\\') {
            if (buf) buf[n] = (char)c;
            n++;
            continue;
        }
        if (j->p >= j->end) {
            drop(buf, into);
            return jerr(j, DTA_E_FORMAT, "unterminated string");
        }
        c = *j->p++;
        unsigned cp;
        switch (c) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if ((st = hex4(j, &cp)) != DTA_OK) {
                drop(buf, into);
                return st;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
                    drop(buf, into);
                    return jerr(j, DTA_E_FORMAT, "unpaired surrogate in \\u escape");
                }
                j->p += 2;
                if ((st = hex4(j, &lo)) != DTA_OK) {
                    drop(buf, into);
                    return st;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    drop(buf, into);
                    return jerr(j, DTA_E_FORMAT, "unpaired surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                drop(buf, into);
                return jerr(j, DTA_E_FORMAT, "unpaired surrogate in \\u escape");
            }
            break;
        default:
            drop(buf, into);
            return jerr(j, DTA_E_FORMAT, "bad escape in string");
        }
        /* an escape of k source bytes never decodes to more than k bytes */
        if (buf)
            n += put_utf8(buf + n, cp);
        else
            n += 4;
    }
    if (out) {
        buf[n] = 0;
        *out = buf;
    }
    if (len)
        *len = n;
    return DTA_OK;
}

static dta_status string(jp *j, char **out, size_t *len)
{
    return string_to(j, out, len, NULL);
}

static dta_status num_err(jp *j, const char *tname, const char *field, const char *problem)
{
    char msg[256];
    snprintf(msg, sizeof msg, "tensor '%.80s' %.40s %s", tname, field, problem);
    return jerr(j, DTA_E_FORMAT, msg);
}

/* A JSON integer that fits u64: digits only, like serde's usize. */
static dta_status u64_number(jp *j, uint64_t *out, const char *tname, const char *field)
{
    uint64_t v = 0;
    ws(j);
    const unsigned char *s = j->p, *p = s, *end = j->end;
    if (p >= end || *p < '0' || *p > '9')
        return num_err(j, tname, field, "must be a non-negative integer");
    for (; p < end && (unsigned)(*p - '0') <= 9; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v >= UINT64_MAX / 10 && (v > UINT64_MAX / 10 || d > UINT64_MAX % 10)) {
            j->p = p;
            return num_err(j, tname, field, "does not fit in 64 bits");
        }
        v = v * 10 + d;
    }
    j->p = p;
    if (j->p - s > 1 && *s == '0')
        return num_err(j, tname, field, "has a leading zero");
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return num_err(j, tname, field, "must be an integer, not a float");
    *out = v;
    return DTA_OK;
}

static dta_status skip_value(jp *j, int depth);

static dta_status skip_literal(jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jerr(j, DTA_E_FORMAT, "invalid value");
    j->p += n;
    return DTA_OK;
}

static dta_status skip_number(jp *j)
{
    const unsigned char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return jerr(j, DTA_E_FORMAT, "invalid number");
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' ||
                             *j->p == 'E' || *j->p == '+' || *j->p == '-'))
        j->p++;
    (void)s;
    return DTA_OK;
}

static dta_status skip_value(jp *j, int depth)
{
    dta_status st;
    if (depth > DTA_MAX_SAFETENSORS_DEPTH)
        return jerr(j, DTA_E_LIMIT, "nesting too deep");
    int c = peek(j);
    switch (c) {
    case '"':
        return string(j, NULL, NULL);
    case '{':
        j->p++;
        if (peek(j) == '}') {
            j->p++;
            return DTA_OK;
        }
        for (;;) {
            if ((st = string(j, NULL, NULL)) != DTA_OK || (st = expect(j, ':')) != DTA_OK ||
                (st = skip_value(j, depth + 1)) != DTA_OK)
                return st;
            if (peek(j) == ',') {
                j->p++;
                continue;
            }
            return expect(j, '}');
        }
    case '[':
        j->p++;
        if (peek(j) == ']') {
            j->p++;
            return DTA_OK;
        }
        for (;;) {
            if ((st = skip_value(j, depth + 1)) != DTA_OK)
                return st;
            if (peek(j) == ',') {
                j->p++;
                continue;
            }
            return expect(j, ']');
        }
    case 't': return skip_literal(j, "true");
    case 'f': return skip_literal(j, "false");
    case 'n': return skip_literal(j, "null");
    default:
        return skip_number(j);
    }
}

/* Appends u64 items of a JSON array to out (max items), returns count in *n. */
static dta_status u64_array(jp *j, uint64_t *out, int max, int *n, const char *what,
                            const char *tname)
{
    dta_status st = expect(j, '[');
    char msg[256];
    *n = 0;
    if (st != DTA_OK)
        return st;
    if (peek(j) == ']') {
        j->p++;
        return DTA_OK;
    }
    for (;;) {
        uint64_t v = 0;
        if ((st = u64_number(j, &v, tname, what)) != DTA_OK)
            return st;
        if (*n >= max) {
            snprintf(msg, sizeof msg, "tensor '%.80s' %s has more than %d items", tname, what,
                     max);
            return jerr(j, DTA_E_LIMIT, msg);
        }
        out[(*n)++] = v;
        if (peek(j) == ',') {
            j->p++;
            continue;
        }
        return expect(j, ']');
    }
}

enum { FIELD_OTHER, FIELD_DTYPE, FIELD_SHAPE, FIELD_OFFSETS };
static const char *const field_names[] = {NULL, "dtype", "shape", "data_offsets"};

/* A field key of an entry: FIELD_*. A key without escapes is compared where it stands (no
 * copy); one with escapes is decoded first, as before (strcmp: a decoded NUL ends it). */
static dta_status field_key(jp *j, int *id)
{
    ws(j);
    if (j->p < j->end && *j->p == '"') {
        const unsigned char *s = j->p + 1;
        size_t n = plain_len(s, j->end);
        if (s + n < j->end && s[n] == '"') {
            *id = n == 5 && memcmp(s, "dtype", 5) == 0          ? FIELD_DTYPE
                  : n == 5 && memcmp(s, "shape", 5) == 0        ? FIELD_SHAPE
                  : n == 12 && memcmp(s, "data_offsets", 12) == 0 ? FIELD_OFFSETS
                                                                  : FIELD_OTHER;
            j->p = s + n + 1;
            return DTA_OK;
        }
    }
    char *key;
    size_t klen;
    dta_status st = string(j, &key, &klen);
    if (st != DTA_OK)
        return st;
    *id = FIELD_OTHER;
    for (int f = FIELD_DTYPE; f <= FIELD_OFFSETS; f++)
        if (strcmp(key, field_names[f]) == 0)
            *id = f;
    free(key);
    return DTA_OK;
}

/* An entry's dtype string (j at its '"'). Without escapes it is looked up where it stands,
 * and a header's dtypes repeat: the last four found are remembered in j. */
static dta_status dtype_value(jp *j, st_entry *e)
{
    const unsigned char *s = j->p + 1;
    size_t n = plain_len(s, j->end);
    if (s + n < j->end && s[n] == '"') {
        j->p = s + n + 1;
        for (unsigned k = 0; k < 4; k++)
            if (j->dt_text[k] && n == j->dt_len[k] && memcmp(s, j->dt_text[k], n) == 0) {
                e->dtype = j->dt_val[k];
                return DTA_OK;
            }
        e->dtype = (int8_t)dta_dtype_from_safetensors((const char *)s, n);
        if (e->dtype == DTA_DTYPE_NONE)
            return dta_error_set(j->err, DTA_E_FORMAT, 0,
                                 "tensor '%.80s' has unknown dtype \"%.*s\"", e->name,
                                 (int)(n < 40 ? n : 40), (const char *)s);
        if (n < 256) { /* every known code is short */
            unsigned k = j->dt_next++ % 4;
            j->dt_text[k] = s;
            j->dt_len[k] = (uint8_t)n;
            j->dt_val[k] = e->dtype;
        }
        return DTA_OK;
    }
    char *d;
    size_t dlen;
    dta_status st = string(j, &d, &dlen);
    if (st != DTA_OK)
        return st;
    e->dtype = (int8_t)dta_dtype_from_safetensors(d, dlen);
    if (e->dtype == DTA_DTYPE_NONE)
        st = dta_error_set(j->err, DTA_E_FORMAT, 0, "tensor '%.80s' has unknown dtype \"%.40s\"",
                           e->name, d);
    free(d);
    return st;
}

/* Reads one entry's object into e; its dims go to shape (DTA_MAX_RANK slots). No
 * allocation: keys and dtypes are read where they stand in the header. */
static dta_status parse_entry(jp *j, st_entry *e, uint64_t *shape)
{
    bool seen[4] = {false, false, false, false};
    char msg[200];
    dta_status st = expect(j, '{');
    if (st != DTA_OK) {
        snprintf(msg, sizeof msg, "tensor '%.80s' is not an object", e->name);
        return jerr(j, DTA_E_FORMAT, msg);
    }
    if (peek(j) != '}') {
        for (;;) {
            int id;
            if ((st = field_key(j, &id)) != DTA_OK || (st = expect(j, ':')) != DTA_OK)
                return st;
            if (id != FIELD_OTHER && seen[id]) {
                snprintf(msg, sizeof msg, "tensor '%.80s' has a duplicate field '%s'", e->name,
                         field_names[id]);
                return jerr(j, DTA_E_FORMAT, msg);
            }
            if (id == FIELD_DTYPE) {
                if (peek(j) != '"') {
                    snprintf(msg, sizeof msg, "tensor '%.80s' dtype is not a string", e->name);
                    return jerr(j, DTA_E_FORMAT, msg);
                }
                st = dtype_value(j, e);
            } else if (id == FIELD_SHAPE) {
                if (peek(j) != '[') {
                    snprintf(msg, sizeof msg, "tensor '%.80s' shape is not an array", e->name);
                    return jerr(j, DTA_E_FORMAT, msg);
                }
                int rank = 0;
                st = u64_array(j, shape, DTA_MAX_RANK, &rank, "shape", e->name);
                e->rank = (uint8_t)rank;
            } else if (id == FIELD_OFFSETS) {
                uint64_t off[3] = {0, 0, 0};
                int n;
                if (peek(j) != '[') {
                    snprintf(msg, sizeof msg, "tensor '%.80s' data_offsets is not an array",
                             e->name);
                    return jerr(j, DTA_E_FORMAT, msg);
                }
                st = u64_array(j, off, 3, &n, "data_offsets", e->name);
                if (st == DTA_E_LIMIT || (st == DTA_OK && n != 2))
                    return dta_error_set(j->err, DTA_E_FORMAT, 0,
                                         "tensor '%.80s' data_offsets must have 2 items",
                                         e->name);
                e->begin = off[0];
                e->end = off[1];
            } else {
                st = skip_value(j, 1); /* unknown field: ignored, as the reference does */
            }
            if (st != DTA_OK)
                return st;
            seen[id] = true;
            if (peek(j) == ',') {
                j->p++;
                continue;
            }
            if ((st = expect(j, '}')) != DTA_OK)
                return st;
            break;
        }
    } else {
        j->p++;
    }
    const char *missing = !seen[FIELD_DTYPE]   ? "dtype"
                          : !seen[FIELD_SHAPE] ? "shape"
                          : !seen[FIELD_OFFSETS] ? "data_offsets"
                                                 : NULL;
    if (missing)
        return dta_error_set(j->err, DTA_E_FORMAT, 0, "tensor '%.80s' has no %s", e->name,
                             missing);
    return DTA_OK;
}

/* How many of the eight bytes of w (dtap_word_le: the first byte lowest) are ASCII digits
 * before the first that is not. Each byte is tested on its own (no carry crosses bytes). */
__attribute__((always_inline)) static inline unsigned digit_run(uint64_t w)
{
    /* t = byte - '0', then t + 0x76 reaches the high bit when t >= 10: flags every byte
     * that is not a digit. A borrow or a carry only moves upwards, out of a flagged byte,
     * so the lowest flag is exact, and only it is used. */
    uint64_t t = w - 0x3030303030303030ull;
    uint64_t nd = ((t + 0x7676767676767676ull) | t) & 0x8080808080808080ull;
    return nd ? dtap_ctz64(nd) >> 3 : 8;
}

/* The value of the first k (1 to 8) digits of w: the word is shifted so that they end it,
 * the bytes before them count as leading zeros, and three multiplies sum the digits. */
__attribute__((always_inline)) static inline uint64_t digits_value(uint64_t w, unsigned k)
{
    w = (w << (8 * (8 - k))) & 0x0F0F0F0F0F0F0F0Full;
    w = (w * 2561) >> 8;
    w = ((w & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
    return ((w & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
}

/* Digits of a u64 at *pp for entry_fast: false on no digit, a leading zero or overflow
 * (the general parser then says which). Up to 15 digits are read eight at a time; longer
 * numbers (and the last bytes of the header) digit by digit with the overflow check. */
__attribute__((always_inline)) static inline bool fast_u64(const unsigned char **pp,
                                                           const unsigned char *end, uint64_t *out)
{
    static const uint64_t pow10[8] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};
    const unsigned char *p = *pp;
    uint64_t v = 0;
    if (end - p >= 16) {
        uint64_t w = dtap_word_le(p);
        unsigned k = digit_run(w);
        if (k == 0 || (k > 1 && *p == '0'))
            return false;
        if (k < 8) {
            *out = digits_value(w, k);
            *pp = p + k;
            return true;
        }
        uint64_t w2 = dtap_word_le(p + 8);
        unsigned k2 = digit_run(w2);
        if (k2 < 8) { /* at most 15 digits: below 10^15, no overflow */
            v = digits_value(w, 8);
            if (k2)
                v = v * pow10[k2] + digits_value(w2, k2);
            *out = v;
            *pp = p + 8 + k2;
            return true;
        }
    }
    if (p >= end || (unsigned)(*p - '0') > 9 || (*p == '0' && p + 1 < end && (unsigned)(p[1] - '0') <= 9))
        return false;
    for (; p < end && (unsigned)(*p - '0') <= 9; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v >= UINT64_MAX / 10 && (v > UINT64_MAX / 10 || d > UINT64_MAX % 10))
            return false;
        v = v * 10 + d;
    }
    *pp = p;
    *out = v;
    return true;
}

/* Whether the eight bytes at p are those of lit (one compare of two loads). */
static inline bool eq8(const unsigned char *p, const char *lit)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, lit, 8);
    return a == b;
}

/* An entry written as the reference writer writes it, {"dtype":"X","shape":[...],
 * "data_offsets":[B,E]} with no whitespace and a known dtype, read in one pass without
 * the tokenizer's calls. Anything else (another order, spaces, escapes, an unknown dtype,
 * a number it would refuse) returns false with j unchanged, and parse_entry reads the
 * entry: its result and its errors are the same for what this accepts. */
static bool entry_fast(jp *j, st_entry *e, uint64_t *shape)
{
    const unsigned char *p = j->p, *end = j->end;
    /* {"dtype":" */
    if (end - p < 10 + 8 || !eq8(p, "{\"dtype\"") || p[8] != ':' || p[9] != '"')
        return false;
    p += 10;
    const unsigned char *d = p;
    uint64_t w;
    memcpy(&w, d, 8); /* compared as stored: the byte order does not matter */
    int8_t dt = DTA_DTYPE_NONE;
    size_t dn = 0;
    for (unsigned k = 0; k < j->dw_n; k++)
        if ((w & j->dw_mask[k]) == j->dw_word[k]) { /* the code and its closing quote */
            dt = j->dw_val[k];
            dn = j->dw_len[k];
            break;
        }
    if (dt == DTA_DTYPE_NONE) {
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && p - d < 32)
            p++;
        if (p >= end || *p != '"')
            return false;
        dn = (size_t)(p - d);
        dt = (int8_t)dta_dtype_from_safetensors((const char *)d, dn);
        if (dt == DTA_DTYPE_NONE)
            return false;
        if (dn < 8) { /* every known code is short: remembered as a word */
            unsigned char m[8] = {0};
            memset(m, 0xFF, dn + 1);
            unsigned k = j->dw_n < 4 ? j->dw_n++ : 3;
            memcpy(&j->dw_mask[k], m, 8);
            j->dw_word[k] = w & j->dw_mask[k];
            j->dw_len[k] = (uint8_t)dn;
            j->dw_val[k] = dt;
        }
    }
    p = d + dn + 1;
    /* ,"shape":[ */
    if (end - p < 10 || !eq8(p, ",\"shape\"") || p[8] != ':' || p[9] != '[')
        return false;
    p += 10;
    int rank = 0;
    if (p < end && *p == ']') {
        p++;
    } else {
        for (;;) {
            if (rank >= DTA_MAX_RANK || !fast_u64(&p, end, &shape[rank]))
                return false;
            rank++;
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == ']') {
                p++;
                break;
            }
            return false;
        }
    }
    /* ,"data_offsets":[ */
    if (end - p < 17 || !eq8(p, ",\"data_o") || !eq8(p + 8, "ffsets\":") || p[16] != '[')
        return false;
    p += 17;
    uint64_t b, en;
    unsigned pl = j->pe_len;
    if (pl && end - p >= 16 && p[pl] == ',' && (dtap_word_le(p) & j->pe_m[0]) == j->pe_w[0] &&
        (dtap_word_le(p + 8) & j->pe_m[1]) == j->pe_w[1]) {
        b = j->pe_val; /* the digits the last end had, then ',': the same number */
        p += pl;
    } else if (!fast_u64(&p, end, &b) || p >= end || *p != ',') {
        return false;
    }
    p++;
    const unsigned char *et = p;
    if (!fast_u64(&p, end, &en) || end - p < 2 || p[0] != ']' || p[1] != '}')
        return false;
    size_t el = (size_t)(p - et);
    if (el <= 15 && end - et >= 16) {
        j->pe_m[0] = el >= 8 ? ~0ull : ~0ull >> (64 - 8 * el); /* el >= 1 */
        j->pe_m[1] = el > 8 ? ~0ull >> (64 - 8 * (el - 8)) : 0;
        j->pe_w[0] = dtap_word_le(et) & j->pe_m[0];
        j->pe_w[1] = dtap_word_le(et + 8) & j->pe_m[1];
        j->pe_val = en;
        j->pe_len = (unsigned)el;
    } else {
        j->pe_len = 0;
    }
    e->dtype = dt;
    e->rank = (uint8_t)rank;
    e->begin = b;
    e->end = en;
    j->p = p + 2;
    return true;
}

static dta_status parse_metadata(jp *j, dta_model *m)
{
    dta_status st;
    if (peek(j) == 'n')
        return skip_literal(j, "null"); /* Option<HashMap>: null is None */
    if (peek(j) != '{')
        return jerr(j, DTA_E_FORMAT, "__metadata__ is not an object of strings");
    j->p++;
    if (peek(j) == '}') {
        j->p++;
        return DTA_OK;
    }
    for (;;) {
        char *k, *v;
        if ((st = string(j, &k, NULL)) != DTA_OK)
            return st;
        if ((st = expect(j, ':')) != DTA_OK) {
            free(k);
            return st;
        }
        if (peek(j) != '"') {
            dta_error_set(j->err, DTA_E_FORMAT, 0, "__metadata__ value of '%.80s' is not a string",
                          k);
            free(k);
            return DTA_E_FORMAT;
        }
        if ((st = string(j, &v, NULL)) != DTA_OK) {
            free(k);
            return st;
        }
        st = dtap_model_add_metadata(m, k, v, j->err);
        free(k);
        free(v);
        if (st != DTA_OK)
            return st;
        if (peek(j) == ',') {
            j->p++;
            continue;
        }
        return expect(j, '}');
    }
}

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            const uint64_t high = 0x8080808080808080ull;
            uint64_t w;
            i++;
#ifdef __SSE2__
            while (n - i >= 64) { /* ASCII, 64 bytes a step */
                const __m128i *v = (const __m128i *)(const void *)(s + i);
                __m128i o = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v), _mm_loadu_si128(v + 1)),
                                         _mm_or_si128(_mm_loadu_si128(v + 2), _mm_loadu_si128(v + 3)));
                if (_mm_movemask_epi8(o))
                    break;
                i += 64;
            }
#endif
            while (n - i >= 8 && (memcpy(&w, s + i, 8), (w & high) == 0))
                i += 8;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return i;
        if (n - i <= k)
            return i;
        for (size_t t = 1; t <= k; t++) {
            if ((s[i + t] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + t] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += k + 1;
    }
    return SIZE_MAX;
}

static int cmp_name(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return cmp_name(a, b); /* ties in name order whatever order they come in */
}

/* *unique = no two entries share a name (a hash set of entry indexes). */
static dta_status names_unique(const st_entry *ents, size_t n, bool *unique, dta_error *err)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slot = calloc(cap, sizeof *slot); /* entry + 1; n <= DTA_MAX_TENSORS */
    if (!slot)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    *unique = true;
    for (size_t i = 0; i < n && *unique; i++) {
        const st_entry *e = &ents[i];
        size_t h = (size_t)dtap_hash(e->name, e->name_len, 0) & (cap - 1);
        for (; slot[h]; h = (h + 1) & (cap - 1)) {
            const st_entry *o = &ents[slot[h] - 1];
            if (o->name_len == e->name_len && memcmp(o->name, e->name, e->name_len) == 0) {
                *unique = false;
                break;
            }
        }
        slot[h] = (uint32_t)(i + 1);
    }
    free(slot);
    return DTA_OK;
}

int dtap_safetensors_bid(const unsigned char *head, size_t n, uint64_t size)
{
    if (n < 8 || size < 8)
        return DTAP_BID_NONE;
    uint64_t hlen = dtap_le64(head);
    if (hlen == 0)
        return DTAP_BID_CLAIM; /* claim it to say "header length is 0" */
    size_t i = 8;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
        i++;
    if (i < n && (head[i] == '{' || head[i] == '['))
        /* a length the file holds is a layout; any other is claimed to be named */
        return hlen <= size - 8 ? DTAP_BID_LAYOUT : DTAP_BID_CLAIM;
    return DTAP_BID_NONE;
}

static void fmt_shape(char *out, size_t cap, const st_entry *e, const uint64_t *pool)
{
    const uint64_t *shape = pool + e->shape_at;
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (int k = 0; k < e->rank && o < cap; k++)
        o += (size_t)snprintf(out + o, cap - o, "%s%llu", k ? ", " : "",
                              (unsigned long long)shape[k]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

/* Entries per step when the checked entries are handed to the model last first: the
 * entries and dims already added are given back every step (realloc shrinks them), so a
 * header of a million tensors does not hold its 48 bytes of entry and dims per tensor on
 * top of the whole model at the end (verify holds two models). */
#define ADD_STEP 65536u

/* Adds the checked entries to the model as tensors and storages, in header order: it is
 * what a user reading the file sees. *entsp and *poolp may shrink (see ADD_STEP). */
static dta_status add_entries(dta_model *m, size_t file, st_entry **entsp, uint64_t **poolp,
                              size_t n, uint64_t data0, dta_error *err)
{
    dta_status st = DTA_OK;
    bool long_name = false; /* dtap_model_add_tensor refuses it: keep the first one's error */
    size_t dims = 0;        /* <= n * DTA_MAX_RANK */
    for (size_t i = 0; i < n; i++) {
        long_name |= (*entsp)[i].name_len > DTA_MAX_NAME_LEN;
        dims += (*entsp)[i].rank ? (*entsp)[i].rank : 1;
    }
    bool last_first = !long_name && n > ADD_STEP;
    size_t t0 = m->ntensors, s0 = m->nstorages;
    if (!long_name && !last_first) { /* the common case: the records filled here, in one go */
        const st_entry *ents = *entsp;
        const uint64_t *pool = *poolp;
        const char *root;
        uint64_t *sh;
        if (!n)
            return DTA_OK;
        if ((st = dtap_model_reserve(m, n, err)) != DTA_OK)
            return st;
        if (!(root = dtap_model_root_none(m)) ||
            !(sh = dtap_model_alloc(m, dims * sizeof *sh, sizeof *sh)))
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const st_entry *e = &ents[i];
            const uint64_t *d = pool + e->shape_at;
            uint64_t numel = 1;
            for (int k = 0; k < e->rank; k++) {
                sh[k] = d[k];
                numel *= d[k]; /* checked */
            }
            /* every field set, one store each (a compound literal was built, then copied) */
            size_t si = m->nstorages++;
            dta_storage *s = &m->storages[si];
            s->file = file;
            s->key = NULL;
            s->dtype = (dta_dtype)e->dtype;
            s->numel = numel;
            s->nbytes = e->end - e->begin;
            s->offset = data0 + e->begin;
            s->ntensors = 1;
            dta_tensor *t = &m->tensors[m->ntensors++];
            t->name = e->name;
            t->root = (char *)root;
            t->dtype = (dta_dtype)e->dtype;
            t->rank = e->rank;
            t->shape = sh;
            t->stride = NULL;
            t->numel = numel;
            t->nbytes = e->end - e->begin;
            t->storage_offset = 0;
            t->storage = si;
            t->file = file;
            t->meta = false;
            t->shared = false;
            t->name_nul = e->name_nul;
            sh += e->rank ? e->rank : 1;
        }
        return DTA_OK;
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = last_first ? n - 1 - i : i;
        const st_entry *e = &(*entsp)[k];
        const uint64_t *shape_e = *poolp + e->shape_at;
        size_t sidx;
        uint64_t numel = 1;
        for (int d = 0; d < e->rank; d++)
            numel *= shape_e[d]; /* checked */
        if (e->name_len <= DTA_MAX_NAME_LEN) { /* all checked: both records in one step */
            if ((st = dtap_model_add_whole(m, file, e->name, e->name_nul,
                                           (dta_dtype)e->dtype, e->rank, shape_e, numel,
                                           e->end - e->begin, data0 + e->begin, err)) != DTA_OK)
                return st;
        } else if ((st = dtap_model_add_storage(m, file, NULL, (dta_dtype)e->dtype, numel,
                                         data0 + e->begin, &sidx, err)) != DTA_OK ||
            (st = dtap_model_add_tensor_owned(m, e->name, e->name_len, "", (dta_dtype)e->dtype,
                                              e->rank, shape_e, NULL, 0, sidx, file, err)) !=
                DTA_OK)
            return st;
        if (last_first && k && k % ADD_STEP == 0) { /* entries k.. and their dims are done */
            size_t dims = (*entsp)[k].shape_at;
            st_entry *pe = realloc(*entsp, k * sizeof *pe);
            if (pe)
                *entsp = pe;
            if (dims) {
                uint64_t *pp = realloc(*poolp, dims * sizeof *pp);
                if (pp)
                    *poolp = pp;
            }
        }
    }
    if (last_first) { /* back to header order; tensor t0 + p views storage s0 + p */
        for (size_t a = 0, b = n - 1; a < b; a++, b--) {
            dta_tensor tt = m->tensors[t0 + a];
            m->tensors[t0 + a] = m->tensors[t0 + b];
            m->tensors[t0 + b] = tt;
            dta_storage ss = m->storages[s0 + a];
            m->storages[s0 + a] = m->storages[s0 + b];
            m->storages[s0 + b] = ss;
        }
        for (size_t p = 0; p < n; p++)
            m->tensors[t0 + p].storage = s0 + p;
    }
    return DTA_OK;
}

static dta_status validate_and_add(const dtap_src *src, dta_model *m, st_entry **entsp, size_t n,
                                   uint64_t **poolp, uint64_t hlen, dta_error *err)
{
    st_entry *ents = *entsp;
    const uint64_t *pool = *poolp;
    st_entry **v = malloc(sizeof *v * (n ? n : 1));
    dta_status st = DTA_OK;
    uint64_t start = 0, data0 = 8 + hlen, total;
    size_t file;
    char shape[160];

    if (!v)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        v[i] = &ents[i];

    /* Sorting is skipped when it would change nothing: names already ascending (no
     * duplicate then), offsets already in order. The names of a header with no duplicate
     * are told so by a hash set, and only a header with one is sorted, so the duplicate
     * reported is the same (the first in name order). */
    bool by_name = true;
    for (size_t i = 1; i < n && by_name; i++)
        by_name = cmp_name(&v[i - 1], &v[i]) < 0;
    if (!by_name && (st = names_unique(ents, n, &by_name, err)) != DTA_OK)
        goto out;
    if (!by_name) {
        qsort(v, n, sizeof *v, cmp_name);
        for (size_t i = 1; i < n; i++)
            if (cmp_name(&v[i - 1], &v[i]) == 0) {
                st = dta_error_set(err, DTA_E_FORMAT, 0, "duplicate tensor name '%.100s'",
                                   v[i]->name);
                goto out;
            }
    }

    /* per dtype of one element per byte-size unit: the largest element count whose size
     * (in bits too) fits 64 bits; 0 when not yet known or not such a dtype, where
     * dta_dtype_nbytes decides */
    uint64_t elem_size[DTA_DTYPE_COUNT] = {0}, max_numel[DTA_DTYPE_COUNT] = {0};
    bool elem_known[DTA_DTYPE_COUNT] = {false};
    bool by_offset = true;
    for (size_t i = 1; i < n && by_offset; i++)
        by_offset = cmp_offsets(&v[i - 1], &v[i]) < 0;
    if (!by_offset)
        qsort(v, n, sizeof *v, cmp_offsets);
    for (size_t i = 0; i < n; i++) {
        st_entry *e = v[i];
        uint64_t numel = 1, nbytes;
        if (e->end < e->begin) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "tensor '%.100s' has data_offsets [%llu, %llu) ending before "
                               "they begin",
                               e->name, (unsigned long long)e->begin,
                               (unsigned long long)e->end);
            goto out;
        }
        if (e->begin > start) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "hole before tensor '%.100s': data_offsets begin at %llu but the "
                               "previous tensor ends at %llu",
                               e->name, (unsigned long long)e->begin,
                               (unsigned long long)start);
            goto out;
        }
        if (e->begin < start) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "tensor '%.100s' has data_offsets [%llu, %llu) overlapping "
                               "'%.100s'",
                               e->name, (unsigned long long)e->begin,
                               (unsigned long long)e->end, i ? v[i - 1]->name : "?");
            goto out;
        }
        for (int k = 0; k < e->rank; k++)
            if (dtap_mul_u64(numel, pool[e->shape_at + k], &numel) != 0) {
                fmt_shape(shape, sizeof shape, e, pool);
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "tensor '%.100s' shape %s overflows 64 bits", e->name, shape);
                goto out;
            }
        int dt = e->dtype; /* a known dtype: 0 <= dt < DTA_DTYPE_COUNT */
        if (!elem_known[dt]) {
            unsigned be, bb;
            elem_known[dt] = true;
            if (dta_dtype_block((dta_dtype)dt, &be, &bb) && be == 1 && bb) {
                elem_size[dt] = bb;
                max_numel[dt] = UINT64_MAX / 8 / bb; /* numel * bb * 8 fits */
            }
        }
        if (elem_size[dt] && numel <= max_numel[dt])
            nbytes = numel * elem_size[dt]; /* what dta_dtype_nbytes gives */
        else if (!dta_dtype_nbytes((dta_dtype)e->dtype, numel, &nbytes)) {
            unsigned bits = dta_dtype_get((dta_dtype)e->dtype)->bits, be = 1, bb = 1;
            dta_dtype_block((dta_dtype)e->dtype, &be, &bb);
            fmt_shape(shape, sizeof shape, e, pool);
            if (numel % be == 0) /* whole blocks: the byte count overflows */
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "tensor '%.100s' shape %s of %s overflows 64 bits", e->name,
                                   shape, dta_dtype_name((dta_dtype)e->dtype));
            else
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "tensor '%.100s' shape %s: %llu elements of %u-bit %s do not "
                                   "fill whole bytes",
                                   e->name, shape, (unsigned long long)numel, bits,
                                   dta_dtype_name((dta_dtype)e->dtype));
            goto out;
        }
        if (e->end - e->begin != nbytes) {
            fmt_shape(shape, sizeof shape, e, pool);
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "tensor '%.100s' has %llu bytes in data_offsets but shape %s of "
                               "%s needs %llu",
                               e->name, (unsigned long long)(e->end - e->begin), shape,
                               dta_dtype_name((dta_dtype)e->dtype), (unsigned long long)nbytes);
            goto out;
        }
        start = e->end;
    }
    if (dtap_add_u64(data0, start, &total) != 0 || total > src->size) {
        st = dta_error_set(err, DTA_E_FORMAT, 0,
                           "truncated: tensor data needs %llu bytes after the header, the file "
                           "has %llu",
                           (unsigned long long)start,
                           (unsigned long long)(src->size - data0));
        goto out;
    }
    if (total < src->size) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "%llu trailing bytes after the last tensor",
                           (unsigned long long)(src->size - total));
        goto out;
    }

    free(v); /* the checks are done: give it back before the model grows */
    v = NULL;
    if ((st = dtap_model_add_file(m, src->name, DTA_FORMAT_SAFETENSORS, &file, err)) != DTA_OK)
        goto out;
    st = add_entries(m, file, entsp, poolp, n, data0, err);
out:
    free(v);
    return st;
}

dta_status dtap_safetensors_open(const dtap_src *src, dta_model *m, dta_error *err)
{
    unsigned char lenbuf[8], *hdr = NULL;
    st_entry *ents = NULL;
    size_t n = 0, cap = 0;
    uint64_t *pool = NULL;
    void **arena = dtap_model_arena(m); /* the model's string storage */
    size_t npool = 0, cappool = 0;
    bool have_meta = false;
    dta_status st;
    uint64_t hlen;

    if (src->size < 8)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "file of %llu bytes is too short for a safetensors header",
                             (unsigned long long)src->size);
    if ((st = dtap_src_read(src, 0, lenbuf, 8, err)) != DTA_OK)
        return st;
    hlen = dtap_le64(lenbuf);
    if (hlen == 0)
        return dta_error_set(err, DTA_E_FORMAT, 0, "safetensors header length is 0");
    if (hlen > DTA_MAX_SAFETENSORS_HEADER)
        return dta_error_set(err, DTA_E_LIMIT, 0,
                             "safetensors header of %llu bytes exceeds the %llu-byte limit",
                             (unsigned long long)hlen, DTA_MAX_SAFETENSORS_HEADER);
    if (hlen > src->size - 8)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "safetensors header length %llu runs past the end of the file "
                             "(%llu bytes)",
                             (unsigned long long)hlen, (unsigned long long)src->size);
    if ((st = dtap_src_alloc_read(src, 8, hlen, DTA_MAX_SAFETENSORS_HEADER, &hdr, err)) != DTA_OK)
        return st;

    size_t bad = utf8_invalid_at(hdr, (size_t)hlen);
    if (bad != SIZE_MAX) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "header is not valid UTF-8 (byte %zu)", bad);
        goto out;
    }

    jp j = {.p = hdr, .end = hdr + hlen, .start = hdr, .err = err};
    if (peek(&j) != '{') {
        st = jerr(&j, DTA_E_FORMAT, peek(&j) == '[' ? "top level is an array, not an object"
                                                     : "top level is not an object");
        goto out;
    }
    j.p++;
    if (peek(&j) != '}') {
        for (;;) {
            char *key;
            size_t klen;
            bool key_nul = false;
            /* straight into the model's string storage: most keys are tensor names. A key
             * with no escape and no control character is copied as it stands (no NUL then) */
            const unsigned char *ks = NULL;
            size_t kn = 0;
            if (j.p < j.end && *j.p == '"' &&
                (ks = j.p + 1, kn = plain_len(ks, j.end), ks + kn < j.end && ks[kn] == '"')) {
                if (!(key = dtap_arena_alloc(arena, kn + 1, 1))) {
                    st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                    goto out;
                }
                memcpy(key, ks, kn);
                key[kn] = 0;
                klen = kn;
                j.p = ks + kn + 1;
            } else {
                if ((st = string_to(&j, &key, &klen, m)) != DTA_OK)
                    goto out;
                key_nul = memchr(key, 0, klen) != NULL;
            }
            if (j.p < j.end && *j.p == ':') /* what expect() takes first */
                j.p++;
            else if ((st = expect(&j, ':')) != DTA_OK)
                goto out;
            if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
                if (have_meta) {
                    st = dta_error_set(err, DTA_E_FORMAT, 0, "duplicate __metadata__");
                    goto out;
                }
                have_meta = true;
                if ((st = parse_metadata(&j, m)) != DTA_OK)
                    goto out;
            } else {
                if (n >= DTA_MAX_TENSORS) {
                    st = dta_error_set(err, DTA_E_LIMIT, 0, "more than %u tensors",
                                       DTA_MAX_TENSORS);
                    goto out;
                }
                if (n == cap) {
                    /* first room for the entries the header's size suggests (a compact
                     * entry takes about 100 bytes), at most ADD_STEP: no regrowth then */
                    size_t guess = (size_t)hlen / 96;
                    size_t ncap = cap    ? cap * 2
                                  : guess < 64 ? 64
                                  : guess > ADD_STEP ? ADD_STEP : guess;
                    st_entry *p = realloc(ents, ncap * sizeof *p);
                    if (!p) {
                        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                        goto out;
                    }
                    ents = p;
                    cap = ncap;
                }
                st_entry *e = &ents[n++];
                memset(e, 0, sizeof *e);
                e->name = key;
                e->name_len = (uint32_t)klen; /* klen < hlen <= the header cap */
                e->name_nul = key_nul;
                e->dtype = DTA_DTYPE_NONE;
                /* room for DTA_MAX_RANK dims, read straight into the pool. Allocated
                 * with the first entry even when every tensor is a scalar: `pool +
                 * shape_at` with pool NULL is undefined (fuzz finding F2) */
                if (!pool || cappool - npool < DTA_MAX_RANK) {
                    size_t ncap = cappool ? cappool * 2 : cap * 2 > 256 ? cap * 2 : 256;
                    while (ncap - npool < DTA_MAX_RANK)
                        ncap *= 2;
                    uint64_t *p = realloc(pool, ncap * sizeof *p);
                    if (!p) {
                        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                        goto out;
                    }
                    pool = p;
                    cappool = ncap;
                }
                if (!entry_fast(&j, e, pool + npool) &&
                    (st = parse_entry(&j, e, pool + npool)) != DTA_OK)
                    goto out;
                e->shape_at = (uint32_t)npool; /* < hlen: every dim takes a byte */
                npool += (size_t)e->rank;
            }
            if (peek(&j) == ',') {
                j.p++;
                continue;
            }
            if ((st = expect(&j, '}')) != DTA_OK)
                goto out;
            break;
        }
    } else {
        j.p++;
    }
    ws(&j);
    if (j.p != j.end) {
        st = jerr(&j, DTA_E_FORMAT,
                  *j.p == 0 ? "NUL padding after the header JSON (only whitespace is allowed)"
                            : "trailing characters after the header JSON");
        goto out;
    }
    free(hdr); /* the names are the model's now: do not keep the header while it grows */
    hdr = NULL;
    st = validate_and_add(src, m, &ents, n, &pool, hlen, err);
out:
    free(ents);
    free(pool);
    free(hdr);
    return st;
}
