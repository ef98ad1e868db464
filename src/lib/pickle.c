/* Symbolic pickle VM (protocols 0-5).
 *
 * Stream layout: a sequence of one-byte opcodes, each followed by its inline argument
 * (fixed-width little-endian integers, length-prefixed strings, or '\n'-terminated text
 * lines for the protocol-0 opcodes), ending with STOP ('.'). Protocol 2 opens with
 * PROTO (0x80, version byte); protocol 4+ may wrap opcodes in FRAMEs (0x95, u64 length),
 * which are transparent. BINFLOAT is big-endian. See Python's Lib/pickletools.py for the
 * opcode table; docs/formats.md 2.6 and 2.9 for what torch writes and accepts.
 *
 * Nothing is executed: GLOBAL yields a (module, name) node, REDUCE/NEWOBJ/INST/OBJ yield
 * call nodes, BUILD attaches its state to the object. The memo stores node pointers, so
 * a container mutated after BINPUT shows its items through later BINGETs. Globals outside
 * torch's weights_only allowlist are recorded as unsafe. Every length and count is
 * checked against the input and a named cap. */
#include "pickle.h"
#include "pickle_opcodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/dtype.h"
#include "util_strmap.h"

/* ---- arena ------------------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk;

#define ARENA_CHUNK (256u * 1024u)

struct dtap_pickle {
    chunk *chunks;
    dtap_pnode *root;
    int proto;
    char **unsafe;      /* distinct unsafe names, first-use order (malloc'd) */
    size_t nunsafe, capunsafe;
    dtap_strmap uset;   /* unsafe as a set (borrowed pointers) */
    dtap_pnode **persids; /* PERSID nodes in stream order (malloc'd) */
    size_t npersids, cappersids;
    uint64_t ops;         /* opcodes executed */
};

static void *arena_alloc(dtap_pickle *pk, size_t size)
{
    size = (size + 15u) & ~(size_t)15u;
    if (size == 0) size = 16;
    chunk *c = pk->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof(chunk)) return NULL;
        chunk *nc = malloc(sizeof(chunk) + cap);
        if (!nc) return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (c && size > ARENA_CHUNK) {
            /* A big one-off block goes behind the current chunk so its free space stays usable. */
            nc->next = c->next;
            c->next = nc;
            nc->used = size;
            return nc->data;
        }
        nc->next = c;
        pk->chunks = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void dtap_pickle_free(dtap_pickle *p)
{
    if (!p) return;
    chunk *c = p->chunks;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    for (size_t i = 0; i < p->nunsafe; i++) free(p->unsafe[i]);
    free(p->unsafe);
    dtap_strmap_free(&p->uset);
    free(p->persids);
    free(p);
}

/* ---- VM state ---------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t n, pos, op_at;
    unsigned char op;
    dtap_pickle *pk;
    bool torchscript;
    dtap_pnode **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    dtap_pnode **memo;
    size_t memo_cap, memo_count;
    uint64_t nodes, ops;
    dta_error *err;
} vm;

static dta_status fmt_err(vm *v, const char *what)
{
    return dta_error_set(v->err, DTA_E_FORMAT, 0, "pickle: %s (opcode 0x%02x at offset %zu)",
                         what, v->op, v->op_at);
}

static dta_status nomem(vm *v)
{
    return dta_error_set(v->err, DTA_E_NOMEM, 0, "pickle: out of memory");
}

static dta_status limit_err(vm *v, const char *what, uint64_t cap)
{
    return dta_error_set(v->err, DTA_E_LIMIT, 0,
                         "pickle: %s exceeds the cap of %llu (offset %zu)", what,
                         (unsigned long long)cap, v->op_at);
}

static dtap_pnode *new_node(vm *v, dtap_pkind kind, dta_status *st)
{
    if (++v->nodes > DTA_MAX_PICKLE_NODES) {
        *st = limit_err(v, "object count", DTA_MAX_PICKLE_NODES);
        return NULL;
    }
    dtap_pnode *n = arena_alloc(v->pk, sizeof(*n));
    if (!n) {
        *st = nomem(v);
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->op = v->op;
    *st = DTA_OK;
    return n;
}

static dta_status vec_push(vm *v, dtap_pvec *vec, dtap_pnode *x)
{
    if (vec->n == vec->cap) {
        if (vec->cap >= DTA_MAX_PICKLE_CONTAINER)
            return limit_err(v, "container size", DTA_MAX_PICKLE_CONTAINER);
        size_t nc = vec->cap ? vec->cap * 2 : 4;
        if (nc > DTA_MAX_PICKLE_CONTAINER) nc = DTA_MAX_PICKLE_CONTAINER;
        dtap_pnode **nv = arena_alloc(v->pk, nc * sizeof(*nv));
        if (!nv) return nomem(v);
        if (vec->n) memcpy(nv, vec->v, vec->n * sizeof(*nv));
        vec->v = nv;
        vec->cap = nc;
    }
    vec->v[vec->n++] = x;
    return DTA_OK;
}

static char *arena_strdup(vm *v, const void *s, size_t len)
{
    if (len >= SIZE_MAX) return NULL;
    char *d = arena_alloc(v->pk, len + 1);
    if (!d) return NULL;
    if (len) memcpy(d, s, len);
    d[len] = 0;
    return d;
}

/* ---- stack ------------------------------------------------------------------------- */

static size_t frame_base(const vm *v) { return v->nmarks ? v->marks[v->nmarks - 1] : 0; }

