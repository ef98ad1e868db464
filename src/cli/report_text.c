/* Text output for people: per-root summary, collapsed module tree, findings with fixes.
 *
 * Numeric siblings with the same structure are collapsed (layers.{0..31}.mlp), both in
 * the module tree and in findings, so a 126-layer model reads like a 1-layer one. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/quant.h"
#include "fix.h"
#include "report.h"

typedef struct {
    bool on;
} palette;

static const char *C(const palette *p, const char *code) { return p->on ? code : ""; }
#define BOLD "\033[1m"
#define DIM "\033[2m"
#define RED "\033[31m"
#define YELLOW "\033[33m"
#define CYAN "\033[36m"
#define GREEN "\033[32m"
#define RESET "\033[0m"

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

void suggest_output(char *buf, size_t cap, const char *path, dta_dtype to)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (dot && dot != base)
        snprintf(buf, cap, "%.*s.%s%s", (int)(dot - path), path, dtype_alias(to), dot);
    else
        snprintf(buf, cap, "%.*s-%s", (int)len, path, dtype_alias(to));
}

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
typedef struct {
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
    n->numeric = len > 0 && len < 19;
    for (size_t i = 0; i < len && n->numeric; i++)
        if (comp[i] < '0' || comp[i] > '9')
            n->numeric = false;
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

/* "{0..3,5,7..9}" from sorted distinct indices. */
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

typedef struct {
    FILE *out;
    const palette *pal;
    int verbosity;
    const ttab *tab; /* the tree being printed */
    const cli_options *o;
    const dta_quant *quant; /* of the input being printed, NULL when none */
} tctx;

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
static void print_tree(tctx *c, const dta_report *rep, const dta_root_summary *rs,
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

/* One summary row per kind of quantized parameter ("FP8_E4M3 block 128x128 -> BF16"):
 * parameters, their tensors (codes and companions), logical elements, stored bytes. */
typedef struct {
    char label[96];
    uint64_t params;
    dta_count count;
} qrow;

static qrow *quant_rows(const dta_report *rep, size_t root, dta_count *plain, size_t *n)
{
    const dta_model *m = rep->model;
    const dta_quant *q = rep->quant;
    qrow *rows = NULL;
    *n = 0;
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        if (rep->tensor_root[i] != root)
            continue;
        if (!dta_quant_tensor_is_quantized(q, i)) {
            plain[t->dtype].tensors++;
            plain[t->dtype].numel += t->numel;
            plain[t->dtype].nbytes += t->nbytes;
            continue;
        }
        const dta_quant_param *p = dta_quant_tensor_param(q, i);
        char label[96];
        if (p)
            dta_quant_param_label(q, p, label, sizeof label);
        else
            snprintf(label, sizeof label, "%s activation/kv scales", dta_quant_scheme_name(q->scheme));
        size_t k = 0;
        while (k < *n && strcmp(rows[k].label, label) != 0)
            k++;
        if (k == *n) {
            qrow *r = realloc(rows, (*n + 1) * sizeof *r);
            if (!r)
                return rows;
            rows = r;
            memset(&rows[k], 0, sizeof rows[k]);
            snprintf(rows[k].label, sizeof rows[k].label, "%s", label);
            (*n)++;
        }
        rows[k].count.tensors++;
        rows[k].count.nbytes += t->nbytes;
        if (p && p->weight == i) {
            rows[k].params++;
            rows[k].count.numel += p->numel;
        }
    }
    return rows;
}

