/* libFuzzer target: audit --values (dta_values_scan) on any input. The input is written as
 * model.safetensors into a private temp directory (a tmpfs where there is one, see
 * fuzz_tmpdir): the value scan and the dequantization read tensor data by path, from the
 * file the reader recorded. It is opened with dta_model_open and scanned against a target
 * chosen from the input's length (none, F16, BF16, F32) with 1 or 2 threads and small
 * chunks, so plain tensors go through the value kernels and quantized parameters (FP8
 * block / per-tensor / per-row, compressed-tensors, FP4, ... as the quantization analysis
 * recognises them from names, dtypes and shapes) through dequant.c. The counts must be
 * consistent: classes never exceed the elements. */
#include "fuzz_common.h"
#include "dtaudit/values.h"

static char path[512];

static void cleanup(void)
{
    unlink(path);
    rmdir(fuzz_tmpdir());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dta_error err = {0};
    dta_model *m = NULL;
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/model.safetensors", fuzz_tmpdir());
        atexit(cleanup);
    }
    if (fuzz_write_file(path, data, size) != 0) abort();
    if (dta_model_open(path, &m, &err) != DTA_OK) {
        if (m || !err.msg[0]) abort();
        return 0;
    }
    static const dta_dtype targets[] = {DTA_DTYPE_NONE, DTA_F16, DTA_BF16, DTA_F32};
    dta_values_options o = {.target = targets[size % 4], .threads = 1 + (unsigned)(size / 4 % 2),
                            .chunk_bytes = 64 + size % 512, .device = DTA_DEVICE_CPU};
    dta_values *v = NULL;
    if (dta_values_scan(m, &o, &v, &err) == DTA_OK) {
        if (!v || v->ntensors != m->ntensors) abort();
        for (size_t i = 0; i < v->ntensors; i++) {
            const dta_values_tensor *t = &v->tensors[i];
            if (t->skipped) continue;
            if (t->nan + t->pos_inf + t->neg_inf + t->zero > t->elements) abort();
            if (t->overflow + t->underflow + t->subnormal > t->elements) abort();
            if (!t->dequantized && t->elements != m->tensors[i].numel) abort();
        }
        dta_values_free(v);
    } else if (v || !err.msg[0]) {
        abort();
    }
    dta_model_free(m);
    return 0;
}
