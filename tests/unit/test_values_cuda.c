#define _DEFAULT_SOURCE /* mkstemp */
/* The CUDA path of audit --values (values.h dta_values_count_cuda, backend_cuda.c,
 * src/lib/cuda/values.cu): identical counts to the CPU kernels.
 *
 * Everywhere: without CUDA built in, or without a device, the call and a scan asked to use
 * the GPU fail with the reason and nothing else changes (auto stays on the CPU).
 * With a device (else each test skips: "no CUDA device"): every 16-bit and 8-bit code,
 * boundary and random f32/f64 patterns, odd lengths, a buffer larger than the device
 * chunk, against dta_values_count; and a whole-model scan on the GPU against the CPU's. */
#include "config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "dtaudit/model.h"
#include "dtaudit/values.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Du;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x9E3779B97F4A7C15u;
}

static const dta_dtype TARGETS[] = {DTA_F16, DTA_BF16, DTA_F32};

/* A small safetensors file: one F32 tensor of n values (a few specials) and one BF16. */
static void write_model(const char *path, size_t n)
{
    char hdr[256];
    int len = snprintf(hdr, sizeof hdr,
                       "{\"a.w\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
                       "\"b.w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[%zu,%zu]}}",
                       n, n * 4, n * 4, n * 4 + 8);
    uint64_t hl = (uint64_t)len;
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (size_t i = 0; i < n; i++) {
        float v = (float)((double)(i % 1000) * 70.0 - 1000) * (i % 7 == 0 ? 1e-12f : 1.0f);
        if (i == 5)
            v = NAN;
        if (i == 6)
            v = -INFINITY;
        fwrite(&v, 4, 1, f);
    }
    uint16_t b[4] = {0x7F80, 0x0001, 0x3F80, 0x8000};
    fwrite(b, 2, 4, f);
    fclose(f);
}

Test(values_cuda, absence_and_auto)
{
    char why[512];
    dta_error err;
    dta_values_plan p;
    dta_values_counts c;
    float x[2] = {1.0f, 70000.0f};
    cr_assert(dta_values_plan_make(DTA_F32, DTA_F16, &p));
    dta_values_counts_init(&c);
    bool avail = dta_cuda_available(why, sizeof why);
    if (avail)
        return; /* the device tests below cover it */
    dta_status st = dta_values_count_cuda(&p, x, 2, &c, &err);
#ifdef DTA_HAVE_CUDA
    cr_assert_eq(st, DTA_E_DEVICE, "%s", err.msg);
#else
    cr_assert_eq(st, DTA_E_UNSUPPORTED);
    cr_assert_str_eq(err.msg, "built without CUDA");
#endif
    cr_expect_eq(c.overflow, 0, "nothing counted on failure");
    /* a scan asked to use the GPU fails with the reason; auto runs on the CPU */
    char path[] = "/tmp/dtaudit-values-cuda-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_model(path, 1000);
    dta_model *m;
    cr_assert_eq(dta_model_open(path, &m, &err), DTA_OK, "%s", err.msg);
    dta_values *v = (dta_values *)1;
    dta_values_options oc = {.target = DTA_F16, .device = DTA_DEVICE_CUDA};
    cr_expect_eq(dta_values_scan(m, &oc, &v, &err), DTA_E_DEVICE);
    cr_expect_null(v);
    cr_expect(strstr(err.msg, "--device cuda") && strstr(err.msg, why), "%s", err.msg);
    dta_values_options oa = {.target = DTA_F16};
    cr_assert_eq(dta_values_scan(m, &oa, &v, &err), DTA_OK, "%s", err.msg);
    cr_expect_str_neq(v->backend, "cuda");
    cr_expect_eq(v->tensors[0].nan, 1);
    dta_values_free(v);
    dta_model_free(m);
    unlink(path);
}

/* ---- device ------------------------------------------------------------------------------ */

static void need_gpu(void)
{
    if (!dta_cuda_available(NULL, 0))
        cr_skip_test("no CUDA device");
}

static void same(const dta_values_counts *a, const dta_values_counts *b, const char *what)
{
    cr_expect_eq(a->nan, b->nan, "%s: nan", what);
    cr_expect_eq(a->pos_inf, b->pos_inf, "%s: +inf", what);
    cr_expect_eq(a->neg_inf, b->neg_inf, "%s: -inf", what);
    cr_expect_eq(a->zero, b->zero, "%s: zero", what);
    cr_expect_eq(a->overflow, b->overflow, "%s: overflow %llu vs %llu", what,
                 (unsigned long long)a->overflow, (unsigned long long)b->overflow);
    cr_expect_eq(a->underflow, b->underflow, "%s: underflow", what);
    cr_expect_eq(a->subnormal, b->subnormal, "%s: subnormal", what);
    cr_expect_eq(a->max_abs_bits, b->max_abs_bits, "%s: max", what);
    cr_expect_eq(a->min_abs_bits, b->min_abs_bits, "%s: min", what);
}

