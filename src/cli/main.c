/* dtaudit: command dispatch, exit status. The library does the work; this file owns I/O. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/audit.h"
#include "dtaudit/model.h"
#include "options.h"
#include "report.h"

static bool use_color(const cli_options *o)
{
    if (o->color >= 0)
        return o->color == 1;
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        return false;
    return isatty(STDOUT_FILENO);
}

static int run_inspect(cli_options *o)
{
    input_result *in = calloc(o->npaths, sizeof *in);
    dta_audit_options ao = {o->expect, o->allow, o->nallow, o->command == CMD_AUDIT};
    int status = 0;
    if (!in) {
        fputs("dtaudit: out of memory\n", stderr);
        return 2;
    }
    for (size_t i = 0; i < o->npaths; i++) {
        in[i].path = o->paths[i];
        if (dta_model_open(o->paths[i], &in[i].model, &in[i].err) != DTA_OK ||
            dta_report_build(in[i].model, &ao, &in[i].report, &in[i].err) != DTA_OK) {
            fprintf(stderr, "dtaudit: %s\n", in[i].err.msg);
            dta_model_free(in[i].model);
            in[i].model = NULL;
            status = 2;
        }
    }
    if (o->format == FMT_JSON) {
        if (report_json(stdout, o, in, o->npaths) != 0)
            status = 2;
    } else {
        report_text(stdout, o, in, o->npaths, use_color(o));
    }
    if (status == 0 && o->command == CMD_AUDIT && o->fail_on != DTA_SEV_NEVER)
        for (size_t i = 0; i < o->npaths; i++)
            for (size_t k = 0; in[i].report && k < in[i].report->nfindings; k++)
                if (in[i].report->findings[k].severity >= o->fail_on)
                    status = 1;
    for (size_t i = 0; i < o->npaths; i++) {
        dta_report_free(in[i].report);
        dta_model_free(in[i].model);
    }
    free(in);
    if (fflush(stdout) != 0 && status == 0) {
        fputs("dtaudit: error writing output\n", stderr);
        status = 2;
    }
    return status;
}

int main(int argc, char **argv)
{
    cli_options o;
    memset(&o, 0, sizeof o);
    o.color = -1;
    o.expect = DTA_DTYPE_NONE;
    o.fail_on = DTA_SEV_WARNING;

    static char outbuf[1 << 16]; /* reports are large: fewer write calls */
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    if (argc < 2) {
        cli_usage(stderr, 0);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        cli_usage(stdout, 0);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        cli_version(stdout);
        return 0;
    }
    if (strcmp(cmd, "scan") == 0)
        o.command = CMD_SCAN;
    else if (strcmp(cmd, "audit") == 0)
        o.command = CMD_AUDIT;
    else {
        fprintf(stderr, "dtaudit: unknown command '%s' (see 'dtaudit --help')\n", cmd);
        return 2;
    }
    o.command_name = cmd;
    int rc = cli_parse(argc - 1, argv + 1, &o);
    if (rc < 0)
        rc = run_inspect(&o);
    cli_options_free(&o);
    return rc;
}