/* "  quantization fp8-block (config.json: fp8, block 128x128), 183 parameters" */
static void print_quant(tctx *c, const dta_quant *q)
{
    char shown[300], shown2[300], size[64] = "";
    size_t n = 0;
    for (size_t i = 0; i < q->nparams; i++)
        n += q->params[i].weight != SIZE_MAX;
    if (q->block[0] && q->block[1])
        snprintf(size, sizeof size, ", block %ux%u", q->block[0], q->block[1]);
    else if (q->group)
        snprintf(size, sizeof size, ", group %u", q->group);
    fprintf(c->out, "  quantization %s%s%s (%s%s%s%s%s%s), %zu quantized parameter%s\n",
            C(c->pal, BOLD), dta_quant_scheme_name(q->scheme), C(c->pal, RESET),
            q->source ? q->source : "tensors", q->method ? ": " : "",
            q->method ? clean(shown, sizeof shown, q->method) : "", size,
            q->detail ? ", " : "", q->detail ? clean(shown2, sizeof shown2, q->detail) : "", n,
            n == 1 ? "" : "s");
}

static void print_root(tctx *c, const dta_report *rep, const dta_root_summary *rs)
{
    char params[32], bytes[32], shown[600];
    if (rs->name[0])
        fprintf(c->out, "\n  %sroot '%s'%s", C(c->pal, BOLD), clean(shown, sizeof shown, rs->name),
                C(c->pal, RESET));
    else
        fprintf(c->out, "\n  %sroot (flat state dict)%s", C(c->pal, BOLD), C(c->pal, RESET));
    if (!rs->analysed)
        fprintf(c->out, "  optimizer state: listed, not analysed\n");
    else if (rs->dominant != DTA_DTYPE_NONE)
        fprintf(c->out, "  dominant %s%s%s\n", C(c->pal, GREEN), dta_dtype_name(rs->dominant),
                C(c->pal, RESET));
    else
        fprintf(c->out, "  no floating tensors\n");
    fprintf(c->out, "    %-12s %8s %10s %11s %7s\n", "dtype", "tensors", "params", "bytes",
            "share");
    const dta_quant *q = rep->quant;
    const dta_count *by = rs->by_dtype;
    dta_count plain[DTA_DTYPE_COUNT];
    qrow *rows = NULL;
    size_t nrows = 0;
    if (q && q->scheme != DTA_QS_NONE && rep->tensor_root) {
        /* quantized parameters are their own rows; the dtype rows hold the rest */
        size_t ri = (size_t)(rs - rep->roots);
        memset(plain, 0, sizeof plain);
        by = plain;
        rows = quant_rows(rep, ri, plain, &nrows);
    }
    for (int t = 0; t < DTA_DTYPE_COUNT; t++) {
        const dta_count *n = &by[t];
        if (!n->tensors)
            continue;
        fmt_count(params, sizeof params, n->numel);
        fmt_bytes(bytes, sizeof bytes, n->nbytes);
        fprintf(c->out, "    %-12s %8llu %10s %11s %6.1f%%\n", dta_dtype_name((dta_dtype)t),
                (unsigned long long)n->tensors, params, bytes,
                rs->total.numel ? 100.0 * (double)n->numel / (double)rs->total.numel : 0.0);
    }
    for (size_t i = 0; i < nrows; i++) {
        fmt_count(params, sizeof params, rows[i].count.numel);
        fmt_bytes(bytes, sizeof bytes, rows[i].count.nbytes);
        fprintf(c->out, "    %-34s %6llu params %8llu tensors %10s %11s\n", rows[i].label,
                (unsigned long long)rows[i].params, (unsigned long long)rows[i].count.tensors,
                params, bytes);
    }
    free(rows);
}

/* ---- findings ------------------------------------------------------------------------ */

/* Module name with each all-digit component replaced by '#': the grouping key. */
static void shape_of(char *buf, size_t cap, const char *name)
{
    size_t o = 0;
    const char *p = name;
    while (*p && o + 2 < cap) {
        const char *e = strchr(p, '.');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool num = len > 0 && len < 19;
        for (size_t i = 0; i < len && num; i++)
            num = p[i] >= '0' && p[i] <= '9';
        if (num)
            buf[o++] = '#';
        else
            for (size_t i = 0; i < len && o + 2 < cap; i++)
                buf[o++] = p[i];
        if (!e)
            break;
        buf[o++] = '.';
        p = e + 1;
    }
    buf[o] = 0;
}