static void gpu_vs_cpu(dta_dtype from, dta_dtype to, const void *buf, size_t n, const char *what)
{
    dta_values_plan p;
    dta_values_counts g, c;
    dta_error err;
    char w[200];
    cr_assert(dta_values_plan_make(from, to, &p));
    dta_values_counts_init(&g);
    dta_values_counts_init(&c);
    cr_assert_eq(dta_values_count_cuda(&p, buf, n, &g, &err), DTA_OK, "%s", err.msg);
    dta_values_count(&p, buf, n, &c);
    snprintf(w, sizeof w, "%s %s->%s n=%zu", what, dta_dtype_name(from), dta_dtype_name(to), n);
    same(&g, &c, w);
}

Test(values_cuda, every_16bit_and_8bit_code, .init = need_gpu)
{
    static unsigned char buf[65536 * 2];
    for (unsigned c = 0; c < 65536; c++) {
        buf[2 * c] = (unsigned char)c;
        buf[2 * c + 1] = (unsigned char)(c >> 8);
    }
    const dta_dtype f16[] = {DTA_F16, DTA_BF16};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++) {
            gpu_vs_cpu(f16[f], TARGETS[t], buf, 65536, "all codes");
            gpu_vs_cpu(f16[f], TARGETS[t], buf + 2, 65533, "odd length");
        }
    const dta_dtype f8[] = {DTA_F8_E4M3, DTA_F8_E5M2, DTA_F8_E4M3FNUZ, DTA_F8_E5M2FNUZ,
                            DTA_F8_E8M0};
    for (int f = 0; f < 5; f++)
        for (int t = 0; t < 3; t++) {
            gpu_vs_cpu(f8[f], TARGETS[t], buf, 512, "all 8-bit codes");
            for (unsigned c = 0; c < 256; c++) /* one code at a time: the class of each */
                gpu_vs_cpu(f8[f], TARGETS[t], buf + 2 * c, 1, "one 8-bit code");
        }
}

Test(values_cuda, f32_f64_patterns_and_large_buffers, .init = need_gpu)
{
    static const uint32_t edges[] = {0x00000000, 0x00000001, 0x00008000, 0x00010000, 0x007FFFFF,
                                     0x00800000, 0x33000000, 0x33000001, 0x387FC000, 0x38800000,
                                     0x3F800000, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x7F7F7FFF,
                                     0x7F7F8000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000, 0x7F800001};
    size_t n = (40u << 20) / 4 + 3; /* over two device chunks of 16 MiB */
    uint32_t *a = malloc(n * 4);
    uint64_t *d = malloc((n / 2) * 8);
    cr_assert(a && d);
    for (size_t i = 0; i < n; i++) {
        uint32_t e = edges[rnd() % (sizeof edges / sizeof edges[0])];
        a[i] = (i % 3 == 0 ? e : (uint32_t)rnd()) ^ (rnd() & 1 ? 0x80000000u : 0);
    }
    for (size_t i = 0; i < n / 2; i++) {
        uint64_t r = rnd();
        d[i] = i % 2 ? r : (r & UINT64_C(0x80000000000FFFFF)) |
                               ((uint64_t)(0x360 + rnd() % 0xA0) << 52); /* near f16/bf16 range */
    }
    for (int t = 0; t < 3; t++) {
        gpu_vs_cpu(DTA_F32, TARGETS[t], a, sizeof edges / 4, "f32 start");
        gpu_vs_cpu(DTA_F32, TARGETS[t], a, n, "f32 large");
        gpu_vs_cpu(DTA_F64, TARGETS[t], d, n / 2, "f64 large");
        gpu_vs_cpu(DTA_F64, TARGETS[t], d + 1, 1001, "f64 odd");
    }
    free(a);
    free(d);
}

Test(values_cuda, scan_on_the_gpu_equals_the_cpu, .init = need_gpu)
{
    char path[] = "/tmp/dtaudit-values-cuda-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_model(path, 300001);
    dta_model *m;
    dta_error err;
    cr_assert_eq(dta_model_open(path, &m, &err), DTA_OK, "%s", err.msg);
    dta_values *c, *g;
    dta_values_options oc = {.target = DTA_F16, .device = DTA_DEVICE_CPU, .threads = 2};
    dta_values_options og = {.target = DTA_F16, .device = DTA_DEVICE_CUDA, .threads = 2};
    cr_assert_eq(dta_values_scan(m, &oc, &c, &err), DTA_OK, "%s", err.msg);
    cr_assert_eq(dta_values_scan(m, &og, &g, &err), DTA_OK, "%s", err.msg);
    cr_expect_str_eq(g->backend, "cuda");
    cr_expect_str_neq(c->backend, "cuda");
    for (size_t i = 0; i < m->ntensors; i++)
        cr_expect(memcmp(&c->tensors[i], &g->tensors[i], sizeof c->tensors[i]) == 0,
                  "tensor %zu differs on the GPU", i);
    dta_values_free(c);
    dta_values_free(g);
    dta_model_free(m);
    unlink(path);
}
