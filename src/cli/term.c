/* The terminal: whether text output is coloured, the severity colours, and how numbers,
 * sizes and shapes are written for people. Used by every text renderer and command, so it
 * lives in none of them. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "term.h"

bool cli_use_color(const cli_options *o)
{
    if (o->color >= 0)
        return o->color == 1;
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        return false;
    return isatty(STDOUT_FILENO);
}

const char *sev_color(dta_severity s)
{
    return s == DTA_SEV_ERROR ? RED : s == DTA_SEV_WARNING ? YELLOW : CYAN;
}

const char *dtype_alias(dta_dtype t)
{
    switch (t) {
    case DTA_BF16: return "bf16";
    case DTA_F16: return "f16";
    case DTA_F32: return "f32";
    case DTA_F64: return "f64";
    default: return dta_dtype_name(t);
    }
}

void fmt_count(char *buf, size_t cap, uint64_t v)
{
    static const char *unit[] = {"", "K", "M", "B", "T"};
    double d = (double)v;
    int u = 0;
    if (v < 1000) {
        snprintf(buf, cap, "%llu", (unsigned long long)v);
        return;
    }
    while (d >= 1000 && u < 4) {
        d /= 1000;
        u++;
    }
    snprintf(buf, cap, d < 10 ? "%.2f%s" : d < 100 ? "%.1f%s" : "%.0f%s", d, unit[u]);
}

void fmt_bytes(char *buf, size_t cap, uint64_t v)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;
    if (v < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)v);
        return;
    }
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", d, unit[u]);
}

void fmt_shape(char *buf, size_t cap, const dta_tensor *t)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}
