/* The commands (cmd_*.c): each reads its inputs through the library, hands the result to a
 * renderer (report.h) and returns the exit status. main.c only dispatches to them. */
#ifndef DTA_CLI_CMD_H
#define DTA_CLI_CMD_H

#include "options.h"

int cmd_inspect(cli_options *o); /* scan and audit (cmd_inspect.c) */
int cmd_diff(cli_options *o);    /* cmd_diff.c */
int cmd_convert(cli_options *o); /* cmd_convert.c */
int cmd_verify(cli_options *o);  /* cmd_verify.c */

#endif
