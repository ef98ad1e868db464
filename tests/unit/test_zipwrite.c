/* The streaming zip writer (dtap_zipw_*, src/lib/write_torchzip.c; docs/formats.md 2.3,
 * 2.4) on its own: records read back through the zip reader with their names, sizes,
 * real CRC-32s, STORED, data at multiples of 64; the zip64 fields (threshold lowered);
 * and the writer's refusals. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "src.h"
#include "write_torchzip.h"
#include "zipread.h"

typedef struct {
    const char *rel;
    size_t size;
} rec;

static const rec RECS[] = {{"data.pkl", 97}, {"byteorder", 6}, {"data/0", 4096 + 3},
                           {"data/1", 0},    {"data/2", 1},    {"version", 2}};
#define NRECS (sizeof RECS / sizeof RECS[0])

static unsigned char fill(size_t r, size_t i) { return (unsigned char)(r * 31 + i * 7 + (i >> 8)); }

static void write_archive(const char *path, uint64_t zip64_threshold)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    dtap_zipw *z = NULL;
    dta_error err = {0};
    cr_assert_eq(dtap_zipw_open(fd, "archive", &z, &err), DTA_OK, "%s", err.msg);
    if (zip64_threshold)
        dtap_zipw_set_zip64_threshold(z, zip64_threshold);
    for (size_t r = 0; r < NRECS; r++) {
        cr_assert_eq(dtap_zipw_begin(z, RECS[r].rel, RECS[r].size, &err), DTA_OK, "%s", err.msg);
        unsigned char buf[64];
        for (size_t i = 0; i < RECS[r].size; i += sizeof buf) { /* in odd-sized pieces */
            size_t k = RECS[r].size - i < 37 ? RECS[r].size - i : 37;
            for (size_t j = 0; j < k; j++)
                buf[j] = fill(r, i + j);
            cr_assert_eq(dtap_zipw_write(z, buf, k, &err), DTA_OK, "%s", err.msg);
            i -= sizeof buf - k;
        }
        cr_assert_eq(dtap_zipw_end(z, &err), DTA_OK, "%s: %s", RECS[r].rel, err.msg);
    }
    cr_assert_eq(dtap_zipw_finish(z, &err), DTA_OK, "%s", err.msg);
    uint64_t written = dtap_zipw_offset(z);
    dtap_zipw_free(z);
    cr_assert_eq((uint64_t)lseek(fd, 0, SEEK_END), written);
    close(fd);
}

static void check_archive(const char *path)
{
    dtap_src src;
    dtap_zip *z = NULL;
    dta_error err = {0};
    cr_assert_eq(dtap_src_open_file(&src, path, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_zip_open(&src, &z, &err), DTA_OK, "%s", err.msg);
    cr_assert_str_eq(dtap_zip_prefix(z), "archive");
    cr_assert_eq(dtap_zip_count(z), NRECS);
    for (size_t r = 0; r < NRECS; r++) {
        const dtap_zip_entry *e = dtap_zip_find(z, RECS[r].rel);
        cr_assert_not_null(e, "%s", RECS[r].rel);
        cr_assert_eq(e, dtap_zip_entry_at(z, r), "records in the order written");
        cr_assert_eq(e->method, DTAP_ZIP_STORED);
        cr_assert_eq(e->size, RECS[r].size);
        cr_assert_eq(e->comp_size, RECS[r].size);
        unsigned char *want = malloc(RECS[r].size + 1);
        for (size_t i = 0; i < RECS[r].size; i++)
            want[i] = fill(r, i);
        cr_assert_eq(e->crc, (uint32_t)crc32(0, want, (uInt)RECS[r].size), "%s: CRC", RECS[r].rel);
        uint64_t off;
        cr_assert_eq(dtap_zip_data_offset(z, e, &off, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(off % 64, 0u, "%s: data at %llu", RECS[r].rel, (unsigned long long)off);
        unsigned char *got = NULL;
        size_t n = 0;
        cr_assert_eq(dtap_zip_read(z, e, 1 << 20, &got, &n, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(n, RECS[r].size);
        cr_assert(memcmp(got, want, n) == 0, "%s: bytes", RECS[r].rel);
        free(got);
        free(want);
    }
    dtap_zip_close(z);
    dtap_src_close(&src);
}

Test(zipwrite, records_read_back)
{
    char path[] = "/tmp/dtaudit-zipw-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_archive(path, 0);
    check_archive(path);
    unlink(path);
}

Test(zipwrite, zip64_fields_read_back)
{
    /* every record and offset at or past the threshold: zip64 extras, 24-byte
     * descriptors, saturated 32-bit fields, as for a 4 GiB archive */
    char path[] = "/tmp/dtaudit-zipw-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_archive(path, 1);
    check_archive(path);
    unlink(path);
}

Test(zipwrite, refusals)
{
    char path[] = "/tmp/dtaudit-zipw-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    dtap_zipw *z = NULL;
    dta_error err = {0};
    cr_assert_eq(dtap_zipw_open(fd, "archive", &z, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_zipw_begin(z, "data/0", 4, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_zipw_write(z, "abc", 3, &err), DTA_OK, "%s", err.msg);
    err.msg[0] = 0;
    cr_assert_neq(dtap_zipw_end(z, &err), DTA_OK, "a record one byte short was accepted");
    cr_assert(err.msg[0], "no message");
    dtap_zipw_free(z);
    close(fd);
    unlink(path);
}

/* torch refuses an archive with a record name twice, so the writer does: among 300 names
 * (the name table grows while records are written), the repeat of an early and of the
 * last one, and not a name that only shares a prefix */
Test(zipwrite, duplicate_names_refused)
{
    char path[] = "/tmp/dtaudit-zipw-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    dtap_zipw *z = NULL;
    dta_error err = {0};
    char rel[32];
    cr_assert_eq(dtap_zipw_open(fd, "archive", &z, &err), DTA_OK, "%s", err.msg);
    for (int i = 0; i < 300; i++) {
        snprintf(rel, sizeof rel, "data/%d", i);
        cr_assert_eq(dtap_zipw_begin(z, rel, 1, &err), DTA_OK, "%s: %s", rel, err.msg);
        cr_assert_eq(dtap_zipw_write(z, "x", 1, &err), DTA_OK, "%s", err.msg);
        cr_assert_eq(dtap_zipw_end(z, &err), DTA_OK, "%s", err.msg);
    }
    cr_assert_neq(dtap_zipw_begin(z, "data/7", 1, &err), DTA_OK, "data/7 written twice");
    cr_assert(strstr(err.msg, "twice") != NULL, "%s", err.msg);
    cr_assert_neq(dtap_zipw_begin(z, "data/299", 1, &err), DTA_OK, "data/299 written twice");
    cr_assert_eq(dtap_zipw_begin(z, "data/2999", 1, &err), DTA_OK, "%s", err.msg);
    dtap_zipw_free(z);
    close(fd);
    unlink(path);
}
