/* Zip directory reader (libzip), as used by torch checkpoints.
 *
 * Layout (APPNOTE 4.3, docs/formats.md 2.3-2.4): [optional preamble] local header 30 bytes
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

/* What torch's reader does (PyTorchStreamReader::init in caffe2/serialize/
 * inline_container.cc, over miniz 3.0.2's mz_zip_reader_init / read_central_dir /
 * locate_file), and what is refused here so that dtaudit, libzip and torch cannot see
 * different archives in one file:
 *
 * - End record. miniz (mz_zip_reader_locate_header_sig) scans backwards from the end in
 *   4 KiB blocks, giving up about 64 KiB + 22 bytes back, and takes the LAST "PK\5\6"
 *   with at least 22 bytes after it; it never checks the comment length. libzip scans
 *   the same window but weighs every candidate, and Python's zipfile first tries the
 *   record exactly 22 bytes from the end. So: the end record is chosen as miniz does, and
 *   the file is refused when any other plausible end record lies in the window (one that
 *   has a zip64 locator before it, or whose central directory fits before it and starts
 *   with "PK\1\2"), or when anything follows the chosen record and its comment. A second
 *   end record hidden in the first one's comment is the classic way to show two readers
 *   two archives.
 * - zip64. miniz uses the zip64 end record when the 20 bytes before the end record are a
 *   locator and the record at the locator's offset has the zip64 signature; then its
 *   counts, size and offset replace the 32-bit ones, whatever those say. Same here, and
 *   a locator whose target is not a zip64 end record is refused (miniz would silently
 *   fall back to the 32-bit fields). Multi-disk fields are refused, as miniz does.
 * - Offsets are absolute: miniz applies no preamble shift (and torch only opens files
 *   that start with "PK\3\4"). The central directory must end exactly where the (zip64)
 *   end record begins; libzip would otherwise guess a shift.
 * - Names. torch prefixes every lookup with the text before the first '/' of central
 *   entry 0 ("file in archive is not in a subdirectory" when there is none) and looks
 *   records up with mz_zip_reader_locate_file(..., flags 0): a binary search over the
 *   central directory sorted by ASCII-case-folded name. With two names equal up to ASCII
 *   case (or equal), which one it finds depends on the sort, while libzip matches bytes
 *   exactly: duplicates and case collisions are refused. Newer torch (getAllRecords, used
 *   by torch.load's TorchScript check) throws for entries outside the prefix directory:
 *   refused here too.
 * - Entries. Encrypted entries and methods other than stored (0) and deflate (8) are
 *   refused (miniz cannot read them). Records may not overlap: every local header lies
 *   at or after the end of the previous record's compressed bytes, and the last one ends
 *   before the central directory (overlapping records are how small zip bombs repeat one
 *   compressed stream many times).
 * - Local headers (read when a record is used). miniz takes the data offset from the
 *   local header (30 + local name length + local extra length) and sizes and method from
 *   the central entry; Python's zipfile also insists that the local name equals the
 *   central one. A record whose local name differs is refused. */

#define EOCD_LEN 22u
#define EOCD_SCAN (65535u + EOCD_LEN + 4096u) /* miniz's window, rounded up to its block */

static bool sig_at(const unsigned char *p, unsigned char a, unsigned char b)
{
    return p[0] == 'P' && p[1] == 'K' && p[2] == a && p[3] == b;
}

/* Could the record at buf[i] (absolute offset base + i) be taken as an end record? */
static bool plausible_eocd(const dtap_src *s, const unsigned char *buf, uint64_t base, size_t i)
{
    uint64_t at = base + i;
    unsigned char q[4];
    if (at >= 20 && dtap_src_read(s, at - 20, q, 4, NULL) == DTA_OK && sig_at(q, 6, 7))
        return true;
    uint64_t n = dtap_le16(buf + i + 10), size = dtap_le32(buf + i + 12), off = dtap_le32(buf + i + 16);
    if (off + size > at)
        return false;
    if (n == 0)
        return size == 0;
    return dtap_src_read(s, off, q, 4, NULL) == DTA_OK && sig_at(q, 1, 2);
}

