/* Element conversion on the CPU (docs/formats.md 5): the reference kernels and the vector ones.
 *
 * Buffers are raw little-endian arrays at any alignment; every load and store goes through
 * memcpy (or an unaligned vector load/store). The host must be little-endian (checked
 * below at compile time: a big-endian port would byte-swap in ld16/ld32/ld64/st16/st32).
 *
 * Pipeline
 *   same dtype          memcpy; float sources are scanned for NaN/inf for the statistics.
 *   F64 -> F32/F16/BF16 element by element: f64 -> f32 with round-to-nearest-even on the
 *                       bits, then f32 -> target (the double rounding torch does).
 *   F32 -> F16/BF16     encoder (vector + scalar tail, or scalar).
 *   X   -> F32          exact decoder (F16/BF16 vector, float8 through a 256-entry table).
 *   X   -> F16/BF16     decode CHUNK elements exactly to f32 on the stack, then encode.
 *                       The decode is exact, so the encoder's statistics are the source's.
 * Every kernel classifies what it reads (NaN, inf, finite values that overflowed to inf or
 * underflowed to zero) in the same pass.
 *
 * Vector path: AVX2 + F16C functions compiled with __attribute__((target)) in this file
 * and chosen at run time with __builtin_cpu_supports. They give the same bytes as the
 * scalar path for every input: F16C's vcvtps2ph keeps NaN payloads, so NaN lanes are
 * rewritten to the scalar result (0x7E00 | sign). Neither F16C instruction depends on
 * MXCSR (the rounding mode is an immediate; FTZ/DAZ do not change any result here: a
 * float32 denormal becomes a signed zero in float16 either way).
 *
 * Global state: two atomics and nothing else. g_cpu caches the CPU probe (set once, on
 * first use; a race stores the same value twice) and g_force_scalar is the switch of
 * dta_convert_force_scalar (tests and benchmarks).
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "dtaudit/convert.h"
#include "convert_bits.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "convert_cpu.c assumes a little-endian host (checkpoint data is little-endian)"
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DTA_HAVE_X86_SIMD 1
#include <cpuid.h>
#include <immintrin.h>
#define DTA_SIMD_TARGET __attribute__((target("avx2,f16c,popcnt")))
#else
#define DTA_HAVE_X86_SIMD 0
#endif

/* Elements per stack chunk (decode-then-encode, verification). */
#define CHUNK 2048

/* ---- raw loads and stores ----------------------------------------------------------- */

static inline uint16_t ld16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t ld32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t ld64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void st16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

/* ---- scalar bit helpers (docs/formats.md 5) ---------------------------------------------- */

/* The element math lives in convert_bits.h, shared with the CUDA kernels: one copy of the
 * rounding rules for both paths. These are its public faces. */
uint16_t dta_f32_to_bf16_bits(uint32_t f) { return dtab_f32_to_bf16(f); }
uint16_t dta_f32_to_f16_bits(uint32_t f) { return dtab_f32_to_f16(f); }
uint32_t dta_bf16_to_f32_bits(uint16_t h) { return dtab_bf16_to_f32(h); }
uint32_t dta_f16_to_f32_bits(uint16_t h) { return dtab_f16_to_f32(h); }
uint32_t dta_f64_to_f32_bits(uint64_t d) { return dtab_f64_to_f32(d); }

/* float8 code -> f32 bits, exact. */
static uint32_t f8_to_f32_bits(dta_dtype t, uint8_t c) { return dtab_f8_to_f32((int)t, c); }

/* ---- dispatch ----------------------------------------------------------------------- */

static atomic_int g_cpu = -1; /* -1 unknown, 0 scalar only, 1 AVX2+F16C */
static atomic_bool g_force_scalar = false;

static bool cpu_has_simd(void)
{
#if DTA_HAVE_X86_SIMD
    int v = atomic_load_explicit(&g_cpu, memory_order_relaxed);
    if (v < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        /* F16C from CPUID.1:ECX[29] (clang 14's __builtin_cpu_supports lacks "f16c");
         * "avx2" from the builtin, which also checks that the OS saves YMM state. */
        bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
        __builtin_cpu_init();
        v = f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
        atomic_store_explicit(&g_cpu, v, memory_order_relaxed);
    }
    return v == 1;
#else
    return false;
#endif
}

