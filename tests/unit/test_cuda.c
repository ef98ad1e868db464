/* The CUDA backend (include/dtaudit/backend.h, src/lib/cuda/).
 *
 * Host part (runs everywhere, GPU or not, CUDA built in or not): src/lib/convert_bits.h,
 * the element math the kernels run, compiled here by the C compiler, against a long-hand
 * floating-point reference of this file (all 2^16 half/bf16 codes, millions of f32 and
 * f64 patterns), and whole buffers (bytes, statistics, verification results) for every
 * conversion and overflow mode against convert_cpu.c.
 *
 * Device part: the same comparisons through dta_convert_cuda / dta_verify_cuda, the pipe
 * and unaligned device pointers. Each test skips ("no CUDA device") when there is none, so
 * CI stays green; the > 2^31-element test also needs 16 GiB of host memory.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert_bits.h"
#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#ifdef DTA_HAVE_CUDA
#include "cuda/convert_cuda.h"
#endif

static uint64_t rng_state = 0x243F6A8885A308D3u;
static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static const dta_dtype SOURCES[] = {DTA_F64, DTA_F32, DTA_F16, DTA_BF16, DTA_F8_E4M3,
                                    DTA_F8_E5M2, DTA_F8_E4M3FNUZ, DTA_F8_E5M2FNUZ, DTA_F8_E8M0};
static const dta_dtype TARGETS[] = {DTA_F32, DTA_F16, DTA_BF16};
static const dta_overflow_mode MODES[] = {DTA_OVERFLOW_ERROR, DTA_OVERFLOW_INF,
                                          DTA_OVERFLOW_SATURATE};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static size_t esz(dta_dtype t) { return dta_dtype_get(t)->bits / 8; }

static uint64_t ld(dta_dtype t, const unsigned char *p, size_t i)
{
    uint64_t v = 0;
    memcpy(&v, p + i * esz(t), esz(t)); /* little-endian host */
    return v;
}
static void st(dta_dtype t, unsigned char *p, size_t i, uint64_t v) { memcpy(p + i * esz(t), &v, esz(t)); }

/* docs/formats.md 6 items 31-35 and friends, as f32 bits (both signs are added). */
static const uint32_t F32_EDGES[] = {
    0x00000000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, /* bf16 ties */
    0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F800000, 0x7FC00000, 0x7FC00001, 0x7F800001,
    0x7FFFFFFF, 0x7FA00000, 0x00000001, 0x007FFFFF, 0x00008000, 0x00008001, 0x00800000,
    0x477FE000, /* 65504 */ 0x477FEFFF, /* 65519.99 */ 0x477FF000, /* 65520 */
    0x33800000, /* 2^-24 */ 0x33000000, /* 2^-25 */ 0x33400000, /* 3*2^-26 */ 0x33000001,
    0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000,
    0x43E00000, /* 448 */ 0x43E80000, /* 464 */ 0x43E80001, 0x43F00000, /* 480 */
    0x3B000000, /* 2^-9 */ 0x3A800000, /* 2^-10 */ 0x3A800001,
    0x47600000, /* 57344 */ 0x476FFF00, /* 61439 */ 0x47700000, /* 61440 */ 0x47800000,
    0x3F7FFFFF, 0x40490FDB, 0x0DA24260, 0x7E967699};

/* n source elements of dtype from: edge values, every code of small types, random bits and
 * random "weights" (|x| < 16). */
static unsigned char *make_source(dta_dtype from, size_t n)
{
    unsigned char *p = malloc(n * esz(from) + 16);
    size_t i = 0, ne = COUNT(F32_EDGES);
    cr_assert(p);
    for (; i < n; i++) {
        uint64_t r = rnd();
        uint32_t f;
        double d;
        size_t k = i % (2 * ne + 6);
        if (k < 2 * ne)
            f = F32_EDGES[k / 2] | (k & 1 ? 0x80000000u : 0);
        else if (k < 2 * ne + 3)
            f = (uint32_t)r;
        else {
            float x = (float)((double)(int32_t)(uint32_t)r / 134217728.0);
            memcpy(&f, &x, 4);
        }
        switch (from) {
        case DTA_F64:
            if (k < 2 * ne) {
                /* the edge as a double, +- a few double ulps (double rounding) */
                uint64_t b = dtab_f32_to_f64_bits(f);
                b += (uint64_t)((int64_t)(r % 5) - 2);
                st(from, p, i, b);
            } else if (k == 2 * ne) {
                st(from, p, i, r);
            } else {
                d = (double)(int64_t)r / 9.0e17;
                memcpy(&r, &d, 8);
                st(from, p, i, r);
            }
            break;
        case DTA_F32:
            st(from, p, i, f);
            break;
        case DTA_F16: case DTA_BF16:
            st(from, p, i, i < 65536 ? i : (r & 0xFFFF));
            break;
        default:
            p[i] = (unsigned char)(i < 256 ? i : r);
            break;
        }
    }
    return p;
}

