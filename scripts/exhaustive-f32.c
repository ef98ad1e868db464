/* Runs all 2^32 float32 bit patterns through dta_convert F32 -> BF16 and F32 -> F16, on the
 * scalar path and on the vector path, and compares both with independent references:
 *   bf16, f16: a long-hand round-to-nearest-even in double arithmetic (frexp + nearbyint)
 *   f16:       also the hardware conversion (_mm_cvtps_ph, x86 with F16C)
 * Reports mismatches by class (NaN input or not) and the statistics of both paths.
 * Not part of `make check` (a few minutes on two cores). Build and run:
 *   gcc -std=c11 -O2 -Iinclude -o /tmp/exhaustive-f32 scripts/exhaustive-f32.c \
 *       src/lib/convert_cpu.c src/lib/dtype.c src/lib/error.c -lm
 *   /tmp/exhaustive-f32 [workers]          (default 2; each is a process)
 * Exit status 0 when scalar == vector everywhere and both match the long-hand references
 * (NaN inputs: bf16 0x7FC0, f16 0x7E00|sign, docs/formats.md 5). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtaudit/convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_HW 1
#else
#define HAVE_HW 0
#endif

#define BLOCK (1u << 16)

typedef struct {
    /* [target 0 bf16, 1 f16][class 0 non-NaN input, 1 NaN input] */
    uint64_t scalar_vs_ref[2][2], vector_vs_ref[2][2], scalar_vs_vector[2][2];
    uint64_t hw_vs_ref[2], hw_vs_scalar[2]; /* f16 only */
    dta_convert_stats st[2][2];             /* [target][0 scalar, 1 vector] */
    uint32_t first[2];                      /* first scalar-vs-ref mismatch per target + 1 */
} result;

static uint16_t ref_bf16(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    if (isnan(f))
        return 0x7FC0;
    double x = fabs((double)f);
    if (isinf(x))
        return s | 0x7F80;
    if (x == 0)
        return s;
    uint32_t code;
    if (x < 0x1p-126) {
        code = (uint32_t)nearbyint(x * 0x1p133); /* bf16 subnormal ulp 2^-133 */
    } else {
        int k;
        double m = frexp(x, &k), q = nearbyint(m * 256.0); /* 8 significant bits */
        if (q == 256.0) {
            q = 128.0;
            k++;
        }
        int be = k - 1 + 127;
        code = be >= 255 ? 0x7F80u : ((uint32_t)be << 7) | ((uint32_t)q - 128u);
    }
    return (uint16_t)(s | code);
}

static uint16_t ref_f16(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    if (isnan(f))
        return s | 0x7E00;
    double x = fabs((double)f);
    if (isinf(x))
        return s | 0x7C00;
    if (x == 0)
        return s;
    uint32_t code;
    if (x < 0x1p-14) {
        code = (uint32_t)nearbyint(x * 0x1p24); /* f16 subnormal ulp 2^-24 */
    } else {
        int k;
        double m = frexp(x, &k), q = nearbyint(m * 2048.0); /* 11 significant bits */
        if (q == 2048.0) {
            q = 1024.0;
            k++;
        }
        int be = k - 1 + 15;
        code = be >= 31 ? 0x7C00u : ((uint32_t)be << 10) | ((uint32_t)q - 1024u);
    }
    return (uint16_t)(s | code);
}

#if HAVE_HW
__attribute__((target("f16c"))) static void hw_f16(const uint32_t *in, uint16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i += 4) {
        __m128 v;
        memcpy(&v, in + i, 16);
        __m128i h = _mm_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        memcpy(out + i, &h, 8);
    }
}
#endif

static void run_range(uint64_t lo, uint64_t hi, bool hw, result *r)
{
    static uint32_t in[BLOCK];
    static uint16_t sc[2][BLOCK], ve[2][BLOCK], hwo[BLOCK];
    dta_error err;
    memset(r, 0, sizeof *r);
    for (uint64_t b = lo; b < hi; b += BLOCK) {
        for (uint32_t i = 0; i < BLOCK; i++)
            in[i] = (uint32_t)(b + i);
        for (int t = 0; t < 2; t++) {
            dta_dtype to = t ? DTA_F16 : DTA_BF16;
            dta_convert_force_scalar(true);
            if (dta_convert(DTA_F32, to, in, sc[t], BLOCK, DTA_OVERFLOW_INF, &r->st[t][0], &err))
                exit(3);
            dta_convert_force_scalar(false);
            if (dta_convert(DTA_F32, to, in, ve[t], BLOCK, DTA_OVERFLOW_INF, &r->st[t][1], &err))
                exit(3);
        }
#if HAVE_HW
        if (hw)
            hw_f16(in, hwo, BLOCK);
#else
        (void)hw;
#endif
        for (uint32_t i = 0; i < BLOCK; i++) {
            uint32_t u = in[i];
            int cls = (u & 0x7FFFFFFFu) > 0x7F800000u;
            uint16_t ref[2] = {ref_bf16(u), ref_f16(u)};
            for (int t = 0; t < 2; t++) {
                if (sc[t][i] != ref[t]) {
                    r->scalar_vs_ref[t][cls]++;
                    if (!r->first[t])
                        r->first[t] = u + 1;
                }
                r->vector_vs_ref[t][cls] += ve[t][i] != ref[t];
                r->scalar_vs_vector[t][cls] += sc[t][i] != ve[t][i];
            }
            if (hw) {
                r->hw_vs_ref[cls] += hwo[i] != ref[1];
                r->hw_vs_scalar[cls] += hwo[i] != sc[1][i];
            }
        }
    }
}

