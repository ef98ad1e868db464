/* Threads inside one output file (convert --jobs with fewer files than threads): the
 * tensors of the file written side by side (convert_shards.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert_shards.h"

/* ---- threads inside one file -------------------------------------------------------------- */

typedef struct items items;

typedef struct {
    items *it;
    dtap_job j;
    dta_convert_options o;
    dta_error err;
    uint64_t done, total;
    pthread_t th;
    bool started, ready;
} iworker;

struct items {
    dtap_job *parent;
    size_t n, next;
    dtap_item_fn fn;
    void *ctx;
    dta_convert_result *ires;
    iworker *w;
    unsigned nw;
    pthread_mutex_t mu;
    volatile int stop;
    bool failed;
    dta_status st;
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

static void iworker_progress(void *ctx, uint64_t done, uint64_t total)
{
    iworker *w = ctx;
    items *it = w->it;
    const dta_convert_options *po = it->parent->o;
    pthread_mutex_lock(&it->mu);
    w->done = done;
    w->total = total;
    uint64_t d = it->parent->done, t = it->parent->total;
    for (unsigned k = 0; k < it->nw; k++) {
        d += it->w[k].done;
        t += it->w[k].total;
    }
    if (po->progress)
        po->progress(po->progress_ctx, d, t);
    pthread_mutex_unlock(&it->mu);
}

static void *iworker_main(void *arg)
{
    iworker *w = arg;
    items *it = w->it;
    for (;;) {
        pthread_mutex_lock(&it->mu);
        size_t i = it->next++;
        bool go = i < it->n && !it->stop && !(it->parent->o->cancel && *it->parent->o->cancel);
        pthread_mutex_unlock(&it->mu);
        if (!go)
            break;
        w->j.res = &it->ires[i];
        dta_status st = it->fn(it->ctx, &w->j, i);
        if (st != DTA_OK) {
            pthread_mutex_lock(&it->mu);
            if (!it->failed && !(it->stop && w->err.sys_errno == EINTR)) {
                it->failed = true;
                it->st = st;
                it->err = w->err;
            }
            it->stop = 1;
            pthread_mutex_unlock(&it->mu);
            break;
        }
    }
    return NULL;
}

dta_status dtap_items_run(dtap_job *j, size_t n, unsigned threads, dtap_item_fn fn,
                          void *ctx)
{
    items it;
    dta_status st = DTA_OK;
    memset(&it, 0, sizeof it);
    it.parent = j;
    it.n = n;
    it.fn = fn;
    it.ctx = ctx;
    if (threads > DTA_MAX_JOBS)
        threads = DTA_MAX_JOBS;
    if (threads > n)
        threads = n ? (unsigned)n : 1;
    it.ires = calloc(n ? n : 1, sizeof *it.ires);
    it.w = calloc(threads ? threads : 1, sizeof *it.w);
    if (!it.ires || !it.w) {
        free(it.ires);
        free(it.w);
        return dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    it.nw = threads;
    pthread_mutex_init(&it.mu, NULL);
    for (unsigned k = 0; k < threads && st == DTA_OK; k++) {
        iworker *w = &it.w[k];
        w->it = &it;
        w->j = *j;
        w->o = *j->o;
        w->o.progress = iworker_progress;
        w->o.progress_ctx = w;
        w->o.cancel = &it.stop;
        w->j.o = &w->o;
        w->j.err = &w->err;
        w->j.done = w->j.total = 0;
        w->j.in = malloc(j->chunk);
        w->j.out = malloc(j->chunk * 2);
        w->j.only_hit = calloc(j->o->nonly ? j->o->nonly : 1, sizeof *w->j.only_hit);
        w->j.dq = NULL;
        w->ready = true;
        if (!w->j.in || !w->j.out || !w->j.only_hit)
            st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        else if (j->dq && j->dq_model)
            st = dtap_dq_open(j->dq_model, &w->j.dq, j->err);
    }
    for (unsigned k = 0; k < threads && st == DTA_OK; k++) {
        if (pthread_create(&it.w[k].th, NULL, iworker_main, &it.w[k]) != 0) {
            if (k == 0) /* not even one thread: run here */
                iworker_main(&it.w[0]);
            break;
        }
        it.w[k].started = true;
    }
    for (unsigned k = 0; k < threads; k++)
        if (it.w[k].started)
            pthread_join(it.w[k].th, NULL);
    pthread_mutex_destroy(&it.mu);
    if (st == DTA_OK && it.failed) {
        st = it.st;
        *j->err = it.err;
    } else if (st == DTA_OK && it.stop) {
        st = dta_error_set(j->err, DTA_E_IO, EINTR, "cancelled");
    } else if (st == DTA_OK && j->o->cancel && *j->o->cancel) {
        st = dta_error_set(j->err, DTA_E_IO, EINTR, "cancelled");
    }
    dta_convert_result *r = j->res;
    for (size_t i = 0; i < n; i++) {
        dta_convert_result *s = &it.ires[i];
        r->tensors_converted += s->tensors_converted;
        r->storages_converted += s->storages_converted;
        r->bytes_in += s->bytes_in;
        r->bytes_out += s->bytes_out;
        dtap_stats_add(&r->stats, &s->stats);
        r->params_dequantized += s->params_dequantized;
        if (s->nissues) {
            dta_convert_issue *v = realloc(r->issues, (r->nissues + s->nissues) * sizeof *v);
            if (!v) {
                for (size_t k = 0; k < s->nissues; k++)
                    free(s->issues[k].name);
                if (st == DTA_OK)
                    st = dta_error_set(j->err, DTA_E_NOMEM, ENOMEM, "out of memory");
            } else {
                memcpy(v + r->nissues, s->issues, s->nissues * sizeof *v);
                r->issues = v;
                r->nissues += s->nissues;
            }
            free(s->issues);
        }
    }
    for (unsigned k = 0; k < threads; k++) {
        iworker *w = &it.w[k];
        if (!w->ready)
            continue;
        j->done += w->done;
        j->total += w->total;
        free(w->j.in);
        free(w->j.out);
        free(w->j.only_hit);
        dtap_dq_free(w->j.dq);
    }
    free(it.w);
    free(it.ires);
    return st;
}