static dta_status push(vm *v, dtap_pnode *x)
{
    if (v->sp == v->scap) {
        if (v->scap >= DTA_MAX_PICKLE_STACK) return limit_err(v, "stack depth", DTA_MAX_PICKLE_STACK);
        size_t nc = v->scap ? v->scap * 2 : 64;
        if (nc > DTA_MAX_PICKLE_STACK) nc = DTA_MAX_PICKLE_STACK;
        dtap_pnode **ns = realloc(v->stack, nc * sizeof(*ns));
        if (!ns) return nomem(v);
        v->stack = ns;
        v->scap = nc;
    }
    v->stack[v->sp++] = x;
    return DTA_OK;
}

static dta_status pop(vm *v, dtap_pnode **x)
{
    if (v->sp <= frame_base(v)) return fmt_err(v, "stack underflow");
    *x = v->stack[--v->sp];
    return DTA_OK;
}

static dta_status top(vm *v, dtap_pnode **x)
{
    if (v->sp <= frame_base(v)) return fmt_err(v, "stack underflow");
    *x = v->stack[v->sp - 1];
    return DTA_OK;
}

/* Pops the topmost MARK; items above it are stack[*from .. sp). The caller drops them. */
static dta_status pop_mark(vm *v, size_t *from)
{
    if (!v->nmarks) return fmt_err(v, "no MARK on the stack");
    *from = v->marks[--v->nmarks];
    return DTA_OK;
}

/* ---- input ------------------------------------------------------------------------- */

static dta_status need(vm *v, size_t k)
{
    if (k > v->n - v->pos) return fmt_err(v, "truncated");
    return DTA_OK;
}

static dta_status rd_bytes(vm *v, size_t k, const unsigned char **out)
{
    dta_status st = need(v, k);
    if (st) return st;
    *out = v->p + v->pos;
    v->pos += k;
    return DTA_OK;
}

/* A protocol-0 text argument up to '\n' (excluded); *len without the newline. */
static dta_status rd_line(vm *v, const char **line, size_t *len)
{
    const unsigned char *s = v->p + v->pos;
    const unsigned char *nl = memchr(s, '\n', v->n - v->pos);
    if (!nl) return fmt_err(v, "unterminated text argument");
    *len = (size_t)(nl - s);
    if (*len > DTA_MAX_PICKLE_STRING) return limit_err(v, "string length", DTA_MAX_PICKLE_STRING);
    *line = (const char *)s;
    v->pos += *len + 1;
    return DTA_OK;
}

/* ---- unsafe globals ---------------------------------------------------------------- */

static dta_status note_unsafe(vm *v, const char *a, const char *b)
{
    dtap_pickle *pk = v->pk;
    char buf[512];
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    if (la > 200) la = 200;
    if (lb > 200) lb = 200;
    memcpy(buf, a, la);
    size_t o = la;
    if (b) {
        buf[o++] = '.';
        memcpy(buf + o, b, lb);
        o += lb;
    }
    buf[o] = 0;
    if (dtap_strmap_get(&pk->uset, buf, o) != SIZE_MAX) return DTA_OK;
    if (pk->nunsafe >= DTA_MAX_PICKLE_UNSAFE) return DTA_OK; /* enough to flag the file */
    if (pk->nunsafe == pk->capunsafe) {
        size_t nc = pk->capunsafe ? pk->capunsafe * 2 : 8;
        char **nu = realloc(pk->unsafe, nc * sizeof(*nu));
        if (!nu) return nomem(v);
        pk->unsafe = nu;
        pk->capunsafe = nc;
    }
    char *d = malloc(o + 1);
    if (!d) return nomem(v);
    memcpy(d, buf, o + 1);
    if (dtap_strmap_put(&pk->uset, d, o, pk->nunsafe) == SIZE_MAX) {
        free(d);
        return nomem(v);
    }
    pk->unsafe[pk->nunsafe++] = d;
    return DTA_OK;
}

/* ---- allowlist (torch/_weights_only_unpickler.py, docs/formats.md 2.9) ------------------- */

static const char *const allowed_plain[] = {
    "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device",
    "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.complex",
    "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.per_tensor_affine", "torch.per_channel_affine", "torch.per_tensor_symmetric",
    "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
    NULL
};

static const char *const rebuild_fns[] = {
    "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor",
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_nested_tensor", NULL
};

/* torch.<XStorage> or torch.<XTensor> (also torch.cuda.*) for a known dtype. */
static bool legacy_class(const char *name)
{
    size_t n = strlen(name);
    char buf[64];
    if (n + 2 > sizeof(buf)) return false; /* "XTensor" -> "XStorage" grows by 1, plus NUL */
    if (n > 7 && !strcmp(name + n - 7, "Storage"))
        return dta_dtype_from_storage(name, n) != DTA_DTYPE_NONE;
    if (n > 6 && !strcmp(name + n - 6, "Tensor")) {
        memcpy(buf, name, n - 6);
        memcpy(buf + n - 6, "Storage", 8);
        return dta_dtype_from_storage(buf, n + 1) != DTA_DTYPE_NONE;
    }
    return false;
}

