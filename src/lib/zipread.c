/* Zip directory reader (libzip), as used by torch checkpoints.
 *
 * Layout (APPNOTE 4.3, formats.md 2.3-2.4): [optional preamble] local header 30 bytes
 * ("PK\3\4", ..., u16 name_len at +26, u16 extra_len at +28) + name + extra + data
 * [+ data descriptor], repeated; then the central directory, one 46-byte "PK\1\2"
 * record + name + extra + comment per entry (u32 local header offset at +42, saturated
 * fields moved into the zip64 extra 0x0001: uncomp, comp, offset, disk, in that order);
 * then [zip64 EOCD "PK\6\6" + locator "PK\6\7"] and the EOCD "PK\5\6" (22 bytes +
 * comment). torch writes FB padding into the LOCAL extra only, so a record's data starts
 * at local offset + 30 + local name_len + local extra_len, never at anything computed
 * from the central record.
 *
 * libzip opens and validates the archive (through a zip_source over the dtap_src, so a
 * file and a memory buffer take the same path), lists entries and inflates compressed
 * ones. It does not expose local header offsets, so the central directory is walked
 * once more here to find them. STORED records are read straight from the source: torch
 * may write zero CRCs, which libzip's verified reads would reject. */
#include "zipread.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

struct dtap_zip {
    const dtap_src *src;
    zip_t *za;
    dtap_zip_entry *ents;
    size_t n;
    char *prefix;
};

/* ---- zip_source over a dtap_src ---------------------------------------------------- */

typedef struct {
    const dtap_src *src;
    uint64_t pos;
    zip_error_t ze;
} srcctx;

