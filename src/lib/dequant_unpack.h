/* dtaudit: the per-element decoding of the packed dequantization schemes, one copy for
 * the CPU modules (dequant_fp4.c, dequant_bnb.c, dequant_gptq.c, dequant_pack.c,
 * dequant_comfy.c) and the CUDA kernel (cuda/dequant.cu, through dequant_bits.h's
 * DQB_PACKED jobs): both call these functions, so a code, a scale or a zero point
 * decodes to the same f32 bits on either side by construction.
 *
 * Everything is integer bit work, except the few f32 operations a reference performs
 * before the final product (NVFP4's scale times or over the global scale, comfy_quant
 * nvfp4's too, bitsandbytes' double-quantized absmax and int8's two products). Those go
 * through dqb_mul, dqb_add and dqb_div, which fix the NaN a result gets (the GPU's
 * arithmetic returns one canonical NaN, x86 returns a quieted operand): x86 SSE's rule,
 * made explicit, so the CPU path's bytes are what they were on x86 and the GPU's are the
 * same. Other results are one IEEE
 * operation rounded to nearest even (on the device __fmul_rn / __fadd_rn / __fdiv_rn,
 * never contracted; subnormals kept: no -ftz=true in the CUDA build).
 *
 * C11 and CUDA C++ compatible (no designated initialisers, explicit casts). */
#ifndef DTAUDIT_DEQUANT_UNPACK_H
#define DTAUDIT_DEQUANT_UNPACK_H

#include <stdint.h>
#include <string.h>

#include "convert_bits.h"

/* The packed families (dqb_job.pk, dtap_dq_packed.kind) and their flags. */
enum {
    DQP_MXFP4 = 1,  /* gpt-oss expert stacks: U8 [E, out, in/32, 16] blocks, E8M0 scales,
                     * output [E, in, out] */
    DQP_FP4 = 2,    /* NVFP4 (ModelOpt, compressed-tensors) and compressed-tensors MXFP4 */
    DQP_BNB4 = 3,   /* bitsandbytes nf4 / fp4 (double quantization: DQP_F_NESTED) */
    DQP_BNB8 = 4,   /* bitsandbytes LLM.int8 */
    DQP_GPTQ = 5,   /* GPTQ v1 / v2, 2/3/4/8 bits */
    DQP_AWQ = 6,    /* AWQ GEMM, 4 bits */
    DQP_CTPACK = 7, /* compressed-tensors pack-quantized, 1/2/4/8 bits */
    DQP_CQ_NVFP4 = 8, /* ComfyUI comfy_quant nvfp4: E2M1 high nibble first, swizzled scales */
    DQP_CQ_MXFP8 = 9, /* ComfyUI comfy_quant mxfp8: F8_E4M3, swizzled E8M0 scales */
    DQP_CQ_INT8 = 10  /* ComfyUI comfy_quant int8_tensorwise (DQP_F_PER_ROW: [out, 1]) */
};
enum {
    DQP_F_DIVIDE = 1,     /* FP4: the global scale divides (compressed-tensors NVFP4) */
    DQP_F_E8M0 = 2,       /* FP4: E8M0 block scales per 32, 255 = inf (compressed-tensors MXFP4) */
    DQP_F_NESTED = 4,     /* BNB4: U8 absmax, double quantization */
    DQP_F_V1 = 8,         /* GPTQ: zero points stored as z - 1 */
    DQP_F_GIDX = 16,      /* GPTQ / CTPACK: groups from g_idx (in a job: the map is used) */
    DQP_F_PER_TENSOR = 32, /* CTPACK: one scale */
    DQP_F_STACK = 64,      /* FP4: a ModelOpt expert stack, codes [E, in/2, out], block
                            * scales [E, in/16, out], output [E, in, out] */
    DQP_F_PER_EXPERT = 128, /* FP4 stack: one global scale per expert */
    DQP_F_PER_ROW = 256     /* CQ_INT8: one scale per output row, else one for all */
};

/* ---- f32 arithmetic with fixed NaNs ------------------------------------------------------ */

DTAB_FN int dqb_nonfinite(uint32_t b) { return (b & 0x7F800000u) == 0x7F800000u; }

