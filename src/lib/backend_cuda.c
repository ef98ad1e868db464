/* The CUDA backend, host side (include/dtaudit/backend.h): device detection, the chunk
 * pipeline and the one-shot dta_convert_cuda / dta_verify_cuda built on it.
 *
 * Plain C: every CUDA runtime call goes through src/lib/cuda/convert_cuda.h (the "lanes"
 * of convert.cu: one stream, pinned and device buffers, statistics and an event each).
 *
 * Pipeline: a pipe is an array of chunks, one lane each, and a FIFO of the chunks in
 * flight. Submitting queues H2D, kernel, D2H on the chunk's own stream and returns; next()
 * waits on the oldest chunk's event, so results come back in submission order and their
 * statistics are merged in that order (the first mismatch index comes out as it would from
 * consecutive dta_verify calls). Same-dtype chunks are done on the host at submission (a
 * copy or a byte compare: nothing for a GPU to win) and go through the same FIFO.
 *
 * Global state: the device probe (pthread_once) and the cached one-shot pipe (a mutex).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_bits.h"
#include "dequant_dev.h"
#include "cuda/convert_cuda.h"
#include "cuda/dequant_cuda.h"
#include "cuda/values_cuda.h"
#include "dtaudit/backend.h"
#include "dtaudit/values.h"

#define DEFAULT_CHUNK_BYTES (32u << 20)
#define DEFAULT_NCHUNKS 3
#define MAX_NCHUNKS 64

const char *dta_build_features(void) { return "cuda"; }

/* ---- device detection ------------------------------------------------------------------ */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_ok;
static char g_why[512];

static void probe(void)
{
    char msg[256];
    int count = 0;
    dtap_cu_devinfo d;
    if (dtap_cu_device_count(&count, msg, sizeof msg) != 0) {
        snprintf(g_why, sizeof g_why, "no CUDA device: %s", msg);
        return;
    }
    if (dtap_cu_probe(0, &d, msg, sizeof msg) != 0) {
        snprintf(g_why, sizeof g_why, "CUDA device 0 unusable: %s", msg);
        return;
    }
    snprintf(g_why, sizeof g_why, "%s, sm_%d%d, %d SMs, %.1f GiB, CUDA driver %d.%d runtime %d.%d",
             d.name, d.major, d.minor, d.sm_count, (double)d.global_mem / (1u << 30),
             d.driver_version / 1000, d.driver_version % 1000 / 10, d.runtime_version / 1000,
             d.runtime_version % 1000 / 10);
    g_ok = true;
}

bool dta_cuda_available(char *why, size_t n)
{
    pthread_once(&g_once, probe);
    if (why && n)
        snprintf(why, n, "%s", g_why);
    return g_ok;
}

bool dta_cuda_auto(uint64_t bytes)
{
    return bytes >= DTA_CUDA_AUTO_MIN_BYTES && dta_cuda_available(NULL, 0);
}

static dta_status need_device(dta_error *err)
{
    char why[512];
    if (dta_cuda_available(why, sizeof why))
        return DTA_OK;
    return dta_error_set(err, DTA_E_DEVICE, 0, "%s", why);
}

/* ---- pipe ------------------------------------------------------------------------------ */

enum { S_FREE, S_FILLING, S_FLIGHT, S_DONE };

typedef struct {
    dta_cuda_chunk pub; /* first: a dta_cuda_chunk * is a slot * */
    dtap_cu_lane *lane;
    int state, job;
    bool on_host;
    dta_dtype from, to;
    dta_convert_stats *cstats, hc;
    dta_verify_stats *vstats, hv;
} slot;

struct dta_cuda_pipe {
    slot *slots;
    int nslots, dev;
    size_t bytes;
    int *fifo, head, count; /* ring of slot indices in flight, oldest at head */
    bool broken;
};

static dta_status cu_error(dta_error *err, const char *msg)
{
    return dta_error_set(err, DTA_E_DEVICE, 0, "CUDA: %s", msg);
}

void dta_cuda_pipe_free(dta_cuda_pipe *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nslots; i++)
        dtap_cu_lane_close(p->slots[i].lane);
    free(p->slots);
    free(p->fifo);
    free(p);
}

