/* Streaming zip writer (dtap_zipw_*, zip_write.h), used for torch zip checkpoints.
 *
 * Layout written (docs/formats.md 2.3-2.4, 3.1; sizes little-endian), for each record in
 * the order the caller begins them:
 *     local header  "PK\3\4", u16 needed 0, u16 flags 0x0808 (0x0800 when empty),
 *                   u16 method 0 (STORED), u16 time 0, u16 date 0, u32 crc 0,
 *                   u32 comp 0, u32 uncomp 0, u16 name_len, u16 extra_len, name,
 *                   [zip64 extra 0x0001: {u64 uncomp, u64 comp = 0} if size >= 4G-1,
 *                    {u64 local offset} if offset >= 4G-1],
 *                   "FB" extra: u16 0x4246, u16 pad, pad x 'Z' -> data at a multiple of 64
 *     data          size bytes
 *     descriptor    (size > 0 only) "PK\7\8", u32 crc, u32 comp, u32 uncomp; or u64/u64
 *                   when the record has a zip64 extra (24 bytes)
 *   central directory: "PK\1\2" per record (made_by 0, needed 0, same flags, crc, sizes
 *     and offset saturated to 0xFFFFFFFF with a zip64 extra holding the saturated ones in
 *     the order uncomp, comp, offset; no FB padding here)
 *   zip64 EOCD (56 bytes, made_by 0x031E, needed 0x2D), zip64 locator (20 bytes), EOCD
 *     (22 bytes, counts saturated to 0xFFFF, size/offset to 0xFFFFFFFF) */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dtaudit/limits.h"
#include "src.h"
#include "util_strmap.h"
#include "zip_write.h"

#define IO_CHUNK (1024u * 1024u) /* read/write chunk; a multiple of 64 */
#define ALIGN 64u

bool dtap_zipw_valid_prefix(const char *p)
{
    size_t n = strlen(p);
    return n > 0 && n <= 1024 && !strchr(p, '/') && !strchr(p, '\\');
}

typedef struct {
    char *name;
    uint64_t size, local;
    uint32_t crc;
} zw_ent;

struct dtap_zipw {
    int fd;
    char *prefix;
    uint64_t pos, thr;
    unsigned char *buf;
    size_t blen;
    zw_ent *ents;
    size_t n, cap;
    dtap_strmap names; /* record name after the prefix -> entry index (duplicates) */
    bool in_rec, failed, finished;
    uint64_t rsize, rdone, rlocal;
    uint32_t rcrc;
    char *rname;
};


static dta_status zw_flush(dtap_zipw *z, dta_error *err)
{
    size_t off = 0;
    while (off < z->blen) {
        ssize_t r = write(z->fd, z->buf + off, z->blen - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            z->failed = true;
            return dta_error_set(err, DTA_E_IO, e, "write failed: %s", strerror(e));
        }
        off += (size_t)r;
    }
    z->blen = 0;
    return DTA_OK;
}

static dta_status zw_raw(dtap_zipw *z, const void *p, size_t n, dta_error *err)
{
    const unsigned char *s = p;
    uint64_t np;
    if (dtap_add_u64(z->pos, n, &np)) return dta_error_set(err, DTA_E_LIMIT, 0, "zip: archive size overflows");
    while (n) {
        size_t k = IO_CHUNK - z->blen < n ? IO_CHUNK - z->blen : n;
        memcpy(z->buf + z->blen, s, k);
        z->blen += k;
        s += k;
        n -= k;
        if (z->blen == IO_CHUNK) {
            dta_status st = zw_flush(z, err);
            if (st) return st;
        }
    }
    z->pos = np;
    return DTA_OK;
}

