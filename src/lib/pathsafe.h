/* Where a path really leads: containment checks for reading inside a folder (pathsafe.c).
 * Internal to the library. */
#ifndef DTAUDIT_PATHSAFE_H
#define DTAUDIT_PATHSAFE_H

#include <stdbool.h>
#include <stddef.h>

/* realpath(path, out) for callers built without it declared; out holds PATH_MAX bytes. */
bool dtap_realpath(const char *path, char *out);

/* r is root or lies under it (both absolute, resolved: realpath results). */
bool dtap_under(const char *root, const char *r);

/* r (resolved) is a file directly in a Hugging Face hub cache's blobs folder,
 * ".../models--ORG--NAME/blobs/HASH" (also datasets--, spaces--): the hub's snapshots and
 * --local-dir downloads link their files there, so such a link is not an escape. */
bool dtap_hf_blob(const char *r);

/* Whether path, with every symbolic link and ".." resolved, stays inside the folder whose
 * realpath is root (or is a hub cache blob): 1 yes; 0 no, with the resolved target in
 * resolved; -1 when it cannot be resolved (errno set; ENOENT for a missing or dangling
 * path). */
int dtap_resolves_inside(const char *root, const char *path, char *resolved, size_t cap);

#endif
