/* Names with numeric components: the "layers.{0..31}.mlp" grouping shared by the audit
 * text (findings and the module tree) and the diff text. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "term.h"

bool name_comp_numeric(const char *s, size_t len)
{
    if (len == 0 || len > 18)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

void name_shape(char *buf, size_t cap, const char *name)
{
    size_t o = 0;
    if (!cap)
        return;
    for (const char *p = name;;) {
        const char *e = strchr(p, '.');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (name_comp_numeric(p, len)) {
            if (o + 1 < cap)
                buf[o++] = '#';
        } else {
            for (size_t i = 0; i < len && o + 1 < cap; i++)
                buf[o++] = p[i];
        }
        if (!e)
            break;
        if (o + 1 < cap)
            buf[o++] = '.';
        p = e + 1;
    }
    buf[o] = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* One pass over the components of names[0], with a cursor into each member: a component
 * that is not the same in every member is shown as the members' indices. */
void names_pattern(const char *const *names, size_t n, char *pat, size_t pcap, char *glob,
                   size_t gcap)
{
    size_t po = 0, go = 0;
    uint64_t *idx = malloc(sizeof *idx * (n ? n : 1));
    const char **q = malloc(sizeof *q * (n ? n : 1)); /* each member's current component */
    pat[0] = 0;
    if (glob)
        glob[0] = 0;
    if (!idx || !q || n == 0) {
        snprintf(pat, pcap, "%s", n ? names[0] : "");
        if (glob && n)
            glob_escape(glob, gcap, names[0], strlen(names[0]));
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        q[i] = names[i];
    for (const char *p = names[0]; p;) {
        const char *e = strchr(p, '.');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool varies = false;
        for (size_t i = 0; i < n; i++) {
            idx[i] = q[i] ? strtoull(q[i], NULL, 10) : 0;
            const char *qe = q[i] ? strchr(q[i], '.') : NULL;
            size_t qlen = q[i] ? (qe ? (size_t)(qe - q[i]) : strlen(q[i])) : 0;
            if (!q[i] || qlen != len || memcmp(q[i], p, len) != 0)
                varies = true;
            if (q[i])
                q[i] = qe ? qe + 1 : NULL;
        }
        if (p != names[0]) {
            if (po + 1 < pcap)
                pat[po++] = '.', pat[po] = 0;
            if (glob && go + 1 < gcap)
                glob[go++] = '.', glob[go] = 0;
        }
        if (varies) {
            char ib[400];
            /* sort and dedupe */
            qsort(idx, n, sizeof *idx, cmp_u64);
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (m == 0 || idx[i] != idx[m - 1])
                    idx[m++] = idx[i];
            fmt_indices(ib, sizeof ib, idx, m);
            po += (size_t)snprintf(pat + po, po < pcap ? pcap - po : 0, "%s", ib);
            if (glob)
                go += (size_t)snprintf(glob + go, go < gcap ? gcap - go : 0, "*");
        } else {
            po += (size_t)snprintf(pat + po, po < pcap ? pcap - po : 0, "%.*s", (int)len, p);
            if (glob)
                go += glob_escape(glob + go, go < gcap ? gcap - go : 0, p, len);
        }
        if (po >= pcap || (glob && go >= gcap))
            break;
        p = e ? e + 1 : NULL;
    }
out:
    free(idx);
    free(q);
}

void fmt_indices(char *buf, size_t cap, const uint64_t *idx, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "{");
    for (size_t i = 0; i < n && o < cap; i++) {
        size_t j = i;
        while (j + 1 < n && idx[j + 1] == idx[j] + 1)
            j++;
        if (j > i)
            o += (size_t)snprintf(buf + o, cap - o, "%s%llu..%llu", i ? "," : "",
                                  (unsigned long long)idx[i], (unsigned long long)idx[j]);
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "",
                                  (unsigned long long)idx[i]);
        i = j;
    }
    if (o < cap)
        snprintf(buf + o, cap - o, "}");
}
