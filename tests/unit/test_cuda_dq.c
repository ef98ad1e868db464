/* convert --dequantize on the GPU (dequant_dev.h, src/lib/cuda/dequant.cu).
 *
 * Host part (runs everywhere, GPU or not, CUDA built in or not): dqb_elem, the function
 * the kernel runs per element, run on the host over the jobs dtap_dq_job_dev prepares for
 * the device (for the packed schemes, their stored bytes as dequant_packed.c gathers them:
 * the kernel's unpacking and decoding, dqp_xs / dqp_values, runs here too),
 * against dtap_dq_run (whose FP8 path has its own indexing, product tables and BF16 fast
 * path) byte for byte and count for count: hostile block-FP8 grids written here (ragged
 * blocks, stacked experts, zero / subnormal / NaN / inf / huge scales, F32, BF16, F16,
 * F8_E8M0 and U8 E8M0 scales with 0 and 255, every code), per-tensor and per-row FP8,
 * and every committed quantized fixture dtaudit dequantizes (bitsandbytes nf4/fp4 with
 * double quantization and int8, compressed-tensors float / int / pack-quantized / NVFP4 /
 * MXFP4, ComfyUI scaled FP8 and comfy_quant float8 / nvfp4 / mxfp8 / int8_tensorwise),
 * hostile packed parameters written here (gpt-oss MXFP4 with E8M0 0 / 255, ModelOpt NVFP4
 * with underflowing and overflowing global scales and NaN block scales, ModelOpt NVFP4
 * expert stacks with one and per-expert global scales (NaN among them), compressed-tensors
 * NVFP4 with a zero, NaN or tiny global scale and an odd width, GPTQ 3-bit act-order v1,
 * AWQ, F16 scales 0 / subnormal / inf / NaN; ComfyUI comfy_quant nvfp4 over two swizzle
 * bands, cropped to its bias, with subnormal, NaN and BF16 huge global scales, mxfp8 with
 * E8M0 0 and 255, int8_tensorwise with NaN / inf and hostile per-row scales), every target
 * and overflow mode, whole and in ragged ranges. No device job may carry operands decoded
 * on the host (DQB_XS): every scheme's stored bytes go to the device.
 *
 * Device part: dtap_dq_run_cuda against dtap_dq_run on the same parameters and ranges.
 * Each device test skips ("no CUDA device") without one. Without a device (or CUDA),
 * dtap_dq_run_cuda fails with the reason, as dta_convert_cuda does. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dequant_dev.h"
#include "dtaudit/backend.h"
#include "dtaudit/model.h"

static const dta_dtype TARGETS[] = {DTA_F32, DTA_F16, DTA_BF16};
static const dta_overflow_mode MODES[] = {DTA_OVERFLOW_INF, DTA_OVERFLOW_SATURATE};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- hostile fixtures, written here ----------------------------------------------------- */

typedef struct {
    const char *name, *dtype;
    int rank;
    uint64_t dims[4];
    const void *data;
    size_t bytes;
} tdesc;

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* dir/model.safetensors with tensors t (data given), and dir/config.json with config. */
static void write_model(const char *dir, const tdesc *t, size_t nt, const char *config)
{
    char json[8192], path[512];
    size_t o = 0;
    uint64_t off = 0;
    o += (size_t)snprintf(json + o, sizeof json - o, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < nt; i++) {
        o += (size_t)snprintf(json + o, sizeof json - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              t[i].name, t[i].dtype);
        for (int k = 0; k < t[i].rank; k++)
            o += (size_t)snprintf(json + o, sizeof json - o, "%s%llu", k ? "," : "",
                                  (unsigned long long)t[i].dims[k]);
        o += (size_t)snprintf(json + o, sizeof json - o, "],\"data_offsets\":[%llu,%llu]}",
                              (unsigned long long)off, (unsigned long long)(off + t[i].bytes));
        off += t[i].bytes;
    }
    json[o++] = '}';
    while (o % 8)
        json[o++] = ' ';
    unsigned char *f = calloc(1, 8 + o + off);
    cr_assert(f);
    for (int k = 0; k < 8; k++)
        f[k] = (unsigned char)((uint64_t)o >> (8 * k));
    memcpy(f + 8, json, o);
    off = 0;
    for (size_t i = 0; i < nt; i++) {
        memcpy(f + 8 + o + off, t[i].data, t[i].bytes);
        off += t[i].bytes;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, f, 8 + o + off);
    free(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, config, strlen(config));
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint32_t rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* n codes: every byte value in turn, then random ones. */
static unsigned char *codes(size_t n)
{
    unsigned char *c = malloc(n);
    cr_assert(c);
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(i < 256 ? i : rnd32());
    return c;
}

/* F32 scales with the hostile values first: 0, an f32 subnormal, 2^-126, a huge one that
 * overflows F16 / BF16 / F32 in products, NaN, inf, a negative one, then ordinary ones. */
static const uint32_t HOSTILE_F32[] = {0x00000000u, 0x00000001u, 0x0DA24260u, 0x00800000u,
                                       0x72E0B000u, 0x7F000000u, 0x7FC00000u, 0x7F800000u,
                                       0xBF800000u, 0x3B800000u, 0x3F800000u, 0x1C800000u};

static void f32_scales(uint32_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i] = i < COUNT(HOSTILE_F32) ? HOSTILE_F32[i] : 0x38000000u + (rnd32() & 0x03FFFFFFu);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/dtaudit-cuda-dq-XXXXXX");
    cr_assert(d && mkdtemp(d));
    return d;
}

