/* dtaudit diff OLD NEW: reads both checkpoints, asks the library for the drift
 * (dta_diff_build) and renders it (report_diff.c). Exit status: 1 when a change is at or
 * above --fail-on, 2 when an input cannot be read (nothing is printed on stdout then). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "dtaudit/diff.h"
#include "report.h"

int cmd_diff(cli_options *o)
{
    input_result in[2];
    dta_diff *d = NULL;
    dta_diff_options dopt = {o->severity, o->nseverity};
    dta_error err;
    int status = 0;
    memset(in, 0, sizeof in);
    for (int i = 0; i < 2; i++) {
        in[i].path = o->paths[i];
        if (dta_model_open(o->paths[i], &in[i].model, &in[i].err) != DTA_OK) {
            fprintf(stderr, "dtaudit: %s\n", shown(in[i].err.msg));
            status = 2;
        }
    }
    if (status == 0 && dta_diff_build(in[0].model, in[1].model, &dopt, &d, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        status = 2;
    }
    if (status == 0) {
        status = report_diff(stdout, o, in, d);
        for (size_t i = 0; status == 0 && i < d->nchanges; i++)
            if (cmd_fails_on(o, d->changes[i].severity))
                status = 1;
    }
    dta_diff_free(d);
    for (int i = 0; i < 2; i++)
        dta_model_free(in[i].model);
    return status; /* a failed write of the report is caught in main (output_status) */
}
