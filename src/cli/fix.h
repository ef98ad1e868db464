/* The fix of a finding: a dtaudit command that removes it (or none). One function builds it
 * for every renderer, so JSON ("fix": {"argv", "description"} or null) and text ("fix: ...")
 * show the same command. A fix only uses what convert can do: a target it can write
 * (f32, f16, bf16) from a dtype it can read; otherwise there is none. */
#ifndef DTA_CLI_FIX_H
#define DTA_CLI_FIX_H

#include <stdbool.h>
#include <stddef.h>

#include "report.h"

#define CLI_FIX_MAX_ARGS 16

typedef struct {
    const char *argv[CLI_FIX_MAX_ARGS]; /* point into buf or static strings */
    size_t argc;
    char description[512];
    char buf[4096];
    size_t used;
} cli_fix;

/* The glob a finding's fix selects: "MODULE.*", the tensor itself, or "" (whole root). */
void cli_fix_glob(const dta_finding *f, char *glob, size_t cap);
/* Builds the fix of f for input in, selecting glob (cli_fix_glob, or a group's glob in text
 * output), under the audit's options o (--expect). Returns false when the finding has no
 * fix convert can apply. */
bool cli_fix_build(const cli_options *o, const input_result *in, const dta_finding *f,
                   const char *glob, cli_fix *fx);
/* Suggested output path of a conversion ("x.safetensors" -> "x.bf16.safetensors"). */
void suggest_output(char *buf, size_t cap, const char *path, dta_dtype to);
/* The command as one shell line (words quoted as needed) into buf. */
const char *cli_fix_shell(const cli_fix *fx, char *buf, size_t cap);

#endif
