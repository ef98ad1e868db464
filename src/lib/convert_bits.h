/* dtaudit: the element-level bit math of every conversion: the scalar reference of
 * convert_cpu.c and the body of the CUDA kernels (cuda/convert.cu) are these functions.
 *
 * Every function here is `__host__ __device__` under nvcc and plain `static inline` C
 * under a C compiler. The rules (docs/formats.md 5) in short:
 *  - f32 -> bf16: add 0x7FFF + lsb and keep the high half; the carry implements RNE and
 *    turns overflow into inf; NaN -> 0x7FC0 (torch's scalar BFloat16(float)).
 *  - f32 -> f16: rebias and drop 13 bits with RNE (the carry flows into the exponent);
 *    (2^-25, 2^-14) become subnormals by an RNE shift; >= 65520 is inf; NaN 0x7E00|sign.
 *  - f64 -> f32: RNE like a C cast; NaN stays quiet with its payload truncated.
 *  - decoding f16/bf16/float8 to f32 is exact (float8 NaNs as c10 decodes them).
 * Integer-only: no CUDA intrinsic such as __float2bfloat16 is used, so NaN bytes and
 * FTZ/DAZ settings do not change results on either side. The vector paths of
 * convert_cpu.c (F16C/AVX2) are tested byte for byte against these functions.
 *
 * C11 and CUDA C++ compatible: no designated initialisers, explicit casts.
 */
#ifndef DTAUDIT_CUDA_CONVERT_BITS_H
#define DTAUDIT_CUDA_CONVERT_BITS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dtaudit/dtype.h"

#ifdef __CUDACC__
#define DTAB_FN static __host__ __device__ __forceinline__
#else
#define DTAB_FN static inline
#endif

/* What a conversion saw in one source element (the counters of dta_convert_stats). */
enum { DTAB_FINE = 0, DTAB_NAN = 1, DTAB_INF = 2, DTAB_OVF = 3, DTAB_UNF = 4 };

/* x >> s rounded to nearest, ties to even; 1 <= s <= 63. */
DTAB_FN uint64_t dtab_rne_shift(uint64_t x, unsigned s)
{
    uint64_t q = x >> s, r = x & ((UINT64_C(1) << s) - 1), half = UINT64_C(1) << (s - 1);
    if (r > half || (r == half && (q & 1)))
        q++;
    return q;
}

