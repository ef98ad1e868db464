/* The pickle emitter (docs/formats.md 2.6, 2.9): writes a graph of pickle objects
 * (pickle.h) back as a protocol-2 pickle with the opcodes of pickle_opcodes.h, the table
 * the VM reads with. Only the opcodes torch's weights_only unpickler accepts are used
 * unless the graph holds objects that need more (NEWOBJ_EX, EXTn, LONG4, the POP of a
 * recursive tuple). Every object except ints, floats, bools and None is memoised on first
 * emission (BINPUT) and BINGET'd after, so objects shared in the graph stay shared;
 * containers are memoised before their items, which makes self-references work. Items
 * (APPENDS/SETITEMS) are written before BUILD states, as Python's pickler does. bytes
 * become _codecs.encode(str, 'latin1'), bytearray builtins.bytearray(bytes),
 * set/frozenset builtins.set/frozenset(list), protocol-0 strings BINUNICODE.
 *
 * The torch writer (write_torchzip.c) rewrites tensor rebuilds through the hooks, with
 * synthetic nodes made here: a call's own live until the call is written (each is
 * written once: it gets a memo index but no memo-table entry), globals to the end. */
#define _POSIX_C_SOURCE 200809L
#include "pickle_emit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/limits.h"
#include "pickle_opcodes.h"
#include "src.h"

typedef struct syn_block {
    struct syn_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} syn_block;

typedef struct {
    const char *mod, *name;
    dtap_pnode *node;
} iglobal;

struct dtap_pemit {
    /* output */
    unsigned char *o;
    size_t on, ocap;
    /* memo: node pointer -> index */
    const dtap_pnode **mk;
    uint32_t *mv;
    size_t mcap, mn;
    uint32_t next_memo;
    /* synthetic nodes: globals (kept to the end, shared) in arena; the nodes a hook makes
     * for one call in tmp, a stack released when the call is written (each is written
     * once, so they are given memo indices but not kept in the memo table, whose
     * pointers must not outlive what they point to) */
    syn_block *arena, *tmp;
    iglobal *globals;
    size_t nglobals, capglobals;
    unsigned depth;
    const dtap_pemit_hooks *hooks;
    dta_error *err;
};

/* ---- small utilities ---- */

