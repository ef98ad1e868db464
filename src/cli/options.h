/* Command-line options: one table drives getopt_long, --help and the man-page check. */
#ifndef DTA_CLI_OPTIONS_H
#define DTA_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>

#include "dtaudit/audit.h"
#include "dtaudit/convert.h"

enum {
    CMD_SCAN = 1 << 0,
    CMD_AUDIT = 1 << 1,
    CMD_DIFF = 1 << 2,
    CMD_CONVERT = 1 << 3,
    CMD_VERIFY = 1 << 4,
    CMD_ALL = CMD_SCAN | CMD_AUDIT | CMD_DIFF | CMD_CONVERT | CMD_VERIFY
};

typedef enum { DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA } device_kind;

typedef enum { FMT_TEXT, FMT_JSON, FMT_SARIF, FMT_GITHUB } out_format;

typedef struct {
    int command;             /* CMD_SCAN or CMD_AUDIT */
    const char *command_name;
    out_format format;
    int color;               /* -1 auto, 0 never, 1 always */
    int verbosity;           /* -1 quiet, 0 normal, 1 verbose */
    dta_dtype expect;
    dta_allow *allow;
    size_t nallow;
    dta_severity fail_on;
    char **paths;
    size_t npaths;
    bool expect_set;         /* given on the command line: overrides the policy */
    bool fail_on_set;
    const char *policy;      /* --policy FILE, NULL when none */
    const char *base;        /* --base DIR, NULL when none */
    bool values;             /* audit --values (or --target) */
    dta_dtype target;        /* --target, DTA_DTYPE_NONE when not given */
    double underflow_share;  /* precision-underflow threshold (policy, default 0.001) */
    /* filled by main.c after the policy and the base model are read */
    const dta_rule_severity *severity;
    size_t nseverity;
    dta_dtype base_dtype;    /* the base model's dtype (DTA_DTYPE_NONE when unknown) */
    /* convert / verify */
    const char *output;      /* -o OUT */
    dta_dtype to;            /* --to */
    char **only, **keep;     /* --only / --keep globs (borrowed from argv) */
    size_t nonly, nkeep;
    bool optimizer, force, verify;
    bool keep_quantized;         /* convert --keep-quantized */
    bool dequantize;         /* convert --dequantize */
    dta_overflow_mode overflow;
    dta_out_format out_format;
    device_kind device;
    /* intended precision (intended.h): the table (built-in + policy rules; main.c) */
    bool strict, strict_set; /* --strict: intended islands are ordinary findings */
    const dta_intended *intended;
    bool to_auto;            /* convert --to auto */
    int keep_intended;       /* --keep-intended 1, --no-keep-intended 0, -1 default (auto: on) */
    unsigned jobs;           /* convert --jobs N (0: the number of CPUs) */
    unsigned part, nparts;   /* convert --part K/N (nparts 0: not given) */
} cli_options;

typedef struct {
    const char *name;        /* long name */
    int short_name;          /* 0 when none */
    const char *arg;         /* argument name, NULL when none */
    int commands;            /* CMD_* it applies to */
    const char *help;
} cli_option;

extern const cli_option cli_option_table[];

/* Parses argv after the command word. Returns -1 on success, otherwise the exit status
 * (0 after --help/--version, 2 on a usage error, already reported on stderr). */
int cli_parse(int argc, char **argv, cli_options *o);
void cli_options_free(cli_options *o);
void cli_usage(FILE *out, int command);
void cli_version(FILE *out);

#endif