static void rmdir_all(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}

#define BLOCK_CONFIG(bm, bn)                                                                  \
    "{\"model_type\":\"deepseek_v3\",\"quantization_config\":{\"quant_method\":\"fp8\","     \
    "\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\",\"weight_block_size\":[" #bm "," #bn  \
    "]}}"

/* Block FP8, blocks of 4 x 3: a [2, 7, 10] expert stack (grid [2, 2, 4], ragged both
 * ways) with F32 scales, and [9, 11] matrices (grid [3, 4]) with BF16, F16, F8_E8M0 and
 * U8 E8M0 scales. */
static char *block_dir(void)
{
    char *d = tmpdir();
    unsigned char *c1 = codes(140), *c2 = codes(99), *c3 = codes(99), *c4 = codes(99),
                  *c5 = codes(99);
    uint32_t s1[16];
    uint16_t s2[12], s3[12];
    unsigned char s4[12] = {0, 1, 126, 127, 128, 254, 255, 100, 134, 140, 118, 127};
    unsigned char s5[12] = {255, 0, 127, 254, 1, 129, 126, 90, 160, 127, 127, 200};
    f32_scales(s1, 16);
    for (int i = 0; i < 12; i++) {
        s2[i] = (uint16_t)(s1[i] >> 16); /* BF16: the same hostile values, truncated */
        s3[i] = (uint16_t[]){0x0000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0x7E00, 0xFC00,
                             0xBC00, 0x1400, 0x3C00, 0x2E66}[i];
    }
    tdesc t[] = {
        {"model.layers.0.mlp.experts.w1.weight", "F8_E4M3", 3, {2, 7, 10}, c1, 140},
        {"model.layers.0.mlp.experts.w1.weight_scale_inv", "F32", 3, {2, 2, 4}, s1, 64},
        {"model.layers.0.mlp.down_proj.weight", "F8_E4M3", 2, {9, 11}, c2, 99},
        {"model.layers.0.mlp.down_proj.weight_scale_inv", "BF16", 2, {3, 4}, s2, 24},
        {"model.layers.0.mlp.up_proj.weight", "F8_E4M3", 2, {9, 11}, c3, 99},
        {"model.layers.0.mlp.up_proj.weight_scale_inv", "F16", 2, {3, 4}, s3, 24},
        {"model.layers.0.self_attn.o_proj.weight", "F8_E4M3", 2, {9, 11}, c4, 99},
        {"model.layers.0.self_attn.o_proj.weight_scale_inv", "F8_E8M0", 2, {3, 4}, s4, 12},
        {"model.layers.0.self_attn.q_proj.weight", "F8_E4M3", 2, {9, 11}, c5, 99},
        {"model.layers.0.self_attn.q_proj.weight_scale_inv", "U8", 2, {3, 4}, s5, 12},
    };
    write_model(d, t, COUNT(t), BLOCK_CONFIG(4, 3));
    free(c1), free(c2), free(c3), free(c4), free(c5);
    return d;
}

/* Per-tensor FP8 (AutoFP8: an F32 [] scale) and E5M2 codes. */
static char *per_tensor_dir(uint32_t scale, const char *code)
{
    char *d = tmpdir();
    unsigned char *c = codes(300);
    tdesc t[] = {
        {"model.layers.0.mlp.gate_proj.weight", code, 2, {3, 100}, c, 300},
        {"model.layers.0.mlp.gate_proj.weight_scale", "F32", 0, {0}, &scale, 4},
    };
    write_model(d, t, COUNT(t),
                "{\"quantization_config\":{\"quant_method\":\"fp8\",\"activation_scheme\":"
                "\"dynamic\"}}");
    free(c);
    return d;
}

/* Per-row FP8 (FBGEMM: F32 [out, 1]). */
static char *per_row_dir(void)
{
    char *d = tmpdir();
    unsigned char *c = codes(13 * 17);
    uint32_t s[13];
    f32_scales(s, 13);
    tdesc t[] = {
        {"model.layers.0.mlp.gate_proj.weight", "F8_E4M3", 2, {13, 17}, c, 13 * 17},
        {"model.layers.0.mlp.gate_proj.weight_scale", "F32", 2, {13, 1}, s, 52},
    };
    write_model(d, t, COUNT(t),
                "{\"quantization_config\":{\"quant_method\":\"fbgemm_fp8\","
                "\"activation_scale_ub\":1200.0}}");
    free(c);
    return d;
}

/* ---- hostile packed schemes (the device decodes their stored bytes) --------------------- */

/* n random bytes, every byte value first. */
static unsigned char *rbytes(size_t n) { return codes(n); }

/* gpt-oss MXFP4 expert stacks: [2, 7, 3, 16] blocks with E8M0 scales 0, 1, 127, 254, 255
 * and random ones (U8), and [3, 5, 1, 16] with F8_E8M0 scales. */
