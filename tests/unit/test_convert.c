/* Element conversion (src/lib/convert_cpu.c): docs/formats.md 5 and 6 items 31-35, statistics,
 * overflow modes, scalar vs vector bytes, odd lengths and alignments, verification, and
 * torch's own results (tests/fixtures/convert, written by scripts/make-convert-fixtures.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_MXCSR 1
#else
#define HAVE_MXCSR 0
#endif

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static void reset(void)
{
    dta_convert_force_scalar(false);
}

/* One element through dta_convert; returns the raw result bits. */
static uint64_t one(dta_dtype from, dta_dtype to, uint64_t in, dta_overflow_mode mode,
                    dta_convert_stats *st)
{
    unsigned char s[8], d[8] = {0};
    uint64_t out = 0;
    dta_error err = {0};
    memcpy(s, &in, 8);
    cr_assert_eq(dta_convert(from, to, s, d, 1, mode, st, &err), DTA_OK, "%s", err.msg);
    memcpy(&out, d, 8);
    return out;
}

static uint16_t to_bf16(uint32_t f) { return (uint16_t)one(DTA_F32, DTA_BF16, f, DTA_OVERFLOW_INF, NULL); }
static uint16_t to_f16(uint32_t f) { return (uint16_t)one(DTA_F32, DTA_F16, f, DTA_OVERFLOW_INF, NULL); }

/* ---- item 31: bfloat16 --------------------------------------------------------------- */

Test(convert, bf16_boundaries, .fini = reset)
{
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        cr_assert_eq(to_bf16(0x3F808000), 0x3F80); /* tie -> even (down) */
        cr_assert_eq(to_bf16(0x3F818000), 0x3F82); /* tie -> even (up) */
        cr_assert_eq(to_bf16(0x3F808001), 0x3F81);
        cr_assert_eq(to_bf16(0x3F807FFF), 0x3F80);
        cr_assert_eq(to_bf16(0x7F7FFFFF), 0x7F80); /* max float -> inf */
        cr_assert_eq(to_bf16(0xFF7FFFFF), 0xFF80);
        cr_assert_eq(to_bf16(0x7F7F7FFF), 0x7F7F);
        cr_assert_eq(to_bf16(0x7F7F8000), 0x7F80); /* tie on the odd max -> inf */
        cr_assert_eq(to_bf16(0x80000000), 0x8000); /* -0 kept */
        cr_assert_eq(to_bf16(0x00000000), 0x0000);
        cr_assert_eq(to_bf16(0x00010000), 0x0001); /* subnormals not flushed */
        cr_assert_eq(to_bf16(0x00008000), 0x0000); /* tie -> 0 */
        cr_assert_eq(to_bf16(0x00018000), 0x0002);
        cr_assert_eq(to_bf16(0x80008001), 0x8001);
        cr_assert_eq(to_bf16(0x007FFFFF), 0x0080); /* largest subnormal rounds to min normal */
        cr_assert_eq(to_bf16(0x7F800000), 0x7F80);
        cr_assert_eq(to_bf16(0xFF800000), 0xFF80);
        cr_assert_eq(to_bf16(0x7FC00000), 0x7FC0);
        cr_assert_eq(to_bf16(0x7F800001), 0x7FC0); /* sNaN: quiet, not inf */
        cr_assert_eq(to_bf16(0xFFFFFFFF), 0x7FC0); /* sign dropped like torch's scalar path */
        cr_assert_eq(to_bf16(fbits(1.0f)), 0x3F80);
        cr_assert_eq(to_bf16(fbits(-2.5f)), 0xC020);
    }
    cr_assert_eq(dta_f32_to_bf16_bits(0x3F818000), 0x3F82);
    cr_assert_eq(dta_bf16_to_f32_bits(0x3F82), 0x3F820000u);
}

/* ---- item 32: float16 ---------------------------------------------------------------- */

Test(convert, f16_boundaries, .fini = reset)
{
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        cr_assert_eq(to_f16(fbits(65504.0f)), 0x7BFF);
        cr_assert_eq(to_f16(fbits(65519.99f)), 0x7BFF);
        cr_assert_eq(to_f16(fbits(65520.0f)), 0x7C00);
        cr_assert_eq(to_f16(fbits(-65520.0f)), 0xFC00);
        cr_assert_eq(to_f16(fbits(ldexpf(1, -24))), 0x0001);
        cr_assert_eq(to_f16(fbits(ldexpf(1, -25))), 0x0000); /* tie -> 0 */
        cr_assert_eq(to_f16(fbits(-ldexpf(1, -25))), 0x8000);
        cr_assert_eq(to_f16(fbits(ldexpf(3, -26))), 0x0001);
        cr_assert_eq(to_f16(fbits(ldexpf(3, -25))), 0x0002); /* 1.5 ulp tie -> even 2 */
        cr_assert_eq(to_f16(fbits(ldexpf(1, -14))), 0x0400);
        cr_assert_eq(to_f16(fbits(ldexpf(1023, -24))), 0x03FF);
        cr_assert_eq(to_f16(fbits(1.0f + ldexpf(1, -11))), 0x3C00);
        cr_assert_eq(to_f16(fbits(1.0f + ldexpf(3, -11))), 0x3C02);
        cr_assert_eq(to_f16(fbits(1.0f)), 0x3C00);
        cr_assert_eq(to_f16(0x80000000), 0x8000);
        cr_assert_eq(to_f16(0x00000001), 0x0000);
        cr_assert_eq(to_f16(0x7F800000), 0x7C00);
        cr_assert_eq(to_f16(0xFF800000), 0xFC00);
        cr_assert_eq(to_f16(0x7F800001), 0x7E00);
        cr_assert_eq(to_f16(0xFFC12345), 0xFE00); /* payload dropped, sign kept */
        cr_assert_eq(to_f16(0x7FFFFFFF), 0x7E00);
    }
    cr_assert_eq(dta_f16_to_f32_bits(0x0001), fbits(ldexpf(1, -24)));
    cr_assert_eq(dta_f16_to_f32_bits(0x7BFF), fbits(65504.0f));
    cr_assert_eq(dta_f16_to_f32_bits(0xFC00), 0xFF800000u);
    cr_assert_eq(dta_f16_to_f32_bits(0x7C01), 0x7FC02000u); /* quiet bit set, payload kept */
    cr_assert_eq(dta_f16_to_f32_bits(0x8000), 0x80000000u);
}