/* Grouping key of a finding: a single top-level tensor groups by its name; a module whose
 * name has numeric components groups by its shape (layers.#.mlp); any other module is its
 * own group. Returns the kind (0..3, 2 = alone) and writes the key text for the others. */
static int group_key(const dta_finding *f, char *buf, size_t cap)
{
    /* intended findings (one per tensor) group by rule and name shape, only among
     * themselves: layers.{0..31}.x */
    if (f->intended) {
        shape_of(buf, cap, f->module);
        return strchr(buf, '#') ? 3 : 2;
    }
    if (f->ntensors == 1 && strcmp(f->tensors[0], f->module) == 0) {
        snprintf(buf, cap, "%s", f->module);
        return 0;
    }
    shape_of(buf, cap, f->module);
    return strchr(buf, '#') ? 1 : 2;
}

static bool same_attrs(const dta_finding *a, const dta_finding *b)
{
    return a->rule_id == b->rule_id && a->severity == b->severity && a->dtype == b->dtype &&
           a->expected == b->expected && a->root_index == b->root_index;
}

/* gid[i] = index of the first finding of i's group, through a hash of the keys: linear in
 * the findings (64k distinct findings used to take 30 s pairwise). */
static bool group_findings(const dta_finding *fs, size_t n, size_t *gid)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot); /* leader + 1 */
    if (!slot)
        return false;
    for (size_t i = 0; i < n; i++) {
        char key[1024], other[1024];
        const dta_finding *f = &fs[i];
        int kind = group_key(f, key, sizeof key);
        gid[i] = i;
        if (kind == 2)
            continue;
        uint64_t h = 1469598103934665603ull;
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ (uint64_t)kind ^ ((uint64_t)f->rule_id << 8) ^ ((uint64_t)f->severity << 20) ^
             ((uint64_t)f->dtype << 24) ^ ((uint64_t)f->expected << 32) ^
             ((uint64_t)f->root_index << 40)) * 0x9e3779b97f4a7c15ull;
        size_t k = (size_t)(h >> 17) & (cap - 1);
        for (; slot[k]; k = (k + 1) & (cap - 1)) {
            const dta_finding *l = &fs[slot[k] - 1];
            if (same_attrs(f, l) && group_key(l, other, sizeof other) == kind &&
                strcmp(key, other) == 0)
                break;
        }
        if (slot[k])
            gid[i] = slot[k] - 1;
        else
            slot[k] = i + 1;
    }
    free(slot);
    return true;
}

/* Renders the group's module names as one pattern (layers.{0..31}.ttt) and as a glob
 * for --only (layers.*.ttt). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void group_pattern(const dta_finding **g, size_t n, char *pat, size_t pcap, char *glob,
                          size_t gcap)
{
    const char *first = g[0]->module;
    size_t po = 0, go = 0;
    const char *p = first;
    uint64_t *idx = malloc(sizeof *idx * n);
    const char **q = malloc(sizeof *q * n); /* each member's current component */
    pat[0] = glob[0] = 0;
    if (!idx || !q)
        goto out;
    for (size_t i = 0; i < n; i++)
        q[i] = g[i]->module;
    while (p) {
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
        if (po && po + 1 < pcap)
            pat[po++] = '.', pat[po] = 0;
        if (go && go + 1 < gcap)
            glob[go++] = '.', glob[go] = 0;
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
            go += (size_t)snprintf(glob + go, go < gcap ? gcap - go : 0, "*");
        } else {
            po += (size_t)snprintf(pat + po, po < pcap ? pcap - po : 0, "%.*s", (int)len, p);
            go += glob_escape(glob + go, go < gcap ? gcap - go : 0, p, len);
        }
        if (po >= pcap || go >= gcap)
            break;
        p = e ? e + 1 : NULL;
    }
out:
    free(idx);
    free(q);
}

static const char *sev_color(dta_severity s)
{
    return s == DTA_SEV_ERROR ? RED : s == DTA_SEV_WARNING ? YELLOW : CYAN;
}