static char *mxfp4_dir(void)
{
    char *d = tmpdir();
    unsigned char *b1 = rbytes(2 * 7 * 3 * 16), *b2 = rbytes(3 * 5 * 16), s1[42], s2[15];
    for (size_t i = 0; i < sizeof s1; i++)
        s1[i] = (unsigned char)(i < 5 ? (unsigned char[]){0, 1, 127, 254, 255}[i]
                                      : 110 + rnd32() % 30);
    for (size_t i = 0; i < sizeof s2; i++)
        s2[i] = (unsigned char)(i == 3 ? 255 : i == 4 ? 0 : 120 + rnd32() % 15);
    tdesc t[] = {
        {"model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", 4, {2, 7, 3, 16}, b1, 672},
        {"model.layers.0.mlp.experts.gate_up_proj_scales", "U8", 3, {2, 7, 3}, s1, 42},
        {"model.layers.0.mlp.experts.down_proj_blocks", "U8", 4, {3, 5, 1, 16}, b2, 240},
        {"model.layers.0.mlp.experts.down_proj_scales", "F8_E8M0", 3, {3, 5, 1}, s2, 15},
    };
    write_model(d, t, COUNT(t),
                "{\"model_type\":\"gpt_oss\",\"quantization_config\":{\"quant_method\":"
                "\"mxfp4\"}}");
    free(b1), free(b2);
    return d;
}

/* a ModelOpt NVFP4 config.json for model type mt */
#define MODELOPT_NVFP4_CONFIG(mt)                                                             \
    "{\"model_type\":\"" mt "\",\"quantization_config\":{\"quant_method\":"                 \
    "\"modelopt\",\"quant_algo\":\"NVFP4\",\"config_groups\":{\"group_0\":{"                \
    "\"weights\":{\"num_bits\":4,\"type\":\"float\",\"group_size\":16}}}}}"

/* ModelOpt NVFP4: every E4M3 block-scale byte (NaN ones included), global scales that
 * underflow (the smallest subnormal) and overflow (3e38) the products. */
static char *modelopt_dir(void)
{
    char *d = tmpdir();
    unsigned char *c1 = rbytes(16 * 32), *c2 = rbytes(5 * 24), *s1 = rbytes(16 * 4),
                  *s2 = rbytes(5 * 3);
    uint32_t g1 = 0x00000001u, g2 = 0x7E61E0CBu, one = 0x3F800000u;
    tdesc t[] = {
        {"model.layers.0.mlp.down_proj.weight", "U8", 2, {16, 32}, c1, 512},
        {"model.layers.0.mlp.down_proj.weight_scale", "F8_E4M3", 2, {16, 4}, s1, 64},
        {"model.layers.0.mlp.down_proj.weight_scale_2", "F32", 0, {0}, &g1, 4},
        {"model.layers.0.mlp.down_proj.input_scale", "F32", 0, {0}, &one, 4},
        {"model.layers.1.mlp.down_proj.weight", "U8", 2, {5, 24}, c2, 120},
        {"model.layers.1.mlp.down_proj.weight_scale", "F8_E4M3", 2, {5, 3}, s2, 15},
        {"model.layers.1.mlp.down_proj.weight_scale_2", "F32", 0, {0}, &g2, 4},
        {"model.layers.1.mlp.down_proj.input_scale", "F32", 0, {0}, &one, 4},
    };
    write_model(d, t, COUNT(t), MODELOPT_NVFP4_CONFIG("llama"));
    free(c1), free(c2), free(s1), free(s2);
    return d;
}

/* ModelOpt NVFP4 expert stacks (codes [E, in/2, out], block scales [E, in/16, out]):
 * one global scale, and one per expert (the smallest subnormal, 3e38, NaN), a ragged
 * last block (in 24), every E4M3 block-scale byte. */
static char *modelopt_stack_dir(void)
{
    char *d = tmpdir();
    unsigned char *c1 = rbytes(2 * 12 * 5), *s1 = rbytes(2 * 2 * 5), *c2 = rbytes(3 * 16 * 7),
                  *s2 = rbytes(3 * 2 * 7);
    uint32_t g1 = 0x3B000000u, g2[3] = {0x00000001u, 0x7E61E0CBu, 0x7FC00000u};
    uint32_t one = 0x3F800000u;
    tdesc t[] = {
        {"model.layers.0.mlp.experts.gate_up_proj", "U8", 3, {2, 12, 5}, c1, 120},
        {"model.layers.0.mlp.experts.gate_up_proj_weight_scale", "F8_E4M3", 3, {2, 2, 5}, s1,
         20},
        {"model.layers.0.mlp.experts.gate_up_proj_weight_scale_2", "F32", 0, {0}, &g1, 4},
        {"model.layers.0.mlp.experts.gate_up_proj_input_scale", "F32", 0, {0}, &one, 4},
        {"model.layers.0.mlp.experts.down_proj", "U8", 3, {3, 16, 7}, c2, 336},
        {"model.layers.0.mlp.experts.down_proj_weight_scale", "F8_E4M3", 3, {3, 2, 7}, s2, 42},
        {"model.layers.0.mlp.experts.down_proj_weight_scale_2", "F32", 1, {3}, g2, 12},
        {"model.layers.0.mlp.experts.down_proj_input_scale", "F32", 0, {0}, &one, 4},
    };
    write_model(d, t, COUNT(t), MODELOPT_NVFP4_CONFIG("gpt_oss"));
    free(c1), free(c2), free(s1), free(s2);
    return d;
}