/* ---- item 35: float64 ---------------------------------------------------------------- */

Test(convert, f64_double_rounding_and_boundaries)
{
    /* 1 + 2^-8 + 2^-30: f32 gives the exact bf16 tie 1 + 2^-8, which rounds to even 1.0;
     * a single rounding would give 1 + 2^-7. torch 1.13 gives 0x3F80 (fixture too). */
    double d = 1.0 + ldexp(1, -8) + ldexp(1, -30);
    cr_assert_eq(one(DTA_F64, DTA_BF16, dbits(d), DTA_OVERFLOW_INF, NULL), 0x3F80);
    cr_assert_eq(one(DTA_F64, DTA_F32, dbits(d), DTA_OVERFLOW_INF, NULL), 0x3F808000u);
    d = 1.0 + ldexp(1, -11) + ldexp(1, -30);
    cr_assert_eq(one(DTA_F64, DTA_F16, dbits(d), DTA_OVERFLOW_INF, NULL), 0x3C00);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(1.0 + ldexp(1, -24))), 0x3F800000u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(1.0 + ldexp(3, -24))), 0x3F800002u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(ldexp(1, -149))), 0x00000001u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(ldexp(1, -150))), 0x00000000u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(-ldexp(3, -150))), 0x80000002u); /* 1.5 ulp tie -> 2 */
    cr_assert_eq(dta_f64_to_f32_bits(dbits(-ldexp(3, -151))), 0x80000001u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(1e300)), 0x7F800000u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(-1e-300)), 0x80000000u);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(3.4028235677973366e38)), 0x7F800000u); /* max+half ulp */
    cr_assert_eq(dta_f64_to_f32_bits(dbits(3.4028234663852886e38)), 0x7F7FFFFFu);
    cr_assert_eq(dta_f64_to_f32_bits(dbits(-INFINITY)), 0xFF800000u);
    cr_assert((dta_f64_to_f32_bits(0x7FF0000000000001u) & 0x7FFFFFFFu) > 0x7F800000u);
    /* the integer f64 -> f32 against the hardware cast (round to nearest even) */
    for (int i = 0; i < 1000000; i++) {
        uint64_t b = rnd();
        if (i & 1) /* concentrate on the f32 range */
            b = (b & 0x800FFFFFFFFFFFFFu) | ((uint64_t)(1023 - 160 + (rnd() % 300)) << 52);
        double x;
        memcpy(&x, &b, 8);
        if (isnan(x))
            continue;
        cr_assert_eq(dta_f64_to_f32_bits(b), fbits((float)x), "%016llx",
                     (unsigned long long)b);
    }
}

Test(convert, f64_stats_and_saturate)
{
    double v[] = {1e300, -1e300, 1e-300, INFINITY, NAN, 0.0, 1.0, 70000.0};
    unsigned char out[sizeof v];
    dta_convert_stats st = {0};
    dta_error err;
    cr_assert_eq(dta_convert(DTA_F64, DTA_F16, v, out, 8, DTA_OVERFLOW_SATURATE, &st, &err), DTA_OK);
    uint16_t h[8];
    memcpy(h, out, 16);
    cr_assert_eq(h[0], 0x7BFF);
    cr_assert_eq(h[1], 0xFBFF);
    cr_assert_eq(h[2], 0x0000);
    cr_assert_eq(h[3], 0x7C00);
    cr_assert_eq(h[4], 0x7E00);
    cr_assert_eq(h[7], 0x7BFF);
    cr_assert_eq(st.elements, 8);
    cr_assert_eq(st.overflow, 3);
    cr_assert_eq(st.underflow, 1);
    cr_assert_eq(st.nan, 1);
    cr_assert_eq(st.inf, 1);
    memset(&st, 0, sizeof st);
    uint32_t f[8];
    cr_assert_eq(dta_convert(DTA_F64, DTA_F32, v, f, 8, DTA_OVERFLOW_SATURATE, &st, &err), DTA_OK);
    cr_assert_eq(f[0], 0x7F7FFFFFu);
    cr_assert_eq(f[1], 0xFF7FFFFFu);
    cr_assert_eq(f[3], 0x7F800000u);
    cr_assert_eq(f[7], fbits(70000.0f));
    cr_assert_eq(st.overflow, 2);
    cr_assert_eq(st.underflow, 1);
    uint16_t b[8];
    cr_assert_eq(dta_convert(DTA_F64, DTA_BF16, v, b, 8, DTA_OVERFLOW_ERROR, NULL, &err), DTA_OK);
    cr_assert_eq(b[0], 0x7F80);
    cr_assert_eq(b[1], 0xFF80);
    cr_assert_eq(b[7], 0x4789); /* 70000 = 0x478AB800 -> 0x4789 (below the tie) */
}

