/* Value-statistics kernels of audit --values (include/dtaudit/values.h).
 *
 * Conversion to F32, F16 or BF16 is monotone in |x| (an exact decode followed by round to
 * nearest even, twice for f64 as torch does), so what convert does with a finite value
 * depends only on where its magnitude bits |x| fall between three thresholds:
 *
 *     0 | [1, unf_hi) underflow to +-0 | [unf_hi, sub_hi) subnormal | normal |
 *       [ovf_lo, inf) overflow to +-inf | inf | NaN above
 *
 * dta_values_plan_make finds the thresholds by binary search over dtab_convert, the
 * conversion's own bit math (convert_bits.h), so the counts equal dta_convert's by
 * construction; the tests also compare every kernel with dta_values_count_reference
 * element by element (all 2^16 codes of the 16-bit types, boundary and random 32/64-bit
 * values). 8-bit sources use a 256-entry class table built the same way.
 *
 * Kernels: a portable scalar loop and AVX2 versions (16, 8 or 4 lanes of integer compares
 * on the magnitude bits, counts accumulated in vector lanes), chosen at run time with
 * __builtin_cpu_supports like convert_cpu.c; dta_values_force_scalar switches to the
 * scalar loop for tests and benchmarks. Both give identical counts. */
#include <stdatomic.h>
#include <string.h>

#include "convert_bits.h"
#include "dtaudit/values.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "values_scan.c assumes a little-endian host (checkpoint data is little-endian)"
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define VS_HAVE_AVX2 1
#include <immintrin.h>
#define VS_TARGET __attribute__((target("avx2")))
#else
#define VS_HAVE_AVX2 0
#endif

/* classes of the 8-bit table and of the reference */
enum { K_NORMAL = 0, K_NAN, K_PINF, K_NINF, K_ZERO, K_OVF, K_UNF, K_SUB };

/* ---- dispatch ------------------------------------------------------------------------- */

static atomic_int g_cpu = -1;
static atomic_bool g_force_scalar = false;

static bool cpu_avx2(void)
{
#if VS_HAVE_AVX2
    int v = atomic_load_explicit(&g_cpu, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&g_cpu, v, memory_order_relaxed);
    }
    return v == 1;
#else
    return false;
#endif
}

static bool use_avx2(void)
{
    return !atomic_load_explicit(&g_force_scalar, memory_order_relaxed) && cpu_avx2();
}

void dta_values_force_scalar(bool on) { atomic_store(&g_force_scalar, on); }

const char *dta_values_backend(void) { return use_avx2() ? "avx2" : "scalar"; }

/* ---- formats -------------------------------------------------------------------------- */

static unsigned width_of(dta_dtype t)
{
    return (unsigned)dta_dtype_elem_size(t); /* 0 for sub-byte types, which are not scanned */
}

/* |x| bits of inf, and mantissa bits, of the 16/32/64-bit IEEE-like dtypes. */
static bool ieee(dta_dtype t, uint64_t *inf, unsigned *mant)
{
    switch (t) {
    case DTA_F16: *inf = 0x7C00; *mant = 10; return true;
    case DTA_BF16: *inf = 0x7F80; *mant = 7; return true;
    case DTA_F32: *inf = 0x7F800000u; *mant = 23; return true;
    case DTA_F64: *inf = UINT64_C(0x7FF0000000000000); *mant = 52; return true;
    default: return false;
    }
}

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

static uint64_t load(const unsigned char *p, unsigned w)
{
    uint64_t v = 0;
    memcpy(&v, p, w);
    return v;
}

/* An 8-bit code in its own format: K_NAN, K_PINF/K_NINF, K_ZERO, K_SUB or K_NORMAL. */
static int own_class8(dta_dtype t, unsigned c)
{
    uint32_t f = dtab_f8_to_f32((int)t, (uint8_t)c), a = f & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return K_NAN;
    if (a == 0x7F800000u)
        return f >> 31 ? K_NINF : K_PINF;
    if (a == 0)
        return K_ZERO;
    switch (t) {
    case DTA_F8_E4M3: case DTA_F8_E4M3FNUZ:
        return (c & 0x78u) == 0 ? K_SUB : K_NORMAL;
    case DTA_F8_E5M2: case DTA_F8_E5M2FNUZ:
        return (c & 0x7Cu) == 0 ? K_SUB : K_NORMAL;
    default:
        return K_NORMAL; /* e8m0: powers of two, no subnormals */
    }
}