static bool use_simd(void)
{
    return !atomic_load_explicit(&g_force_scalar, memory_order_relaxed) && cpu_has_simd();
}

void dta_convert_force_scalar(bool on) { atomic_store(&g_force_scalar, on); }

const char *dta_convert_backend(void) { return use_simd() ? "avx2+f16c" : "scalar"; }

/* ---- counters ----------------------------------------------------------------------- */

typedef struct {
    uint64_t nan, inf, ovf, unf;
} counts;

/* ---- scalar kernels ------------------------------------------------------------------ */

static void enc_bf16_scalar(const unsigned char *src, unsigned char *dst, size_t n, bool sat,
                            counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = ld32(src + 4 * i), a = u & 0x7FFFFFFFu;
        uint16_t r;
        if (a >= 0x7F800000u) {
            if (a > 0x7F800000u) {
                c->nan++;
                r = 0x7FC0;
            } else {
                c->inf++;
                r = (uint16_t)(u >> 16);
            }
        } else {
            r = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
            if ((r & 0x7FFFu) == 0x7F80u) {
                c->ovf++;
                if (sat)
                    r = (uint16_t)((r & 0x8000u) | 0x7F7Fu);
            } else if ((r & 0x7FFFu) == 0 && a) {
                c->unf++;
            }
        }
        st16(dst + 2 * i, r);
    }
}

static void enc_f16_scalar(const unsigned char *src, unsigned char *dst, size_t n, bool sat,
                           counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = ld32(src + 4 * i), a = u & 0x7FFFFFFFu;
        uint16_t r = dta_f32_to_f16_bits(u);
        if (a > 0x7F800000u) {
            c->nan++;
        } else if (a == 0x7F800000u) {
            c->inf++;
        } else if ((r & 0x7FFFu) == 0x7C00u) {
            c->ovf++;
            if (sat)
                r = (uint16_t)((r & 0x8000u) | 0x7BFFu);
        } else if ((r & 0x7FFFu) == 0 && a) {
            c->unf++;
        }
        st16(dst + 2 * i, r);
    }
}

static void dec_bf16_scalar(const unsigned char *src, unsigned char *dst, size_t n, counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = ld16(src + 2 * i);
        if (c && (h & 0x7F80u) == 0x7F80u) {
            if (h & 0x7Fu)
                c->nan++;
            else
                c->inf++;
        }
        st32(dst + 4 * i, dta_bf16_to_f32_bits(h));
    }
}

static void dec_f16_scalar(const unsigned char *src, unsigned char *dst, size_t n, counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = ld16(src + 2 * i);
        if (c && (h & 0x7C00u) == 0x7C00u) {
            if (h & 0x3FFu)
                c->nan++;
            else
                c->inf++;
        }
        st32(dst + 4 * i, dta_f16_to_f32_bits(h));
    }
}

static void dec_f8(const uint32_t tbl[256], const unsigned char *src, unsigned char *dst,
                   size_t n, counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = tbl[src[i]];
        if (c && (u & 0x7F800000u) == 0x7F800000u) {
            if (u & 0x7FFFFFu)
                c->nan++;
            else
                c->inf++;
        }
        st32(dst + 4 * i, u);
    }
}

/* ---- AVX2 + F16C kernels ------------------------------------------------------------- */
#if DTA_HAVE_X86_SIMD

DTA_SIMD_TARGET static inline uint64_t pop32(__m256i m)
{
    return (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(m)));
}
/* Lanes set in a mask of 16-bit lanes (two bits each in movemask_epi8). */
DTA_SIMD_TARGET static inline uint64_t pop16x8(__m128i m)
{
    return (uint64_t)__builtin_popcount((unsigned)_mm_movemask_epi8(m)) / 2;
}
DTA_SIMD_TARGET static inline uint64_t pop16x16(__m256i m)
{
    return (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(m)) / 2;
}

