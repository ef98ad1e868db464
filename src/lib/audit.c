/* Audit engine: roots, the module tree, dominant dtypes and findings.
 *
 * Every tensor's name is split at '.' into a chain of modules that ends at its root's
 * top node (the root name, or "" for a flat state dict). Each node keeps a bit mask of
 * the (non-allowed, floating) dtypes in its subtree and among its own tensors; the
 * rules are questions about those masks (docs/design.md "Findings"):
 *   dtype-outlier  highest node whose subtree is one non-dominant dtype, reported once;
 *   mixed-module   a module whose own floating tensors hold more than one dtype;
 *   expect-mismatch the same covering as dtype-outlier, against --expect;
 *   adapter-mismatch a PEFT adapter whose dominant dtype is not its base model's (--base).
 * Policy severity overrides are applied last, to every finding (reader notes included). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/audit.h"
#include "dtaudit/quant.h"
#include "arena.h"
#include "intended_mark.h"
#include "model_build.h"
#include "src.h"
#include "values_audit.h"

/* A node of the module tree is spread over parallel arrays, so that what the report keeps
 * is already in its final form and the rest can be freed before the modules are exported
 * (a header near the safetensors cap has a million modules):
 *   mods[i]      the dta_module it becomes: name, total, quantized, and its per-dtype
 *                counts. While a node holds one dtype, dtypes is NULL, ndtypes 1 and the
 *                count is total itself (kind[i] says which dtype); the array is made when a
 *                second dtype arrives, or at export. root is set at export.
 *   side[i]      masks and parent: the rules' questions, freed before export;
 *   noderoot[i]  root index; kind[i]  NODE_TOP | the single dtype. */
typedef struct {
    uint64_t mask_sub, mask_own;
    uint32_t parent; /* NO_NODE for a top node */
} node_side;

#define NO_NODE UINT32_MAX
#define NODE_TOP 0x80u   /* kind[]: a root's top node; the low 7 bits hold a dtype */
#define MAX_NODES (UINT32_MAX - 1u)

typedef struct {
    uint32_t *slot;  /* node index + 1, 0 = empty */
    size_t cap;
} htab;

typedef struct {
    const dta_model *m;
    const dta_audit_options *opt;
    dta_report *r;
    dta_module *mods;      /* per node (see node_side) */
    node_side *side;
    uint32_t *noderoot;
    uint8_t *kind;
    uint32_t *nlen;        /* per node: its name's length (freed before export) */
    size_t nnodes, capnodes;
    htab nodetab;          /* (parent, segment) -> node; top nodes are in tops */
    uint32_t *tops;        /* per root: the top node of toplen 0, then of toplen = the root's */
    uint32_t *order;       /* the non-top nodes in module order (tree_order), NULL: qsort */
    bool unsorted;         /* a name byte below '.', or two tops in a root: qsort the modules */
    size_t *tensor_root;   /* root index per tensor */
    uint32_t *tensor_module; /* module node per tensor */
    bool *allowed;         /* --allow, an intended island, or part of a quantized parameter */
    uint32_t *checked;     /* the floating tensors outside --allow and quantized parameters, */
    size_t nchecked;       /* in order: all that the dtype rules and intended islands look at */
    dta_count *compute;    /* per root x dtype: tensors outside quantized parameters */
    const dta_intended_rule **intended; /* per tensor, NULL when not an intended island */
    dta_error *err;
} ctx;

/* A finding candidate: which tensors go into which finding. */
typedef struct {
    int kind;        /* 0 subtree, 1 leftover in a module, 2 single top-level tensor, 3 mixed */
    size_t node;     /* node index, or tensor index for kind 2 */
    dta_dtype dtype;
    size_t tensor;
} hit;

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether a byte of s[0..n) sorts at or below '.' (8 bytes at a time). */
static bool has_byte_upto_dot(const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (((w - ONES * ('.' + 1)) & ~w & HIGHS) != 0) /* some byte < '.' + 1 */
            return true;
    }
    for (; i < n; i++)
        if (s[i] <= '.')
            return true;
    return false;
}

static uint64_t hash(size_t root, const char *s, size_t n)
{
    return dtap_hash(s, n, root);
}

static dta_status nomem(ctx *c)
{
    return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

/* A node's key in nodetab: its parent and its name past the parent's ("layers.0" under
 * "model": ".0"; the first component under a top of toplen 0: "model"). */
static uint64_t node_hash(const ctx *c, size_t k)
{
    uint32_t p = c->side[k].parent;
    size_t pl = c->nlen[p];
    return hash(p, c->mods[k].name + pl, c->nlen[k] - pl);
}

static dta_status htab_grow(ctx *c, htab *t, size_t count)
{
    if (count * 2 < t->cap)
        return DTA_OK;
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return nomem(c);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i])
            continue;
        size_t h = (size_t)(node_hash(c, t->slot[i] - 1) & (ncap - 1));
        while (ns[h])
            h = (h + 1) & (ncap - 1);
        ns[h] = t->slot[i];
    }
    free(t->slot);
    t->slot = ns;
    t->cap = ncap;
    return DTA_OK;
}

/* Grows every per-node array to hold one node more. */
static dta_status grow_nodes(ctx *c)
{
    if (c->nnodes < c->capnodes)
        return DTA_OK;
    if (c->nnodes >= MAX_NODES)
        return dta_error_set(c->err, DTA_E_LIMIT, 0, "more than %u modules", MAX_NODES);
    size_t ncap = c->capnodes ? c->capnodes * 2 : 256;
    if (ncap > MAX_NODES)
        ncap = MAX_NODES;
    void *p;
    if (!(p = realloc(c->mods, ncap * sizeof *c->mods)))
        return nomem(c);
    c->mods = p;
    if (!(p = realloc(c->side, ncap * sizeof *c->side)))
        return nomem(c);
    c->side = p;
    if (!(p = realloc(c->noderoot, ncap * sizeof *c->noderoot)))
        return nomem(c);
    c->noderoot = p;
    if (!(p = realloc(c->kind, ncap * sizeof *c->kind)))
        return nomem(c);
    c->kind = p;
    if (!(p = realloc(c->nlen, ncap * sizeof *c->nlen)))
        return nomem(c);
    c->nlen = p;
    c->capnodes = ncap;
    return DTA_OK;
}

/* A new node named name[0..len) (no NUL in it), child of parent (NO_NODE: a top). */
static dta_status new_node(ctx *c, size_t root, uint32_t parent, const char *name, size_t len,
                           size_t *out)
{
    dta_status st = grow_nodes(c);
    if (st != DTA_OK)
        return st;
    size_t k = c->nnodes;
    dta_module *md = &c->mods[k];
    memset(md, 0, sizeof *md);
    md->name = dtap_arena_alloc(&c->r->arena, len + 1, 1); /* moves to the report */
    if (!md->name)
        return nomem(c);
    memcpy(md->name, name, len);
    md->name[len] = 0;
    memset(&c->side[k], 0, sizeof c->side[k]);
    c->side[k].parent = parent;
    c->noderoot[k] = (uint32_t)root; /* roots <= tensors <= DTA_MAX_TENSORS */
    c->kind[k] = parent == NO_NODE ? NODE_TOP : 0;
    c->nlen[k] = (uint32_t)len; /* < DTA_MAX_NAME_LEN */
    /* the modules come out sorted by a walk of the tree when no name byte sorts below the
     * '.' that separates components (export_modules) */
    size_t from = parent == NO_NODE ? len /* a top: dropped at export */
                  : c->nlen[parent] == 0 ? 0 : c->nlen[parent] + 1 /* past the '.' */;
    if (!c->unsorted && from < len)
        c->unsorted = has_byte_upto_dot((const unsigned char *)name + from, len - from);
    c->nnodes++;
    *out = k;
    return DTA_OK;
}

