/* Which bytes of a name may reach a terminal, and how the others are shown (dtap_escape):
 * shared by the library's error messages and the CLI's text and JSON writers (names come
 * from hostile files and paths).
 *
 * Unsafe: invalid UTF-8 (a lone 0x9b is CSI on an 8-bit terminal), C0 controls and DEL,
 * C1 controls (U+0080..U+009F: U+009B is CSI, U+0085 a newline), and the invisible
 * formatting characters that reorder or hide text: the bidi embeddings, overrides and
 * isolates (U+202A..U+202E, U+2066..U+2069), the marks U+200E, U+200F, U+061C, zero-width
 * characters (U+200B..U+200D, U+2060..U+2064, U+FEFF), the line and paragraph separators
 * U+2028, U+2029 and the interlinear annotations U+FFF9..U+FFFB. */
#ifndef DTAP_TEXT_SAFE_H
#define DTAP_TEXT_SAFE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Length (1..4) of the valid UTF-8 sequence at s, its code point in *cp; 0 when s does not
 * start a valid sequence (overlong, surrogate, past U+10FFFF, truncated by a NUL). */
static inline size_t dtap_utf8_decode(const unsigned char *s, uint32_t *cp)
{
    unsigned c = s[0];
    size_t k;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) k = 1, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) k = 2, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) k = 3, v = c & 0x07;
    else return 0;
    for (size_t i = 1; i <= k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((k == 2 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (k == 3 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return k + 1;
}

/* A code point that must not reach a terminal as itself. */
static inline bool dtap_cp_unsafe(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB);
}

/* s[0..n) made safe for a terminal and for a one-line message, the one escaping style of
 * the library's error messages and the CLI's text: invalid UTF-8 and unsafe bytes below
 * 0x80 as \xNN, unsafe code points above it as \uNNNN, everything else as it is. Stops
 * before the first character that would not fit cap with the NUL; returns buf. */
static inline char *dtap_escape(char *buf, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    size_t o = 0;
    if (cap == 0)
        return buf;
    while (p < end) {
        unsigned char tail[5] = {0, 0, 0, 0, 0}; /* a sequence cut by the end decodes as invalid */
        const unsigned char *d = p;
        uint32_t cp;
        if (end - p < 4) {
            memcpy(tail, p, (size_t)(end - p));
            d = tail;
        }
        size_t k = *p ? dtap_utf8_decode(d, &cp) : 0;
        if (k == 0 || (k == 1 && dtap_cp_unsafe(cp))) {
            if (o + 4 >= cap)
                break;
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
            p++;
        } else if (dtap_cp_unsafe(cp)) {
            if (o + 6 >= cap)
                break;
            buf[o++] = '\\';
            buf[o++] = 'u';
            for (int sh = 12; sh >= 0; sh -= 4)
                buf[o++] = hex[(cp >> sh) & 15];
            p += k;
        } else {
            if (o + k >= cap)
                break;
            memcpy(buf + o, p, k);
            o += k;
            p += k;
        }
    }
    buf[o] = 0;
    return buf;
}

#endif
