/* dtaudit (private): dequantization on a device (the CUDA back end).
 *
 * dtap_dq_job_dev (dequant.c) prepares a device job for a range of output elements on the
 * host: for the FP8 / int8 grid path the codes and the scale-grid rows as stored; for a
 * packed scheme (dtap_dq_plan.packed) its stored bytes, gathered by dequant_packed.c; for
 * a module without either (none at present) the x and s its fill() decoded (dtap_dq_job).
 * dtap_dq_run_cuda (backend_cuda.c, or the stub) runs dqb_elem (dequant_bits.h) over them
 * on the GPU, which unpacks and decodes with the functions the CPU modules call
 * (dequant_unpack.h). Same arguments, bytes and statistics as dtap_dq_run. */
#ifndef DTAUDIT_DEQUANT_DEV_H
#define DTAUDIT_DEQUANT_DEV_H

#include "dequant.h"
#include "dequant_bits.h"

/* Adds n elements counted by class (cnt[DTAB_*]) to *st (NULL: nothing). */
static inline void dtap_dq_stats_add(dta_convert_stats *st, uint64_t n, const uint64_t cnt[5])
{
    if (!st)
        return;
    st->elements += n;
    st->nan += cnt[DTAB_NAN];
    st->inf += cnt[DTAB_INF];
    st->overflow += cnt[DTAB_OVF];
    st->underflow += cnt[DTAB_UNF];
}

/* Fills *job with the operands of elements [first, first + n) of parameter p in dtype to
 * (F32, F16, BF16): pointers into d's buffers, valid until the next call on d. Errors as
 * dtap_dq_run's. */
dta_status dtap_dq_job(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                       dta_overflow_mode mode, dqb_job *job, dta_error *err);

/* The device's job for elements [first, first + n) of parameter p: for a scheme module
 * whose plan describes its packing (dtap_dq_plan.packed), a DQB_PACKED job holding the
 * stored bytes of a prefix of the range (job->n <= n, at least 1 when n > 0: call again
 * for the rest), decoded per element by dqb_elem; otherwise dtap_dq_job's (the whole
 * range). Pointers valid until the next call on d. */
dta_status dtap_dq_job_dev(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                           dta_overflow_mode mode, dqb_job *job, dta_error *err);

/* dequant_packed.c: the stored bytes of elements [first, first + n) (or a prefix) of a
 * packed parameter (index pi, description pd) read through src into *cache and described
 * in job's DQB_PACKED fields (kind, to, mid, sat already set); hostile layouts (g_idx out
 * of range, gathers beyond the caps) are refused before anything reaches a device.
 * dtap_dq_packed_free releases the cache. */
struct dtap_dq_packed;
struct dtap_dq_src;
dta_status dtap_dq_packed_job(struct dtap_dq_src *src, const struct dtap_dq_packed *pd,
                              size_t pi, void **cache, uint64_t first, size_t n, dqb_job *job,
                              dta_error *err);
void dtap_dq_packed_free(void *cache);

/* dtap_dq_run on the GPU: DTA_E_DEVICE without a usable device, DTA_E_UNSUPPORTED when
 * built without CUDA. Serialised across threads (one device context). */
dta_status dtap_dq_run_cuda(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                            dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                            dta_error *err);

#endif