/* ---- host: the kernels' element math against an independent reference -------------------
 *
 * The reference below is long-hand floating-point arithmetic (frexp, ldexp, rint in the
 * default round-to-nearest-even mode, and the C cast double -> float), written from the
 * IEEE 754 definitions; it shares no code with convert_bits.h, whose integer bit tricks the
 * kernels and convert_cpu.c both run. (These tests used to compare dtab_* with the dta_*_bits
 * wrappers, which call the same dtab_* functions.) */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static double u2d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

/* Encodes x into a binary format with p significand bits (implicit bit included), bias,
 * and emin = 1 - bias, rounding to nearest even; overflow rounds to infinity as IEEE
 * does. NaN handling is the caller's. */
static uint32_t ref_encode(double x, int p, int bias, int expbits)
{
    uint32_t sign = signbit(x) ? 1u << (p - 1 + expbits) : 0;
    uint32_t inf = ((1u << expbits) - 1) << (p - 1);
    double a = fabs(x);
    int emin = 1 - bias, e;
    if (isinf(a))
        return sign | inf;
    if (a == 0)
        return sign;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int E = e - 1 < emin ? emin : e - 1;
    double q = ldexp(1.0, E - (p - 1)); /* the spacing of representable values near a */
    double v = rint(a / q) * q;         /* exact: q is a power of two */
    if (v == 0)
        return sign;
    frexp(v, &e);
    E = e - 1;
    if (E > bias) /* beyond the largest finite exponent */
        return sign | inf;
    if (E < emin) /* subnormal */
        return sign | (uint32_t)(v / ldexp(1.0, emin - (p - 1)));
    uint32_t frac = (uint32_t)((v / ldexp(1.0, E) - 1.0) * ldexp(1.0, p - 1));
    return sign | ((uint32_t)(E + bias) << (p - 1)) | frac;
}

/* float32 -> bfloat16 / float16 as torch's scalar path (docs/formats.md 5.1, 5.2). */
static uint32_t ref_f32_to_bf16(uint32_t u)
{
    double x = u2f(u);
    return isnan(x) ? 0x7FC0u : ref_encode(x, 8, 127, 8);
}
static uint32_t ref_f32_to_f16(uint32_t u)
{
    double x = u2f(u);
    return isnan(x) ? 0x7E00u | ((u >> 16) & 0x8000u) : ref_encode(x, 11, 15, 5);
}

/* float16 / bfloat16 -> float32: the value from its fields with ldexp; NaNs keep their
 * payload, quieted for float16 (docs/formats.md 5.2), untouched for bfloat16 (5.1). */
static uint32_t ref_f16_to_f32(uint32_t h)
{
    uint32_t s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 31)
        return (s << 31) | (m ? 0x7FC00000u | (m << 13) : 0x7F800000u);
    double v = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
    return f2u((float)(s ? -v : v));
}
static uint32_t ref_bf16_to_f32(uint32_t b)
{
    uint32_t s = b >> 15, e = (b >> 7) & 0xFF, m = b & 0x7F;
    if (e == 255)
        return b << 16;
    double v = e ? ldexp(128 + m, (int)e - 134) : ldexp(m, -133);
    return f2u((float)(s ? -v : v));
}

Test(cuda_bits, all_16bit_codes)
{
    for (uint32_t h = 0; h < 65536; h++) {
        cr_assert_eq(dtab_f16_to_f32((uint16_t)h), ref_f16_to_f32(h), "f16 %04x", h);
        cr_assert_eq(dtab_bf16_to_f32((uint16_t)h), ref_bf16_to_f32(h), "bf16 %04x", h);
        /* round trips through the encoders */
        uint32_t u = ref_f16_to_f32(h), v = ref_bf16_to_f32(h);
        cr_assert_eq(dtab_f32_to_f16(u), ref_f32_to_f16(u), "%08x", u);
        cr_assert_eq(dtab_f32_to_bf16(v), ref_f32_to_bf16(v), "%08x", v);
        cr_assert_eq(dtab_f32_to_f16(v), ref_f32_to_f16(v), "%08x", v);
        cr_assert_eq(dtab_f32_to_bf16(u), ref_f32_to_bf16(u), "%08x", u);
    }
}

