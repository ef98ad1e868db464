/* The terminal: whether text output is coloured. Used by every text renderer and command
 * (main.c, cmd_diff.c), so it lives in neither. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <unistd.h>

#include "report.h"

bool cli_use_color(const cli_options *o)
{
    if (o->color >= 0)
        return o->color == 1;
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        return false;
    return isatty(STDOUT_FILENO);
}