static zip_int64_t src_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    srcctx *c = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        c->pos = 0;
        return 0;
    case ZIP_SOURCE_READ: {
        if (len > SIZE_MAX) len = SIZE_MAX;
        size_t got = dtap_src_peek(c->src, c->pos, data, (size_t)len);
        c->pos += got;
        return (zip_int64_t)got;
    }
    case ZIP_SOURCE_CLOSE:
        return 0;
    case ZIP_SOURCE_STAT: {
        if (len < sizeof(zip_stat_t)) {
            zip_error_set(&c->ze, ZIP_ER_INVAL, 0);
            return -1;
        }
        zip_stat_t *st = data;
        zip_stat_init(st);
        st->size = c->src->size;
        st->valid |= ZIP_STAT_SIZE;
        return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&c->ze, data, len);
    case ZIP_SOURCE_FREE:
        zip_error_fini(&c->ze);
        free(c);
        return 0;
    case ZIP_SOURCE_SEEK: {
        zip_int64_t np = zip_source_seek_compute_offset(c->pos, c->src->size, data, len, &c->ze);
        if (np < 0) return -1;
        c->pos = (uint64_t)np;
        return 0;
    }
    case ZIP_SOURCE_TELL:
        return (zip_int64_t)c->pos;
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                              ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                              ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL,
                                              ZIP_SOURCE_SUPPORTS, -1);
    default:
        zip_error_set(&c->ze, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

/* ---- central directory walk (local header offsets) ----------------------------------- */

#define EOCD_LEN 22u
#define EOCD_SCAN (65535u + EOCD_LEN)

/* Finds the central directory: *cd_off absolute (preamble shift applied), *count. */
static dta_status find_cd(const dtap_src *s, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count,
                          uint64_t *shift, dta_error *err)
{
    uint64_t tail = s->size < EOCD_SCAN ? s->size : EOCD_SCAN;
    if (tail < EOCD_LEN) return dta_error_set(err, DTA_E_FORMAT, 0, "zip: file too short");
    unsigned char *buf = malloc((size_t)tail);
    if (!buf) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    uint64_t base = s->size - tail;
    dta_status st = dtap_src_read(s, base, buf, (size_t)tail, err);
    if (st) {
        free(buf);
        return st;
    }
    size_t at = SIZE_MAX;
    for (size_t i = (size_t)tail - EOCD_LEN + 1; i-- > 0;)
        if (buf[i] == 'P' && buf[i + 1] == 'K' && buf[i + 2] == 5 && buf[i + 3] == 6 &&
            i + EOCD_LEN + dtap_le16(buf + i + 20) <= tail) {
            at = i;
            break;
        }
    if (at == SIZE_MAX) {
        free(buf);
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: no end of central directory record");
    }
    uint64_t eocd = base + at;
    uint64_t n = dtap_le16(buf + at + 10), size = dtap_le32(buf + at + 12), off = dtap_le32(buf + at + 16);
    free(buf);
    uint64_t cd_end_actual = eocd;
    if (eocd >= 20 + 56) {
        unsigned char loc[20], z64[56];
        if (dtap_src_read(s, eocd - 20, loc, 20, NULL) == DTA_OK && dtap_le32(loc) == 0x07064b50u) {
            uint64_t zoff = dtap_le64(loc + 8);
            uint64_t guess = eocd - 20 - 56; /* where it sits if there is no preamble shift */
            uint64_t zat = guess;
            if (dtap_src_read(s, guess, z64, 56, NULL) != DTA_OK || dtap_le32(z64) != 0x06064b50u) {
                zat = zoff;
                if (dtap_src_read(s, zoff, z64, 56, NULL) != DTA_OK || dtap_le32(z64) != 0x06064b50u)
                    return dta_error_set(err, DTA_E_FORMAT, 0, "zip: bad zip64 end of central directory");
            }
            n = dtap_le64(z64 + 32);
            size = dtap_le64(z64 + 40);
            off = dtap_le64(z64 + 48);
            cd_end_actual = zat;
        }
    }
    uint64_t cd_end;
    if (dtap_add_u64(off, size, &cd_end) || cd_end > cd_end_actual)
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: central directory out of range");
    *shift = cd_end_actual - cd_end; /* bytes prepended to the archive (preamble) */
    *cd_off = off + *shift;
    *cd_size = size;
    *count = n;
    return DTA_OK;
}

static dta_status walk_cd(dtap_zip *z, dta_error *err)
{
    const dtap_src *s = z->src;
    uint64_t cd = 0, cd_size = 0, n = 0, shift = 0;
    dta_status st = find_cd(s, &cd, &cd_size, &n, &shift, err);
    if (st) return st;
    if (n != z->n)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: central directory has %llu entries, libzip found %zu",
                             (unsigned long long)n, z->n);
    uint64_t pos = cd, end = cd + cd_size;
    for (size_t i = 0; i < z->n; i++) {
        unsigned char h[46];
        if (pos > end || end - pos < 46 || dtap_src_read(s, pos, h, 46, NULL) != DTA_OK ||
            dtap_le32(h) != 0x02014b50u)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: bad central directory entry %zu", i);
        uint16_t nl = dtap_le16(h + 28), xl = dtap_le16(h + 30), cl = dtap_le16(h + 32);
        uint64_t comp = dtap_le32(h + 20), unc = dtap_le32(h + 24), lo = dtap_le32(h + 42);
        uint64_t xoff = pos + 46 + nl;
        if (xl && (unc == 0xFFFFFFFFu || comp == 0xFFFFFFFFu || lo == 0xFFFFFFFFu)) {
            unsigned char *x = malloc(xl);
            if (!x) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
            if ((st = dtap_src_read(s, xoff, x, xl, err))) {
                free(x);
                return st;
            }
            for (size_t k = 0; k + 4 <= xl;) {
                uint16_t id = dtap_le16(x + k), len = dtap_le16(x + k + 2);
                if (k + 4 + len > xl) break;
                if (id == 1) {
                    size_t q = k + 4, qe = k + 4 + len;
                    if (unc == 0xFFFFFFFFu && q + 8 <= qe) unc = dtap_le64(x + q), q += 8;
                    if (comp == 0xFFFFFFFFu && q + 8 <= qe) comp = dtap_le64(x + q), q += 8;
                    if (lo == 0xFFFFFFFFu && q + 8 <= qe) lo = dtap_le64(x + q), q += 8;
                    break;
                }
                k += 4 + (size_t)len;
            }
            free(x);
        }
        if (nl != z->ents[i].name_len) /* name check is cheap and catches desync */
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: central directory entry %zu disagrees with libzip", i);
        if (dtap_add_u64(lo, shift, &z->ents[i].local_offset))
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: local header offset overflows");
        pos = xoff + xl + cl;
    }
    return DTA_OK;
}

