/* Format detection (src/lib/format.c): each format detected from content, the highest bid
 * winning when two readers bid on one file (not the first in the table), standalone-only
 * detection for shards, what is said when nobody bids, and the format names. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/model.h"
#include "format.h"
#include "model_build.h"
#include "st_build.h"

static unsigned char *slurp(const char *rel, size_t *n)
{
    char path[1024];
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", src ? src : ".", rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert_geq(len, 0);
    rewind(f);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static dta_status detect(const void *data, size_t n, bool standalone_only, dta_format *fmt,
                         dta_error *err)
{
    dtap_src s;
    dtap_src_open_mem(&s, "t", data, n);
    dta_status st = dtap_detect(&s, standalone_only, fmt, err);
    dtap_src_close(&s);
    return st;
}

/* Detects rel, then reads it: the format detected and the file's format_id. */
static void check_fixture(const char *rel, dta_format detected, dta_format read)
{
    size_t n;
    unsigned char *b = slurp(rel, &n);
    dta_format fmt = DTA_FORMAT_UNKNOWN;
    dta_error err = {0};
    cr_assert_eq(detect(b, n, false, &fmt, &err), DTA_OK, "%s: %s", rel, err.msg);
    cr_assert_eq(fmt, detected, "%s: detected %s", rel, dta_format_name(fmt));
    dta_model *m = NULL;
    cr_assert_eq(dta_model_open_memory(rel, b, n, &m, &err), DTA_OK, "%s: %s", rel, err.msg);
    cr_assert_eq(m->nfiles, 1);
    cr_assert_eq(m->files[0].format_id, read);
    cr_assert_str_eq(m->files[0].format, dta_format_name(read));
    cr_assert_eq(m->format_id, read);
    cr_assert_str_eq(m->format, dta_format_name(read));
    dta_model_free(m);
    free(b);
}

Test(format, safetensors)
{
    check_fixture("good/tiny_f32_model.safetensors", DTA_FORMAT_SAFETENSORS,
                  DTA_FORMAT_SAFETENSORS);
}

Test(format, torch_zip_and_torchscript)
{
    check_fixture("torch/state_dict.pt", DTA_FORMAT_TORCH_ZIP, DTA_FORMAT_TORCH_ZIP);
    /* TorchScript is a zip to detection; the zip reader tells it apart */
    check_fixture("torch/script.pt", DTA_FORMAT_TORCH_ZIP, DTA_FORMAT_TORCHSCRIPT);
}

Test(format, torch_legacy)
{
    check_fixture("torch/legacy.pt", DTA_FORMAT_TORCH_LEGACY, DTA_FORMAT_TORCH_LEGACY);
}

Test(format, legacy_tar)
{
    unsigned char tar[1024] = "storages";
    memcpy(tar + 257, "ustar", 5);
    dta_format fmt;
    cr_assert_eq(detect(tar, sizeof tar, false, &fmt, NULL), DTA_OK);
    cr_assert_eq(fmt, DTA_FORMAT_TORCH_LEGACY);
    cr_assert_eq(dtap_torchlegacy_bid(tar, 512, sizeof tar), DTAP_BID_LAYOUT);
}

static const char index_json[] =
    "{\"metadata\": {\"total_size\": 4}, \"weight_map\": {\"a\": \"model.safetensors\"}}";

Test(format, index_and_standalone_only)
{
    dta_format fmt;
    dta_error err = {0};
    cr_assert_eq(detect(index_json, strlen(index_json), false, &fmt, &err), DTA_OK, "%s",
                 err.msg);
    cr_assert_eq(fmt, DTA_FORMAT_INDEX);
    /* a shard is never an index: nobody else bids, and the error says what it is */
    cr_assert_eq(detect(index_json, strlen(index_json), true, &fmt, &err), DTA_E_UNSUPPORTED);
    cr_assert_eq(fmt, DTA_FORMAT_UNKNOWN);
    cr_assert(strstr(err.msg, "JSON") != NULL, "%s", err.msg);
}

/* An index whose ninth byte opens a JSON array: the safetensors reader claims it (its
 * length field is text, far beyond the file), the index reader bids on its weight_map.
 * The first bidder in the table was safetensors, which refused the file; the best bid
 * reads it as the index it is. */