bool dtap_pickle_global_allowed(const char *module, const char *name, bool torchscript)
{
    char full[512];
    size_t lm = strlen(module), ln = strlen(name);
    if (lm + ln + 2 > sizeof(full)) return false;
    memcpy(full, module, lm);
    full[lm] = '.';
    memcpy(full + lm + 1, name, ln + 1);
    for (const char *const *a = allowed_plain; *a; a++)
        if (!strcmp(full, *a)) return true;
    if (!strcmp(module, "torch._utils"))
        for (const char *const *a = rebuild_fns; *a; a++)
            if (!strcmp(name, *a)) return true;
    if (!strcmp(module, "torch") || !strcmp(module, "torch.cuda")) {
        if (legacy_class(name)) return true;
        if (!strcmp(module, "torch") && dta_dtype_from_torch(name, ln) != DTA_DTYPE_NONE)
            return true;
        /* torch.uint1..7 / int1..7 sub-byte dtypes */
        if (!strcmp(module, "torch") &&
            ((ln == 5 && !strncmp(name, "uint", 4)) || (ln == 4 && !strncmp(name, "int", 3))) &&
            name[ln - 1] >= '1' && name[ln - 1] <= '7')
            return true;
    }
    if (torchscript) {
        if (!strncmp(module, "__torch__", 9) && (module[9] == 0 || module[9] == '.')) return true;
        if (!strcmp(module, "torch.jit._pickle")) return true;
    }
    return false;
}

/* Python 2 names that fix_imports writes (Lib/_compat_pickle.py, the common subset). */
static void map_py2(const char **module, const char **name)
{
    static const char *const mods[][2] = {
        {"__builtin__", "builtins"}, {"copy_reg", "copyreg"}, {"UserDict", "collections"},
        {"cPickle", "pickle"}, {"exceptions", "builtins"}, {"Queue", "queue"},
        {"repr", "reprlib"}, {"_abcoll", "collections.abc"}, {NULL, NULL}
    };
    static const char *const names[][4] = {
        {"__builtin__", "xrange", "builtins", "range"},
        {"__builtin__", "unicode", "builtins", "str"},
        {"__builtin__", "basestring", "builtins", "str"},
        {"__builtin__", "long", "builtins", "int"},
        {"__builtin__", "reduce", "functools", "reduce"},
        {"__builtin__", "intern", "sys", "intern"},
        {"itertools", "izip", "builtins", "zip"},
        {"itertools", "imap", "builtins", "map"},
        {NULL, NULL, NULL, NULL}
    };
    for (size_t i = 0; names[i][0]; i++)
        if (!strcmp(*module, names[i][0]) && !strcmp(*name, names[i][1])) {
            *module = names[i][2];
            *name = names[i][3];
            return;
        }
    for (size_t i = 0; mods[i][0]; i++)
        if (!strcmp(*module, mods[i][0])) {
            *module = mods[i][1];
            return;
        }
}

static dta_status make_global(vm *v, const char *m, size_t ml, const char *nm, size_t nl,
                              dtap_pnode **out)
{
    dta_status st;
    dtap_pnode *g = new_node(v, DTAP_PK_GLOBAL, &st);
    if (!g) return st;
    char *ms = arena_strdup(v, m, ml), *ns = arena_strdup(v, nm, nl);
    if (!ms || !ns) return nomem(v);
    const char *mm = ms, *nn = ns;
    map_py2(&mm, &nn);
    g->s = (char *)mm; /* mapped names are static strings or arena copies: never freed */
    g->len = strlen(mm);
    g->name = (char *)nn;
    g->allowed = dtap_pickle_global_allowed(mm, nn, v->torchscript);
    if (!g->allowed) {
        st = note_unsafe(v, mm, nn);
        if (st) return st;
    }
    *out = g;
    return DTA_OK;
}

/* ---- integers ---------------------------------------------------------------------- */

/* n little-endian two's complement bytes; fits int64 when n <= 8 after trimming. */
static dta_status make_long(vm *v, const unsigned char *b, size_t n, dtap_pnode **out)
{
    dta_status st;
    dtap_pnode *x = new_node(v, DTAP_PK_INT, &st);
    if (!x) return st;
    /* trim redundant sign-extension bytes */
    size_t m = n;
    while (m > 1 && ((b[m - 1] == 0x00 && !(b[m - 2] & 0x80)) ||
                     (b[m - 1] == 0xff && (b[m - 2] & 0x80))))
        m--;
    if (m <= 8) {
        uint64_t u = 0;
        for (size_t i = 0; i < m; i++) u |= (uint64_t)b[i] << (8 * i);
        if (m && m < 8 && (b[m - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * m);
        x->i = (int64_t)u; /* implementation-defined conversion; two's complement on our targets */
    } else {
        x->big = true;
        x->s = arena_strdup(v, b, n);
        if (!x->s) return nomem(v);
        x->len = n;
        x->i = (b[n - 1] & 0x80) ? INT64_MIN : INT64_MAX; /* saturated, for range checks */
    }
    *out = x;
    return DTA_OK;
}

/* Decimal text (protocol 0 INT/LONG) -> node; big values go through LE bytes. */
static dta_status make_decimal(vm *v, const char *s, size_t n, dtap_pnode **out)
{
    while (n && (s[n - 1] == 'L' || s[n - 1] == ' ' || s[n - 1] == '\r')) n--;
    while (n && *s == ' ') s++, n--;
    bool neg = false;
    if (n && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
        n--;
    }
    if (!n) return fmt_err(v, "bad integer literal");
    if (n > 4096) return limit_err(v, "integer literal digits", 4096);
    unsigned char mag[1712] = {0}; /* 4096 digits < 13607 bits */
    size_t used = 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return fmt_err(v, "bad integer literal");
        unsigned carry = (unsigned)(s[i] - '0');
        for (size_t k = 0; k < used; k++) {
            unsigned t = mag[k] * 10u + carry;
            mag[k] = (unsigned char)(t & 0xff);
            carry = t >> 8;
        }
        if (carry) mag[used++] = (unsigned char)carry;
    }
    mag[used++] = 0; /* room for the sign */
    if (neg) {
        unsigned c = 1;
        for (size_t k = 0; k < used; k++) {
            unsigned t = (unsigned)(unsigned char)~mag[k] + c;
            mag[k] = (unsigned char)t;
            c = t >> 8;
        }
    }
    return make_long(v, mag, used, out);
}

/* ---- strings ----------------------------------------------------------------------- */

static dta_status make_str(vm *v, dtap_pkind kind, const void *s, size_t n, dtap_pnode **out)
{
    if (n > DTA_MAX_PICKLE_STRING) return limit_err(v, "string length", DTA_MAX_PICKLE_STRING);
    dta_status st;
    dtap_pnode *x = new_node(v, kind, &st);
    if (!x) return st;
    x->s = arena_strdup(v, s, n);
    if (!x->s) return nomem(v);
    x->len = n;
    *out = x;
    return DTA_OK;
}

/* STRING 'S': a quoted Python literal; common escapes decoded. */
static dta_status make_quoted(vm *v, const char *s, size_t n, dtap_pnode **out)
{
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return fmt_err(v, "STRING argument is not quoted");
    s++;
    n -= 2;
    char *tmp = malloc(n + 1);
    if (!tmp) return nomem(v);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '0': c = 0; break;
            case 'x':
                if (i + 2 < n + 0 && i + 2 <= n - 1) {
                    unsigned val = 0;
                    bool ok = true;
                    for (int k = 1; k <= 2; k++) {
                        char h = s[i + k];
                        val <<= 4;
                        if (h >= '0' && h <= '9') val |= (unsigned)(h - '0');
                        else if (h >= 'a' && h <= 'f') val |= (unsigned)(h - 'a' + 10);
                        else if (h >= 'A' && h <= 'F') val |= (unsigned)(h - 'A' + 10);
                        else ok = false;
                    }
                    if (ok) {
                        c = (char)val;
                        i += 2;
                        break;
                    }
                }
                c = 'x';
                break;
            default: c = e; break;
            }
        }
        tmp[o++] = c;
    }
    dta_status st = make_str(v, DTAP_PK_STR, tmp, o, out);
    free(tmp);
    return st;
}