#define CT_NVFP4_CONFIG                                                                       \
    "{\"model_type\":\"llama\",\"quantization_config\":{\"quant_method\":"                  \
    "\"compressed-tensors\",\"format\":\"nvfp4-pack-quantized\",\"quantization_status\":"     \
    "\"compressed\",\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{"   \
    "\"num_bits\":4,\"type\":\"float\",\"strategy\":\"tensor_group\",\"group_size\":16,"     \
    "\"symmetric\":true}}}}}"

/* compressed-tensors NVFP4 with a global scale of 0 (every block scale divided by zero:
 * inf, and NaN for zero block scales) and an odd logical width (weight_shape [9, 37]). */
static char *ct_nvfp4_dir(uint32_t global)
{
    char *d = tmpdir();
    unsigned char *c = rbytes(9 * 19), *s = rbytes(9 * 3);
    int64_t shape[2] = {9, 37};
    uint32_t one = 0x3F800000u;
    tdesc t[] = {
        {"model.layers.0.self_attn.o_proj.weight_packed", "U8", 2, {9, 19}, c, 171},
        {"model.layers.0.self_attn.o_proj.weight_scale", "F8_E4M3", 2, {9, 3}, s, 27},
        {"model.layers.0.self_attn.o_proj.weight_global_scale", "F32", 1, {1}, &global, 4},
        {"model.layers.0.self_attn.o_proj.input_global_scale", "F32", 1, {1}, &one, 4},
        {"model.layers.0.self_attn.o_proj.weight_shape", "I64", 1, {2}, shape, 16},
    };
    write_model(d, t, COUNT(t), CT_NVFP4_CONFIG);
    free(c), free(s);
    return d;
}

/* F16 scales with the hostile values first: 0, subnormals, the largest finite, inf, NaN,
 * a negative, then ordinary ones. */
static void f16_scales(uint16_t *s, size_t n)
{
    static const uint16_t H[] = {0x0000, 0x0001, 0x03FF, 0x7BFF, 0x7C00, 0x7E00, 0xBC00};
    for (size_t i = 0; i < n; i++)
        s[i] = i < COUNT(H) ? H[i] : (uint16_t)(0x1C00 + rnd32() % 0x0800);
}

/* GPTQ: 3 bits (fields across words), act-order g_idx, asymmetric v1 zero points, F16
 * scales: qweight [in*3/32, out] and qzeros [G, ceil(out*3/32)] of random words. */
static char *gptq_dir(void)
{
    char *d = tmpdir();
    enum { IN = 96, OUT = 40, G = 3, ZC = 4 };
    unsigned char *qw = rbytes(IN * 3 / 32 * OUT * 4), *qz = rbytes(G * ZC * 4);
    uint16_t sc[G * OUT];
    int32_t gi[IN];
    f16_scales(sc, G * OUT);
    for (int i = 0; i < IN; i++)
        gi[i] = (int32_t)((i * 7 + 5) % IN / 32); /* a permutation's groups */
    tdesc t[] = {
        {"model.layers.0.mlp.gate_proj.qweight", "I32", 2, {IN * 3 / 32, OUT}, qw,
         IN * 3 / 32 * OUT * 4},
        {"model.layers.0.mlp.gate_proj.qzeros", "I32", 2, {G, ZC}, qz, G * ZC * 4},
        {"model.layers.0.mlp.gate_proj.scales", "F16", 2, {G, OUT}, sc, sizeof sc},
        {"model.layers.0.mlp.gate_proj.g_idx", "I32", 1, {IN}, gi, sizeof gi},
    };
    write_model(d, t, COUNT(t),
                "{\"model_type\":\"llama\",\"quantization_config\":{\"quant_method\":\"gptq\","
                "\"bits\":3,\"group_size\":32,\"desc_act\":true,\"sym\":false}}");
    free(qw), free(qz);
    return d;
}

/* AWQ GEMM: 4 bits, group 32, F16 scales with hostile values, random words. */
static char *awq_dir(void)
{
    char *d = tmpdir();
    enum { IN = 64, OUT = 24, G = 2 };
    unsigned char *qw = rbytes(IN * OUT / 8 * 4), *qz = rbytes(G * OUT / 8 * 4);
    uint16_t sc[G * OUT];
    f16_scales(sc, G * OUT);
    tdesc t[] = {
        {"model.layers.0.mlp.up_proj.qweight", "I32", 2, {IN, OUT / 8}, qw, IN * OUT / 8 * 4},
        {"model.layers.0.mlp.up_proj.qzeros", "I32", 2, {G, OUT / 8}, qz, G * OUT / 8 * 4},
        {"model.layers.0.mlp.up_proj.scales", "F16", 2, {G, OUT}, sc, sizeof sc},
    };
    write_model(d, t, COUNT(t),
                "{\"model_type\":\"llama\",\"quantization_config\":{\"quant_method\":\"awq\","
                "\"bits\":4,\"group_size\":32,\"zero_point\":true,\"version\":\"gemm\"}}");
    free(qw), free(qz);
    return d;
}

/* A comfy_quant marker tensor: the U8 bytes of {"format": fmt}. */
#define CQ_MARK(name, json)                                                                   \
    {name ".comfy_quant", "U8", 1, {sizeof json - 1}, json, sizeof json - 1}