/* Lanes whose magnitude a may need counting or fixing: a > hi (overflow, inf, NaN) or
 * 0 < a <= lo (underflow to zero). Everything else rounds to a finite nonzero value. */
DTA_SIMD_TARGET static inline bool rare8(__m256i a, int hi, int lo)
{
    __m256i big = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(hi));
    __m256i tiny = _mm256_andnot_si256(_mm256_cmpeq_epi32(a, _mm256_setzero_si256()),
                                       _mm256_cmpgt_epi32(_mm256_set1_epi32(lo + 1), a));
    __m256i any = _mm256_or_si256(big, tiny);
    return !_mm256_testz_si256(any, any);
}

/* 8 floats -> 8 bf16 in the low halves of 32-bit lanes. */
DTA_SIMD_TARGET static inline __m256i bf16_round8(__m256i u, bool sat, counts *c)
{
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), infb = _mm256_set1_epi32(0x7F800000);
    const __m256i bias = _mm256_set1_epi32(0x7FFF);
    __m256i a = _mm256_and_si256(u, absm);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    /* overflow from 0x7F7F8000 up; underflow for 0 < a <= 0x8000 (exhaustively checked) */
    if (rare8(a, 0x7F7F7FFF, 0x8000)) {
        const __m256i zero = _mm256_setzero_si256();
        __m256i ra = _mm256_and_si256(r, bias);
        __m256i isnan = _mm256_cmpgt_epi32(a, infb);
        __m256i isinf = _mm256_cmpeq_epi32(a, infb);
        __m256i spec = _mm256_or_si256(isnan, isinf);
        __m256i ovf = _mm256_andnot_si256(spec, _mm256_cmpeq_epi32(ra, _mm256_set1_epi32(0x7F80)));
        __m256i unf = _mm256_andnot_si256(_mm256_or_si256(spec, _mm256_cmpeq_epi32(a, zero)),
                                          _mm256_cmpeq_epi32(ra, zero));
        c->nan += pop32(isnan);
        c->inf += pop32(isinf);
        c->ovf += pop32(ovf);
        c->unf += pop32(unf);
        r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), isnan);
        if (sat) {
            __m256i m = _mm256_or_si256(_mm256_and_si256(r, _mm256_set1_epi32(0x8000)),
                                        _mm256_set1_epi32(0x7F7F));
            r = _mm256_blendv_epi8(r, m, ovf);
        }
    }
    return r;
}

DTA_SIMD_TARGET static size_t enc_bf16_avx2(const unsigned char *src, unsigned char *dst,
                                            size_t n, bool sat, counts *c)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i u0 = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i));
        __m256i u1 = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i + 32));
        __m256i r0 = bf16_round8(u0, sat, c), r1 = bf16_round8(u1, sat, c);
        /* packus interleaves 128-bit halves: r0.lo r1.lo r0.hi r1.hi -> reorder */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i), p);
    }
    return i;
}

