/* The one thread pool of convert --jobs (convert_pool.h): the shards of a directory
 * (convert_shards.c) and the tensors of one file (convert_file.c) both run on it.
 *
 * Each thread has its own copy of the job (chunk buffers, --only hits, for --dequantize its
 * own dequantization state over the whole checkpoint, and one result per item) and takes
 * the next item from a shared counter. The first failure raises a stop flag that the other
 * threads poll between chunks (as a signal's cancel); the calling thread forwards the
 * caller's cancel flag while they run, and sums the threads' progress. Each item has its
 * own result, added to the job's in item order, so the summary does not depend on timing. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert_pool.h"

typedef struct pool pool;

typedef struct {
    pool *p;
    dtap_job j;
    dta_convert_options o; /* the caller's, with cancel and progress the pool's */
    dta_error err;
    uint64_t done, total;  /* its progress */
    pthread_t th;
    bool started, ready;
} pworker;

struct pool {
    dtap_job *parent;
    size_t n, next;
    dtap_pool_fn fn;
    void *ctx;
    dta_convert_result *res; /* per item */
    pworker *w;
    unsigned nw, running;
    pthread_mutex_t mu;
    pthread_cond_t idle;     /* signalled when the last thread ends */
    volatile int stop;       /* the first failure, or the caller's cancel */
    bool failed;
    dta_status st;           /* the first failure's */
    dta_error err;
};

unsigned dtap_inner_threads(const dtap_job *j, unsigned files)
{
    unsigned t = j->o->jobs ? j->o->jobs : dtap_jobs_default();
    if (j->cuda || !files)
        return 1;
    t /= files;
    return t ? t : 1;
}

static bool cancelled(const dtap_job *j)
{
    return j->o->cancel && *j->o->cancel;
}

