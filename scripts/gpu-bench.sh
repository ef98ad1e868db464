#!/bin/sh
# GPU benchmark of the CUDA backend (run it on a machine with an NVIDIA GPU).
#
#   scripts/gpu-bench.sh [BUILD_DIR]     (default: the source tree, configured --with-cuda)
#
# 1. Kernel throughput (device buffers, no host copies), counting source + result bytes:
#    f32 -> bf16 is 6 bytes per element; compared with the device's theoretical memory
#    bandwidth and with a device-to-device cudaMemcpy of the same bytes. Target: f32 -> bf16
#    >= 80% of the memory bandwidth. Also convert --dequantize's kernel on block FP8 ->
#    BF16 (3 bytes per element, scales not counted).
# 2. End to end in memory: dta_convert_cuda / dta_verify_cuda (pageable host buffers,
#    staged through the pinned pipe) against dta_convert / dta_verify on the CPU.
# 3. End to end on a 4 GiB safetensors checkpoint: `dtaudit convert --device cuda` against
#    `--device cpu` (when the CLI has --device), and torch `.cuda().to(torch.bfloat16)`
#    when Python with a CUDA torch is available.
# 4. End to end `convert --dequantize` of a 1.9 GiB block-FP8 checkpoint, --device cuda
#    against --device cpu (outputs compared).
# Environment: GPU_BENCH_N (elements for 1 and 2, default 268435456), GPU_BENCH_DIR (scratch
# directory for the checkpoint, default a temporary directory), GPU_BENCH_SKIP_FILE=1.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top}
build=$(cd "$build" && pwd)
lib=$build/src/lib/libdtaudit.a
[ -f "$build/Makefile" ] || { echo "gpu-bench: $build is not configured" >&2; exit 2; }
grep -q '^#define DTA_HAVE_CUDA 1' "$build/config.h" ||
    { echo "gpu-bench: $build was built without CUDA (./configure --with-cuda)" >&2; exit 2; }
make -C "$build" -s src/lib/libdtaudit.a src/cli/dtaudit >/dev/null
cuda_libs=$(sed -n 's/^CUDA_LIBS = //p' "$build/Makefile")
deps=$(pkg-config --libs libzip libcjson zlib)
scratch=${GPU_BENCH_DIR:-$(mktemp -d)}
mkdir -p "$scratch"
trap 'rm -rf "$scratch/gpu-bench" "$scratch/gpu-bench.c" "$scratch/ckpt.safetensors" "$scratch/out-"*.safetensors "$scratch/fp8" "$scratch/out-dq-"*' EXIT

cat >"$scratch/gpu-bench.c" <<'EOF'
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/convert_cuda.h"
#include "cuda/dequant_cuda.h"
#include "dtaudit/backend.h"
#include "dtaudit/convert.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static size_t esz(dta_dtype t) { return dta_dtype_get(t)->bits / 8; }

/* closes the JSON header hdr (len bytes, room for 9 more), pads it to 8 bytes and writes
 * its length and it to f */
static void put_header(FILE *f, char *hdr, size_t len)
{
    hdr[len++] = '}';
    while (len % 8)
        hdr[len++] = ' ';
    unsigned long long hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
}

/* writes a safetensors file of nt F32 tensors of n elements each */
static int write_ckpt(const char *path, int nt, size_t n)
{
    char hdr[8192];
    size_t len = 0, off = 0;
    FILE *f = fopen(path, "wb");
    float *buf = malloc(n * 4);
    if (!f || !buf)
        return -1;
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{");
    for (int t = 0; t < nt; t++, off += n * 4)
        len += (size_t)snprintf(hdr + len, sizeof hdr - len,
                                "%s\"layer.%d.weight\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                                "\"data_offsets\":[%zu,%zu]}", t ? "," : "", t, n, off, off + n * 4);
    put_header(f, hdr, len);
    unsigned s = 12345;
    for (int t = 0; t < nt; t++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            buf[i] = ((int)(s >> 8) - (1 << 23)) / 4194304.0f;
        }
        if (fwrite(buf, 4, n, f) != n)
            return -1;
    }
    free(buf);
    return fclose(f);
}