/* 8 floats -> 8 halves. */
DTA_SIMD_TARGET static inline __m128i f16_round8(__m256i u, bool sat, counts *c)
{
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), infb = _mm256_set1_epi32(0x7F800000);
    __m128i h = _mm256_cvtps_ph(_mm256_castsi256_ps(u), _MM_FROUND_TO_NEAREST_INT);
    __m256i a = _mm256_and_si256(u, absm);
    /* overflow from 65520 (0x477FF000) up; underflow for 0 < a <= 2^-25 (0x33000000) */
    if (rare8(a, 0x477FEFFF, 0x33000000)) {
        __m256i nan32 = _mm256_cmpgt_epi32(a, infb);
        __m256i inf32 = _mm256_cmpeq_epi32(a, infb);
        __m256i zero32 = _mm256_cmpeq_epi32(a, _mm256_setzero_si256());
        __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan32),
                                        _mm256_extracti128_si256(nan32, 1));
        __m128i inf16 = _mm_packs_epi32(_mm256_castsi256_si128(inf32),
                                        _mm256_extracti128_si256(inf32, 1));
        __m128i zero16 = _mm_packs_epi32(_mm256_castsi256_si128(zero32),
                                         _mm256_extracti128_si256(zero32, 1));
        __m128i ha = _mm_and_si128(h, _mm_set1_epi16(0x7FFF));
        __m128i spec = _mm_or_si128(nan16, inf16);
        __m128i ovf = _mm_andnot_si128(spec, _mm_cmpeq_epi16(ha, _mm_set1_epi16(0x7C00)));
        __m128i unf = _mm_andnot_si128(_mm_or_si128(spec, zero16),
                                       _mm_cmpeq_epi16(ha, _mm_setzero_si128()));
        c->nan += pop16x8(nan16);
        c->inf += pop16x8(inf16);
        c->ovf += pop16x8(ovf);
        c->unf += pop16x8(unf);
        if (!_mm_testz_si128(nan16, nan16)) {
            /* F16C keeps payloads; the scalar result is 0x7E00 | sign of the input */
            __m256i s32 = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000));
            __m128i s16 = _mm_packus_epi32(_mm256_castsi256_si128(s32),
                                           _mm256_extracti128_si256(s32, 1));
            h = _mm_blendv_epi8(h, _mm_or_si128(s16, _mm_set1_epi16(0x7E00)), nan16);
        }
        if (sat) {
            __m128i sign = _mm_and_si128(h, _mm_set1_epi16((short)0x8000));
            h = _mm_blendv_epi8(h, _mm_or_si128(sign, _mm_set1_epi16(0x7BFF)), ovf);
        }
    }
    return h;
}

DTA_SIMD_TARGET static size_t enc_f16_avx2(const unsigned char *src, unsigned char *dst,
                                           size_t n, bool sat, counts *c)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i u0 = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i));
        __m256i u1 = _mm256_loadu_si256((const __m256i *)(const void *)(src + 4 * i + 32));
        __m128i h0 = f16_round8(u0, sat, c), h1 = f16_round8(u1, sat, c);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 2 * i), _mm256_set_m128i(h1, h0));
    }
    return i;
}

/* Counts NaN and inf among 16 halves (exponent mask em, e.g. 0x7C00 or 0x7F80). */
DTA_SIMD_TARGET static inline void count16(__m256i h, short em, counts *c)
{
    __m256i ha = _mm256_and_si256(h, _mm256_set1_epi16(0x7FFF));
    __m256i e = _mm256_set1_epi16(em);
    __m256i nan = _mm256_cmpgt_epi16(ha, e), inf = _mm256_cmpeq_epi16(ha, e);
    __m256i any = _mm256_or_si256(nan, inf);
    if (!_mm256_testz_si256(any, any)) {
        c->nan += pop16x16(nan);
        c->inf += pop16x16(inf);
    }
}

DTA_SIMD_TARGET static size_t dec_bf16_avx2(const unsigned char *src, unsigned char *dst,
                                            size_t n, counts *c)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * i));
        __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16);
        __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 4 * i), lo);
        _mm256_storeu_si256((__m256i *)(void *)(dst + 4 * i + 32), hi);
        if (c)
            count16(h, 0x7F80, c);
    }
    return i;
}

DTA_SIMD_TARGET static size_t dec_f16_avx2(const unsigned char *src, unsigned char *dst,
                                           size_t n, counts *c)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * i));
        __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        _mm256_storeu_ps((float *)(void *)(dst + 4 * i), lo);
        _mm256_storeu_ps((float *)(void *)(dst + 4 * i + 32), hi);
        if (c)
            count16(h, 0x7C00, c);
    }
    return i;
}
#endif /* DTA_HAVE_X86_SIMD */

/* ---- kernel front-ends: vector body, scalar tail -------------------------------------- */