/* ComfyUI comfy_quant layers (the device decodes their stored bytes: codes, 128x4-swizzled
 * block scales, global and row scales). nvfp4: 200 rows over two swizzle bands with 5
 * blocks a row (a tile of 4 half used), every E4M3 block-scale byte (the NaN ones
 * included), a global scale that underflows every product (the smallest subnormal); 144
 * rows cropped to a bias of 140 (zero padding rows) with a NaN global scale; 37 rows with
 * a BF16 global scale of 1.7e38 (products overflow). mxfp8: E8M0 0, 1, 127, 254, 255
 * (0 read as 0, 255 as inf) and every code, U8 and F8_E8M0 scales. int8_tensorwise: one
 * NaN or inf scale, per-row F16 and BF16 scales with 0, subnormal, inf and NaN ones. */
static char *comfy_dir(void)
{
    char *d = tmpdir();
    enum { R1 = 200, R2 = 144, B2 = 140, R3 = 37, MR = 160, IR = 13, IC = 17 };
    unsigned char *c1 = rbytes(R1 * 40), *s1 = rbytes(256 * 8), *c2 = rbytes(R2 * 8),
                  *s2 = rbytes(256 * 4), *c3 = rbytes(R3 * 8), *s3 = rbytes(128 * 4),
                  *cm1 = rbytes(MR * 96), *cm2 = rbytes(32 * 64), *ci1 = rbytes(IR * IC),
                  *ci2 = rbytes(IR * IC), *ci3 = rbytes(IR * IC), *ci4 = rbytes(IR * IC);
    unsigned char sm1[256 * 4], sm2[128 * 4];
    uint32_t g1 = 0x00000001u, g2 = 0x7FC00001u, nan = 0x7FC00000u, inf = 0x7F800000u;
    uint16_t g3 = 0x7F00, si2[IR], si3[IR];
    float b1[R1], b2[B2], bm[MR];
    memset(c2 + B2 * 8, 0, (R2 - B2) * 8); /* the padding rows */
    for (size_t i = 0; i < sizeof sm1; i++)
        sm1[i] = (unsigned char)(i < 5 ? (unsigned char[]){0, 1, 127, 254, 255}[i]
                                       : 110 + rnd32() % 30);
    for (size_t i = 0; i < sizeof sm2; i++)
        sm2[i] = (unsigned char)(i == 7 ? 255 : i == 9 ? 0 : 115 + rnd32() % 20);
    f16_scales(si2, IR);
    for (int i = 0; i < IR; i++)
        si3[i] = (uint16_t)(HOSTILE_F32[i % COUNT(HOSTILE_F32)] >> 16);
    for (int i = 0; i < R1; i++)
        b1[i] = (float)i;
    for (int i = 0; i < B2; i++)
        b2[i] = (float)i;
    for (int i = 0; i < MR; i++)
        bm[i] = (float)i;
#define P "diffusion_model.blocks.0."
    tdesc t[] = {
        {P "a.weight", "U8", 2, {R1, 40}, c1, R1 * 40},
        {P "a.weight_scale", "F8_E4M3", 2, {256, 8}, s1, 256 * 8},
        {P "a.weight_scale_2", "F32", 0, {0}, &g1, 4},
        {P "a.bias", "F32", 1, {R1}, b1, sizeof b1},
        CQ_MARK(P "a", "{\"format\": \"nvfp4\"}"),
        {P "b.weight", "U8", 2, {R2, 8}, c2, R2 * 8},
        {P "b.weight_scale", "F8_E4M3", 2, {256, 4}, s2, 256 * 4},
        {P "b.weight_scale_2", "F32", 0, {0}, &g2, 4},
        {P "b.bias", "F32", 1, {B2}, b2, sizeof b2},
        CQ_MARK(P "b", "{\"format\": \"nvfp4\"}"),
        {P "c.weight", "U8", 2, {R3, 8}, c3, R3 * 8},
        {P "c.weight_scale", "F8_E4M3", 2, {128, 4}, s3, 128 * 4},
        {P "c.weight_scale_2", "BF16", 0, {0}, &g3, 2},
        CQ_MARK(P "c", "{\"format\": \"nvfp4\"}"),
        {P "m.weight", "F8_E4M3", 2, {MR, 96}, cm1, MR * 96},
        {P "m.weight_scale", "U8", 2, {256, 4}, sm1, sizeof sm1},
        {P "m.bias", "F32", 1, {MR}, bm, sizeof bm},
        CQ_MARK(P "m", "{\"format\": \"mxfp8\"}"),
        {P "n.weight", "F8_E4M3", 2, {32, 64}, cm2, 32 * 64},
        {P "n.weight_scale", "F8_E8M0", 2, {128, 4}, sm2, sizeof sm2},
        CQ_MARK(P "n", "{\"format\": \"mxfp8\"}"),
        {P "i.weight", "I8", 2, {IR, IC}, ci1, IR * IC},
        {P "i.weight_scale", "F32", 0, {0}, &nan, 4},
        CQ_MARK(P "i", "{\"format\": \"int8_tensorwise\"}"),
        {P "j.weight", "I8", 2, {IR, IC}, ci2, IR * IC},
        {P "j.weight_scale", "F16", 2, {IR, 1}, si2, sizeof si2},
        CQ_MARK(P "j", "{\"format\": \"int8_tensorwise\"}"),
        {P "k.weight", "I8", 2, {IR, IC}, ci3, IR * IC},
        {P "k.weight_scale", "BF16", 2, {IR, 1}, si3, sizeof si3},
        CQ_MARK(P "k", "{\"format\": \"int8_tensorwise\"}"),
        {P "l.weight", "I8", 2, {IR, IC}, ci4, IR * IC},
        {P "l.weight_scale", "F32", 1, {1}, &inf, 4},
        CQ_MARK(P "l", "{\"format\": \"int8_tensorwise\"}"),
    };
#undef P
    write_model(d, t, COUNT(t), "{}");
    free(c1), free(s1), free(c2), free(s2), free(c3), free(s3), free(cm1), free(cm2);
    free(ci1), free(ci2), free(ci3), free(ci4);
    return d;
}

