/* The torch object graph: walks a torch.save pickle graph (pickle.c builds it, it is never
 * executed) and adds every tensor it finds to a model, for the zip reader
 * (format_torchzip.c) and the legacy reader (format_torchlegacy.c); each supplies the
 * storage resolver of its container.
 *
 * The pickle is never executed (pickle.c). Names: nested containers are joined with '.';
 * list/tuple items and int keys by decimal index; other keys by a Python-like repr
 * (a class key prints as "<class 'module.name'>"). Objects' BUILD state is walked in
 * place: a dict state adds its keys directly, except nn.Module's own `_parameters`,
 * `_buffers` and `_modules`, which are skipped so a pickled module names its tensors as
 * its state_dict() would; any other state adds a "__state__" component (TorchScript's
 * packed params: `fc._packed_params.__state__.0`). Arguments of calls that are not
 * tensor rebuilds are walked as a tuple at the call's own path. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_build.h"
#include "src.h"
#include "torch_graph.h"
#include "util_sbuf.h"

/* ---- names ------------------------------------------------------------------------- */

/* Names are built here; they stop growing one byte past DTA_MAX_NAME_LEN (cut), so a
 * long key nested deep, or the repr of a key tuple holding itself many times, costs at
 * most that much (the model refuses a tensor whose name is that long). */
#define SB_MAX ((size_t)DTA_MAX_NAME_LEN + 1)