DTAB_FN uint16_t dtab_f32_to_bf16(uint32_t f)
{
    if ((f & 0x7FFFFFFFu) > 0x7F800000u)
        return 0x7FC0;
    return (uint16_t)((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

DTAB_FN uint16_t dtab_f32_to_f16(uint32_t f)
{
    uint32_t sign = (f >> 16) & 0x8000u, a = f & 0x7FFFFFFFu, code;
    if (a >= 0x38800000u) {
        if (a >= 0x477FF000u) {
            if (a > 0x7F800000u)
                return (uint16_t)(sign | 0x7E00u);
            return (uint16_t)(sign | 0x7C00u);
        }
        a -= 0x38000000u;
        code = (a + 0xFFFu + ((a >> 13) & 1u)) >> 13;
    } else if (a > 0x33000000u) {
        uint32_t e = a >> 23, sig = (a & 0x7FFFFFu) | 0x800000u;
        code = (uint32_t)dtab_rne_shift(sig, 126u - e);
    } else {
        code = 0;
    }
    return (uint16_t)(sign | code);
}

DTAB_FN uint32_t dtab_bf16_to_f32(uint16_t h) { return (uint32_t)h << 16; }

DTAB_FN uint32_t dtab_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (uint32_t)(h >> 10) & 0x1Fu,
             m = h & 0x3FFu;
    if (e == 31)
        return sign | 0x7F800000u | (m ? 0x400000u | (m << 13) : 0u);
    if (e == 0) {
        uint32_t k = 0;
        if (!m)
            return sign;
        while (!(m & 0x400u)) {
            m <<= 1;
            k++;
        }
        return sign | ((113u - k) << 23) | ((m & 0x3FFu) << 13);
    }
    return sign | ((e + 112u) << 23) | (m << 13);
}

DTAB_FN uint32_t dtab_f64_to_f32(uint64_t d)
{
    uint32_t sign = (uint32_t)(d >> 32) & 0x80000000u;
    uint64_t a = d & UINT64_C(0x7FFFFFFFFFFFFFFF), sig;
    int64_t e, te;
    if (a > UINT64_C(0x7FF0000000000000))
        return sign | 0x7FC00000u | (uint32_t)((a >> 29) & 0x3FFFFFu);
    if (a == UINT64_C(0x7FF0000000000000))
        return sign | 0x7F800000u;
    e = (int64_t)(a >> 52);
    sig = a & UINT64_C(0xFFFFFFFFFFFFF);
    if (e == 0)
        e = 1;
    else
        sig |= UINT64_C(1) << 52;
    te = e - 1023 + 127;
    if (te >= 1) {
        uint64_t code = dtab_rne_shift(sig, 29) - (UINT64_C(1) << 23) + ((uint64_t)te << 23);
        if (code >= 0x7F800000u)
            code = 0x7F800000u;
        return sign | (uint32_t)code;
    } else {
        uint64_t s = 29u + (uint64_t)(1 - te);
        return sign | (s > 63 ? 0u : (uint32_t)dtab_rne_shift(sig, (unsigned)s));
    }
}

/* A small float with M mantissa bits and bias B (no special codes) to f32 bits. */
DTAB_FN uint32_t dtab_mini_to_f32(uint32_t sign, uint32_t e, uint32_t m, unsigned M, int B)
{
    if (e == 0) {
        int k = 0;
        if (!m)
            return sign;
        while (!(m & (1u << M))) {
            m <<= 1;
            k++;
        }
        return sign | ((uint32_t)(1 - B - k + 127) << 23) | ((m & ((1u << M) - 1)) << (23 - M));
    }
    return sign | ((uint32_t)((int)e - B + 127) << 23) | (m << (23 - M));
}

/* float8 code -> f32 bits, exact (t is one of the five float8 dtypes). */
DTAB_FN uint32_t dtab_f8_to_f32(int t, uint8_t c)
{
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    switch (t) {
    case DTA_F8_E4M3:
        if ((c & 0x7Fu) == 0x7Fu)
            return sign | 0x7FF00000u;
        return dtab_mini_to_f32(sign, (uint32_t)(c >> 3) & 0xFu, c & 7u, 3, 7);
    case DTA_F8_E5M2:
        return dtab_f16_to_f32((uint16_t)(c << 8));
    case DTA_F8_E4M3FNUZ:
        if (c == 0x80)
            return 0x7FC00000u;
        return dtab_mini_to_f32(sign, (uint32_t)(c >> 3) & 0xFu, c & 7u, 3, 8);
    case DTA_F8_E5M2FNUZ:
        if (c == 0x80)
            return 0x7FC00000u;
        return dtab_mini_to_f32(sign, (uint32_t)(c >> 2) & 0x1Fu, c & 3u, 2, 16);
    case DTA_F8_E8M0:
        if (c == 0xFF)
            return 0x7FC00000u;
        return c ? (uint32_t)c << 23 : 0x00400000u;
    default:
        return 0;
    }
}

/* A source code of an 8/16/32-bit float dtype (not F64) -> f32 bits, exact. */
DTAB_FN uint32_t dtab_decode(int from, uint32_t code)
{
    switch (from) {
    case DTA_F32:
        return code;
    case DTA_F16:
        return dtab_f16_to_f32((uint16_t)code);
    case DTA_BF16:
        return dtab_bf16_to_f32((uint16_t)code);
    default:
        return dtab_f8_to_f32(from, (uint8_t)code);
    }
}

/* f32 bits -> the target code (F32, F16, BF16) with the classification of convert_cpu.c's
 * kernels (enc_bf16_scalar, enc_f16_scalar, and the decoders' NaN/inf count for F32).
 * sat: DTA_OVERFLOW_SATURATE. */
DTAB_FN uint32_t dtab_encode(int to, uint32_t u, int sat, int *cls)
{
    uint32_t a = u & 0x7FFFFFFFu, r;
    if (a > 0x7F800000u) {
        *cls = DTAB_NAN;
        return to == DTA_F32 ? u : to == DTA_BF16 ? 0x7FC0u : dtab_f32_to_f16(u);
    }
    if (a == 0x7F800000u) {
        *cls = DTAB_INF;
        return to == DTA_F32 ? u : to == DTA_BF16 ? (u >> 16) : dtab_f32_to_f16(u);
    }
    *cls = DTAB_FINE;
    if (to == DTA_F32)
        return u; /* exact: a decoded float never overflows or underflows f32 */
    if (to == DTA_BF16) {
        r = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
        if ((r & 0x7FFFu) == 0x7F80u) {
            *cls = DTAB_OVF;
            if (sat)
                r = (r & 0x8000u) | 0x7F7Fu;
        } else if ((r & 0x7FFFu) == 0 && a) {
            *cls = DTAB_UNF;
        }
        return r;
    }
    r = dtab_f32_to_f16(u);
    if ((r & 0x7FFFu) == 0x7C00u) {
        *cls = DTAB_OVF;
        if (sat)
            r = (r & 0x8000u) | 0x7BFFu;
    } else if ((r & 0x7FFFu) == 0 && a) {
        *cls = DTAB_UNF;
    }
    return r;
}

/* F64 bits -> the target code: the double rounding f64 -> f32 -> target that torch does,
 * classified on the f64 source. */
DTAB_FN uint32_t dtab_convert_f64(int to, uint64_t d, int sat, int *cls)
{
    uint64_t a = d & UINT64_C(0x7FFFFFFFFFFFFFFF);
    uint32_t f = dtab_f64_to_f32(d), r, ra, rinf, rmax;
    if (to == DTA_F32) {
        r = f;
        ra = f & 0x7FFFFFFFu;
        rinf = 0x7F800000u;
        rmax = 0x7F7FFFFFu;
    } else if (to == DTA_BF16) {
        r = dtab_f32_to_bf16(f);
        ra = r & 0x7FFFu;
        rinf = 0x7F80u;
        rmax = 0x7F7Fu;
    } else {
        r = dtab_f32_to_f16(f);
        ra = r & 0x7FFFu;
        rinf = 0x7C00u;
        rmax = 0x7BFFu;
    }
    *cls = DTAB_FINE;
    if (a > UINT64_C(0x7FF0000000000000)) {
        *cls = DTAB_NAN;
    } else if (a == UINT64_C(0x7FF0000000000000)) {
        *cls = DTAB_INF;
    } else if (ra == rinf) {
        *cls = DTAB_OVF;
        if (sat)
            r = (r ^ ra) | rmax;
    } else if (ra == 0 && a) {
        *cls = DTAB_UNF;
    }
    return r;
}

/* One element: source code (raw little-endian bits, zero-extended) -> target code. */
DTAB_FN uint32_t dtab_convert(int from, int to, uint64_t code, int sat, int *cls)
{
    if (from == DTA_F64)
        return dtab_convert_f64(to, code, sat, cls);
    return dtab_encode(to, dtab_decode(from, (uint32_t)code), sat, cls);
}

/* ---- verification (convert_cpu.c dta_verify) ------------------------------------------ */

DTAB_FN double dtab_double_from_bits(uint64_t b)
{
#ifdef __CUDA_ARCH__
    return __longlong_as_double((long long)b);
#else
    double r;
    memcpy(&r, &b, 8);
    return r;
#endif
}

/* f32 bits -> double bits, exact and independent of FTZ/DAZ. */
DTAB_FN uint64_t dtab_f32_to_f64_bits(uint32_t u)
{
    uint64_t sign = (uint64_t)(u & 0x80000000u) << 32, m = u & 0x7FFFFFu;
    uint32_t e = (u >> 23) & 0xFFu;
    if (e == 0xFF)
        return sign | UINT64_C(0x7FF0000000000000) | (m << 29);
    if (e == 0 && m == 0)
        return sign;
    if (e == 0) {
        int k = 0;
        while (!(m & 0x800000u)) {
            m <<= 1;
            k++;
        }
        return sign | ((uint64_t)(1 - 127 - k + 1023) << 52) | ((m & 0x7FFFFFu) << 29);
    }
    return sign | ((uint64_t)(e - 127 + 1023) << 52) | (m << 29);
}

/* A code of a float dtype -> double bits (load_double of convert_cpu.c). */
DTAB_FN uint64_t dtab_load_double_bits(int t, uint64_t code)
{
    if (t == DTA_F64)
        return code;
    return dtab_f32_to_f64_bits(dtab_decode(t, (uint32_t)code));
}

/* 0 finite, 1 inf, 2 NaN. */
DTAB_FN int dtab_class64(uint64_t bits)
{
    bits &= UINT64_C(0x7FFFFFFFFFFFFFFF);
    return bits > UINT64_C(0x7FF0000000000000) ? 2 : bits == UINT64_C(0x7FF0000000000000);
}

/* One element of dta_verify for from != to (both float dtypes; to is F32, F16 or BF16):
 * src is the source code, got the code found in the converted buffer. Sets *mism (bytes
 * differ from the exact conversion, NaN matching any NaN), *added (finite source,
 * non-finite result), *abs_err and *rel_err (0 where dta_verify takes no error). */
DTAB_FN void dtab_verify(int from, int to, uint64_t src, uint32_t got, int sat, int *mism,
                         int *added, double *abs_err, double *rel_err)
{
    int cls, cs, cr;
    uint32_t want = dtab_convert(from, to, src, sat, &cls);
    uint64_t yb = dtab_load_double_bits(to, got), xb = dtab_load_double_bits(from, src);
    double x, y, e;
    cr = dtab_class64(yb);
    *mism = want != got && !(cr == 2 && dtab_class64(dtab_load_double_bits(to, want)) == 2);
    cs = dtab_class64(xb);
    *added = cs == 0 && cr != 0;
    *abs_err = 0;
    *rel_err = 0;
    if (cs == 0 && cr == 0) {
        x = dtab_double_from_bits(xb);
        y = dtab_double_from_bits(yb);
        e = fabs(y - x);
        *abs_err = e;
        if (x != 0)
            *rel_err = e / fabs(x);
    }
}

#endif