/* ---- comparisons ------------------------------------------------------------------------- */

typedef dta_status (*run_fn)(dtap_dq *, size_t, uint64_t, size_t, dta_dtype, dta_overflow_mode,
                             void *, dta_convert_stats *, dta_error *);

static size_t packed_jobs; /* DQB_PACKED jobs emulated */
static size_t comfy_jobs;  /* ... of them ComfyUI comfy_quant's */
static size_t xs_jobs;     /* DQB_XS jobs: x and s decoded on the host (none is left) */

/* dtap_dq_run's way, on the host, with the kernel's element function; wide: grid jobs
 * index in 64 bits even where 32 suffice (the path of huge tensors). */
static dta_status emulate(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                          dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                          dta_error *err, int wide)
{
    unsigned char *o = dst;
    unsigned eo = to == DTA_F32 ? 4 : 2;
    size_t done = 0;
    while (done < n) {
        /* the device's job: a packed scheme's stored bytes (a prefix of the range at a
         * time), else the operands dtap_dq_job prepares */
        dqb_job j;
        dta_status s = dtap_dq_job_dev(d, p, first + done, n - done, to, mode, &j, err);
        if (s != DTA_OK)
            return s;
        cr_assert(j.n > 0 && j.n <= n - done, "job of %llu elements for %zu",
                  (unsigned long long)j.n, n - done);
        if (j.kind == DQB_GRID) {
            cr_assert(j.narrow, "a run of %zu elements is narrow", n);
            j.narrow = !wide;
        }
        if (j.kind == DQB_PACKED)
            packed_jobs++;
        if (j.kind == DQB_PACKED && j.pk >= DQP_CQ_NVFP4 && j.pk <= DQP_CQ_INT8)
            comfy_jobs++;
        if (j.kind == DQB_XS)
            xs_jobs++;
        for (size_t k = 0; k < j.n; k++) {
            int cls;
            uint32_t r = dqb_elem(&j, k, &cls);
            memcpy(o + (done + k) * eo, &r, eo); /* little-endian host */
            st->elements++;
            st->nan += cls == DTAB_NAN;
            st->inf += cls == DTAB_INF;
            st->overflow += cls == DTAB_OVF;
            st->underflow += cls == DTAB_UNF;
        }
        done += (size_t)j.n;
    }
    return DTA_OK;
}

static dta_status run_emulated(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                               dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                               dta_error *err)
{
    return emulate(d, p, first, n, to, mode, dst, st, err, 0);
}

static dta_status run_emulated_wide(dtap_dq *d, size_t p, uint64_t first, size_t n,
                                    dta_dtype to, dta_overflow_mode mode, void *dst,
                                    dta_convert_stats *st, dta_error *err)
{
    return emulate(d, p, first, n, to, mode, dst, st, err, 1);
}

/* Every parameter of the model at dir, every target and mode, whole and in ranges of
 * `step` elements: fn against dtap_dq_run. Returns the parameters compared; adds
 * dtap_dq_run's counts to *tot (NULL: not). */