static void worker_progress(void *ctx, uint64_t done, uint64_t total)
{
    pworker *w = ctx;
    pool *p = w->p;
    const dta_convert_options *po = p->parent->o;
    pthread_mutex_lock(&p->mu);
    w->done = done;
    w->total = total;
    uint64_t d = p->parent->done, t = p->parent->total;
    for (unsigned k = 0; k < p->nw; k++) {
        d += p->w[k].done;
        t += p->w[k].total;
    }
    if (po->progress)
        po->progress(po->progress_ctx, d, t);
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg)
{
    pworker *w = arg;
    pool *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next;
        bool go = i < p->n && !p->stop && !cancelled(p->parent);
        if (go)
            p->next++;
        pthread_mutex_unlock(&p->mu);
        if (!go)
            break;
        w->j.res = &p->res[i];
        dta_status st = p->fn(p->ctx, &w->j, i);
        if (st != DTA_OK) {
            pthread_mutex_lock(&p->mu);
            /* the first failure; an item that only saw the stop flag is not one */
            if (!p->failed && !(p->stop && w->err.sys_errno == EINTR)) {
                p->failed = true;
                p->st = st;
                p->err = w->err;
            }
            p->stop = 1;
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
    pthread_mutex_lock(&p->mu);
    if (--p->running == 0)
        pthread_cond_signal(&p->idle);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static dta_status worker_init(pworker *w, pool *p)
{
    dtap_job *j = p->parent;
    w->p = p;
    w->j = *j;
    w->o = *j->o;
    w->o.progress = worker_progress;
    w->o.progress_ctx = w;
    w->o.cancel = &p->stop;
    w->j.o = &w->o;
    w->j.err = &w->err;
    w->j.done = w->j.total = 0;
    w->j.in = malloc(j->chunk);
    w->j.out = malloc(j->chunk * 2);
    w->j.only_hit = calloc(j->o->nonly ? j->o->nonly : 1, sizeof *w->j.only_hit);
    w->j.dq = NULL;
    w->ready = true;
    if (!w->j.in || !w->j.out || !w->j.only_hit)
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    /* --dequantize: the dequantization state (buffers, scale window, files) is per thread */
    if (j->dq && j->dq_model)
        return dtap_dq_open(j->dq_model, &w->j.dq, j->err);
    return DTA_OK;
}

/* Runs worker w on this thread, polling the caller's cancel flag directly. */
static void run_here(pool *p, pworker *w)
{
    p->running = 1;
    w->o.cancel = p->parent->o->cancel;
    worker_main(w);
}

/* Starts the threads and waits for them, forwarding the caller's cancel meanwhile. */
static void run_threads(pool *p)
{
    unsigned started = 0;
    pthread_mutex_lock(&p->mu);
    for (unsigned k = 0; k < p->nw; k++) {
        if (pthread_create(&p->w[k].th, NULL, worker_main, &p->w[k]) != 0)
            break; /* fewer threads: those started take every item */
        p->w[k].started = true;
        p->running++;
        started++;
    }
    pthread_mutex_unlock(&p->mu);
    if (!started) { /* not even one thread: run here */
        run_here(p, &p->w[0]);
        return;
    }
    pthread_mutex_lock(&p->mu);
    while (p->running) {
        if (cancelled(p->parent))
            p->stop = 1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->idle, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    for (unsigned k = 0; k < p->nw; k++)
        if (p->w[k].started)
            pthread_join(p->w[k].th, NULL);
}

/* Adds item result s to r, taking its issues. */
static dta_status add_result(dta_convert_result *r, dta_convert_result *s, dta_error *err)
{
    dta_status st = DTA_OK;
    r->tensors += s->tensors;
    r->tensors_converted += s->tensors_converted;
    r->storages_converted += s->storages_converted;
    r->bytes_in += s->bytes_in;
    r->bytes_out += s->bytes_out;
    dtap_stats_add(&r->stats, &s->stats);
    r->params_dequantized += s->params_dequantized;
    r->companions_dropped += s->companions_dropped;
    r->shards_converted += s->shards_converted;
    if (s->nissues) {
        dta_convert_issue *v = realloc(r->issues, (r->nissues + s->nissues) * sizeof *v);
        if (!v) {
            for (size_t k = 0; k < s->nissues; k++)
                free(s->issues[k].name);
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        } else {
            memcpy(v + r->nissues, s->issues, s->nissues * sizeof *v);
            r->issues = v;
            r->nissues += s->nissues;
        }
        free(s->issues);
    }
    return st;
}

dta_status dtap_pool_run(dtap_job *j, size_t n, unsigned threads, dtap_pool_fn fn, void *ctx)
{
    pool p;
    dta_status st = DTA_OK;
    memset(&p, 0, sizeof p);
    p.parent = j;
    p.n = n;
    p.fn = fn;
    p.ctx = ctx;
    if (threads > DTA_MAX_JOBS)
        threads = DTA_MAX_JOBS;
    if (threads > n)
        threads = (unsigned)n;
    if (!threads)
        threads = 1;
    p.res = calloc(n ? n : 1, sizeof *p.res);
    p.w = calloc(threads, sizeof *p.w);
    if (!p.res || !p.w) {
        free(p.res);
        free(p.w);
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    p.nw = threads;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.idle, NULL);
    for (unsigned k = 0; k < threads && st == DTA_OK; k++)
        st = worker_init(&p.w[k], &p);
    if (st == DTA_OK && threads == 1)
        run_here(&p, &p.w[0]);
    else if (st == DTA_OK)
        run_threads(&p);
    pthread_cond_destroy(&p.idle);
    pthread_mutex_destroy(&p.mu);
    if (st == DTA_OK && p.failed) {
        st = p.st;
        *j->err = p.err;
    } else if (st == DTA_OK && (p.stop || cancelled(j))) {
        st = dta_error_set(j->err, DTA_E_IO, EINTR, "cancelled");
    }
    /* results in item order */
    for (size_t i = 0; i < n; i++) {
        dta_status ast = add_result(j->res, &p.res[i], j->err);
        if (st == DTA_OK)
            st = ast;
    }
    for (unsigned k = 0; k < threads; k++) {
        pworker *w = &p.w[k];
        if (!w->ready)
            continue;
        for (size_t g = 0; g < j->o->nonly && w->j.only_hit; g++)
            j->only_hit[g] = j->only_hit[g] || w->j.only_hit[g];
        j->done += w->done;
        j->total += w->total;
        free(w->j.in);
        free(w->j.out);
        free(w->j.only_hit);
        dtap_dq_free(w->j.dq);
    }
    free(p.w);
    free(p.res);
    return st;
}