Test(cuda_bits, f32_patterns)
{
    /* 2^24 patterns: every exponent and sign, the low mantissa bits random */
    for (uint32_t i = 0; i < (1u << 24); i++) {
        uint32_t u = (i << 8) | (uint32_t)(rnd() & 0xFF);
        cr_assert_eq(dtab_f32_to_bf16(u), ref_f32_to_bf16(u), "%08x", u);
        cr_assert_eq(dtab_f32_to_f16(u), ref_f32_to_f16(u), "%08x", u);
    }
    /* every pattern near the rounding and range boundaries of f16 and bf16 */
    static const uint32_t around[] = {0x477FE000, 0x477FF000, 0x33000000, 0x38800000,
                                      0x7F7F8000, 0x7F800000, 0x00008000, 0x3F808000};
    for (size_t k = 0; k < COUNT(around); k++)
        for (uint32_t d = 0; d < 0x20000; d++) {
            uint32_t u = around[k] - 0x10000 + d;
            for (int s = 0; s < 2; s++, u ^= 0x80000000u) {
                cr_assert_eq(dtab_f32_to_bf16(u), ref_f32_to_bf16(u), "%08x", u);
                cr_assert_eq(dtab_f32_to_f16(u), ref_f32_to_f16(u), "%08x", u);
            }
        }
    /* the documented values (docs/formats.md 6, items 31-32), written out */
    cr_assert_eq(ref_f32_to_bf16(0x3F808000), 0x3F80u);
    cr_assert_eq(ref_f32_to_bf16(0x3F818000), 0x3F82u);
    cr_assert_eq(ref_f32_to_bf16(0x7F7FFFFF), 0x7F80u);
    cr_assert_eq(ref_f32_to_f16(0x477FE000), 0x7BFFu);
    cr_assert_eq(ref_f32_to_f16(0x477FEFFF), 0x7BFFu);
    cr_assert_eq(ref_f32_to_f16(0x477FF000), 0x7C00u);
    cr_assert_eq(ref_f32_to_f16(0x33800000), 0x0001u);
    cr_assert_eq(ref_f32_to_f16(0x33000000), 0x0000u);
    cr_assert_eq(ref_f32_to_f16(0x33400000), 0x0001u); /* 0.75 of the smallest subnormal */
}

Test(cuda_bits, f64_patterns)
{
    /* against the C cast double -> float (round to nearest even; on x86-64, NaN keeps its
     * sign and its top payload bits, quieted, as torch's cast does) */
    for (uint32_t i = 0; i < (1u << 22); i++) {
        uint64_t d = rnd();
        if (i & 1) /* exponents near the f32 range */
            d = (d & UINT64_C(0x800FFFFFFFFFFFFF)) | ((uint64_t)(0x340 + (i >> 1) % 0x100) << 52);
        cr_assert_eq(dtab_f64_to_f32(d), f2u((float)u2d(d)), "%016llx", (unsigned long long)d);
    }
    for (size_t k = 0; k < COUNT(F32_EDGES); k++) {
        uint64_t b = dtab_f32_to_f64_bits(F32_EDGES[k]);
        for (int j = -3; j <= 3; j++)
            cr_assert_eq(dtab_f64_to_f32(b + (uint64_t)(int64_t)j),
                         f2u((float)u2d(b + (uint64_t)(int64_t)j)));
    }
}

/* The kernel's per-element loop, on the host. */
static void emulate_convert(dta_dtype from, dta_dtype to, const unsigned char *src,
                            unsigned char *dst, size_t n, dta_overflow_mode mode,
                            dta_convert_stats *s)
{
    for (size_t i = 0; i < n; i++) {
        int cls;
        st(to, dst, i, dtab_convert(from, to, ld(from, src, i), mode == DTA_OVERFLOW_SATURATE, &cls));
        s->nan += cls == DTAB_NAN;
        s->inf += cls == DTAB_INF;
        s->overflow += cls == DTAB_OVF;
        s->underflow += cls == DTAB_UNF;
    }
    s->elements += n;
}

