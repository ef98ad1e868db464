/* dtaudit scan / audit PATH...: each input opened and reported by the library
 * (dta_report_build), rendered as text, JSON, SARIF or GitHub annotations (report_*.c). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "dtaudit/audit.h"
#include "dtaudit/backend.h"
#include "dtaudit/model.h"
#include "dtaudit/values.h"
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

/* scan and audit: every PATH read and reported; exit 1 when an audit finding is at or above
 * --fail-on, 2 when an input could not be read. */
int cmd_inspect(cli_options *o)
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
    if (status == 0 && o->command == CMD_AUDIT)
        for (size_t i = 0; i < o->npaths; i++)
            for (size_t k = 0; in[i].report && k < in[i].report->nfindings; k++)
                if (cmd_fails_on(o, in[i].report->findings[k].severity))
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
