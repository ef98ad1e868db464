/* The CLI's JSON writer (jsonw.h): the only code that formats JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/version.h"
#include "jsonw.h"
#include "text_safe.h"

struct jw {
    FILE *out;
    int depth;
    bool first;  /* no member written yet at this level */
    size_t len;  /* bytes pending in buf: one fwrite per 64 KiB, not one per token */
    char buf[1 << 16];
};

static void flush(jw *w)
{
    fwrite(w->buf, 1, w->len, w->out);
    w->len = 0;
}

static void put(jw *w, const void *p, size_t n)
{
    if (n > sizeof w->buf - w->len) {
        flush(w);
        if (n > sizeof w->buf) {
            fwrite(p, 1, n, w->out);
            return;
        }
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void ch(jw *w, char c) { put(w, &c, 1); }

void jw_raw(jw *w, const char *s) { put(w, s, strlen(s)); }

void jw_u64(jw *w, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put(w, tmp + sizeof tmp - n, n);
}

static void indent(jw *w)
{
    static const char spaces[] = "\n                                                                ";
    int n = 2 * w->depth;
    put(w, spaces, 1);
    while (n > 0) {
        int k = n < 64 ? n : 64;
        put(w, spaces + 1, (size_t)k);
        n -= k;
    }
}

void jw_str(jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    ch(w, '"');
    for (;;) {
        /* plain printable ASCII is written in runs */
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            put(w, run, (size_t)(p - run));
        if (!*p)
            break;
        uint32_t cp;
        size_t n = dtap_utf8_decode(p, &cp);
        if (n == 0) {
            jw_raw(w, "\\ufffd"); /* invalid byte: replacement character */
            p++;
        } else if (*p == '"' || *p == '\\') {
            ch(w, '\\');
            ch(w, (char)*p++);
        } else if (dtap_cp_unsafe(cp)) {
            /* controls, C1, bidi and zero-width characters as \uNNNN: the document stays
             * the same data, and printing it (jq, cat) cannot drive a terminal */
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            jw_raw(w, esc);
            p += n;
        } else {
            put(w, p, n);
            p += n;
        }
        run = p;
    }
    ch(w, '"');
}

void jw_key(jw *w, const char *k)
{
    if (!w->first)
        ch(w, ',');
    w->first = false;
    indent(w);
    jw_str(w, k);
    jw_raw(w, ": ");
}

static void open_(jw *w, char c)
{
    ch(w, c);
    w->depth++;
    w->first = true;
}

static void close_(jw *w, char c)
{
    w->depth--;
    if (!w->first)
        indent(w);
    ch(w, c);
    w->first = false;
}

void jw_obj(jw *w) { open_(w, '{'); }
void jw_obj_end(jw *w) { close_(w, '}'); }
void jw_arr(jw *w) { open_(w, '['); }
void jw_arr_end(jw *w) { close_(w, ']'); }

/* Array element separator (elements written inline when short). */
void jw_item(jw *w, bool newline)
{
    if (!w->first)
        jw_raw(w, newline ? "," : ", ");
    if (newline)
        indent(w);
    w->first = false;
}

/* The shortest %g form that reads back as v; null when v is not finite (JSON has no inf
 * or nan). */
void jw_num(jw *w, double v)
{
    char tmp[40];
    if (!isfinite(v)) {
        jw_raw(w, "null");
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    jw_raw(w, tmp);
}

void jw_kv_num(jw *w, const char *k, double v)
{
    jw_key(w, k);
    jw_num(w, v);
}

void jw_kv_null(jw *w, const char *k)
{
    jw_key(w, k);
    jw_raw(w, "null");
}

void jw_kv_str(jw *w, const char *k, const char *v)
{
    jw_key(w, k);
    jw_str(w, v);
}

void jw_kv_u64(jw *w, const char *k, uint64_t v)
{
    jw_key(w, k);
    jw_u64(w, v);
}

void jw_kv_bool(jw *w, const char *k, bool v)
{
    jw_key(w, k);
    jw_raw(w, v ? "true" : "false");
}

void jw_kv_dtype(jw *w, const char *k, dta_dtype t)
{
    jw_key(w, k);
    if (t == DTA_DTYPE_NONE)
        jw_raw(w, "null");
    else
        jw_str(w, dta_dtype_name(t));
}

void jw_dims(jw *w, const uint64_t *shape, int rank)
{
    ch(w, '[');
    for (int d = 0; d < rank; d++) {
        if (d)
            jw_raw(w, ", ");
        jw_u64(w, shape[d]);
    }
    ch(w, ']');
}

void jw_shape(jw *w, const dta_tensor *t) { jw_dims(w, t->shape, t->rank); }

void jw_doc(jw *w, const char *command)
{
    jw_obj(w);
    jw_kv_str(w, "tool", "dtaudit");
    jw_kv_str(w, "version", dta_version());
    jw_kv_u64(w, "schema", 1);
    jw_kv_str(w, "command", command);
}

jw *jw_new(FILE *out)
{
    jw *w = malloc(sizeof *w);
    if (!w) {
        fputs("dtaudit: out of memory\n", stderr);
        return NULL;
    }
    w->out = out;
    w->depth = 0;
    w->first = true;
    w->len = 0;
    return w;
}

int jw_end(jw *w)
{
    ch(w, '\n');
    flush(w);
    FILE *out = w->out;
    free(w);
    return ferror(out) ? 2 : 0;
}