static void emulate_verify(dta_dtype from, dta_dtype to, const unsigned char *src,
                           const unsigned char *conv, size_t n, dta_overflow_mode mode,
                           dta_verify_stats *v)
{
    uint64_t mism = 0, added = 0, first = 0;
    double ma = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        int m, a;
        double ea, er;
        dtab_verify(from, to, ld(from, src, i), (uint32_t)ld(to, conv, i),
                    mode == DTA_OVERFLOW_SATURATE, &m, &a, &ea, &er);
        if (m && mism++ == 0)
            first = i;
        added += (uint64_t)a;
        ma = ea > ma ? ea : ma;
        mr = er > mr ? er : mr;
    }
    if (mism && v->mismatches == 0)
        v->first_mismatch = v->elements + first;
    v->elements += n;
    v->mismatches += mism;
    v->nonfinite_added += added;
    if (ma > v->max_abs_err)
        v->max_abs_err = ma;
    if (mr > v->max_rel_err)
        v->max_rel_err = mr;
}

static void same_convert_stats(const dta_convert_stats *a, const dta_convert_stats *b,
                               const char *what)
{
    cr_assert_eq(a->elements, b->elements, "%s: elements", what);
    cr_assert_eq(a->overflow, b->overflow, "%s: overflow %llu vs %llu", what,
                 (unsigned long long)a->overflow, (unsigned long long)b->overflow);
    cr_assert_eq(a->nan, b->nan, "%s: nan", what);
    cr_assert_eq(a->inf, b->inf, "%s: inf", what);
    cr_assert_eq(a->underflow, b->underflow, "%s: underflow", what);
}

static void same_verify_stats(const dta_verify_stats *a, const dta_verify_stats *b,
                              const char *what)
{
    cr_assert_eq(a->elements, b->elements, "%s: elements", what);
    cr_assert_eq(a->mismatches, b->mismatches, "%s: mismatches %llu vs %llu", what,
                 (unsigned long long)a->mismatches, (unsigned long long)b->mismatches);
    cr_assert_eq(a->nonfinite_added, b->nonfinite_added, "%s: nonfinite_added", what);
    cr_assert(a->max_abs_err == b->max_abs_err, "%s: max_abs_err %.17g vs %.17g", what,
              a->max_abs_err, b->max_abs_err);
    cr_assert(a->max_rel_err == b->max_rel_err, "%s: max_rel_err %.17g vs %.17g", what,
              a->max_rel_err, b->max_rel_err);
    if (a->mismatches)
        cr_assert_eq(a->first_mismatch, b->first_mismatch, "%s: first_mismatch", what);
}

static void same_bytes(const unsigned char *a, const unsigned char *b, size_t n, dta_dtype to,
                       const char *what)
{
    if (memcmp(a, b, n * esz(to)) == 0)
        return;
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ld(to, a, i), ld(to, b, i), "%s: element %zu: %llx vs %llx", what, i,
                     (unsigned long long)ld(to, a, i), (unsigned long long)ld(to, b, i));
}

/* A converted buffer with defects: wrong low bits, other NaNs, infinities. */
static unsigned char *corrupt(dta_dtype to, const unsigned char *good, size_t n)
{
    unsigned char *p = malloc(n * esz(to) + 16);
    cr_assert(p);
    memcpy(p, good, n * esz(to));
    for (size_t i = 5; i < n; i += 97) {
        uint64_t v = ld(to, p, i);
        switch (i % 4) {
        case 0: v ^= 1; break;
        case 1: v = to == DTA_F32 ? 0x7FC00123u : to == DTA_BF16 ? 0x7FFFu : 0xFE01u; break;
        case 2: v = to == DTA_F32 ? 0xFF800000u : to == DTA_BF16 ? 0xFF80u : 0xFC00u; break;
        default: v ^= 0x8000; break;
        }
        st(to, p, i, v);
    }
    return p;
}