/* Decimal of a little-endian two's complement integer. */
static void sb_bigint(dtap_sbuf *b, const unsigned char *le, size_t n)
{
    if (n > 512) {
        dtap_sbuf_add(b, "<big int>");
        return;
    }
    unsigned char mag[512];
    bool neg = n && (le[n - 1] & 0x80);
    unsigned c = 1;
    for (size_t i = 0; i < n; i++) {
        if (neg) {
            unsigned t = (unsigned)(unsigned char)~le[i] + c;
            mag[i] = (unsigned char)t;
            c = t >> 8;
        } else {
            mag[i] = le[i];
        }
    }
    char dig[1300];
    size_t nd = 0, len = n;
    while (len && nd < sizeof dig) {
        unsigned rem = 0;
        for (size_t i = len; i-- > 0;) {
            unsigned cur = (rem << 8) | mag[i];
            mag[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
        }
        dig[nd++] = (char)('0' + rem);
        while (len && mag[len - 1] == 0) len--;
    }
    if (!nd) dig[nd++] = '0';
    if (neg) dtap_sbuf_add(b, "-");
    for (size_t i = nd; i-- > 0;) dtap_sbuf_addn(b, &dig[i], 1);
}

static void sb_float(dtap_sbuf *b, double f)
{
    char tmp[64];
    if (f != f) {
        dtap_sbuf_add(b, "nan");
        return;
    }
    if (f > 1.7976931348623157e308 || f < -1.7976931348623157e308) {
        dtap_sbuf_add(b, f > 0 ? "inf" : "-inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) { /* shortest text that round-trips, like repr() */
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    dtap_sbuf_add(b, tmp);
    if (!strpbrk(tmp, ".eninf")) dtap_sbuf_add(b, ".0");
}

static void sb_repr(dtap_sbuf *b, const dtap_pnode *k, bool quote, int depth)
{
    if (b->cut || b->oom) return;
    if (depth > 8) {
        dtap_sbuf_add(b, "...");
        return;
    }
    switch (k->kind) {
    case DTAP_PK_STR:
        if (quote) dtap_sbuf_add(b, "'");
        dtap_sbuf_addn(b, k->s, k->len);
        if (quote) dtap_sbuf_add(b, "'");
        return;
    case DTAP_PK_BYTES:
        dtap_sbuf_add(b, "b'");
        dtap_sbuf_addn(b, k->s, k->len);
        dtap_sbuf_add(b, "'");
        return;
    case DTAP_PK_INT:
        if (k->big) sb_bigint(b, (const unsigned char *)k->s, k->len);
        else {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%" PRId64, k->i);
            dtap_sbuf_add(b, tmp);
        }
        return;
    case DTAP_PK_BOOL: dtap_sbuf_add(b, k->i ? "True" : "False"); return;
    case DTAP_PK_NONE: dtap_sbuf_add(b, "None"); return;
    case DTAP_PK_FLOAT: sb_float(b, k->f); return;
    case DTAP_PK_GLOBAL:
        dtap_sbuf_add(b, "<class '");
        dtap_sbuf_add(b, k->s);
        dtap_sbuf_add(b, ".");
        dtap_sbuf_add(b, k->name);
        dtap_sbuf_add(b, "'>");
        return;
    case DTAP_PK_TUPLE:
    case DTAP_PK_LIST:
        dtap_sbuf_add(b, k->kind == DTAP_PK_TUPLE ? "(" : "[");
        for (size_t i = 0; i < k->seq.n && !b->cut; i++) {
            if (i) dtap_sbuf_add(b, ", ");
            sb_repr(b, k->seq.v[i], true, depth + 1);
        }
        if (k->kind == DTAP_PK_TUPLE && k->seq.n == 1) dtap_sbuf_add(b, ",");
        dtap_sbuf_add(b, k->kind == DTAP_PK_TUPLE ? ")" : "]");
        return;
    default: {
        const dtap_pnode *g = dtap_pnode_callee(k);
        if (g) {
            dtap_sbuf_add(b, "<");
            dtap_sbuf_add(b, g->s);
            dtap_sbuf_add(b, ".");
            dtap_sbuf_add(b, g->name);
            dtap_sbuf_add(b, " object>");
        } else {
            dtap_sbuf_add(b, "<object>");
        }
    }
    }
}

/* ---- graph helpers ----------------------------------------------------------------- */

static bool callee_is(const dtap_pnode *n, const char *module, const char *name)
{
    return dtap_pnode_is_global(dtap_pnode_callee(n), module, name);
}

static bool is_dict_class(const dtap_pnode *g)
{
    return dtap_pnode_is_global(g, "collections", "OrderedDict") ||
           dtap_pnode_is_global(g, "collections", "Counter") ||
           dtap_pnode_is_global(g, "collections", "defaultdict") ||
           dtap_pnode_is_global(g, "builtins", "dict");
}

/* A mapping whose items are in n->kv: a dict, or an OrderedDict()-style object. */
static bool is_mapping(const dtap_pnode *n)
{
    if (n->kind == DTAP_PK_DICT) return true;
    if (n->kind == DTAP_PK_REDUCE || n->kind == DTAP_PK_NEWOBJ)
        return is_dict_class(dtap_pnode_callee(n)) || n->kv.n > 0;
    return false;
}

dta_dtype dtap_torch_storage_dtype(const dtap_pnode *g, bool *untyped)
{
    *untyped = false;
    if (!g || g->kind != DTAP_PK_GLOBAL) return DTA_DTYPE_NONE;
    if (!strcmp(g->name, "UntypedStorage") &&
        (!strcmp(g->s, "torch.storage") || !strcmp(g->s, "torch"))) {
        *untyped = true;
        return DTA_U8;
    }
    if (strcmp(g->s, "torch") && strcmp(g->s, "torch.cuda")) return DTA_DTYPE_NONE;
    return dta_dtype_from_storage(g->name, strlen(g->name));
}

static dta_dtype dtype_global(const dtap_pnode *g)
{
    if (!g || g->kind != DTAP_PK_GLOBAL || strcmp(g->s, "torch")) return DTA_DTYPE_NONE;
    return dta_dtype_from_torch(g->name, strlen(g->name));
}

/* Size/stride: a tuple/list of ints, or torch.Size(tuple). */
static bool int_seq(const dtap_pnode *n, int64_t *out, int *rank, bool *too_long)
{
    *too_long = false;
    if (n && callee_is(n, "torch", "Size")) n = dtap_pnode_item(n->args, 0);
    if (!n || (n->kind != DTAP_PK_TUPLE && n->kind != DTAP_PK_LIST)) return false;
    if (n->seq.n > DTA_MAX_RANK) {
        *too_long = true;
        return false;
    }
    for (size_t i = 0; i < n->seq.n; i++)
        if (!dtap_pnode_int(n->seq.v[i], &out[i])) return false;
    *rank = (int)n->seq.n;
    return true;
}

/* ---- walker ------------------------------------------------------------------------ */

typedef struct {
    dta_model *m;
    size_t file;
    dtap_storage_fn resolve;
    void *ctx;
    dtap_sbuf name;
    const char *root;
    uint64_t visits;
    uint64_t budget; /* visits allowed: grows with the pickle's opcodes (walk_budget) */
    unsigned depth;
    dta_error *err;
} walker;

static dta_status walk(walker *w, const dtap_pnode *n);

static dta_status bad_tensor(walker *w, const char *fn, const char *what)
{
    return dta_error_set(w->err, DTA_E_FORMAT, 0, "tensor '%s': %s (%s)", w->name.p ? w->name.p : "",
                         what, fn);
}

static dta_status add_note_once(dta_model *m, dta_rule rule, const char *subject,
                                const char *msg, dta_error *err)
{
    for (size_t i = 0; i < m->nnotes; i++)
        if (m->notes[i].rule_id == rule && !strcmp(m->notes[i].subject, subject)) return DTA_OK;
    return dtap_model_add_note(m, rule, subject, msg, err);
}

/* Emits a tensor for fn(args) when fn is a torch rebuild function. *done tells whether
 * it was one. */
static dta_status rebuild(walker *w, const dtap_pnode *fn, const dtap_pnode *args, int nest, bool *done)
{
    *done = false;
    if (!fn || fn->kind != DTAP_PK_GLOBAL || !args || args->kind != DTAP_PK_TUPLE || nest > 4)
        return DTA_OK;
    const char *nm = fn->name;
    bool utils = !strcmp(fn->s, "torch._utils");
    if (utils && (!strcmp(nm, "_rebuild_parameter") || !strcmp(nm, "_rebuild_parameter_with_state"))) {
        const dtap_pnode *inner = dtap_pnode_item(args, 0);
        if (!inner || (inner->kind != DTAP_PK_REDUCE && inner->kind != DTAP_PK_NEWOBJ))
            return bad_tensor(w, nm, "data is not a tensor");
        dta_status st = rebuild(w, inner->fn, inner->args, nest + 1, done);
        if (st == DTA_OK && !*done) return bad_tensor(w, nm, "data is not a tensor");
        return st;
    }
    if (!strcmp(fn->s, "torch._tensor") && !strcmp(nm, "_rebuild_from_type_v2")) {
        dta_status st = rebuild(w, dtap_pnode_item(args, 0), dtap_pnode_item(args, 2), nest + 1, done);
        if (st == DTA_OK && !*done) return bad_tensor(w, nm, "not a tensor rebuild");
        return st;
    }
    if (!utils) return DTA_OK;

    int64_t size[DTA_MAX_RANK], stride[DTA_MAX_RANK];
    int rank = 0, srank = 0;
    bool too_long = false;
    uint64_t shape[DTA_MAX_RANK];
    if (!strcmp(nm, "_rebuild_meta_tensor_no_storage")) {
        dta_dtype dt = dtype_global(dtap_pnode_item(args, 0));
        if (dt == DTA_DTYPE_NONE) return bad_tensor(w, nm, "unknown dtype");
        if (!int_seq(dtap_pnode_item(args, 1), size, &rank, &too_long))
            return too_long ? dta_error_set(w->err, DTA_E_LIMIT, 0, "tensor '%s' has more than %d dims", w->name.p, DTA_MAX_RANK)
                            : bad_tensor(w, nm, "bad size");
        for (int k = 0; k < rank; k++) {
            if (size[k] < 0) return bad_tensor(w, nm, "negative size");
            shape[k] = (uint64_t)size[k];
        }
        bool have_stride = int_seq(dtap_pnode_item(args, 2), stride, &srank, &too_long) && srank == rank;
        dta_status st = dtap_model_add_tensor(w->m, w->name.p, w->name.n, w->root, dt, rank, shape,
                                              have_stride ? stride : NULL, 0, SIZE_MAX, w->file, w->err);
        if (st) return st;
    w->visits += w->name.n / 16; /* names cost memory too (walk's budget) */
        *done = true;
        return dtap_model_add_note(w->m, DTA_RULE_META_TENSOR, w->name.p,
                                   "tensor saved without storage (meta device): it holds no data", w->err);
    }
    bool v3 = !strcmp(nm, "_rebuild_tensor_v3");
    if (!v3 && strcmp(nm, "_rebuild_tensor_v2") && strcmp(nm, "_rebuild_tensor") &&
        strcmp(nm, "_rebuild_qtensor"))
        return DTA_OK;
    const dtap_pnode *ps = dtap_pnode_item(args, 0);
    if (!ps || ps->kind != DTAP_PK_PERSID) return bad_tensor(w, nm, "storage is not a persistent id");
    int64_t off;
    if (!dtap_pnode_int(dtap_pnode_item(args, 1), &off) || off < 0)
        return bad_tensor(w, nm, "bad storage offset");
    if (!int_seq(dtap_pnode_item(args, 2), size, &rank, &too_long))
        return too_long ? dta_error_set(w->err, DTA_E_LIMIT, 0, "tensor '%s' has more than %d dims", w->name.p, DTA_MAX_RANK)
                        : bad_tensor(w, nm, "bad size");
    if (!int_seq(dtap_pnode_item(args, 3), stride, &srank, &too_long) || srank != rank)
        return bad_tensor(w, nm, "bad stride");
    for (int k = 0; k < rank; k++) {
        if (size[k] < 0) return bad_tensor(w, nm, "negative size");
        if (stride[k] < 0) return bad_tensor(w, nm, "negative stride");
        shape[k] = (uint64_t)size[k];
    }
    dta_dtype dt = DTA_DTYPE_NONE;
    if (v3) {
        dt = dtype_global(dtap_pnode_item(args, 6));
        if (dt == DTA_DTYPE_NONE) return bad_tensor(w, nm, "unknown dtype");
    } else {
        const dtap_pnode *pid = ps->args;
        bool untyped;
        dt = dtap_torch_storage_dtype(dtap_pnode_item(pid, 1), &untyped);
        if (dt == DTA_DTYPE_NONE) return bad_tensor(w, nm, "unknown storage class");
    }
    size_t sidx;
    uint64_t extra = 0, soff;
    dta_status st = w->resolve(w->ctx, ps->args, dt, w->name.p, &sidx, &extra, w->err);
    if (st) return st;
    if (dtap_add_u64((uint64_t)off, extra, &soff)) return bad_tensor(w, nm, "storage offset overflows");
    st = dtap_model_add_tensor(w->m, w->name.p, w->name.n, w->root, dt, rank, shape, stride, soff,
                               sidx, w->file, w->err);
    if (st) return st;
    w->visits += w->name.n / 16; /* names cost memory too (walk's budget) */
    *done = true;
    return DTA_OK;
}

/* numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') + BUILD (ver, shape, dtype, fortran, data) */
static dta_status numpy_array(walker *w, const dtap_pnode *n, bool *done)
{
    *done = false;
    const dtap_pnode *g = dtap_pnode_callee(n);
    if (!g || strcmp(g->name, "_reconstruct") ||
        (strcmp(g->s, "numpy.core.multiarray") && strcmp(g->s, "numpy._core.multiarray")))
        return DTA_OK;
    *done = true;
    dtap_sbuf msg = {.max = SB_MAX};
    dtap_sbuf_add(&msg, "numpy array");
    const dtap_pnode *state = n->states.n ? n->states.v[0] : NULL;
    const dtap_pnode *shape = dtap_pnode_item(state, 1), *dt = dtap_pnode_item(state, 2);
    if (dt && callee_is(dt, "numpy", "dtype")) {
        const dtap_pnode *code = dtap_pnode_item(dt->args, 0);
        const dtap_pnode *bo = dt->states.n ? dtap_pnode_item(dt->states.v[0], 1) : NULL;
        dtap_sbuf_add(&msg, " ");
        if (bo && bo->kind == DTAP_PK_STR && bo->len == 1 && bo->s[0] != '|') dtap_sbuf_addn(&msg, bo->s, 1);
        if (code && code->kind == DTAP_PK_STR) dtap_sbuf_addn(&msg, code->s, code->len > 16 ? 16 : code->len);
    }
    if (shape) {
        dtap_sbuf_add(&msg, " ");
        sb_repr(&msg, shape, false, 0);
    }
    dtap_sbuf_add(&msg, " inside the pickle (not a torch tensor; numpy globals need weights_only=False)");
    dta_status st = msg.oom ? dta_error_set(w->err, DTA_E_NOMEM, 0, "out of memory")
                            : dtap_model_add_note(w->m, DTA_RULE_NUMPY_ARRAY, w->name.p ? w->name.p : "",
                                                  msg.p, w->err);
    free(msg.p);
    return st;
}

static dta_status walk_child(walker *w, const char *comp, size_t clen, const dtap_pnode *child)
{
    size_t save = w->name.n;
    if (save) dtap_sbuf_add(&w->name, ".");
    dtap_sbuf_addn(&w->name, comp, clen);
    if (w->name.oom) return dta_error_set(w->err, DTA_E_NOMEM, 0, "out of memory");
    dta_status st = walk(w, child);
    w->name.n = save;
    w->name.cut = false; /* save <= SB_MAX - 1: it was not cut */
    if (w->name.p) w->name.p[save] = 0;
    return st;
}

static dta_status walk_keyed(walker *w, const dtap_pnode *key, const dtap_pnode *val, bool skip_module_attrs)
{
    if (key->kind == DTAP_PK_STR) {
        if (skip_module_attrs && (dtap_pnode_is_str(key, "_parameters") || dtap_pnode_is_str(key, "_buffers") ||
                                  dtap_pnode_is_str(key, "_modules")))
            return walk(w, val);
        return walk_child(w, key->s, key->len, val);
    }
    dtap_sbuf k = {.max = SB_MAX};
    sb_repr(&k, key, false, 0);
    if (k.oom) {
        free(k.p);
        return dta_error_set(w->err, DTA_E_NOMEM, 0, "out of memory");
    }
    dta_status st = walk_child(w, k.p ? k.p : "", k.n, val);
    free(k.p);
    return st;
}

static dta_status walk_seq(walker *w, const dtap_pvec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        char idx[24];
        int l = snprintf(idx, sizeof idx, "%zu", i);
        dta_status st = walk_child(w, idx, (size_t)l, v->v[i]);
        if (st) return st;
    }
    return DTA_OK;
}

static dta_status walk_kv(walker *w, const dtap_pvec *kv, bool skip_module_attrs)
{
    for (size_t i = 0; i + 1 < kv->n; i += 2) {
        dta_status st = walk_keyed(w, kv->v[i], kv->v[i + 1], skip_module_attrs);
        if (st) return st;
    }
    return DTA_OK;
}

static dta_status walk(walker *w, const dtap_pnode *n)
{
    if (!n) return DTA_OK;
    if (++w->visits > w->budget)
        return dta_error_set(w->err, DTA_E_LIMIT, 0,
                             "pickle: walking its object graph takes more than %llu steps (%u per opcode "
                             "plus %u, at most %u): shared sub-objects nested to blow up (\"billion "
                             "laughs\")?",
                             (unsigned long long)w->budget, DTA_MAX_TORCH_WORK_PER_OP, DTA_MAX_TORCH_WORK_FREE,
                             DTA_MAX_TORCH_VISITS);
    if (n->visiting) return DTA_OK; /* a cycle: already on the path */
    dta_status st = DTA_OK;
    bool done = false;
    if (n->kind == DTAP_PK_REDUCE || n->kind == DTAP_PK_NEWOBJ) {
        if ((st = rebuild(w, n->fn, n->args, 0, &done)) || done) return st;
        if ((st = numpy_array(w, n, &done)) || done) return st;
    }
    switch (n->kind) {
    case DTAP_PK_TUPLE: case DTAP_PK_LIST: case DTAP_PK_SET: case DTAP_PK_DICT:
    case DTAP_PK_REDUCE: case DTAP_PK_NEWOBJ:
        break;
    default:
        return DTA_OK;
    }
    if (w->depth >= DTA_MAX_TORCH_DEPTH)
        return dta_error_set(w->err, DTA_E_LIMIT, 0, "pickle: object nesting exceeds the cap of %u",
                             DTA_MAX_TORCH_DEPTH);
    w->depth++;
    ((dtap_pnode *)n)->visiting = true;
    if (n->kind == DTAP_PK_REDUCE || n->kind == DTAP_PK_NEWOBJ) {
        const dtap_pnode *a0 = dtap_pnode_item(n->args, 0);
        if (is_dict_class(dtap_pnode_callee(n)) && a0 && (a0->kind == DTAP_PK_LIST || a0->kind == DTAP_PK_TUPLE)) {
            /* OrderedDict([(k, v), ...]) */
            for (size_t i = 0; !st && i < a0->seq.n; i++) {
                const dtap_pnode *pr = a0->seq.v[i];
                const dtap_pnode *k = dtap_pnode_item(pr, 0), *v = dtap_pnode_item(pr, 1);
                if (k && v) st = walk_keyed(w, k, v, false);
            }
        } else if (!is_dict_class(dtap_pnode_callee(n)) && n->args) {
            /* arguments of other calls: tensors can hide there too */
            if (n->args->kind == DTAP_PK_TUPLE) st = walk_seq(w, &n->args->seq);
            else st = walk(w, n->args);
        }
    }
    if (!st) st = walk_seq(w, &n->seq);
    if (!st) st = walk_kv(w, &n->kv, false);
    for (size_t i = 0; !st && i < n->states.n; i++) {
        const dtap_pnode *s = n->states.v[i];
        if (is_mapping(s)) {
            st = walk_kv(w, &s->kv, true);
        } else if (s->kind == DTAP_PK_TUPLE && s->seq.n == 2 && is_mapping(s->seq.v[1]) &&
                   (s->seq.v[0]->kind == DTAP_PK_NONE || is_mapping(s->seq.v[0]))) {
            /* (dict, slots) state of classes with __slots__ */
            if (is_mapping(s->seq.v[0])) st = walk_kv(w, &s->seq.v[0]->kv, true);
            if (!st) st = walk_kv(w, &s->seq.v[1]->kv, true);
        } else if (s->kind != DTAP_PK_NONE) {
            st = walk_child(w, "__state__", 9, s);
        }
    }
    ((dtap_pnode *)n)->visiting = false;
    w->depth--;
    return st;
}

/* Does n hold a tensor? (used to pick roots; visits bounded like walk) */
static bool holds_tensor(walker *w, const dtap_pnode *n, unsigned depth)
{
    if (!n || n->visiting || depth > DTA_MAX_TORCH_DEPTH || ++w->visits > w->budget) return false;
    const dtap_pnode *g = dtap_pnode_callee(n);
    if (g && (!strcmp(g->s, "torch._utils") || !strcmp(g->s, "torch._tensor")) &&
        !strncmp(g->name, "_rebuild_", 9))
        return true;
    bool r = false;
    ((dtap_pnode *)n)->visiting = true;
    for (size_t i = 0; !r && i < n->seq.n; i++) r = holds_tensor(w, n->seq.v[i], depth + 1);
    for (size_t i = 1; !r && i < n->kv.n; i += 2) r = holds_tensor(w, n->kv.v[i], depth + 1);
    for (size_t i = 0; !r && i < n->states.n; i++) r = holds_tensor(w, n->states.v[i], depth + 1);
    if (!r && n->args && (n->kind == DTAP_PK_REDUCE || n->kind == DTAP_PK_NEWOBJ))
        r = holds_tensor(w, n->args, depth + 1);
    ((dtap_pnode *)n)->visiting = false;
    return r;
}

static bool is_tensor_node(const dtap_pnode *n)
{
    const dtap_pnode *g = dtap_pnode_callee(n);
    return g && (!strcmp(g->s, "torch._utils") || !strcmp(g->s, "torch._tensor")) &&
           !strncmp(g->name, "_rebuild_", 9);
}

/* A value that makes the top-level dict a training checkpoint: a mapping/object with
 * tensors, or a list/tuple of such (Lightning's optimizer_states). */
static bool is_sub_state(walker *w, const dtap_pnode *v, unsigned depth)
{
    if (is_tensor_node(v)) return false;
    if (v->kind == DTAP_PK_LIST || v->kind == DTAP_PK_TUPLE) {
        /* bounded like walk: a list can hold itself (through a tuple) in a hostile file */
        if (v->visiting || depth > DTA_MAX_TORCH_DEPTH || ++w->visits > w->budget) return false;
        bool r = false;
        ((dtap_pnode *)v)->visiting = true;
        for (size_t i = 0; !r && i < v->seq.n; i++) r = is_sub_state(w, v->seq.v[i], depth + 1);
        ((dtap_pnode *)v)->visiting = false;
        return r;
    }
    if (v->kind == DTAP_PK_DICT || v->kind == DTAP_PK_REDUCE || v->kind == DTAP_PK_NEWOBJ)
        return holds_tensor(w, v, 0);
    return false;
}

dta_status dtap_torch_walk(const dtap_pickle *pk, dta_model *m, size_t file,
                           const char *name_prefix, dtap_storage_fn resolve, void *ctx,
                           dta_error *err)
{
    walker w;
    memset(&w, 0, sizeof w);
    w.name.max = SB_MAX;
    w.m = m;
    w.file = file;
    w.resolve = resolve;
    w.ctx = ctx;
    w.err = err;
    w.root = "";
    /* Work is capped by what the stream paid for: a tree of N opcodes has fewer than N
     * edges, so walking it takes fewer than N visits; only sharing (memo references of
     * containers inside containers) multiplies paths, 2^k from k nested lists ("billion
     * laughs"). Each tensor added also costs its name bytes / 16. */
    uint64_t ops = dtap_pickle_ops(pk);
    w.budget = ops > (DTA_MAX_TORCH_VISITS - DTA_MAX_TORCH_WORK_FREE) / DTA_MAX_TORCH_WORK_PER_OP
                   ? DTA_MAX_TORCH_VISITS
                   : ops * DTA_MAX_TORCH_WORK_PER_OP + DTA_MAX_TORCH_WORK_FREE;
    const dtap_pnode *top = dtap_pickle_root(pk);
    dta_status st = DTA_OK;
    if (name_prefix && *name_prefix) dtap_sbuf_add(&w.name, name_prefix);
    else dtap_sbuf_add(&w.name, "");
    if (w.name.oom) return dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");

    bool split = false;
    if (top && is_mapping(top) && !is_tensor_node(top)) {
        for (size_t i = 1; !split && i < top->kv.n; i += 2) split = is_sub_state(&w, top->kv.v[i], 0);
        w.visits = 0;
    }
    if (!split) {
        st = walk(&w, top);
    } else {
        /* training checkpoint: each top-level key holding tensors is its own root */
        for (size_t i = 0; !st && i + 1 < top->kv.n; i += 2) {
            dtap_sbuf r = {.max = SB_MAX};
            sb_repr(&r, top->kv.v[i], false, 0);
            if (r.oom || !r.p) {
                free(r.p);
                st = dta_error_set(err, DTA_E_NOMEM, 0, "out of memory");
                break;
            }
            w.root = r.p;
            st = walk_keyed(&w, top->kv.v[i], top->kv.v[i + 1], false);
            w.root = "";
            free(r.p);
        }
    }
    free(w.name.p);
    return st;
}

dta_status dtap_torch_unsafe_notes(const dtap_pickle *pk, dta_model *m, dta_error *err)
{
    for (size_t i = 0; i < dtap_pickle_unsafe_count(pk); i++) {
        const char *g = dtap_pickle_unsafe(pk, i);
        char msg[600];
        snprintf(msg, sizeof msg,
                 "the pickle imports or calls '%s', which is outside torch's weights_only "
                 "allowlist; torch.load(weights_only=False) would run it (dtaudit did not)", g);
        dta_status st = add_note_once(m, DTA_RULE_UNSAFE_PICKLE, g, msg, err);
        if (st) return st;
    }
    return DTA_OK;
}
