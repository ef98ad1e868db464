/* Text output: the collapsed module tree of one root. Numeric siblings with the same
 * structure are collapsed (layers.{0..31}.mlp), so a 126-layer model reads like a 1-layer
 * one. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "names.h"
#include "report_text.h"

/* ---- module tree ------------------------------------------------------------------ */

/* The tree is kept in arrays of 32-bit node numbers over the report's own modules (about
 * 16 bytes a module, where a tree of nodes with pointers and a lookup table cost about 150
 * and took a million-module header past 4x its size): node i < nmods is module i of this
 * root's run, node nmods is the top, later nodes are implicit (a component with no module
 * of its own). Modules are walked in component order (a preorder of the tree), so each one
 * finds its parent on a stack of the last path; children are found by binary search in
 * their parent's sorted list. Every step is linear or n log n in the modules (64k
 * top-level modules render as fast as their JSON). */
#define DEAD UINT32_MAX /* a module whose path a later module of the same path took */

typedef struct {
    const char *s; /* component (points into a module name) */
    size_t len;
} tcomp;

typedef struct ttree {
    const dta_module *mods; /* this root's run of the report's modules */
    uint32_t nmods, top, n; /* n: nodes (modules, the top, implicit ones) */
    const char *root;
    size_t rlen;
    tcomp *imp;             /* implicit node top + 1 + k: imp[k] */
    uint32_t nimp, capimp;
    uint32_t *parent;       /* while building */
    uint32_t *start;        /* children of node i: kids[start[i] .. start[i + 1]), sorted */
    uint32_t *kids;
    uint64_t *sig;          /* structure signature of each node's subtree */
} ttree;

/* A component with its ordering key: numeric ones by value, after the others. */
typedef struct {
    tcomp c;
    bool numeric;
    uint64_t index;
    uint32_t id;
} tkey;

static const dta_module *tmod(const ttree *t, uint32_t i)
{
    return i < t->nmods ? &t->mods[i] : NULL;
}

static size_t tnkids(const ttree *t, uint32_t i)
{
    return t->start[i + 1] - t->start[i];
}

static const uint32_t *tkids(const ttree *t, uint32_t i)
{
    return t->kids + t->start[i];
}

/* A module's name below the root's own prefix. */
static const char *stripped(const ttree *t, uint32_t m)
{
    const char *name = t->mods[m].name;
    if (t->rlen && strncmp(name, t->root, t->rlen) == 0 && name[t->rlen] == '.')
        name += t->rlen + 1;
    return name;
}

static tcomp tnode_comp(const ttree *t, uint32_t i)
{
    if (i < t->nmods) { /* the last component, of the stripped name as of the full one */
        const char *name = t->mods[i].name, *dot = strrchr(name, '.');
        const char *c = dot ? dot + 1 : name;
        return (tcomp){c, strlen(c)};
    }
    if (i == t->top)
        return (tcomp){"", 0};
    return t->imp[i - t->top - 1];
}

static tkey tnode_key(const ttree *t, uint32_t i)
{
    tkey k = {tnode_comp(t, i), false, 0, i};
    k.numeric = name_comp_numeric(k.c.s, k.c.len);
    if (k.numeric)
        k.index = strtoull(k.c.s, NULL, 10);
    return k;
}

/* Sibling order: names, then numeric ones by value (equal values by their bytes). */
static int cmp_key(const tkey *x, const tkey *y)
{
    if (x->numeric && y->numeric && x->index != y->index)
        return x->index < y->index ? -1 : 1;
    if (x->numeric != y->numeric)
        return x->numeric ? 1 : -1;
    size_t n = x->c.len < y->c.len ? x->c.len : y->c.len;
    int c = memcmp(x->c.s, y->c.s, n);
    return c ? c : (x->c.len > y->c.len) - (x->c.len < y->c.len);
}

static int cmp_keys(const void *a, const void *b)
{
    return cmp_key(a, b);
}

/* Component order of two paths: '.' before every other byte, the end before '.'. */
static int cmp_path(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = *a == 0 ? 0 : *a == '.' ? 1 : 2 + (unsigned char)*a;
        int y = *b == 0 ? 0 : *b == '.' ? 1 : 2 + (unsigned char)*b;
        if (x != y)
            return x < y ? -1 : 1;
        if (!x)
            return 0;
    }
}

typedef struct {
    const char *path;
    uint32_t idx;
} tpath;