static void print_fix(tctx *c, const input_result *in, const dta_finding *f, const char *glob)
{
    char outp[1024], qg[1200], qp[1200], qo[1200], allow[1100];
    const char *pal_dim = C(c->pal, DIM), *reset = C(c->pal, RESET);
    bool dtype_rule = f->rule_id == DTA_RULE_DTYPE_OUTLIER ||
                      f->rule_id == DTA_RULE_MIXED_MODULE ||
                      f->rule_id == DTA_RULE_EXPECT_MISMATCH;
    cli_fix fx;
    char cmd[8192];
    bool has_fix = cli_fix_build(c->o, in, f, glob, &fx); /* the command JSON's "fix" holds */
    if (has_fix)
        cli_fix_shell(&fx, cmd, sizeof cmd);
    if (dtype_rule && f->expected != DTA_DTYPE_NONE) {
        if (has_fix)
            fprintf(c->out, "      %sfix:%s %s\n", pal_dim, reset, cmd);
        else
            fprintf(c->out, "      %sfix:%s none that dtaudit convert can apply (it writes f32, "
                    "f16 and bf16 from floating dtypes it can read)\n", pal_dim, reset);
        if (glob[0] && f->dtype != DTA_DTYPE_NONE) {
            snprintf(allow, sizeof allow, "%s=%s", glob, dta_dtype_name(f->dtype));
            fprintf(c->out, "      %sor, if intended:%s --allow %s\n", pal_dim, reset,
                    shell_quote(qg, sizeof qg, allow));
        }
    } else if (f->rule_id == DTA_RULE_CONFIG_MISMATCH) {
        fprintf(c->out,
                "      %sfix:%s set \"torch_dtype\": \"%s\" in config.json, or convert the weights%s%s\n",
                pal_dim, reset, dta_dtype_get(f->dtype)->torch_name, has_fix ? ": " : "",
                has_fix ? cmd : "");
    } else if (f->rule_id == DTA_RULE_ADAPTER_MISMATCH) {
        fprintf(c->out,
                "      %sfix:%s %s%sset the trainer's precision "
                "from the base model; if intended: \"severity\": {\"adapter-mismatch\": \"info\"} "
                "in a --policy file\n",
                pal_dim, reset, has_fix ? cmd : "", has_fix ? ", or " : "");
    } else if (f->rule_id == DTA_RULE_INDEX_MISMATCH) {
        fprintf(c->out, "      %sfix:%s re-save the checkpoint, or correct the index's weight_map and "
                "metadata.total_size\n", pal_dim, reset);
    } else if (f->rule_id == DTA_RULE_UNSAFE_PICKLE) {
        fprintf(c->out,
                "      %sfix:%s load it only with torch.load(weights_only=True), or re-save "
                "its tensors as safetensors from a trusted environment\n",
                pal_dim, reset);
    } else if (f->values && f->expected != DTA_DTYPE_NONE) {
        /* range-overflow / precision-underflow: keep them, clamp them, or another target */
        dta_dtype wider = f->expected == DTA_F16 ? DTA_BF16 : DTA_F32;
        suggest_output(outp, sizeof outp, in->path, f->expected);
        shell_quote(qp, sizeof qp, in->path);
        shell_quote(qo, sizeof qo, outp);
        /* advice, not a "fix": JSON's fix is null for value rules (fix.c), because auditing
         * the output of --keep with the same arguments still reports the kept tensors */
        fprintf(c->out, "      %skeep them:%s dtaudit convert --to %s --keep %s %s -o %s\n",
                pal_dim, reset, dtype_alias(f->expected),
                shell_quote(qg, sizeof qg, glob[0] ? glob : "*"), qp, qo);
        if (glob[0] && f->dtype != DTA_DTYPE_NONE) {
            snprintf(allow, sizeof allow, "%s=%s", glob, dta_dtype_name(f->dtype));
            fprintf(c->out, "      %sthen audit the output with:%s --allow %s\n", pal_dim, reset,
                    shell_quote(qg, sizeof qg, allow));
        }
        /* a wider target exists for f16 (bf16's range) and bf16 (f32), not for f32 */
        char more[64] = "";
        if (f->expected != DTA_F32)
            snprintf(more, sizeof more, "--to %s (more range)", dtype_alias(wider));
        if (f->rule_id == DTA_RULE_RANGE_OVERFLOW)
            fprintf(c->out, "      %sor:%s --on-overflow saturate (clamp to %s's largest finite "
                    "value)%s%s\n", pal_dim, reset, dtype_alias(f->expected),
                    more[0] ? ", or " : "", more);
        else if (more[0])
            fprintf(c->out, "      %sor:%s %s\n", pal_dim, reset, more);
    } else if (f->rule_id == DTA_RULE_NONFINITE) {
        fprintf(c->out,
                "      %sadvice:%s re-export from a good step, or find the operation that "
                "produced them (dtaudit audit --values -f json lists the counts per tensor)\n",
                pal_dim, reset);
    } else if (f->rule_id == DTA_RULE_META_TENSOR) {
        fprintf(c->out,
                "      %sfix:%s re-save from a model materialised on a real device "
                "(to_empty() and load the weights first)\n",
                pal_dim, reset);
    }
}

