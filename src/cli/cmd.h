/* The commands (cmd_*.c): each reads its inputs through the library, hands the result to a
 * renderer (report.h) and returns the exit status. main.c only dispatches to them. */
#ifndef DTA_CLI_CMD_H
#define DTA_CLI_CMD_H

#include "options.h"

int cmd_inspect(cli_options *o); /* scan and audit (cmd_inspect.c) */
int cmd_diff(cli_options *o);    /* cmd_diff.c */
int cmd_convert(cli_options *o); /* cmd_convert.c */
int cmd_verify(cli_options *o);  /* cmd_verify.c */

/* Whether a finding or change of severity s makes the exit status 1 (--fail-on): audit's
 * findings (cmd_inspect.c) and diff's changes (cmd_diff.c) are judged by this one test. */
static inline bool cmd_fails_on(const cli_options *o, dta_severity s)
{
    return o->fail_on != DTA_SEV_NEVER && s >= o->fail_on;
}

#endif