/* DIR/model.safetensors: nt block-FP8 weights [7168, 7168] (F8_E4M3 codes, never NaN)
 * with F32 weight_scale_inv [56, 56], and DIR/config.json (DeepSeek-V3's quantization). */
static int write_fp8(const char *dir, int nt)
{
    char path[4096], hdr[16384];
    size_t len = 0, off = 0, n = (size_t)7168 * 7168, ns = 56 * 56;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"model_type\":\"deepseek_v3\",\"torch_dtype\":\"bfloat16\","
               "\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
               "\"activation_scheme\":\"dynamic\",\"weight_block_size\":[128,128]}}\n");
    if (fclose(f))
        return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!(f = fopen(path, "wb")))
        return -1;
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{");
    for (int t = 0; t < nt; t++) {
        len += (size_t)snprintf(hdr + len, sizeof hdr - len,
                                "%s\"model.layers.%d.mlp.down_proj.weight\":{\"dtype\":\"F8_E4M3\","
                                "\"shape\":[7168,7168],\"data_offsets\":[%zu,%zu]},"
                                "\"model.layers.%d.mlp.down_proj.weight_scale_inv\":{\"dtype\":"
                                "\"F32\",\"shape\":[56,56],\"data_offsets\":[%zu,%zu]}",
                                t ? "," : "", t, off, off + n, t, off + n, off + n + ns * 4);
        off += n + ns * 4;
    }
    put_header(f, hdr, len);
    unsigned char *c = malloc(n);
    float sc[56 * 56];
    unsigned s = 777;
    if (!c)
        return -1;
    for (int t = 0; t < nt; t++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            c[i] = (unsigned char)((s >> 16) % 0x7F) | (unsigned char)(s >> 24 & 0x80);
        }
        for (size_t i = 0; i < ns; i++)
            sc[i] = 1e-4f * (float)(1 + i % 97);
        if (fwrite(c, 1, n, f) != n || fwrite(sc, 4, ns, f) != ns)
            return -1;
    }
    free(c);
    return fclose(f);
}

