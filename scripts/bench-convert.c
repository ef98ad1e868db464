/* Throughput of dta_convert's kernels, scalar path vs vector path, next to memcpy.
 * Not a test. Build and run (an -O2 build like the library's):
 *   gcc -std=c11 -O2 -Iinclude -o /tmp/bench-convert scripts/bench-convert.c \
 *       src/lib/convert_cpu.c src/lib/dtype.c src/lib/error.c -lm
 *   /tmp/bench-convert [MiB of source, default 256]
 * GB/s counts source bytes (10^9 bytes per second), best of 5 runs; the data is model-like
 * (normal values around 0.02 with a few zeros), so the rare-value branches are not taken. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtaudit/convert.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t s = 88172645463325252u;
static uint64_t rnd(void)
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static double best(dta_dtype from, dta_dtype to, const void *in, void *out, size_t n, size_t inbytes)
{
    double b = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        if (from == DTA_DTYPE_NONE)
            memcpy(out, in, inbytes);
        else if (dta_convert(from, to, in, out, n, DTA_OVERFLOW_INF, NULL, NULL) != DTA_OK)
            exit(1);
        double t = now() - t0;
        if (t < b)
            b = t;
    }
    return (double)inbytes / b / 1e9;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256, bytes = mib << 20, n = bytes / 4;
    float *f = malloc(bytes);
    unsigned char *out = malloc(bytes * 2), *h = malloc(bytes / 2);
    double *d = malloc(bytes);
    if (!f || !out || !h || !d)
        return 1;
    for (size_t i = 0; i < n; i++)
        f[i] = (i % 97 == 0) ? 0.0f : (float)((double)(rnd() % 2000001) / 1e8 - 0.01) * 2.0f;
    for (size_t i = 0; i < n / 2; i++)
        d[i] = f[i];
    memset(out, 1, bytes * 2); /* fault the pages in */
    dta_convert(DTA_F32, DTA_BF16, f, h, n / 2, DTA_OVERFLOW_INF, NULL, NULL);
    printf("source %zu MiB; memcpy of the f32 buffer: %.2f GB/s\n", mib,
           best(DTA_DTYPE_NONE, DTA_DTYPE_NONE, f, out, n, bytes));
    struct { const char *name; dta_dtype from, to; const void *in; size_t n, inbytes; } k[] = {
        {"F32 -> BF16", DTA_F32, DTA_BF16, f, n, bytes},
        {"F32 -> F16 ", DTA_F32, DTA_F16, f, n, bytes},
        {"BF16 -> F32", DTA_BF16, DTA_F32, h, n / 2, bytes / 2},
        {"F16 -> F32 ", DTA_F16, DTA_F32, h, n / 2, bytes / 2},
        {"BF16 -> F16", DTA_BF16, DTA_F16, h, n / 2, bytes / 2},
        {"F64 -> BF16", DTA_F64, DTA_BF16, d, n / 2, bytes},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        dta_convert_force_scalar(true);
        double sc = best(k[i].from, k[i].to, k[i].in, out, k[i].n, k[i].inbytes);
        dta_convert_force_scalar(false);
        double ve = best(k[i].from, k[i].to, k[i].in, out, k[i].n, k[i].inbytes);
        printf("%s  scalar %6.2f GB/s   %s %6.2f GB/s   (source bytes)\n", k[i].name, sc,
               dta_convert_backend(), ve);
    }
    free(f);
    free(out);
    free(h);
    free(d);
    return 0;
}