/* ---- items 33, 34 and the other float8 sources ---------------------------------------- */

static uint32_t f8(dta_dtype t, uint8_t c)
{
    return (uint32_t)one(t, DTA_F32, c, DTA_OVERFLOW_INF, NULL);
}

static bool isnan32(uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }

Test(convert, e4m3fn_decode)
{
    cr_assert_eq(f8(DTA_F8_E4M3, 0x7E), fbits(448.0f));
    cr_assert_eq(f8(DTA_F8_E4M3, 0xFE), fbits(-448.0f));
    cr_assert_eq(f8(DTA_F8_E4M3, 0x7F), 0x7FF00000u); /* c10's NaN bits */
    cr_assert_eq(f8(DTA_F8_E4M3, 0xFF), 0xFFF00000u);
    cr_assert_eq(f8(DTA_F8_E4M3, 0x78), fbits(256.0f)); /* exponent 15 is normal */
    cr_assert_eq(f8(DTA_F8_E4M3, 0x38), fbits(1.0f));
    cr_assert_eq(f8(DTA_F8_E4M3, 0x01), fbits(ldexpf(1, -9)));
    cr_assert_eq(f8(DTA_F8_E4M3, 0x07), fbits(ldexpf(7, -9)));
    cr_assert_eq(f8(DTA_F8_E4M3, 0x08), fbits(ldexpf(1, -6)));
    cr_assert_eq(f8(DTA_F8_E4M3, 0x80), 0x80000000u);
    /* every code against the textbook formula */
    for (int c = 0; c < 256; c++) {
        int e = (c >> 3) & 15, m = c & 7;
        float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf((float)m, -9);
        if (c & 0x80)
            v = -v;
        if ((c & 0x7F) == 0x7F)
            cr_assert(isnan32(f8(DTA_F8_E4M3, (uint8_t)c)));
        else
            cr_assert_eq(f8(DTA_F8_E4M3, (uint8_t)c), fbits(v), "code %02x", c);
    }
    dta_convert_stats st = {0};
    cr_assert_eq(one(DTA_F8_E4M3, DTA_BF16, 0x7E, DTA_OVERFLOW_INF, &st), 0x43E0);
    cr_assert_eq(one(DTA_F8_E4M3, DTA_F16, 0x7E, DTA_OVERFLOW_INF, &st), 0x5F00);
    cr_assert_eq(one(DTA_F8_E4M3, DTA_F16, 0x01, DTA_OVERFLOW_INF, &st), 0x1800); /* 2^-9 */
    cr_assert_eq(one(DTA_F8_E4M3, DTA_BF16, 0x7F, DTA_OVERFLOW_INF, &st), 0x7FC0);
    cr_assert_eq(one(DTA_F8_E4M3, DTA_F16, 0xFF, DTA_OVERFLOW_INF, &st), 0xFE00);
    cr_assert_eq(st.nan, 2);
    cr_assert_eq(st.inf + st.overflow + st.underflow, 0);
}

Test(convert, e5m2_decode)
{
    cr_assert_eq(f8(DTA_F8_E5M2, 0x7B), fbits(57344.0f));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x7C), 0x7F800000u);
    cr_assert_eq(f8(DTA_F8_E5M2, 0xFC), 0xFF800000u);
    cr_assert(isnan32(f8(DTA_F8_E5M2, 0x7D)));
    cr_assert(isnan32(f8(DTA_F8_E5M2, 0x7E)));
    cr_assert(isnan32(f8(DTA_F8_E5M2, 0x7F)));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x3C), fbits(1.0f));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x01), fbits(ldexpf(1, -16)));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x03), fbits(ldexpf(3, -16)));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x04), fbits(ldexpf(1, -14)));
    cr_assert_eq(f8(DTA_F8_E5M2, 0x80), 0x80000000u);
    for (int c = 0; c < 256; c++) {
        int e = (c >> 2) & 31, m = c & 3;
        if (e == 31)
            continue;
        float v = e ? ldexpf(1.0f + m / 4.0f, e - 15) : ldexpf((float)m, -16);
        cr_assert_eq(f8(DTA_F8_E5M2, (uint8_t)c), fbits(c & 0x80 ? -v : v), "code %02x", c);
        /* e5m2 is the top byte of a float16, so to F16 it is exact */
        cr_assert_eq(one(DTA_F8_E5M2, DTA_F16, (uint64_t)c, DTA_OVERFLOW_INF, NULL),
                     (uint64_t)c << 8);
    }
    dta_convert_stats st = {0};
    uint8_t in[] = {0x7C, 0xFC, 0x7D, 0x7F, 0x3C};
    uint16_t out[5];
    cr_assert_eq(dta_convert(DTA_F8_E5M2, DTA_BF16, in, out, 5, DTA_OVERFLOW_INF, &st, NULL), DTA_OK);
    cr_assert_eq(out[0], 0x7F80);
    cr_assert_eq(out[1], 0xFF80);
    cr_assert_eq(out[2], 0x7FC0);
    cr_assert_eq(out[4], 0x3F80);
    cr_assert_eq(st.inf, 2);
    cr_assert_eq(st.nan, 2);
}