static int cmp_tpath(const void *a, const void *b)
{
    const tpath *x = a, *y = b;
    int c = cmp_path(x->path, y->path);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The child of node p named like key, or DEAD. */
static uint32_t tnode_find(const ttree *t, uint32_t p, const tkey *key)
{
    const uint32_t *k = tkids(t, p);
    size_t lo = 0, hi = tnkids(t, p);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        tkey m = tnode_key(t, k[mid]);
        int c = cmp_key(key, &m);
        if (!c)
            return k[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return DEAD;
}

static bool add_node(ttree *t, uint32_t parent, tcomp imp, uint32_t *id)
{
    if (t->nimp == t->capimp) {
        uint32_t nc = t->capimp ? 2 * t->capimp : 64;
        if (nc > UINT32_MAX - 2 - t->top)
            return false;
        tcomp *ni = realloc(t->imp, sizeof *ni * nc);
        uint32_t *np = ni ? realloc(t->parent, sizeof *np * ((size_t)t->top + 1 + nc)) : NULL;
        if (ni)
            t->imp = ni;
        if (!np)
            return false;
        t->parent = np;
        t->capimp = nc;
    }
    *id = t->top + 1 + t->nimp;
    t->imp[t->nimp++] = imp;
    t->parent[*id] = parent;
    t->n = *id + 1;
    return true;
}

typedef struct {
    uint32_t node;
    tcomp c;
} tstack;

/* Parents of every module, walking them in component order with the path of the last one
 * on a stack; implicit nodes for components no module names. */
static bool link_parents(ttree *t, const uint32_t *order)
{
    tstack *stack = NULL;
    size_t sp = 0, cap = 0;
    bool ok = true;
    for (uint32_t o = 0; o < t->nmods && ok; o++) {
        uint32_t m = order ? order[o] : o;
        const char *s = stripped(t, m);
        size_t d = 0, pos = 0, len = strlen(s);
        /* the stack's longest run of components this path starts with */
        for (; d < sp; d++) {
            const char *dot = memchr(s + pos, '.', len - pos);
            size_t end = dot ? (size_t)(dot - s) : len;
            if (stack[d].c.len != end - pos || memcmp(stack[d].c.s, s + pos, end - pos) != 0)
                break;
            pos = end + 1;
            if (!dot) { /* the whole path is on the stack: a module of the same path */
                d++;
                break;
            }
        }
        sp = d;
        if (pos > len) { /* the same path as node stack[d - 1]: the later module stands */
            uint32_t x = stack[d - 1].node;
            if (x >= t->nmods) { /* an implicit node is never before its module */
                t->parent[m] = DEAD;
                continue;
            }
            t->parent[m] = t->parent[x];
            t->parent[x] = DEAD;
            stack[d - 1].node = m;
            continue;
        }
        for (;;) {
            const char *dot = memchr(s + pos, '.', len - pos);
            size_t end = dot ? (size_t)(dot - s) : len;
            uint32_t parent = sp ? stack[sp - 1].node : t->top, id = m;
            tcomp c = {s + pos, end - pos};
            if (dot && !(ok = add_node(t, parent, c, &id)))
                break;
            if (!dot)
                t->parent[m] = parent;
            if (sp == cap) {
                size_t nc = cap ? 2 * cap : 64;
                tstack *ns = realloc(stack, sizeof *ns * nc);
                if (!(ok = ns != NULL))
                    break;
                stack = ns;
                cap = nc;
            }
            stack[sp++] = (tstack){id, c};
            if (!dot)
                break;
            pos = end + 1;
        }
    }
    free(stack);
    return ok;
}

/* Children lists from the parents, each sorted in sibling order. */
static bool link_kids(ttree *t)
{
    size_t maxk = 0;
    if (!(t->start = calloc((size_t)t->n + 1, sizeof *t->start)) ||
        !(t->kids = malloc(sizeof *t->kids * (t->n ? t->n : 1))))
        return false;
    for (uint32_t i = 0; i < t->n; i++)
        if (i != t->top && t->parent[i] != DEAD)
            t->start[t->parent[i] + 1]++;
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->start[i + 1] > maxk)
            maxk = t->start[i + 1];
        t->start[i + 1] += t->start[i];
    }
    for (uint32_t i = 0; i < t->n; i++) /* start[p] runs to the end of p's list */
        if (i != t->top && t->parent[i] != DEAD)
            t->kids[t->start[t->parent[i]]++] = i;
    for (uint32_t i = t->n; i > 0; i--)
        t->start[i] = t->start[i - 1];
    t->start[0] = 0;
    free(t->parent);
    t->parent = NULL;
    tkey *keys = malloc(sizeof *keys * (maxk ? maxk : 1));
    if (!keys)
        return false;
    for (uint32_t i = 0; i < t->n; i++) {
        size_t nk = tnkids(t, i);
        uint32_t *k = t->kids + t->start[i];
        if (nk < 2)
            continue;
        for (size_t j = 0; j < nk; j++)
            keys[j] = tnode_key(t, k[j]);
        qsort(keys, nk, sizeof *keys, cmp_keys);
        for (size_t j = 0; j < nk; j++)
            k[j] = keys[j].id;
    }
    free(keys);
    return true;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 1099511628211ull;
}