/* The class of one element (raw code) as convert sees it: the reference. */
static int ref_class(dta_dtype from, dta_dtype to, uint64_t code)
{
    if (width_of(from) == 1 && from == to)
        return own_class8(from, (unsigned)code);
    uint64_t inf = 0;
    unsigned mant = 0, w = width_of(from);
    if (from == to && ieee(from, &inf, &mant)) {
        uint64_t sign = UINT64_C(1) << (8 * w - 1), a = code & (sign - 1);
        if (a > inf)
            return K_NAN;
        if (a == inf)
            return code & sign ? K_NINF : K_PINF;
        if (a == 0)
            return K_ZERO;
        return a < (UINT64_C(1) << mant) ? K_SUB : K_NORMAL;
    }
    /* source NaN / inf / zero */
    bool neg, zero;
    if (from == DTA_F64) {
        uint64_t a = code & UINT64_C(0x7FFFFFFFFFFFFFFF);
        neg = code >> 63;
        zero = a == 0;
    } else {
        uint32_t f = dtab_decode((int)from, (uint32_t)code);
        neg = f >> 31;
        zero = (f & 0x7FFFFFFFu) == 0;
    }
    int cls;
    uint32_t r = dtab_convert((int)from, (int)to, code, 0, &cls);
    if (cls == DTAB_NAN)
        return K_NAN;
    if (cls == DTAB_INF)
        return neg ? K_NINF : K_PINF;
    if (cls == DTAB_OVF)
        return K_OVF;
    if (cls == DTAB_UNF)
        return K_UNF;
    if (zero)
        return K_ZERO;
    ieee(to, &inf, &mant);
    uint64_t ra = r & (inf | (inf - 1)); /* clear the sign: inf | (inf-1) covers |x| bits */
    return ra < (UINT64_C(1) << mant) ? K_SUB : K_NORMAL;
}

/* |x| as f32 bits for an 8-bit code (its order is the order of magnitudes). */
static uint64_t abs8(dta_dtype t, unsigned c)
{
    return dtab_f8_to_f32((int)t, (uint8_t)c) & 0x7FFFFFFFu;
}

/* First |x| in [1, inf) whose class rank is >= k (inf when none); rank: 0 zero/underflow,
 * 1 subnormal, 2 normal, 3 overflow. Ranks never decrease with |x|. */
static int rank_of(dta_dtype from, dta_dtype to, uint64_t a)
{
    switch (ref_class(from, to, a)) {
    case K_UNF: case K_ZERO: return 0;
    case K_SUB: return 1;
    case K_OVF: return 3;
    default: return 2;
    }
}

static uint64_t first_rank(dta_dtype from, dta_dtype to, uint64_t inf, int k)
{
    uint64_t lo = 1, hi = inf; /* answer in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rank_of(from, to, mid) >= k)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

bool dta_values_plan_make(dta_dtype from, dta_dtype to, dta_values_plan *p)
{
    memset(p, 0, sizeof *p);
    if (!is_source(from) || (to != from && to != DTA_F32 && to != DTA_F16 && to != DTA_BF16))
        return false;
    p->from = from;
    p->to = to;
    p->width = width_of(from);
    if (p->width == 1) {
        for (unsigned c = 0; c < 256; c++)
            p->lut[c] = (unsigned char)ref_class(from, to, c);
        return true;
    }
    unsigned mant;
    ieee(from, &p->inf, &mant);
    p->unf_hi = first_rank(from, to, p->inf, 1);
    p->sub_hi = first_rank(from, to, p->inf, 2);
    p->ovf_lo = first_rank(from, to, p->inf, 3);
    return true;
}

void dta_values_counts_init(dta_values_counts *c)
{
    memset(c, 0, sizeof *c);
    c->min_abs_bits = UINT64_MAX;
}

double dta_values_abs_to_double(dta_dtype from, uint64_t a)
{
    uint64_t d;
    double r;
    switch (from) {
    case DTA_F64: d = a; break;
    case DTA_F32: d = dtab_f32_to_f64_bits((uint32_t)a); break;
    case DTA_F16: case DTA_BF16:
        d = dtab_f32_to_f64_bits(dtab_decode((int)from, (uint32_t)a)); break;
    default: d = dtab_f32_to_f64_bits((uint32_t)a); break; /* 8-bit: f32 bits */
    }
    memcpy(&r, &d, sizeof r);
    return r;
}