Test(cuda_bits, buffers_match_dta_convert_and_dta_verify)
{
    const size_t n = 70000;
    char what[96];
    for (size_t a = 0; a < COUNT(SOURCES); a++) {
        dta_dtype from = SOURCES[a];
        unsigned char *src = make_source(from, n);
        for (size_t b = 0; b < COUNT(TARGETS); b++) {
            dta_dtype to = TARGETS[b];
            if (from == to)
                continue;
            for (size_t m = 0; m < COUNT(MODES); m++) {
                unsigned char *want = malloc(n * 4), *got = malloc(n * 4), *bad;
                dta_convert_stats sw = {0, 0, 0, 0, 0}, sg = {0, 0, 0, 0, 0};
                dta_verify_stats vw, vg;
                dta_error err;
                snprintf(what, sizeof what, "%s -> %s mode %d", dta_dtype_name(from),
                         dta_dtype_name(to), (int)MODES[m]);
                cr_assert_eq(dta_convert(from, to, src, want, n, MODES[m], &sw, &err), DTA_OK,
                             "%s", err.msg);
                emulate_convert(from, to, src, got, n, MODES[m], &sg);
                same_bytes(want, got, n, to, what);
                same_convert_stats(&sw, &sg, what);
                bad = corrupt(to, want, n);
                for (int pass = 0; pass < 2; pass++) {
                    const unsigned char *conv = pass ? bad : want;
                    memset(&vw, 0, sizeof vw);
                    memset(&vg, 0, sizeof vg);
                    vw.elements = vg.elements = 11; /* first_mismatch counts across calls */
                    cr_assert_eq(dta_verify(from, to, src, conv, n, MODES[m], &vw, &err), DTA_OK,
                                 "%s", err.msg);
                    emulate_verify(from, to, src, conv, n, MODES[m], &vg);
                    same_verify_stats(&vw, &vg, what);
                    cr_assert(pass == 0 || vw.mismatches > 0, "%s: corruption unseen", what);
                }
                free(want);
                free(got);
                free(bad);
            }
        }
        free(src);
    }
}

/* ---- build and device presence (run everywhere) ----------------------------------------- */

Test(cuda_api, build_features_and_absence)
{
    char why[512];
    dta_error err;
    unsigned char s[8] = {0}, d[8];
    bool avail = dta_cuda_available(why, sizeof why);
#ifdef DTA_HAVE_CUDA
    cr_assert_str_eq(dta_build_features(), "cuda");
    cr_log_info("CUDA built in (nvcc %s): %s\n", dtap_cu_compiler_version(), why);
    if (avail)
        return;
    cr_assert(strncmp(why, "no CUDA device", 14) == 0 || strncmp(why, "CUDA device 0", 13) == 0,
              "%s", why);
    cr_assert_eq(dta_convert_cuda(DTA_F32, DTA_BF16, s, d, 2, DTA_OVERFLOW_INF, NULL, &err),
                 DTA_E_DEVICE);
    cr_assert(strstr(err.msg, "cudaGetDeviceCount") || strstr(err.msg, "CUDA device 0"),
              "%s", err.msg);
#else
    cr_assert_str_eq(dta_build_features(), "");
    cr_assert_not(avail);
    cr_assert_str_eq(why, "built without CUDA");
    cr_assert_eq(dta_convert_cuda(DTA_F32, DTA_BF16, s, d, 2, DTA_OVERFLOW_INF, NULL, &err),
                 DTA_E_UNSUPPORTED);
    cr_assert_str_eq(err.msg, "built without CUDA");
#endif
    cr_assert_not(dta_cuda_auto(UINT64_C(1) << 40));
    dta_cuda_pipe *p = (dta_cuda_pipe *)1;
    cr_assert_neq(dta_cuda_pipe_open(NULL, &p, &err), DTA_OK);
    cr_assert_null(p);
    dta_cuda_pipe_free(NULL);
}

/* ---- device --------------------------------------------------------------------------------- */

static void need_gpu(void)
{
    if (!dta_cuda_available(NULL, 0))
        cr_skip_test("no CUDA device");
}