/* Structure signature: child names (numeric ones too: layers.0.experts.3 matches
 * layers.1.experts.3), tensors per dtype; element counts are left out on purpose. */
static void tnode_finish(ttree *t, uint32_t i)
{
    uint64_t h = 1469598103934665603ull;
    const uint32_t *k = tkids(t, i);
    for (size_t j = 0; j < tnkids(t, i); j++) {
        tnode_finish(t, k[j]);
        tcomp c = tnode_comp(t, k[j]);
        for (size_t b = 0; b < c.len; b++)
            h = mix(h, (unsigned char)c.s[b]);
        h = mix(h, t->sig[k[j]]);
    }
    const dta_module *m = tmod(t, i);
    if (m) {
        for (size_t d = 0; d < m->ndtypes; d++)
            h = mix(mix(h, (uint64_t)m->dtypes[d].dtype), m->dtypes[d].count.tensors);
        h = mix(h, m->quantized);
    }
    t->sig[i] = h;
}

static void tree_free(ttree *t)
{
    free(t->imp);
    free(t->parent);
    free(t->start);
    free(t->kids);
    free(t->sig);
}

/* The tree of modules [lo, hi) of the report, one root's run. */
static bool tree_build(ttree *t, const dta_report *rep, const dta_root_summary *rs, size_t lo,
                       size_t hi)
{
    uint32_t *order = NULL;
    memset(t, 0, sizeof *t);
    if (hi - lo > UINT32_MAX - 64)
        return false;
    t->mods = rep->modules + lo;
    t->nmods = (uint32_t)(hi - lo);
    t->top = t->nmods;
    t->n = t->top + 1;
    t->root = rs->name;
    t->rlen = strlen(rs->name);
    if (!(t->parent = malloc(sizeof *t->parent * ((size_t)t->n))))
        return false;
    t->parent[t->top] = DEAD;
    /* the report sorts names byte by byte; component order differs only where a name
     * holds a byte below '.' ("a-b" before "a.c") */
    bool sorted = true;
    for (uint32_t i = 1; i < t->nmods && sorted; i++)
        sorted = cmp_path(stripped(t, i - 1), stripped(t, i)) <= 0;
    if (!sorted) {
        tpath *p = malloc(sizeof *p * t->nmods);
        if (!p || !(order = malloc(sizeof *order * t->nmods))) {
            free(p);
            return false;
        }
        for (uint32_t i = 0; i < t->nmods; i++)
            p[i] = (tpath){stripped(t, i), i};
        qsort(p, t->nmods, sizeof *p, cmp_tpath);
        for (uint32_t i = 0; i < t->nmods; i++)
            order[i] = p[i].idx;
        free(p);
    }
    bool ok = link_parents(t, order);
    free(order);
    if (!ok || !link_kids(t) || !(t->sig = malloc(sizeof *t->sig * t->n)))
        return false;
    tnode_finish(t, t->top);
    return true;
}

static void dtype_mix(char *buf, size_t cap, const dta_count *by, const dta_count *total)
{
    size_t o = 0;
    int order[DTA_DTYPE_COUNT], n = 0;
    buf[0] = 0;
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        if (by[t].tensors)
            order[n++] = t;
    /* most elements first */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && by[order[j]].numel > by[order[j - 1]].numel; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (int i = 0; i < n && o < cap; i++) {
        if (n == 1)
            o += (size_t)snprintf(buf + o, cap - o, "%s", dta_dtype_name((dta_dtype)order[i]));
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s%s %.0f%%", i ? " " : "",
                                  dta_dtype_name((dta_dtype)order[i]),
                                  total->numel ? 100.0 * (double)by[order[i]].numel /
                                                     (double)total->numel
                                               : 0.0);
    }
}

