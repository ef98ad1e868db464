/* Copies what a directory convert does not convert (copytree.c). Internal. */
#ifndef DTAUDIT_COPYTREE_H
#define DTAUDIT_COPYTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "dtaudit/error.h"

typedef struct {
    char **left_out;     /* "NAME (why)", malloc'd */
    size_t nleft_out;
    char **weights;      /* weight-like files copied without conversion (relative names) */
    size_t nweights;
    size_t files, dirs, links;
    unsigned long long bytes;
} dtap_copy_report;

/* Copies the tree src into the existing directory dst, except the relative paths in skip
 * (files the caller converted or rewrote). Regular files are copied (mode kept), folders
 * recreated, symbolic links recreated when relative and staying inside src; a link that
 * resolves inside src (or to a hub cache blob, pathsafe.h) otherwise is copied as the
 * file it leads to. Refused (DTA_E_UNSUPPORTED, naming it): a link leading out of src, a
 * FIFO, socket or device. A top-level .git is left out and reported. Never follows a link
 * while walking. */
dta_status dtap_copy_tree(const char *src, const char *dst, const char *const *skip,
                          size_t nskip, dtap_copy_report *rep, dta_error *err);
void dtap_copy_report_free(dtap_copy_report *rep);

#endif