static void tally(dta_values_counts *c, int k, uint64_t a)
{
    switch (k) {
    case K_NAN: c->nan++; return;
    case K_PINF: c->pos_inf++; return;
    case K_NINF: c->neg_inf++; return;
    case K_ZERO: c->zero++; return;
    case K_OVF: c->overflow++; break;
    case K_UNF: c->underflow++; break;
    case K_SUB: c->subnormal++; break;
    default: break;
    }
    if (a > c->max_abs_bits)
        c->max_abs_bits = a;
    if (a < c->min_abs_bits)
        c->min_abs_bits = a;
}

void dta_values_count_reference(const dta_values_plan *p, const void *src, size_t n,
                                dta_values_counts *c)
{
    const unsigned char *s = src;
    unsigned w = p->width;
    uint64_t mask = w == 8 ? UINT64_C(0x7FFFFFFFFFFFFFFF) : (UINT64_C(1) << (8 * w - 1)) - 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t code = load(s + i * w, w);
        uint64_t a = w == 1 ? abs8(p->from, (unsigned)code) : code & mask;
        tally(c, ref_class(p->from, p->to, code), a);
    }
}

/* ---- scalar kernels --------------------------------------------------------------------- */

static void scalar8(const dta_values_plan *p, const unsigned char *s, size_t n,
                    dta_values_counts *c)
{
    for (size_t i = 0; i < n; i++)
        tally(c, p->lut[s[i]], abs8(p->from, s[i]));
}

/* The portable kernels: blocks of SBLOCK elements, first the min and max of |x| (a
 * branch-free loop the compiler vectorises with what the baseline ISA has); a block whose
 * values are all in the normal range [sub_hi, ovf_lo) adds only its min and max, any
 * other block is classified element by element. */
#define SBLOCK 256
#define SCALAR_KERNEL(NAME, T, W)                                                            \
    static void NAME(const dta_values_plan *p, const unsigned char *s, size_t n,             \
                     dta_values_counts *c)                                                   \
    {                                                                                        \
        const T sign = (T)((T)1 << (8 * W - 1)), inf = (T)p->inf, ovf = (T)p->ovf_lo,        \
                unf = (T)p->unf_hi, sub = (T)p->sub_hi;                                      \
        uint64_t nan = 0, pinf = 0, ninf = 0, zero = 0, no = 0, nu = 0, ns = 0;              \
        T mx = 0, mn = (T)~(T)0;                                                             \
        for (size_t b0 = 0; b0 < n; b0 += SBLOCK) {                                          \
            size_t b1 = n - b0 < SBLOCK ? n : b0 + SBLOCK;                                   \
            T bmx = 0, bmn = (T)~(T)0;                                                       \
            for (size_t i = b0; i < b1; i++) {                                               \
                T v;                                                                         \
                memcpy(&v, s + i * W, W);                                                    \
                T a = (T)(v & (T)(sign - 1));                                                \
                bmx = a > bmx ? a : bmx;                                                     \
                bmn = a < bmn ? a : bmn;                                                     \
            }                                                                                \
            if (bmn >= sub && bmx < ovf) {                                                   \
                mx = bmx > mx ? bmx : mx;                                                    \
                mn = bmn < mn ? bmn : mn;                                                    \
                continue;                                                                    \
            }                                                                                \
            for (size_t i = b0; i < b1; i++) {                                               \
                T v;                                                                         \
                memcpy(&v, s + i * W, W);                                                    \
                T a = (T)(v & (T)(sign - 1));                                                \
                if (a >= inf) {                                                              \
                    nan += a > inf;                                                          \
                    pinf += a == inf && !(v & sign);                                         \
                    ninf += a == inf && (v & sign);                                          \
                    continue;                                                                \
                }                                                                            \
                if (a == 0) {                                                                \
                    zero++;                                                                  \
                    continue;                                                                \
                }                                                                            \
                no += a >= ovf;                                                              \
                nu += a < unf;                                                               \
                ns += a >= unf && a < sub;                                                   \
                mx = a > mx ? a : mx;                                                        \
                mn = a < mn ? a : mn;                                                        \
            }                                                                                \
        }                                                                                    \
        c->nan += nan;                                                                       \
        c->pos_inf += pinf;                                                                  \
        c->neg_inf += ninf;                                                                  \
        c->zero += zero;                                                                     \
        c->overflow += no;                                                                   \
        c->underflow += nu;                                                                  \
        c->subnormal += ns;                                                                  \
        if (mx > c->max_abs_bits)                                                            \
            c->max_abs_bits = mx;                                                            \
        if (mn != (T)~(T)0 && mn < c->min_abs_bits)                                          \
            c->min_abs_bits = mn;                                                            \
    }

