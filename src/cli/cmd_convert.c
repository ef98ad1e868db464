/* dtaudit convert / verify: options to the library job, progress bar, signals, summary. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#include "dtaudit/version.h"
#include "options.h"
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

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void print_convert_json(FILE *out, const cli_options *o, const dta_convert_result *r)
{
    fprintf(out, "{\n  \"tool\": \"dtaudit\",\n  \"version\": \"%s\",\n  \"schema\": 1,\n"
                 "  \"command\": \"convert\",\n  \"input\": ",
            dta_version());
    json_str(out, o->paths[0]);
    fputs(",\n  \"output\": ", out);
    if (r->written)
        json_str(out, r->written);
    else
        fputs("null", out);
    fprintf(out, ",\n  \"format\": \"%s\",\n  \"to\": \"%s\",\n  \"refused\": %s,\n",
            r->out_format, dta_dtype_name(o->to), r->refused ? "true" : "false");
    fprintf(out,
            "  \"tensors\": %zu,\n  \"tensors_converted\": %zu,\n  \"storages_converted\": %zu,\n"
            "  \"bytes_in\": %llu,\n  \"bytes_out\": %llu,\n",
            r->tensors, r->tensors_converted, r->storages_converted,
            (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
    fprintf(out,
            "  \"elements\": %llu,\n  \"overflow\": %llu,\n  \"underflow\": %llu,\n"
            "  \"nan\": %llu,\n  \"inf\": %llu,\n  \"issues\": [",
            (unsigned long long)r->stats.elements, (unsigned long long)r->stats.overflow,
            (unsigned long long)r->stats.underflow, (unsigned long long)r->stats.nan,
            (unsigned long long)r->stats.inf);
    for (size_t i = 0; i < r->nissues; i++) {
        fputs(i ? ",\n    {\"tensor\": " : "\n    {\"tensor\": ", out);
        json_str(out, r->issues[i].name);
        fprintf(out, ", \"overflow\": %llu, \"nan\": %llu, \"inf\": %llu}",
                (unsigned long long)r->issues[i].overflow, (unsigned long long)r->issues[i].nan,
                (unsigned long long)r->issues[i].inf);
    }
    fputs(r->nissues ? "\n  ]" : "]", out);
    fprintf(out, ",\n  \"files_copied\": %zu,\n  \"copied_weights\": [", r->files_copied);
    for (size_t i = 0; i < r->ncopied_weights; i++) {
        fputs(i ? ", " : "", out);
        json_str(out, r->copied_weights[i]);
    }
    fputs("],\n  \"left_out\": [", out);
    for (size_t i = 0; i < r->nleft_out; i++) {
        fputs(i ? ", " : "", out);
        json_str(out, r->left_out[i]);
    }
    fputs("]", out);
    if (o->verify)
        fprintf(out,
                ",\n  \"verify\": {\"elements\": %llu, \"mismatches\": %llu, "
                "\"nonfinite_added\": %llu, \"max_abs_err\": %.9g, \"max_rel_err\": %.9g}",
                (unsigned long long)r->verify.elements, (unsigned long long)r->verify.mismatches,
                (unsigned long long)r->verify.nonfinite_added, r->verify.max_abs_err,
                r->verify.max_rel_err);
    fputs("\n}\n", out);
}

static void print_convert_text(FILE *out, const cli_options *o, const dta_convert_result *r)
{
    char bi[32], bo[32];
    fmt_bytes(bi, sizeof bi, r->bytes_in);
    fmt_bytes(bo, sizeof bo, r->bytes_out);
    if (r->refused) {
        fprintf(out, "refused: values that %s cannot hold; nothing was written\n",
                dta_dtype_name(o->to));
        for (size_t i = 0; i < r->nissues; i++)
            if (r->issues[i].overflow)
                fprintf(out, "  %s: %llu value%s beyond the %s range\n", r->issues[i].name,
                        (unsigned long long)r->issues[i].overflow,
                        r->issues[i].overflow == 1 ? "" : "s", dta_dtype_name(o->to));
        fprintf(out, "convert anyway with --on-overflow inf (what torch's .to() does) or "
                     "--on-overflow saturate, or keep those tensors with --keep\n");
        return;
    }
    if (o->verbosity < 0)
        return;
    fprintf(out, "converted %s -> %s (%s)\n", o->paths[0], r->written, r->out_format);
    fprintf(out, "  %zu of %zu tensors to %s (%zu storages); tensor data %s -> %s\n",
            r->tensors_converted, r->tensors, dta_dtype_name(o->to), r->storages_converted, bi,
            bo);
    if (r->files_copied)
        fprintf(out, "  %zu other file%s and link%s copied as they are\n", r->files_copied,
                r->files_copied == 1 ? "" : "s", r->files_copied == 1 ? "" : "s");
    for (size_t i = 0; i < r->ncopied_weights; i++)
        fprintf(out, "  note: %s copied without conversion (not read as the model's weights)\n",
                r->copied_weights[i]);
    for (size_t i = 0; i < r->nleft_out; i++)
        fprintf(out, "  left out: %s\n", r->left_out[i]);
    if (r->stats.overflow)
        fprintf(out, "  %llu values beyond the %s range became %s (--on-overflow %s)\n",
                (unsigned long long)r->stats.overflow, dta_dtype_name(o->to),
                o->overflow == DTA_OVERFLOW_SATURATE ? "the largest finite value" : "inf",
                o->overflow == DTA_OVERFLOW_SATURATE ? "saturate" : "inf");
    if (r->stats.underflow && o->verbosity > 0)
        fprintf(out, "  %llu nonzero values became zero (below the smallest %s subnormal)\n",
                (unsigned long long)r->stats.underflow, dta_dtype_name(o->to));
    if (r->stats.nan || r->stats.inf) {
        fprintf(out, "  note: the source already holds %llu NaN and %llu Inf values (kept):\n",
                (unsigned long long)r->stats.nan, (unsigned long long)r->stats.inf);
        for (size_t i = 0; i < r->nissues; i++)
            if (r->issues[i].nan || r->issues[i].inf)
                fprintf(out, "    %s: %llu NaN, %llu Inf\n", r->issues[i].name,
                        (unsigned long long)r->issues[i].nan,
                        (unsigned long long)r->issues[i].inf);
    }
    if (o->verify)
        fprintf(out, "  verified before publishing: %llu elements, 0 mismatches, max abs error "
                     "%.3g, max rel error %.3g\n",
                (unsigned long long)r->verify.elements, r->verify.max_abs_err,
                r->verify.max_rel_err);
}

int cmd_convert(cli_options *o)
{
    dta_convert_options co;
    dta_convert_result *r = NULL;
    dta_error err;
    bar b = {0};

    char why[512];
    if (o->device == DEVICE_CUDA && !dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "dtaudit: --device cuda: %s\n", why);
        return 3;
    }
    memset(&co, 0, sizeof co);
    co.device = o->device == DEVICE_CUDA ? DTA_DEVICE_CUDA
                : o->device == DEVICE_CPU ? DTA_DEVICE_CPU : DTA_DEVICE_AUTO;
    co.to = o->to;
    co.only = (const char *const *)o->only;
    co.nonly = o->nonly;
    co.keep = (const char *const *)o->keep;
    co.nkeep = o->nkeep;
    co.optimizer = o->optimizer;
    co.overflow = o->overflow;
    co.out_format = o->out_format;
    co.force = o->force;
    co.verify = o->verify;
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
        fprintf(stderr, "dtaudit: %s\n", err.msg);
        return st == DTA_E_REFUSED ? 1 : 2;
    }
    if (o->format == FMT_JSON)
        print_convert_json(stdout, o, r);
    else
        print_convert_text(r->refused ? stderr : stdout, o, r);
    int rc = r->refused ? 1 : 0;
    dta_convert_result_free(r);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------------- */

