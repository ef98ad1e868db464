/* A program tests/interop/dequant_cuda_check.py drives (not a test itself): the CUDA
 * dequantization kernel's work emulated on the host, against the CPU path.
 *
 *   dq_emulate_tool DIR...
 *
 * For every quantized parameter of each model: the device's jobs (dtap_dq_job_dev: a packed
 * scheme's stored bytes as dequant_packed.c gathers them for the GPU, else the FP8 / int8
 * codes and scale grid dtap_dq_job prepares; a job of operands decoded on the host, x and s
 * or values, is an error: every scheme is decoded on the device) run through dqb_elem, the
 * kernel's per-element function, on the host, compared byte for byte and count for count
 * with dtap_dq_run (the scheme modules' own fill() / values()), to F32, F16 and BF16,
 * overflow modes inf and saturate, whole and in ranges of 1000 and 4097 elements. A model
 * that is not quantized or is refused is reported and skipped. Prints one line per model;
 * exit 0 when everything compared equal, 1 on a difference, 2 on an error. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant_dev.h"
#include "dtaudit/model.h"

static const dta_dtype TARGETS[] = {DTA_F32, DTA_F16, DTA_BF16};
static const dta_overflow_mode MODES[] = {DTA_OVERFLOW_INF, DTA_OVERFLOW_SATURATE};

/* elements [first, first + n) through the device's jobs and dqb_elem */
static dta_status emulate(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                          dta_overflow_mode mode, unsigned char *o, uint64_t cnt[5],
                          size_t *packed, dta_error *err)
{
    unsigned eo = to == DTA_F32 ? 4 : 2;
    size_t done = 0;
    while (done < n) {
        dqb_job j;
        dta_status s = dtap_dq_job_dev(d, p, first + done, n - done, to, mode, &j, err);
        if (s != DTA_OK)
            return s;
        if (j.n == 0 || j.n > n - done)
            return dta_error_set(err, DTA_E_ARG, 0, "job of %llu elements for %zu",
                                 (unsigned long long)j.n, n - done);
        if (j.kind == DQB_XS || j.kind == DQB_VALUES)
            return dta_error_set(err, DTA_E_ARG, 0, "a device job of operands decoded on the "
                                 "host (kind %d): every scheme's stored bytes go to the "
                                 "device", j.kind);
        *packed += j.kind == DQB_PACKED;
        for (size_t k = 0; k < j.n; k++) {
            int cls;
            uint32_t r = dqb_elem(&j, k, &cls);
            memcpy(o + (done + k) * eo, &r, eo); /* little-endian host */
            cnt[cls]++;
        }
        done += (size_t)j.n;
    }
    return DTA_OK;
}

static int compare(const char *dir)
{
    dta_model *m;
    dtap_dq *d = NULL;
    dta_error err;
    size_t np = 0, packed = 0;
    uint64_t elems = 0;
    if (dta_model_open(dir, &m, &err) != DTA_OK) {
        printf("%s: skipped (%s)\n", dir, err.msg);
        return 0;
    }
    dta_status os = dtap_dq_open(m, &d, &err);
    if (os != DTA_OK || !d) {
        printf("%s: skipped (%s)\n", dir, os != DTA_OK ? err.msg : "nothing to dequantize");
        dta_model_free(m);
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < m->ntensors && rc == 0; i++) {
        size_t p;
        if (dtap_dq_role(d, m->tensors[i].name, &p) != DTAP_DQ_WEIGHT)
            continue;
        int rank;
        const uint64_t *shape;
        uint64_t numel;
        dtap_dq_shape(d, p, &rank, &shape, &numel);
        if (numel > (UINT64_C(1) << 26)) {
            printf("%s: '%s' of %llu elements skipped (too large for this tool)\n", dir,
                   dtap_dq_out_name(d, p), (unsigned long long)numel);
            continue;
        }
        unsigned char *want = malloc(numel * 4 + 1), *got = malloc(numel * 4 + 1);
        if (!want || !got) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        static const size_t STEPS[] = {0, 1000, 4097};
        bool refused = false;
        for (size_t ti = 0; ti < 3 && rc == 0 && !refused; ti++)
            for (size_t mi = 0; mi < 2 && rc == 0 && !refused; mi++)
                for (size_t si = 0; si < 3 && rc == 0 && !refused; si++) {
                    size_t step = STEPS[si] ? STEPS[si] : (size_t)numel;
                    if (step > dtap_dq_max_elems())
                        step = dtap_dq_max_elems();
                    unsigned eo = TARGETS[ti] == DTA_F32 ? 4 : 2;
                    dta_convert_stats sw = {0};
                    uint64_t cg[5] = {0};
                    for (uint64_t e = 0; e < numel && rc == 0; e += step) {
                        size_t k = numel - e < step ? (size_t)(numel - e) : step;
                        dta_status a = dtap_dq_run(d, p, e, k, TARGETS[ti], MODES[mi],
                                                   want + e * eo, &sw, &err);
                        if (a != DTA_OK) {
                            /* a refusal (hostile input): the device path must refuse the
                             * same way, before any launch */
                            char msg[sizeof err.msg];
                            snprintf(msg, sizeof msg, "%s", err.msg);
                            dta_status b = emulate(d, p, e, k, TARGETS[ti], MODES[mi],
                                                   got + e * eo, cg, &packed, &err);
                            if (b != a || strcmp(msg, err.msg)) {
                                printf("%s: '%s': dtap_dq_run: %s; emulated device job: %s\n",
                                       dir, dtap_dq_out_name(d, p), msg,
                                       b == DTA_OK ? "no error" : err.msg);
                                rc = 1;
                            } else {
                                printf("%s: '%s': refused by both: %s\n", dir,
                                       dtap_dq_out_name(d, p), msg);
                                refused = true;
                            }
                            break;
                        }
                        dta_status b = emulate(d, p, e, k, TARGETS[ti], MODES[mi],
                                               got + e * eo, cg, &packed, &err);
                        if (b != DTA_OK) {
                            printf("%s: '%s': emulated device job: %s\n", dir,
                                   dtap_dq_out_name(d, p), err.msg);
                            rc = 2;
                        }
                    }
                    if (refused)
                        break;
                    for (uint64_t e = 0; e < numel && rc == 0; e++)
                        if (memcmp(want + e * eo, got + e * eo, eo)) {
                            printf("%s: '%s' -> %s mode %d step %zu: element %llu differs\n",
                                   dir, dtap_dq_out_name(d, p), dta_dtype_name(TARGETS[ti]),
                                   (int)MODES[mi], step, (unsigned long long)e);
                            rc = 1;
                        }
                    if (rc == 0 && (sw.elements != numel || sw.nan != cg[DTAB_NAN] ||
                                    sw.inf != cg[DTAB_INF] || sw.overflow != cg[DTAB_OVF] ||
                                    sw.underflow != cg[DTAB_UNF])) {
                        printf("%s: '%s' -> %s: statistics differ\n", dir,
                               dtap_dq_out_name(d, p), dta_dtype_name(TARGETS[ti]));
                        rc = 1;
                    }
                }
        free(want);
        free(got);
        np++;
        elems += numel;
    }
    if (rc == 0)
        printf("%s: %zu parameters, %llu elements equal (%zu packed device jobs)\n", dir, np,
               (unsigned long long)elems, packed);
    dtap_dq_free(d);
    dta_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: dq_emulate_tool DIR...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int r = compare(argv[i]);
        if (r > rc)
            rc = r;
    }
    return rc;
}
