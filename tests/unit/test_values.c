#define _DEFAULT_SOURCE /* mkstemp, truncate */
/* Value statistics (src/lib/values_scan.c, values.c): the threshold kernels, AVX2 and scalar,
 * against the per-element reference (convert_bits.h) and against dta_convert's own
 * statistics (overflow is exactly what convert refuses); every 16-bit and 8-bit code,
 * boundary and random 32/64-bit values, odd lengths and alignments; the whole-model scan
 * with one and several threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/convert.h"
#include "dtaudit/model.h"
#include "dtaudit/audit.h"
#include "dtaudit/values.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static void reset(void) { dta_values_force_scalar(false); }


static void expect_same(const dta_values_counts *a, const dta_values_counts *b, const char *what)
{
    cr_expect_eq(a->nan, b->nan, "%s: nan %llu vs %llu", what, (unsigned long long)a->nan,
                 (unsigned long long)b->nan);
    cr_expect_eq(a->pos_inf, b->pos_inf, "%s: +inf", what);
    cr_expect_eq(a->neg_inf, b->neg_inf, "%s: -inf", what);
    cr_expect_eq(a->zero, b->zero, "%s: zero", what);
    cr_expect_eq(a->overflow, b->overflow, "%s: overflow %llu vs %llu", what,
                 (unsigned long long)a->overflow, (unsigned long long)b->overflow);
    cr_expect_eq(a->underflow, b->underflow, "%s: underflow %llu vs %llu", what,
                 (unsigned long long)a->underflow, (unsigned long long)b->underflow);
    cr_expect_eq(a->subnormal, b->subnormal, "%s: subnormal %llu vs %llu", what,
                 (unsigned long long)a->subnormal, (unsigned long long)b->subnormal);
    cr_expect_eq(a->max_abs_bits, b->max_abs_bits, "%s: max %llx vs %llx", what,
                 (unsigned long long)a->max_abs_bits, (unsigned long long)b->max_abs_bits);
    cr_expect_eq(a->min_abs_bits, b->min_abs_bits, "%s: min %llx vs %llx", what,
                 (unsigned long long)a->min_abs_bits, (unsigned long long)b->min_abs_bits);
}

/* Counts of buf (n elements) by the vector kernel, the scalar kernel and the reference must
 * agree, and agree with dta_convert's statistics (to != from). */
static void check_buf(dta_dtype from, dta_dtype to, const unsigned char *buf, size_t n,
                      const char *what)
{
    dta_values_plan p;
    cr_assert(dta_values_plan_make(from, to, &p), "%s: no plan", what);
    dta_values_counts v, s, r;
    dta_values_counts_init(&v);
    dta_values_counts_init(&s);
    dta_values_counts_init(&r);
    dta_values_force_scalar(false);
    dta_values_count(&p, buf, n, &v);
    dta_values_force_scalar(true);
    dta_values_count(&p, buf, n, &s);
    dta_values_force_scalar(false);
    dta_values_count_reference(&p, buf, n, &r);
    char w[200];
    snprintf(w, sizeof w, "%s %s->%s vector/reference", what, dta_dtype_name(from),
             dta_dtype_name(to));
    expect_same(&v, &r, w);
    snprintf(w, sizeof w, "%s %s->%s scalar/reference", what, dta_dtype_name(from),
             dta_dtype_name(to));
    expect_same(&s, &r, w);
    if (to == from || n == 0)
        return;
    /* convert's own statistics over the same buffer */
    unsigned char *out = malloc(n * 4 + 1);
    dta_convert_stats cs = {0};
    dta_error err;
    cr_assert_eq(dta_convert(from, to, buf, out, n, DTA_OVERFLOW_ERROR, &cs, &err), DTA_OK, "%s",
                 err.msg);
    free(out);
    cr_expect_eq(cs.overflow, r.overflow, "%s %s->%s: convert overflow %llu, values %llu", what,
                 dta_dtype_name(from), dta_dtype_name(to), (unsigned long long)cs.overflow,
                 (unsigned long long)r.overflow);
    cr_expect_eq(cs.underflow, r.underflow, "%s %s->%s: convert underflow %llu, values %llu",
                 what, dta_dtype_name(from), dta_dtype_name(to),
                 (unsigned long long)cs.underflow, (unsigned long long)r.underflow);
    cr_expect_eq(cs.nan, r.nan, "%s: convert nan", what);
    cr_expect_eq(cs.inf, r.pos_inf + r.neg_inf, "%s: convert inf", what);
}