/* dta_convert_cuda and dta_verify_cuda against the CPU on n elements at byte offsets. */
static void gpu_vs_cpu(dta_dtype from, dta_dtype to, const unsigned char *src, size_t n,
                       dta_overflow_mode mode, size_t dst_off)
{
    char what[96];
    unsigned char *want = malloc(n * 4 + 16), *gbuf = malloc(n * 4 + 16), *got = gbuf + dst_off,
                  *bad;
    dta_convert_stats sw = {0, 0, 0, 0, 0}, sg = {0, 0, 0, 0, 0};
    dta_verify_stats vw, vg;
    dta_error err;
    snprintf(what, sizeof what, "GPU %s -> %s mode %d n %zu", dta_dtype_name(from),
             dta_dtype_name(to), (int)mode, n);
    cr_assert_eq(dta_convert(from, to, src, want, n, mode, &sw, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dta_convert_cuda(from, to, src, got, n, mode, &sg, &err), DTA_OK, "%s: %s",
                 what, err.msg);
    same_bytes(want, got, n, to, what);
    same_convert_stats(&sw, &sg, what);
    bad = corrupt(to, want, n);
    for (int pass = 0; pass < 2; pass++) {
        memset(&vw, 0, sizeof vw);
        memset(&vg, 0, sizeof vg);
        cr_assert_eq(dta_verify(from, to, src, pass ? bad : want, n, mode, &vw, &err), DTA_OK);
        cr_assert_eq(dta_verify_cuda(from, to, src, pass ? bad : want, n, mode, &vg, &err),
                     DTA_OK, "%s: %s", what, err.msg);
        same_verify_stats(&vw, &vg, what);
    }
    free(want);
    free(gbuf);
    free(bad);
}

Test(cuda_gpu, every_conversion_edges_and_random)
{
    need_gpu();
    for (size_t a = 0; a < COUNT(SOURCES); a++) {
        unsigned char *src = make_source(SOURCES[a], 200003);
        for (size_t b = 0; b < COUNT(TARGETS); b++)
            for (size_t m = 0; m < COUNT(MODES); m++)
                if (SOURCES[a] != TARGETS[b])
                    gpu_vs_cpu(SOURCES[a], TARGETS[b], src, 200003, MODES[m], 0);
        free(src);
    }
}

Test(cuda_gpu, odd_sizes_and_unaligned_host_buffers)
{
    static const size_t sizes[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 255, 1000003};
    need_gpu();
    for (size_t a = 0; a < COUNT(SOURCES); a++) {
        unsigned char *buf = make_source(SOURCES[a], 1000003 + 8);
        for (size_t b = 0; b < COUNT(TARGETS); b++)
            for (size_t k = 0; k < COUNT(sizes); k++)
                if (SOURCES[a] != TARGETS[b])
                    gpu_vs_cpu(SOURCES[a], TARGETS[b], buf + (k % 3), sizes[k],
                               DTA_OVERFLOW_SATURATE, k % 2);
        free(buf);
    }
}

Test(cuda_gpu, same_dtype_and_errors_like_cpu)
{
    unsigned char s[64] = {0}, d[64];
    dta_error e1, e2;
    dta_convert_stats st = {0, 0, 0, 0, 0};
    need_gpu();
    memset(s, 0xFF, 16); /* NaNs: counted on a copy too */
    cr_assert_eq(dta_convert_cuda(DTA_F32, DTA_F32, s, d, 16, DTA_OVERFLOW_INF, &st, &e1), DTA_OK);
    cr_assert_eq(st.nan, 4);
    cr_assert_eq(memcmp(s, d, 64), 0);
    cr_assert_eq(dta_convert(DTA_I64, DTA_F16, s, d, 2, DTA_OVERFLOW_INF, NULL, &e1),
                 dta_convert_cuda(DTA_I64, DTA_F16, s, d, 2, DTA_OVERFLOW_INF, NULL, &e2));
    cr_assert_str_eq(e1.msg, e2.msg);
    cr_assert_eq(dta_convert(DTA_F32, DTA_F16, s, d, 2, (dta_overflow_mode)7, NULL, &e1),
                 dta_convert_cuda(DTA_F32, DTA_F16, s, d, 2, (dta_overflow_mode)7, NULL, &e2));
    cr_assert_str_eq(e1.msg, e2.msg);
    cr_assert_eq(dta_convert_cuda(DTA_F32, DTA_F16, s, s + 4, 4, DTA_OVERFLOW_INF, NULL, &e2),
                 DTA_E_ARG); /* overlap */
}

#ifdef DTA_HAVE_CUDA
Test(cuda_gpu, unaligned_device_pointers)
{
    char msg[256];
    need_gpu();
    for (size_t a = 0; a < COUNT(SOURCES); a++) {
        size_t n = 4099;
        unsigned char *src = make_source(SOURCES[a], n);
        for (size_t b = 0; b < COUNT(TARGETS); b++) {
            dta_dtype from = SOURCES[a], to = TARGETS[b];
            if (from == to)
                continue;
            for (size_t off = 0; off < 4; off++) {
                unsigned char want[4099 * 4], got[4099 * 4];
                dta_convert_stats sw = {0, 0, 0, 0, 0};
                dtap_cu_counts c;
                dta_error err;
                cr_assert_eq(dta_convert(from, to, src, want, n, DTA_OVERFLOW_INF, &sw, &err), DTA_OK);
                cr_assert_eq(dtap_cu_dev_run(0, DTAP_CU_CONVERT, from, to, DTA_OVERFLOW_INF, src,
                                             off, got, (off * 3) % 4, n, &c, msg, sizeof msg),
                             0, "%s", msg);
                same_bytes(want, got, n, to, "unaligned device");
                cr_assert_eq(c.nan, sw.nan);
                cr_assert_eq(c.inf, sw.inf);
                cr_assert_eq(c.ovf, sw.overflow);
                cr_assert_eq(c.unf, sw.underflow);
                cr_assert_eq(dtap_cu_dev_run(0, DTAP_CU_VERIFY, from, to, DTA_OVERFLOW_INF, src,
                                             off, want, off, n, &c, msg, sizeof msg),
                             0, "%s", msg);
                cr_assert_eq(c.mism, 0);
            }
        }
        free(src);
    }
}
#endif

Test(cuda_gpu, pipe_small_chunks_mixed_jobs)
{
    const size_t n1 = 100003, n2 = 77777;
    dta_cuda_pipe_options o = {4096, 2, 0};
    dta_cuda_pipe *p;
    dta_error err;
    unsigned char *s1, *s2, *o1, *o2, *w1, *w2;
    dta_convert_stats st1 = {0, 0, 0, 0, 0}, st2 = {0, 0, 0, 0, 0}, c1 = {0, 0, 0, 0, 0},
                      c2 = {0, 0, 0, 0, 0};
    dta_verify_stats v1, vw;
    size_t off1 = 0, off2 = 0, cap1, cap2;
    need_gpu();
    s1 = make_source(DTA_F32, n1);
    s2 = make_source(DTA_F16, n2);
    o1 = malloc(n1 * 2);
    o2 = malloc(n2 * 4);
    w1 = malloc(n1 * 2);
    w2 = malloc(n2 * 4);
    cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, s1, w1, n1, DTA_OVERFLOW_INF, &c1, &err), DTA_OK);
    cr_assert_eq(dta_convert(DTA_F16, DTA_F32, s2, w2, n2, DTA_OVERFLOW_INF, &c2, &err), DTA_OK);
    cr_assert_eq(dta_cuda_pipe_open(&o, &p, &err), DTA_OK, "%s", err.msg);
    cap1 = dta_cuda_pipe_capacity(p, DTA_F32, DTA_BF16);
    cap2 = dta_cuda_pipe_capacity(p, DTA_F16, DTA_F32);
    cr_assert_eq(cap1, 1024);
    cr_assert_eq(cap2, 1024);
    /* two tensors interleaved chunk by chunk, results written where their tag says */
    for (int turn = 0;;) {
        dta_cuda_chunk *c;
        while ((off1 < n1 || off2 < n2) && (c = dta_cuda_pipe_get(p)) != NULL) {
            bool first = off2 >= n2 || (off1 < n1 && (turn++ & 1) == 0);
            if (first) {
                size_t m = n1 - off1 < cap1 ? n1 - off1 : cap1;
                memcpy(c->src, s1 + off1 * 4, m * 4);
                cr_assert_eq(dta_cuda_pipe_convert(p, c, DTA_F32, DTA_BF16, m, DTA_OVERFLOW_INF,
                                                   &st1, o1 + off1 * 2, &err), DTA_OK, "%s", err.msg);
                off1 += m;
            } else {
                size_t m = n2 - off2 < cap2 ? n2 - off2 : cap2;
                memcpy(c->src, s2 + off2 * 2, m * 2);
                cr_assert_eq(dta_cuda_pipe_convert(p, c, DTA_F16, DTA_F32, m, DTA_OVERFLOW_INF,
                                                   &st2, o2 + off2 * 4, &err), DTA_OK, "%s", err.msg);
                off2 += m;
            }
        }
        cr_assert_eq(dta_cuda_pipe_next(p, &c, &err), DTA_OK, "%s", err.msg);
        if (!c)
            break;
        memcpy(c->tag, c->dst, c->n * ((unsigned char *)c->tag >= o2 && (unsigned char *)c->tag < o2 + n2 * 4 ? 4 : 2));
        dta_cuda_pipe_release(p, c);
    }
    same_bytes(w1, o1, n1, DTA_BF16, "pipe tensor 1");
    same_bytes(w2, o2, n2, DTA_F32, "pipe tensor 2");
    same_convert_stats(&c1, &st1, "pipe tensor 1");
    same_convert_stats(&c2, &st2, "pipe tensor 2");

    /* verification across chunks: the first mismatch lies in a later chunk */
    w1[2 * 5000] ^= 1;
    memset(&v1, 0, sizeof v1);
    memset(&vw, 0, sizeof vw);
    cr_assert_eq(dta_verify(DTA_F32, DTA_BF16, s1, w1, n1, DTA_OVERFLOW_INF, &vw, &err), DTA_OK);
    for (off1 = 0;;) {
        dta_cuda_chunk *c;
        while (off1 < n1 && (c = dta_cuda_pipe_get(p)) != NULL) {
            size_t m = n1 - off1 < cap1 ? n1 - off1 : cap1;
            memcpy(c->src, s1 + off1 * 4, m * 4);
            memcpy(c->dst, w1 + off1 * 2, m * 2);
            cr_assert_eq(dta_cuda_pipe_verify(p, c, DTA_F32, DTA_BF16, m, DTA_OVERFLOW_INF, &v1,
                                              NULL, &err), DTA_OK, "%s", err.msg);
            off1 += m;
        }
        cr_assert_eq(dta_cuda_pipe_next(p, &c, &err), DTA_OK, "%s", err.msg);
        if (!c)
            break;
        dta_cuda_pipe_release(p, c);
    }
    same_verify_stats(&vw, &v1, "pipe verify");
    cr_assert_eq(v1.first_mismatch, 5000);
    /* a chunk that is too big is refused; a same-dtype chunk runs on the host */
    dta_cuda_chunk *c = dta_cuda_pipe_get(p);
    cr_assert_not_null(c);
    cr_assert_eq(dta_cuda_pipe_convert(p, c, DTA_F32, DTA_BF16, cap1 + 1, DTA_OVERFLOW_INF, NULL,
                                       NULL, &err), DTA_E_ARG);
    memset(c->src, 0x41, 64);
    cr_assert_eq(dta_cuda_pipe_convert(p, c, DTA_I32, DTA_I32, 16, DTA_OVERFLOW_INF, NULL, NULL,
                                       &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dta_cuda_pipe_next(p, &c, &err), DTA_OK);
    cr_assert_eq(memcmp(c->dst, c->src, 64), 0);
    dta_cuda_pipe_release(p, c);
    dta_cuda_pipe_free(p);
    free(s1), free(s2), free(o1), free(o2), free(w1), free(w2);
}

