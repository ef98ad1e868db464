/* What a command runs under besides its options: the --policy file's settings (under the
 * command line's), the policy's allow rules in front of --allow's, and the
 * intended-precision table (built in, a policy's local rules in front). */
#ifndef DTA_CLI_SETTINGS_H
#define DTA_CLI_SETTINGS_H

#include "dtaudit/intended.h"
#include "dtaudit/policy.h"
#include "options.h"

typedef struct {
    dta_policy *policy;
    dta_allow *merged;      /* the policy's allow rules, then --allow's */
    dta_intended *intended;
    dta_allow *own_allow;   /* o->allow as parsed while merged is in its place */
    size_t own_nallow;
} cli_settings;

/* Loads the policy and builds the table into s and o. Returns -1 on success, else the exit
 * status (the error already reported on stderr). */
int cli_settings_load(cli_options *o, cli_settings *s);
/* Gives o its own allow list back and frees what cli_settings_load made. */
void cli_settings_free(cli_options *o, cli_settings *s);

#endif