static void *syn_alloc(dtap_pemit *e, size_t size, bool keep)
{
    syn_block **head = keep ? &e->arena : &e->tmp;
    size = (size + 15u) & ~(size_t)15u;
    syn_block *b = *head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 64 * 1024 ? size : 64 * 1024;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = *head;
        b->used = 0;
        b->cap = cap;
        *head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

typedef struct {
    syn_block *b;
    size_t used;
} syn_mark;

static syn_mark tmp_mark(const dtap_pemit *e) { return (syn_mark){e->tmp, e->tmp ? e->tmp->used : 0}; }

static void tmp_release(dtap_pemit *e, syn_mark m)
{
    while (e->tmp && e->tmp != m.b) {
        syn_block *n = e->tmp->next;
        free(e->tmp);
        e->tmp = n;
    }
    if (e->tmp) e->tmp->used = m.used;
}

static bool is_tmp(const dtap_pemit *e, const void *p)
{
    for (const syn_block *b = e->tmp; b; b = b->next)
        if ((const unsigned char *)p >= b->data && (const unsigned char *)p < b->data + b->cap) return true;
    return false;
}

static void free_blocks(syn_block **head)
{
    while (*head) {
        syn_block *n = (*head)->next;
        free(*head);
        *head = n;
    }
}

static dta_status nomem(dtap_pemit *e) { return dta_error_set(e->err, DTA_E_NOMEM, ENOMEM, "out of memory"); }

/* A synthetic node (op 0: never produced by the VM). */
static dtap_pnode *syn_node(dtap_pemit *e, dtap_pkind kind, bool keep)
{
    dtap_pnode *n = syn_alloc(e, sizeof *n, keep);
    if (n) n->kind = kind;
    return n;
}

dtap_pnode *dtap_pemit_node(dtap_pemit *e, dtap_pkind kind) { return syn_node(e, kind, false); }

dtap_pnode *dtap_pemit_tuple(dtap_pemit *e, size_t cap)
{
    dtap_pnode *n = dtap_pemit_node(e, DTAP_PK_TUPLE);
    if (!n) return NULL;
    n->seq.v = syn_alloc(e, (cap ? cap : 1) * sizeof *n->seq.v, false);
    if (!n->seq.v) return NULL;
    n->seq.cap = cap;
    return n;
}

void dtap_pemit_push(dtap_pnode *t, const dtap_pnode *x)
{
    if (t->seq.n < t->seq.cap) t->seq.v[t->seq.n++] = (dtap_pnode *)x;
}

dtap_pnode *dtap_pemit_global(dtap_pemit *e, const char *mod, const char *name)
{
    for (size_t i = 0; i < e->nglobals; i++)
        if (!strcmp(e->globals[i].mod, mod) && !strcmp(e->globals[i].name, name)) return e->globals[i].node;
    if (e->nglobals == e->capglobals) {
        size_t nc = e->capglobals ? e->capglobals * 2 : 16;
        iglobal *ng = realloc(e->globals, nc * sizeof *ng);
        if (!ng) return NULL;
        e->globals = ng;
        e->capglobals = nc;
    }
    dtap_pnode *g = syn_node(e, DTAP_PK_GLOBAL, true);
    if (!g) return NULL;
    g->s = (char *)mod; /* static strings */
    g->len = strlen(mod);
    g->name = (char *)name;
    g->allowed = true;
    e->globals[e->nglobals++] = (iglobal){mod, name, g};
    return g;
}

static dta_status out(dtap_pemit *e, const void *p, size_t n)
{
    if (n > DTA_MAX_WRITE_PICKLE - e->on)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl would exceed the cap of %llu bytes",
                             (unsigned long long)DTA_MAX_WRITE_PICKLE);
    if (e->on + n > e->ocap) {
        size_t nc = e->ocap ? e->ocap : 4096;
        while (nc < e->on + n) nc *= 2;
        unsigned char *no = realloc(e->o, nc);
        if (!no) return nomem(e);
        e->o = no;
        e->ocap = nc;
    }
    memcpy(e->o + e->on, p, n);
    e->on += n;
    return DTA_OK;
}

static dta_status out1(dtap_pemit *e, unsigned char c) { return out(e, &c, 1); }

static dta_status out_u32op(dtap_pemit *e, unsigned char op, uint32_t v)
{
    unsigned char b[5] = {op};
    dtap_put_le32(b + 1, v);
    return out(e, b, 5);
}

/* ---- memo ---- */

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)(x & (cap - 1));
}

static bool memo_find(const dtap_pemit *e, const dtap_pnode *n, uint32_t *idx)
{
    if (!e->mcap) return false;
    for (size_t h = ptr_hash(n, e->mcap);; h = (h + 1) & (e->mcap - 1)) {
        if (!e->mk[h]) return false;
        if (e->mk[h] == n) {
            *idx = e->mv[h];
            return true;
        }
    }
}

static dta_status put_index(dtap_pemit *e, uint32_t idx)
{
    if (idx < 256) {
        unsigned char b[2] = {DTAP_OP_BINPUT, (unsigned char)idx};
        return out(e, b, 2);
    }
    return out_u32op(e, DTAP_OP_LONG_BINPUT, idx);
}

static dta_status memo_put(dtap_pemit *e, const dtap_pnode *n)
{
    if (e->next_memo == UINT32_MAX)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: more than %u memoised objects", UINT32_MAX - 1);
    if (is_tmp(e, n)) /* written once: an index, no entry */
        return put_index(e, e->next_memo++);
    if ((e->mn + 1) * 4 > e->mcap * 3) { /* load at most 3/4: millions of objects */
        size_t nc = e->mcap ? e->mcap * 2 : 1024;
        const dtap_pnode **nk = calloc(nc, sizeof *nk);
        uint32_t *nv = malloc(nc * sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return nomem(e);
        }
        for (size_t i = 0; i < e->mcap; i++)
            if (e->mk[i]) {
                size_t h = ptr_hash(e->mk[i], nc);
                while (nk[h]) h = (h + 1) & (nc - 1);
                nk[h] = e->mk[i];
                nv[h] = e->mv[i];
            }
        free(e->mk);
        free(e->mv);
        e->mk = nk;
        e->mv = nv;
        e->mcap = nc;
    }
    size_t h = ptr_hash(n, e->mcap);
    while (e->mk[h]) h = (h + 1) & (e->mcap - 1);
    e->mk[h] = n;
    uint32_t idx = e->next_memo++;
    e->mv[h] = idx;
    e->mn++;
    return put_index(e, idx);
}