SCALAR_KERNEL(scalar16, uint16_t, 2)
SCALAR_KERNEL(scalar32, uint32_t, 4)
SCALAR_KERNEL(scalar64, uint64_t, 8)

/* ---- AVX2 kernels ------------------------------------------------------------------------ */

#if VS_HAVE_AVX2
/* Sum of the 16-bit lanes (each < 2^15) into 64 bits. */
VS_TARGET static uint64_t hsum16(__m256i v)
{
    __m256i s = _mm256_madd_epi16(v, _mm256_set1_epi16(1)); /* 8 x 32-bit */
    __m256i lo = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(s));
    __m256i hi = _mm256_cvtepu32_epi64(_mm256_extracti128_si256(s, 1));
    __m256i t = _mm256_add_epi64(lo, hi);
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, t);
    return o[0] + o[1] + o[2] + o[3];
}

/* Sum of the 32-bit lanes into 64 bits. */
VS_TARGET static uint64_t hsum32(__m256i v)
{
    __m256i lo = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(v));
    __m256i hi = _mm256_cvtepu32_epi64(_mm256_extracti128_si256(v, 1));
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, _mm256_add_epi64(lo, hi));
    return o[0] + o[1] + o[2] + o[3];
}

VS_TARGET static uint64_t hsum64(__m256i v)
{
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, v);
    return o[0] + o[1] + o[2] + o[3];
}

/* The AVX2 kernels work in blocks of VBLOCK vectors. A first pass takes only the min and
 * max of |x| over the block: when every |x| is in the normal range [sub_hi, ovf_lo) (no
 * zero, subnormal, underflow, overflow, inf or NaN: the common case for weights) the block
 * adds nothing but its min and max. Otherwise a second pass over the same block (in L1)
 * classifies each element into lane counters, which are flushed to 64 bits before they
 * can wrap. */
#define VBLOCK 32

/* 16-bit sources: 16 lanes. |x| < 2^15, so signed compares are exact; 16-bit lane counters
 * are flushed every 16384 vectors at most (a lane counts at most one per vector). */
