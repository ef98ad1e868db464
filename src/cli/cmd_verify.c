/* dtaudit verify SOURCE CONVERTED: every tensor of CONVERTED is what converting SOURCE gives
 * (the library recomputes it); the result is rendered by report_convert.c. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "dtaudit/backend.h"
#include "dtaudit/convert.h"
#include "report.h"

int cmd_verify(cli_options *o)
{
    dta_verify_result v;
    dta_error err;
    char why[512];
    if (o->device == DEVICE_CUDA && !dta_cuda_available(why, sizeof why)) {
        fprintf(stderr, "dtaudit: --device cuda: %s\n", shown(why));
        return 3;
    }
    dta_device dev = o->device == DEVICE_CUDA ? DTA_DEVICE_CUDA
                     : o->device == DEVICE_CPU ? DTA_DEVICE_CPU : DTA_DEVICE_AUTO;
    if (dta_verify_checkpoints(o->paths[0], o->paths[1], o->overflow, dev, &v, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        return 2;
    }
    bool ok = !v.tensors_bad && !v.missing && !v.extra && !v.shape_changed;
    report_verify(stdout, o, &v, ok);
    free(v.first_bad);
    free(v.first_missing);
    return ok ? 0 : 1;
}