int cmd_verify(cli_options *o)
{
    dta_verify_result v;
    dta_error err;
    char why[512];
    if (o->device == DEVICE_CUDA && !dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "dtaudit: --device cuda: %s\n", why);
        return 3;
    }
    dta_device dev = o->device == DEVICE_CUDA ? DTA_DEVICE_CUDA
                     : o->device == DEVICE_CPU ? DTA_DEVICE_CPU : DTA_DEVICE_AUTO;
    if (dta_verify_checkpoints(o->paths[0], o->paths[1], o->overflow, dev, &v, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", err.msg);
        return 2;
    }
    bool ok = !v.tensors_bad && !v.missing && !v.extra && !v.shape_changed;
    if (o->format == FMT_JSON) {
        printf("{\n  \"tool\": \"dtaudit\",\n  \"version\": \"%s\",\n  \"schema\": 1,\n"
               "  \"command\": \"verify\",\n  \"source\": ",
               dta_version());
        json_str(stdout, o->paths[0]);
        fputs(",\n  \"converted\": ", stdout);
        json_str(stdout, o->paths[1]);
        printf(",\n  \"ok\": %s,\n  \"tensors\": %zu,\n  \"tensors_bad\": %zu,\n"
               "  \"missing\": %zu,\n  \"extra\": %zu,\n  \"shape_changed\": %zu,\n"
               "  \"elements\": %llu,\n  \"mismatches\": %llu,\n  \"nonfinite_added\": %llu,\n"
               "  \"max_abs_err\": %.9g,\n  \"max_rel_err\": %.9g,\n  \"first_bad\": ",
               ok ? "true" : "false", v.tensors, v.tensors_bad, v.missing, v.extra,
               v.shape_changed, (unsigned long long)v.total.elements,
               (unsigned long long)v.total.mismatches,
               (unsigned long long)v.total.nonfinite_added, v.total.max_abs_err,
               v.total.max_rel_err);
        if (v.first_bad)
            json_str(stdout, v.first_bad);
        else
            fputs("null", stdout);
        fputs(",\n  \"first_missing\": ", stdout);
        if (v.first_missing)
            json_str(stdout, v.first_missing);
        else
            fputs("null", stdout);
        fputs("\n}\n", stdout);
    } else if (o->verbosity >= 0 || !ok) {
        printf("%s: %zu tensors compared, %llu elements; %llu mismatches, %llu non-finite values "
               "introduced; max abs error %.3g, max rel error %.3g\n",
               ok ? "ok" : "MISMATCH", v.tensors, (unsigned long long)v.total.elements,
               (unsigned long long)v.total.mismatches,
               (unsigned long long)v.total.nonfinite_added, v.total.max_abs_err,
               v.total.max_rel_err);
        if (v.tensors_bad)
            printf("  %zu tensors differ from the conversion of their source (first: %s)\n",
                   v.tensors_bad, v.first_bad);
        if (v.shape_changed)
            printf("  %zu tensors changed shape\n", v.shape_changed);
        if (v.missing)
            printf("  %zu source tensors are missing from the converted checkpoint (first: %s)\n",
                   v.missing, v.first_missing ? v.first_missing : "-");
        if (v.extra)
            printf("  %zu converted tensors have no source\n", v.extra);
    }
    free(v.first_bad);
    free(v.first_missing);
    return ok ? 0 : 1;
}
