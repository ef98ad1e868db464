/* Bounded byte source over a file or a memory buffer.
 *
 * Every read is checked: off + len <= size, with overflow-safe arithmetic.
 * Readers never see a raw file descriptor; fuzzers use the memory source. */
#ifndef DTAP_SRC_H
#define DTAP_SRC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Non-cryptographic hash for in-memory tables: 8 bytes per step (names are long and share
 * prefixes, so a byte-at-a-time hash was a visible cost on 100k-tensor checkpoints). */
static inline uint64_t dtap_hash(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull), w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
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
