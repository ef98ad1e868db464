/* The text renderer of scan and audit (report_text.c) and its parts: the module tree
 * (report_tree.c) and the findings (report_findings.c). Private to those files. */
#ifndef DTA_CLI_REPORT_TEXT_H
#define DTA_CLI_REPORT_TEXT_H

#include <stdio.h>

#include "dtaudit/quant.h"
#include "report.h"

struct ttree;

typedef struct {
    FILE *out;
    const palette *pal;
    int verbosity;
    const struct ttree *tree; /* the tree being printed (report_tree.c) */
    const cli_options *o;
    const dta_quant *quant; /* of the input being printed, NULL when none */
} tctx;

/* Builds the tree of one root's modules and prints it. Modules are sorted by root order:
 * this root's are the run starting at *cursor. */
void text_tree(tctx *c, const dta_report *rep, const dta_root_summary *rs, size_t *cursor);
/* The findings of one input, grouped, with why and fix. */
void text_findings(tctx *c, const input_result *in);

#endif
