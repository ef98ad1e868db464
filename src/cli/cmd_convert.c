/* dtaudit convert: options to the library job, progress bar, signals; the summary is
 * rendered by report_convert.c. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#include "cmd.h"
#include "report.h"

/* Set by SIGINT/SIGTERM; the library polls it between chunks and removes its temporary
 * output, then we re-raise the signal so the shell sees how we ended. */
static volatile int cancel_flag;
static volatile sig_atomic_t cancel_signal;

static void on_signal(int sig)
{
    cancel_flag = 1;
    cancel_signal = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void reraise_if_cancelled(void)
{
    if (!cancel_signal)
        return;
    signal(cancel_signal, SIG_DFL);
    raise(cancel_signal);
}

/* ---- progress bar (stderr, TTY only) ------------------------------------------------ */

typedef struct {
    double start, last;
    bool on;
} bar;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    bar *b = ctx;
    double t = now_s();
    if (!b->on || (t - b->last < 0.1 && done < total))
        return;
    b->last = t;
    double frac = total ? (double)done / (double)total : 1.0;
    double rate = t > b->start ? (double)done / (t - b->start) : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    char d[32], tt[32], r[32];
    fmt_bytes(d, sizeof d, done);
    fmt_bytes(tt, sizeof tt, total);
    fmt_bytes(r, sizeof r, (uint64_t)rate);
    int w = 30, fill = (int)(frac * w);
    fprintf(stderr, "\r[%.*s%*s] %5.1f%% %s / %s  %s/s  ETA %.0fs ", fill,
            "==============================", w - fill, "", 100.0 * frac, d, tt, r, eta);
    fflush(stderr);
}

static void bar_done(bar *b)
{
    if (b->on) {
        fputs("\r\033[K", stderr); /* clear the line */
        fflush(stderr);
    }
}

/* ---- convert ----------------------------------------------------------------------------- */

int cmd_convert(cli_options *o)
{
    dta_convert_options co;
    dta_convert_result *r = NULL;
    dta_error err;
    bar b = {0};

    char why[512];
    if (o->device == DEVICE_CUDA && !dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "dtaudit: --device cuda: %s\n", shown(why));
        return 3;
    }
    memset(&co, 0, sizeof co);
    co.device = o->device == DEVICE_CUDA ? DTA_DEVICE_CUDA
                : o->device == DEVICE_CPU ? DTA_DEVICE_CPU : DTA_DEVICE_AUTO;
    co.to = o->to;
    co.to_auto = o->to_auto;
    /* --keep-intended: on by default with --to auto, off otherwise */
    if (o->keep_intended > 0 || (o->keep_intended < 0 && o->to_auto))
        co.keep_intended = o->intended;
    co.only = (const char *const *)o->only;
    co.nonly = o->nonly;
    co.keep = (const char *const *)o->keep;
    co.nkeep = o->nkeep;
    co.optimizer = o->optimizer;
    co.overflow = o->overflow;
    co.out_format = o->out_format;
    co.force = o->force;
    /* --to auto normalises the unquantized tensors: quantized parameters stay as they are */
    co.keep_quantized = o->keep_quantized || o->to_auto;
    co.verify = o->verify;
    co.dequantize = o->dequantize;
    co.jobs = o->jobs;
    co.part = o->part;
    co.nparts = o->nparts;
    co.cancel = &cancel_flag;
    b.on = o->verbosity >= 0 && isatty(STDERR_FILENO) && !getenv("DTAUDIT_NO_PROGRESS");
    b.start = b.last = now_s();
    co.progress = on_progress;
    co.progress_ctx = &b;
    install_signals();

    dta_status st = dta_convert_checkpoint(o->paths[0], o->output, &co, &r, &err);
    bar_done(&b);
    if (st != DTA_OK) {
        reraise_if_cancelled();
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        return st == DTA_E_REFUSED ? 1 : 2;
    }
    if (o->format == FMT_JSON)
        report_convert_json(stdout, o, r);
    else
        report_convert_text(r->refused ? stderr : stdout, o, r);
    int rc = r->refused ? 1 : 0;
    dta_convert_result_free(r);
    return rc;
}
