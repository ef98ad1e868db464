/* Text that reaches a terminal or a shell: escaping of names, shell words and globs.
 * Names and paths come from hostile files; which characters are unsafe is decided once,
 * in src/lib/text_safe.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "term.h"
#include "text_safe.h"

/* Control bytes and invalid UTF-8 are shown as \xNN, unsafe code points above U+007F (C1
 * controls, bidi overrides, zero-width characters) as \uNNNN: they cannot move the cursor,
 * recolour the terminal or reorder the line. The library's error messages are escaped by
 * the same function (dtap_escape). Truncates to cap. */
const char *clean(char *buf, size_t cap, const char *s)
{
    return dtap_escape(buf, cap, s, strlen(s));
}

/* Shell word for a suggested command: bare when every byte is plainly safe, '...' for
 * printable text, and bash's $'...' with \xNN escapes when the word holds a byte that must
 * not reach the terminal (the command then still names the file or tensor exactly). */
const char *shell_quote(char *buf, size_t cap, const char *s)
{
    static const char bare_ok[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:,=@";
    const unsigned char *p;
    bool bare = *s != 0, printable = true;
    size_t o = 0;
    if (cap < 8) {
        if (cap)
            buf[0] = 0;
        return buf;
    }
    for (p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = dtap_utf8_decode(p, &cp);
        if (n == 0 || dtap_cp_unsafe(cp)) {
            printable = bare = false;
            break;
        }
        if (n > 1 || !strchr(bare_ok, *p))
            bare = false;
        p += n;
    }
    if (bare) {
        snprintf(buf, cap, "%s", s);
        return buf;
    }
    if (printable) {
        buf[o++] = '\'';
        for (p = (const unsigned char *)s; *p && o + 6 < cap; p++) {
            if (*p == '\'') {
                memcpy(buf + o, "'\\''", 4);
                o += 4;
            } else {
                buf[o++] = (char)*p;
            }
        }
        buf[o++] = '\'';
        buf[o] = 0;
        return buf;
    }
    buf[o++] = '$';
    buf[o++] = '\'';
    for (p = (const unsigned char *)s; *p && o + 7 < cap;) {
        uint32_t cp;
        size_t n = dtap_utf8_decode(p, &cp);
        if (n == 0 || dtap_cp_unsafe(cp)) {
            n = n ? n : 1;
            for (size_t i = 0; i < n && o + 7 < cap; i++)
                o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", p[i]);
        } else if (*p == '\'' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else {
            if (o + n + 2 >= cap)
                break;
            memcpy(buf + o, p, n);
            o += n;
        }
        p += n;
    }
    buf[o++] = '\'';
    buf[o] = 0;
    return buf;
}

/* s[0..n) as an fnmatch pattern matching exactly s: '*', '?', '[' and '\' get a backslash
 * (a tensor named '*' must not become --allow '*=F32', which allows everything). Writes at
 * most cap bytes with the NUL; returns the length the whole pattern needs, like snprintf. */
size_t glob_escape(char *buf, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && s[i]; i++) {
        bool meta = strchr("*?[\\", s[i]) != NULL;
        if (meta) {
            if (o + 1 < cap)
                buf[o] = '\\';
            o++;
        }
        if (o + 1 < cap)
            buf[o] = s[i];
        o++;
    }
    if (cap)
        buf[o < cap ? o : cap - 1] = 0;
    return o;
}

/* clean() into one of four rotating static buffers: for messages that show a few names at
 * once (the CLI is single-threaded). */
const char *shown(const char *s)
{
    static char buf[4][8192];
    static unsigned next;
    char *b = buf[next++ % 4];
    return clean(b, sizeof buf[0], s ? s : "");
}