/* ---- memo -------------------------------------------------------------------------- */

static dta_status memo_put(vm *v, uint64_t idx)
{
    if (idx >= DTA_MAX_PICKLE_MEMO) return limit_err(v, "memo index", DTA_MAX_PICKLE_MEMO);
    dtap_pnode *x;
    dta_status st = top(v, &x);
    if (st) return st;
    if (idx >= v->memo_cap) {
        size_t nc = v->memo_cap ? v->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        if (nc > DTA_MAX_PICKLE_MEMO) nc = DTA_MAX_PICKLE_MEMO;
        dtap_pnode **nm = realloc(v->memo, nc * sizeof(*nm));
        if (!nm) return nomem(v);
        memset(nm + v->memo_cap, 0, (nc - v->memo_cap) * sizeof(*nm));
        v->memo = nm;
        v->memo_cap = nc;
    }
    if (!v->memo[idx]) v->memo_count++;
    v->memo[idx] = x;
    return DTA_OK;
}

static dta_status memo_get(vm *v, uint64_t idx)
{
    if (idx >= v->memo_cap || !v->memo[idx]) {
        char msg[64];
        snprintf(msg, sizeof msg, "memo index %llu is undefined", (unsigned long long)idx);
        return fmt_err(v, msg);
    }
    return push(v, v->memo[idx]);
}

static dta_status line_uint(vm *v, uint64_t *out)
{
    const char *s;
    size_t n;
    dta_status st = rd_line(v, &s, &n);
    if (st) return st;
    uint64_t x = 0;
    if (!n) return fmt_err(v, "bad memo index");
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || x > UINT64_MAX / 10 - 1) return fmt_err(v, "bad memo index");
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *out = x;
    return DTA_OK;
}

/* ---- containers -------------------------------------------------------------------- */

static bool is_scalar(const dtap_pnode *x)
{
    return x->kind == DTAP_PK_NONE || x->kind == DTAP_PK_BOOL || x->kind == DTAP_PK_INT ||
           x->kind == DTAP_PK_FLOAT || x->kind == DTAP_PK_STR || x->kind == DTAP_PK_BYTES ||
           x->kind == DTAP_PK_GLOBAL;
}

/* Items stack[from..sp) -> a new node of kind (tuple/list/set), popped. */
static dta_status collect(vm *v, dtap_pkind kind, size_t from, dtap_pnode **out)
{
    dta_status st;
    dtap_pnode *x = new_node(v, kind, &st);
    if (!x) return st;
    size_t cnt = v->sp - from;
    if (cnt > DTA_MAX_PICKLE_CONTAINER) return limit_err(v, "container size", DTA_MAX_PICKLE_CONTAINER);
    if (cnt) {
        x->seq.v = arena_alloc(v->pk, cnt * sizeof(*x->seq.v));
        if (!x->seq.v) return nomem(v);
        memcpy(x->seq.v, v->stack + from, cnt * sizeof(*x->seq.v));
        x->seq.n = x->seq.cap = cnt;
    }
    v->sp = from;
    *out = x;
    return DTA_OK;
}

static dta_status add_pairs(vm *v, dtap_pnode *target, size_t from)
{
    size_t cnt = v->sp - from;
    if (cnt % 2) return fmt_err(v, "odd number of items for a dict");
    if (target->kind != DTAP_PK_DICT && is_scalar(target)) return fmt_err(v, "SETITEM on a non-mapping");
    for (size_t i = from; i < v->sp; i++) {
        dta_status st = vec_push(v, &target->kv, v->stack[i]);
        if (st) return st;
    }
    v->sp = from;
    return DTA_OK;
}