VS_TARGET static void avx2_16(const dta_values_plan *p, const unsigned char *s, size_t n,
                              dta_values_counts *c)
{
    const __m256i absm = _mm256_set1_epi16(0x7FFF), inf = _mm256_set1_epi16((short)p->inf),
                  ninf = _mm256_set1_epi16((short)(p->inf | 0x8000u)),
                  ovf1 = _mm256_set1_epi16((short)(p->ovf_lo - 1)),
                  unf = _mm256_set1_epi16((short)p->unf_hi),
                  unf1 = _mm256_set1_epi16((short)(p->unf_hi - 1)),
                  sub = _mm256_set1_epi16((short)p->sub_hi), zero = _mm256_setzero_si256(),
                  ones = _mm256_set1_epi16(-1);
    __m256i mx = zero, mn = ones;
    __m256i cnan = zero, cinf = zero, cninf = zero, czero = zero, covf = zero, cunf = zero,
            csub = zero;
    size_t nv = n / 16, since = 0;
    for (size_t i = 0; i < nv;) {
        size_t b = nv - i < VBLOCK ? nv - i : VBLOCK;
        const unsigned char *q = s + 32 * i;
        __m256i bmx = zero, bmn = ones;
        for (size_t k = 0; k < b; k++) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + 32 * k)), absm);
            bmx = _mm256_max_epu16(bmx, a);
            bmn = _mm256_min_epu16(bmn, a);
        }
        __m256i dirty = _mm256_or_si256(_mm256_cmpgt_epi16(sub, bmn), _mm256_cmpgt_epi16(bmx, ovf1));
        if (_mm256_testz_si256(dirty, dirty)) {
            mx = _mm256_max_epu16(mx, bmx);
            mn = _mm256_min_epu16(mn, bmn);
            i += b;
            continue;
        }
        for (size_t k = 0; k < b; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * k));
            __m256i a = _mm256_and_si256(v, absm);
            __m256i fin = _mm256_cmpgt_epi16(inf, a); /* a < inf */
            __m256i isz = _mm256_cmpeq_epi16(a, zero);
            cnan = _mm256_sub_epi16(cnan, _mm256_cmpgt_epi16(a, inf));
            cinf = _mm256_sub_epi16(cinf, _mm256_cmpeq_epi16(a, inf));
            cninf = _mm256_sub_epi16(cninf, _mm256_cmpeq_epi16(v, ninf));
            czero = _mm256_sub_epi16(czero, isz);
            covf = _mm256_sub_epi16(covf, _mm256_and_si256(_mm256_cmpgt_epi16(a, ovf1), fin));
            cunf = _mm256_sub_epi16(cunf, _mm256_andnot_si256(isz, _mm256_cmpgt_epi16(unf, a)));
            csub = _mm256_sub_epi16(csub, _mm256_and_si256(_mm256_cmpgt_epi16(a, unf1),
                                                           _mm256_cmpgt_epi16(sub, a)));
            __m256i af = _mm256_and_si256(a, fin); /* non-finite -> 0 */
            mx = _mm256_max_epu16(mx, af);
            mn = _mm256_min_epu16(mn, _mm256_or_si256(af, _mm256_or_si256(isz,
                                                                          _mm256_xor_si256(fin, ones))));
        }
        i += b;
        since += b;
        if (since > 16384 - VBLOCK) {
            uint64_t inf_all = hsum16(cinf), ninf_n = hsum16(cninf);
            c->nan += hsum16(cnan);
            c->pos_inf += inf_all - ninf_n;
            c->neg_inf += ninf_n;
            c->zero += hsum16(czero);
            c->overflow += hsum16(covf);
            c->underflow += hsum16(cunf);
            c->subnormal += hsum16(csub);
            cnan = cinf = cninf = czero = covf = cunf = csub = zero;
            since = 0;
        }
    }
    {
        uint64_t inf_all = hsum16(cinf), ninf_n = hsum16(cninf);
        c->nan += hsum16(cnan);
        c->pos_inf += inf_all - ninf_n;
        c->neg_inf += ninf_n;
        c->zero += hsum16(czero);
        c->overflow += hsum16(covf);
        c->underflow += hsum16(cunf);
        c->subnormal += hsum16(csub);
    }
    uint16_t o[16];
    _mm256_storeu_si256((__m256i *)o, mx);
    for (int k = 0; k < 16; k++)
        if (o[k] > c->max_abs_bits)
            c->max_abs_bits = o[k];
    _mm256_storeu_si256((__m256i *)o, mn);
    for (int k = 0; k < 16; k++)
        if (o[k] != 0xFFFF && o[k] < c->min_abs_bits)
            c->min_abs_bits = o[k];
    scalar16(p, s + 32 * nv, n - 16 * nv, c);
}