DTAB_FN uint32_t dqb_fbits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
#endif
}

DTAB_FN float dqb_bitsf(uint32_t b)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    float f;
    memcpy(&f, &b, 4);
    return f;
#endif
}

/* A NaN operand, x first, comes back quieted (sign and payload kept): x86's rule. 0
 * when neither is NaN. */
DTAB_FN uint32_t dqb_nan2(uint32_t xb, uint32_t sb)
{
    if ((xb & 0x7FFFFFFFu) > 0x7F800000u)
        return xb | 0x00400000u;
    if ((sb & 0x7FFFFFFFu) > 0x7F800000u)
        return sb | 0x00400000u;
    return 0;
}

/* The f32 product of two f32 bit patterns, rounded to nearest even, as bits. A NaN
 * operand is returned quieted (x first); inf * 0 is the "indefinite" NaN 0xFFC00000. Any
 * other product is one IEEE multiply (nothing fused; subnormals kept: no FTZ/DAZ here, no
 * -ftz=true in the CUDA build). */
DTAB_FN uint32_t dqb_mul(uint32_t xb, uint32_t sb)
{
    uint32_t xa = xb & 0x7FFFFFFFu, sa = sb & 0x7FFFFFFFu, nan = dqb_nan2(xb, sb);
    if (nan)
        return nan;
    if ((xa == 0x7F800000u && sa == 0) || (sa == 0x7F800000u && xa == 0))
        return 0xFFC00000u;
#ifdef __CUDA_ARCH__
    return __float_as_uint(__fmul_rn(__uint_as_float(xb), __uint_as_float(sb)));
#else
    /* one multiply; the one add after a product (dqp_bnb_absmax) stores it first: no FMA */
    return dqb_fbits(dqb_bitsf(xb) * dqb_bitsf(sb));
#endif
}

/* a + b, f32, the same NaN rule; inf + -inf is 0xFFC00000. */
DTAB_FN uint32_t dqb_add(uint32_t ab, uint32_t bb)
{
    uint32_t nan = dqb_nan2(ab, bb);
    if (nan)
        return nan;
    if ((ab & 0x7FFFFFFFu) == 0x7F800000u && (bb & 0x7FFFFFFFu) == 0x7F800000u && ab != bb)
        return 0xFFC00000u;
#ifdef __CUDA_ARCH__
    return __float_as_uint(__fadd_rn(__uint_as_float(ab), __uint_as_float(bb)));
#else
    return dqb_fbits(dqb_bitsf(ab) + dqb_bitsf(bb)); /* one operation: nothing to contract */
#endif
}

/* a / b, f32, correctly rounded, the same NaN rule; 0/0 and inf/inf are 0xFFC00000. */
DTAB_FN uint32_t dqb_div(uint32_t ab, uint32_t bb)
{
    uint32_t aa = ab & 0x7FFFFFFFu, ba = bb & 0x7FFFFFFFu, nan = dqb_nan2(ab, bb);
    if (nan)
        return nan;
    if ((aa == 0 && ba == 0) || (aa == 0x7F800000u && ba == 0x7F800000u))
        return 0xFFC00000u;
#ifdef __CUDA_ARCH__
    return __float_as_uint(__fdiv_rn(__uint_as_float(ab), __uint_as_float(bb)));
#else
    return dqb_fbits(dqb_bitsf(ab) / dqb_bitsf(bb)); /* one operation: nothing to contract */
#endif
}

/* An integer of magnitude below 2^24 as f32 bits (exact). */
DTAB_FN uint32_t dqp_int_f32(int v)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(__int2float_rn(v));
#else
    return dqb_fbits((float)v);
#endif
}

/* ---- stored bytes ------------------------------------------------------------------------ */

DTAB_FN uint32_t dqp_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Entry k of a stored F32 / F16 / BF16 tensor's bytes as f32 bits (exact). */
DTAB_FN uint32_t dqp_load(int dt, const uint8_t *raw, uint64_t k)
{
    if (dt == DTA_F32)
        return dqp_le32(raw + 4 * k);
    return dtab_decode(dt, (uint32_t)raw[2 * k] | (uint32_t)raw[2 * k + 1] << 8);
}