dta_status dtap_zipw_open(int fd, const char *prefix, dtap_zipw **out, dta_error *err)
{
    *out = NULL;
    if (fd < 0 || !prefix || !dtap_zipw_valid_prefix(prefix))
        return dta_error_set(err, DTA_E_ARG, 0, "zip writer: bad descriptor or archive name");
    dtap_zipw *z = calloc(1, sizeof *z);
    if (z) {
        z->prefix = strdup(prefix);
        z->buf = malloc(IO_CHUNK);
    }
    if (!z || !z->prefix || !z->buf) {
        dtap_zipw_free(z);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    z->fd = fd;
    z->thr = DTAP_ZIP64_LIMIT;
    *out = z;
    return DTA_OK;
}

void dtap_zipw_set_zip64_threshold(dtap_zipw *z, uint64_t threshold)
{
    if (z) z->thr = threshold ? threshold : DTAP_ZIP64_LIMIT;
}

uint64_t dtap_zipw_offset(const dtap_zipw *z) { return z ? z->pos : 0; }

void dtap_zipw_free(dtap_zipw *z)
{
    if (!z) return;
    for (size_t i = 0; i < z->n; i++) free(z->ents[i].name);
    free(z->ents);
    free(z->rname);
    free(z->prefix);
    free(z->buf);
    dtap_strmap_free(&z->names);
    free(z);
}

static dta_status zw_state(dtap_zipw *z, bool want_rec, dta_error *err)
{
    if (!z) return dta_error_set(err, DTA_E_ARG, 0, "zip writer: NULL");
    if (z->failed) return dta_error_set(err, DTA_E_IO, 0, "zip writer: an earlier write failed");
    if (z->finished) return dta_error_set(err, DTA_E_ARG, 0, "zip writer: archive already finished");
    if (z->in_rec != want_rec)
        return dta_error_set(err, DTA_E_ARG, 0, want_rec ? "zip writer: no record open" : "zip writer: record '%s' still open",
                             z->rname ? z->rname : "");
    return DTA_OK;
}

dta_status dtap_zipw_begin(dtap_zipw *z, const char *rel, uint64_t size, dta_error *err)
{
    dta_status st = zw_state(z, false, err);
    if (st) return st;
    if (!rel || !*rel) return dta_error_set(err, DTA_E_ARG, 0, "zip writer: empty record name");
    if (z->n >= DTA_MAX_WRITE_ZIP_ENTRIES)
        return dta_error_set(err, DTA_E_LIMIT, 0, "zip: more than %u records", DTA_MAX_WRITE_ZIP_ENTRIES);
    size_t pl = strlen(z->prefix), rl = strlen(rel);
    /* torch refuses duplicate names ("serialize file twice"): a hash of the names written,
     * not a scan of them per record (200k records were quadratic) */
    if (!dtap_strmap_reserve(&z->names, z->n + 1)) /* room for the name, added at its end */
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    if (dtap_strmap_get(&z->names, rel, rl) != SIZE_MAX)
        return dta_error_set(err, DTA_E_ARG, 0, "zip: record '%s' written twice", rel);
    if (pl + 1 + rl > 65535) return dta_error_set(err, DTA_E_LIMIT, 0, "zip: record name longer than 65535 bytes");
    if (z->n == z->cap) {
        size_t nc = z->cap ? z->cap * 2 : 16;
        zw_ent *ne = realloc(z->ents, nc * sizeof *ne);
        if (!ne) return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        z->ents = ne;
        z->cap = nc;
    }
    char *name = malloc(pl + rl + 2);
    if (!name) return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    memcpy(name, z->prefix, pl);
    name[pl] = '/';
    memcpy(name + pl + 1, rel, rl + 1);
    size_t nl = pl + 1 + rl;

    uint64_t local = z->pos;
    bool zsize = size >= z->thr, zofs = local >= z->thr;
    size_t z64len = (zsize || zofs) ? 4u + (zsize ? 16u : 0u) + (zofs ? 8u : 0u) : 0u;
    uint64_t start = local + 30 + nl + 4 + z64len;
    size_t pad = (size_t)((ALIGN - start % ALIGN) % ALIGN);
    size_t xl = z64len + 4 + pad;
    unsigned char h[30 + 4 + 24 + 64];
    dtap_put_le32(h, 0x04034B50u);
    dtap_put_le16(h + 4, 0);
    dtap_put_le16(h + 6, size ? 0x0808 : 0x0800);
    dtap_put_le16(h + 8, 0);
    dtap_put_le16(h + 10, 0);
    dtap_put_le16(h + 12, 0);
    dtap_put_le32(h + 14, 0);
    dtap_put_le32(h + 18, 0);
    dtap_put_le32(h + 22, 0);
    dtap_put_le16(h + 26, (uint16_t)nl);
    dtap_put_le16(h + 28, (uint16_t)xl);
    if ((st = zw_raw(z, h, 30, err)) || (st = zw_raw(z, name, nl, err))) {
        free(name);
        return st;
    }
    size_t k = 0;
    if (z64len) {
        dtap_put_le16(h + k, 1);
        dtap_put_le16(h + k + 2, (uint16_t)(z64len - 4));
        k += 4;
        if (zsize) {
            dtap_put_le64(h + k, size);
            dtap_put_le64(h + k + 8, 0); /* compressed size unknown when the header is written (miniz) */
            k += 16;
        }
        if (zofs) {
            dtap_put_le64(h + k, local);
            k += 8;
        }
    }
    dtap_put_le16(h + k, 0x4246); /* "FB" */
    dtap_put_le16(h + k + 2, (uint16_t)pad);
    memset(h + k + 4, 'Z', pad);
    k += 4 + pad;
    if ((st = zw_raw(z, h, k, err))) {
        free(name);
        return st;
    }
    z->in_rec = true;
    z->rname = name;
    z->rsize = size;
    z->rdone = 0;
    z->rlocal = local;
    z->rcrc = (uint32_t)crc32(0L, Z_NULL, 0);
    return DTA_OK;
}

dta_status dtap_zipw_write(dtap_zipw *z, const void *p, size_t n, dta_error *err)
{
    dta_status st = zw_state(z, true, err);
    if (st) return st;
    if (n > z->rsize - z->rdone)
        return dta_error_set(err, DTA_E_ARG, 0, "zip: record '%s' gets more than its %llu bytes", z->rname,
                             (unsigned long long)z->rsize);
    if (n && !p) return dta_error_set(err, DTA_E_ARG, 0, "zip writer: NULL buffer");
    const unsigned char *s = p;
    uLong crc = z->rcrc;
    for (size_t done = 0; done < n;) {
        size_t k = n - done > (1u << 30) ? (1u << 30) : n - done;
        crc = crc32(crc, s + done, (uInt)k);
        done += k;
    }
    z->rcrc = (uint32_t)crc;
    if ((st = zw_raw(z, p, n, err))) return st;
    z->rdone += n;
    return DTA_OK;
}

dta_status dtap_zipw_end(dtap_zipw *z, dta_error *err)
{
    dta_status st = zw_state(z, true, err);
    if (st) return st;
    if (z->rdone != z->rsize)
        return dta_error_set(err, DTA_E_ARG, 0, "zip: record '%s' got %llu of its %llu bytes", z->rname,
                             (unsigned long long)z->rdone, (unsigned long long)z->rsize);
    if (z->rsize) {
        unsigned char d[24];
        bool z64 = z->rsize >= z->thr || z->rlocal >= z->thr;
        dtap_put_le32(d, 0x08074B50u);
        dtap_put_le32(d + 4, z->rcrc);
        if (z64) {
            dtap_put_le64(d + 8, z->rsize);
            dtap_put_le64(d + 16, z->rsize);
        } else {
            dtap_put_le32(d + 8, (uint32_t)z->rsize);
            dtap_put_le32(d + 12, (uint32_t)z->rsize);
        }
        if ((st = zw_raw(z, d, z64 ? 24 : 16, err))) return st;
    }
    zw_ent *e = &z->ents[z->n++];
    e->name = z->rname;
    e->size = z->rsize;
    e->local = z->rlocal;
    e->crc = z->rcrc;
    /* room reserved by dtap_zipw_begin: cannot fail */
    dtap_strmap_puts(&z->names, e->name + strlen(z->prefix) + 1, z->n - 1);
    z->rname = NULL;
    z->in_rec = false;
    return DTA_OK;
}

dta_status dtap_zipw_finish(dtap_zipw *z, dta_error *err)
{
    dta_status st = zw_state(z, false, err);
    if (st) return st;
    uint64_t cd = z->pos;
    for (size_t i = 0; i < z->n; i++) {
        const zw_ent *e = &z->ents[i];
        bool zsize = e->size >= z->thr, zofs = e->local >= z->thr;
        size_t xl = (zsize || zofs) ? 4u + (zsize ? 16u : 0u) + (zofs ? 8u : 0u) : 0u;
        size_t nl = strlen(e->name);
        unsigned char h[46 + 28];
        dtap_put_le32(h, 0x02014B50u);
        dtap_put_le16(h + 4, 0);
        dtap_put_le16(h + 6, 0);
        dtap_put_le16(h + 8, e->size ? 0x0808 : 0x0800);
        dtap_put_le16(h + 10, 0);
        dtap_put_le16(h + 12, 0);
        dtap_put_le16(h + 14, 0);
        dtap_put_le32(h + 16, e->crc);
        dtap_put_le32(h + 20, zsize ? 0xFFFFFFFFu : (uint32_t)e->size);
        dtap_put_le32(h + 24, zsize ? 0xFFFFFFFFu : (uint32_t)e->size);
        dtap_put_le16(h + 28, (uint16_t)nl);
        dtap_put_le16(h + 30, (uint16_t)xl);
        dtap_put_le16(h + 32, 0);
        dtap_put_le16(h + 34, 0);
        dtap_put_le16(h + 36, 0);
        dtap_put_le32(h + 38, 0);
        dtap_put_le32(h + 42, zofs ? 0xFFFFFFFFu : (uint32_t)e->local);
        if ((st = zw_raw(z, h, 46, err)) || (st = zw_raw(z, e->name, nl, err))) return st;
        if (xl) {
            size_t k = 0;
            dtap_put_le16(h + k, 1);
            dtap_put_le16(h + k + 2, (uint16_t)(xl - 4));
            k += 4;
            if (zsize) {
                dtap_put_le64(h + k, e->size);
                dtap_put_le64(h + k + 8, e->size);
                k += 16;
            }
            if (zofs) {
                dtap_put_le64(h + k, e->local);
                k += 8;
            }
            if ((st = zw_raw(z, h, k, err))) return st;
        }
    }
    uint64_t cd_size = z->pos - cd, z64eocd = z->pos;
    unsigned char t[56 + 20 + 22];
    dtap_put_le32(t, 0x06064B50u);
    dtap_put_le64(t + 4, 44);
    dtap_put_le16(t + 12, 0x031E);
    dtap_put_le16(t + 14, 0x002D);
    dtap_put_le32(t + 16, 0);
    dtap_put_le32(t + 20, 0);
    dtap_put_le64(t + 24, z->n);
    dtap_put_le64(t + 32, z->n);
    dtap_put_le64(t + 40, cd_size);
    dtap_put_le64(t + 48, cd);
    unsigned char *l = t + 56;
    dtap_put_le32(l, 0x07064B50u);
    dtap_put_le32(l + 4, 0);
    dtap_put_le64(l + 8, z64eocd);
    dtap_put_le32(l + 16, 1);
    unsigned char *e = l + 20;
    dtap_put_le32(e, 0x06054B50u);
    dtap_put_le16(e + 4, 0);
    dtap_put_le16(e + 6, 0);
    dtap_put_le16(e + 8, z->n > 0xFFFF ? 0xFFFF : (uint16_t)z->n);
    dtap_put_le16(e + 10, z->n > 0xFFFF ? 0xFFFF : (uint16_t)z->n);
    dtap_put_le32(e + 12, cd_size >= DTAP_ZIP64_LIMIT ? 0xFFFFFFFFu : (uint32_t)cd_size);
    dtap_put_le32(e + 16, cd >= DTAP_ZIP64_LIMIT ? 0xFFFFFFFFu : (uint32_t)cd);
    dtap_put_le16(e + 20, 0);
    if ((st = zw_raw(z, t, sizeof t, err)) || (st = zw_flush(z, err))) return st;
    z->finished = true;
    return DTA_OK;
}