static void enc_f32(dta_dtype to, const unsigned char *src, unsigned char *dst, size_t n,
                    bool sat, bool simd, counts *c)
{
    size_t i = 0;
#if DTA_HAVE_X86_SIMD
    if (simd)
        i = to == DTA_BF16 ? enc_bf16_avx2(src, dst, n, sat, c) : enc_f16_avx2(src, dst, n, sat, c);
#else
    (void)simd;
#endif
    if (to == DTA_BF16)
        enc_bf16_scalar(src + 4 * i, dst + 2 * i, n - i, sat, c);
    else
        enc_f16_scalar(src + 4 * i, dst + 2 * i, n - i, sat, c);
}

/* from F16/BF16/F8 to f32 bits; tbl is the float8 table (NULL otherwise). */
static void dec_to_f32(dta_dtype from, const uint32_t *tbl, const unsigned char *src,
                       unsigned char *dst, size_t n, bool simd, counts *c)
{
    size_t i = 0;
    if (tbl) {
        dec_f8(tbl, src, dst, n, c);
        return;
    }
#if DTA_HAVE_X86_SIMD
    if (simd)
        i = from == DTA_BF16 ? dec_bf16_avx2(src, dst, n, c) : dec_f16_avx2(src, dst, n, c);
#else
    (void)simd;
#endif
    if (from == DTA_BF16)
        dec_bf16_scalar(src + 2 * i, dst + 4 * i, n - i, c);
    else
        dec_f16_scalar(src + 2 * i, dst + 4 * i, n - i, c);
}

static void conv_f64(dta_dtype to, const unsigned char *src, unsigned char *dst, size_t n,
                     bool sat, counts *c)
{
    for (size_t i = 0; i < n; i++) {
        int cls;
        uint32_t r = dtab_convert_f64((int)to, ld64(src + 8 * i), sat, &cls);
        c->nan += cls == DTAB_NAN;
        c->inf += cls == DTAB_INF;
        c->ovf += cls == DTAB_OVF;
        c->unf += cls == DTAB_UNF;
        if (to == DTA_F32)
            st32(dst + 4 * i, r);
        else
            st16(dst + 2 * i, (uint16_t)r);
    }
}

/* NaN/inf scan for a same-dtype copy. */
static void scan_float(dta_dtype t, const unsigned char *p, size_t n, counts *c)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t a, inf;
        switch (t) {
        case DTA_F64:
            a = ld64(p + 8 * i) & UINT64_C(0x7FFFFFFFFFFFFFFF);
            inf = UINT64_C(0x7FF0000000000000);
            break;
        case DTA_F32:
            a = ld32(p + 4 * i) & 0x7FFFFFFFu;
            inf = 0x7F800000u;
            break;
        case DTA_BF16:
            a = ld16(p + 2 * i) & 0x7FFFu;
            inf = 0x7F80u;
            break;
        case DTA_F16:
            a = ld16(p + 2 * i) & 0x7FFFu;
            inf = 0x7C00u;
            break;
        default:
            a = f8_to_f32_bits(t, p[i]) & 0x7FFFFFFFu;
            inf = 0x7F800000u;
            break;
        }
        if (a > inf)
            c->nan++;
        else if (a == inf)
            c->inf++;
    }
}

/* ---- public entry points ------------------------------------------------------------- */

static bool is_source(dta_dtype t)
{
    switch (t) {
    case DTA_F64: case DTA_F32: case DTA_F16: case DTA_BF16: case DTA_F8_E4M3:
    case DTA_F8_E5M2: case DTA_F8_E4M3FNUZ: case DTA_F8_E5M2FNUZ: case DTA_F8_E8M0:
        return true;
    default:
        return false;
    }
}

static bool is_target(dta_dtype t) { return t == DTA_F32 || t == DTA_F16 || t == DTA_BF16; }

bool dta_convert_supported(dta_dtype from, dta_dtype to)
{
    if (!dta_dtype_get(from) || !dta_dtype_get(to))
        return false;
    return from == to || (is_source(from) && is_target(to));
}

static size_t elsize(dta_dtype t) { return dta_dtype_elem_size(t); } /* 0 for F4, F6 */

static bool overlaps(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}