/* The top node of root r for toplen (0, or the root name's length). */
static dta_status get_top(ctx *c, size_t r, const char *name, size_t toplen, size_t *out)
{
    uint32_t *slot = &c->tops[2 * r + (toplen != 0)];
    if (*slot != NO_NODE) {
        *out = *slot;
        return DTA_OK;
    }
    if (c->tops[2 * r + (toplen == 0)] != NO_NODE)
        c->unsorted = true; /* two tops in a root: their subtrees interleave by name */
    dta_status st = new_node(c, r, NO_NODE, name, toplen, out);
    if (st == DTA_OK)
        *slot = (uint32_t)*out;
    return st;
}

/* Finds or creates the child of parent named name[0..len) (name[0..nlen[parent]) is the
 * parent's name; no NUL in len bytes). */
static dta_status get_child(ctx *c, size_t parent, const char *name, size_t len, size_t *out)
{
    dta_status st = htab_grow(c, &c->nodetab, c->nnodes + 1);
    if (st != DTA_OK)
        return st;
    size_t pl = c->nlen[parent], sl = len - pl, mask = c->nodetab.cap - 1;
    const char *seg = name + pl;
    size_t h = (size_t)(hash(parent, seg, sl) & mask);
    while (c->nodetab.slot[h]) {
        size_t k = c->nodetab.slot[h] - 1;
        if (c->side[k].parent == parent && c->nlen[k] == len &&
            memcmp(c->mods[k].name + pl, seg, sl) == 0) {
            *out = k;
            return DTA_OK;
        }
        h = (h + 1) & mask;
    }
    if ((st = new_node(c, c->noderoot[parent], (uint32_t)parent, name, len, out)) != DTA_OK)
        return st;
    c->nodetab.slot[h] = (uint32_t)(*out + 1);
    return DTA_OK;
}

static bool node_top(const ctx *c, size_t n) { return (c->kind[n] & NODE_TOP) != 0; }

/* dta_quant_tensor_is_quantized, without a call per tensor */
static bool quantized(const ctx *c, size_t i)
{
    const dta_quant *q = c->r->quant;
    return q && i < q->ntensors && q->tensor_role[i] != DTA_QR_NONE;
}

static bool is_optimizer_root(const char *name)
{
    return strncmp(name, "optimizer", 9) == 0;
}

static void count_add(dta_count *c, uint64_t numel, uint64_t nbytes)
{
    c->tensors++;
    c->numel += numel;
    c->nbytes += nbytes;
}

static void count_sum(dta_count *c, const dta_count *d)
{
    c->tensors += d->tensors;
    c->numel += d->numel;
    c->nbytes += d->nbytes;
}

/* Adds to node n's count for dtype t, keeping its dtypes sorted. Called before the tensor
 * is added to the node's total: while the node holds one dtype, that total is its count. */
static dta_status node_count(ctx *c, size_t n, dta_dtype t, const dta_count *d)
{
    dta_module *md = &c->mods[n];
    if (md->ndtypes == 0 || (!md->dtypes && (dta_dtype)(c->kind[n] & ~NODE_TOP) == t)) {
        c->kind[n] = (uint8_t)((c->kind[n] & NODE_TOP) | (unsigned)t);
        md->ndtypes = 1; /* counted by md->total */
        return DTA_OK;
    }
    dta_dtype_count one = {(dta_dtype)(c->kind[n] & ~NODE_TOP), md->total};
    const dta_dtype_count *dt = md->dtypes ? md->dtypes : &one;
    size_t i = 0;
    while (i < md->ndtypes && dt[i].dtype < t)
        i++;
    if (i == md->ndtypes || dt[i].dtype != t || !md->dtypes) {
        /* from the report's arena: the array moves to the report with the module (a
         * grown array leaves its old copy there) */
        dta_dtype_count *p = dtap_arena_alloc(&c->r->arena, (md->ndtypes + 1) * sizeof *p,
                                              _Alignof(dta_dtype_count));
        if (!p)
            return nomem(c);
        if (i)
            memcpy(p, dt, i * sizeof *p);
        if (md->ndtypes > i)
            memcpy(p + i + 1, dt + i, (md->ndtypes - i) * sizeof *p);
        memset(&p[i], 0, sizeof p[i]);
        p[i].dtype = t;
        md->dtypes = p;
        md->ndtypes++;
    }
    count_sum(&md->dtypes[i].count, d);
    return DTA_OK;
}

static uint64_t node_numel(const ctx *c, size_t n, dta_dtype t)
{
    const dta_module *md = &c->mods[n];
    if (!md->dtypes)
        return md->ndtypes && (dta_dtype)(c->kind[n] & ~NODE_TOP) == t ? md->total.numel : 0;
    for (size_t i = 0; i < md->ndtypes; i++)
        if (md->dtypes[i].dtype == t)
            return md->dtypes[i].count.numel;
    return 0;
}

/* allowed[] and checked[]: a quantized checkpoint's codes and scales are most of its
 * tensors, and the rules' loops then go over the few others only. */
static dta_status list_checked(ctx *c)
{
    const dta_model *m = c->m;
    /* as many entries as tensors: the pages past the list are never touched */
    c->checked = malloc((m->ntensors ? m->ntensors : 1) * sizeof *c->checked);
    if (!c->checked)
        return nomem(c);
    for (size_t i = 0; i < m->ntensors; i++) {
        c->allowed[i] = dtap_tensor_allowed(c->opt, &m->tensors[i]) || quantized(c, i);
        if (!c->allowed[i] && dta_dtype_is_float(m->tensors[i].dtype))
            c->checked[c->nchecked++] = (uint32_t)i; /* i < DTA_MAX_TENSORS */
    }
    return DTA_OK;
}