dta_status dta_cuda_pipe_open(const dta_cuda_pipe_options *o, dta_cuda_pipe **out,
                              dta_error *err)
{
    dta_cuda_pipe *p;
    char msg[256];
    size_t bytes = o && o->chunk_bytes ? o->chunk_bytes : DEFAULT_CHUNK_BYTES;
    int n = o && o->nchunks ? o->nchunks : DEFAULT_NCHUNKS, dev = o ? o->device : 0;
    dta_status st;
    *out = NULL;
    if (n < 2 || n > MAX_NCHUNKS)
        return dta_error_set(err, DTA_E_ARG, 0, "CUDA pipe: %d chunks (2 to %d)", n,
                             MAX_NCHUNKS);
    if (bytes < 64)
        return dta_error_set(err, DTA_E_ARG, 0, "CUDA pipe: chunks of %zu bytes (64 at least)",
                             bytes);
    bytes &= ~(size_t)15; /* whole vector groups */
    if ((st = need_device(err)) != DTA_OK)
        return st;
    p = calloc(1, sizeof *p);
    if (!p || !(p->slots = calloc((size_t)n, sizeof *p->slots)) ||
        !(p->fifo = calloc((size_t)n, sizeof *p->fifo))) {
        dta_cuda_pipe_free(p);
        return dta_error_set(err, DTA_E_NOMEM, 0, "CUDA pipe: out of memory");
    }
    p->nslots = n;
    p->dev = dev;
    p->bytes = bytes;
    for (int i = 0; i < n; i++) {
        slot *s = &p->slots[i];
        if (dtap_cu_lane_open(dev, bytes, &s->lane, &s->pub.src, &s->pub.dst, msg,
                              sizeof msg) != 0) {
            dta_cuda_pipe_free(p);
            return cu_error(err, msg);
        }
        s->pub.bytes = bytes;
    }
    *out = p;
    return DTA_OK;
}

size_t dta_cuda_pipe_capacity(const dta_cuda_pipe *p, dta_dtype from, dta_dtype to)
{
    const dta_dtype_info *a = dta_dtype_get(from), *b = dta_dtype_get(to);
    unsigned bits;
    if (!p || !a || !b)
        return 0;
    bits = a->bits > b->bits ? a->bits : b->bits;
    return bits ? p->bytes * 8 / bits : 0;
}

dta_cuda_chunk *dta_cuda_pipe_get(dta_cuda_pipe *p)
{
    if (!p || p->broken)
        return NULL;
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].state == S_FREE) {
            p->slots[i].state = S_FILLING;
            p->slots[i].pub.n = 0;
            p->slots[i].pub.tag = NULL;
            return &p->slots[i].pub;
        }
    return NULL;
}

static slot *slot_of(dta_cuda_pipe *p, dta_cuda_chunk *c)
{
    for (int i = 0; i < p->nslots; i++)
        if (&p->slots[i].pub == c)
            return &p->slots[i];
    return NULL;
}

void dta_cuda_pipe_release(dta_cuda_pipe *p, dta_cuda_chunk *c)
{
    slot *s = p && c ? slot_of(p, c) : NULL;
    if (s && (s->state == S_DONE || s->state == S_FILLING))
        s->state = S_FREE;
}

/* The checks of convert_cpu.c's check_args, with the same messages. */
static dta_status check_args(dta_dtype from, dta_dtype to, size_t n, dta_overflow_mode mode,
                             dta_error *err)
{
    uint64_t nin, nout;
    if (!dta_convert_supported(from, to))
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "conversion %s -> %s is not supported",
                             dta_dtype_name(from), dta_dtype_name(to));
    if (mode != DTA_OVERFLOW_ERROR && mode != DTA_OVERFLOW_INF && mode != DTA_OVERFLOW_SATURATE)
        return dta_error_set(err, DTA_E_ARG, 0, "unknown overflow mode %d", (int)mode);
    if (!dta_dtype_nbytes(from, n, &nin) || !dta_dtype_nbytes(to, n, &nout) || nin > SIZE_MAX ||
        nout > SIZE_MAX)
        return dta_error_set(err, DTA_E_ARG, 0, "%zu elements of %s are not a whole byte count",
                             n, dta_dtype_name(from));
    return DTA_OK;
}