Test(format, two_bids_highest_wins)
{
    static const char j[] = "{\"ab\":  [], \"weight_map\": {\"a\": \"model.safetensors\"}}";
    const unsigned char *h = (const unsigned char *)j;
    size_t n = strlen(j);
    cr_assert_eq(h[8], '[');
    cr_assert_eq(dtap_safetensors_bid(h, n, n), DTAP_BID_CLAIM);
    cr_assert_eq(dtap_index_bid(h, n, n), DTAP_BID_TEXT);
    dta_format fmt;
    cr_assert_eq(detect(j, n, false, &fmt, NULL), DTA_OK);
    cr_assert_eq(fmt, DTA_FORMAT_INDEX);
    /* as a shard, only the safetensors reader bids, and names the defect */
    cr_assert_eq(detect(j, n, true, &fmt, NULL), DTA_OK);
    cr_assert_eq(fmt, DTA_FORMAT_SAFETENSORS);
}

/* The same index on disk beside its shard, and the directory holding both: read as an
 * index of safetensors shards, and as a directory. */
Test(format, index_file_and_directory)
{
    char dir[] = "/tmp/dtaudit-format-XXXXXX", path[256];
    cr_assert_not_null(mkdtemp(dir));
    static const st_tensor t[] = {{"a", "F32", 1, {1}}};
    cr_assert_eq(st_write(dir, "model.safetensors", t, 1), 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"ab\":  [], \"weight_map\": {\"a\": \"model.safetensors\"}}", f);
    fclose(f);
    dta_model *m = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_model_open(path, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->format_id, DTA_FORMAT_SAFETENSORS_INDEX);
    cr_assert_str_eq(m->format, "safetensors-index");
    cr_assert_eq(m->files[0].format_id, DTA_FORMAT_SAFETENSORS);
    cr_assert_eq(m->ntensors, 1);
    dta_model_free(m);
    cr_assert_eq(dta_model_open(dir, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->format_id, DTA_FORMAT_DIRECTORY);
    cr_assert_str_eq(m->format, "directory");
    dta_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A safetensors file whose header length is 123 (its first byte '{') and holds a tensor
 * named "weight_map": the index reader bids too, and the safetensors layout (a length the
 * file holds) outbids it. */
Test(format, two_bids_layout_beats_text)
{
    unsigned char f[8 + 123 + 4] = {0};
    const char *hdr = "{\"weight_map\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    f[0] = 123;
    memset(f + 8, ' ', 123);
    memcpy(f + 8, hdr, strlen(hdr));
    cr_assert_eq(f[0], '{');
    cr_assert_eq(dtap_index_bid(f, sizeof f, sizeof f), DTAP_BID_TEXT);
    cr_assert_eq(dtap_safetensors_bid(f, sizeof f, sizeof f), DTAP_BID_LAYOUT);
    dta_format fmt;
    cr_assert_eq(detect(f, sizeof f, false, &fmt, NULL), DTA_OK);
    cr_assert_eq(fmt, DTA_FORMAT_SAFETENSORS);
    dta_model *m = NULL;
    dta_error err = {0};
    cr_assert_eq(dta_model_open_memory("t", f, sizeof f, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(m->ntensors, 1);
    cr_assert_str_eq(m->tensors[0].name, "weight_map");
    dta_model_free(m);
}

Test(format, nobody_bids)
{
    dta_format fmt;
    dta_error err = {0};
    cr_assert_eq(detect("GGUF\3\0\0\0\0\0\0\0", 12, false, &fmt, &err), DTA_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "GGUF") != NULL, "%s", err.msg);
    cr_assert_eq(detect("", 0, false, &fmt, &err), DTA_E_FORMAT);
    cr_assert(strstr(err.msg, "empty") != NULL, "%s", err.msg);
}

Test(format, names)
{
    static const char *const want[DTA_FORMAT_COUNT] = {
        "unknown", "safetensors", "torch-zip", "torchscript", "torch-legacy", "index",
        "safetensors-index", "torch-index", "directory"};
    for (int f = 0; f < DTA_FORMAT_COUNT; f++)
        cr_assert_str_eq(dta_format_name((dta_format)f), want[f]);
    cr_assert_str_eq(dta_format_name(DTA_FORMAT_COUNT), "unknown");
    cr_assert_str_eq(dta_format_name((dta_format)-1), "unknown");
}