static void print_findings(tctx *c, const input_result *in)
{
    const dta_report *rep = in->report;
    size_t nf = rep->nfindings ? rep->nfindings : 1;
    const dta_finding **g = malloc(sizeof *g * nf);
    size_t *gid = malloc(sizeof *gid * nf), *start = calloc(nf + 1, sizeof *start);
    size_t *order = malloc(sizeof *order * nf), *fill = malloc(sizeof *fill * nf);
    if (!g || !gid || !start || !order || !fill ||
        !group_findings(rep->findings, rep->nfindings, gid))
        goto out;
    /* bucket the members of each group, in finding order */
    for (size_t i = 0; i < rep->nfindings; i++)
        start[gid[i] + 1]++;
    for (size_t i = 0; i < rep->nfindings; i++)
        start[i + 1] += start[i];
    memcpy(fill, start, sizeof *fill * rep->nfindings);
    for (size_t i = 0; i < rep->nfindings; i++)
        order[fill[gid[i]]++] = i;
    fprintf(c->out, "\n  %sfindings%s\n", C(c->pal, BOLD), C(c->pal, RESET));
    if (rep->nfindings == 0)
        fprintf(c->out, "    %snone%s\n", C(c->pal, GREEN), C(c->pal, RESET));
    for (size_t i = 0; i < rep->nfindings; i++) {
        if (gid[i] != i)
            continue;
        const dta_finding *f = &rep->findings[i];
        size_t n = 0, ntensors = 0;
        for (size_t k = start[i]; k < start[i + 1]; k++) {
            g[n++] = &rep->findings[order[k]];
            ntensors += rep->findings[order[k]].ntensors;
        }
        char pat[1024], glob[1024], what[160] = "";
        bool single_tensor = f->ntensors == 1 && strcmp(f->tensors[0], f->module) == 0;
        if (n > 1)
            group_pattern(g, n, pat, sizeof pat, glob, sizeof glob);
        else {
            snprintf(pat, sizeof pat, "%s", f->module[0] ? f->module : "(whole state dict)");
            glob_escape(glob, sizeof glob, f->module, strlen(f->module));
        }
        if (!single_tensor && glob[0] && f->rule_id != DTA_RULE_UNSAFE_PICKLE &&
            f->rule_id != DTA_RULE_META_TENSOR) {
            size_t gl = strlen(glob);
            if (gl + 3 < sizeof glob)
                memcpy(glob + gl, ".*", 3);
        }
        if (f->values && f->dtype != DTA_DTYPE_NONE && f->expected != DTA_DTYPE_NONE)
            snprintf(what, sizeof what, "  %s -> %s", dta_dtype_name(f->dtype),
                     dta_dtype_name(f->expected));
        else if (f->dtype != DTA_DTYPE_NONE && f->expected != DTA_DTYPE_NONE)
            snprintf(what, sizeof what, "  %s, expected %s", dta_dtype_name(f->dtype),
                     dta_dtype_name(f->expected));
        char shown[1200];
        fprintf(c->out, "    %s%-7s%s %-15s %s%s%s%s", C(c->pal, sev_color(f->severity)),
                dta_severity_name(f->severity), C(c->pal, RESET), f->rule, C(c->pal, BOLD),
                clean(shown, sizeof shown, pat), C(c->pal, RESET), what);
        if (n > 1 && !f->intended)
            fprintf(c->out, "  (%zu modules, %zu tensors)\n", n, ntensors);
        else if (ntensors)
            fprintf(c->out, "  (%zu tensor%s)\n", ntensors, ntensors == 1 ? "" : "s");
        else
            fputc('\n', c->out);
        fprintf(c->out, "      %swhy:%s %s%s\n", C(c->pal, DIM), C(c->pal, RESET),
                n > 1 ? "e.g. " : "", clean(shown, sizeof shown, f->message));
        if (c->verbosity > 0)
            for (size_t k = 0; k < n; k++)
                for (size_t t = 0; t < g[k]->ntensors; t++)
                    fprintf(c->out, "        %s\n", clean(shown, sizeof shown, g[k]->tensors[t]));
        print_fix(c, in, f, glob);
    }
out:
    free(g);
    free(gid);
    free(start);
    free(order);
    free(fill);
}