static const dta_dtype targets[] = {DTA_F16, DTA_BF16, DTA_F32};

Test(values, every_16bit_code, .fini = reset)
{
    static unsigned char buf[65536 * 2];
    for (unsigned c = 0; c < 65536; c++) {
        buf[2 * c] = (unsigned char)c;
        buf[2 * c + 1] = (unsigned char)(c >> 8);
    }
    const dta_dtype froms[] = {DTA_F16, DTA_BF16};
    for (int f = 0; f < 2; f++) {
        for (int t = 0; t < 3; t++)
            check_buf(froms[f], targets[t], buf, 65536, "all codes");
        /* one code at a time: the class of each element, not just the totals */
        for (int t = 0; t < 3; t++)
            for (unsigned c = 0; c < 65536; c += 1)
                if ((c & 0x7F) == 0 || (c & 0x7FFF) > 0x7B00 || (c & 0x7FFF) < 0x0500)
                    check_buf(froms[f], targets[t], buf + 2 * c, 1, "one code");
    }
}

Test(values, every_8bit_code, .fini = reset)
{
    unsigned char buf[256];
    for (unsigned c = 0; c < 256; c++)
        buf[c] = (unsigned char)c;
    const dta_dtype froms[] = {DTA_F8_E4M3, DTA_F8_E5M2, DTA_F8_E4M3FNUZ, DTA_F8_E5M2FNUZ,
                               DTA_F8_E8M0};
    for (int f = 0; f < 5; f++) {
        for (int t = 0; t < 3; t++) {
            check_buf(froms[f], targets[t], buf, 256, "all codes");
            for (unsigned c = 0; c < 256; c++)
                check_buf(froms[f], targets[t], buf + c, 1, "one code");
        }
        check_buf(froms[f], froms[f], buf, 256, "own dtype");
    }
}

/* Boundary magnitudes of f32 for the f16 and bf16 targets: every threshold +-3 ulps, and
 * the documented values (docs/formats.md 6, items 31-32). */
static size_t f32_boundaries(uint32_t *v, size_t cap)
{
    static const uint32_t fixed[] = {
        0x477FE000u, /* 65504, f16 max */
        0x477FEFFFu, /* 65519.99 -> 65504 */
        0x477FF000u, /* 65520 (tie) -> inf */
        0x7F7F7FFFu, 0x7F7F8000u, 0x7F7FFFFFu, /* bf16 max tie region, f32 max */
        0x33800000u, /* 2^-24, smallest f16 subnormal */
        0x33000000u, /* 2^-25, tie -> 0 */
        0x33000001u, 0x33400000u, /* just above, 3*2^-26 */
        0x38800000u, 0x387FFFFFu, 0x387FC000u, /* 2^-14 region */
        0x00000001u, 0x00800000u, 0x007FFFFFu, /* f32 subnormals */
        0x3F808000u, 0x3F818000u, /* bf16 ties */
        0x7F800000u, 0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0, 0x3F800000u};
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n + 2 <= cap; i++) {
        v[n++] = fixed[i];
        v[n++] = fixed[i] | 0x80000000u;
    }
    const dta_dtype ts[] = {DTA_F16, DTA_BF16};
    for (int t = 0; t < 2; t++) {
        dta_values_plan p;
        dta_values_plan_make(DTA_F32, ts[t], &p);
        uint64_t th[] = {p.unf_hi, p.sub_hi, p.ovf_lo};
        for (int k = 0; k < 3; k++)
            for (int d = -3; d <= 3 && n + 2 <= cap; d++) {
                v[n++] = (uint32_t)(th[k] + (uint64_t)(int64_t)d);
                v[n++] = (uint32_t)(th[k] + (uint64_t)(int64_t)d) | 0x80000000u;
            }
    }
    return n;
}