/* Finds the central directory: *cd_off absolute, *cd_size, *count. */
static dta_status find_cd(const dtap_src *s, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count,
                          dta_error *err)
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
    size_t at = SIZE_MAX, other = SIZE_MAX;
    for (size_t i = (size_t)tail - EOCD_LEN + 1; i-- > 0;) {
        if (!sig_at(buf + i, 5, 6)) continue;
        if (at == SIZE_MAX) {
            at = i; /* the last one: miniz's choice */
        } else if (plausible_eocd(s, buf, base, i)) {
            other = i;
            break;
        }
    }
    if (at == SIZE_MAX) {
        free(buf);
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: no end of central directory record");
    }
    uint64_t eocd = base + at;
    uint64_t n = dtap_le16(buf + at + 10), n_disk = dtap_le16(buf + at + 8), size = dtap_le32(buf + at + 12),
             off = dtap_le32(buf + at + 16), clen = dtap_le16(buf + at + 20);
    unsigned disk = dtap_le16(buf + at + 4), cd_disk = dtap_le16(buf + at + 6);
    free(buf);
    if (other != SIZE_MAX)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: several end-of-central-directory records (at offsets %llu and %llu): "
                             "readers could pick different ones; refused as ambiguous",
                             (unsigned long long)(base + other), (unsigned long long)eocd);
    if (eocd + EOCD_LEN + clen != s->size)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: the end-of-central-directory record (at %llu, comment %llu bytes) does "
                             "not end the file (%llu bytes): refused as ambiguous",
                             (unsigned long long)eocd, (unsigned long long)clen, (unsigned long long)s->size);
    uint64_t cd_end_actual = eocd;
    unsigned char loc[20], z64[56];
    if (eocd >= 20 + 56 && dtap_src_read(s, eocd - 20, loc, 20, NULL) == DTA_OK && sig_at(loc, 6, 7)) {
        uint64_t zoff = dtap_le64(loc + 8);
        if (zoff > s->size - 56 || dtap_src_read(s, zoff, z64, 56, NULL) != DTA_OK || !sig_at(z64, 6, 6))
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: bad zip64 end of central directory");
        if (dtap_le32(loc + 16) != 1 || dtap_le32(loc + 4) != 0)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "zip: multi-disk archive");
        n = dtap_le64(z64 + 32);
        n_disk = dtap_le64(z64 + 24);
        size = dtap_le64(z64 + 40);
        off = dtap_le64(z64 + 48);
        disk = dtap_le32(z64 + 16);
        cd_disk = dtap_le32(z64 + 20);
        if (zoff + 56 > eocd - 20)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: zip64 end of central directory overlaps its locator");
        cd_end_actual = zoff;
    }
    if (n != n_disk || disk != 0 || cd_disk != 0)
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "zip: multi-disk archive");
    uint64_t cd_end;
    if (dtap_add_u64(off, size, &cd_end) || cd_end > cd_end_actual)
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: central directory out of range");
    if (cd_end != cd_end_actual)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: %llu bytes between the central directory and its end record (or bytes "
                             "before the archive): refused as ambiguous",
                             (unsigned long long)(cd_end_actual - cd_end));
    *cd_off = off;
    *cd_size = size;
    *count = n;
    return DTA_OK;
}

/* ASCII case-folded order, as miniz's mz_zip_reader_filename_less (then by index). */
static int fold_cmp(const dtap_zip_entry *a, const dtap_zip_entry *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a->name[i], y = (unsigned char)b->name[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return x < y ? -1 : 1;
    }
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}
static int fold_cmp_p(const void *x, const void *y)
{
    return fold_cmp(*(const dtap_zip_entry *const *)x, *(const dtap_zip_entry *const *)y);
}
static int local_cmp_p(const void *x, const void *y)
{
    const dtap_zip_entry *a = *(const dtap_zip_entry *const *)x, *b = *(const dtap_zip_entry *const *)y;
    return a->local_offset < b->local_offset ? -1 : a->local_offset > b->local_offset;
}