/* Roots in first-seen order, via a hash of root names to stay linear on hostile input. */
static dta_status assign_roots(ctx *c)
{
    const dta_model *m = c->m;
    size_t cap = 64;
    size_t *tab = calloc(cap, sizeof *tab);
    dta_status st = DTA_OK;
    if (!tab)
        return nomem(c);
    const char *prev = NULL; /* the previous tensor's root name (readers share one string) */
    for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
        const char *rn = m->tensors[i].root;
        if (prev && (rn == prev || strcmp(rn, prev) == 0)) {
            c->tensor_root[i] = c->tensor_root[i - 1];
            continue;
        }
        prev = rn;
        size_t len = strlen(rn);
        if (c->r->nroots * 2 >= cap) {
            size_t ncap = cap * 2, *nt = calloc(ncap, sizeof *nt);
            if (!nt) {
                st = nomem(c);
                break;
            }
            for (size_t k = 0; k < cap; k++)
                if (tab[k]) {
                    const char *s = c->r->roots[tab[k] - 1].name;
                    size_t h = (size_t)(hash(0, s, strlen(s)) & (ncap - 1));
                    while (nt[h])
                        h = (h + 1) & (ncap - 1);
                    nt[h] = tab[k];
                }
            free(tab);
            tab = nt;
            cap = ncap;
        }
        size_t h = (size_t)(hash(0, rn, len) & (cap - 1));
        while (tab[h] && strcmp(c->r->roots[tab[h] - 1].name, rn) != 0)
            h = (h + 1) & (cap - 1);
        if (!tab[h]) {
            dta_report *r = c->r;
            dta_root_summary *p = realloc(r->roots, (r->nroots + 1) * sizeof *p);
            if (!p) {
                st = nomem(c);
                break;
            }
            r->roots = p;
            memset(&p[r->nroots], 0, sizeof *p);
            if (!(p[r->nroots].name = strdup(rn))) {
                st = nomem(c);
                break;
            }
            p[r->nroots].dominant = DTA_DTYPE_NONE;
            p[r->nroots].analysed = !is_optimizer_root(rn);
            tab[h] = ++r->nroots;
        }
        c->tensor_root[i] = tab[h] - 1;
    }
    free(tab);
    return st;
}

/* Per-root and total counts (a storage's bytes count once, with its first tensor). */
static dta_status count_roots(ctx *c)
{
    const dta_model *m = c->m;
    bool *counted = calloc(m->nstorages ? m->nstorages : 1, sizeof *counted);
    if (!counted)
        return nomem(c);
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        uint64_t bytes = t->nbytes;
        if (t->storage != SIZE_MAX) {
            if (counted[t->storage])
                bytes = 0;
            counted[t->storage] = true;
        }
        dta_root_summary *rs = &c->r->roots[c->tensor_root[i]];
        count_add(&rs->total, t->numel, bytes);
        count_add(&rs->by_dtype[t->dtype], t->numel, bytes);
        if (!quantized(c, i))
            count_add(&c->compute[c->tensor_root[i] * DTA_DTYPE_COUNT + (size_t)t->dtype],
                      t->numel, bytes);
        count_add(&c->r->total, t->numel, bytes);
    }
    free(counted);
    return DTA_OK;
}

/* Tensors of one module with the same shown dtype and mask bit, added up the chain at once
 * (a weight and its scales). */
typedef struct {
    size_t node;
    dta_dtype shown;
    uint64_t bit;
    dta_count count;
    size_t quantized;
} pending;

/* Adds the pending tensors to their module's own counts (add_up carries them up). */
static dta_status flush(ctx *c, pending *p)
{
    if (!p->count.tensors)
        return DTA_OK;
    dta_status st = node_count(c, p->node, p->shown, &p->count);
    if (st != DTA_OK)
        return st;
    dta_module *md = &c->mods[p->node];
    count_sum(&md->total, &p->count);
    md->quantized += p->quantized;
    c->side[p->node].mask_sub |= p->bit;
    c->side[p->node].mask_own |= p->bit;
    memset(&p->count, 0, sizeof p->count);
    p->quantized = 0;
    return DTA_OK;
}

/* Every node's counts and mask over its subtree: a node is made after its parent, so
 * going down the indices adds each subtree to its parent complete. */
static dta_status add_up(ctx *c)
{
    dta_status st = DTA_OK;
    for (size_t k = c->nnodes; k-- > 0 && st == DTA_OK;) {
        if (node_top(c, k))
            continue;
        size_t p = c->side[k].parent;
        const dta_module *md = &c->mods[k];
        dta_module *pm = &c->mods[p];
        if (!md->dtypes) {
            if (md->ndtypes && (st = node_count(c, p, (dta_dtype)(c->kind[k] & ~NODE_TOP),
                                                &md->total)) == DTA_OK)
                count_sum(&pm->total, &md->total);
        } else {
            /* one dtype at a time: node_count reads the total of those added before */
            for (size_t j = 0; j < md->ndtypes && st == DTA_OK; j++)
                if ((st = node_count(c, p, md->dtypes[j].dtype, &md->dtypes[j].count)) == DTA_OK)
                    count_sum(&pm->total, &md->dtypes[j].count);
        }
        pm->quantized += md->quantized;
        c->side[p].mask_sub |= c->side[k].mask_sub;
    }
    return st;
}

/* The chain of the previous tensor's module, top first: chain[k] is a node, clen[k] its
 * name's length. */
typedef struct {
    uint32_t *node, *len;
    size_t n, cap;
} chain;

static dta_status chain_push(ctx *c, chain *ch, size_t node, size_t len)
{
    if (ch->n == ch->cap) {
        size_t ncap = ch->cap ? ch->cap * 2 : 32;
        uint32_t *a = realloc(ch->node, ncap * sizeof *a);
        if (!a)
            return nomem(c);
        ch->node = a;
        if (!(a = realloc(ch->len, ncap * sizeof *a)))
            return nomem(c);
        ch->len = a;
        ch->cap = ncap;
    }
    ch->node[ch->n] = (uint32_t)node;
    ch->len[ch->n++] = (uint32_t)len;
    return DTA_OK;
}

/* Length of the common prefix of a[0..n) and b[0..n). */
static size_t common_prefix(const char *a, const char *b, size_t n)
{
    size_t d = 0;
    while (d + 8 <= n) {
        uint64_t x, y;
        memcpy(&x, a + d, 8);
        memcpy(&y, b + d, 8);
        if (x != y) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return d + (size_t)(__builtin_ctzll(x ^ y) >> 3);
#else
            break;
#endif
        }
        d += 8;
    }
    while (d < n && a[d] == b[d])
        d++;
    return d;
}

/* Builds the chain of nodes for every tensor and accumulates the counts and masks. A
 * module's chain is its top, then every prefix of its name ending before a '.' past the
 * top, then the module itself. Tensors come grouped by module: the part of the chain a
 * module shares with the previous tensor's is taken from that chain, the rest found or
 * made through (parent, segment) lookups; tensors of the same module are added up the
 * chain together. */