Test(values, thresholds_are_convert_boundaries)
{
    dta_values_plan p;
    cr_assert(dta_values_plan_make(DTA_F32, DTA_F16, &p));
    cr_expect_eq(p.ovf_lo, 0x477FF000u, "65520 is the first f32 that overflows f16");
    cr_expect_eq(p.unf_hi, 0x33000001u, "2^-25 ties to zero; the next f32 does not");
    cr_expect_eq(p.sub_hi, 0x387FE000u, "2^-14 - 2^-25 ties up to the smallest normal");
    cr_assert(dta_values_plan_make(DTA_F32, DTA_BF16, &p));
    cr_expect_eq(p.ovf_lo, 0x7F7F8000u, "bf16 max + half ulp ties to inf");
    cr_expect_eq(p.unf_hi, 0x00008001u, "half of the smallest bf16 subnormal ties to zero");
    cr_assert(dta_values_plan_make(DTA_F16, DTA_F16, &p));
    cr_expect_eq(p.ovf_lo, 0x7C00u);
    cr_expect_eq(p.unf_hi, 1u);
    cr_expect_eq(p.sub_hi, 0x0400u);
    cr_assert(dta_values_plan_make(DTA_BF16, DTA_F16, &p));
    cr_expect_eq(p.ovf_lo, 0x4780u, "65536 in bf16 is the first above f16's range");
    cr_assert(!dta_values_plan_make(DTA_I32, DTA_F16, &p));
    cr_assert(!dta_values_plan_make(DTA_F32, DTA_F8_E4M3, &p));
}

Test(values, f32_boundaries_and_random, .fini = reset)
{
    enum { N = 1 << 18 };
    uint32_t *v = malloc(N * 4);
    size_t n = f32_boundaries(v, 4096);
    for (int t = 0; t < 3; t++)
        check_buf(DTA_F32, targets[t], (unsigned char *)v, n, "f32 boundaries");
    check_buf(DTA_F32, DTA_F32, (unsigned char *)v, n, "f32 own");
    /* random bits, and random magnitudes near the interesting exponents */
    for (size_t i = 0; i < N; i++) {
        uint32_t r = (uint32_t)rnd();
        v[i] = (i & 1) ? r : (r & 0x807FFFFFu) | ((uint32_t)(100 + (rnd() % 60)) << 23);
    }
    for (int t = 0; t < 3; t++)
        check_buf(DTA_F32, targets[t], (unsigned char *)v, N, "f32 random");
    /* odd lengths at odd alignments: the vector tails */
    unsigned char *u = malloc(N * 4 + 8);
    for (size_t off = 0; off < 4; off++) {
        memcpy(u + off, v, 4 * 200);
        for (size_t len = 0; len < 70; len++)
            check_buf(DTA_F32, DTA_F16, u + off, len, "f32 tails");
    }
    free(u);
    free(v);
}

Test(values, f64_boundaries_and_random, .fini = reset)
{
    enum { N = 1 << 17 };
    uint64_t *v = malloc(N * 8);
    size_t n = 0;
    /* the f32 boundaries widened, and the f64 values that round onto them (double rounding) */
    uint32_t b[4096];
    size_t nb = f32_boundaries(b, 4096);
    for (size_t i = 0; i < nb && n + 5 < N; i++) {
        float f;
        memcpy(&f, &b[i], 4);
        double d = (double)f;
        uint64_t u;
        memcpy(&u, &d, 8);
        v[n++] = u;
        v[n++] = u + 1;
        v[n++] = u - 1;
        v[n++] = u + (UINT64_C(1) << 28); /* half an f32 ulp: a tie at f32 precision */
        v[n++] = u - (UINT64_C(1) << 28);
    }
    static const uint64_t special[] = {UINT64_C(0x7FF0000000000000), UINT64_C(0xFFF0000000000000),
                                       UINT64_C(0x7FF8000000000000), UINT64_C(0x7FF0000000000001),
                                       UINT64_C(0x7FEFFFFFFFFFFFFF), 1, 0,
                                       UINT64_C(0x8000000000000000)};
    for (size_t i = 0; i < sizeof special / 8; i++)
        v[n++] = special[i];
    for (int t = 0; t < 3; t++)
        check_buf(DTA_F64, targets[t], (unsigned char *)v, n, "f64 boundaries");
    check_buf(DTA_F64, DTA_F64, (unsigned char *)v, n, "f64 own");
    for (size_t i = 0; i < N; i++) {
        uint64_t r = rnd();
        v[i] = (i & 1) ? r
                       : (r & UINT64_C(0x800FFFFFFFFFFFFF)) |
                             ((uint64_t)(1023 - 160 + (rnd() % 320)) << 52);
    }
    for (int t = 0; t < 3; t++)
        check_buf(DTA_F64, targets[t], (unsigned char *)v, N, "f64 random");
    unsigned char *u = malloc(8 * 100 + 8);
    for (size_t off = 0; off < 8; off += 3) {
        memcpy(u + off, v, 8 * 100);
        for (size_t len = 0; len < 20; len++)
            check_buf(DTA_F64, DTA_F16, u + off, len, "f64 tails");
    }
    free(u);
    free(v);
}