static void add_stats(dta_convert_stats *a, const dta_convert_stats *b)
{
    a->elements += b->elements;
    a->overflow += b->overflow;
    a->nan += b->nan;
    a->inf += b->inf;
    a->underflow += b->underflow;
}

int main(int argc, char **argv)
{
    int workers = argc > 1 ? atoi(argv[1]) : 2;
    if (workers < 1 || workers > 64)
        workers = 2;
    bool hw = false;
#if HAVE_HW
    __builtin_cpu_init();
    hw = __builtin_cpu_supports("f16c");
#endif
    printf("vector path: %s; hardware f16 reference: %s; %d workers\n", dta_convert_backend(),
           hw ? "F16C" : "none", workers);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t total = UINT64_C(1) << 32, per = total / (uint64_t)workers / BLOCK * BLOCK;
    int fds[64];
    pid_t pids[64];
    for (int w = 0; w < workers; w++) {
        int p[2];
        if (pipe(p))
            return 2;
        pids[w] = fork();
        if (pids[w] < 0)
            return 2;
        if (pids[w] == 0) {
            result r;
            close(p[0]);
            run_range(per * (uint64_t)w, w == workers - 1 ? total : per * (uint64_t)(w + 1), hw, &r);
            if (write(p[1], &r, sizeof r) != (ssize_t)sizeof r)
                _exit(2);
            _exit(0);
        }
        close(p[1]);
        fds[w] = p[0];
    }
    result all;
    memset(&all, 0, sizeof all);
    for (int w = 0; w < workers; w++) {
        result r;
        size_t got = 0;
        while (got < sizeof r) {
            ssize_t k = read(fds[w], (char *)&r + got, sizeof r - got);
            if (k <= 0) {
                fprintf(stderr, "worker %d failed\n", w);
                return 2;
            }
            got += (size_t)k;
        }
        waitpid(pids[w], NULL, 0);
        for (int t = 0; t < 2; t++) {
            for (int c = 0; c < 2; c++) {
                all.scalar_vs_ref[t][c] += r.scalar_vs_ref[t][c];
                all.vector_vs_ref[t][c] += r.vector_vs_ref[t][c];
                all.scalar_vs_vector[t][c] += r.scalar_vs_vector[t][c];
                add_stats(&all.st[t][c], &r.st[t][c]);
            }
            if (!all.first[t])
                all.first[t] = r.first[t];
            all.hw_vs_ref[t] += r.hw_vs_ref[t];
            all.hw_vs_scalar[t] += r.hw_vs_scalar[t];
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    static const char *tn[2] = {"bf16", "f16"};
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        printf("F32 -> %s over 2^32 inputs (mismatches: non-NaN inputs / NaN inputs)\n", tn[t]);
        printf("  scalar vs long-hand RNE : %llu / %llu\n",
               (unsigned long long)all.scalar_vs_ref[t][0], (unsigned long long)all.scalar_vs_ref[t][1]);
        printf("  vector vs long-hand RNE : %llu / %llu\n",
               (unsigned long long)all.vector_vs_ref[t][0], (unsigned long long)all.vector_vs_ref[t][1]);
        printf("  scalar vs vector        : %llu / %llu\n",
               (unsigned long long)all.scalar_vs_vector[t][0],
               (unsigned long long)all.scalar_vs_vector[t][1]);
        if (t == 1 && hw) {
            printf("  raw F16C vs long-hand   : %llu / %llu   (F16C keeps NaN payloads)\n",
                   (unsigned long long)all.hw_vs_ref[0], (unsigned long long)all.hw_vs_ref[1]);
            printf("  raw F16C vs scalar      : %llu / %llu\n",
                   (unsigned long long)all.hw_vs_scalar[0], (unsigned long long)all.hw_vs_scalar[1]);
        }
        for (int p = 0; p < 2; p++) {
            const dta_convert_stats *s = &all.st[t][p];
            printf("  stats %-6s: elements %llu overflow %llu underflow %llu nan %llu inf %llu\n",
                   p ? "vector" : "scalar", (unsigned long long)s->elements,
                   (unsigned long long)s->overflow, (unsigned long long)s->underflow,
                   (unsigned long long)s->nan, (unsigned long long)s->inf);
        }
        if (all.first[t])
            printf("  first scalar mismatch at input 0x%08x\n", all.first[t] - 1);
        bad |= all.scalar_vs_ref[t][0] || all.scalar_vs_ref[t][1] || all.vector_vs_ref[t][0] ||
               all.vector_vs_ref[t][1] || all.scalar_vs_vector[t][0] || all.scalar_vs_vector[t][1] ||
               memcmp(&all.st[t][0], &all.st[t][1], sizeof all.st[t][0]) != 0;
    }
    if (hw)
        bad |= all.hw_vs_ref[0] != 0;
    printf("%s in %.1f s\n", bad ? "FAIL" : "OK", (double)(t1.tv_sec - t0.tv_sec) +
                                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return bad;
}
