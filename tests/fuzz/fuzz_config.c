/* libFuzzer target: config.json handling of model directories (format.c read_config,
 * static). The input is written as config.json into a private temp directory that also
 * holds a tiny valid model.safetensors, and the directory is opened with dta_model_open.
 * A seam such as `dta_status dtap_config_parse(const char *text, size_t n, dta_model *m,
 * dta_error *err)` in format.c would let this target skip the file system; until then the
 * directory is on a tmpfs where there is one (fuzz_tmpdir: /dev/shm). */
#include "fuzz_common.h"

static char cfg[512], weights[512];

static void cleanup(void)
{
    unlink(cfg);
    unlink(weights);
    rmdir(fuzz_tmpdir());
}

static void init(void)
{
    unsigned char buf[256];
    size_t n = fuzz_tiny_safetensors(buf, sizeof buf);
    snprintf(weights, sizeof weights, "%s/model.safetensors", fuzz_tmpdir());
    snprintf(cfg, sizeof cfg, "%s/config.json", fuzz_tmpdir());
    if (!n || fuzz_write_file(weights, buf, n) != 0) abort();
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dta_error err = {0};
    dta_model *m = NULL;
    if (!cfg[0]) init();
    if (fuzz_write_file(cfg, data, size) != 0) abort();
    if (dta_model_open(fuzz_tmpdir(), &m, &err) == DTA_OK) {
        if (!m || m->ntensors != 1) abort();
        if (m->config_dtype != DTA_DTYPE_NONE && !dta_dtype_get(m->config_dtype)) abort();
        dta_model_free(m);
    } else if (m || !err.msg[0]) {
        abort();
    }
    return 0;
}