Test(values, long_runs_flush_lane_counters, .fini = reset)
{
    /* more than 16384 vectors of one class: the 16-bit lane counters must not wrap */
    size_t n = 16 * 16384 * 3 + 5;
    uint16_t *v = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        v[i] = i % 3 ? 0x7C00 : 0x0001; /* f16 inf, smallest subnormal */
    check_buf(DTA_F16, DTA_F16, (unsigned char *)v, n, "long f16 run");
    check_buf(DTA_F16, DTA_BF16, (unsigned char *)v, n, "long f16 run");
    free(v);
}

/* Typical weights: long runs of normal values (the kernels' fast path, whole blocks with no
 * special value) with rare specials at random places (the blocks that take the slow path). */
Test(values, normal_runs_with_sparse_specials, .fini = reset)
{
    enum { N = 100003 };
    static uint32_t v32[N];
    static uint16_t v16[N];
    static uint64_t v64[N];
    static const uint32_t sp32[] = {0, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00001u,
                                    0x33000000u, 0x00000001u, 0x477FF000u, 0x7F7FFFFFu, 0x38000000u};
    static const uint16_t sp16[] = {0, 0x8000, 0x7C00, 0xFC00, 0x7E01, 0x0001, 0x03FF, 0x7BFF,
                                    0x7F80, 0x0080, 0xFF81, 0x4780};
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < N; i++) {
            /* normal in every target: |x| in [2^-10, 2^10) */
            uint32_t e = 117 + (uint32_t)(rnd() % 20);
            v32[i] = (uint32_t)(rnd() & 0x807FFFFFu) | (e << 23);
            uint32_t e16 = 5 + (uint32_t)(rnd() % 20);
            v16[i] = (uint16_t)((rnd() & 0x83FFu) | (e16 << 10));
            uint64_t e64 = 1013 + rnd() % 20;
            v64[i] = (rnd() & UINT64_C(0x800FFFFFFFFFFFFF)) | (e64 << 52);
        }
        size_t k = round == 0 ? 0 : (size_t)(rnd() % 40) * (size_t)round;
        for (size_t j = 0; j < k; j++) {
            size_t at = (size_t)(rnd() % N);
            v32[at] = sp32[rnd() % (sizeof sp32 / 4)];
            v16[at] = sp16[rnd() % (sizeof sp16 / 2)];
            double d;
            float f;
            memcpy(&f, &v32[at], 4);
            d = f;
            memcpy(&v64[at], &d, 8);
        }
        for (int t = 0; t < 3; t++) {
            check_buf(DTA_F32, targets[t], (unsigned char *)v32, N, "f32 sparse");
            check_buf(DTA_F16, targets[t], (unsigned char *)v16, N, "f16 sparse");
            check_buf(DTA_BF16, targets[t], (unsigned char *)v16, N, "bf16 sparse");
            check_buf(DTA_F64, targets[t], (unsigned char *)v64, N, "f64 sparse");
        }
        check_buf(DTA_F32, DTA_F32, (unsigned char *)v32, N, "f32 own sparse");
    }
}

/* ---- the whole-model scan ------------------------------------------------------------ */

/* Writes a safetensors file with one F32 tensor "a.w" of n values and one F16 "b.w". */
static void write_st(const char *path, const float *a, size_t n, const uint16_t *b, size_t nb)
{
    char hdr[512];
    int len = snprintf(hdr, sizeof hdr,
                       "{\"a.w\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
                       "\"b.w\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]},"
                       "\"c.ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}}",
                       n, n * 4, nb, n * 4, n * 4 + nb * 2, n * 4 + nb * 2, n * 4 + nb * 2 + 8);
    while (len % 8)
        hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    uint64_t hl = (uint64_t)len, z = 0;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, (size_t)len, f);
    fwrite(a, 4, n, f);
    fwrite(b, 2, nb, f);
    fwrite(&z, 8, 1, f);
    fclose(f);
}

