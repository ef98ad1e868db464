/* The CUDA backend when dtaudit is built without CUDA (configure --without-cuda, or no
 * nvcc/libcudart found): every entry point of include/dtaudit/backend.h exists and says
 * "built without CUDA" (DTA_E_UNSUPPORTED). */
#include <stdio.h>

#include "dequant_dev.h"
#include "dtaudit/backend.h"
#include "dtaudit/values.h"

#define WHY "built without CUDA"

const char *dta_build_features(void) { return ""; }

bool dta_cuda_available(char *why, size_t n)
{
    if (why && n)
        snprintf(why, n, "%s", WHY);
    return false;
}

bool dta_cuda_auto(uint64_t bytes)
{
    (void)bytes;
    return false;
}

dta_status dta_convert_cuda(dta_dtype from, dta_dtype to, const void *src, void *dst, size_t n,
                            dta_overflow_mode mode, dta_convert_stats *stats, dta_error *err)
{
    (void)from, (void)to, (void)src, (void)dst, (void)n, (void)mode, (void)stats;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

dta_status dta_verify_cuda(dta_dtype from, dta_dtype to, const void *src, const void *conv,
                           size_t n, dta_overflow_mode mode, dta_verify_stats *stats,
                           dta_error *err)
{
    (void)from, (void)to, (void)src, (void)conv, (void)n, (void)mode, (void)stats;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

void dta_cuda_release(void) {}

dta_status dta_cuda_pipe_open(const dta_cuda_pipe_options *o, dta_cuda_pipe **out,
                              dta_error *err)
{
    (void)o;
    if (out)
        *out = NULL;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

void dta_cuda_pipe_free(dta_cuda_pipe *p) { (void)p; }

size_t dta_cuda_pipe_capacity(const dta_cuda_pipe *p, dta_dtype from, dta_dtype to)
{
    (void)p, (void)from, (void)to;
    return 0;
}

dta_cuda_chunk *dta_cuda_pipe_get(dta_cuda_pipe *p)
{
    (void)p;
    return NULL;
}

dta_status dta_cuda_pipe_convert(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                 dta_dtype to, size_t n, dta_overflow_mode mode,
                                 dta_convert_stats *stats, void *tag, dta_error *err)
{
    (void)p, (void)c, (void)from, (void)to, (void)n, (void)mode, (void)stats, (void)tag;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

dta_status dta_cuda_pipe_verify(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                dta_dtype to, size_t n, dta_overflow_mode mode,
                                dta_verify_stats *stats, void *tag, dta_error *err)
{
    (void)p, (void)c, (void)from, (void)to, (void)n, (void)mode, (void)stats, (void)tag;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

dta_status dta_cuda_pipe_next(dta_cuda_pipe *p, dta_cuda_chunk **done, dta_error *err)
{
    (void)p;
    if (done)
        *done = NULL;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

void dta_cuda_pipe_release(dta_cuda_pipe *p, dta_cuda_chunk *c) { (void)p, (void)c; }

dta_status dta_values_count_cuda(const dta_values_plan *p, const void *src, size_t n,
                                 dta_values_counts *c, dta_error *err)
{
    (void)p, (void)src, (void)n, (void)c;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}

dta_status dtap_dq_run_cuda(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                            dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                            dta_error *err)
{
    (void)d, (void)p, (void)first, (void)n, (void)to, (void)mode, (void)dst, (void)st;
    return dta_error_set(err, DTA_E_UNSUPPORTED, 0, WHY);
}