static void print_tensors(tctx *c, const dta_model *m)
{
    fprintf(c->out, "\n  %stensors%s\n", C(c->pal, BOLD), C(c->pal, RESET));
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        char shape[256];
        size_t o = 0;
        o += (size_t)snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->rank && o < sizeof shape; d++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%llu", d ? ", " : "",
                                  (unsigned long long)t->shape[d]);
        if (o < sizeof shape)
            snprintf(shape + o, sizeof shape - o, "]");
        char shown[600];
        char role[64] = "";
        if (dta_quant_tensor_is_quantized(c->quant, i)) {
            const dta_quant_param *qp = dta_quant_tensor_param(c->quant, i);
            snprintf(role, sizeof role, "  %s %s", dta_quant_scheme_name(qp ? qp->scheme : c->quant->scheme),
                     dta_quant_role_name(dta_quant_tensor_role(c->quant, i)));
        }
        fprintf(c->out, "    %-60s %-12s %s%s%s%s\n", clean(shown, sizeof shown, t->name),
                dta_dtype_name(t->dtype), shape,
                t->shared ? "  shared" : "", t->meta ? "  meta" : "", role);
    }
}

/* "  PEFT adapter LORA (r 8, alpha 16) over base model 'gpt2', targets q_lin v_lin" */
static void print_adapter(tctx *c, const cli_options *o, const dta_adapter *a)
{
    char shown[600], num[96] = "";
    if (a->r >= 0 && a->lora_alpha >= 0)
        snprintf(num, sizeof num, " (r %lld, alpha %g)", (long long)a->r, a->lora_alpha);
    else if (a->r >= 0)
        snprintf(num, sizeof num, " (r %lld)", (long long)a->r);
    else if (a->lora_alpha >= 0)
        snprintf(num, sizeof num, " (alpha %g)", a->lora_alpha);
    fprintf(c->out, "  PEFT adapter %s%s over base model ", clean(shown, sizeof shown, a->peft_type),
            num);
    if (a->base_model)
        fprintf(c->out, "'%s'", clean(shown, sizeof shown, a->base_model));
    else
        fputs("(not named)", c->out);
    if (a->target_regex)
        fprintf(c->out, ", targets /%s/", clean(shown, sizeof shown, a->target_regex));
    else if (a->ntarget_modules) {
        fputs(", targets", c->out);
        for (size_t i = 0; i < a->ntarget_modules && i < 16; i++)
            fprintf(c->out, " %s", clean(shown, sizeof shown, a->target_modules[i]));
        if (a->ntarget_modules > 16)
            fprintf(c->out, " (+%zu)", a->ntarget_modules - 16);
    }
    fputc('\n', c->out);
    if (o->base)
        fprintf(c->out, "  base model (--base) %s: %s\n", clean(shown, sizeof shown, o->base),
                o->base_dtype != DTA_DTYPE_NONE ? dta_dtype_name(o->base_dtype) : "dtype unknown");
}

