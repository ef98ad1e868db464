/* Test helper: a safetensors file in memory from a list of tensors (zero data), written
 * by hand (not by the library's writer) so the readers and the writer can be tested
 * against it. */
#ifndef TEST_ST_BUILD_H
#define TEST_ST_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name, *code; /* "F32" */
    int rank;
    uint64_t dims[4];
} st_tensor;

static inline unsigned st_code_bytes(const char *code)
{
    if (!strcmp(code, "F64") || !strcmp(code, "I64")) return 8;
    if (!strcmp(code, "F32") || !strcmp(code, "I32")) return 4;
    if (!strcmp(code, "F16") || !strcmp(code, "BF16") || !strcmp(code, "I16")) return 2;
    return 1;
}

/* malloc'd file bytes; *n gets the size. Tensors are laid out in the order given. */
static inline unsigned char *st_build(const st_tensor *t, size_t nt, size_t *n)
{
    char *json = malloc(65536);
    size_t o = 0;
    uint64_t off = 0;
    o += (size_t)sprintf(json + o, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < nt; i++) {
        uint64_t numel = 1;
        o += (size_t)sprintf(json + o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, t[i].code);
        for (int k = 0; k < t[i].rank; k++) {
            o += (size_t)sprintf(json + o, "%s%llu", k ? "," : "", (unsigned long long)t[i].dims[k]);
            numel *= t[i].dims[k];
        }
        uint64_t nb = numel * st_code_bytes(t[i].code);
        o += (size_t)sprintf(json + o, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                             (unsigned long long)(off + nb));
        off += nb;
    }
    json[o++] = '}';
    while (o % 8)
        json[o++] = ' ';
    unsigned char *f = calloc(1, 8 + o + off);
    uint64_t hl = o;
    for (int k = 0; k < 8; k++)
        f[k] = (unsigned char)(hl >> (8 * k));
    memcpy(f + 8, json, o);
    free(json);
    *n = 8 + o + off;
    return f;
}

/* Writes it to dir/name; returns 0 on success. */
static inline int st_write(const char *dir, const char *name, const st_tensor *t, size_t nt)
{
    char path[4096];
    size_t n;
    unsigned char *f = st_build(t, nt, &n);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    int rc = !fp || fwrite(f, 1, n, fp) != n;
    if (fp)
        rc |= fclose(fp) != 0;
    free(f);
    return rc;
}

#endif
