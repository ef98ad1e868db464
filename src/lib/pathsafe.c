/* Containment of paths after resolving symbolic links and "..": index shards are read
 * only inside the index's folder, a directory convert copies only from inside its input. */
#define _GNU_SOURCE /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pathsafe.h"

bool dtap_realpath(const char *path, char *out)
{
    return realpath(path, out) != NULL;
}

bool dtap_under(const char *root, const char *r)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return r[0] == '/';
    return !strncmp(root, r, n) && (r[n] == 0 || r[n] == '/');
}

/* the path component before position end (exclusive) of s: [*b, end) */
static size_t prev_component(const char *s, size_t end, size_t *b)
{
    size_t e = end;
    while (e > 0 && s[e - 1] == '/')
        e--;
    size_t a = e;
    while (a > 0 && s[a - 1] != '/')
        a--;
    *b = a;
    return e - a;
}

bool dtap_hf_blob(const char *r)
{
    size_t n = strlen(r), b1, b2, b3;
    size_t l1 = prev_component(r, n, &b1);                /* HASH */
    size_t l2 = b1 ? prev_component(r, b1, &b2) : 0;      /* blobs */
    size_t l3 = l2 && b2 ? prev_component(r, b2, &b3) : 0; /* models--ORG--NAME */
    if (!l1 || l2 != 5 || strncmp(r + b2, "blobs", 5) != 0 || !l3)
        return false;
    const char *repo = r + b3;
    if (!(l3 > 8 && !strncmp(repo, "models--", 8)) &&
        !(l3 > 10 && !strncmp(repo, "datasets--", 10)) &&
        !(l3 > 8 && !strncmp(repo, "spaces--", 8)))
        return false;
    struct stat st;
    return stat(r, &st) == 0 && S_ISREG(st.st_mode);
}

int dtap_resolves_inside(const char *root, const char *path, char *resolved, size_t cap)
{
    char r[PATH_MAX];
    if (!realpath(path, r))
        return -1;
    if (resolved && cap)
        snprintf(resolved, cap, "%s", r);
    return dtap_under(root, r) || dtap_hf_blob(r);
}