static dta_status memo_get(dtap_pemit *e, uint32_t idx)
{
    if (idx < 256) {
        unsigned char b[2] = {DTAP_OP_BINGET, (unsigned char)idx};
        return out(e, b, 2);
    }
    return out_u32op(e, DTAP_OP_LONG_BINGET, idx);
}

/* ---- emitting ---- */

static dta_status emit(dtap_pemit *e, const dtap_pnode *n);

static dta_status emit_int(dtap_pemit *e, int64_t v)
{
    unsigned char b[10];
    if (v >= 0 && v < 256) {
        b[0] = DTAP_OP_BININT1;
        b[1] = (unsigned char)v;
        return out(e, b, 2);
    }
    if (v >= 0 && v < 65536) {
        b[0] = DTAP_OP_BININT2;
        dtap_put_le16(b + 1, (uint16_t)v);
        return out(e, b, 3);
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = DTAP_OP_BININT;
        dtap_put_le32(b + 1, (uint32_t)v);
        return out(e, b, 5);
    }
    uint64_t u = (uint64_t)v;
    size_t k = 8;
    b[0] = DTAP_OP_LONG1;
    for (int i = 0; i < 8; i++) b[2 + i] = (unsigned char)(u >> (8 * i));
    while (k > 1 && ((b[1 + k] == 0 && !(b[k] & 0x80)) || (b[1 + k] == 0xff && (b[k] & 0x80)))) k--;
    b[1] = (unsigned char)k;
    return out(e, b, 2 + k);
}

static dta_status emit_unicode(dtap_pemit *e, const void *p, size_t n)
{
    if (n > UINT32_MAX) return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: string of %zu bytes", n);
    dta_status st = out_u32op(e, DTAP_OP_BINUNICODE, (uint32_t)n);
    return st ? st : out(e, p, n);
}