static dta_status build_tree(ctx *c)
{
    const dta_model *m = c->m;
    bool *counted = calloc(m->nstorages ? m->nstorages : 1, sizeof *counted);
    size_t *rootlen = malloc((c->r->nroots ? c->r->nroots : 1) * sizeof *rootlen);
    c->tops = malloc((c->r->nroots ? c->r->nroots : 1) * 2 * sizeof *c->tops);
    dta_status st = DTA_OK;
    chain ch = {0};
    pending pd = {0};
    if (!counted || !rootlen || !c->tops) {
        free(counted);
        free(rootlen);
        return nomem(c);
    }
    for (size_t r = 0; r < c->r->nroots; r++) {
        rootlen[r] = strlen(c->r->roots[r].name);
        c->tops[2 * r] = c->tops[2 * r + 1] = NO_NODE;
    }
    const dta_tensor *prev = NULL; /* the previous tensor, its root, top and module */
    size_t prev_root = 0, prev_toplen = 0, prev_mlen = 0;

    for (size_t i = 0; i < m->ntensors && st == DTA_OK; i++) {
        const dta_tensor *t = &m->tensors[i];
        size_t r = c->tensor_root[i];
        const char *rname = c->r->roots[r].name;
        size_t rlen = rootlen[r], toplen = 0;
        uint64_t bytes = t->nbytes;
        /* (strncmp stops at the name's end: name[rlen] is at worst its NUL) */
        if (rlen && strncmp(t->name, rname, rlen) == 0 && t->name[rlen] == '.')
            toplen = rlen;
        /* a storage's bytes count once, with its first tensor */
        if (t->storage != SIZE_MAX) {
            if (counted[t->storage])
                bytes = 0;
            counted[t->storage] = true;
        }

        bool flt = !c->allowed[i] && dta_dtype_is_float(t->dtype);
        uint64_t bit = flt ? 1ull << t->dtype : 0;
        /* the module tree shows a quantized parameter by its logical (dequantized) dtype */
        bool quant = quantized(c, i);
        const dta_quant *q = c->r->quant;
        const dta_quant_param *qp = q && i < q->ntensors && q->tensor_param[i] >= 0
                                        ? &q->params[q->tensor_param[i]] : NULL;
        dta_dtype shown = qp && !qp->cast && qp->dequant != DTA_DTYPE_NONE ? qp->dequant : t->dtype;

        /* module = name without its last component (never shorter than the top) */
        const char *dot = strrchr(t->name, '.');
        size_t mlen = dot ? (size_t)(dot - t->name) : 0;
        if (mlen < toplen)
            mlen = toplen;
        bool same_top = prev && r == prev_root && toplen == prev_toplen;
        if (same_top && mlen == prev_mlen && memcmp(t->name, prev->name, mlen) == 0) {
            /* the previous tensor's module (a weight, then its scale) */
        } else {
            size_t k = 0, node;
            if (same_top) {
                /* the deepest node of the previous chain that is a prefix of this module */
                size_t lim = mlen < prev_mlen ? mlen : prev_mlen;
                size_t d = common_prefix(t->name, prev->name, lim);
                k = ch.n - 1;
                while (k > 0 && !(ch.len[k] <= d && (ch.len[k] == mlen || t->name[ch.len[k]] == '.')))
                    k--;
                ch.n = k + 1;
            } else {
                ch.n = 0;
                if ((st = get_top(c, r, t->name, toplen, &node)) != DTA_OK ||
                    (st = chain_push(c, &ch, node, toplen)) != DTA_OK)
                    break;
            }
            /* the rest of the chain: each '.' past the last node found, then the module */
            for (size_t pos = ch.len[ch.n - 1] + 1; st == DTA_OK && ch.len[ch.n - 1] < mlen;) {
                const char *dot = pos < mlen ? memchr(t->name + pos, '.', mlen - pos) : NULL;
                size_t end = dot ? (size_t)(dot - t->name) : mlen;
                if ((st = get_child(c, ch.node[ch.n - 1], t->name, end, &node)) == DTA_OK)
                    st = chain_push(c, &ch, node, end);
                pos = end + 1;
            }
            if (st != DTA_OK)
                break;
        }
        size_t cur = ch.node[ch.n - 1];
        prev = t;
        prev_root = r;
        prev_toplen = toplen;
        prev_mlen = mlen;
        c->tensor_module[i] = (uint32_t)cur;
        if (pd.count.tensors && (pd.node != cur || pd.shown != shown || pd.bit != bit) &&
            (st = flush(c, &pd)) != DTA_OK)
            break;
        pd.node = cur;
        pd.shown = shown;
        pd.bit = bit;
        count_add(&pd.count, t->numel, bytes);
        pd.quantized += quant;
    }
    if (st == DTA_OK)
        st = flush(c, &pd);
    if (st == DTA_OK)
        st = add_up(c);
    free(ch.node);
    free(ch.len);
    free(counted);
    free(rootlen);
    return st;
}

/* The compute dtype: counted over the tensors outside quantized parameters (all of them
 * in a plain checkpoint). */
static void pick_dominants(dta_report *r, const dta_count *compute)
{
    for (size_t i = 0; i < r->nroots; i++) {
        dta_root_summary *rs = &r->roots[i];
        const dta_count *by = compute + i * DTA_DTYPE_COUNT;
        dta_dtype best = DTA_DTYPE_NONE;
        for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
            if (!dta_dtype_is_float((dta_dtype)t) || by[t].tensors == 0)
                continue;
            /* most elements; ties go to the later (wider) enum entry */
            if (best == DTA_DTYPE_NONE || by[t].numel >= by[best].numel)
                best = (dta_dtype)t;
        }
        rs->dominant = best;
    }
}

static int single_dtype(uint64_t mask)
{
    if (mask == 0 || (mask & (mask - 1)) != 0)
        return -1;
    return __builtin_ctzll(mask);
}

static int cmp_hit(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    if (x->dtype != y->dtype)
        return x->dtype < y->dtype ? -1 : 1;
    return (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

static dta_status push_hit(ctx *c, hit **hits, size_t *n, size_t *cap, hit h)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        hit *p = realloc(*hits, ncap * sizeof *p);
        if (!p)
            return nomem(c);
        *hits = p;
        *cap = ncap;
    }
    (*hits)[(*n)++] = h;
    return DTA_OK;
}

/* A finding of rule, at the catalogue's default severity (policies apply later). */
static dta_status add_finding(ctx *c, dta_rule rule, size_t root,
                              const char *module, dta_dtype dtype, dta_dtype expected,
                              const char *message, dta_finding **out)
{
    dta_report *r = c->r;
    dta_finding *p = realloc(r->findings, (r->nfindings + 1) * sizeof *p);
    if (!p)
        return nomem(c);
    r->findings = p;
    dta_finding *f = &p[r->nfindings];
    memset(f, 0, sizeof *f);
    f->rule = dta_rule_name(rule);
    f->rule_id = rule;
    f->severity = dta_rule_get(rule)->severity;
    f->dtype = dtype;
    f->expected = expected;
    f->root_index = root;
    f->root = strdup(root < r->nroots ? r->roots[root].name : "");
    f->module = strdup(module);
    f->message = strdup(message ? message : "");
    f->file = SIZE_MAX;
    r->nfindings++;
    if (!f->root || !f->module || !f->message)
        return nomem(c);
    if (out)
        *out = f;
    return DTA_OK;
}

static dta_status finding_add_tensor(ctx *c, dta_finding *f, size_t ti)
{
    char **p = realloc(f->tensors, (f->ntensors + 1) * sizeof *p);
    if (!p)
        return nomem(c);
    f->tensors = p;
    if (!(p[f->ntensors] = strdup(c->m->tensors[ti].name)))
        return nomem(c);
    f->ntensors++;
    f->numel += c->m->tensors[ti].numel;
    if (f->file == SIZE_MAX)
        f->file = c->m->tensors[ti].file;
    return DTA_OK;
}