static dta_status submit(dta_cuda_pipe *p, dta_cuda_chunk *c, int job, dta_dtype from,
                         dta_dtype to, size_t n, dta_overflow_mode mode, void *stats, void *tag,
                         dta_error *err)
{
    char msg[256];
    slot *s = p && c ? slot_of(p, c) : NULL;
    dta_status st;
    if (!s || s->state != S_FILLING)
        return dta_error_set(err, DTA_E_ARG, 0, "CUDA pipe: chunk not taken with dta_cuda_pipe_get");
    if (p->broken)
        return dta_error_set(err, DTA_E_DEVICE, 0, "CUDA pipe: unusable after an earlier error");
    if ((st = check_args(from, to, n, mode, err)) != DTA_OK)
        return st;
    if (n > dta_cuda_pipe_capacity(p, from, to))
        return dta_error_set(err, DTA_E_ARG, 0, "CUDA pipe: %zu elements of %s -> %s exceed the "
                             "chunk capacity %zu", n, dta_dtype_name(from), dta_dtype_name(to),
                             dta_cuda_pipe_capacity(p, from, to));
    s->job = job;
    s->from = from;
    s->to = to;
    s->cstats = job == DTAP_CU_CONVERT ? stats : NULL;
    s->vstats = job == DTAP_CU_VERIFY ? stats : NULL;
    s->on_host = from == to || n == 0;
    c->n = n;
    c->tag = tag;
    if (s->on_host) {
        memset(&s->hc, 0, sizeof s->hc);
        memset(&s->hv, 0, sizeof s->hv);
        st = job == DTAP_CU_CONVERT
                 ? dta_convert(from, to, c->src, c->dst, n, mode, &s->hc, err)
                 : dta_verify(from, to, c->src, c->dst, n, mode, &s->hv, err);
        if (st != DTA_OK)
            return st;
    } else if (dtap_cu_lane_submit(s->lane, job, (int)from, (int)to, (int)mode, n, msg,
                                   sizeof msg) != 0) {
        p->broken = true;
        return cu_error(err, msg);
    }
    s->state = S_FLIGHT;
    p->fifo[(p->head + p->count) % p->nslots] = (int)(s - p->slots);
    p->count++;
    return DTA_OK;
}

dta_status dta_cuda_pipe_convert(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                 dta_dtype to, size_t n, dta_overflow_mode mode,
                                 dta_convert_stats *stats, void *tag, dta_error *err)
{
    return submit(p, c, DTAP_CU_CONVERT, from, to, n, mode, stats, tag, err);
}

dta_status dta_cuda_pipe_verify(dta_cuda_pipe *p, dta_cuda_chunk *c, dta_dtype from,
                                dta_dtype to, size_t n, dta_overflow_mode mode,
                                dta_verify_stats *stats, void *tag, dta_error *err)
{
    return submit(p, c, DTAP_CU_VERIFY, from, to, n, mode, stats, tag, err);
}