static void sum_group(const ttree *t, const uint32_t *members, size_t n, dta_count *total,
                      dta_count *by)
{
    memset(total, 0, sizeof *total);
    memset(by, 0, sizeof(dta_count) * DTA_DTYPE_COUNT);
    for (size_t i = 0; i < n; i++) {
        const dta_module *m = tmod(t, members[i]);
        if (!m)
            continue;
        total->tensors += m->total.tensors;
        total->numel += m->total.numel;
        total->nbytes += m->total.nbytes;
        for (size_t i = 0; i < m->ndtypes; i++) {
            dta_count *b = &by[m->dtypes[i].dtype];
            b->tensors += m->dtypes[i].count.tensors;
            b->numel += m->dtypes[i].count.numel;
            b->nbytes += m->dtypes[i].count.nbytes;
        }
    }
}

static void print_children(tctx *c, const uint32_t *par, size_t npar, int depth);

static bool bit_mixed(const dta_count *by)
{
    int n = 0;
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        n += by[t].tensors && dta_dtype_is_float((dta_dtype)t);
    return n > 1;
}

static void print_line(tctx *c, int depth, const char *label, const uint32_t *members, size_t nm)
{
    const ttree *t = c->tree;
    dta_count total, by[DTA_DTYPE_COUNT];
    char mixbuf[128], cnt[32], shown[600];
    label = clean(shown, sizeof shown, label);
    sum_group(t, members, nm, &total, by);
    dtype_mix(mixbuf, sizeof mixbuf, by, &total);
    /* a quantized subtree is shown by its logical dtype, marked with the scheme */
    uint64_t quantized = 0;
    for (size_t i = 0; i < nm; i++)
        quantized += tmod(t, members[i]) ? tmod(t, members[i])->quantized : 0;
    if (quantized && c->quant) {
        size_t l = strlen(mixbuf);
        snprintf(mixbuf + l, sizeof mixbuf - l, " (%s)", dta_quant_scheme_name(c->quant->scheme));
    }
    fmt_count(cnt, sizeof cnt, total.numel);
    int pad = 44 - 2 * depth - (int)strlen(label);
    fprintf(c->out, "    %*s%s%*s %s%-18s%s %6llu tensor%s %9s\n", 2 * depth, "", label,
            pad > 0 ? pad : 1, "", C(c->pal, bit_mixed(by) ? YELLOW : ""), mixbuf,
            C(c->pal, bit_mixed(by) ? RESET : ""), (unsigned long long)total.tensors,
            total.tensors == 1 ? " " : "s", cnt);
}

/* Groups the children of rep: each numeric child joins the first earlier numeric child with
 * the same signature. group[i] = index of the group leader for kid i. Hashing the
 * signatures keeps it linear when siblings differ (64k distinct numeric children). */
static bool group_kids(const ttree *t, uint32_t rep, size_t *group)
{
    size_t nk = tnkids(t, rep), cap = 16;
    const uint32_t *k = tkids(t, rep);
    while (cap < 2 * nk)
        cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot); /* leader index + 1 */
    if (!slot)
        return false;
    for (size_t i = 0; i < nk; i++) {
        group[i] = i;
        if (!name_comp_numeric(tnode_comp(t, k[i]).s, tnode_comp(t, k[i]).len))
            continue;
        uint64_t sig = t->sig[k[i]];
        size_t h = (size_t)(sig ^ (sig >> 31)) & (cap - 1);
        while (slot[h] && t->sig[k[slot[h] - 1]] != sig)
            h = (h + 1) & (cap - 1);
        if (slot[h])
            group[i] = slot[h] - 1;
        else
            slot[h] = i + 1;
    }
    free(slot);
    return true;
}

/* Expands a parallel set: for each node in par (par[0] is rep), its children named like
 * rep's kids mem[0..nmem). Writes into out (capacity cap), returns the count. */
static size_t expand(const ttree *t, const uint32_t *par, size_t npar, uint32_t rep,
                     const size_t *mem, size_t nmem, uint32_t *out, size_t cap)
{
    size_t n = 0;
    const uint32_t *rk = tkids(t, rep);
    for (size_t p = 0; p < npar; p++)
        for (size_t i = 0; i < nmem; i++) {
            uint32_t like = rk[mem ? mem[i] : i], k = like;
            if (par[p] != rep) {
                tkey key = tnode_key(t, like);
                k = tnode_find(t, par[p], &key);
            }
            if (k != DEAD && n < cap)
                out[n++] = k;
        }
    return n;
}

static uint64_t tnode_index(const ttree *t, uint32_t i)
{
    return tnode_key(t, i).index;
}

/* Prints the children of a set of structurally equal nodes (par[0] is the representative),
 * with counts summed over the set. */
