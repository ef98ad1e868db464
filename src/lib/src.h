/* Bounded byte source over a file or a memory buffer.
 *
 * Every read is checked: off + len <= size, with overflow-safe arithmetic.
 * Readers never see a raw file descriptor; fuzzers use the memory source. */
#ifndef DTAP_SRC_H
#define DTAP_SRC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "dtaudit/error.h"

#define DTAP_SRC_HEAD 4096 /* first bytes of a file, kept: headers are read in one syscall */

typedef struct dtap_src {
    const char *name;         /* for messages (borrowed) */
    int fd;                   /* -1 for memory */
    const unsigned char *mem; /* memory source */
    uint64_t size;
    size_t headlen;           /* bytes valid in head (files only) */
    unsigned char head[DTAP_SRC_HEAD];
} dtap_src;

dta_status dtap_src_open_file(dtap_src *s, const char *path, dta_error *err);
/* open(2) for reading that refuses anything but a regular file (a FIFO, device or socket
 * could block or never end) without blocking on it; returns the fd (and *size when not
 * NULL), or -1 with err set. */
int dtap_open_regular(const char *path, uint64_t *size, dta_error *err);
void dtap_src_open_mem(dtap_src *s, const char *name, const void *data, size_t size);
void dtap_src_close(dtap_src *s);

/* Reads exactly len bytes at off; DTA_E_FORMAT ("truncated") when past the end. */
dta_status dtap_src_read(const dtap_src *s, uint64_t off, void *buf, size_t len, dta_error *err);
/* pread until n bytes are read from fd at off (EINTR retried): the one read loop of the
 * streaming paths (convert, dequantize, values). A short file is DTA_E_FORMAT; the message
 * names path, and tensor when it is not NULL. */
dta_status dtap_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path,
                          const char *tensor, dta_error *err);
/* Reads up to len bytes at off into buf, returns how many (0 past the end). */
size_t dtap_src_peek(const dtap_src *s, uint64_t off, void *buf, size_t len);
/* Allocates and reads [off, off+len): caller frees. Checks len against cap first. */
dta_status dtap_src_alloc_read(const dtap_src *s, uint64_t off, uint64_t len, uint64_t cap,
                               unsigned char **out, dta_error *err);

/* Overflow-checked helpers. Return 0 on success, -1 on overflow. */
static inline int dtap_add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a > UINT64_MAX - b) return -1;
    *r = a + b;
    return 0;
}
static inline int dtap_mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a != 0 && b > UINT64_MAX / a) return -1;
    *r = a * b;
    return 0;
}

/* Non-cryptographic hash for in-memory tables: sixteen bytes per step, and the last bytes
 * read as one word that overlaps the ones before (names are long and share prefixes, so a
 * byte-at-a-time hash, then a variable-length memcpy of the tail, were visible costs on
 * 100k-tensor checkpoints). The values are no output: tables only. */
static inline uint64_t dtap_hash(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull), a, b, w;
    size_t left = n;
    for (; left > 16; p += 16, left -= 16) {
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        h = (h ^ a) * 0xbf58476d1ce4e5b9ull;
        h = (h ^ (h >> 31) ^ b) * 0x94d049bb133111ebull;
    }
    /* 0 to 16 bytes left, at p[0..left) */
    if (n >= 16) { /* the last 16 bytes of the string */
        memcpy(&a, p + left - 16, 8);
        memcpy(&b, p + left - 8, 8);
        h = (h ^ a) * 0xbf58476d1ce4e5b9ull;
        w = b;
    } else if (left >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + left - 8, 8);
        h = (h ^ a) * 0xbf58476d1ce4e5b9ull;
        w = b;
    } else if (left >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + left - 4, 4);
        w = (uint64_t)lo | ((uint64_t)hi << 32);
    } else {
        w = left ? (uint64_t)p[0] | ((uint64_t)p[left / 2] << 8) | ((uint64_t)p[left - 1] << 16) : 0;
    }
    /* a full finalizer: the last word's high bytes (the string's last characters, where
     * names differ) must reach the low bits that index a table */
    h = (h ^ (h >> 31) ^ w) * 0x94d049bb133111ebull;
    h = (h ^ (h >> 32)) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static inline uint16_t dtap_le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t dtap_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t dtap_le64(const unsigned char *p)
{
    return (uint64_t)dtap_le32(p) | ((uint64_t)dtap_le32(p + 4) << 32);
}

/* Eight bytes at p as a little-endian word (one load): the first byte is the lowest, so
 * dtap_ctz64 of a per-byte flag mask gives the first flagged byte. For the scanners. */
static inline uint64_t dtap_word_le(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}
static inline unsigned dtap_ctz64(uint64_t x) { return (unsigned)__builtin_ctzll(x); } /* x != 0 */

/* How many bytes of s[0..end) come before the first '"', '\\' or byte below lo: the run
 * a JSON string scanner can take as it stands (lo 0x20: stop at a control character, lo 1:
 * at a NUL only). Sixteen bytes a step with SSE2, eight without. */
static inline size_t dtap_json_plain_len(const unsigned char *s, const unsigned char *end,
                                         unsigned char lo)
{
    size_t i = 0, n = (size_t)(end - s);
#ifdef __SSE2__
    const __m128i q = _mm_set1_epi8('"'), b = _mm_set1_epi8('\\'),
                  below = _mm_set1_epi8((char)(lo - 1));
    for (; n - i >= 16; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, b)),
                                   _mm_cmpeq_epi8(_mm_min_epu8(x, below), x)); /* x < lo */
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return i + (unsigned)__builtin_ctz(mask);
    }
#endif
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    for (; n - i >= 8; i += 8) {
        uint64_t w = dtap_word_le(s + i), q8 = w ^ (ones * '"'), b8 = w ^ (ones * '\\');
        /* the lowest flagged byte is exact (a borrow only flags bytes above it) */
        uint64_t hit = ((w - ones * lo) & ~w & high) | ((q8 - ones) & ~q8 & high) |
                       ((b8 - ones) & ~b8 & high);
        if (hit)
            return i + (dtap_ctz64(hit) >> 3);
    }
    while (i < n && s[i] != '"' && s[i] != '\\' && s[i] >= lo)
        i++;
    return i;
}

static inline void dtap_put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void dtap_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static inline void dtap_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

#endif
