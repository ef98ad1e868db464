/* Shared helpers for the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Every target links src/lib only. Memory sources are named under a directory that does
 * not exist, so a reader that resolves paths relative to its source (the index reader)
 * can never touch files of the working directory. */
#ifndef DTA_FUZZ_COMMON_H
#define DTA_FUZZ_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/model.h"
#include "format.h"
#include "model_build.h"
#include "src.h"

#define FUZZ_SRC_NAME "/nonexistent-dtaudit-fuzz/input"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A tiny valid safetensors file: {"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}. */
static inline size_t fuzz_tiny_safetensors(unsigned char *out, size_t cap)
{
    static const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = sizeof hdr - 1, padded = (hl + 7) & ~(size_t)7, total = 8 + padded + 8;
    if (cap < total) return 0;
    memset(out, 0, total);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, hdr, hl);
    memset(out + 8 + hl, ' ', padded - hl);
    return total;
}

static inline int fuzz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* A private temp directory, created once per process; removed at exit by the caller's
 * atexit hook (fuzz_tmpdir_cleanup lists the files it may hold). It is made in
 * $DTAUDIT_FUZZ_TMPDIR when set, else in /dev/shm when that is a writable directory (a
 * tmpfs: the config target writes a file and opens a directory per input, 7x faster there
 * than on a busy disk), else in $TMPDIR or /tmp. */
static inline const char *fuzz_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        const char *t = getenv("DTAUDIT_FUZZ_TMPDIR");
        if (!t || !*t)
            t = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/dtaudit-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return dir;
}

#endif