static void print_children(tctx *c, const uint32_t *par, size_t npar, int depth)
{
    const ttree *t = c->tree;
    uint32_t rep = par[0];
    size_t nkr = tnkids(t, rep), nk = nkr ? nkr : 1;
    const uint32_t *rk = tkids(t, rep);
    size_t *group = malloc(sizeof *group * nk);
    size_t *start = calloc(nk + 1, sizeof *start); /* members of leader g: order[start[g]..] */
    size_t *order = malloc(sizeof *order * nk);
    size_t *fill = malloc(sizeof *fill * nk);
    uint64_t *idx = malloc(sizeof *idx * nk);
    if (!group || !start || !order || !fill || !idx || !group_kids(t, rep, group))
        goto out;
    for (size_t i = 0; i < nkr; i++)
        start[group[i] + 1]++;
    for (size_t g = 0; g < nkr; g++)
        start[g + 1] += start[g];
    memcpy(fill, start, sizeof *fill * nkr);
    for (size_t i = 0; i < nkr; i++)
        order[fill[group[i]]++] = i;
    for (size_t g = 0; g < nkr; g++) {
        if (group[g] != g)
            continue;
        char label[512];
        const size_t *mem = order + start[g];
        size_t o = 0, ni = start[g + 1] - start[g];
        for (size_t i = 0; i < ni; i++)
            idx[i] = tnode_index(t, rk[mem[i]]);
        if (ni > 1) {
            fmt_indices(label, sizeof label, idx, ni);
        } else {
            tcomp cg = tnode_comp(t, rk[g]);
            snprintf(label, sizeof label, "%.*s", (int)cg.len, cg.s);
        }
        o = strlen(label);
        size_t cap = npar * ni;
        uint32_t *set = malloc(sizeof *set * (cap ? cap : 1));
        if (!set)
            break;
        size_t nset = expand(t, par, npar, rep, mem, ni, set, cap);
        /* fold chains into one dotted line: model.layers.{0..31} */
        for (;;) {
            uint32_t r = set[0];
            size_t rn = tnkids(t, r);
            const uint32_t *rkids = tkids(t, r);
            size_t *g2 = malloc(sizeof *g2 * (rn ? rn : 1));
            if (!g2 || rn == 0 || !tmod(t, r) || !group_kids(t, r, g2))
                goto stop;
            size_t leaders = 0, members = 0;
            for (size_t i = 0; i < rn; i++) {
                leaders += g2[i] == i;
                members += g2[i] == 0;
            }
            /* one group covering all kids, holding every tensor of the node */
            if (leaders != 1 || !tmod(t, rkids[0]) ||
                tmod(t, r)->total.tensors != tmod(t, rkids[0])->total.tensors * members)
                goto stop;
            char part[400];
            if (members > 1) {
                uint64_t *ix = malloc(sizeof *ix * members);
                if (!ix)
                    goto stop;
                for (size_t i = 0; i < members; i++)
                    ix[i] = tnode_index(t, rkids[i]);
                fmt_indices(part, sizeof part, ix, members);
                free(ix);
            } else {
                tcomp c0 = tnode_comp(t, rkids[0]);
                snprintf(part, sizeof part, "%.*s", (int)c0.len, c0.s);
            }
            if (o + strlen(part) + 2 >= sizeof label)
                goto stop;
            o += (size_t)snprintf(label + o, sizeof label - o, ".%s", part);
            size_t ncap = nset * members;
            uint32_t *nset_arr = malloc(sizeof *nset_arr * (ncap ? ncap : 1));
            if (!nset_arr)
                goto stop;
            /* one group holding every kid: the members are kids 0..members) */
            size_t nn = expand(t, set, nset, r, NULL, members, nset_arr, ncap);
            free(set);
            set = nset_arr;
            nset = nn;
            free(g2);
            continue;
        stop:
            free(g2);
            break;
        }
        print_line(c, depth, label, set, nset);
        print_children(c, set, nset, depth + 1);
        free(set);
    }
out:
    free(group);
    free(start);
    free(order);
    free(fill);
    free(idx);
}

/* Builds the tree of one root's modules (names relative to the root's top) and prints it.
 * Modules are sorted by root order: this root's are the run starting at *cursor. */
void text_tree(tctx *c, const dta_report *rep, const dta_root_summary *rs, size_t *cursor)
{
    ttree t;
    size_t lo = *cursor;
    while (*cursor < rep->nmodules && strcmp(rep->modules[*cursor].root, rs->name) == 0)
        ++*cursor;
    if (tree_build(&t, rep, rs, lo, *cursor) && tnkids(&t, t.top)) {
        fprintf(c->out, "  %smodules%s\n", C(c->pal, BOLD), C(c->pal, RESET));
        c->tree = &t;
        print_children(c, &t.top, 1, 0);
        c->tree = NULL;
    }
    tree_free(&t);
}
