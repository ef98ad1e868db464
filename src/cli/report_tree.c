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

/* Every step below is linear in the modules (a 64k-module checkpoint renders as fast as
 * its JSON): children are found through one hash table of (parent, component), the
 * numeric siblings are grouped through a hash of their signatures, and the members of
 * each group are bucketed once. */
typedef struct tnode {
    const char *comp;      /* component name (points into a module name) */
    size_t comp_len;
    const dta_module *mod; /* the module this node is, NULL for an implicit node */
    struct tnode *parent;
    struct tnode **kids;
    size_t nkids, capkids;
    uint64_t sig;
    uint64_t hash;         /* of (parent, comp), for the table */
    bool numeric;
    uint64_t index;
} tnode;

/* (parent, component) -> node, open addressing, load at most 1/2. */
typedef struct ttab {
    tnode **slot;
    size_t cap, n;
} ttab;

static uint64_t comp_hash(const tnode *parent, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static tnode *ttab_find(const ttab *t, const tnode *parent, const char *s, size_t n)
{
    if (!t->cap)
        return NULL;
    uint64_t h = comp_hash(parent, s, n);
    for (size_t i = (size_t)h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        tnode *x = t->slot[i];
        if (!x)
            return NULL;
        if (x->hash == h && x->parent == parent && x->comp_len == n && memcmp(x->comp, s, n) == 0)
            return x;
    }
}

static bool ttab_add(ttab *t, tnode *x)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t ncap = t->cap ? 2 * t->cap : 1024;
        tnode **ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return false;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slot[i]) {
                size_t k = (size_t)t->slot[i]->hash & (ncap - 1);
                while (ns[k])
                    k = (k + 1) & (ncap - 1);
                ns[k] = t->slot[i];
            }
        free(t->slot);
        t->slot = ns;
        t->cap = ncap;
    }
    size_t k = (size_t)x->hash & (t->cap - 1);
    while (t->slot[k])
        k = (k + 1) & (t->cap - 1);
    t->slot[k] = x;
    t->n++;
    return true;
}

static tnode *tnode_new(const char *comp, size_t len)
{
    tnode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->comp = comp;
    n->comp_len = len;
    n->numeric = name_comp_numeric(comp, len);
    if (n->numeric)
        n->index = strtoull(comp, NULL, 10);
    return n;
}

static void tnode_free(tnode *n)
{
    /* iterative: a hostile name nests thousands of components */
    while (n) {
        if (n->nkids) {
            tnode *k = n->kids[--n->nkids];
            n = k;
            continue;
        }
        tnode *up = n->parent;
        free(n->kids);
        free(n);
        n = up;
    }
}

static tnode *tnode_child(ttab *t, tnode *n, const char *comp, size_t len)
{
    tnode *c = ttab_find(t, n, comp, len);
    if (c)
        return c;
    if (n->nkids == n->capkids) {
        size_t nc = n->capkids ? n->capkids * 2 : 4;
        tnode **p = realloc(n->kids, nc * sizeof *p);
        if (!p)
            return NULL;
        n->kids = p;
        n->capkids = nc;
    }
    c = tnode_new(comp, len);
    if (!c)
        return NULL;
    c->parent = n;
    c->hash = comp_hash(n, comp, len);
    if (!ttab_add(t, c)) {
        free(c);
        return NULL;
    }
    n->kids[n->nkids++] = c;
    return c;
}

static int cmp_kids(const void *a, const void *b)
{
    const tnode *x = *(tnode *const *)a, *y = *(tnode *const *)b;
    if (x->numeric && y->numeric)
        return (x->index > y->index) - (x->index < y->index);
    if (x->numeric != y->numeric)
        return x->numeric ? 1 : -1;
    size_t n = x->comp_len < y->comp_len ? x->comp_len : y->comp_len;
    int c = memcmp(x->comp, y->comp, n);
    return c ? c : (x->comp_len > y->comp_len) - (x->comp_len < y->comp_len);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 1099511628211ull;
}

/* Structure signature: child names (numeric ones too: layers.0.experts.3 matches
 * layers.1.experts.3), tensors per dtype; element counts are left out on purpose. */