int main(int argc, char **argv)
{
    char why[512], msg[256];
    dtap_cu_devinfo d;
    dta_error err;
    size_t N = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)1 << 28;
    if (argc > 3 && strcmp(argv[2], "--write") == 0)
        return write_ckpt(argv[3], 16, (size_t)1 << 26) ? 1 : 0; /* 16 x 256 MiB = 4 GiB */
    if (argc > 3 && strcmp(argv[2], "--write-fp8") == 0)
        return write_fp8(argv[3], 40) ? 1 : 0; /* 40 x 49 MiB = 1.9 GiB of codes */
    if (!dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "gpu-bench: %s\n", why);
        return 3;
    }
    if (dtap_cu_probe(0, &d, msg, sizeof msg)) {
        fprintf(stderr, "gpu-bench: %s\n", msg);
        return 3;
    }
    printf("device: %s\nnvcc: %s; theoretical memory bandwidth %.0f GB/s\n\n", why,
           dtap_cu_compiler_version(), d.mem_bw_gbs);
    printf("1. kernel throughput (source + result bytes), n = %zu\n", N);
    printf("   %-16s %10s %10s %8s %8s\n", "conversion", "ms", "GB/s", "%peak", "%memcpy");
    static const dta_dtype pairs[][2] = {{DTA_F32, DTA_BF16}, {DTA_F32, DTA_F16},
                                         {DTA_BF16, DTA_F32}, {DTA_F16, DTA_F32},
                                         {DTA_F16, DTA_BF16}, {DTA_F64, DTA_F32},
                                         {DTA_F64, DTA_BF16}, {DTA_F8_E4M3, DTA_BF16}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        dta_dtype a = pairs[k][0], b = pairs[k][1];
        size_t n = a == DTA_F64 ? N / 2 : N;
        double kms, cms;
        if (dtap_cu_bench_kernel(0, a, b, n, 20, &kms, &cms, msg, sizeof msg)) {
            fprintf(stderr, "gpu-bench: %s\n", msg);
            return 1;
        }
        double bytes = (double)n * (esz(a) + esz(b)), gbs = bytes / kms / 1e6;
        char name[40];
        snprintf(name, sizeof name, "%s->%s", dta_dtype_name(a), dta_dtype_name(b));
        printf("   %-16s %10.3f %10.1f %7.1f%% %7.1f%%\n", name, kms, gbs,
               d.mem_bw_gbs > 0 ? 100 * gbs / d.mem_bw_gbs : 0, 100 * cms / kms);
    }

    {
        /* convert --dequantize's kernel: block FP8 codes (1 byte) -> BF16 (2 bytes) */
        double kms;
        size_t ne;
        if (dtap_cu_dq_bench(0, N, 20, &kms, &ne, msg, sizeof msg)) {
            fprintf(stderr, "gpu-bench: %s\n", msg);
            return 1;
        }
        double gbs = ne * 3.0 / kms / 1e6;
        printf("   %-16s %10.3f %10.1f %7.1f%%   (dequantize: block F8_E4M3 x F32 scale, n = %zu)\n",
               "dq F8blk->BF16", kms, gbs, d.mem_bw_gbs > 0 ? 100 * gbs / d.mem_bw_gbs : 0, ne);
    }

    printf("\n2. end to end in memory, F32 -> BF16, n = %zu (%.2f GiB in)\n", N, N * 4.0 / (1 << 30));
    float *src = malloc(N * 4);
    unsigned short *o1 = malloc(N * 2), *o2 = malloc(N * 2);
    if (!src || !o1 || !o2)
        return 1;
    for (size_t i = 0; i < N; i++)
        src[i] = (float)((double)(i % 1000003) / 1000.0 - 500.0);
    memset(o1, 0, N * 2);
    memset(o2, 0, N * 2);
    dta_convert_stats s1 = {0}, s2 = {0};
    double t0 = now();
    if (dta_convert(DTA_F32, DTA_BF16, src, o1, N, DTA_OVERFLOW_INF, &s1, &err))
        return 1;
    double t1 = now();
    if (dta_convert_cuda(DTA_F32, DTA_BF16, src, o2, N, DTA_OVERFLOW_INF, &s2, &err)) {
        fprintf(stderr, "gpu-bench: %s\n", err.msg);
        return 1;
    }
    double t2 = now();
    if (dta_convert_cuda(DTA_F32, DTA_BF16, src, o2, N, DTA_OVERFLOW_INF, &s2, &err))
        return 1;
    double t3 = now();
    printf("   cpu (%s)  %8.3f s  %6.2f GB/s\n", dta_convert_backend(), t1 - t0, N * 6.0 / (t1 - t0) / 1e9);
    printf("   cuda first call %8.3f s (CUDA init, pinned allocation)\n", t2 - t1);
    printf("   cuda            %8.3f s  %6.2f GB/s   bytes %s\n", t3 - t2,
           N * 6.0 / (t3 - t2) / 1e9, memcmp(o1, o2, N * 2) ? "DIFFER" : "identical");
    dta_verify_stats v1 = {0}, v2 = {0};
    t0 = now();
    dta_verify(DTA_F32, DTA_BF16, src, o1, N, DTA_OVERFLOW_INF, &v1, &err);
    t1 = now();
    if (dta_verify_cuda(DTA_F32, DTA_BF16, src, o1, N, DTA_OVERFLOW_INF, &v2, &err))
        return 1;
    t2 = now();
    printf("   verify cpu      %8.3f s; cuda %8.3f s; max rel err %.3g / %.3g, mismatches %llu / %llu\n",
           t1 - t0, t2 - t1, v1.max_rel_err, v2.max_rel_err,
           (unsigned long long)v1.mismatches, (unsigned long long)v2.mismatches);
    dta_cuda_release();
    return memcmp(o1, o2, N * 2) ? 1 : 0;
}
EOF
# shellcheck disable=SC2086 # the library lists are word lists
cc -std=c11 -O2 -Wall -Wextra -I"$top/include" -I"$top/src/lib" "$scratch/gpu-bench.c" -o "$scratch/gpu-bench" \
    "$lib" $cuda_libs $deps -lm