Test(convert, fnuz_decode)
{
    /* e4m3fnuz: bias 8, max 240; e5m2fnuz: bias 16, max 57344; 0x80 is the only NaN */
    cr_assert(isnan32(f8(DTA_F8_E4M3FNUZ, 0x80)));
    cr_assert(isnan32(f8(DTA_F8_E5M2FNUZ, 0x80)));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0x00), 0u);
    cr_assert_eq(f8(DTA_F8_E5M2FNUZ, 0x00), 0u);
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0x7F), fbits(240.0f));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0xFF), fbits(-240.0f));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0x40), fbits(1.0f));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0xC0), fbits(-1.0f));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0x01), fbits(ldexpf(1, -10)));
    cr_assert_eq(f8(DTA_F8_E4M3FNUZ, 0x81), fbits(-ldexpf(1, -10)));
    cr_assert_eq(f8(DTA_F8_E5M2FNUZ, 0x7F), fbits(57344.0f));
    cr_assert_eq(f8(DTA_F8_E5M2FNUZ, 0x40), fbits(1.0f));
    cr_assert_eq(f8(DTA_F8_E5M2FNUZ, 0x01), fbits(ldexpf(1, -17)));
    cr_assert_eq(f8(DTA_F8_E5M2FNUZ, 0x7C), fbits(32768.0f)); /* no inf: exponent 31 is normal */
    int nans4 = 0, nans5 = 0;
    for (int c = 0; c < 256; c++) {
        uint32_t a = f8(DTA_F8_E4M3FNUZ, (uint8_t)c), b = f8(DTA_F8_E5M2FNUZ, (uint8_t)c);
        nans4 += isnan32(a);
        nans5 += isnan32(b);
        cr_assert_neq(a & 0x7FFFFFFFu, 0x7F800000u);
        cr_assert_neq(b & 0x7FFFFFFFu, 0x7F800000u);
        if (c != 0) {
            cr_assert_neq(a, 0x80000000u, "code %02x: no -0", c);
            cr_assert_neq(a, 0u, "code %02x", c);
        }
    }
    cr_assert_eq(nans4, 1);
    cr_assert_eq(nans5, 1);
    cr_assert_eq(one(DTA_F8_E4M3FNUZ, DTA_F16, 0x80, DTA_OVERFLOW_INF, NULL), 0x7E00);
    cr_assert_eq(one(DTA_F8_E5M2FNUZ, DTA_BF16, 0x80, DTA_OVERFLOW_INF, NULL), 0x7FC0);
    /* 57344 fits float16 (0x7B00); bf16 too */
    cr_assert_eq(one(DTA_F8_E5M2FNUZ, DTA_F16, 0x7F, DTA_OVERFLOW_INF, NULL), 0x7B00);
    cr_assert_eq(one(DTA_F8_E5M2FNUZ, DTA_BF16, 0x7F, DTA_OVERFLOW_INF, NULL), 0x4760);
}

Test(convert, e8m0_decode)
{
    cr_assert_eq(f8(DTA_F8_E8M0, 0x7F), fbits(1.0f));
    cr_assert_eq(f8(DTA_F8_E8M0, 0x80), fbits(2.0f));
    cr_assert_eq(f8(DTA_F8_E8M0, 0xFE), fbits(ldexpf(1, 127)));
    cr_assert_eq(f8(DTA_F8_E8M0, 0x01), fbits(ldexpf(1, -126)));
    cr_assert_eq(f8(DTA_F8_E8M0, 0x00), 0x00400000u); /* 2^-127, an f32 subnormal */
    cr_assert(isnan32(f8(DTA_F8_E8M0, 0xFF)));
    dta_convert_stats st = {0};
    cr_assert_eq(one(DTA_F8_E8M0, DTA_BF16, 0x00, DTA_OVERFLOW_INF, &st), 0x0040);
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x7F, DTA_OVERFLOW_INF, &st), 0x3C00);
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x8E, DTA_OVERFLOW_INF, &st), 0x7800); /* 2^15 */
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x8F, DTA_OVERFLOW_INF, &st), 0x7C00); /* 2^16 */
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x67, DTA_OVERFLOW_INF, &st), 0x0001); /* 2^-24 */
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x66, DTA_OVERFLOW_INF, &st), 0x0000); /* 2^-25 tie */
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0x8F, DTA_OVERFLOW_SATURATE, &st), 0x7BFF);
    cr_assert_eq(one(DTA_F8_E8M0, DTA_F16, 0xFF, DTA_OVERFLOW_INF, &st), 0x7E00);
    cr_assert_eq(st.overflow, 2);
    cr_assert_eq(st.underflow, 1);
    cr_assert_eq(st.nan, 1);
    cr_assert_eq(st.elements, 8);
}

/* ---- statistics and modes on the f32 kernels (both paths) ----------------------------- */