/* 32-bit sources: 8 lanes, |x| < 2^31, 32-bit lane counters (flushed every 2^30 vectors). */
VS_TARGET static void avx2_32(const dta_values_plan *p, const unsigned char *s, size_t n,
                              dta_values_counts *c)
{
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32((int)p->inf),
                  ninf = _mm256_set1_epi32((int)(p->inf | 0x80000000u)),
                  ovf1 = _mm256_set1_epi32((int)(p->ovf_lo - 1)),
                  unf = _mm256_set1_epi32((int)p->unf_hi),
                  unf1 = _mm256_set1_epi32((int)(p->unf_hi - 1)),
                  sub = _mm256_set1_epi32((int)p->sub_hi), zero = _mm256_setzero_si256(),
                  ones = _mm256_set1_epi32(-1);
    __m256i mx = zero, mn = ones;
    __m256i cnan = zero, cinf = zero, cninf = zero, czero = zero, covf = zero, cunf = zero,
            csub = zero;
    size_t nv = n / 8, since = 0;
    for (size_t i = 0; i < nv;) {
        size_t b = nv - i < VBLOCK ? nv - i : VBLOCK;
        const unsigned char *q = s + 32 * i;
        __m256i bmx = zero, bmn = ones;
        for (size_t k = 0; k < b; k++) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + 32 * k)), absm);
            bmx = _mm256_max_epu32(bmx, a);
            bmn = _mm256_min_epu32(bmn, a);
        }
        __m256i dirty = _mm256_or_si256(_mm256_cmpgt_epi32(sub, bmn), _mm256_cmpgt_epi32(bmx, ovf1));
        if (_mm256_testz_si256(dirty, dirty)) {
            mx = _mm256_max_epu32(mx, bmx);
            mn = _mm256_min_epu32(mn, bmn);
            i += b;
            continue;
        }
        for (size_t k = 0; k < b; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * k));
            __m256i a = _mm256_and_si256(v, absm);
            __m256i fin = _mm256_cmpgt_epi32(inf, a);
            __m256i isz = _mm256_cmpeq_epi32(a, zero);
            cnan = _mm256_sub_epi32(cnan, _mm256_cmpgt_epi32(a, inf));
            cinf = _mm256_sub_epi32(cinf, _mm256_cmpeq_epi32(a, inf));
            cninf = _mm256_sub_epi32(cninf, _mm256_cmpeq_epi32(v, ninf));
            czero = _mm256_sub_epi32(czero, isz);
            covf = _mm256_sub_epi32(covf, _mm256_and_si256(_mm256_cmpgt_epi32(a, ovf1), fin));
            cunf = _mm256_sub_epi32(cunf, _mm256_andnot_si256(isz, _mm256_cmpgt_epi32(unf, a)));
            csub = _mm256_sub_epi32(csub, _mm256_and_si256(_mm256_cmpgt_epi32(a, unf1),
                                                           _mm256_cmpgt_epi32(sub, a)));
            __m256i af = _mm256_and_si256(a, fin);
            mx = _mm256_max_epu32(mx, af);
            mn = _mm256_min_epu32(mn, _mm256_or_si256(af, _mm256_or_si256(isz,
                                                                          _mm256_xor_si256(fin, ones))));
        }
        i += b;
        since += b;
        if (since > ((size_t)1 << 30)) {
            uint64_t inf_all = hsum32(cinf), ninf_n = hsum32(cninf);
            c->nan += hsum32(cnan);
            c->pos_inf += inf_all - ninf_n;
            c->neg_inf += ninf_n;
            c->zero += hsum32(czero);
            c->overflow += hsum32(covf);
            c->underflow += hsum32(cunf);
            c->subnormal += hsum32(csub);
            cnan = cinf = cninf = czero = covf = cunf = csub = zero;
            since = 0;
        }
    }
    {
        uint64_t inf_all = hsum32(cinf), ninf_n = hsum32(cninf);
        c->nan += hsum32(cnan);
        c->pos_inf += inf_all - ninf_n;
        c->neg_inf += ninf_n;
        c->zero += hsum32(czero);
        c->overflow += hsum32(covf);
        c->underflow += hsum32(cunf);
        c->subnormal += hsum32(csub);
    }
    uint32_t o[8];
    _mm256_storeu_si256((__m256i *)o, mx);
    for (int k = 0; k < 8; k++)
        if (o[k] > c->max_abs_bits)
            c->max_abs_bits = o[k];
    _mm256_storeu_si256((__m256i *)o, mn);
    for (int k = 0; k < 8; k++)
        if (o[k] != 0xFFFFFFFFu && o[k] < c->min_abs_bits)
            c->min_abs_bits = o[k];
    scalar32(p, s + 32 * nv, n - 8 * nv, c);
}