/* Names unique up to ASCII case; records disjoint and before the central directory. */
static dta_status check_entries(dtap_zip *z, uint64_t cd, dta_error *err)
{
    if (z->n == 0) return DTA_OK;
    const dtap_zip_entry **v = malloc(z->n * sizeof *v);
    if (!v) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    for (size_t i = 0; i < z->n; i++) v[i] = &z->ents[i];
    dta_status st = DTA_OK;
    qsort(v, z->n, sizeof *v, fold_cmp_p);
    for (size_t i = 1; i < z->n && !st; i++)
        if (!fold_cmp(v[i - 1], v[i]))
            st = v[i - 1]->name_len == v[i]->name_len && !memcmp(v[i - 1]->name, v[i]->name, v[i]->name_len)
                     ? dta_error_set(err, DTA_E_FORMAT, 0,
                                     "zip: record '%.200s' appears twice: readers could pick either; "
                                     "refused as ambiguous", v[i]->name)
                     : dta_error_set(err, DTA_E_FORMAT, 0,
                                     "zip: records '%.200s' and '%.200s' differ only in letter case: torch "
                                     "looks names up ignoring case; refused as ambiguous",
                                     v[i - 1]->name, v[i]->name);
    if (!st) {
        qsort(v, z->n, sizeof *v, local_cmp_p);
        for (size_t i = 0; i < z->n && !st; i++) {
            uint64_t end, next = i + 1 < z->n ? v[i + 1]->local_offset : cd;
            if (dtap_add_u64(v[i]->local_offset, 30, &end) || dtap_add_u64(end, v[i]->comp_size, &end) ||
                end > next)
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "zip: record '%.200s' (local header at %llu, %llu bytes) overlaps %s",
                                   v[i]->name, (unsigned long long)v[i]->local_offset,
                                   (unsigned long long)v[i]->comp_size,
                                   i + 1 < z->n ? "the next record" : "the central directory");
        }
    }
    free(v);
    return st;
}