Test(convert, stats_and_modes, .fini = reset)
{
    /* 40 elements so the vector body sees the specials (16 per iteration), tail too */
    uint32_t in[40];
    for (int i = 0; i < 40; i++)
        in[i] = fbits(1.0f + i);
    int at[] = {0, 5, 17, 31, 38};
    in[at[0]] = 0x7F7FFFFF; /* overflow for both targets */
    in[at[1]] = 0xFF800000; /* -inf */
    in[at[2]] = 0x7FC00001; /* NaN */
    in[at[3]] = 0x00000001; /* underflow for both targets (smallest f32 subnormal) */
    in[at[4]] = fbits(-70000.0f); /* overflow for f16 only */
    in[10] = 0x80000000;          /* -0: not an underflow */
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        for (int mode = 0; mode < 3; mode++) {
            uint16_t b[40], h[40];
            dta_convert_stats sb = {0}, sh = {0};
            cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, in, b, 40, (dta_overflow_mode)mode, &sb, NULL), DTA_OK);
            cr_assert_eq(dta_convert(DTA_F32, DTA_F16, in, h, 40, (dta_overflow_mode)mode, &sh, NULL), DTA_OK);
            cr_assert_eq(sb.elements, 40);
            cr_assert_eq(sb.overflow, 1, "pass %d mode %d", pass, mode);
            cr_assert_eq(sb.inf, 1);
            cr_assert_eq(sb.nan, 1);
            cr_assert_eq(sb.underflow, 1);
            cr_assert_eq(sh.overflow, 2);
            cr_assert_eq(sh.inf, 1);
            cr_assert_eq(sh.nan, 1);
            cr_assert_eq(sh.underflow, 1);
            bool sat = mode == DTA_OVERFLOW_SATURATE;
            cr_assert_eq(b[0], sat ? 0x7F7F : 0x7F80);
            cr_assert_eq(h[0], sat ? 0x7BFF : 0x7C00);
            cr_assert_eq(h[38], sat ? 0xFBFF : 0xFC00);
            cr_assert_eq(b[5], 0xFF80); /* inf stays inf */
            cr_assert_eq(h[5], 0xFC00);
            cr_assert_eq(b[17], 0x7FC0);
            cr_assert_eq(h[17], 0x7E00);
            cr_assert_eq(b[31], 0x0000);
            cr_assert_eq(h[31], 0x0000);
            cr_assert_eq(b[10], 0x8000);
            cr_assert_eq(h[10], 0x8000);
        }
    }
    /* decoders count NaN and inf only */
    uint16_t hb[20] = {0x7F80, 0xFF81, 0x3F80};
    uint16_t hh[20] = {0x7C00, 0xFC01, 0x3C00};
    hb[18] = 0xFF80;
    hh[18] = 0x7E00;
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        dta_convert_stats s1 = {0}, s2 = {0};
        float f[20];
        cr_assert_eq(dta_convert(DTA_BF16, DTA_F32, hb, f, 20, DTA_OVERFLOW_INF, &s1, NULL), DTA_OK);
        cr_assert_eq(dta_convert(DTA_F16, DTA_F32, hh, f, 20, DTA_OVERFLOW_INF, &s2, NULL), DTA_OK);
        cr_assert_eq(s1.inf, 2);
        cr_assert_eq(s1.nan, 1);
        cr_assert_eq(s2.inf, 1);
        cr_assert_eq(s2.nan, 2);
        cr_assert_eq(s1.overflow + s1.underflow + s2.overflow + s2.underflow, 0);
    }
    /* a same-dtype copy counts too */
    dta_convert_stats sc = {0};
    uint32_t cp[40];
    cr_assert_eq(dta_convert(DTA_F32, DTA_F32, in, cp, 40, DTA_OVERFLOW_INF, &sc, NULL), DTA_OK);
    cr_assert_eq(memcmp(in, cp, sizeof in), 0);
    cr_assert_eq(sc.nan, 1);
    cr_assert_eq(sc.inf, 1);
    cr_assert_eq(sc.overflow, 0);
}

/* ---- scalar path vs vector path ------------------------------------------------------- */

static void both_paths(dta_dtype from, dta_dtype to, const void *in, size_t n,
                       dta_overflow_mode mode)
{
    size_t osz = to == DTA_F32 ? 4 : 2;
    unsigned char *a = malloc(n * osz + 1), *b = malloc(n * osz + 1);
    dta_convert_stats sa = {0}, sb = {0};
    cr_assert(a && b);
    dta_convert_force_scalar(true);
    cr_assert_eq(dta_convert(from, to, in, a, n, mode, &sa, NULL), DTA_OK);
    cr_assert_str_eq(dta_convert_backend(), "scalar");
    dta_convert_force_scalar(false);
    cr_assert_eq(dta_convert(from, to, in, b, n, mode, &sb, NULL), DTA_OK);
    for (size_t i = 0; i < n * osz; i++)
        cr_assert_eq(a[i], b[i], "%s -> %s mode %d: element %zu differs (%s)",
                     dta_dtype_name(from), dta_dtype_name(to), (int)mode, i / osz,
                     dta_convert_backend());
    cr_assert_eq(memcmp(&sa, &sb, sizeof sa), 0, "%s -> %s: statistics differ",
                 dta_dtype_name(from), dta_dtype_name(to));
    free(a);
    free(b);
}

