/* Names with numeric components: the "layers.{0..31}.mlp" grouping (docs/design.md), one
 * implementation for the audit text (findings, module tree) and diff text. */
#ifndef DTA_CLI_NAMES_H
#define DTA_CLI_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* s[0..len) is a numeric component: 1 to 18 decimal digits (fits a uint64_t). */
bool name_comp_numeric(const char *s, size_t len);
/* The grouping key of a name: each numeric component replaced by '#' (layers.#.mlp).
 * Never longer than name; truncated to cap. */
void name_shape(char *buf, size_t cap, const char *name);
/* The names of one group (same shape) as one pattern, layers.{0..3,7}.mlp, and, when glob
 * is not NULL, as an fnmatch glob for --only / --allow, layers.*.mlp (literal components
 * escaped). Truncated to pcap / gcap. */
void names_pattern(const char *const *names, size_t n, char *pat, size_t pcap, char *glob,
                   size_t gcap);
/* "{0..3,5,7..9}" from sorted distinct indices (the collapsed numeric siblings). */
void fmt_indices(char *buf, size_t cap, const uint64_t *idx, size_t n);

#endif