static dta_status walk_cd(dtap_zip *z, dta_error *err)
{
    const dtap_src *s = z->src;
    uint64_t cd = 0, cd_size = 0, n = 0;
    dta_status st = find_cd(s, &cd, &cd_size, &n, err);
    if (st) return st;
    if (n != z->n)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: central directory has %llu entries, libzip found %zu",
                             (unsigned long long)n, z->n);
    uint64_t pos = cd, end = cd + cd_size;
    char namebuf[512];
    for (size_t i = 0; i < z->n; i++) {
        unsigned char h[46];
        if (pos > end || end - pos < 46 || dtap_src_read(s, pos, h, 46, NULL) != DTA_OK ||
            dtap_le32(h) != 0x02014b50u)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: bad central directory entry %zu", i);
        uint16_t flags = dtap_le16(h + 8), method = dtap_le16(h + 10);
        uint16_t nl = dtap_le16(h + 28), xl = dtap_le16(h + 30), cl = dtap_le16(h + 32);
        uint64_t comp = dtap_le32(h + 20), unc = dtap_le32(h + 24), lo = dtap_le32(h + 42);
        uint64_t xoff = pos + 46 + nl;
        if (46u + nl + xl + cl > end - pos)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: central directory entry %zu runs past the directory", i);
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
        dtap_zip_entry *e = &z->ents[i];
        /* the name libzip reports must be these very bytes */
        bool same = nl == e->name_len;
        for (uint64_t k = 0; same && k < nl; k += sizeof namebuf) {
            size_t c = nl - k < sizeof namebuf ? (size_t)(nl - k) : sizeof namebuf;
            same = dtap_src_read(s, pos + 46 + k, namebuf, c, NULL) == DTA_OK && !memcmp(namebuf, e->name + k, c);
        }
        if (!same)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: central directory entry %zu disagrees with libzip", i);
        if (flags & (0x0001u | 0x0040u | 0x2000u))
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "zip: record '%.200s' is encrypted", e->name);
        if (method != DTAP_ZIP_STORED && method != DTAP_ZIP_DEFLATE)
            return dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                                 "zip: record '%.200s' uses compression method %u (torch reads only stored "
                                 "and deflate)", e->name, method);
        if (method == DTAP_ZIP_STORED && comp != unc)
            return dta_error_set(err, DTA_E_FORMAT, 0, "zip: stored record '%.200s' has different sizes", e->name);
        e->method = method;
        e->size = unc;
        e->comp_size = comp;
        e->local_offset = lo;
        pos = xoff + xl + cl;
    }
    return check_entries(z, cd, err);
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
    /* prefix: text before the first '/' of the first entry; every entry under it */
    const char *first = z->n ? z->ents[0].name : "";
    const char *slash = memchr(first, '/', z->n ? z->ents[0].name_len : 0);
    size_t pl = slash ? (size_t)(slash - first) : 0;
    if (z->n && !slash) {
        st = dta_error_set(err, DTA_E_FORMAT, 0,
                           "zip: first record '%.200s' is not in a directory (torch takes the archive "
                           "name from it)", first);
        goto fail;
    }
    for (size_t i = 1; i < z->n; i++)
        if (z->ents[i].name_len <= pl || memcmp(z->ents[i].name, first, pl + 1)) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "zip: record '%.200s' is outside the archive directory '%.*s/' (torch "
                               "refuses such archives)", z->ents[i].name, (int)pl, first);
            goto fail;
        }
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
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: record '%.200s' has no local header at offset %llu",
                             e->name, (unsigned long long)e->local_offset);
    uint16_t nl = dtap_le16(h + 26);
    bool same = nl == e->name_len;
    char buf[512];
    for (size_t k = 0; same && k < nl; k += sizeof buf) {
        size_t c = nl - k < sizeof buf ? nl - k : sizeof buf;
        same = dtap_src_read(z->src, e->local_offset + 30 + k, buf, c, NULL) == DTA_OK &&
               !memcmp(buf, e->name + k, c);
    }
    if (!same)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "zip: record '%.200s': its local header names another file (readers that "
                             "stream local headers would see a different archive); refused as ambiguous",
                             e->name);
    uint64_t d = e->local_offset + 30 + nl + dtap_le16(h + 28), end;
    if (dtap_add_u64(d, e->comp_size, &end) || end > z->src->size)
        return dta_error_set(err, DTA_E_FORMAT, 0, "zip: record '%.200s' (%llu bytes at %llu) runs past the end of the file",
                             e->name, (unsigned long long)e->comp_size, (unsigned long long)d);
    *off = d;
    return DTA_OK;
}

uint64_t dtap_zip_inflate_cap(const dtap_zip_entry *e)
{
    uint64_t c;
    if (e->method == DTAP_ZIP_STORED) return UINT64_MAX;
    if (dtap_mul_u64(e->comp_size, DTA_MAX_INFLATE_RATIO, &c) || dtap_add_u64(c, DTA_MAX_INFLATE_FREE, &c))
        return UINT64_MAX;
    return c;
}

static dta_status bomb(const dtap_zip_entry *e, dta_error *err)
{
    return dta_error_set(err, DTA_E_LIMIT, 0,
                         "zip: compressed record '%.200s' would expand from %llu to %llu bytes, past the cap "
                         "of %u MiB plus %u bytes per compressed byte (a zip bomb?)",
                         e->name, (unsigned long long)e->comp_size, (unsigned long long)e->size,
                         (unsigned)(DTA_MAX_INFLATE_FREE >> 20), (unsigned)DTA_MAX_INFLATE_RATIO);
}