Test(convert, vector_equals_scalar_random_f32, .fini = reset)
{
    size_t n = (size_t)1 << 20;
    uint32_t *in = malloc(n * 4);
    cr_assert(in);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        in[i] = (uint32_t)r;
        if ((r >> 40) % 4 == 0) /* a quarter NaN/inf-heavy, a quarter near the f16 range */
            in[i] |= 0x7F800000u;
        else if ((r >> 40) % 4 == 1)
            in[i] = (in[i] & 0x807FFFFFu) | ((uint32_t)(100 + (r >> 50) % 48) << 23);
    }
    cr_log_info("vector backend on this machine: %s", dta_convert_backend());
    for (int mode = 0; mode < 3; mode++) {
        both_paths(DTA_F32, DTA_BF16, in, n, (dta_overflow_mode)mode);
        both_paths(DTA_F32, DTA_F16, in, n, (dta_overflow_mode)mode);
    }
    free(in);
}

Test(convert, vector_equals_scalar_all_16bit, .fini = reset)
{
    uint16_t in[65536];
    for (unsigned i = 0; i < 65536; i++)
        in[i] = (uint16_t)i;
    both_paths(DTA_BF16, DTA_F32, in, 65536, DTA_OVERFLOW_INF);
    both_paths(DTA_F16, DTA_F32, in, 65536, DTA_OVERFLOW_INF);
    for (int mode = 0; mode < 3; mode++) {
        both_paths(DTA_BF16, DTA_F16, in, 65536, (dta_overflow_mode)mode);
        both_paths(DTA_F16, DTA_BF16, in, 65536, (dta_overflow_mode)mode);
    }
    /* decoders against independent arithmetic */
    float *f = malloc(65536 * 4);
    cr_assert(f);
    cr_assert_eq(dta_convert(DTA_F16, DTA_F32, in, f, 65536, DTA_OVERFLOW_INF, NULL, NULL), DTA_OK);
    for (unsigned i = 0; i < 65536; i++) {
        unsigned e = (i >> 10) & 31, m = i & 1023;
        if (e == 31) {
            cr_assert_eq(fbits(f[i]) & 0x7FFFFFFFu, m ? 0x7FC00000u | (m << 13) : 0x7F800000u);
            continue;
        }
        double v = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
        cr_assert_eq(fbits(f[i]), fbits((float)(i & 0x8000 ? -v : v)), "f16 %04x", i);
    }
    cr_assert_eq(dta_convert(DTA_BF16, DTA_F32, in, f, 65536, DTA_OVERFLOW_INF, NULL, NULL), DTA_OK);
    for (unsigned i = 0; i < 65536; i++)
        cr_assert_eq(fbits(f[i]), i << 16);
    free(f);
}

#if HAVE_MXCSR
/* FTZ/DAZ set by a caller (-ffast-math) must not change a byte. */
Test(convert, vector_ignores_ftz_daz, .fini = reset)
{
    size_t n = 1 << 16;
    uint32_t *in = malloc(n * 4);
    cr_assert(in);
    for (size_t i = 0; i < n; i++) /* many subnormals and tiny values */
        in[i] = (uint32_t)rnd() & ((i & 1) ? 0x80FFFFFFu : 0xBFFFFFFFu);
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* FTZ | DAZ */
    both_paths(DTA_F32, DTA_F16, in, n, DTA_OVERFLOW_INF);
    both_paths(DTA_F32, DTA_BF16, in, n, DTA_OVERFLOW_INF);
    both_paths(DTA_F16, DTA_F32, in, n * 2, DTA_OVERFLOW_INF);
    both_paths(DTA_F64, DTA_F16, in, n / 2, DTA_OVERFLOW_INF);
    _mm_setcsr(csr);
    free(in);
}
#endif

/* ---- odd lengths and unaligned pointers, every pair ----------------------------------- */

static size_t esz(dta_dtype t) { return dta_dtype_get(t)->bits / 8; }

Test(convert, odd_lengths_unaligned_all_pairs, .fini = reset)
{
    static const dta_dtype srcs[] = {DTA_F64, DTA_F32, DTA_F16, DTA_BF16, DTA_F8_E4M3,
                                     DTA_F8_E5M2, DTA_F8_E4M3FNUZ, DTA_F8_E5M2FNUZ, DTA_F8_E8M0};
    static const dta_dtype dsts[] = {DTA_F32, DTA_F16, DTA_BF16};
    unsigned char in[68 * 8 + 8], ref[68 * 4], out[68 * 4 + 16];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)rnd();
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        for (size_t a = 0; a < sizeof srcs / sizeof srcs[0]; a++)
            for (size_t b = 0; b < 3; b++) {
                dta_dtype from = srcs[a], to = dsts[b];
                size_t is = esz(from), os = esz(to);
                if (from == to)
                    continue;
                /* reference: one element at a time from an aligned copy */
                for (size_t i = 0; i < 68; i++) {
                    uint64_t v = 0;
                    memcpy(&v, in + 3 + i * is, is);
                    uint64_t r = one(from, to, v, DTA_OVERFLOW_INF, NULL);
                    memcpy(ref + i * os, &r, os);
                }
                for (size_t n = 0; n <= 67; n++)
                    for (int so = 0; so < 4; so++) {
                        int dof = (int)(n % 4);
                        memset(out, 0xA5, sizeof out);
                        /* source offset 3 matches the reference; shift by so bytes via a copy */
                        unsigned char sbuf[68 * 8 + 8];
                        memcpy(sbuf + so, in + 3, 67 * 8);
                        dta_convert_stats st = {0};
                        cr_assert_eq(dta_convert(from, to, sbuf + so, out + dof, n,
                                                 DTA_OVERFLOW_INF, &st, NULL), DTA_OK);
                        cr_assert_eq(memcmp(out + dof, ref, n * os), 0, "%s -> %s n=%zu so=%d",
                                     dta_dtype_name(from), dta_dtype_name(to), n, so);
                        cr_assert_eq(out[dof + n * os], 0xA5, "wrote past the end");
                        if (dof)
                            cr_assert_eq(out[dof - 1], 0xA5, "wrote before the start");
                        cr_assert_eq(st.elements, n);
                    }
            }
    }
}