"$scratch/gpu-bench" "${GPU_BENCH_N:-268435456}"

[ "${GPU_BENCH_SKIP_FILE:-}" = 1 ] && exit 0
echo
echo "3. end to end on a 4 GiB safetensors checkpoint (16 F32 tensors), to BF16"
"$scratch/gpu-bench" 0 --write "$scratch/ckpt.safetensors"
dta=$build/src/cli/dtaudit
t() { # t LABEL CMD...: wall seconds of CMD (page cache warm)
    label=$1; shift
    s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
    echo "   $label $(echo "$e - $s" | bc) s"
}
cat "$scratch/ckpt.safetensors" >/dev/null
if "$dta" convert --help 2>&1 | grep -q -- '--device'; then
    t "dtaudit --device cpu " "$dta" convert --device cpu --to bf16 --force "$scratch/ckpt.safetensors" -o "$scratch/out-cpu.safetensors"
    t "dtaudit --device cuda" "$dta" convert --device cuda --to bf16 --force "$scratch/ckpt.safetensors" -o "$scratch/out-cuda.safetensors"
    cmp "$scratch/out-cpu.safetensors" "$scratch/out-cuda.safetensors" && echo "   outputs identical"
    t "dtaudit verify --device cuda" "$dta" verify --device cuda "$scratch/ckpt.safetensors" "$scratch/out-cuda.safetensors"
    echo
    echo "4. convert --dequantize of 40 block-FP8 [7168, 7168] weights (1.9 GiB) to BF16"
    mkdir -p "$scratch/fp8"
    "$scratch/gpu-bench" 0 --write-fp8 "$scratch/fp8"
    cat "$scratch/fp8/model.safetensors" >/dev/null
    t "dtaudit --device cpu " "$dta" convert -q --device cpu --to bf16 --dequantize "$scratch/fp8" -o "$scratch/out-dq-cpu"
    t "dtaudit --device cuda" "$dta" convert -q --device cuda --to bf16 --dequantize "$scratch/fp8" -o "$scratch/out-dq-cuda"
    diff -r "$scratch/out-dq-cpu" "$scratch/out-dq-cuda" >/dev/null && echo "   outputs identical" ||
        echo "   OUTPUTS DIFFER"
else
    echo "   (this dtaudit has no --device option yet)"
fi
py=${PYTHON:-python3}
if "$py" -c 'import torch, safetensors; assert torch.cuda.is_available()' 2>/dev/null; then
    "$py" - "$scratch/ckpt.safetensors" <<'EOF'
import sys, time, torch
from safetensors.torch import load_file, save_file
t0 = time.time(); sd = load_file(sys.argv[1]); t1 = time.time()
cpu = {k: v.to(torch.bfloat16) for k, v in sd.items()}; t2 = time.time()
torch.cuda.synchronize(); t3 = time.time()
gpu = {k: v.cuda().to(torch.bfloat16).cpu() for k, v in sd.items()}; torch.cuda.synchronize(); t4 = time.time()
same = all(torch.equal(cpu[k].view(torch.int16), gpu[k].view(torch.int16)) for k in sd)
print(f"   torch load {t1-t0:.2f} s; .to(bf16) cpu {t2-t1:.2f} s; .cuda().to(bf16).cpu() {t4-t3:.2f} s; same bytes: {same}")
EOF
else
    echo "   (no Python torch with CUDA: torch comparison skipped)"
fi