void report_text(FILE *out, const cli_options *o, const input_result *in, size_t n, bool color)
{
    palette pal = {color};
    tctx c = {out, &pal, o->verbosity, NULL, o, NULL};
    bool audit = o->command == CMD_AUDIT;
    uint64_t tensors = 0, params = 0, bytes = 0, sev[3] = {0, 0, 0};
    size_t ok = 0;

    for (size_t i = 0; i < n; i++) {
        const input_result *r = &in[i];
        if (!r->model)
            continue;
        const dta_model *m = r->model;
        const dta_report *rep = r->report;
        char p[32], b[32], shown[1200], shown2[1200];
        ok++;
        tensors += rep->total.tensors;
        params += rep->total.numel;
        bytes += rep->total.nbytes;
        for (size_t k = 0; k < rep->nfindings; k++)
            if (rep->findings[k].severity <= DTA_SEV_ERROR)
                sev[rep->findings[k].severity]++;
        if (o->verbosity < 0) {
            if (audit && rep->nfindings) {
                fprintf(out, "%s%s%s\n", C(&pal, BOLD), clean(shown, sizeof shown, r->path),
                        C(&pal, RESET));
                print_findings(&c, r);
            }
            continue;
        }
        fmt_count(p, sizeof p, rep->total.numel);
        fmt_bytes(b, sizeof b, rep->total.nbytes);
        fprintf(out, "%s%s%s%s\n", ok > 1 ? "\n" : "", C(&pal, BOLD),
                clean(shown, sizeof shown, r->path), C(&pal, RESET));
        fprintf(out, "  %s, %zu file%s, %llu tensors, %s params, %s\n", m->format, m->nfiles,
                m->nfiles == 1 ? "" : "s", (unsigned long long)rep->total.tensors, p, b);
        if (m->config_dtype != DTA_DTYPE_NONE)
            fprintf(out, "  config.json dtype %s\n", dta_dtype_name(m->config_dtype));
        if (m->adapter)
            print_adapter(&c, o, m->adapter);
        for (size_t k = 0; k < m->nmetadata && o->verbosity > 0; k++)
            fprintf(out, "  metadata %s = %s\n", clean(shown, sizeof shown, m->metadata[k].key),
                    clean(shown2, sizeof shown2, m->metadata[k].value));
        size_t cursor = 0;
        c.quant = rep->quant;
        if (rep->quant && rep->quant->scheme != DTA_QS_NONE)
            print_quant(&c, rep->quant);
        for (size_t k = 0; k < rep->nroots; k++) {
            print_root(&c, rep, &rep->roots[k]);
            print_tree(&c, rep, &rep->roots[k], &cursor);
        }
        if (o->verbosity > 0)
            print_tensors(&c, m);
        if (audit)
            print_findings(&c, r);
    }
    if (n > 1 && o->verbosity >= 0) {
        char p[32], b[32];
        fmt_count(p, sizeof p, params);
        fmt_bytes(b, sizeof b, bytes);
        fprintf(out, "\n%stotal%s: %zu input%s read of %zu, %llu tensors, %s params, %s\n",
                C(&pal, BOLD), C(&pal, RESET), ok, ok == 1 ? "" : "s", n,
                (unsigned long long)tensors, p, b);
    }
    if (audit && o->verbosity >= 0 && ok > 0)
        fprintf(out, "\naudit: %llu error%s, %llu warning%s, %llu info (fail-on %s)\n",
                (unsigned long long)sev[DTA_SEV_ERROR], sev[DTA_SEV_ERROR] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_WARNING], sev[DTA_SEV_WARNING] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_INFO], dta_severity_name(o->fail_on));
}