static size_t compare_dir(const char *dir, run_fn fn, const char *how, dta_convert_stats *tot)
{
    dta_model *m;
    dtap_dq *d = NULL;
    dta_error err;
    size_t np = 0;
    cr_assert_eq(dta_model_open(dir, &m, &err), DTA_OK, "%s: %s", dir, err.msg);
    cr_assert_eq(dtap_dq_open(m, &d, &err), DTA_OK, "%s: %s", dir, err.msg);
    cr_assert(d, "%s: nothing quantized", dir);
    for (size_t i = 0; i < m->ntensors; i++) {
        size_t p;
        if (dtap_dq_role(d, m->tensors[i].name, &p) != DTAP_DQ_WEIGHT)
            continue;
        int rank;
        const uint64_t *shape;
        uint64_t numel;
        dtap_dq_shape(d, p, &rank, &shape, &numel);
        cr_assert(numel <= (1u << 22), "%s: fixture too large", dir);
        unsigned char *want = malloc(numel * 4 + 1), *got = malloc(numel * 4 + 1);
        cr_assert(want && got);
        static const size_t STEPS[] = {0, 1, 7, 100, 4097};
        for (size_t ti = 0; ti < COUNT(TARGETS); ti++)
            for (size_t mi = 0; mi < COUNT(MODES); mi++)
                for (size_t si = 0; si < COUNT(STEPS); si++) {
                    if (STEPS[si] == 1 && numel > 2048)
                        continue; /* one call per element: small parameters only */
                    size_t step = STEPS[si] ? STEPS[si] : (size_t)numel;
                    unsigned eo = TARGETS[ti] == DTA_F32 ? 4 : 2;
                    dta_convert_stats sw = {0}, sg = {0};
                    for (uint64_t e = 0; e < numel; e += step) {
                        size_t k = numel - e < step ? (size_t)(numel - e) : step;
                        cr_assert_eq(dtap_dq_run(d, p, e, k, TARGETS[ti], MODES[mi],
                                                 want + e * eo, &sw, &err),
                                     DTA_OK, "%s", err.msg);
                        cr_assert_eq(fn(d, p, e, k, TARGETS[ti], MODES[mi], got + e * eo, &sg,
                                        &err),
                                     DTA_OK, "%s %s: %s", how, dir, err.msg);
                    }
                    for (uint64_t e = 0; e < numel; e++)
                        cr_assert(!memcmp(want + e * eo, got + e * eo, eo),
                                  "%s: %s '%s' -> %s mode %d step %zu: element %llu differs",
                                  how, dir, dtap_dq_out_name(d, p), dta_dtype_name(TARGETS[ti]),
                                  (int)MODES[mi], step, (unsigned long long)e);
                    cr_assert(sw.elements == sg.elements && sw.nan == sg.nan &&
                                  sw.inf == sg.inf && sw.overflow == sg.overflow &&
                                  sw.underflow == sg.underflow,
                              "%s: %s '%s' -> %s: statistics differ (nan %llu/%llu inf "
                              "%llu/%llu ovf %llu/%llu unf %llu/%llu)",
                              how, dir, dtap_dq_out_name(d, p), dta_dtype_name(TARGETS[ti]),
                              (unsigned long long)sw.nan, (unsigned long long)sg.nan,
                              (unsigned long long)sw.inf, (unsigned long long)sg.inf,
                              (unsigned long long)sw.overflow, (unsigned long long)sg.overflow,
                              (unsigned long long)sw.underflow,
                              (unsigned long long)sg.underflow);
                    if (tot) {
                        tot->nan += sw.nan;
                        tot->inf += sw.inf;
                        tot->overflow += sw.overflow;
                        tot->underflow += sw.underflow;
                    }
                }
        free(want);
        free(got);
        np++;
    }
    dtap_dq_free(d);
    dta_model_free(m);
    return np;
}

/* The committed quantized fixtures dtaudit dequantizes. */
static const char *const FIXTURES[] = {
    "tests/fixtures/quant/bnb-nf4-dq",   "tests/fixtures/quant/bnb-fp4",
    "tests/fixtures/quant/bnb-int8",     "tests/fixtures/quant/ct-fp8-block",
    "tests/fixtures/quant/ct-fp8-dynamic", "tests/fixtures/quant/ct-int8-w8a8",
    "tests/fixtures/quant/ct-nvfp4a16",  "tests/fixtures/quant/ct-w4a16",
    "tests/fixtures/quant/ct-mxfp4a16",
    "tests/fixtures/quant/ct-w4a16-asym", "tests/dequant/ct/nvfp4",
    "tests/dequant/ct/w4a16-channel",    "tests/dequant/ct/w4a16-group-asym",
    "tests/dequant/ct/w8a16-group",      "tests/dequant/ct/mxfp4",
    "tests/dequant/comfy/scaled.safetensors", "tests/dequant/comfy/mixed.safetensors",
    "tests/dequant/comfy/nvfp4.safetensors", "tests/dequant/comfy/mxfp8.safetensors",
    "tests/dequant/comfy/int8.safetensors",
};

static void fixture_path(char *buf, size_t n, const char *rel)
{
    const char *src = getenv("srcdir");
    snprintf(buf, n, "%s/%s", src ? src : ".", rel);
}

/* Every hostile directory written here and every fixture through fn; counts parameters. */
static void compare_all(run_fn fn, const char *how)
{
    size_t np = 0;
    char *dirs[] = {block_dir(), per_tensor_dir(0x3F800000u, "F8_E4M3"),
                    per_tensor_dir(0x00000001u, "F8_E4M3"), per_tensor_dir(0x7F000000u, "F8_E5M2"),
                    per_tensor_dir(0x7FC00000u, "F8_E4M3"), per_row_dir(),
                    mxfp4_dir(), modelopt_dir(), modelopt_stack_dir(), ct_nvfp4_dir(0x00000000u),
                    ct_nvfp4_dir(0x7FC00001u), ct_nvfp4_dir(0x00800000u), gptq_dir(),
                    awq_dir(), comfy_dir()};
    for (size_t i = 0; i < COUNT(dirs); i++) {
        dta_convert_stats tot = {0};
        np += compare_dir(dirs[i], fn, how, &tot);
        if (i == COUNT(dirs) - 1) /* comfy_dir: its hostile values reach every class */
            cr_assert(tot.nan && tot.inf && tot.overflow && tot.underflow,
                      "comfy_quant: nan %llu inf %llu overflow %llu underflow %llu",
                      (unsigned long long)tot.nan, (unsigned long long)tot.inf,
                      (unsigned long long)tot.overflow, (unsigned long long)tot.underflow);
        rmdir_all(dirs[i]);
        free(dirs[i]);
    }
    cr_assert_eq(np, 30, "hostile parameters compared: %zu", np);
    for (size_t i = 0; i < COUNT(FIXTURES); i++) {
        char path[1024];
        fixture_path(path, sizeof path, FIXTURES[i]);
        size_t k = compare_dir(path, fn, how, NULL);
        cr_assert(k > 0, "%s: no parameter", path);
        np += k;
    }
    if (fn != dtap_dq_run_cuda) {
        cr_assert(packed_jobs > 0, "%s: no packed scheme went through DQB_PACKED", how);
        cr_assert(comfy_jobs > 0, "%s: no comfy_quant layer went through DQB_PACKED", how);
        cr_assert_eq(xs_jobs, 0, "%s: %zu device jobs carry x and s decoded on the host", how,
                     xs_jobs);
    }
    cr_log_info("%s: %zu parameters equal dtap_dq_run (%zu packed jobs, %zu comfy_quant)\n",
                how, np, packed_jobs, comfy_jobs);
}