static void set_message(dta_finding *f)
{
    char buf[1024], what[600];
    if (f->module[0])
        snprintf(what, sizeof what, "'%.500s'", f->module);
    else
        snprintf(what, sizeof what, "the whole state dict");
    if (f->rule_id == DTA_RULE_DTYPE_OUTLIER)
        snprintf(buf, sizeof buf,
                 "%s is %s while its root's dominant dtype is %s (%zu tensor%s, %llu "
                 "elements); outside autocast, ops mixing the two fail ('mat1 and mat2 must "
                 "have the same dtype')",
                 what, dta_dtype_name(f->dtype), dta_dtype_name(f->expected), f->ntensors,
                 f->ntensors == 1 ? "" : "s", (unsigned long long)f->numel);
    else if (f->rule_id == DTA_RULE_EXPECT_MISMATCH)
        snprintf(buf, sizeof buf, "%s is %s, expected %s (%zu tensor%s, %llu elements)", what,
                 dta_dtype_name(f->dtype), dta_dtype_name(f->expected), f->ntensors,
                 f->ntensors == 1 ? "" : "s", (unsigned long long)f->numel);
    else
        return;
    free(f->message);
    f->message = strdup(buf);
}

/* dtype-outlier (against the dominant dtype) or expect-mismatch (against --expect). */
static dta_status cover_root(ctx *c, size_t r, dta_rule rule, dta_dtype good)
{
    const dta_model *m = c->m;
    bool expect = rule == DTA_RULE_EXPECT_MISMATCH;
    hit *hits = NULL;
    size_t nh = 0, caph = 0;
    dta_status st = DTA_OK;

    for (size_t j = 0; j < c->nchecked && st == DTA_OK; j++) {
        size_t i = c->checked[j];
        const dta_tensor *t = &m->tensors[i];
        if (c->tensor_root[i] != r || c->allowed[i] || t->dtype == good)
            continue;
        /* highest node of the chain whose subtree is this one bad dtype */
        size_t best = SIZE_MAX, mod = c->tensor_module[i];
        for (size_t n = mod; n != NO_NODE; n = c->side[n].parent) {
            if (node_top(c, n) && !expect)
                break;
            int d = single_dtype(c->side[n].mask_sub);
            if (d >= 0 && (dta_dtype)d != good)
                best = n;
            if (node_top(c, n))
                break;
        }
        hit h = {0, best, t->dtype, i};
        if (best == SIZE_MAX) {
            if (node_top(c, mod)) {
                h.kind = 2;
                h.node = i;
            } else if (!expect && single_dtype(c->side[mod].mask_own) < 0) {
                continue; /* a mixed module: mixed-module reports it */
            } else {
                h.kind = 1;
                h.node = mod;
            }
        }
        st = push_hit(c, &hits, &nh, &caph, h);
    }
    if (st == DTA_OK)
        if (nh > 1)
            qsort(hits, nh, sizeof *hits, cmp_hit);
    dta_finding *f = NULL;
    for (size_t i = 0; i < nh && st == DTA_OK; i++) {
        if (i == 0 || cmp_hit(&(hit){hits[i].kind, hits[i].node, hits[i].dtype, 0},
                              &(hit){hits[i - 1].kind, hits[i - 1].node, hits[i - 1].dtype, 0})) {
            const char *module = hits[i].kind == 2 ? m->tensors[hits[i].node].name
                                                   : c->mods[hits[i].node].name;
            st = add_finding(c, rule, r, module, hits[i].dtype, good,
                             NULL, &f);
            if (st != DTA_OK)
                break;
        }
        st = finding_add_tensor(c, f, hits[i].tensor);
        bool last = i + 1 == nh || hits[i + 1].kind != hits[i].kind ||
                    hits[i + 1].node != hits[i].node || hits[i + 1].dtype != hits[i].dtype;
        if (st == DTA_OK && last)
            set_message(f);
    }
    free(hits);
    return st;
}

static dta_status mixed_modules(ctx *c, size_t r)
{
    const dta_model *m = c->m;
    dta_dtype dom = c->r->roots[r].dominant;
    hit *hits = NULL;
    size_t nh = 0, caph = 0;
    dta_status st = DTA_OK;

    for (size_t j = 0; j < c->nchecked && st == DTA_OK; j++) {
        size_t i = c->checked[j];
        const dta_tensor *t = &m->tensors[i];
        size_t mod = c->tensor_module[i];
        if (c->tensor_root[i] != r || c->allowed[i] || node_top(c, mod) ||
            single_dtype(c->side[mod].mask_own) >= 0)
            continue;
        /* list the tensors to fix: those off the dominant dtype, or all if it is absent */
        if (t->dtype == dom)
            continue;
        st = push_hit(c, &hits, &nh, &caph, (hit){3, mod, DTA_DTYPE_NONE, i});
    }
    if (st == DTA_OK)
        if (nh > 1)
            qsort(hits, nh, sizeof *hits, cmp_hit);
    for (size_t i = 0; i < nh && st == DTA_OK;) {
        size_t mod = hits[i].node, j = i;
        uint64_t own = c->side[mod].mask_own;
        const char *name = c->mods[mod].name;
        dta_finding *f;
        /* the off dtype with the most elements names the finding */
        dta_dtype worst = DTA_DTYPE_NONE;
        for (int d = 0; d < DTA_DTYPE_COUNT; d++)
            if (((own >> d) & 1) && (dta_dtype)d != dom &&
                (worst == DTA_DTYPE_NONE ||
                 node_numel(c, mod, (dta_dtype)d) > node_numel(c, mod, worst)))
                worst = (dta_dtype)d;
        st = add_finding(c, DTA_RULE_MIXED_MODULE, r, name, worst,
                         dom, NULL, &f);
        for (; st == DTA_OK && j < nh && hits[j].node == mod; j++)
            st = finding_add_tensor(c, f, hits[j].tensor);
        if (st != DTA_OK)
            break;
        /* message lists each dtype among the module's own tensors */
        char buf[1024], list[512] = "";
        size_t o = 0;
        for (int d = 0; d < DTA_DTYPE_COUNT && o < sizeof list; d++)
            if ((own >> d) & 1)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? " and " : "",
                                      dta_dtype_name((dta_dtype)d));
        snprintf(buf, sizeof buf,
                 "module '%s' holds %s parameters side by side (%zu tensor%s off the root's "
                 "dominant %s); its ops see both dtypes",
                 name, list, f->ntensors, f->ntensors == 1 ? "" : "s", dta_dtype_name(dom));
        free(f->message);
        if (!(f->message = strdup(buf)))
            st = nomem(c);
        i = j;
    }
    free(hits);
    return st;
}

/* config.json's torch_dtype (or dtype) disagrees with the weights' dominant dtype. */
static dta_status config_mismatch(ctx *c, size_t r)
{
    const dta_root_summary *rs = &c->r->roots[r];
    char msg[512];
    snprintf(msg, sizeof msg,
             "config.json says %s (torch.%s) but the weights are mostly %s; loaders that "
             "take the dtype from the config (from_pretrained with torch_dtype=\"auto\", "
             "training services) will cast them or guess wrong",
             dta_dtype_name(c->m->config_dtype), dta_dtype_get(c->m->config_dtype)->torch_name
                 ? dta_dtype_get(c->m->config_dtype)->torch_name : "?",
             dta_dtype_name(rs->dominant));
    return add_finding(c, DTA_RULE_CONFIG_MISMATCH, r, rs->name, rs->dominant,
                       c->m->config_dtype, msg, NULL);
}

/* The dtype a base model stands for: its first analysed root's dominant, else config.json. */
static dta_dtype base_dtype(const dta_report *b)
{
    for (size_t i = 0; i < b->nroots; i++)
        if (b->roots[i].analysed && b->roots[i].dominant != DTA_DTYPE_NONE)
            return b->roots[i].dominant;
    return b->model ? b->model->config_dtype : DTA_DTYPE_NONE;
}