/* ---- arguments ------------------------------------------------------------------------ */

Test(convert, supported_and_arguments)
{
    cr_assert(dta_convert_supported(DTA_F32, DTA_BF16));
    cr_assert(dta_convert_supported(DTA_F8_E8M0, DTA_F16));
    cr_assert(dta_convert_supported(DTA_I64, DTA_I64));
    cr_assert(!dta_convert_supported(DTA_F32, DTA_F8_E4M3));
    cr_assert(!dta_convert_supported(DTA_F32, DTA_F64));
    cr_assert(!dta_convert_supported(DTA_I32, DTA_F32));
    cr_assert(!dta_convert_supported(DTA_DTYPE_NONE, DTA_F32));
    cr_assert(!dta_convert_supported(DTA_F32, DTA_DTYPE_COUNT));
    dta_error err = {0};
    unsigned char buf[64] = {0};
    cr_assert_eq(dta_convert(DTA_I32, DTA_F32, buf, buf + 32, 1, DTA_OVERFLOW_INF, NULL, &err),
                 DTA_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "I32") != NULL, "%s", err.msg);
    cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, buf, buf + 2, 4, DTA_OVERFLOW_INF, NULL, &err),
                 DTA_E_ARG); /* overlap */
    cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, NULL, buf, 4, DTA_OVERFLOW_INF, NULL, &err), DTA_E_ARG);
    cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, NULL, NULL, 0, DTA_OVERFLOW_INF, NULL, &err), DTA_OK);
    cr_assert_eq(dta_convert(DTA_F32, DTA_BF16, buf, buf + 32, 1, (dta_overflow_mode)7, NULL, &err),
                 DTA_E_ARG);
    cr_assert_eq(dta_convert(DTA_F4, DTA_F4, buf, buf + 32, 3, DTA_OVERFLOW_INF, NULL, &err),
                 DTA_E_ARG); /* half a byte */
    cr_assert_eq(dta_convert(DTA_F4, DTA_F4, buf, buf + 32, 4, DTA_OVERFLOW_INF, NULL, &err), DTA_OK);
    int64_t i64[3] = {1, -2, 3}, o64[3];
    cr_assert_eq(dta_convert(DTA_I64, DTA_I64, i64, o64, 3, DTA_OVERFLOW_INF, NULL, &err), DTA_OK);
    cr_assert_eq(memcmp(i64, o64, sizeof i64), 0);
}

/* ---- verification ----------------------------------------------------------------------- */