Test(cuda_dq_host, kernel_element_function_equals_dtap_dq_run)
{
    compare_all(run_emulated, "dqb_elem on the host");
    compare_all(run_emulated_wide, "dqb_elem on the host, 64-bit grid indexing");
}

/* dqb_mul fixes NaN results (the GPU's multiply returns one canonical NaN): x86 SSE's
 * rule, explicit; other products are one IEEE multiply with subnormals. */
Test(cuda_dq_host, products_and_their_nans)
{
    static const uint32_t T[][3] = {
        {0xFFF00000u, 0x3F800000u, 0xFFF00000u}, /* E4M3 -NaN code x 1: its NaN */
        {0x3F800000u, 0x7F800001u, 0x7FC00001u}, /* signalling NaN scale: quieted */
        {0x7FC00001u, 0xFFC00002u, 0x7FC00001u}, /* two NaNs: the code's */
        {0x7F800000u, 0x00000000u, 0xFFC00000u}, /* inf x 0: indefinite */
        {0x80000000u, 0xFF800000u, 0xFFC00000u}, /* -0 x -inf: indefinite */
        {0x7F800000u, 0xBF800000u, 0xFF800000u}, /* inf x -1 */
        {0x00000001u, 0x3F000000u, 0x00000000u}, /* 2^-150: tie to even, 0 */
        {0x00000003u, 0x3F000000u, 0x00000002u}, /* 1.5 ulp: tie to even, 2 */
        {0x80000001u, 0x3F400000u, 0x80000001u}, /* -0.75 ulp: -1 ulp */
        {0x7F7FFFFFu, 0x40000000u, 0x7F800000u}, /* beyond f32: inf */
        {0x3F800001u, 0x3F800001u, 0x3F800002u}, /* (1 + 2^-23)^2: rounded */
        {0x3FC00000u, 0x00400000u, 0x00600000u}, /* 1.5 x 2^-127 (E8M0 0): subnormal, exact */
    };
    for (size_t i = 0; i < COUNT(T); i++) {
        cr_expect_eq(dqb_mul(T[i][0], T[i][1]), T[i][2], "%08x x %08x = %08x, want %08x",
                     T[i][0], T[i][1], dqb_mul(T[i][0], T[i][1]), T[i][2]);
#if defined(__x86_64__) || defined(__i386__)
        if (i != 2) { /* the hardware agrees (two NaNs depend on the operand order) */
            volatile float x, s;
            float p;
            uint32_t pb;
            memcpy((void *)&x, &T[i][0], 4);
            memcpy((void *)&s, &T[i][1], 4);
            p = x * s;
            memcpy(&pb, &p, 4);
            cr_expect_eq(pb, T[i][2], "x86 %08x x %08x = %08x", T[i][0], T[i][1], pb);
        }
#endif
    }
}

Test(cuda_dq_api, absence)
{
    char why[512], dir[1024];
    dta_model *m;
    dtap_dq *d = NULL;
    dta_error err;
    unsigned char out[64];
    dta_convert_stats st = {0};
    if (dta_cuda_available(why, sizeof why))
        return; /* the device tests below cover it */
    fixture_path(dir, sizeof dir, "tests/fixtures/quant/ct-fp8-block");
    cr_assert_eq(dta_model_open(dir, &m, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dtap_dq_open(m, &d, &err), DTA_OK, "%s", err.msg);
    dta_status s = dtap_dq_run_cuda(d, 0, 0, 8, DTA_BF16, DTA_OVERFLOW_ERROR, out, &st, &err);
#ifdef DTA_HAVE_CUDA
    cr_assert_eq(s, DTA_E_DEVICE, "%s", err.msg);
    cr_assert_str_eq(err.msg, why);
#else
    cr_assert_eq(s, DTA_E_UNSUPPORTED);
    cr_assert_str_eq(err.msg, "built without CUDA");
#endif
    cr_assert_eq(st.elements, 0, "nothing counted on failure");
    dtap_dq_free(d);
    dta_model_free(m);
}

/* ---- device ------------------------------------------------------------------------------ */

Test(cuda_dq_gpu, kernels_equal_dtap_dq_run)
{
    if (!dta_cuda_available(NULL, 0))
        cr_skip_test("no CUDA device");
    compare_all(dtap_dq_run_cuda, "dtap_dq_run_cuda");
    dta_cuda_release();
}