/* A PEFT adapter whose dominant dtype differs from its base model's (--base). */
static dta_status adapter_mismatch(ctx *c)
{
    const dta_report *b = c->opt->base;
    dta_dtype want = base_dtype(b);
    size_t r = SIZE_MAX;
    for (size_t i = 0; i < c->r->nroots && r == SIZE_MAX; i++)
        if (c->r->roots[i].analysed && c->r->roots[i].dominant != DTA_DTYPE_NONE)
            r = i;
    if (r == SIZE_MAX || want == DTA_DTYPE_NONE || c->r->roots[r].dominant == want)
        return DTA_OK;
    dta_dtype have = c->r->roots[r].dominant;
    char msg[1024];
    snprintf(msg, sizeof msg,
             "the adapter's weights are %s but its base model '%.300s' is %s; code that takes "
             "the model's dtype from its first parameter after PEFT wrapping sees %s and picks "
             "the wrong training precision, and merging casts the adapter to %s (PEFT keeps "
             "adapters in float32 by default: if that is intended, lower this rule's severity "
             "in a policy)",
             dta_dtype_name(have), b->model && b->model->path ? b->model->path : "?",
             dta_dtype_name(want), dta_dtype_name(have), dta_dtype_name(want));
    return add_finding(c, DTA_RULE_ADAPTER_MISMATCH, r, c->r->roots[r].name, have,
                       want, msg, NULL);
}

/* Intended islands (intended.h): matched tensors count as allowed for the dtype rules,
 * unless the user asked for --strict or already allowed them. The rules are tried on the
 * checked tensors off their root's compute dtype (quantized parameters are allowed already);
 * c->intended stays NULL when none is an island. */
static dta_status intended_mark(ctx *c)
{
    if (!c->opt->intended || c->opt->strict || c->nchecked == 0)
        return DTA_OK;
    /* as many entries as checked tensors; only the first n are touched */
    uint32_t *idx = malloc(c->nchecked * sizeof *idx);
    dta_dtype *dom = malloc(c->nchecked * sizeof *dom);
    const dta_intended_rule **hit = malloc(c->nchecked * sizeof *hit);
    size_t n = 0;
    dta_status st = DTA_OK;
    if (!idx || !dom || !hit) {
        st = nomem(c);
        goto out;
    }
    for (size_t j = 0; j < c->nchecked; j++) {
        size_t i = c->checked[j];
        const dta_root_summary *rs = &c->r->roots[c->tensor_root[i]];
        if (rs->analysed && rs->dominant != DTA_DTYPE_NONE &&
            c->m->tensors[i].dtype != rs->dominant) {
            idx[n] = (uint32_t)i;
            dom[n++] = rs->dominant;
        }
    }
    st = dtap_intended_mark_some(c->opt->intended, c->m, idx, n, dom, hit, c->err);
    for (size_t j = 0; j < n && st == DTA_OK; j++) {
        if (!hit[j])
            continue;
        if (!c->intended && !(c->intended = calloc(c->m->ntensors, sizeof *c->intended))) {
            st = nomem(c);
            break;
        }
        c->intended[idx[j]] = hit[j];
        c->allowed[idx[j]] = true;
    }
out:
    free(idx);
    free(dom);
    free(hit);
    return st;
}

/* One `intended` info finding per matched tensor: which rule matched and why (renderers
 * group the repeats of a layer stack). */
static dta_status intended_findings(ctx *c)
{
    const dta_model *m = c->m;
    dta_status st = DTA_OK;
    if (!c->intended)
        return DTA_OK;
    for (size_t j = 0; j < c->nchecked && st == DTA_OK; j++) {
        size_t i = c->checked[j];
        const dta_intended_rule *ir = c->intended[i];
        if (!ir)
            continue;
        const dta_tensor *t = &m->tensors[i];
        size_t r = c->tensor_root[i];
        dta_dtype dom = c->r->roots[r].dominant;
        dta_finding *f = NULL;
        char msg[1200], ev[240] = "";
        const char *semi = strchr(ir->evidence, ';');
        if (ir->evidence[0])
            snprintf(ev, sizeof ev, " (evidence: %.*s%s)",
                     (int)(semi ? (size_t)(semi - ir->evidence) : strlen(ir->evidence)) > 200
                         ? 200
                         : (int)(semi ? (size_t)(semi - ir->evidence) : strlen(ir->evidence)),
                     ir->evidence, semi ? "; ..." : "");
        snprintf(msg, sizeof msg,
                 "'%.300s' is %s beside the root's %s on purpose: intended-precision rule '%s' "
                 "(%s): %.400s%s",
                 t->name, dta_dtype_name(t->dtype), dta_dtype_name(dom), ir->id, ir->kind,
                 ir->why, ev);
        st = add_finding(c, DTA_RULE_INTENDED, r, t->name, t->dtype, dom, msg, &f);
        if (st != DTA_OK)
            break;
        f->intended = ir;
        st = finding_add_tensor(c, f, i);
    }
    return st;
}

static void finding_clear(dta_finding *f)
{
    free(f->root);
    free(f->module);
    free(f->message);
    free(f->values);
    for (size_t k = 0; k < f->ntensors; k++)
        free(f->tensors[k]);
    free(f->tensors);
}

/* Policy severities: the last override naming a rule wins; DTA_SEV_OFF drops the finding. */
static void apply_severity(dta_report *r, const dta_audit_options *o)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nfindings; i++) {
        dta_finding *f = &r->findings[i];
        int sev = (int)f->severity;
        for (size_t j = 0; j < o->nseverity; j++)
            if (o->severity[j].rule && strcmp(o->severity[j].rule, f->rule) == 0)
                sev = o->severity[j].severity;
        if (sev == DTA_SEV_OFF) {
            finding_clear(f);
            continue;
        }
        if (sev >= DTA_SEV_INFO && sev <= DTA_SEV_ERROR)
            f->severity = (dta_severity)sev;
        r->findings[k++] = *f;
    }
    r->nfindings = k;
}

/* The quantization problems (quant.h) as findings, at their catalogue severity. */
static dta_status quant_findings(ctx *c)
{
    const dta_quant *q = c->r->quant;
    dta_status st = DTA_OK;
    for (size_t i = 0; q && i < q->nissues && st == DTA_OK; i++) {
        const dta_quant_issue *is = &q->issues[i];
        size_t root = is->ntensors ? c->tensor_root[is->tensors[0]] : SIZE_MAX;
        dta_finding *f;
        st = add_finding(c, is->rule, root, is->module, DTA_DTYPE_NONE, DTA_DTYPE_NONE,
                         is->message, &f);
        for (size_t k = 0; k < is->ntensors && st == DTA_OK; k++)
            st = finding_add_tensor(c, f, is->tensors[k]);
    }
    return st;
}

static dta_status reader_notes(ctx *c)
{
    const dta_model *m = c->m;
    dta_status st = DTA_OK;
    for (size_t i = 0; i < m->nnotes && st == DTA_OK; i++)
        st = add_finding(c, m->notes[i].rule_id, SIZE_MAX, m->notes[i].subject,
                         DTA_DTYPE_NONE, DTA_DTYPE_NONE, m->notes[i].message, NULL);
    return st;
}