Test(convert, verify_detects_flipped_byte)
{
    size_t n = 10000; /* several verification chunks */
    float *in = malloc(n * 4);
    uint16_t *out = malloc(n * 2);
    cr_assert(in && out);
    for (size_t i = 0; i < n; i++)
        in[i] = (float)((double)(rnd() % 2000001) / 1000.0 - 1000.0);
    in[7] = NAN;
    in[9] = 1e10f; /* overflows to inf in float16 */
    dta_convert_stats cs = {0};
    cr_assert_eq(dta_convert(DTA_F32, DTA_F16, in, out, n, DTA_OVERFLOW_INF, &cs, NULL), DTA_OK);
    dta_verify_stats vs = {0};
    cr_assert_eq(dta_verify(DTA_F32, DTA_F16, in, out, n, DTA_OVERFLOW_INF, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.elements, n);
    cr_assert_eq(vs.mismatches, 0);
    cr_assert_eq(vs.nonfinite_added, 1);
    cr_assert(vs.max_rel_err <= ldexp(1, -11), "%g", vs.max_rel_err);
    cr_assert(vs.max_abs_err <= 0.5 + 1e-9, "%g", vs.max_abs_err); /* ulp(1000) = 0.5 */
    /* another NaN encoding is still a NaN */
    out[7] = 0xFE01;
    memset(&vs, 0, sizeof vs);
    cr_assert_eq(dta_verify(DTA_F32, DTA_F16, in, out, n, DTA_OVERFLOW_INF, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.mismatches, 0);
    /* one flipped byte */
    ((unsigned char *)out)[2 * 6543 + 1] ^= 0x10;
    memset(&vs, 0, sizeof vs);
    cr_assert_eq(dta_verify(DTA_F32, DTA_F16, in, out, n, DTA_OVERFLOW_INF, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.mismatches, 1);
    cr_assert_eq(vs.first_mismatch, 6543);
    /* the SATURATE result does not verify against INF (the overflowed element) */
    memset(&vs, 0, sizeof vs);
    ((unsigned char *)out)[2 * 6543 + 1] ^= 0x10;
    cr_assert_eq(dta_verify(DTA_F32, DTA_F16, in, out, n, DTA_OVERFLOW_SATURATE, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.mismatches, 1);
    cr_assert_eq(vs.first_mismatch, 9);
    /* verification of bf16 from f64 and of a copy */
    double d[5] = {1.0, 1e-3, -3.25, 1e300, 0.1};
    uint16_t b[5];
    cr_assert_eq(dta_convert(DTA_F64, DTA_BF16, d, b, 5, DTA_OVERFLOW_INF, NULL, NULL), DTA_OK);
    memset(&vs, 0, sizeof vs);
    cr_assert_eq(dta_verify(DTA_F64, DTA_BF16, d, b, 5, DTA_OVERFLOW_INF, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.mismatches, 0);
    cr_assert_eq(vs.nonfinite_added, 1);
    cr_assert(vs.max_rel_err > 0 && vs.max_rel_err <= ldexp(1, -8), "%g", vs.max_rel_err);
    memset(&vs, 0, sizeof vs);
    cr_assert_eq(dta_verify(DTA_F32, DTA_F32, in, in, n, DTA_OVERFLOW_INF, &vs, NULL), DTA_OK);
    cr_assert_eq(vs.mismatches, 0);
    cr_assert_eq(vs.max_abs_err, 0.0);
    cr_assert_eq(dta_verify(DTA_I8, DTA_F32, in, out, 1, DTA_OVERFLOW_INF, &vs, NULL), DTA_E_UNSUPPORTED);
    free(in);
    free(out);
}

/* ---- torch's results -------------------------------------------------------------------- */

static void *load_fx(const char *name, size_t *len)
{
    char path[1024];
    const char *src = getenv("srcdir");
    snprintf(path, sizeof path, "%s/tests/fixtures/convert/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)sz + 1);
    cr_assert(p);
    cr_assert_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *len = (size_t)sz;
    return p;
}

static bool nan_bits(dta_dtype t, const unsigned char *p)
{
    uint32_t u = 0;
    uint16_t h = 0;
    if (t == DTA_F32) {
        memcpy(&u, p, 4);
        return (u & 0x7FFFFFFFu) > 0x7F800000u;
    }
    memcpy(&h, p, 2);
    return (h & 0x7FFFu) > (t == DTA_BF16 ? 0x7F80u : 0x7C00u);
}

/* Compares dta_convert (both paths) with torch's bytes; returns the NaN count. */
static size_t vs_torch(dta_dtype from, dta_dtype to, const void *in, size_t n, const char *want_fx)
{
    size_t wl, os = esz(to), nans = 0;
    unsigned char *want = load_fx(want_fx, &wl), *got = malloc(n * os);
    cr_assert_eq(wl, n * os, "%s: size", want_fx);
    for (int pass = 0; pass < 2; pass++) {
        dta_convert_force_scalar(pass == 0);
        cr_assert_eq(dta_convert(from, to, in, got, n, DTA_OVERFLOW_INF, NULL, NULL), DTA_OK);
        nans = 0;
        for (size_t i = 0; i < n; i++) {
            const unsigned char *g = got + i * os, *w = want + i * os;
            if (nan_bits(to, w)) {
                cr_assert(nan_bits(to, g), "%s element %zu: torch NaN, dtaudit not", want_fx, i);
                nans++;
            } else {
                cr_assert_eq(memcmp(g, w, os), 0, "%s element %zu differs (%s path)", want_fx,
                             i, pass ? "vector" : "scalar");
            }
        }
    }
    dta_convert_force_scalar(false);
    free(want);
    free(got);
    return nans;
}

Test(convert, matches_torch, .fini = reset)
{
    size_t l32, l64;
    void *f32 = load_fx("f32_in.bin", &l32), *f64 = load_fx("f64_in.bin", &l64);
    cr_assert_eq(l32, 65536 * 4);
    cr_assert_eq(l64, 16384 * 8);
    cr_assert_gt(vs_torch(DTA_F32, DTA_BF16, f32, 65536, "f32_to_bf16.bin"), 100);
    cr_assert_gt(vs_torch(DTA_F32, DTA_F16, f32, 65536, "f32_to_f16.bin"), 100);
    vs_torch(DTA_F64, DTA_F32, f64, 16384, "f64_to_f32.bin");
    vs_torch(DTA_F64, DTA_BF16, f64, 16384, "f64_to_bf16.bin");
    vs_torch(DTA_F64, DTA_F16, f64, 16384, "f64_to_f16.bin");
    uint16_t codes[65536];
    for (unsigned i = 0; i < 65536; i++)
        codes[i] = (uint16_t)i;
    cr_assert_eq(vs_torch(DTA_F16, DTA_BF16, codes, 65536, "f16_all_to_bf16.bin"), 2046);
    cr_assert_eq(vs_torch(DTA_BF16, DTA_F16, codes, 65536, "bf16_all_to_f16.bin"), 254);
    free(f32);
    free(f64);
    (void)bitsf;
}