dta_status dtap_zip_stream(const dtap_zip *z, const dtap_zip_entry *e, dtap_zip_sink sink, void *ctx,
                           dta_error *err)
{
    enum { CHUNK = 1u << 20 };
    dta_status st = DTA_OK;
    if (e->size > dtap_zip_inflate_cap(e)) return bomb(e, err);
    unsigned char *buf = malloc(e->size < CHUNK ? (size_t)e->size + 1 : CHUNK);
    if (!buf) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    if (e->method == DTAP_ZIP_STORED) {
        uint64_t off;
        if (!(st = dtap_zip_data_offset(z, e, &off, err)))
            for (uint64_t done = 0; !st && done < e->size;) {
                size_t n = e->size - done < CHUNK ? (size_t)(e->size - done) : CHUNK;
                if (!(st = dtap_src_read(z->src, off + done, buf, n, err))) st = sink(ctx, buf, n, err);
                done += n;
            }
        free(buf);
        return st;
    }
    uint64_t off;
    if ((st = dtap_zip_data_offset(z, e, &off, err))) { /* the local header checks, for deflate too */
        free(buf);
        return st;
    }
    zip_file_t *f = zip_fopen_index(z->za, (zip_uint64_t)(e - z->ents), 0);
    if (!f) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot open record '%.200s': %s", e->name,
                           zip_strerror(z->za));
        free(buf);
        return st;
    }
    uint64_t got = 0;
    while (!st && got < e->size) {
        size_t want = e->size - got < CHUNK ? (size_t)(e->size - got) : CHUNK;
        zip_int64_t r = zip_fread(f, buf, want);
        if (r <= 0) {
            zip_error_t *ze = zip_file_get_error(f);
            if (r < 0 && zip_error_code_zip(ze) != ZIP_ER_OK)
                st = dta_error_set(err, DTA_E_FORMAT, 0, "zip: cannot read record '%.200s': %s", e->name,
                                   zip_error_strerror(ze));
            else
                st = dta_error_set(err, DTA_E_FORMAT, 0,
                                   "zip: record '%.200s' ends after %llu of its %llu bytes", e->name,
                                   (unsigned long long)got, (unsigned long long)e->size);
            break;
        }
        got += (uint64_t)r;
        st = sink(ctx, buf, (size_t)r, err);
    }
    zip_fclose(f);
    free(buf);
    return st;
}

typedef struct {
    unsigned char *p;
    size_t n;
} membuf;

static dta_status to_mem(void *ctx, const void *data, size_t n, dta_error *err)
{
    membuf *m = ctx;
    (void)err;
    memcpy(m->p + m->n, data, n);
    m->n += n;
    return DTA_OK;
}

dta_status dtap_zip_read(const dtap_zip *z, const dtap_zip_entry *e, uint64_t cap,
                         unsigned char **out, size_t *n, dta_error *err)
{
    *out = NULL;
    *n = 0;
    if (e->size > cap || e->size >= SIZE_MAX)
        return dta_error_set(err, DTA_E_LIMIT, 0, "zip: record '%.200s' has %llu bytes, over the cap of %llu",
                             e->name, (unsigned long long)e->size, (unsigned long long)cap);
    if (e->size > dtap_zip_inflate_cap(e)) return bomb(e, err);
    membuf m = {malloc((size_t)e->size + 1), 0};
    if (!m.p) return dta_error_set(err, DTA_E_NOMEM, 0, "zip: out of memory");
    dta_status st = dtap_zip_stream(z, e, to_mem, &m, err);
    if (st) {
        free(m.p);
        return st;
    }
    m.p[m.n] = 0;
    *out = m.p;
    *n = m.n;
    return DTA_OK;
}