/* ---- FP4 (E2M1) and its block scales (dequant_fp4.c; shared/quant.md 1.2, 8, 9, 3.5) ---- */

/* E2M1 code (4 bits; bit 3 the sign, 8 is -0.0) as f32 bits. */
DTAB_FN uint32_t dqp_e2m1(unsigned c)
{
    /* 0, 0.5, 1, 1.5, 2, 3, 4, 6 */
    uint32_t m = c & 7u, v = m == 0 ? 0u : m == 1 ? 0x3F000000u
                                                  : (uint32_t)(126u + (m >> 1)) << 23 |
                                                        (m & 1u) << 22;
    return (c & 8u) << 28 | v;
}

/* Element i's nibble of an FP4 byte packed low nibble first (even i low). */
DTAB_FN unsigned dqp_nib_lo_first(uint8_t byte, uint64_t i)
{
    return i & 1 ? (unsigned)byte >> 4 : byte & 15u;
}

/* An E8M0 exponent byte u: 2^(u - 127) exactly (u = 0: the f32 subnormal 2^-127); u = 255
 * is NaN (inf255 0: the OCP reading, gpt-oss MXFP4) or inf (inf255 1: 2^128 as
 * compressed-tensors' decompress_mx_scale computes it). */
DTAB_FN uint32_t dqp_e8m0(uint8_t u, int inf255)
{
    return u == 255 ? (inf255 ? 0x7F800000u : 0x7FC00000u) : u ? (uint32_t)u << 23 : 0x00400000u;
}

/* An NVFP4 block scale: the F8_E4M3 byte u times (ModelOpt) or over (compressed-tensors,
 * divide) the global scale, one f32 operation. */
DTAB_FN uint32_t dqp_nvfp4_scale(uint8_t u, uint32_t global, int divide)
{
    uint32_t bs = dtab_f8_to_f32(DTA_F8_E4M3, u);
    return divide ? dqb_div(bs, global) : dqb_mul(bs, global);
}

/* ---- bitsandbytes (dequant_bnb.c; shared/quant.md 5) ----------------------------------- */

/* Element e's 4-bit code: element 2k in the high nibble of byte k (bitsandbytes, and
 * comfy-kitchen's nvfp4). */
DTAB_FN unsigned dqp_nib_hi_first(uint8_t byte, uint64_t e)
{
    return e & 1 ? byte & 15u : (unsigned)byte >> 4;
}

/* A double-quantized absmax: f32(f32(map[u] * nested_absmax) + offset), two roundings. */
DTAB_FN uint32_t dqp_bnb_absmax(uint32_t map, uint32_t nabs, uint32_t offset)
{
#ifdef __CUDA_ARCH__
    return dqb_add(dqb_mul(map, nabs), offset); /* __fmul_rn / __fadd_rn: never fused */
#else
    volatile uint32_t p = dqb_mul(map, nabs); /* stored: the compiler cannot fuse it with
                                               * the add into an FMA */
    return dqb_add(p, offset);
#endif
}

/* Flags of an element computed whole (dequant_scheme.h's DTAP_DQF_*). */
enum { DQB_F_NONFINITE = 1, DQB_F_NONZERO = 2 };

/* LLM.int8: f32(f32(q * SCB) * f32(1/127)) as bits, and its DQB_F_* flags in *fl. */
DTAB_FN uint32_t dqp_bnb8(int q, uint32_t scb, uint8_t *fl)
{
    uint32_t qb = dqp_int_f32(q);
    *fl = (uint8_t)((dqb_nonfinite(scb) ? DQB_F_NONFINITE : 0) |
                    (q != 0 && (scb & 0x7FFFFFFFu) != 0 ? DQB_F_NONZERO : 0));
    return dqb_mul(dqb_mul(qb, scb), 0x3C010204u); /* f32(1/127) */
}

/* ---- ComfyUI comfy_quant nvfp4, mxfp8, int8_tensorwise (dequant_comfy.c; quant.md 10.2) -- */

/* The byte of a comfy_quant weight row holding column i (nvfp4: two columns a byte). */
DTAB_FN uint64_t dqp_cq_byte(int pk, uint64_t i) { return pk == DQP_CQ_NVFP4 ? i / 2 : i; }