/* 64-bit sources: 4 lanes, |x| < 2^63 (signed 64-bit compares), 64-bit lane counters. */
VS_TARGET static void avx2_64(const dta_values_plan *p, const unsigned char *s, size_t n,
                              dta_values_counts *c)
{
    const __m256i absm = _mm256_set1_epi64x(INT64_MAX), inf = _mm256_set1_epi64x((long long)p->inf),
                  ninf = _mm256_set1_epi64x((long long)(p->inf | UINT64_C(0x8000000000000000))),
                  ovf1 = _mm256_set1_epi64x((long long)(p->ovf_lo - 1)),
                  unf = _mm256_set1_epi64x((long long)p->unf_hi),
                  unf1 = _mm256_set1_epi64x((long long)(p->unf_hi - 1)),
                  sub = _mm256_set1_epi64x((long long)p->sub_hi), zero = _mm256_setzero_si256(),
                  ones = _mm256_set1_epi64x(-1), big = _mm256_set1_epi64x(INT64_MAX);
    __m256i cnan = zero, cinf = zero, cninf = zero, czero = zero, covf = zero, cunf = zero,
            csub = zero, mx = zero, mn = big; /* |x| <= INT64_MAX: signed min/max work */
    size_t nv = n / 4;
    for (size_t i = 0; i < nv;) {
        size_t b = nv - i < VBLOCK ? nv - i : VBLOCK;
        const unsigned char *q = s + 32 * i;
        __m256i bmx = zero, bmn = big;
        for (size_t k = 0; k < b; k++) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + 32 * k)), absm);
            bmx = _mm256_blendv_epi8(bmx, a, _mm256_cmpgt_epi64(a, bmx));
            bmn = _mm256_blendv_epi8(bmn, a, _mm256_cmpgt_epi64(bmn, a));
        }
        __m256i dirty = _mm256_or_si256(_mm256_cmpgt_epi64(sub, bmn), _mm256_cmpgt_epi64(bmx, ovf1));
        if (_mm256_testz_si256(dirty, dirty)) {
            mx = _mm256_blendv_epi8(mx, bmx, _mm256_cmpgt_epi64(bmx, mx));
            mn = _mm256_blendv_epi8(mn, bmn, _mm256_cmpgt_epi64(mn, bmn));
            i += b;
            continue;
        }
        for (size_t k = 0; k < b; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * k));
            __m256i a = _mm256_and_si256(v, absm);
            __m256i fin = _mm256_cmpgt_epi64(inf, a);
            __m256i isz = _mm256_cmpeq_epi64(a, zero);
            cnan = _mm256_sub_epi64(cnan, _mm256_cmpgt_epi64(a, inf));
            cinf = _mm256_sub_epi64(cinf, _mm256_cmpeq_epi64(a, inf));
            cninf = _mm256_sub_epi64(cninf, _mm256_cmpeq_epi64(v, ninf));
            czero = _mm256_sub_epi64(czero, isz);
            covf = _mm256_sub_epi64(covf, _mm256_and_si256(_mm256_cmpgt_epi64(a, ovf1), fin));
            cunf = _mm256_sub_epi64(cunf, _mm256_andnot_si256(isz, _mm256_cmpgt_epi64(unf, a)));
            csub = _mm256_sub_epi64(csub, _mm256_and_si256(_mm256_cmpgt_epi64(a, unf1),
                                                           _mm256_cmpgt_epi64(sub, a)));
            __m256i af = _mm256_and_si256(a, fin);
            mx = _mm256_blendv_epi8(mx, af, _mm256_cmpgt_epi64(af, mx));
            /* excluded lanes (zero, non-finite) become INT64_MAX, above every finite |x| */
            __m256i cand = _mm256_blendv_epi8(af, big, _mm256_or_si256(isz, _mm256_xor_si256(fin, ones)));
            mn = _mm256_blendv_epi8(mn, cand, _mm256_cmpgt_epi64(mn, cand));
        }
        i += b;
    }
    uint64_t inf_all = hsum64(cinf), ninf_n = hsum64(cninf);
    c->nan += hsum64(cnan);
    c->pos_inf += inf_all - ninf_n;
    c->neg_inf += ninf_n;
    c->zero += hsum64(czero);
    c->overflow += hsum64(covf);
    c->underflow += hsum64(cunf);
    c->subnormal += hsum64(csub);
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, mx);
    for (int k = 0; k < 4; k++)
        if (o[k] > c->max_abs_bits)
            c->max_abs_bits = o[k];
    _mm256_storeu_si256((__m256i *)o, mn);
    for (int k = 0; k < 4; k++)
        if (o[k] != (uint64_t)INT64_MAX && o[k] < c->min_abs_bits)
            c->min_abs_bits = o[k];
    scalar64(p, s + 32 * nv, n - 4 * nv, c);
}
#endif

void dta_values_count(const dta_values_plan *p, const void *src, size_t n, dta_values_counts *c)
{
    const unsigned char *s = src;
#if VS_HAVE_AVX2
    if (use_avx2()) {
        switch (p->width) {
        case 2: avx2_16(p, s, n, c); return;
        case 4: avx2_32(p, s, n, c); return;
        case 8: avx2_64(p, s, n, c); return;
        default: break;
        }
    }
#endif
    switch (p->width) {
    case 1: scalar8(p, s, n, c); break;
    case 2: scalar16(p, s, n, c); break;
    case 4: scalar32(p, s, n, c); break;
    case 8: scalar64(p, s, n, c); break;
    default: break;
    }
}