static dta_status check_args(dta_dtype from, dta_dtype to, const void *src, const void *dst,
                             size_t n, dta_overflow_mode mode, uint64_t *nin, uint64_t *nout,
                             dta_error *err)
{
    if (!dta_convert_supported(from, to))
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "conversion %s -> %s is not supported",
                             dta_dtype_name(from), dta_dtype_name(to));
    if (mode != DTA_OVERFLOW_ERROR && mode != DTA_OVERFLOW_INF && mode != DTA_OVERFLOW_SATURATE)
        return dta_error_set(err, DTA_E_ARG, 0, "unknown overflow mode %d", (int)mode);
    if (!dta_dtype_nbytes(from, n, nin) || !dta_dtype_nbytes(to, n, nout) || *nin > SIZE_MAX ||
        *nout > SIZE_MAX)
        return dta_error_set(err, DTA_E_ARG, 0, "%zu elements of %s are not a whole byte count",
                             n, dta_dtype_name(from));
    if (n && (!src || !dst))
        return dta_error_set(err, DTA_E_ARG, 0, "conversion of %zu elements with a NULL buffer",
                             n);
    return DTA_OK;
}

dta_status dta_convert(dta_dtype from, dta_dtype to, const void *src, void *dst, size_t n,
                       dta_overflow_mode mode, dta_convert_stats *stats, dta_error *err)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    uint64_t nin, nout;
    counts c = {0, 0, 0, 0};
    bool sat = mode == DTA_OVERFLOW_SATURATE, simd;
    dta_status st = check_args(from, to, src, dst, n, mode, &nin, &nout, err);
    if (st != DTA_OK)
        return st;
    if (overlaps(src, (size_t)nin, dst, (size_t)nout))
        return dta_error_set(err, DTA_E_ARG, 0, "conversion %s -> %s: buffers overlap",
                             dta_dtype_name(from), dta_dtype_name(to));
    simd = use_simd();
    if (n == 0) {
        /* nothing */
    } else if (from == to) {
        memcpy(d, s, (size_t)nin);
        if (is_source(from))
            scan_float(from, s, n, &c);
    } else if (from == DTA_F64) {
        conv_f64(to, s, d, n, sat, &c);
    } else if (from == DTA_F32) {
        enc_f32(to, s, d, n, sat, simd, &c);
    } else {
        uint32_t tbl[256];
        const uint32_t *t = NULL;
        if (from != DTA_F16 && from != DTA_BF16) {
            for (unsigned k = 0; k < 256; k++)
                tbl[k] = f8_to_f32_bits(from, (uint8_t)k);
            t = tbl;
        }
        if (to == DTA_F32) {
            dec_to_f32(from, t, s, d, n, simd, &c);
        } else {
            unsigned char tmp[CHUNK * 4];
            size_t isz = elsize(from);
            for (size_t off = 0; off < n; off += CHUNK) {
                size_t m = n - off < CHUNK ? n - off : CHUNK;
                dec_to_f32(from, t, s + off * isz, tmp, m, simd, NULL);
                enc_f32(to, tmp, d + off * 2, m, sat, simd, &c);
            }
        }
    }
    if (stats) {
        stats->elements += n;
        stats->overflow += c.ovf;
        stats->nan += c.nan;
        stats->inf += c.inf;
        stats->underflow += c.unf;
    }
    return DTA_OK;
}

/* ---- verification -------------------------------------------------------------------- */

/* f32 bits -> double, exact and independent of FTZ/DAZ. */
static double f32_bits_to_double(uint32_t u)
{
    uint64_t sign = (uint64_t)(u & 0x80000000u) << 32, m = u & 0x7FFFFFu, bits;
    uint32_t e = (u >> 23) & 0xFFu;
    double r;
    if (e == 0xFF)
        bits = sign | UINT64_C(0x7FF0000000000000) | (m << 29);
    else if (e == 0 && m == 0)
        bits = sign;
    else if (e == 0) {
        int k = 0;
        while (!(m & 0x800000u)) {
            m <<= 1;
            k++;
        }
        bits = sign | ((uint64_t)(1 - 127 - k + 1023) << 52) | ((m & 0x7FFFFFu) << 29);
    } else
        bits = sign | ((uint64_t)(e - 127 + 1023) << 52) | (m << 29);
    memcpy(&r, &bits, 8);
    return r;
}