static size_t utf8_put(unsigned char *d, uint32_t c)
{
    if (c < 0x80) {
        d[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (unsigned char)(0xC0 | (c >> 6));
        d[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (c >> 12));
        d[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (c >> 18));
    d[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Latin-1 bytes (raw_unicode=false) or a protocol-0 raw-unicode-escape text -> UTF-8. */
static dta_status emit_latin1(dtap_pemit *e, const unsigned char *s, size_t n, bool raw_unicode)
{
    if (n > (SIZE_MAX - 1) / 4) return nomem(e);
    unsigned char *d = malloc(n * 4 + 1);
    if (!d) return nomem(e);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (raw_unicode && s[i] == '\\') {
            size_t j = i;
            while (j < n && s[j] == '\\') j++;
            size_t bs = j - i;
            unsigned w = j < n ? (s[j] == 'u' ? 4u : s[j] == 'U' ? 8u : 0u) : 0u;
            if (bs % 2 == 1 && w && n - j - 1 >= w) {
                uint32_t c = 0;
                bool ok = true;
                for (unsigned k = 0; k < w; k++) {
                    int h = hexval(s[j + 1 + k]);
                    if (h < 0) ok = false;
                    else c = (c << 4) | (uint32_t)h;
                }
                if (ok && c <= 0x10FFFF) {
                    for (size_t k = 0; k + 1 < bs; k++) d[o++] = '\\';
                    o += utf8_put(d + o, c);
                    i = j + 1 + w;
                    continue;
                }
                free(d);
                return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: bad \\u escape in a protocol-0 string");
            }
            for (size_t k = 0; k < bs; k++) d[o++] = '\\';
            i = j;
            continue;
        }
        o += utf8_put(d + o, s[i]);
        i++;
    }
    dta_status st = emit_unicode(e, d, o);
    free(d);
    return st;
}

/* bytes value: _codecs.encode(latin1 text, 'latin1'), not memoised */
static dta_status emit_bytes_value(dtap_pemit *e, const dtap_pnode *n)
{
    const dtap_pnode *g = dtap_pemit_global(e, "_codecs", "encode");
    if (!g) return nomem(e);
    dta_status st;
    if ((st = emit(e, g)) || (st = emit_latin1(e, (const unsigned char *)n->s, n->len, false)) ||
        (st = emit_unicode(e, "latin1", 6)) || (st = out1(e, DTAP_OP_TUPLE2)))
        return st;
    return out1(e, DTAP_OP_REDUCE);
}

static dta_status emit_global(dtap_pemit *e, const dtap_pnode *g)
{
    const char *m = g->s, *nm = g->name;
    if (strchr(m, '\n') || strchr(nm, '\n') || !*m || !*nm)
        return dta_error_set(e->err, DTA_E_UNSUPPORTED, 0, "data.pkl: global '%.64s.%.64s' cannot be written as GLOBAL",
                             m, nm);
    dta_status st;
    if ((st = out1(e, DTAP_OP_GLOBAL)) || (st = out(e, m, strlen(m))) || (st = out1(e, '\n')) || (st = out(e, nm, strlen(nm))))
        return st;
    return out1(e, '\n');
}

/* items as APPEND / MARK ... APPENDS batches of 1000 */
static dta_status emit_appends(dtap_pemit *e, const dtap_pvec *v)
{
    dta_status st;
    if (v->n == 1) return (st = emit(e, v->v[0])) ? st : out1(e, DTAP_OP_APPEND);
    for (size_t i = 0; i < v->n; i += 1000) {
        size_t end = v->n - i > 1000 ? i + 1000 : v->n;
        if ((st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t k = i; k < end; k++)
            if ((st = emit(e, v->v[k]))) return st;
        if ((st = out1(e, DTAP_OP_APPENDS))) return st;
    }
    return DTA_OK;
}

static dta_status emit_setitems(dtap_pemit *e, const dtap_pvec *v)
{
    dta_status st;
    size_t pairs = v->n / 2;
    if (pairs == 1) {
        if ((st = emit(e, v->v[0])) || (st = emit(e, v->v[1]))) return st;
        return out1(e, DTAP_OP_SETITEM);
    }
    for (size_t i = 0; i < pairs; i += 1000) {
        size_t end = pairs - i > 1000 ? i + 1000 : pairs;
        if ((st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t k = i; k < end; k++)
            if ((st = emit(e, v->v[2 * k])) || (st = emit(e, v->v[2 * k + 1]))) return st;
        if ((st = out1(e, DTAP_OP_SETITEMS))) return st;
    }
    return DTA_OK;
}

/* What was applied to an object after it was made: APPEND(S), SETITEM(S), BUILD. */
static dta_status emit_extras(dtap_pemit *e, const dtap_pnode *n)
{
    dta_status st;
    bool own_seq = n->kind == DTAP_PK_TUPLE || n->kind == DTAP_PK_LIST || n->kind == DTAP_PK_SET;
    if (!own_seq && n->seq.n && (st = emit_appends(e, &n->seq))) return st;
    if (n->kind != DTAP_PK_DICT && n->kv.n >= 2 && (st = emit_setitems(e, &n->kv))) return st;
    for (size_t i = 0; i < n->states.n; i++)
        if ((st = emit(e, n->states.v[i])) || (st = out1(e, DTAP_OP_BUILD))) return st;
    return DTA_OK;
}

static bool has_extras(const dtap_pnode *n)
{
    bool own_seq = n->kind == DTAP_PK_TUPLE || n->kind == DTAP_PK_LIST || n->kind == DTAP_PK_SET;
    return (!own_seq && n->seq.n) || (n->kind != DTAP_PK_DICT && n->kv.n >= 2) || n->states.n;
}

/* After the parts of an object made from them (tuple, call) were emitted: if emitting
 * them memoised the object itself (a recursive structure), drop the parts and fetch it. */
static dta_status finish_made(dtap_pemit *e, const dtap_pnode *n, unsigned char pop, size_t npops, bool *was)
{
    uint32_t idx;
    *was = memo_find(e, n, &idx);
    if (!*was) return DTA_OK;
    dta_status st = DTA_OK;
    for (size_t i = 0; i < npops && !st; i++) st = out1(e, pop);
    return st ? st : memo_get(e, idx);
}

/* A call fn(args) (REDUCE, NEWOBJ), which the call hook may rewrite. */
static dta_status emit_call(dtap_pemit *e, const dtap_pnode *n)
{
    dta_status st;
    bool was;
    const dtap_pnode *fn = n->fn, *args = n->args;
    if (e->hooks && e->hooks->call && (st = e->hooks->call(e->hooks->ctx, e, &fn, &args)))
        return st;
    if (!fn || !args) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: call without a callable");
    if ((st = emit(e, fn)) || (st = emit(e, args))) return st;
    if (n->kind == DTAP_PK_NEWOBJ && n->kwargs) {
        if ((st = emit(e, n->kwargs))) return st;
        if ((st = finish_made(e, n, DTAP_OP_POP, 3, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, DTAP_OP_NEWOBJ_EX))) return st;
    } else {
        if ((st = finish_made(e, n, DTAP_OP_POP, 2, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, n->kind == DTAP_PK_NEWOBJ ? DTAP_OP_NEWOBJ : DTAP_OP_REDUCE))) return st;
    }
    if ((st = memo_put(e, n))) return st;
    return emit_extras(e, n);
}

static dta_status emit_node(dtap_pemit *e, const dtap_pnode *n)
{
    dta_status st;
    bool was;
    unsigned char b[9];
    switch (n->kind) {
    case DTAP_PK_NONE:
        if ((st = out1(e, DTAP_OP_NONE))) return st;
        break;
    case DTAP_PK_BOOL:
        if ((st = out1(e, n->i ? DTAP_OP_NEWTRUE : DTAP_OP_NEWFALSE))) return st;
        break;
    case DTAP_PK_INT:
        if (!n->big) {
            if ((st = emit_int(e, n->i))) return st;
        } else if (n->len < 256) {
            b[0] = DTAP_OP_LONG1;
            b[1] = (unsigned char)n->len;
            if ((st = out(e, b, 2)) || (st = out(e, n->s, n->len))) return st;
        } else {
            if (n->len > INT32_MAX) return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: integer too long");
            if ((st = out_u32op(e, DTAP_OP_LONG4, (uint32_t)n->len)) || (st = out(e, n->s, n->len))) return st;
        }
        break;
    case DTAP_PK_FLOAT: {
        uint64_t u;
        memcpy(&u, &n->f, 8);
        b[0] = DTAP_OP_BINFLOAT;
        for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(u >> (56 - 8 * i));
        if ((st = out(e, b, 9))) return st;
        break;
    }
    case DTAP_PK_STR:
        if (n->op == DTAP_OP_UNICODE) st = emit_latin1(e, (const unsigned char *)n->s, n->len, true);
        else st = emit_unicode(e, n->s, n->len);
        if (st || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_BYTES:
        if (n->op == DTAP_OP_BYTEARRAY8) { /* bytearray */
            const dtap_pnode *g = dtap_pemit_global(e, "builtins", "bytearray");
            if (!g) return nomem(e);
            if ((st = emit(e, g)) || (st = emit_bytes_value(e, n)) || (st = out1(e, DTAP_OP_TUPLE1)) || (st = out1(e, DTAP_OP_REDUCE)))
                return st;
        } else if ((st = emit_bytes_value(e, n))) {
            return st;
        }
        if ((st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_GLOBAL:
        if ((st = emit_global(e, n)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    case DTAP_PK_TUPLE: {
        size_t k = n->seq.n;
        if (k == 0) {
            if ((st = out1(e, DTAP_OP_EMPTY_TUPLE))) return st;
            break;
        }
        if (k > 3 && (st = out1(e, DTAP_OP_MARK))) return st;
        for (size_t i = 0; i < k; i++)
            if ((st = emit(e, n->seq.v[i]))) return st;
        if ((st = k > 3 ? finish_made(e, n, DTAP_OP_POP_MARK, 1, &was) : finish_made(e, n, DTAP_OP_POP, k, &was)))
            return st;
        if (was) return DTA_OK;
        if ((st = out1(e, k > 3 ? DTAP_OP_TUPLE : (unsigned char)(DTAP_OP_TUPLE1 - 1 + k))) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_LIST:
        if ((st = out1(e, DTAP_OP_EMPTY_LIST)) || (st = memo_put(e, n))) return st;
        if (n->seq.n && (st = emit_appends(e, &n->seq))) return st;
        return emit_extras(e, n);
    case DTAP_PK_DICT:
        if ((st = out1(e, DTAP_OP_EMPTY_DICT)) || (st = memo_put(e, n))) return st;
        if (n->kv.n >= 2 && (st = emit_setitems(e, &n->kv))) return st;
        return emit_extras(e, n);
    case DTAP_PK_SET: {
        const dtap_pnode *g = dtap_pemit_global(e, "builtins", n->frozen ? "frozenset" : "set");
        if (!g) return nomem(e);
        if ((st = emit(e, g)) || (st = out1(e, DTAP_OP_EMPTY_LIST))) return st;
        if (n->seq.n && (st = emit_appends(e, &n->seq))) return st;
        if ((st = out1(e, DTAP_OP_TUPLE1)) || (st = finish_made(e, n, DTAP_OP_POP, 2, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, DTAP_OP_REDUCE)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_REDUCE:
    case DTAP_PK_NEWOBJ: {
        syn_mark mark = tmp_mark(e); /* the hook's nodes live while this call is written */
        st = emit_call(e, n);
        tmp_release(e, mark);
        return st;
    }
    case DTAP_PK_PERSID: {
        if (!n->args) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: persistent id without a value");
        if (e->hooks && e->hooks->persid && (st = e->hooks->persid(e->hooks->ctx, e, n))) return st;
        if ((st = emit(e, n->args))) return st;
        if ((st = finish_made(e, n, DTAP_OP_POP, 1, &was))) return st;
        if (was) return DTA_OK;
        if ((st = out1(e, DTAP_OP_BINPERSID)) || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    case DTAP_PK_OPAQUE:
        if (n->i < 0) {
            st = out1(e, DTAP_OP_NEXT_BUFFER);
        } else if (n->i < 256) {
            b[0] = DTAP_OP_EXT1;
            b[1] = (unsigned char)n->i;
            st = out(e, b, 2);
        } else if (n->i < 65536) {
            b[0] = DTAP_OP_EXT2;
            dtap_put_le16(b + 1, (uint16_t)n->i);
            st = out(e, b, 3);
        } else {
            st = out_u32op(e, DTAP_OP_EXT4, (uint32_t)n->i);
        }
        if (st || (st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    default:
        return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: unknown object kind %d", (int)n->kind);
    }
    /* scalars and the empty tuple: memoised only when something was applied to them */
    if (has_extras(n)) {
        if ((st = memo_put(e, n))) return st;
        return emit_extras(e, n);
    }
    return DTA_OK;
}

static dta_status emit(dtap_pemit *e, const dtap_pnode *n)
{
    if (!n) return dta_error_set(e->err, DTA_E_FORMAT, 0, "data.pkl: missing object");
    uint32_t idx;
    if (memo_find(e, n, &idx)) return memo_get(e, idx);
    if (e->depth >= DTA_MAX_WRITE_DEPTH)
        return dta_error_set(e->err, DTA_E_LIMIT, 0, "data.pkl: object nesting exceeds the cap of %u",
                             DTA_MAX_WRITE_DEPTH);
    e->depth++;
    dta_status st = emit_node(e, n);
    e->depth--;
    return st;
}

static void pemit_free(dtap_pemit *e)
{
    free(e->o);
    free(e->mk);
    free(e->mv);
    free_blocks(&e->arena);
    free_blocks(&e->tmp);
    free(e->globals);
}

dta_status dtap_pickle_emit(const dtap_pnode *root, const dtap_pemit_hooks *hooks,
                            unsigned char **out_bytes, size_t *out_len, dta_error *err)
{
    static const unsigned char head[2] = {DTAP_OP_PROTO, 2};
    dtap_pemit e;
    memset(&e, 0, sizeof e);
    e.hooks = hooks;
    e.err = err;
    *out_bytes = NULL;
    *out_len = 0;
    dta_status st;
    if ((st = out(&e, head, 2)) || (st = emit(&e, root)) || (st = out1(&e, DTAP_OP_STOP))) {
        pemit_free(&e);
        return st;
    }
    *out_bytes = e.o; /* the memo and the synthetic nodes go now */
    *out_len = e.on;
    e.o = NULL;
    pemit_free(&e);
    return DTA_OK;
}