static dta_status add_items(vm *v, dtap_pnode *target, size_t from)
{
    if (is_scalar(target) || target->kind == DTAP_PK_TUPLE || target->kind == DTAP_PK_DICT)
        return fmt_err(v, "APPEND on an object without append");
    for (size_t i = from; i < v->sp; i++) {
        dta_status st = vec_push(v, &target->seq, v->stack[i]);
        if (st) return st;
    }
    v->sp = from;
    return DTA_OK;
}

static dta_status make_call(vm *v, dtap_pkind kind, dtap_pnode *fn, dtap_pnode *args,
                            dtap_pnode *kwargs, dtap_pnode **out)
{
    dta_status st;
    if (fn->kind != DTAP_PK_GLOBAL) {
        /* torch's weights_only refuses calls of anything but an allowlisted global */
        st = note_unsafe(v, "(call of a computed object)", NULL);
        if (st) return st;
    }
    dtap_pnode *x = new_node(v, kind, &st);
    if (!x) return st;
    x->fn = fn;
    x->args = args;
    x->kwargs = kwargs;
    *out = x;
    return DTA_OK;
}

static dta_status make_persid(vm *v, dtap_pnode *pid, dtap_pnode **out)
{
    dta_status st;
    dtap_pnode *x = new_node(v, DTAP_PK_PERSID, &st);
    if (!x) return st;
    x->args = pid;
    dtap_pickle *pk = v->pk;
    if (pk->npersids == pk->cappersids) {
        size_t nc = pk->cappersids ? pk->cappersids * 2 : 64;
        dtap_pnode **np = realloc(pk->persids, nc * sizeof(*np));
        if (!np) return nomem(v);
        pk->persids = np;
        pk->cappersids = nc;
    }
    pk->persids[pk->npersids++] = x;
    *out = x;
    return DTA_OK;
}

/* ---- the loop ---------------------------------------------------------------------- */

