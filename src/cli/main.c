/* dtaudit: command dispatch, exit status. The library does the work; this file owns I/O. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "dtaudit/audit.h"
#include "dtaudit/model.h"
#include "dtaudit/policy.h"
#include "dtaudit/backend.h"
#include "dtaudit/values.h"
#include "options.h"
#include "report.h"

/* --base DIR: the base model's report (scan mode); its dtype goes into o->base_dtype. */
static int open_base(cli_options *o, dta_model **bm, dta_report **br)
{
    dta_error err;
    dta_audit_options so = {.expect = DTA_DTYPE_NONE, .findings = false};
    *bm = NULL;
    *br = NULL;
    if (dta_model_open(o->base, bm, &err) != DTA_OK ||
        dta_report_build(*bm, &so, br, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: --base: %s\n", shown(err.msg));
        dta_model_free(*bm);
        *bm = NULL;
        return 2;
    }
    o->base_dtype = (*bm)->config_dtype;
    for (size_t i = 0; i < (*br)->nroots; i++)
        if ((*br)->roots[i].analysed && (*br)->roots[i].dominant != DTA_DTYPE_NONE) {
            o->base_dtype = (*br)->roots[i].dominant;
            break;
        }
    return -1;
}

static int run_inspect(cli_options *o)
{
    input_result *in = calloc(o->npaths, sizeof *in);
    dta_model *base_model = NULL;
    dta_report *base_report = NULL;
    dta_audit_options ao = {.expect = o->expect,
                            .allow = o->allow,
                            .nallow = o->nallow,
                            .findings = o->command == CMD_AUDIT,
                            .severity = o->severity,
                            .nseverity = o->nseverity,
                            .underflow_share = o->underflow_share,
                            .intended = o->intended,
                            .strict = o->strict};
    /* --values: checked against --target, else --expect when convert can produce it */
    dta_values_options vo = {.target = o->target,
                             .device = o->device == DEVICE_CUDA  ? DTA_DEVICE_CUDA
                                       : o->device == DEVICE_CPU ? DTA_DEVICE_CPU
                                                                 : DTA_DEVICE_AUTO};
    char why[512];
    if (o->values && o->device == DEVICE_CUDA && !dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "dtaudit: --device cuda: %s\n", shown(why));
        free(in);
        return 3;
    }
    if (vo.target == DTA_DTYPE_NONE &&
        (o->expect == DTA_F32 || o->expect == DTA_F16 || o->expect == DTA_BF16))
        vo.target = o->expect;
    int status = 0;
    if (!in) {
        fputs("dtaudit: out of memory\n", stderr);
        return 2;
    }
    if (o->base) {
        int rc = open_base(o, &base_model, &base_report);
        if (rc >= 0) {
            free(in);
            return rc;
        }
        ao.base = base_report;
    }
    for (size_t i = 0; i < o->npaths; i++) {
        in[i].path = o->paths[i];
        ao.values = NULL;
        if (dta_model_open(o->paths[i], &in[i].model, &in[i].err) != DTA_OK ||
            (o->values &&
             dta_values_scan(in[i].model, &vo, &in[i].values, &in[i].err) != DTA_OK) ||
            (ao.values = in[i].values,
             dta_report_build(in[i].model, &ao, &in[i].report, &in[i].err) != DTA_OK)) {
            fprintf(stderr, "dtaudit: %s\n", shown(in[i].err.msg));
            dta_values_free(in[i].values);
            in[i].values = NULL;
            dta_model_free(in[i].model);
            in[i].model = NULL;
            status = 2;
        }
    }
    if (o->format == FMT_JSON) {
        if (report_json(stdout, o, in, o->npaths) != 0)
            status = 2;
    } else if (o->format == FMT_SARIF) {
        if (report_sarif(stdout, o, in, o->npaths) != 0)
            status = 2;
    } else if (o->format == FMT_GITHUB) {
        if (report_github(stdout, o, in, o->npaths) != 0)
            status = 2;
    } else {
        report_text(stdout, o, in, o->npaths, cli_use_color(o));
    }
    if (status == 0 && o->command == CMD_AUDIT && o->fail_on != DTA_SEV_NEVER)
        for (size_t i = 0; i < o->npaths; i++)
            for (size_t k = 0; in[i].report && k < in[i].report->nfindings; k++)
                if (in[i].report->findings[k].severity >= o->fail_on)
                    status = 1;
    for (size_t i = 0; i < o->npaths; i++) {
        dta_report_free(in[i].report);
        dta_values_free(in[i].values);
        dta_model_free(in[i].model);
    }
    free(in);
    dta_report_free(base_report);
    dta_model_free(base_model);
    return status; /* a failed write of the report is caught in main (output_status) */
}

/* --policy FILE: the file's settings under the command line's. The allow list is the
 * policy's rules followed by --allow's (borrowed pointers, freed by the caller). */