/* Column i's decoded code from that byte, as f32 bits (exact): nvfp4 E2M1, element 2k in
 * the high nibble (comfy-kitchen's hi_first); mxfp8 F8_E4M3; int8 I8. */
DTAB_FN uint32_t dqp_cq_code(int pk, uint8_t byte, uint64_t i)
{
    if (pk == DQP_CQ_NVFP4)
        return dqp_e2m1(dqp_nib_hi_first(byte, i));
    if (pk == DQP_CQ_MXFP8)
        return dtab_f8_to_f32(DTA_F8_E4M3, byte);
    return dqp_int_f32((int)(int8_t)byte);
}

/* Where the block scale of row r, block c is in cuBLAS' 128x4-swizzled layout
 * [roundup(rows, 128), ncb * 4] (comfy-kitchen float_utils.from_blocked): the byte offset
 * ((r/128 * ncb + c/4) * 32 + r%32) * 16 + (r%128)/32 * 4 + c%4. A 128-row band of it is
 * ncb * 512 bytes. */
DTAB_FN uint64_t dqp_swizzled(uint64_t r, uint64_t c, uint64_t ncb)
{
    return ((r / 128 * ncb + c / 4) * 32 + r % 32) * 16 + r % 128 / 32 * 4 + c % 4;
}

/* A comfy_quant block scale from its byte u, as f32 bits: nvfp4 the F8_E4M3 u times the
 * global scale, one f32 multiply (comfy-kitchen's CUDA kernel: decode_scale =
 * float(block) * global; the element is then code x decode_scale, dqb_one); mxfp8 the
 * E8M0 2^(u - 127), u = 0 read as 0 and 255 as +inf (comfy-kitchen's e8m0_to_f32, not
 * dqp_e8m0's reading). */
DTAB_FN uint32_t dqp_cq_block_scale(int pk, uint8_t u, uint32_t global)
{
    return pk == DQP_CQ_NVFP4 ? dqp_nvfp4_scale(u, global, 0) : (uint32_t)u << 23;
}

/* ---- integer bit fields (dequant_gptq.c, dequant_pack.c; shared/quant.md 1.5, 3.4, 6, 7) */

/* Bits [sh, sh + b) of the little-endian words lo, hi (hi supplies what straddles). */
DTAB_FN unsigned dqp_bits2(uint32_t lo, uint32_t hi, unsigned sh, unsigned b)
{
    uint64_t v = (uint64_t)lo >> sh;
    if (sh + b > 32)
        v |= (uint64_t)hi << (32 - sh);
    return (unsigned)(v & ((1u << b) - 1));
}

/* AWQ GEMM: output column o's nibble of a packed word (order 0, 4, 1, 5, 2, 6, 3, 7). */
DTAB_FN unsigned dqp_awq_nib(uint32_t word, uint64_t o)
{
    unsigned j = (unsigned)(o % 8);
    unsigned slot = (j & 1u) ? 4u + (j >> 1) : (j >> 1);
    return (word >> (4 * slot)) & 0xFu;
}

/* The words of a packed row (w) and of a zero row (z) that hold output columns o0..o1:
 * AWQ packs eight columns a word in both; GPTQ keeps a column per qweight word and packs
 * qzeros b bits a column, a field possibly straddling two words. */
DTAB_FN void dqp_gptq_cols(int awq, unsigned b, uint64_t o0, uint64_t o1, uint64_t *wc0,
                           uint64_t *wc1, uint64_t *zc0, uint64_t *zc1)
{
    if (awq) {
        *wc0 = *zc0 = o0 / 8;
        *wc1 = *zc1 = o1 / 8;
    } else {
        *wc0 = o0;
        *wc1 = o1;
        *zc0 = o0 * b / 32;
        *zc1 = ((o1 + 1) * b - 1) / 32;
    }
}

/* A GPTQ zero point from its field: v1 stores z - 1. */
DTAB_FN unsigned dqp_gptq_zero(unsigned field, int v1, unsigned b)
{
    return v1 ? (field + 1) & ((1u << b) - 1) : field;
}

/* x = q - z as f32 bits (exact: small integers). */
DTAB_FN uint32_t dqp_qz(int q, int z) { return dqp_int_f32(q - z); }

#endif