static dta_status run(vm *v, size_t *consumed)
{
    dta_status st = DTA_OK;
    for (;;) {
        if (v->pos >= v->n) {
            v->op = 0;
            v->op_at = v->pos;
            return fmt_err(v, "stream ends without STOP");
        }
        if (++v->ops > DTA_MAX_PICKLE_OPS) return limit_err(v, "opcode count", DTA_MAX_PICKLE_OPS);
        v->op_at = v->pos;
        v->op = v->p[v->pos++];
        const unsigned char *b;
        const char *line;
        size_t ln;
        dtap_pnode *x = NULL, *y = NULL, *z = NULL;
        size_t from;
        switch (v->op) {
        case DTAP_OP_PROTO:
            if ((st = rd_bytes(v, 1, &b))) return st;
            if (b[0] > 5) return fmt_err(v, "unsupported pickle protocol");
            if (b[0] > v->pk->proto) v->pk->proto = b[0];
            break;
        case DTAP_OP_FRAME: /* transparent */
            if ((st = rd_bytes(v, 8, &b))) return st;
            break;
        case DTAP_OP_STOP:
            if ((st = pop(v, &x))) return st;
            v->pk->root = x;
            if (consumed) *consumed = v->pos;
            return DTA_OK;
        case DTAP_OP_MARK:
            if (v->nmarks == v->mcap) {
                if (v->mcap >= DTA_MAX_PICKLE_MARKS) return limit_err(v, "MARK depth", DTA_MAX_PICKLE_MARKS);
                size_t nc = v->mcap ? v->mcap * 2 : 16;
                size_t *nm = realloc(v->marks, nc * sizeof(*nm));
                if (!nm) return nomem(v);
                v->marks = nm;
                v->mcap = nc;
            }
            v->marks[v->nmarks++] = v->sp;
            break;
        case DTAP_OP_POP: /* an item, or a MARK when the frame is empty */
            if (v->sp > frame_base(v)) v->sp--;
            else if (v->nmarks) v->nmarks--;
            else return fmt_err(v, "stack underflow");
            break;
        case DTAP_OP_POP_MARK:
            if ((st = pop_mark(v, &from))) return st;
            v->sp = from;
            break;
        case DTAP_OP_DUP:
            if ((st = top(v, &x)) || (st = push(v, x))) return st;
            break;
        /* -- scalars -- */
        case DTAP_OP_NONE: if (!(x = new_node(v, DTAP_PK_NONE, &st))) return st; goto push_x;
        case DTAP_OP_NEWTRUE: case DTAP_OP_NEWFALSE:
            if (!(x = new_node(v, DTAP_PK_BOOL, &st))) return st;
            x->i = v->op == DTAP_OP_NEWTRUE;
            goto push_x;
        case DTAP_OP_INT: /* decimal line, "00"/"01" are bools */
            if ((st = rd_line(v, &line, &ln))) return st;
            if (ln == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {
                if (!(x = new_node(v, DTAP_PK_BOOL, &st))) return st;
                x->i = line[1] == '1';
                goto push_x;
            }
            if ((st = make_decimal(v, line, ln, &x))) return st;
            goto push_x;
        case DTAP_OP_LONG: /* decimal line, optional 'L' */
            if ((st = rd_line(v, &line, &ln))) return st;
            if ((st = make_decimal(v, line, ln, &x))) return st;
            goto push_x;
        case DTAP_OP_BININT:
            if ((st = rd_bytes(v, 4, &b))) return st;
            if (!(x = new_node(v, DTAP_PK_INT, &st))) return st;
            x->i = (int32_t)(uint32_t)((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
            goto push_x;
        case DTAP_OP_BININT1:
            if ((st = rd_bytes(v, 1, &b))) return st;
            if (!(x = new_node(v, DTAP_PK_INT, &st))) return st;
            x->i = b[0];
            goto push_x;
        case DTAP_OP_BININT2:
            if ((st = rd_bytes(v, 2, &b))) return st;
            if (!(x = new_node(v, DTAP_PK_INT, &st))) return st;
            x->i = b[0] | (b[1] << 8);
            goto push_x;
        case DTAP_OP_LONG1:
            if ((st = rd_bytes(v, 1, &b))) return st;
            ln = b[0];
            if ((st = rd_bytes(v, ln, &b))) return st;
            if (ln == 0) {
                if (!(x = new_node(v, DTAP_PK_INT, &st))) return st;
                goto push_x;
            }
            if ((st = make_long(v, b, ln, &x))) return st;
            goto push_x;
        case DTAP_OP_LONG4: {
            if ((st = rd_bytes(v, 4, &b))) return st;
            int32_t l = (int32_t)(uint32_t)((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
            if (l < 0) return fmt_err(v, "negative LONG4 length");
            if ((size_t)l > DTA_MAX_PICKLE_STRING) return limit_err(v, "long length", DTA_MAX_PICKLE_STRING);
            if ((st = rd_bytes(v, (size_t)l, &b))) return st;
            if (l == 0) {
                if (!(x = new_node(v, DTAP_PK_INT, &st))) return st;
                goto push_x;
            }
            if ((st = make_long(v, b, (size_t)l, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_FLOAT: { /* repr text */
            if ((st = rd_line(v, &line, &ln))) return st;
            if (ln > 400) return fmt_err(v, "FLOAT literal too long");
            char tmp[401];
            memcpy(tmp, line, ln);
            tmp[ln] = 0;
            char *end;
            double d = strtod(tmp, &end);
            if (end == tmp) return fmt_err(v, "bad FLOAT literal");
            if (!(x = new_node(v, DTAP_PK_FLOAT, &st))) return st;
            x->f = d;
            goto push_x;
        }
        case DTAP_OP_BINFLOAT: { /* big-endian double */
            if ((st = rd_bytes(v, 8, &b))) return st;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | b[i];
            double d;
            memcpy(&d, &u, sizeof d);
            if (!(x = new_node(v, DTAP_PK_FLOAT, &st))) return st;
            x->f = d;
            goto push_x;
        }
        /* -- strings and bytes -- */
        case DTAP_OP_STRING:
            if ((st = rd_line(v, &line, &ln))) return st;
            if ((st = make_quoted(v, line, ln, &x))) return st;
            goto push_x;
        case DTAP_OP_UNICODE: /* raw-unicode-escape, kept raw */
            if ((st = rd_line(v, &line, &ln))) return st;
            if ((st = make_str(v, DTAP_PK_STR, line, ln, &x))) return st;
            goto push_x;
        case DTAP_OP_BINSTRING: case DTAP_OP_BINUNICODE: case DTAP_OP_BINBYTES: { /* u32 length; BINSTRING: i32 */
            if ((st = rd_bytes(v, 4, &b))) return st;
            uint32_t l = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
            if (v->op == DTAP_OP_BINSTRING && (l & 0x80000000u)) return fmt_err(v, "negative BINSTRING length");
            if (l > DTA_MAX_PICKLE_STRING) return limit_err(v, "string length", DTA_MAX_PICKLE_STRING);
            if ((st = rd_bytes(v, l, &b))) return st;
            if ((st = make_str(v, v->op == DTAP_OP_BINBYTES ? DTAP_PK_BYTES : DTAP_PK_STR, b, l, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_SHORT_BINSTRING: case DTAP_OP_SHORT_BINUNICODE: case DTAP_OP_SHORT_BINBYTES: {
            if ((st = rd_bytes(v, 1, &b))) return st;
            size_t l = b[0];
            if ((st = rd_bytes(v, l, &b))) return st;
            if ((st = make_str(v, v->op == DTAP_OP_SHORT_BINBYTES ? DTAP_PK_BYTES : DTAP_PK_STR, b, l, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_BINUNICODE8: case DTAP_OP_BINBYTES8: case DTAP_OP_BYTEARRAY8: {
            if ((st = rd_bytes(v, 8, &b))) return st;
            uint64_t l = 0;
            for (int i = 7; i >= 0; i--) l = (l << 8) | b[i];
            if (l > DTA_MAX_PICKLE_STRING) return limit_err(v, "string length", DTA_MAX_PICKLE_STRING);
            if ((st = rd_bytes(v, (size_t)l, &b))) return st;
            if ((st = make_str(v, v->op == DTAP_OP_BINUNICODE8 ? DTAP_PK_STR : DTAP_PK_BYTES, b, (size_t)l, &x))) return st;
            goto push_x;
        }
        /* -- tuples, lists, dicts, sets -- */
        case DTAP_OP_EMPTY_TUPLE: if (!(x = new_node(v, DTAP_PK_TUPLE, &st))) return st; goto push_x;
        case DTAP_OP_EMPTY_LIST: if (!(x = new_node(v, DTAP_PK_LIST, &st))) return st; goto push_x;
        case DTAP_OP_EMPTY_DICT: if (!(x = new_node(v, DTAP_PK_DICT, &st))) return st; goto push_x;
        case DTAP_OP_EMPTY_SET: if (!(x = new_node(v, DTAP_PK_SET, &st))) return st; goto push_x;
        case DTAP_OP_TUPLE: case DTAP_OP_LIST: case DTAP_OP_FROZENSET: /* from MARK */
            if ((st = pop_mark(v, &from))) return st;
            if ((st = collect(v, v->op == DTAP_OP_TUPLE ? DTAP_PK_TUPLE : v->op == DTAP_OP_LIST ? DTAP_PK_LIST : DTAP_PK_SET, from, &x))) return st;
            x->frozen = v->op == DTAP_OP_FROZENSET;
            goto push_x;
        case DTAP_OP_TUPLE1: case DTAP_OP_TUPLE2: case DTAP_OP_TUPLE3: {
            size_t k = (size_t)(v->op - 0x84);
            if (v->sp - frame_base(v) < k) return fmt_err(v, "stack underflow");
            if ((st = collect(v, DTAP_PK_TUPLE, v->sp - k, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_DICT: /* from MARK */
            if ((st = pop_mark(v, &from))) return st;
            if (!(x = new_node(v, DTAP_PK_DICT, &st))) return st;
            if ((st = add_pairs(v, x, from))) return st;
            goto push_x;
        case DTAP_OP_SETITEM:
            if ((st = pop(v, &y)) || (st = pop(v, &z)) || (st = top(v, &x))) return st;
            if (x->kind != DTAP_PK_DICT && is_scalar(x)) return fmt_err(v, "SETITEM on a non-mapping");
            if ((st = vec_push(v, &x->kv, z)) || (st = vec_push(v, &x->kv, y))) return st;
            break;
        case DTAP_OP_SETITEMS:
            if ((st = pop_mark(v, &from))) return st;
            if (from == 0 || from - 1 < frame_base(v)) return fmt_err(v, "stack underflow");
            if ((st = add_pairs(v, v->stack[from - 1], from))) return st;
            break;
        case DTAP_OP_APPEND:
            if ((st = pop(v, &y)) || (st = top(v, &x))) return st;
            if (is_scalar(x) || x->kind == DTAP_PK_TUPLE || x->kind == DTAP_PK_DICT) return fmt_err(v, "APPEND on an object without append");
            if ((st = vec_push(v, &x->seq, y))) return st;
            break;
        case DTAP_OP_APPENDS: case DTAP_OP_ADDITEMS:
            if ((st = pop_mark(v, &from))) return st;
            if (from == 0 || from - 1 < frame_base(v)) return fmt_err(v, "stack underflow");
            if ((st = add_items(v, v->stack[from - 1], from))) return st;
            break;
        /* -- globals and calls -- */
        case DTAP_OP_GLOBAL: { /* module\nname\n */
            const char *m;
            size_t ml;
            if ((st = rd_line(v, &m, &ml)) || (st = rd_line(v, &line, &ln))) return st;
            if ((st = make_global(v, m, ml, line, ln, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_STACK_GLOBAL:
            if ((st = pop(v, &y)) || (st = pop(v, &z))) return st;
            if (y->kind != DTAP_PK_STR || z->kind != DTAP_PK_STR)
                return fmt_err(v, "STACK_GLOBAL operands are not strings");
            if ((st = make_global(v, z->s, z->len, y->s, y->len, &x))) return st;
            goto push_x;
        case DTAP_OP_REDUCE:
            if ((st = pop(v, &y)) || (st = pop(v, &z))) return st;
            if ((st = make_call(v, DTAP_PK_REDUCE, z, y, NULL, &x))) return st;
            goto push_x;
        case DTAP_OP_NEWOBJ:
            if ((st = pop(v, &y)) || (st = pop(v, &z))) return st;
            if ((st = make_call(v, DTAP_PK_NEWOBJ, z, y, NULL, &x))) return st;
            goto push_x;
        case DTAP_OP_NEWOBJ_EX: {
            dtap_pnode *kw;
            if ((st = pop(v, &kw)) || (st = pop(v, &y)) || (st = pop(v, &z))) return st;
            if ((st = make_call(v, DTAP_PK_NEWOBJ, z, y, kw, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_INST: { /* module\nname\n, args from MARK */
            const char *m;
            size_t ml;
            if ((st = rd_line(v, &m, &ml)) || (st = rd_line(v, &line, &ln))) return st;
            if ((st = pop_mark(v, &from))) return st;
            if ((st = collect(v, DTAP_PK_TUPLE, from, &y))) return st;
            if ((st = make_global(v, m, ml, line, ln, &z))) return st;
            if ((st = make_call(v, DTAP_PK_REDUCE, z, y, NULL, &x))) return st;
            goto push_x;
        }
        case DTAP_OP_OBJ: /* MARK cls args... */
            if ((st = pop_mark(v, &from))) return st;
            if (v->sp == from) return fmt_err(v, "OBJ without a class");
            z = v->stack[from];
            if ((st = collect(v, DTAP_PK_TUPLE, from + 1, &y))) return st;
            v->sp = from;
            if ((st = make_call(v, DTAP_PK_REDUCE, z, y, NULL, &x))) return st;
            goto push_x;
        case DTAP_OP_BUILD:
            if ((st = pop(v, &y)) || (st = top(v, &x))) return st;
            if ((st = vec_push(v, &x->states, y))) return st;
            break;
        case DTAP_OP_PERSID: /* text */
            if ((st = rd_line(v, &line, &ln))) return st;
            if ((st = make_str(v, DTAP_PK_STR, line, ln, &y))) return st;
            if ((st = make_persid(v, y, &x))) return st;
            goto push_x;
        case DTAP_OP_BINPERSID:
            if ((st = pop(v, &y))) return st;
            if ((st = make_persid(v, y, &x))) return st;
            goto push_x;
        case DTAP_OP_EXT1: case DTAP_OP_EXT2: case DTAP_OP_EXT4: { /* extension registry code, opaque */
            size_t k = v->op == DTAP_OP_EXT1 ? 1 : v->op == DTAP_OP_EXT2 ? 2 : 4;
            if ((st = rd_bytes(v, k, &b))) return st;
            uint32_t code = 0;
            for (size_t i = k; i-- > 0;) code = (code << 8) | b[i];
            if (!(x = new_node(v, DTAP_PK_OPAQUE, &st))) return st;
            x->i = code;
            char nm[32];
            snprintf(nm, sizeof nm, "EXT%zu %u", k == 4 ? (size_t)4 : k, code);
            if ((st = note_unsafe(v, "copyreg.extension", nm))) return st;
            goto push_x;
        }
        case DTAP_OP_NEXT_BUFFER: /* out-of-band data we do not have */
            if (!(x = new_node(v, DTAP_PK_OPAQUE, &st))) return st;
            x->i = -1;
            goto push_x;
        case DTAP_OP_READONLY_BUFFER:
            if ((st = top(v, &x))) return st;
            break;
        /* -- memo -- */
        case DTAP_OP_PUT: { uint64_t k; if ((st = line_uint(v, &k)) || (st = memo_put(v, k))) return st; break; }
        case DTAP_OP_BINPUT: if ((st = rd_bytes(v, 1, &b)) || (st = memo_put(v, b[0]))) return st; break;
        case DTAP_OP_LONG_BINPUT: if ((st = rd_bytes(v, 4, &b)) || (st = memo_put(v, (uint64_t)b[0] | ((uint64_t)b[1] << 8) | ((uint64_t)b[2] << 16) | ((uint64_t)b[3] << 24)))) return st; break;
        case DTAP_OP_MEMOIZE: if ((st = memo_put(v, v->memo_count))) return st; break;
        case DTAP_OP_GET: { uint64_t k; if ((st = line_uint(v, &k)) || (st = memo_get(v, k))) return st; break; }
        case DTAP_OP_BINGET: if ((st = rd_bytes(v, 1, &b)) || (st = memo_get(v, b[0]))) return st; break;
        case DTAP_OP_LONG_BINGET: if ((st = rd_bytes(v, 4, &b)) || (st = memo_get(v, (uint64_t)b[0] | ((uint64_t)b[1] << 8) | ((uint64_t)b[2] << 16) | ((uint64_t)b[3] << 24)))) return st; break;
        default:
            return fmt_err(v, "unknown opcode");
        }
        continue;
    push_x:
        if ((st = push(v, x))) return st;
    }
}

dta_status dtap_pickle_load(const unsigned char *data, size_t n, const dtap_pickle_opts *opts,
                            dtap_pickle **out, size_t *consumed, dta_error *err)
{
    *out = NULL;
    dtap_pickle *pk = calloc(1, sizeof(*pk));
    if (!pk) return dta_error_set(err, DTA_E_NOMEM, 0, "pickle: out of memory");
    vm v;
    memset(&v, 0, sizeof v);
    v.p = data;
    v.n = n;
    v.pk = pk;
    v.torchscript = opts && opts->torchscript;
    v.err = err;
    dta_status st = run(&v, consumed);
    pk->ops = v.ops;
    free(v.stack);
    free(v.marks);
    free(v.memo);
    if (st) {
        dtap_pickle_free(pk);
        return st;
    }
    *out = pk;
    return DTA_OK;
}

const dtap_pnode *dtap_pickle_root(const dtap_pickle *p) { return p ? p->root : NULL; }
int dtap_pickle_protocol(const dtap_pickle *p) { return p ? p->proto : 0; }
uint64_t dtap_pickle_ops(const dtap_pickle *p) { return p ? p->ops : 0; }
size_t dtap_pickle_unsafe_count(const dtap_pickle *p) { return p ? p->nunsafe : 0; }
const char *dtap_pickle_unsafe(const dtap_pickle *p, size_t i)
{
    return p && i < p->nunsafe ? p->unsafe[i] : NULL;
}

/* ---- helpers for walkers ----------------------------------------------------------- */

bool dtap_pnode_is_global(const dtap_pnode *n, const char *module, const char *name)
{
    return n && n->kind == DTAP_PK_GLOBAL && !strcmp(n->s, module) && !strcmp(n->name, name);
}

bool dtap_pnode_is_str(const dtap_pnode *n, const char *s)
{
    if (!n || (n->kind != DTAP_PK_STR && n->kind != DTAP_PK_BYTES)) return false;
    size_t l = strlen(s);
    return n->len == l && !memcmp(n->s, s, l);
}

const dtap_pnode *dtap_pnode_callee(const dtap_pnode *n)
{
    if (!n || (n->kind != DTAP_PK_REDUCE && n->kind != DTAP_PK_NEWOBJ)) return NULL;
    return n->fn && n->fn->kind == DTAP_PK_GLOBAL ? n->fn : NULL;
}

const dtap_pnode *dtap_pnode_item(const dtap_pnode *n, size_t i)
{
    if (!n || (n->kind != DTAP_PK_TUPLE && n->kind != DTAP_PK_LIST)) return NULL;
    return i < n->seq.n ? n->seq.v[i] : NULL;
}

bool dtap_pnode_int(const dtap_pnode *n, int64_t *v)
{
    if (!n || (n->kind != DTAP_PK_INT && n->kind != DTAP_PK_BOOL) || n->big) return false;
    *v = n->i;
    return true;
}

size_t dtap_pickle_persid_count(const dtap_pickle *p) { return p ? p->npersids : 0; }
const dtap_pnode *dtap_pickle_persid(const dtap_pickle *p, size_t i)
{
    return p && i < p->npersids ? p->persids[i] : NULL;
}
