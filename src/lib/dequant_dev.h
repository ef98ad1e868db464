/* dtaudit (private): dequantization on a device (the CUDA back end).
 *
 * dtap_dq_job (dequant.c) prepares the operands of dtap_dq_run's element math for a range
 * of output elements, on the host, with the same code the CPU path runs (codes and scales
 * read and decoded by dequant.c; packed schemes unpacked and decoded by their module's
 * fill()); dtap_dq_run_cuda (backend_cuda_dq.c, or the stub) runs dqb_elem
 * (dequant_bits.h) over them on the GPU. Same arguments, bytes and statistics as
 * dtap_dq_run. */
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

/* dtap_dq_run on the GPU: DTA_E_DEVICE without a usable device, DTA_E_UNSUPPORTED when
 * built without CUDA. Serialised across threads (one device context). */
dta_status dtap_dq_run_cuda(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                            dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                            dta_error *err);

#endif
