/* Output of a conversion: a temporary name beside OUT, published atomically and
 * exclusively (publish.c). Internal to the library. */
#ifndef DTAUDIT_PUBLISH_H
#define DTAUDIT_PUBLISH_H

#include <limits.h>
#include <stdbool.h>

#include "dtaudit/error.h"

typedef struct {
    char final[PATH_MAX];
    char tmp[PATH_MAX + 64];
    char dir[PATH_MAX];
    int fd;      /* temp file (or the lock file of a temp directory) */
    bool is_dir;
    bool force;
    char real[PATH_MAX + NAME_MAX + 2]; /* OUT with its folder resolved ("" if unknown) */
} dtap_target;

/* Checks OUT against the input and creates the temporary output. Refused (DTA_E_ARG):
 * an OUT that is, contains or lies inside the input (a file, a directory, or an index's
 * directory; compared after resolving symbolic links and ".."), and without force an OUT
 * that exists. tree: the output is a directory; index: in is an index file. */
dta_status dtap_target_open(dtap_target *t, const char *out, bool tree, bool index, bool force,
                            const char *in, dta_error *err);

/* Renames the temporary output to OUT. Without force this never replaces anything that
 * appeared at OUT in the meantime (rename-noreplace, or link for files / a claimed empty
 * directory where the filesystem lacks it): the temporary is removed and DTA_E_ARG
 * returned. With force an existing OUT is swapped out atomically and removed. On error
 * the temporary is removed. */
dta_status dtap_target_publish(dtap_target *t, dta_error *err);

/* Refuses (DTA_E_ARG) reading path when it resolves to OUT or inside it: --force would
 * replace what the conversion reads (a shard linked from elsewhere, a hub cache blob). */
dta_status dtap_target_guard(const dtap_target *t, const char *path, dta_error *err);

/* The checks of dtap_target_open on OUT's place (not in, around or the input), without
 * creating anything: convert --part stages beside OUT before it publishes. */
dta_status dtap_target_check(const char *out, bool tree, bool index, const char *in,
                             dta_error *err);

/* Removes the temporary output (nothing is left behind). */
void dtap_target_abort(dtap_target *t);

/* Rewrites the temporary's path in err->msg to OUT's: the user never saw that name and it
 * is gone once the run ends. */
void dtap_target_name_final(const dtap_target *t, const char *tmp, dta_error *err);

/* rm -r without following symbolic links. */
void dtap_remove_tree(const char *path);

#endif