static void tnode_finish(tnode *n)
{
    uint64_t h = 1469598103934665603ull;
    if (n->nkids > 1)
        qsort(n->kids, n->nkids, sizeof *n->kids, cmp_kids);
    for (size_t i = 0; i < n->nkids; i++) {
        tnode_finish(n->kids[i]);
        for (size_t k = 0; k < n->kids[i]->comp_len; k++)
            h = mix(h, (unsigned char)n->kids[i]->comp[k]);
        h = mix(h, n->kids[i]->sig);
    }
    if (n->mod) {
        for (size_t i = 0; i < n->mod->ndtypes; i++)
            h = mix(mix(h, (uint64_t)n->mod->dtypes[i].dtype), n->mod->dtypes[i].count.tensors);
        h = mix(h, n->mod->quantized);
    }
    n->sig = h;
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

static void sum_group(tnode **members, size_t n, dta_count *total, dta_count *by)
{
    memset(total, 0, sizeof *total);
    memset(by, 0, sizeof(dta_count) * DTA_DTYPE_COUNT);
    for (size_t i = 0; i < n; i++) {
        const dta_module *m = members[i]->mod;
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

static void print_children(tctx *c, tnode **par, size_t npar, int depth);

static bool bit_mixed(const dta_count *by)
{
    int n = 0;
    for (int t = 0; t < DTA_DTYPE_COUNT; t++)
        n += by[t].tensors && dta_dtype_is_float((dta_dtype)t);
    return n > 1;
}

static void print_line(tctx *c, int depth, const char *label, tnode **members, size_t nm)
{
    dta_count total, by[DTA_DTYPE_COUNT];
    char mixbuf[128], cnt[32], shown[600];
    label = clean(shown, sizeof shown, label);
    sum_group(members, nm, &total, by);
    dtype_mix(mixbuf, sizeof mixbuf, by, &total);
    /* a quantized subtree is shown by its logical dtype, marked with the scheme */
    uint64_t quantized = 0;
    for (size_t i = 0; i < nm; i++)
        quantized += members[i]->mod ? members[i]->mod->quantized : 0;
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
static bool group_kids(const tnode *rep, size_t *group)
{
    size_t cap = 16;
    while (cap < 2 * rep->nkids)
        cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot); /* leader index + 1 */
    if (!slot)
        return false;
    for (size_t i = 0; i < rep->nkids; i++) {
        group[i] = i;
        if (!rep->kids[i]->numeric)
            continue;
        uint64_t sig = rep->kids[i]->sig;
        size_t k = (size_t)(sig ^ (sig >> 31)) & (cap - 1);
        while (slot[k] && rep->kids[slot[k] - 1]->sig != sig)
            k = (k + 1) & (cap - 1);
        if (slot[k])
            group[i] = slot[k] - 1;
        else
            slot[k] = i + 1;
    }
    free(slot);
    return true;
}

/* Expands a parallel set: for each node in par (par[0] is rep), its children named like
 * rep's kids mem[0..nmem). Writes into out (capacity cap), returns the count. */
static size_t expand(const ttab *tab, tnode **par, size_t npar, const tnode *rep,
                     const size_t *mem, size_t nmem, tnode **out, size_t cap)
{
    size_t n = 0;
    for (size_t p = 0; p < npar; p++)
        for (size_t i = 0; i < nmem; i++) {
            const tnode *like = rep->kids[mem ? mem[i] : i];
            tnode *k = par[p] == rep ? (tnode *)like
                                     : ttab_find(tab, par[p], like->comp, like->comp_len);
            if (k && n < cap)
                out[n++] = k;
        }
    return n;
}

/* Prints the children of a set of structurally equal nodes (par[0] is the representative),
 * with counts summed over the set. */
static void print_children(tctx *c, tnode **par, size_t npar, int depth)
{
    tnode *rep = par[0];
    size_t nk = rep->nkids ? rep->nkids : 1;
    size_t *group = malloc(sizeof *group * nk);
    size_t *start = calloc(nk + 1, sizeof *start); /* members of leader g: order[start[g]..] */
    size_t *order = malloc(sizeof *order * nk);
    size_t *fill = malloc(sizeof *fill * nk);
    uint64_t *idx = malloc(sizeof *idx * nk);
    if (!group || !start || !order || !fill || !idx || !group_kids(rep, group))
        goto out;
    for (size_t i = 0; i < rep->nkids; i++)
        start[group[i] + 1]++;
    for (size_t g = 0; g < rep->nkids; g++)
        start[g + 1] += start[g];
    memcpy(fill, start, sizeof *fill * rep->nkids);
    for (size_t i = 0; i < rep->nkids; i++)
        order[fill[group[i]]++] = i;
    for (size_t g = 0; g < rep->nkids; g++) {
        if (group[g] != g)
            continue;
        char label[512];
        const size_t *mem = order + start[g];
        size_t o = 0, ni = start[g + 1] - start[g];
        for (size_t i = 0; i < ni; i++)
            idx[i] = rep->kids[mem[i]]->index;
        if (ni > 1)
            fmt_indices(label, sizeof label, idx, ni);
        else
            snprintf(label, sizeof label, "%.*s", (int)rep->kids[g]->comp_len, rep->kids[g]->comp);
        o = strlen(label);
        size_t cap = npar * ni;
        tnode **set = malloc(sizeof *set * (cap ? cap : 1));
        if (!set)
            break;
        size_t nset = expand(c->tab, par, npar, rep, mem, ni, set, cap);
        /* fold chains into one dotted line: model.layers.{0..31} */
        for (;;) {
            tnode *r = set[0];
            size_t *g2 = malloc(sizeof *g2 * (r->nkids ? r->nkids : 1));
            if (!g2 || r->nkids == 0 || !r->mod || !group_kids(r, g2))
                goto stop;
            size_t leaders = 0, members = 0;
            for (size_t i = 0; i < r->nkids; i++) {
                leaders += g2[i] == i;
                members += g2[i] == 0;
            }
            /* one group covering all kids, holding every tensor of the node */
            if (leaders != 1 || !r->kids[0]->mod ||
                r->mod->total.tensors != r->kids[0]->mod->total.tensors * members)
                goto stop;
            char part[400];
            if (members > 1) {
                uint64_t *ix = malloc(sizeof *ix * members);
                if (!ix)
                    goto stop;
                for (size_t i = 0; i < members; i++)
                    ix[i] = r->kids[i]->index;
                fmt_indices(part, sizeof part, ix, members);
                free(ix);
            } else {
                snprintf(part, sizeof part, "%.*s", (int)r->kids[0]->comp_len, r->kids[0]->comp);
            }
            if (o + strlen(part) + 2 >= sizeof label)
                goto stop;
            o += (size_t)snprintf(label + o, sizeof label - o, ".%s", part);
            size_t ncap = nset * members;
            tnode **nset_arr = malloc(sizeof *nset_arr * (ncap ? ncap : 1));
            if (!nset_arr)
                goto stop;
            /* one group holding every kid: the members are kids 0..members) */
            size_t nn = expand(c->tab, set, nset, r, NULL, members, nset_arr, ncap);
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
void text_tree(tctx *c, const dta_report *rep, const dta_root_summary *rs,
                       size_t *cursor)
{
    tnode *top = tnode_new("", 0);
    ttab tab = {NULL, 0, 0};
    size_t rlen = strlen(rs->name);
    if (!top)
        return;
    for (; *cursor < rep->nmodules; ++*cursor) {
        const dta_module *m = &rep->modules[*cursor];
        if (strcmp(m->root, rs->name) != 0)
            break;
        const char *name = m->name;
        if (rlen && strncmp(name, rs->name, rlen) == 0 && name[rlen] == '.')
            name += rlen + 1;
        tnode *cur = top;
        while (cur) {
            const char *dot = strchr(name, '.');
            size_t len = dot ? (size_t)(dot - name) : strlen(name);
            cur = tnode_child(&tab, cur, name, len);
            if (!dot)
                break;
            name = dot + 1;
        }
        if (cur)
            cur->mod = m;
    }
    tnode_finish(top);
    if (top->nkids) {
        fprintf(c->out, "  %smodules%s\n", C(c->pal, BOLD), C(c->pal, RESET));
        c->tab = &tab;
        print_children(c, &top, 1, 0);
        c->tab = NULL;
    }
    tnode_free(top);
    free(tab.slot);
}