static int apply_policy(cli_options *o, dta_policy **pol, dta_allow **merged)
{
    dta_error err;
    *pol = NULL;
    *merged = NULL;
    if (!o->policy)
        return -1;
    if (dta_policy_load(o->policy, pol, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        return 2;
    }
    dta_policy *p = *pol;
    if (!o->expect_set)
        o->expect = p->expect;
    if (!o->fail_on_set && p->fail_on >= 0)
        o->fail_on = (dta_severity)p->fail_on;
    if (p->underflow_share >= 0) /* 0 in a policy: any underflow (the library's -1) */
        o->underflow_share = p->underflow_share > 0 ? p->underflow_share : -1;
    if (!o->strict_set && p->strict >= 0)
        o->strict = p->strict == 1;
    o->severity = p->severity;
    o->nseverity = p->nseverity;
    if (p->nallow) {
        dta_allow *a = malloc((p->nallow + o->nallow) * sizeof *a);
        if (!a) {
            fputs("dtaudit: out of memory\n", stderr);
            return 2;
        }
        memcpy(a, p->allow, p->nallow * sizeof *a);
        if (o->nallow)
            memcpy(a + p->nallow, o->allow, o->nallow * sizeof *a);
        *merged = a;
    }
    return -1;
}

/* The report is the product: when it could not be written whole (disk full, closed pipe)
 * the run failed, whatever it found: exit 2 with one line, for every command and format. */
static int output_status(int rc)
{
    errno = 0;
    int bad = fflush(stdout) != 0;
    int e = errno;
    if (!bad && !ferror(stdout))
        return rc;
    fprintf(stderr, "dtaudit: cannot write the report to standard output%s%s\n", e ? ": " : "",
            e ? strerror(e) : "");
    return 2;
}

int main(int argc, char **argv)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
    /* Memory proportional to content: a fixed threshold keeps every block over 128 KiB in
     * its own mapping, returned to the system when freed. glibc's default raises the
     * threshold after such a free, and the large transient arrays of a big header (parse
     * entries, hash tables, per-node arrays) then come from the heap, where growing and
     * freeing them leaves resident holes: 41 MB at the peak of a 1M-tensor scan. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    cli_options o;
    memset(&o, 0, sizeof o);
    o.color = -1;
    o.expect = DTA_DTYPE_NONE;
    o.to = DTA_DTYPE_NONE;
    o.keep_intended = -1;
    o.fail_on = DTA_SEV_WARNING;
    o.target = DTA_DTYPE_NONE;
    o.underflow_share = DTA_UNDERFLOW_SHARE_DEFAULT;

    static char outbuf[1 << 16]; /* reports are large: fewer write calls */
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    signal(SIGPIPE, SIG_IGN); /* a closed pipe is a write error (EPIPE), reported as one */
    if (argc < 2) {
        cli_usage(stderr, 0);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        cli_usage(stdout, 0);
        return output_status(0);
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        cli_version(stdout);
        return output_status(0);
    }
    if (strcmp(cmd, "scan") == 0)
        o.command = CMD_SCAN;
    else if (strcmp(cmd, "audit") == 0)
        o.command = CMD_AUDIT;
    else if (strcmp(cmd, "diff") == 0)
        o.command = CMD_DIFF;
    else if (strcmp(cmd, "convert") == 0)
        o.command = CMD_CONVERT;
    else if (strcmp(cmd, "verify") == 0)
        o.command = CMD_VERIFY;
    else {
        fprintf(stderr, "dtaudit: unknown command '%s' (see 'dtaudit --help')\n", shown(cmd));
        return 2;
    }
    o.command_name = cmd;
    int rc = cli_parse(argc - 1, argv + 1, &o);
    dta_policy *pol = NULL;
    dta_allow *merged = NULL;
    dta_intended *table = NULL;
    if (rc < 0)
        rc = apply_policy(&o, &pol, &merged);
    if (rc < 0) {
        /* the built-in intended-precision table, a policy's local rules in front */
        dta_error err;
        dta_status ist = dta_intended_builtin(&table, &err);
        if (ist == DTA_OK && pol && pol->intended) {
            ist = dta_intended_prepend(table, pol->intended, &err);
            pol->intended = NULL; /* moved into the table (or freed on failure) */
        }
        if (ist != DTA_OK) {
            fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
            rc = 2;
        }
        o.intended = table;
    }
    if (rc < 0) {
        dta_allow *own = o.allow;
        size_t nown = o.nallow;
        if (merged) {
            o.allow = merged;
            o.nallow += pol->nallow;
        }
        rc = o.command == CMD_DIFF      ? run_diff(&o)
             : o.command == CMD_CONVERT ? cmd_convert(&o)
             : o.command == CMD_VERIFY  ? cmd_verify(&o)
                                        : run_inspect(&o);
        o.allow = own;
        o.nallow = nown;
    }
    free(merged);
    dta_intended_free(table);
    dta_policy_free(pol);
    cli_options_free(&o);
    return output_status(rc);
}