/* Element i of a float buffer as a double; *cls = 0 finite, 1 inf, 2 NaN. */
static double load_double(dta_dtype t, const unsigned char *p, int *cls)
{
    uint64_t bits;
    double r;
    switch (t) {
    case DTA_F64:
        bits = ld64(p);
        memcpy(&r, &bits, 8);
        break;
    case DTA_F32:
        r = f32_bits_to_double(ld32(p));
        break;
    case DTA_F16:
        r = f32_bits_to_double(dta_f16_to_f32_bits(ld16(p)));
        break;
    case DTA_BF16:
        r = f32_bits_to_double(dta_bf16_to_f32_bits(ld16(p)));
        break;
    default:
        r = f32_bits_to_double(f8_to_f32_bits(t, p[0]));
        break;
    }
    memcpy(&bits, &r, 8);
    bits &= UINT64_C(0x7FFFFFFFFFFFFFFF);
    *cls = bits > UINT64_C(0x7FF0000000000000) ? 2 : bits == UINT64_C(0x7FF0000000000000);
    return r;
}

dta_status dta_verify(dta_dtype from, dta_dtype to, const void *src, const void *conv, size_t n,
                      dta_overflow_mode mode, dta_verify_stats *stats, dta_error *err)
{
    const unsigned char *s = src, *v = conv;
    unsigned char buf[CHUNK * 8];
    uint64_t nin, nout, base, mism = 0, first = 0, added = 0;
    double maxabs = 0, maxrel = 0;
    bool floats = is_source(from) && is_source(to);
    size_t isz, osz, chunk;
    dta_status st = check_args(from, to, src, conv, n, mode, &nin, &nout, err);
    if (st != DTA_OK)
        return st;
    base = stats ? stats->elements : 0;
    if (!elsize(from) || !elsize(to)) {
        /* sub-byte and block types (F4, F6): only a copy is possible; compare bytes, and
         * report the first value of the first block that differs */
        unsigned be = 1, bb = 1;
        dta_dtype_block(to, &be, &bb);
        for (uint64_t j = 0; j < nout; j++)
            if (s[j] != v[j] && mism++ == 0)
                first = j / bb * be;
        goto done;
    }
    isz = elsize(from);
    osz = elsize(to);
    chunk = sizeof buf / osz;
    for (size_t off = 0; off < n; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        st = dta_convert(from, to, s + off * isz, buf, m, mode, NULL, err);
        if (st != DTA_OK)
            return st;
        for (size_t j = 0; j < m; j++) {
            const unsigned char *pe = buf + j * osz, *pv = v + (off + j) * osz;
            int cs, cr, ce;
            double x, y;
            if (!floats) {
                if (memcmp(pe, pv, osz) && mism++ == 0)
                    first = off + j;
                continue;
            }
            y = load_double(to, pv, &cr);
            if (memcmp(pe, pv, osz)) {
                (void)load_double(to, pe, &ce);
                if (!(ce == 2 && cr == 2) && mism++ == 0)
                    first = off + j;
            }
            x = load_double(from, s + (off + j) * isz, &cs);
            if (cs == 0 && cr != 0)
                added++;
            if (cs == 0 && cr == 0) {
                double e = fabs(y - x);
                if (e > maxabs)
                    maxabs = e;
                if (x != 0 && e / fabs(x) > maxrel)
                    maxrel = e / fabs(x);
            }
        }
    }
done:
    if (stats) {
        if (mism && stats->mismatches == 0)
            stats->first_mismatch = base + first; /* index over all calls on this stats */
        stats->elements += n;
        stats->mismatches += mism;
        stats->nonfinite_added += added;
        if (maxabs > stats->max_abs_err)
            stats->max_abs_err = maxabs;
        if (maxrel > stats->max_rel_err)
            stats->max_rel_err = maxrel;
    }
    return DTA_OK;
}