static double dbl(uint64_t b)
{
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* Adds one chunk's verification to *v as dta_verify would (first is chunk-relative). */
static void merge_verify(dta_verify_stats *v, uint64_t n, uint64_t mism, uint64_t first,
                         uint64_t added, double maxabs, double maxrel)
{
    if (mism && v->mismatches == 0)
        v->first_mismatch = v->elements + first;
    v->elements += n;
    v->mismatches += mism;
    v->nonfinite_added += added;
    if (maxabs > v->max_abs_err)
        v->max_abs_err = maxabs;
    if (maxrel > v->max_rel_err)
        v->max_rel_err = maxrel;
}

dta_status dta_cuda_pipe_next(dta_cuda_pipe *p, dta_cuda_chunk **done, dta_error *err)
{
    char msg[256];
    dtap_cu_counts k;
    slot *s;
    *done = NULL;
    if (!p)
        return dta_error_set(err, DTA_E_ARG, 0, "CUDA pipe: NULL");
    if (p->broken)
        return dta_error_set(err, DTA_E_DEVICE, 0, "CUDA pipe: unusable after an earlier error");
    if (p->count == 0)
        return DTA_OK;
    s = &p->slots[p->fifo[p->head]];
    if (s->on_host) {
        if (s->cstats) {
            s->cstats->elements += s->hc.elements;
            s->cstats->overflow += s->hc.overflow;
            s->cstats->nan += s->hc.nan;
            s->cstats->inf += s->hc.inf;
            s->cstats->underflow += s->hc.underflow;
        }
        if (s->vstats)
            merge_verify(s->vstats, s->hv.elements, s->hv.mismatches, s->hv.first_mismatch,
                         s->hv.nonfinite_added, s->hv.max_abs_err, s->hv.max_rel_err);
    } else {
        if (dtap_cu_lane_wait(s->lane, &k, msg, sizeof msg) != 0) {
            p->broken = true;
            return cu_error(err, msg);
        }
        if (s->cstats) {
            s->cstats->elements += s->pub.n;
            s->cstats->overflow += k.ovf;
            s->cstats->nan += k.nan;
            s->cstats->inf += k.inf;
            s->cstats->underflow += k.unf;
        }
        if (s->vstats)
            merge_verify(s->vstats, s->pub.n, k.mism, ~k.first_inv, k.added,
                         dbl(k.maxabs_bits), dbl(k.maxrel_bits));
    }
    p->head = (p->head + 1) % p->nslots;
    p->count--;
    s->state = S_DONE;
    *done = &s->pub;
    return DTA_OK;
}

/* ---- one-shot calls --------------------------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static dta_cuda_pipe *g_pipe;

static void values_release(void);
static void dq_release(void);

void dta_cuda_release(void)
{
    pthread_mutex_lock(&g_lock);
    dta_cuda_pipe_free(g_pipe);
    g_pipe = NULL;
    pthread_mutex_unlock(&g_lock);
    values_release();
    dq_release();
}

static bool overlaps(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}

/* Streams n elements of src (and for verify conv) through the cached pipe; called with
 * g_lock held. */
static dta_status stream(int job, dta_dtype from, dta_dtype to, const unsigned char *src,
                         unsigned char *dst, size_t n, dta_overflow_mode mode, void *stats,
                         dta_error *err)
{
    size_t isz = dta_dtype_elem_size(from), osz = dta_dtype_elem_size(to), cap, off = 0;
    dta_cuda_chunk *c;
    dta_status st;
    if (!isz || !osz) /* sub-byte types are only ever copied, on the CPU */
        return dta_error_set(err, DTA_E_UNSUPPORTED, 0, "%s -> %s on the GPU",
                             dta_dtype_name(from), dta_dtype_name(to));
    if (!g_pipe && (st = dta_cuda_pipe_open(NULL, &g_pipe, err)) != DTA_OK)
        return st;
    cap = dta_cuda_pipe_capacity(g_pipe, from, to);
    for (;;) {
        while (off < n && (c = dta_cuda_pipe_get(g_pipe)) != NULL) {
            size_t m = n - off < cap ? n - off : cap;
            memcpy(c->src, src + off * isz, m * isz);
            if (job == DTAP_CU_VERIFY) {
                memcpy(c->dst, dst + off * osz, m * osz);
                st = dta_cuda_pipe_verify(g_pipe, c, from, to, m, mode, stats,
                                          (void *)(uintptr_t)off, err);
            } else {
                st = dta_cuda_pipe_convert(g_pipe, c, from, to, m, mode, stats,
                                           (void *)(uintptr_t)off, err);
            }
            if (st != DTA_OK)
                goto fail;
            off += m;
        }
        if ((st = dta_cuda_pipe_next(g_pipe, &c, err)) != DTA_OK)
            goto fail;
        if (!c)
            return DTA_OK;
        if (job == DTAP_CU_CONVERT)
            memcpy(dst + (uintptr_t)c->tag * osz, c->dst, c->n * osz);
        dta_cuda_pipe_release(g_pipe, c);
    }
fail:
    dta_cuda_pipe_free(g_pipe); /* waits for what is in flight; reopened on the next call */
    g_pipe = NULL;
    return st;
}

dta_status dta_convert_cuda(dta_dtype from, dta_dtype to, const void *src, void *dst, size_t n,
                            dta_overflow_mode mode, dta_convert_stats *stats, dta_error *err)
{
    dta_convert_stats local = {0, 0, 0, 0, 0};
    uint64_t nin, nout;
    dta_status st;
    if (from == to || n == 0 || check_args(from, to, n, mode, NULL) != DTA_OK || !src || !dst)
        return dta_convert(from, to, src, dst, n, mode, stats, err); /* its checks, its errors */
    dta_dtype_nbytes(from, n, &nin);
    dta_dtype_nbytes(to, n, &nout);
    if (overlaps(src, (size_t)nin, dst, (size_t)nout))
        return dta_convert(from, to, src, dst, n, mode, stats, err);
    if ((st = need_device(err)) != DTA_OK)
        return st;
    pthread_mutex_lock(&g_lock);
    st = stream(DTAP_CU_CONVERT, from, to, src, dst, n, mode, &local, err);
    pthread_mutex_unlock(&g_lock);
    if (st == DTA_OK && stats) {
        stats->elements += local.elements;
        stats->overflow += local.overflow;
        stats->nan += local.nan;
        stats->inf += local.inf;
        stats->underflow += local.underflow;
    }
    return st;
}

dta_status dta_verify_cuda(dta_dtype from, dta_dtype to, const void *src, const void *conv,
                           size_t n, dta_overflow_mode mode, dta_verify_stats *stats,
                           dta_error *err)
{
    dta_verify_stats local;
    dta_status st;
    if (from == to || n == 0 || check_args(from, to, n, mode, NULL) != DTA_OK || !src || !conv)
        return dta_verify(from, to, src, conv, n, mode, stats, err);
    if ((st = need_device(err)) != DTA_OK)
        return st;
    memset(&local, 0, sizeof local);
    pthread_mutex_lock(&g_lock);
    st = stream(DTAP_CU_VERIFY, from, to, src, (unsigned char *)(uintptr_t)conv, n, mode,
                &local, err);
    pthread_mutex_unlock(&g_lock);
    if (st == DTA_OK && stats)
        merge_verify(stats, local.elements, local.mismatches, local.first_mismatch,
                     local.nonfinite_added, local.max_abs_err, local.max_rel_err);
    return st;
}

/* ---- audit --values (values.h dta_values_count_cuda; kernel in cuda/values.cu) ---------- */

#define VALUES_CHUNK_BYTES (16u << 20)

static pthread_mutex_t g_vlock = PTHREAD_MUTEX_INITIALIZER;
static dtap_cu_vctx *g_vctx;
static void *g_vhost;

static void values_release(void)
{
    pthread_mutex_lock(&g_vlock);
    dtap_cu_values_close(g_vctx);
    g_vctx = NULL;
    g_vhost = NULL;
    pthread_mutex_unlock(&g_vlock);
}

/* The kernel's copy of a plan: thresholds, or for 8-bit sources the class and |x| tables
 * (|x| as values_scan.c orders them: the code's f32 bits without the sign). */
static void vplan_of(const dta_values_plan *p, dtap_cu_vplan *v)
{
    memset(v, 0, sizeof *v);
    v->width = p->width;
    v->inf = p->inf;
    v->ovf_lo = p->ovf_lo;
    v->unf_hi = p->unf_hi;
    v->sub_hi = p->sub_hi;
    if (p->width == 1)
        for (unsigned c = 0; c < 256; c++) {
            v->cls[c] = p->lut[c];
            v->abs8[c] = dtab_f8_to_f32((int)p->from, (uint8_t)c) & 0x7FFFFFFFu;
        }
}

dta_status dta_values_count_cuda(const dta_values_plan *p, const void *src, size_t n,
                                 dta_values_counts *c, dta_error *err)
{
    char msg[256];
    dtap_cu_vplan v;
    dta_status st;
    if ((st = need_device(err)) != DTA_OK)
        return st;
    vplan_of(p, &v);
    if (!v.width)
        return dta_error_set(err, DTA_E_ARG, 0, "values: no element width");
    size_t cap = VALUES_CHUNK_BYTES / v.width, off = 0;
    const unsigned char *s = src;
    pthread_mutex_lock(&g_vlock);
    if (!g_vctx && dtap_cu_values_open(0, VALUES_CHUNK_BYTES, &g_vctx, &g_vhost, msg,
                                       sizeof msg) != 0) {
        g_vctx = NULL;
        pthread_mutex_unlock(&g_vlock);
        return cu_error(err, msg);
    }
    while (off < n) {
        size_t m = n - off < cap ? n - off : cap;
        dtap_cu_vcounts k;
        memcpy(g_vhost, s + off * v.width, m * v.width);
        if (dtap_cu_values_run(g_vctx, &v, m, &k, msg, sizeof msg) != 0) {
            dtap_cu_values_close(g_vctx); /* reopened on the next call */
            g_vctx = NULL;
            pthread_mutex_unlock(&g_vlock);
            return cu_error(err, msg);
        }
        c->nan += k.nan;
        c->pos_inf += k.pos_inf;
        c->neg_inf += k.neg_inf;
        c->zero += k.zero;
        c->overflow += k.overflow;
        c->underflow += k.underflow;
        c->subnormal += k.subnormal;
        if (k.max_abs_bits > c->max_abs_bits)
            c->max_abs_bits = k.max_abs_bits;
        if (k.min_abs_bits < c->min_abs_bits)
            c->min_abs_bits = k.min_abs_bits;
        off += m;
    }
    pthread_mutex_unlock(&g_vlock);
    return DTA_OK;
}

/* ---- convert --dequantize (dequant_dev.h dtap_dq_run_cuda; kernel in cuda/dequant.cu) ---- */

static pthread_mutex_t g_dqlock = PTHREAD_MUTEX_INITIALIZER;
static dtap_cu_dq *g_dq;

static void dq_release(void)
{
    pthread_mutex_lock(&g_dqlock);
    dtap_cu_dq_close(g_dq);
    g_dq = NULL;
    pthread_mutex_unlock(&g_dqlock);
}

dta_status dtap_dq_run_cuda(dtap_dq *d, size_t p, uint64_t first, size_t n, dta_dtype to,
                            dta_overflow_mode mode, void *dst, dta_convert_stats *st,
                            dta_error *err)
{
    char msg[256];
    uint64_t cnt[5], tot[5] = {0, 0, 0, 0, 0};
    size_t done = 0, os = to == DTA_F32 ? 4 : 2;
    dqb_job j;
    dta_status s;
    if ((s = need_device(err)) != DTA_OK)
        return s;
    while (done < n) {
        /* the operands, as stored for a packed scheme (a prefix of the range at a time),
         * else prepared on the host by dequant.c and the scheme module */
        if ((s = dtap_dq_job_dev(d, p, first + done, n - done, to, mode, &j, err)) != DTA_OK)
            return s;
        if (j.n == 0 || j.n > n - done)
            return dta_error_set(err, DTA_E_ARG, 0, "dequantize: empty or oversized job");
        pthread_mutex_lock(&g_dqlock);
        int rc = g_dq ? 0 : dtap_cu_dq_open(0, &g_dq, msg, sizeof msg);
        if (rc == 0)
            rc = dtap_cu_dq_run(g_dq, &j, (unsigned char *)dst + done * os, cnt, msg,
                                sizeof msg);
        if (rc != 0) {
            dtap_cu_dq_close(g_dq); /* reopened on the next call */
            g_dq = NULL;
        }
        pthread_mutex_unlock(&g_dqlock);
        if (rc != 0)
            return cu_error(err, msg);
        for (int k = 0; k < 5; k++)
            tot[k] += cnt[k];
        done += (size_t)j.n;
    }
    dtap_dq_stats_add(st, n, tot); /* counted only when the whole range succeeded */
    return DTA_OK;
}