/* ---- public ------------------------------------------------------------------------ */

static dta_status zerr(dta_error *err, zip_error_t *ze, const char *what)
{
    return dta_error_set(err, DTA_E_FORMAT, 0, "zip: %s: %s", what, zip_error_strerror(ze));
}

dta_status dtap_zip_open(const dtap_src *src, dtap_zip **out, dta_error *err)
{
    *out = NULL;
    dtap_zip *z = calloc(1, sizeof(*z));
    srcctx *c = calloc(1, sizeof(*c));
    if (!z || !c) {
        free(z);
        free(c);
        return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    }
    z->src = src;
    c->src = src;
    zip_error_init(&c->ze);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *zs = zip_source_function_create(src_cb, c, &ze);
    if (!zs) {
        zip_error_fini(&c->ze);
        free(c);
        free(z);
        dta_status st = zerr(err, &ze, "cannot create source");
        zip_error_fini(&ze);
        return st;
    }
    z->za = zip_open_from_source(zs, ZIP_RDONLY, &ze);
    if (!z->za) {
        zip_source_free(zs); /* frees c through ZIP_SOURCE_FREE */
        free(z);
        dta_status st = zerr(err, &ze, "not a readable archive");
        zip_error_fini(&ze);
        return st;
    }
    zip_error_fini(&ze);
    zip_int64_t n = zip_get_num_entries(z->za, 0);
    dta_status st = DTA_OK;
    if (n < 0) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot count entries");
        goto fail;
    }
    if ((uint64_t)n > DTA_MAX_ZIP_ENTRIES) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "zip: %lld entries exceed the cap of %u",
                           (long long)n, DTA_MAX_ZIP_ENTRIES);
        goto fail;
    }
    z->n = (size_t)n;
    z->ents = calloc(z->n ? z->n : 1, sizeof(*z->ents));
    if (!z->ents) {
        st = dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < z->n; i++) {
        zip_stat_t zst;
        if (zip_stat_index(z->za, i, ZIP_FL_ENC_RAW, &zst) != 0 || !(zst.valid & ZIP_STAT_NAME)) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot read entry %zu", i);
            goto fail;
        }
        dtap_zip_entry *e = &z->ents[i];
        e->name = zst.name; /* owned by libzip, valid while the archive is open */
        e->name_len = strlen(zst.name);
        e->size = (zst.valid & ZIP_STAT_SIZE) ? zst.size : 0;
        e->comp_size = (zst.valid & ZIP_STAT_COMP_SIZE) ? zst.comp_size : 0;
        e->method = (zst.valid & ZIP_STAT_COMP_METHOD) ? (uint16_t)zst.comp_method : 0;
        e->crc = (zst.valid & ZIP_STAT_CRC) ? zst.crc : 0;
    }
    if ((st = walk_cd(z, err))) goto fail;
    /* prefix: text before the first '/' of the first entry */
    const char *first = z->n ? z->ents[0].name : "";
    const char *slash = strchr(first, '/');
    size_t pl = slash ? (size_t)(slash - first) : 0;
    z->prefix = malloc(pl + 1);
    if (!z->prefix) {
        st = dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
        goto fail;
    }
    memcpy(z->prefix, first, pl);
    z->prefix[pl] = 0;
    *out = z;
    return DTA_OK;