/* Modules by (root order, name). While sorted, root holds the root's index (export_modules). */
static int cmp_module(const void *a, const void *b)
{
    const dta_module *x = a, *y = b;
    if (x->root != y->root)
        return (uintptr_t)x->root < (uintptr_t)y->root ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The catalogue's rank; unranked rules (0) after every ranked one. */
static unsigned rule_rank(dta_rule rule)
{
    unsigned k = dta_rule_get(rule)->rank;
    return k ? k : UINT_MAX;
}

static int cmp_finding(const void *a, const void *b)
{
    const dta_finding *x = a, *y = b;
    unsigned rx = rule_rank(x->rule_id), ry = rule_rank(y->rule_id);
    if (rx != ry)
        return rx < ry ? -1 : 1;
    if (x->values && y->values) { /* value rules: worst first */
        double bx = dtap_values_badness(x), by = dtap_values_badness(y);
        if (bx != by)
            return bx > by ? -1 : 1;
    }
    if (x->root_index != y->root_index)
        return x->root_index < y->root_index ? -1 : 1;
    return strcmp(x->module, y->module);
}

typedef struct {
    const char *seg;
    uint32_t node;
} kid;

static int cmp_kid(const void *a, const void *b)
{
    return strcmp(((const kid *)a)->seg, ((const kid *)b)->seg);
}

/* The non-top nodes in the modules' order, (root, name), by a walk of each root's tree with
 * every node's children sorted by their name past the parent's: a node's subtree is a
 * block in name order when no name byte sorts below the '.' after the node's name
 * (c->unsorted, else the modules are sorted with qsort). */
static dta_status tree_order(ctx *c)
{
    size_t n = c->nnodes;
    if (c->unsorted || n == 0)
        return DTA_OK;
    uint32_t *start = calloc(n + 1, sizeof *start), *kids = malloc(n * sizeof *kids);
    uint32_t *stack = malloc(n * sizeof *stack), *order = malloc(n * sizeof *order);
    kid *tmp = NULL;
    size_t captmp = 0;
    dta_status st = DTA_OK;
    if (!start || !kids || !stack || !order) {
        st = nomem(c);
        goto out;
    }
    /* children by parent (start[p] .. start[p + 1]), in creation order */
    for (size_t k = 0; k < n; k++)
        if (!node_top(c, k))
            start[c->side[k].parent + 1]++;
    for (size_t k = 0; k < n; k++)
        start[k + 1] += start[k];
    for (size_t k = 0; k < n; k++)
        if (!node_top(c, k))
            kids[start[c->side[k].parent]++] = (uint32_t)k;
    for (size_t k = n; k > 0; k--) /* start[p] moved to the end of p's children: back */
        start[k] = start[k - 1];
    start[0] = 0;
    for (size_t p = 0; p < n; p++) {
        uint32_t *g = kids + start[p];
        size_t cnt = start[p + 1] - start[p], pl = c->nlen[p];
        size_t j = 1;
        while (j < cnt && strcmp(c->mods[g[j - 1]].name + pl, c->mods[g[j]].name + pl) < 0)
            j++;
        if (j >= cnt)
            continue; /* sorted already */
        if (cnt <= 16) { /* insertion sort */
            for (; j < cnt; j++) {
                uint32_t x = g[j];
                const char *xs = c->mods[x].name + pl;
                size_t i = j;
                while (i > 0 && strcmp(c->mods[g[i - 1]].name + pl, xs) > 0) {
                    g[i] = g[i - 1];
                    i--;
                }
                g[i] = x;
            }
            continue;
        }
        if (cnt > captmp) {
            kid *t2 = realloc(tmp, cnt * sizeof *t2);
            if (!t2) {
                st = nomem(c);
                goto out;
            }
            tmp = t2;
            captmp = cnt;
        }
        for (size_t i = 0; i < cnt; i++)
            tmp[i] = (kid){c->mods[g[i]].name + pl, g[i]};
        qsort(tmp, cnt, sizeof *tmp, cmp_kid);
        for (size_t i = 0; i < cnt; i++)
            g[i] = tmp[i].node;
    }
    /* each root's top, in root order; a node before its children */
    size_t no = 0;
    for (size_t r = 0; r < c->r->nroots; r++)
        for (int w = 0; w < 2; w++) {
            if (c->tops[2 * r + w] == NO_NODE)
                continue;
            size_t sp = 0;
            stack[sp++] = c->tops[2 * r + w];
            while (sp) {
                uint32_t x = stack[--sp];
                if (!node_top(c, x))
                    order[no++] = x;
                for (size_t i = start[x + 1]; i > start[x]; i--)
                    stack[sp++] = kids[i - 1];
            }
        }
    size_t nmod = 0;
    for (size_t k = 0; k < n; k++)
        nmod += !node_top(c, k);
    if (no == nmod) { /* every node under a top (else: qsort); then the tops: a permutation */
        for (size_t k = 0; k < n; k++)
            if (node_top(c, k))
                order[no++] = (uint32_t)k;
        c->order = order;
        order = NULL;
    }
out:
    free(start);
    free(kids);
    free(stack);
    free(order);
    free(tmp);
    return st;
}

/* The nodes become the report's modules in place: top nodes dropped, the one-dtype counts
 * written out (one array for all of them), sorted by (root order, name). */
static dta_status export_modules(ctx *c)
{
    dta_report *r = c->r;
    size_t n = 0, nsingle = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        if (!node_top(c, i)) {
            n++;
            nsingle += !c->mods[i].dtypes && c->mods[i].ndtypes;
        }
    dta_dtype_count *single = NULL;
    if (nsingle && !(single = dtap_arena_alloc(&r->arena, nsingle * sizeof *single,
                                               _Alignof(dta_dtype_count))))
        return nomem(c);
    if (c->order && n) { /* tree_order: moved into that order in place */
        size_t nn = c->nnodes;
        uint8_t *done = calloc((nn + 7) / 8, 1);
        if (!done)
            return nomem(c);
        for (size_t i = 0; i < nn; i++) {
            if (node_top(c, i))
                continue;
            dta_module *md = &c->mods[i];
            if (!md->dtypes && md->ndtypes) {
                single->dtype = (dta_dtype)(c->kind[i] & ~NODE_TOP);
                single->count = md->total;
                md->dtypes = single++;
            }
            md->root = r->roots[c->noderoot[i]].name; /* shared with the root, not a copy */
        }
        /* order is a permutation of all the nodes (the tops last): follow its cycles */
        for (size_t j = 0; j < nn; j++) {
            if (done[j / 8] & (1u << (j % 8)))
                continue;
            dta_module tmp = c->mods[j];
            size_t k = j;
            for (;;) {
                size_t src = c->order[k];
                done[k / 8] |= (uint8_t)(1u << (k % 8));
                if (src == j) {
                    c->mods[k] = tmp;
                    break;
                }
                c->mods[k] = c->mods[src];
                k = src;
            }
        }
        free(done);
        free(c->noderoot);
        free(c->kind);
        c->noderoot = NULL;
        c->kind = NULL;
        dta_module *p = realloc(c->mods, n * sizeof *p);
        r->modules = p ? p : c->mods; /* shrinking failed: keep the larger block */
        r->nmodules = n;
        c->mods = NULL;
        c->nnodes = c->capnodes = 0;
        return DTA_OK;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        if (node_top(c, i))
            continue;
        dta_module md = c->mods[i];
        if (!md.dtypes && md.ndtypes) {
            single->dtype = (dta_dtype)(c->kind[i] & ~NODE_TOP);
            single->count = md.total;
            md.dtypes = single++;
        }
        /* the root's index while sorting (root names are separate blocks: their addresses
         * do not follow the roots' order) */
        md.root = (char *)(uintptr_t)c->noderoot[i];
        c->mods[k++] = md; /* k <= i */
    }
    free(c->noderoot);
    free(c->kind);
    c->noderoot = NULL;
    c->kind = NULL;
    if (n > 1)
        qsort(c->mods, n, sizeof *c->mods, cmp_module);
    for (size_t i = 0; i < n; i++) /* shared with the root, not a copy each */
        c->mods[i].root = r->roots[(uintptr_t)c->mods[i].root].name;
    dta_module *p = n ? realloc(c->mods, n * sizeof *p) : NULL;
    if (n && !p)
        p = c->mods; /* shrinking failed: keep the larger block */
    if (!n) {
        free(c->mods);
        p = calloc(1, sizeof *p);
        if (!p) {
            c->mods = NULL;
            return nomem(c);
        }
    }
    r->modules = p;
    r->nmodules = n;
    c->mods = NULL;
    c->nnodes = c->capnodes = 0;
    return DTA_OK;
}

dta_status dta_report_build(const dta_model *m, const dta_audit_options *opt, dta_report **out,
                            dta_error *err)
{
    ctx c;
    dta_status st = DTA_OK;
    dta_audit_options none = {.expect = DTA_DTYPE_NONE, .findings = true};

    *out = NULL;
    if (!opt)
        opt = &none;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.opt = opt;
    c.err = err;
    c.r = calloc(1, sizeof *c.r);
    size_t nt = m->ntensors ? m->ntensors : 1;
    /* every entry is written (list_checked, assign_roots, build_tree) before it is read */
    c.tensor_root = malloc(nt * sizeof *c.tensor_root);
    c.tensor_module = malloc(nt * sizeof *c.tensor_module);
    c.allowed = malloc(nt * sizeof *c.allowed);
    if (!c.r || !c.tensor_root || !c.tensor_module || !c.allowed) {
        st = nomem(&c);
        goto out;
    }
    c.r->model = m;
    if ((st = dta_quant_analyse(m, &c.r->quant, err)) != DTA_OK)
        goto out;
    if ((st = list_checked(&c)) != DTA_OK || (st = assign_roots(&c)) != DTA_OK)
        goto out;
    c.compute = calloc((c.r->nroots ? c.r->nroots : 1) * DTA_DTYPE_COUNT, sizeof *c.compute);
    if (!c.compute) {
        st = nomem(&c);
        goto out;
    }
    if ((st = count_roots(&c)) != DTA_OK)
        goto out;
    pick_dominants(c.r, c.compute);
    if ((st = intended_mark(&c)) != DTA_OK || (st = build_tree(&c)) != DTA_OK)
        goto out;

    if (opt->findings) {
        for (size_t r = 0; r < c.r->nroots && st == DTA_OK; r++) {
            dta_root_summary *rs = &c.r->roots[r];
            if (!rs->analysed)
                continue;
            if (rs->dominant != DTA_DTYPE_NONE) {
                st = cover_root(&c, r, DTA_RULE_DTYPE_OUTLIER, rs->dominant);
                if (st == DTA_OK)
                    st = mixed_modules(&c, r);
            }
            if (st == DTA_OK && opt->expect != DTA_DTYPE_NONE)
                st = cover_root(&c, r, DTA_RULE_EXPECT_MISMATCH, opt->expect);
            if (st == DTA_OK && m->config_dtype != DTA_DTYPE_NONE &&
                rs->dominant != DTA_DTYPE_NONE && rs->dominant != m->config_dtype)
                st = config_mismatch(&c, r);
        }
        if (st == DTA_OK && m->adapter && opt->base)
            st = adapter_mismatch(&c);
        if (st == DTA_OK)
            st = intended_findings(&c);
        if (st == DTA_OK)
            st = quant_findings(&c);
        if (st == DTA_OK)
            st = reader_notes(&c);
        if (st == DTA_OK && opt->values)
            st = dtap_values_findings(c.r, m, opt, c.tensor_root, c.allowed,
                                      (const dta_intended_rule *const *)c.intended, err);
        if (st == DTA_OK && opt->nseverity)
            apply_severity(c.r, opt);
    }
    /* the lookup tables and the rules' per-node data are done with: free them before the
     * modules are exported (a header near the safetensors cap has a million modules) */
    free(c.nodetab.slot);
    c.nodetab.slot = NULL;
    free(c.tensor_module);
    c.tensor_module = NULL;
    free(c.allowed);
    c.allowed = NULL;
    free(c.checked);
    c.checked = NULL;
    if (st == DTA_OK)
        st = tree_order(&c);
    free(c.nlen);
    c.nlen = NULL;
    free(c.tops);
    c.tops = NULL;
    free(c.side);
    c.side = NULL;
    if (st == DTA_OK)
        st = export_modules(&c);
    if (st == DTA_OK) {
        if (c.r->nfindings > 1)
            qsort(c.r->findings, c.r->nfindings, sizeof *c.r->findings, cmp_finding);
    }
out:
    free(c.order);
    free(c.nlen);
    free(c.tops);
    free(c.mods); /* node names and dtype arrays are in the report's arena */
    free(c.side);
    free(c.noderoot);
    free(c.kind);
    free(c.nodetab.slot);
    free(c.tensor_module);
    free(c.allowed);
    free(c.checked);
    free(c.compute);
    if (c.r) {
        c.r->tensor_root = c.tensor_root; /* ownership moves to the report */
        c.r->intended = c.intended;
    } else {
        free(c.tensor_root);
        free(c.intended);
    }
    if (st != DTA_OK) {
        dta_report_free(c.r);
        return st;
    }
    *out = c.r;
    return DTA_OK;
}

void dta_report_free(dta_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nroots; i++)
        free(r->roots[i].name);
    dtap_arena_free(&r->arena); /* module names and dtypes; roots are the roots' names */
    for (size_t i = 0; i < r->nfindings; i++)
        finding_clear(&r->findings[i]);
    free(r->roots);
    free(r->modules);
    free(r->findings);
    dta_quant_free(r->quant);
    free(r->tensor_root);
    free((void *)r->intended);
    free(r);
}

const char *dta_severity_name(dta_severity s)
{
    switch (s) {
    case DTA_SEV_INFO: return "info";
    case DTA_SEV_WARNING: return "warning";
    case DTA_SEV_ERROR: return "error";
    case DTA_SEV_NEVER: return "never";
    }
    return "?";
}

int dta_severity_from_name(const char *s)
{
    for (int i = DTA_SEV_INFO; i <= DTA_SEV_NEVER; i++)
        if (strcmp(s, dta_severity_name((dta_severity)i)) == 0)
            return i;
    return -1;
}