Test(values, scan_threads_and_chunks_agree, .fini = reset)
{
    size_t n = 300001, nb = 1000;
    float *a = malloc(n * 4);
    uint16_t *b = malloc(nb * 2);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)((double)(i % 1000) * 70.0 - 1000) * (i % 7 == 0 ? 1e-12f : 1.0f);
    a[5] = NAN;
    a[6] = -INFINITY;
    for (size_t i = 0; i < nb; i++)
        b[i] = (uint16_t)(i * 61);
    char path[] = "/tmp/dtaudit-values-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_st(path, a, n, b, nb);
    dta_model *m;
    dta_error err;
    cr_assert_eq(dta_model_open(path, &m, &err), DTA_OK, "%s", err.msg);
    dta_values *ref = NULL;
    dta_values_options o1 = {.target = DTA_F16, .threads = 1};
    cr_assert_eq(dta_values_scan(m, &o1, &ref, &err), DTA_OK, "%s", err.msg);
    cr_expect_eq(ref->scanned, 2);
    cr_expect_str_eq(ref->tensors[2].skipped, "not a floating dtype");
    cr_expect_eq(ref->tensors[0].nan, 1);
    cr_expect_eq(ref->tensors[0].neg_inf, 1);
    cr_expect(ref->tensors[0].overflow > 0);
    cr_expect(ref->tensors[0].underflow > 0);
    cr_expect_eq(ref->tensors[1].target, DTA_F16);
    cr_expect_eq(ref->tensors[1].overflow, 0);
    for (int scalar = 0; scalar < 2; scalar++)
        for (unsigned th = 1; th <= 4; th++) {
            dta_values_force_scalar(scalar);
            dta_values *v;
            dta_values_options o = {.target = DTA_F16, .threads = th, .chunk_bytes = 4096 + 8 * th};
            cr_assert_eq(dta_values_scan(m, &o, &v, &err), DTA_OK, "%s", err.msg);
            cr_expect_eq(v->threads, th);
            for (size_t i = 0; i < 3; i++)
                cr_expect(memcmp(&v->tensors[i], &ref->tensors[i], sizeof v->tensors[i]) == 0,
                          "tensor %zu differs with %u threads (scalar %d)", i, th, scalar);
            dta_values_free(v);
        }
    /* a file that shrinks after its header was read: one error naming file and tensor */
    cr_assert_eq(truncate(path, 8 + 200), 0);
    dta_values *v = NULL;
    dta_values_options o = {.target = DTA_F16, .threads = 2, .chunk_bytes = 4096};
    cr_expect_eq(dta_values_scan(m, &o, &v, &err), DTA_E_FORMAT);
    cr_expect_null(v);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "tensor 'a.w'"), "%s", err.msg);
    dta_values_free(ref);
    dta_model_free(m);
    unlink(path);
    free(a);
    free(b);
}

/* precision-underflow's threshold: 0 in dta_audit_options is the default share (0.1%), a
 * negative value reports any underflow; range rules need a target; counts reach the
 * finding. */
Test(values, findings_and_underflow_share)
{
    size_t n = 3000, nb = 4;
    float *a = malloc(n * 4);
    uint16_t b[4] = {0x3C00, 0x3C00, 0x7E00, 0x3C00}; /* f16: 1, 1, NaN, 1 */
    for (size_t i = 0; i < n; i++)
        a[i] = 1.0f;
    a[7] = 1e-12f; /* one value of 3000 flushes in f16: 0.033% */
    char path[] = "/tmp/dtaudit-values-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_st(path, a, n, b, nb);
    dta_model *m;
    dta_error err;
    cr_assert_eq(dta_model_open(path, &m, &err), DTA_OK, "%s", err.msg);
    dta_values *v;
    dta_values_options vo = {.target = DTA_F16};
    cr_assert_eq(dta_values_scan(m, &vo, &v, &err), DTA_OK, "%s", err.msg);
    const double shares[] = {0, -1, 0.0001, 0.001};
    const int want[] = {0, 1, 1, 0};
    for (int k = 0; k < 4; k++) {
        dta_audit_options ao = {.expect = DTA_DTYPE_NONE, .findings = true, .values = v,
                                .underflow_share = shares[k]};
        dta_report *r;
        cr_assert_eq(dta_report_build(m, &ao, &r, &err), DTA_OK, "%s", err.msg);
        int under = 0, nonfinite = 0;
        for (size_t i = 0; i < r->nfindings; i++) {
            const dta_finding *f = &r->findings[i];
            if (f->rule_id == DTA_RULE_PRECISION_UNDERFLOW) {
                under++;
                cr_expect_eq(f->values->underflow, 1);
                cr_expect_str_eq(f->tensors[0], "a.w");
            }
            if (f->rule_id == DTA_RULE_NONFINITE) {
                nonfinite++;
                cr_expect_eq(f->values->nan, 1);
                cr_expect_str_eq(f->module, "b");
            }
        }
        cr_expect_eq(under, want[k], "share %g: %d precision-underflow findings", shares[k], under);
        cr_expect_eq(nonfinite, 1);
        dta_report_free(r);
    }
    dta_values_free(v);
    dta_model_free(m);
    unlink(path);
    free(a);
}