fail:
    dtap_zip_close(z);
    return st;
}

void dtap_zip_close(dtap_zip *z)
{
    if (!z) return;
    if (z->za) zip_discard(z->za);
    free(z->ents);
    free(z->prefix);
    free(z);
}

size_t dtap_zip_count(const dtap_zip *z) { return z ? z->n : 0; }

const dtap_zip_entry *dtap_zip_entry_at(const dtap_zip *z, size_t i)
{
    return z && i < z->n ? &z->ents[i] : NULL;
}

const char *dtap_zip_prefix(const dtap_zip *z) { return z ? z->prefix : ""; }

const dtap_zip_entry *dtap_zip_find(const dtap_zip *z, const char *rel)
{
    size_t pl = strlen(z->prefix), rl = strlen(rel);
    char stackbuf[256];
    char *full = pl + rl + 2 <= sizeof stackbuf ? stackbuf : malloc(pl + rl + 2);
    if (!full) return NULL;
    memcpy(full, z->prefix, pl);
    full[pl] = '/';
    memcpy(full + pl + 1, rel, rl + 1);
    zip_int64_t idx = zip_name_locate(z->za, full, ZIP_FL_ENC_RAW);
    if (full != stackbuf) free(full);
    if (idx < 0 || (uint64_t)idx >= z->n) return NULL;
    return &z->ents[idx];
}

dta_status dtap_zip_data_offset(const dtap_zip *z, const dtap_zip_entry *e, uint64_t *off,
                                dta_error *err)
{
    unsigned char h[30];
    if (dtap_src_read(z->src, e->local_offset, h, 30, NULL) != DTA_OK || dtap_le32(h) != 0x04034b50u)
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: record '%s' has no local header at offset %llu",
                             e->name, (unsigned long long)e->local_offset);
    uint64_t d = e->local_offset + 30 + dtap_le16(h + 26) + dtap_le16(h + 28), end;
    if (dtap_add_u64(d, e->comp_size, &end) || end > z->src->size)
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: record '%s' (%llu bytes at %llu) runs past the end of the file",
                             e->name, (unsigned long long)e->comp_size, (unsigned long long)d);
    *off = d;
    return DTA_OK;
}

dta_status dtap_zip_read(const dtap_zip *z, const dtap_zip_entry *e, uint64_t cap,
                         unsigned char **out, size_t *n, dta_error *err)
{
    *out = NULL;
    *n = 0;
    if (e->size > cap || e->size >= SIZE_MAX)
        return dta_error_set(err, DTA_E_LIMIT, 0, "zip: record '%s' has %llu bytes, over the cap of %llu",
                             e->name, (unsigned long long)e->size, (unsigned long long)cap);
    unsigned char *buf = malloc((size_t)e->size + 1);
    if (!buf) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    dta_status st = DTA_OK;
    if (e->method == DTAP_ZIP_STORED) {
        uint64_t off;
        if (e->comp_size != e->size)
            st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: stored record '%s' has different sizes", e->name);
        else if (!(st = dtap_zip_data_offset(z, e, &off, err)))
            st = dtap_src_read(z->src, off, buf, (size_t)e->size, err);
    } else {
        zip_file_t *f = zip_fopen_index(z->za, (zip_uint64_t)(e - z->ents), 0);
        if (!f) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot open record '%s': %s", e->name,
                               zip_strerror(z->za));
        } else {
            uint64_t got = 0;
            while (got < e->size) {
                zip_int64_t r = zip_fread(f, buf + got, e->size - got);
                if (r <= 0) break;
                got += (uint64_t)r;
            }
            if (got != e->size)
                st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot read record '%s': %s", e->name,
                                   zip_file_strerror(f));
            zip_fclose(f);
        }
    }
    if (st) {
        free(buf);
        return st;
    }
    buf[e->size] = 0;
    *out = buf;
    *n = (size_t)e->size;
    return DTA_OK;
}