Test(cuda_gpu, over_2_pow_31_elements_through_chunks, .timeout = 600)
{
    const size_t n = ((size_t)1 << 31) + 33, piece = (size_t)1 << 26;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    unsigned char *src, *dst, *ref;
    dta_convert_stats sg = {0, 0, 0, 0, 0}, sc = {0, 0, 0, 0, 0};
    dta_error err;
    need_gpu();
    if (pages <= 0 || psz <= 0 || (double)pages * (double)psz < 16.0 * (1u << 30))
        cr_skip_test("needs 16 GiB of host memory");
    src = malloc(n);
    dst = malloc(n * 2);
    ref = malloc(piece * 2);
    if (!src || !dst || !ref)
        cr_skip_test("cannot allocate 6 GiB");
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)((i * 2654435761u) >> 13);
    cr_assert_eq(dta_convert_cuda(DTA_F8_E4M3, DTA_BF16, src, dst, n, DTA_OVERFLOW_INF, &sg, &err),
                 DTA_OK, "%s", err.msg);
    for (size_t off = 0; off < n; off += piece) {
        size_t m = n - off < piece ? n - off : piece;
        cr_assert_eq(dta_convert(DTA_F8_E4M3, DTA_BF16, src + off, ref, m, DTA_OVERFLOW_INF, &sc,
                                 &err), DTA_OK);
        cr_assert_eq(memcmp(ref, dst + off * 2, m * 2), 0, "piece at %zu", off);
    }
    same_convert_stats(&sc, &sg, "2^31 + 33 elements");
    cr_assert_eq(sg.elements, n);
    free(src);
    free(dst);
    free(ref);
    dta_cuda_release();
}
