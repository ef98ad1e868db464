/* Sharded checkpoint index (model.safetensors.index.json, pytorch_model.bin.index.json).
 *
 * Layout (docs/formats.md 1.6):
 *   {"metadata": {"total_size": BYTES, ...}, "weight_map": {"tensor.name": "shard-file", ...}}
 *   Shard paths are relative to the index's directory; total_size is the sum of tensor
 *   byte sizes with shared storages counted once.
 *
 * Every shard present is read with its own reader into one model, so the audit sees one
 * state dict. Disagreements between the index and the shards become index-mismatch notes
 * (errors); shards that are absent leave what the index says (names, shard) in a note. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "format.h"
#include "model_build.h"
#include "pathsafe.h"
#include "util_strmap.h"

int dtap_index_bid(const unsigned char *head, size_t n, uint64_t size)
{
    size_t i = 0;
    (void)size;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
        i++;
    if (i >= n || head[i] != '{')
        return DTAP_BID_NONE;
    /* "weight_map" usually follows a short "metadata" object; look for either key */
    for (size_t k = i; k + 12 <= n; k++)
        if (memcmp(head + k, "\"weight_map\"", 12) == 0 || memcmp(head + k, "\"metadata\"", 10) == 0)
            return DTAP_BID_TEXT;
    return DTAP_BID_NONE;
}

/* A shard path must stay inside the index's directory. */
static bool shard_name_ok(const char *s)
{
    if (!*s || *s == '/' || strlen(s) > DTA_MAX_SHARD_NAME)
        return false;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 2 && p[0] == '.' && p[1] == '.') || len == 0)
            return false;
        if (!e)
            break;
        p = e + 1;
    }
    return true;
}

typedef struct {
    const char *name;
    size_t listed; /* tensors the index maps to it */
    size_t first_tensor, ntensors; /* model tensors read from it */
    bool present;
} shard;

static dta_status note(dta_model *m, const char *subject, dta_error *err, const char *fmt, ...)
    DTA_PRINTF(4, 5);
static dta_status note(dta_model *m, const char *subject, dta_error *err, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dtap_model_add_note(m, DTA_RULE_INDEX_MISMATCH, subject, msg, err);
}

/* The index is read straight into the weight_map's entries, without a JSON tree (a
 * 90,000-entry index was 300 M instructions of cJSON parse and free). The grammar and its
 * leniencies are cJSON 1.7's, which read it before, so the same files are accepted: a UTF-8
 * BOM, any byte <= 0x20 as whitespace, numbers as strtod reads them from a run of
 * [0-9+-.eE] that starts with '-' or a digit, the \u escapes as cJSON decodes them, nesting
 * to 1000, and anything after the top-level value ignored. Strings are decoded in place
 * (never longer than their source) and end at their first NUL as cJSON's did. Keys repeat
 * as in cJSON: the first "weight_map", "metadata" and "total_size" are the ones read. */
#define INDEX_NESTING 1000 /* CJSON_NESTING_LIMIT */

/* One entry, 32 bytes (90,000 of them for DeepSeek-V3 FP8): counts and lengths fit 32 bits
 * (at most DTA_MAX_TENSORS entries, lengths under the 256 MiB index cap). */
typedef struct {
    char *name;        /* the entry's key */
    char *shard;       /* its value, NULL when the value is not a string */
    uint32_t tensor;   /* the first model tensor of that name, NO_TENSOR when none */
    uint32_t shard_k;  /* its shard's index in shards (set once the entries are read) */
    uint32_t name_len; /* strlen of the name and the shard (the text before a NUL) */
    uint32_t shard_len : 30;
    uint32_t shard_plain : 1; /* the shard's text had nothing to decode and no NUL */
    uint32_t shard_same : 1;  /* the same text as the entry before's shard (plain both) */
} wm_entry;
#define NO_TENSOR UINT32_MAX

typedef struct {
    unsigned char *p, *end;
    unsigned depth;
    wm_entry *ents;
    size_t nents, capents;
    bool have_wm, wm_object, have_md, have_ts, ts_number;
    double total_size;
    bool nomem;
} ixp;

static void ix_ws(ixp *x)
{
    while (x->p < x->end && *x->p <= 32)
        x->p++;
}

static unsigned ix_hex4(const unsigned char *s) /* 0 for a bad digit, as cJSON's parse_hex4 */
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v * 16 + d;
    }
    return v;
}

static bool ix_string(ixp *x, char **out, size_t *len, bool *plain);

/* ix_string's common case inline (a plain string: NUL-terminated where it stands, true
 * with *plain), and the call for the rest. */
__attribute__((always_inline)) static inline bool ix_string_in(ixp *x, char **out, size_t *len,
                                                               bool *plain)
{
    if (x->p < x->end && *x->p == '"') {
        unsigned char *in = x->p + 1;
        size_t n = dtap_json_plain_len(in, x->end, 1);
        if (n < (size_t)(x->end - in) && in[n] == '"') {
            in[n] = 0;
            *out = (char *)in;
            *len = n;
            if (plain)
                *plain = true;
            x->p = in + n + 1;
            return true;
        }
    }
    return ix_string(x, out, len, plain);
}

/* A string at x->p ('"'), decoded in place; *out (NUL-terminated) may be NULL to skip, and
 * *len (when not NULL) is its strlen, *plain (when not NULL) whether its text had nothing
 * to decode and no NUL. */
static bool ix_string(ixp *x, char **out, size_t *len, bool *plain)
{
    if (x->p >= x->end || *x->p != '"')
        return false;
    unsigned char *in = x->p + 1;
    size_t n = dtap_json_plain_len(in, x->end, 1); /* up to '"', '\\' or a NUL */
    if (n < (size_t)(x->end - in) && in[n] == '"') { /* nothing to decode, no NUL */
        in[n] = 0;
        if (out)
            *out = (char *)in;
        if (len)
            *len = n;
        if (plain)
            *plain = true;
        x->p = in + n + 1;
        return true;
    }
    if (plain)
        *plain = false;
    unsigned char *e = memchr(in, '"', (size_t)(x->end - in));
    if (e && !memchr(in, '\\', (size_t)(e - in))) { /* the common case: nothing to decode */
        *e = 0;
        if (out)
            *out = (char *)in;
        if (len)
            *len = strlen((char *)in);
        x->p = e + 1;
        return true;
    }
    e = in;
    while (e < x->end && *e != '"') {
        if (*e == '\\') {
            if (e + 1 >= x->end)
                return false;
            e++;
        }
        e++;
    }
    if (e >= x->end)
        return false;
    unsigned char *o = in;
    while (in < e) {
        if (*in != '\\') {
            *o++ = *in++;
            continue;
        }
        size_t seq = 2;
        unsigned cp;
        switch (in[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case '"': case '\\': case '/': *o++ = in[1]; break;
        case 'u':
            if (e - in < 6)
                return false;
            cp = ix_hex4(in + 2);
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return false;
            seq = 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                const unsigned char *s2 = in + 6;
                if (e - s2 < 6 || s2[0] != '\\' || s2[1] != 'u')
                    return false;
                unsigned lo = ix_hex4(s2 + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                cp = 0x10000 + (((cp & 0x3FF) << 10) | (lo & 0x3FF));
                seq = 12;
            }
            /* never longer than the escape: 6 bytes give at most 3, 12 give 4 */
            if (cp < 0x80) {
                *o++ = (unsigned char)cp;
            } else if (cp < 0x800) {
                *o++ = (unsigned char)(0xC0 | (cp >> 6));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (unsigned char)(0xE0 | (cp >> 12));
                *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (unsigned char)(0xF0 | (cp >> 18));
                *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            }
            break;
        default:
            return false;
        }
        in += seq;
    }
    *o = 0; /* o <= e: the closing quote is the last byte it may take */
    if (out)
        *out = (char *)(x->p + 1);
    if (len)
        *len = strlen((char *)(x->p + 1));
    x->p = e + 1;
    return true;
}

static bool num_char(unsigned c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* A number as cJSON reads it: strtod over the whole run of number characters, which must
 * take all of it (what it leaves cannot follow a value). */
static bool ix_number(ixp *x, double *out)
{
    char small[64], *buf = small;
    size_t n = 0;
    while (x->p + n < x->end && num_char(x->p[n]))
        n++;
    if (n >= sizeof small && !(buf = malloc(n + 1))) {
        x->nomem = true;
        return false;
    }
    memcpy(buf, x->p, n);
    buf[n] = 0;
    char *stop;
    double v = strtod(buf, &stop);
    bool ok = stop != buf && (size_t)(stop - buf) == n;
    if (buf != small)
        free(buf);
    if (!ok)
        return false;
    x->p += n;
    if (out)
        *out = v;
    return true;
}

/* The weight_map's names as a hash set of entry indexes (entry + 1 in a slot, 0 empty),
 * at most half full: the entries hold the names and their lengths, so a probe compares a
 * length before any byte and nothing is measured twice. */
typedef struct {
    uint32_t *slot;
    size_t mask;
} wm_set;

static bool wm_set_init(wm_set *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) /* n <= DTA_MAX_TENSORS: no overflow */
        cap *= 2;
    t->slot = calloc(cap, sizeof *t->slot);
    t->mask = cap - 1;
    return t->slot != NULL;
}

/* The entry named by the len bytes at name, or SIZE_MAX; *at is the slot where it is or
 * would go. */
__attribute__((always_inline)) static inline size_t wm_find(const wm_set *t, const wm_entry *ents,
                                                            const char *name, size_t len,
                                                            size_t *at)
{
    size_t h = (size_t)dtap_hash(name, len, 0) & t->mask;
    for (; t->slot[h]; h = (h + 1) & t->mask) {
        const wm_entry *o = &ents[t->slot[h] - 1];
        if (o->name_len == len && memcmp(o->name, name, len) == 0) {
            *at = h;
            return t->slot[h] - 1;
        }
    }
    *at = h;
    return SIZE_MAX;
}

typedef enum { IX_TOP, IX_WEIGHT_MAP, IX_METADATA, IX_OTHER } ix_ctx;

static bool ix_value(ixp *x, ix_ctx what);

static bool ix_literal(ixp *x, const char *lit, size_t n)
{
    if ((size_t)(x->end - x->p) < n || memcmp(x->p, lit, n) != 0)
        return false;
    x->p += n;
    return true;
}

/* memcmp(a, b, n) == 0 for n bytes of a and b readable (shard names, about 32 bytes):
 * sixteen bytes a compare, the last sixteen overlapping */
__attribute__((always_inline)) static inline bool same_text(const unsigned char *a,
                                                            const unsigned char *b, size_t n)
{
#ifdef __SSE2__
    if (n >= 16 && n <= 64) {
        for (size_t i = 0;; i += 16) {
            size_t at = i + 16 <= n ? i : n - 16;
            __m128i va = _mm_loadu_si128((const __m128i *)(const void *)(a + at));
            __m128i vb = _mm_loadu_si128((const __m128i *)(const void *)(b + at));
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(va, vb)) != 0xFFFF)
                return false;
            if (at + 16 >= n)
                return true;
        }
    }
#endif
    return memcmp(a, b, n) == 0;
}

__attribute__((always_inline)) static inline bool ix_add_entry(ixp *x, const wm_entry *e)
{
    if (x->nents > DTA_MAX_TENSORS) { /* refused after the parse: only counted */
        x->nents++;
        return true;
    }
    if (x->nents == x->capents) {
        size_t ncap = x->capents ? x->capents * 2 : 1024;
        wm_entry *p = realloc(x->ents, ncap * sizeof *p);
        if (!p) {
            x->nomem = true;
            return false;
        }
        x->ents = p;
        x->capents = ncap;
    }
    x->ents[x->nents++] = *e;
    return true;
}

/* An object's members; what says which object it is (the top level, the first
 * weight_map, the first metadata, or any other). */
/* Takes a container's opening; true when it is empty (its close taken as well). */
static bool ix_open_empty(ixp *x, unsigned char close)
{
    x->p++;
    ix_ws(x);
    if (x->p < x->end && *x->p == close) {
        x->p++;
        return true;
    }
    return false;
}

/* After a member or an item: 1 when another follows (the ',' taken), 0 when the container
 * ends (its close taken), -1 on anything else. */
static int ix_next(ixp *x, unsigned char close)
{
    ix_ws(x);
    if (x->p >= x->end)
        return -1;
    if (*x->p == ',') {
        x->p++;
        return 1;
    }
    if (*x->p != close)
        return -1;
    x->p++;
    return 0;
}

static bool ix_object(ixp *x, ix_ctx what)
{
    if (ix_open_empty(x, '}'))
        return true;
    for (;;) {
        char *key;
        size_t key_len;
        ix_ws(x);
        if (!ix_string_in(x, &key, &key_len, NULL))
            return false;
        ix_ws(x);
        if (x->p >= x->end || *x->p != ':')
            return false;
        x->p++;
        ix_ws(x);
        if (what == IX_WEIGHT_MAP) {
            wm_entry e = {.name = key, .tensor = NO_TENSOR, .name_len = (uint32_t)key_len};
            /* the entry before's, when it is stored (see ix_add_entry) */
            const wm_entry *prev = x->nents && x->nents - 1 <= DTA_MAX_TENSORS
                                       ? &x->ents[x->nents - 1] : NULL;
            if (x->p < x->end && *x->p == '"') {
                /* a shard's entries follow each other: the text of the one before, then
                 * '"', is this string as it stands (that text holds no '"', '\\' or NUL) */
                unsigned char *in = x->p + 1;
                size_t pl = prev && prev->shard_plain ? prev->shard_len : 0;
                if (prev && prev->shard_plain && (size_t)(x->end - in) > pl && in[pl] == '"' &&
                    same_text(in, (const unsigned char *)prev->shard, pl)) {
                    in[pl] = 0;
                    e.shard = (char *)in;
                    e.shard_len = pl;
                    e.shard_plain = e.shard_same = true;
                    x->p = in + pl + 1;
                } else {
                    size_t len;
                    bool plain;
                    if (!ix_string_in(x, &e.shard, &len, &plain))
                        return false;
                    e.shard_len = (uint32_t)len; /* < the index cap */
                    e.shard_plain = plain;
                }
            } else if (!ix_value(x, IX_OTHER)) {
                return false;
            }
            if (!ix_add_entry(x, &e))
                return false;
        } else if (what == IX_TOP && !x->have_wm && strcmp(key, "weight_map") == 0) {
            x->have_wm = true;
            x->wm_object = x->p < x->end && *x->p == '{';
            if (!ix_value(x, x->wm_object ? IX_WEIGHT_MAP : IX_OTHER))
                return false;
        } else if (what == IX_TOP && !x->have_md && strcmp(key, "metadata") == 0) {
            x->have_md = true;
            if (!ix_value(x, IX_METADATA))
                return false;
        } else if (what == IX_METADATA && !x->have_ts && strcmp(key, "total_size") == 0) {
            x->have_ts = true;
            if (x->p < x->end && (*x->p == '-' || (*x->p >= '0' && *x->p <= '9'))) {
                x->ts_number = true;
                if (!ix_number(x, &x->total_size))
                    return false;
            } else if (!ix_value(x, IX_OTHER)) {
                return false;
            }
        } else if (!ix_value(x, IX_OTHER)) {
            return false;
        }
        int next = ix_next(x, '}');
        if (next <= 0)
            return next == 0;
    }
}

static bool ix_array(ixp *x)
{
    if (ix_open_empty(x, ']'))
        return true;
    for (;;) {
        ix_ws(x);
        if (!ix_value(x, IX_OTHER))
            return false;
        int next = ix_next(x, ']');
        if (next <= 0)
            return next == 0;
    }
}

/* A value at x->p (whitespace skipped); an object or array counts towards the nesting
 * limit. A metadata or weight_map that is not an object is read as any other value. */
static bool ix_value(ixp *x, ix_ctx what)
{
    if (x->p >= x->end)
        return false;
    switch (*x->p) {
    case 'n': return ix_literal(x, "null", 4);
    case 'f': return ix_literal(x, "false", 5);
    case 't': return ix_literal(x, "true", 4);
    case '"': return ix_string(x, NULL, NULL, NULL);
    case '[':
    case '{': {
        if (x->depth >= INDEX_NESTING)
            return false;
        x->depth++;
        bool ok = *x->p == '[' ? ix_array(x) : ix_object(x, what);
        x->depth--;
        return ok;
    }
    default:
        if (*x->p == '-' || (*x->p >= '0' && *x->p <= '9'))
            return ix_number(x, NULL);
        return false;
    }
}

/* Reading the shards. They are read in index order into the model, and a model read
 * from an index is the same whether its shards were read one after the other or on
 * several threads: the same tensors, files, storages and notes in the same order, and the
 * first failing shard's error. Threads read safetensors shards only (dtap_threadsafe_fn),
 * each into a model of its own, and the calling thread appends those to the model in index
 * order. Anything a thread did not read (a torch shard, a missing or failing one, one that
 * would pass a cap of the whole model) is read again by the calling thread in its turn,
 * as without threads: errors and notes come from that one code path. */
typedef struct {
    const char *dir, *root;
    shard *shards;
    size_t nshards;
    dtap_read_fn read_shard;
    dtap_threadsafe_fn threadsafe;
    bool safetensors_shards; /* every shard read was a safetensors file */
    /* the weight_map's names (read only while shards are read): the threads look up the
     * entry of each tensor they read, for the index-vs-shards check */
    const wm_set *mapped;
    const wm_entry *ents;
    uint32_t *entry_of; /* per model tensor: its entry, NO_ENTRY, or NOT_LOOKED_UP */
    size_t n_entry_of, cap_entry_of;
    size_t names_bytes; /* about what the shards' names take: the index's size */
} shard_reader;

#define NO_ENTRY UINT32_MAX
#define NOT_LOOKED_UP (UINT32_MAX - 1) /* read by the calling thread: looked up later */

#define INDEX_THREADS_MAX 8        /* reading threads; the calling thread merges */
#define INDEX_THREADS_MIN_SHARDS 4 /* fewer shards are read by the calling thread alone */
#define INDEX_WINDOW_PER_THREAD 2  /* shards read ahead of the merge, per thread */

/* Shard k into m in the calling thread (the reading without threads). */
static dta_status read_one(shard_reader *r, size_t k, dta_model *m, dta_error *err)
{
    dtap_src ss;
    dta_error serr;
    char path[DTA_MAX_INDEX_PATH * 2], where[PATH_MAX];
    shard *sh = &r->shards[k];
    dta_status st;
    snprintf(path, sizeof path, "%s%s", r->dir, sh->name);
    sh->first_tensor = m->ntensors;
    if (dtap_resolves_inside(r->root, path, where, sizeof where) == 0)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "shard '%.200s' leads to %.300s, outside the index's folder; "
                             "not read",
                             sh->name, where);
    if (dtap_src_open_file(&ss, path, &serr) != DTA_OK) {
        if (serr.sys_errno != ENOENT)
            return dta_error_set(err, serr.code, serr.sys_errno, "shard %s: %s", path, serr.msg);
        return note(m, sh->name, err,
                    "shard '%s' is missing: the %zu tensors the index maps to it were not read",
                    sh->name, sh->listed);
    }
    st = r->read_shard(&ss, m, &serr);
    dtap_src_close(&ss);
    if (st != DTA_OK)
        return dta_error_set(err, serr.code, serr.sys_errno, "shard %s: %s", path, serr.msg);
    if (m->files[m->nfiles - 1].format_id != DTA_FORMAT_SAFETENSORS)
        r->safetensors_shards = false;
    sh->present = true;
    sh->ntensors = m->ntensors - sh->first_tensor;
    return DTA_OK;
}

/* Shards read ahead by the threads: shard k goes to slot k % window, which is free again
 * once shard k - window is merged. Each thread reads into models it reuses once merged
 * (their arrays stay warm; a model freed by another thread gave its memory back to the
 * kernel, to be faulted in again) and puts the names and shapes in an arena of its own,
 * which the model takes at the end. */
typedef struct {
    dta_model *part;  /* the shard read whole, NULL when it is left to read_one */
    uint32_t *entry;  /* the entry of each of its tensors, NO_ENTRY; NULL when not known */
    unsigned owner;   /* the thread that read it */
    bool done;
} ahead_slot;

typedef struct {
    void *arena;       /* names and shapes of the shards it read (arena.h) */
    dta_model **spare; /* models merged, emptied, to read into again (window of them) */
    size_t nspare;
} ahead_worker;

typedef struct {
    shard_reader *r;
    ahead_slot *slots;
    ahead_worker *w; /* [0] is the calling thread's, when no thread starts */
    size_t window;
    size_t seed;   /* bytes of a thread's first arena chunk (big pages), 0: none */
    size_t next;   /* the next shard to read ahead */
    size_t merged; /* shards merged into the model so far */
    bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a slot done, room in the window, or stop */
} ahead;

typedef struct {
    ahead *a;
    unsigned id;
} ahead_arg;

/* Reads shard k into part when it is inside the folder, there, and a safetensors file
 * that reads without error (true); false leaves it to read_one. */
static bool read_ahead(const shard_reader *r, size_t k, dta_model *part, void **arena)
{
    dtap_src ss;
    dta_error serr;
    char path[DTA_MAX_INDEX_PATH * 2], where[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", r->dir, r->shards[k].name);
    if (dtap_resolves_inside(r->root, path, where, sizeof where) != 1 ||
        dtap_src_open_file(&ss, path, &serr) != DTA_OK)
        return false;
    bool ok = false;
    if (r->threadsafe(&ss)) {
        void **pa = dtap_model_arena(part);
        *pa = *arena; /* the thread's arena, lent for the read */
        ok = r->read_shard(&ss, part, &serr) == DTA_OK;
        *arena = *pa;
        *pa = NULL;
    }
    dtap_src_close(&ss);
    return ok;
}

/* With a->mu held: thread id reads the next shard inside the window (the lock dropped
 * meanwhile); false when there is none to read now. */
static bool take_one(ahead *a, unsigned id)
{
    if (a->stop || a->next >= a->r->nshards || a->next >= a->merged + a->window)
        return false;
    size_t k = a->next++;
    ahead_worker *w = &a->w[id];
    dta_model *part = w->nspare ? w->spare[--w->nspare] : NULL;
    pthread_mutex_unlock(&a->mu);
    if (!part)
        part = dtap_model_new("", NULL);
    if (!w->arena && a->seed) { /* the thread's share of the names, in big pages */
        void *mem = dtap_alloc_big(a->seed);
        if (mem)
            dtap_arena_seed(&w->arena, mem, a->seed);
    }
    if (part && !read_ahead(a->r, k, part, &w->arena)) {
        dta_model_free(part); /* what a failed read left: not reused */
        part = NULL;
    }
    uint32_t *entry = part ? malloc((part->ntensors ? part->ntensors : 1) * sizeof *entry) : NULL;
    for (size_t i = 0; entry && i < part->ntensors; i++) {
        size_t at, e = wm_find(a->r->mapped, a->r->ents, part->tensors[i].name,
                               strlen(part->tensors[i].name), &at);
        entry[i] = e == SIZE_MAX ? NO_ENTRY : (uint32_t)e;
    }
    pthread_mutex_lock(&a->mu);
    a->slots[k % a->window] = (ahead_slot){.part = part, .entry = entry, .owner = id, .done = true};
    pthread_cond_broadcast(&a->cv);
    return true;
}

static void *ahead_thread(void *arg)
{
    ahead *a = ((ahead_arg *)arg)->a;
    unsigned id = ((ahead_arg *)arg)->id;
    pthread_mutex_lock(&a->mu);
    while (!a->stop && a->next < a->r->nshards)
        if (!take_one(a, id))
            pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* r->entry_of for model tensors [from, to): entry, or NOT_LOOKED_UP when NULL (and for
 * any before from not yet given). */
static bool keep_entries(shard_reader *r, size_t from, size_t to, const uint32_t *entry)
{
    if (to > r->cap_entry_of) {
        size_t ncap = r->cap_entry_of ? r->cap_entry_of : 1024;
        while (ncap < to)
            ncap *= 2; /* to <= DTA_MAX_TENSORS */
        uint32_t *p = realloc(r->entry_of, ncap * sizeof *p);
        if (!p)
            return false;
        r->entry_of = p;
        r->cap_entry_of = ncap;
    }
    for (size_t i = r->n_entry_of; i < to; i++)
        r->entry_of[i] = entry && i >= from ? entry[i - from] : NOT_LOOKED_UP;
    r->n_entry_of = to;
    return true;
}

static unsigned read_threads(size_t nshards)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (nshards < INDEX_THREADS_MIN_SHARDS || cpus < 2)
        return 1;
    return cpus > INDEX_THREADS_MAX ? INDEX_THREADS_MAX : (unsigned)cpus;
}

/* Every shard into m, in order; the first failure's error. */
static dta_status read_shards(shard_reader *r, dta_model *m, dta_error *err)
{
    dta_status st = DTA_OK;
    unsigned nthreads = r->threadsafe ? read_threads(r->nshards) : 1;
    ahead a = {.r = r, .window = (size_t)nthreads * INDEX_WINDOW_PER_THREAD};
    pthread_t th[INDEX_THREADS_MAX];
    ahead_arg args[INDEX_THREADS_MAX];
    dta_model **spares = NULL;
    unsigned started = 0;

    if (nthreads > 1 && (!(a.slots = calloc(a.window, sizeof *a.slots)) ||
                         !(a.w = calloc(nthreads + 1, sizeof *a.w)) ||
                         !(spares = calloc((nthreads + 1) * a.window, sizeof *spares)))) {
        free(a.slots);
        free(a.w);
        nthreads = 1; /* no room to read ahead: one thread */
    }
    if (nthreads == 1) {
        for (size_t k = 0; k < r->nshards && st == DTA_OK; k++)
            st = read_one(r, k, m, err);
        return st;
    }
    for (unsigned t = 0; t <= nthreads; t++)
        a.w[t].spare = spares + (size_t)t * a.window;
    /* names and shapes in a first chunk per thread of its share of the index's size (the
     * index lists the names once, as the headers do): 2 MiB pages when that is 2 MiB or
     * more, the arena's usual chunks otherwise or once it is full */
    if (r->names_bytes / nthreads >= ((size_t)2 << 20))
        a.seed = r->names_bytes / nthreads;
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    /* the calling thread (0) merges, and reads ahead only when no thread starts */
    for (; started < nthreads; started++) {
        args[started] = (ahead_arg){.a = &a, .id = started + 1};
        if (pthread_create(&th[started], NULL, ahead_thread, &args[started]) != 0)
            break;
    }
    for (size_t k = 0; k < r->nshards && st == DTA_OK; k++) {
        ahead_slot *s = &a.slots[k % a.window];
        pthread_mutex_lock(&a.mu);
        while (!s->done)
            if (started || !take_one(&a, 0))
                pthread_cond_wait(&a.cv, &a.mu);
        ahead_slot got = *s;
        *s = (ahead_slot){0};
        pthread_mutex_unlock(&a.mu);
        shard *sh = &r->shards[k];
        sh->first_tensor = m->ntensors;
        bool looked_up = got.entry != NULL;
        if (got.part && dtap_model_append(m, got.part, NULL) == DTA_OK) {
            sh->present = true;
            sh->ntensors = m->ntensors - sh->first_tensor;
        } else {
            st = read_one(r, k, m, err);
            looked_up = false;
        }
        if (st == DTA_OK && !keep_entries(r, sh->first_tensor, m->ntensors,
                                          looked_up ? got.entry : NULL))
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        free(got.entry);
        pthread_mutex_lock(&a.mu);
        if (got.part && !got.part->ntensors && !got.part->nfiles) /* emptied: back to its thread */
            a.w[got.owner].spare[a.w[got.owner].nspare++] = got.part;
        else
            dta_model_free(got.part);
        a.merged = k + 1;
        pthread_cond_broadcast(&a.cv);
        pthread_mutex_unlock(&a.mu);
    }
    pthread_mutex_lock(&a.mu);
    a.stop = true;
    pthread_cond_broadcast(&a.cv);
    pthread_mutex_unlock(&a.mu);
    for (unsigned t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    for (size_t i = 0; i < a.window; i++) { /* read ahead of a failure */
        dta_model_free(a.slots[i].part);
        free(a.slots[i].entry);
    }
    for (unsigned t = 0; t <= nthreads; t++) {
        /* the model's tensors name what the threads' arenas hold */
        dtap_arena_splice(dtap_model_arena(m), &a.w[t].arena);
        for (size_t i = 0; i < a.w[t].nspare; i++)
            dta_model_free(a.w[t].spare[i]);
    }
    free(spares);
    free(a.w);
    free(a.slots);
    pthread_mutex_destroy(&a.mu);
    pthread_cond_destroy(&a.cv);
    return st;
}

/* The index's text, NUL-terminated, in memory the kernel may back with 2 MiB pages
 * (dtap_alloc_big): 8.5 MB for DeepSeek-V3 FP8 was 2,070 page faults, an eighth of an
 * audit's. */
static dta_status read_text(const dtap_src *src, unsigned char **out, dta_error *err)
{
    if (src->size > DTA_MAX_JSON_BYTES)
        return dtap_src_alloc_read(src, 0, src->size, DTA_MAX_JSON_BYTES, out, err);
    unsigned char *p = dtap_alloc_big((size_t)src->size + 1);
    if (!p)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory reading %llu bytes",
                             (unsigned long long)src->size);
    dta_status st = dtap_src_read(src, 0, p, (size_t)src->size, err);
    if (st != DTA_OK) {
        free(p);
        return st;
    }
    p[src->size] = 0;
    *out = p;
    return DTA_OK;
}

dta_status dtap_index_read(const dtap_src *src, dta_model *m, dtap_read_fn read_shard,
                           dtap_threadsafe_fn threadsafe, dta_error *err)
{
    unsigned char *text = NULL;
    ixp x = {0};
    shard *shards = NULL;
    size_t nshards = 0;
    dtap_strmap by_shard = {0};
    wm_set mapped = {0};
    char dir[DTA_MAX_INDEX_PATH];
    dta_status st;
    bool safetensors_shards = true;

    if ((st = read_text(src, &text, err)) != DTA_OK)
        return st;
    /* room for the entries a compact index of this size holds (about 100 bytes each in
     * the hub's, 64 assumed), in one allocation of big pages; more grow it */
    size_t guess = (size_t)src->size / 64;
    x.capents = guess < 1024 ? 1024 : guess > DTA_MAX_TENSORS ? DTA_MAX_TENSORS : guess;
    if (!(x.ents = dtap_alloc_big(x.capents * sizeof *x.ents))) {
        free(text);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    x.p = text;
    x.end = text + src->size;
    if (src->size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        x.p += 3;
    ix_ws(&x);
    bool parsed = x.p < x.end && *x.p == '{' && ix_value(&x, IX_TOP);
    if (x.nomem) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if (!parsed) {
        st = dta_error_set(err, DTA_E_FORMAT, 0, "index is not a JSON object");
        goto out;
    }
    if (!x.wm_object) {
        st = dta_error_set(err, DTA_E_UNSUPPORTED, 0,
                           "a JSON file without a weight_map object, not a checkpoint index");
        goto out;
    }
    if (strlen(src->name) >= sizeof dir) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "index path longer than %zu bytes",
                           sizeof dir - 1);
        goto out;
    }
    snprintf(dir, sizeof dir, "%s", src->name);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;

    /* shards in order of first appearance, with how many tensors each is said to hold */
    size_t nentries = x.nents;
    wm_entry *ents = x.ents;
    if (nentries > DTA_MAX_TENSORS) {
        st = dta_error_set(err, DTA_E_LIMIT, 0, "weight_map has more than %u entries",
                           DTA_MAX_TENSORS);
        goto out;
    }
    /* shards and their names grow as they come: a few hundred, not one per entry */
    size_t cap_shards = 16;
    shards = calloc(cap_shards, sizeof *shards);
    if (!shards || !dtap_strmap_init(&by_shard, cap_shards) || !wm_set_init(&mapped, nentries)) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nentries; i++) {
        wm_entry *e = &ents[i];
        if (!e->shard) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "weight_map entry '%.100s' is not a string",
                               e->name);
            break;
        }
        /* entries of one shard mostly follow each other: its name is checked once */
        bool same = i && (e->shard_same || (e->shard_len == ents[i - 1].shard_len &&
                                            memcmp(e->shard, ents[i - 1].shard, e->shard_len) == 0));
        if (!same && !shard_name_ok(e->shard)) {
            st = dta_error_set(err, DTA_E_FORMAT, 0,
                               "weight_map entry '%.100s' names shard '%.100s' outside the "
                               "index's directory",
                               e->name, e->shard);
            break;
        }
        /* the reference loaders would keep only one of a name listed twice */
        size_t at, put = wm_find(&mapped, ents, e->name, e->name_len, &at);
        if (put == SIZE_MAX) {
            mapped.slot[at] = (uint32_t)(i + 1); /* sized for every entry */
            put = i;
        }
        size_t k = same ? ents[i - 1].shard_k
                        : dtap_strmap_put(&by_shard, e->shard, e->shard_len, nshards);
        if (k == SIZE_MAX) { /* the map could not grow */
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            break;
        }
        if (put != i) {
            st = dta_error_set(err, DTA_E_FORMAT, 0, "weight_map lists '%.100s' twice", e->name);
            break;
        }
        if (k == nshards && nshards == cap_shards) { /* nshards < nentries: no overflow */
            shard *p = realloc(shards, 2 * cap_shards * sizeof *p);
            if (!p) {
                st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
                break;
            }
            shards = p;
            cap_shards *= 2;
        }
        if (k == nshards)
            shards[nshards++] = (shard){.name = e->shard};
        shards[k].listed++;
        e->shard_k = (uint32_t)k; /* k < nentries */
    }
    if (st != DTA_OK)
        goto out;
    /* shards are read only inside the index's folder: a link (or a linked folder) that
     * leads out of it is refused, except into a hub cache's blobs (pathsafe.h) */
    char root[PATH_MAX];
    if (nshards && !dtap_realpath(dir[0] ? dir : ".", root)) {
        st = dta_error_set(err, DTA_E_IO, errno, "cannot resolve the index's folder: %s",
                           strerror(errno));
        goto out;
    }
    dtap_model_presize(m, nentries); /* the shards usually hold what the index lists */
    shard_reader r = {.dir = dir, .root = root, .shards = shards, .nshards = nshards,
                      .read_shard = read_shard, .threadsafe = threadsafe,
                      .safetensors_shards = true, .mapped = &mapped, .ents = ents,
                      .names_bytes = (size_t)src->size};
    st = read_shards(&r, m, err);
    safetensors_shards = r.safetensors_shards;
    if (st != DTA_OK) {
        free(r.entry_of);
        goto out;
    }

    /* index vs shards, both ways: each tensor finds its entry (the first tensor of a name
     * is the one an entry checks), then each entry its tensor */
    for (size_t i = 0; i < m->ntensors; i++) {
        size_t at, k;
        if (i < r.n_entry_of && r.entry_of[i] != NOT_LOOKED_UP) /* by the thread that read it */
            k = r.entry_of[i] == NO_ENTRY ? SIZE_MAX : r.entry_of[i];
        else
            k = wm_find(&mapped, ents, m->tensors[i].name, strlen(m->tensors[i].name), &at);
        if (k != SIZE_MAX) {
            if (ents[k].tensor == NO_TENSOR)
                ents[k].tensor = (uint32_t)i; /* i < DTA_MAX_TENSORS */
        } else if ((st = note(m, m->tensors[i].name, err,
                              "tensor '%s' is in shard %s but not in the index's weight_map",
                              m->tensors[i].name, m->files[m->tensors[i].file].path)) != DTA_OK) {
            break;
        }
    }
    free(r.entry_of);
    for (size_t e = 0; e < nentries && st == DTA_OK; e++) {
        const shard *sh = &shards[ents[e].shard_k];
        if (!sh->present)
            continue;
        size_t i = ents[e].tensor;
        if (i != NO_TENSOR && i >= sh->first_tensor && i < sh->first_tensor + sh->ntensors)
            continue;
        st = note(m, ents[e].name, err, "the index maps '%s' to %s, which does not hold it%s",
                  ents[e].name, ents[e].shard, i != NO_TENSOR ? " (another shard does)" : "");
    }
    if (st != DTA_OK)
        goto out;

    /* metadata.total_size: sum of tensor bytes, each storage once (docs/formats.md 1.6) */
    bool all_present = true;
    for (size_t k = 0; k < nshards; k++)
        all_present &= shards[k].present;
    if (x.ts_number && all_present) {
        uint64_t total = 0;
        bool *seen = calloc(m->nstorages ? m->nstorages : 1, sizeof *seen);
        if (!seen) {
            st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < m->ntensors; i++) {
            const dta_tensor *t = &m->tensors[i];
            if (t->storage != SIZE_MAX && seen[t->storage])
                continue;
            if (t->storage != SIZE_MAX)
                seen[t->storage] = true;
            total += t->nbytes;
        }
        free(seen);
        /* JSON numbers are doubles here: exact up to 2^53 bytes (8 PiB) */
        if (x.total_size < 0 || (double)total != x.total_size) {
            if ((st = note(m, "metadata.total_size", err,
                           "index metadata.total_size is %.0f but the shards' tensors hold %llu "
                           "bytes",
                           x.total_size, (unsigned long long)total)) != DTA_OK)
                goto out;
        }
    }
    dtap_model_set_format(m, safetensors_shards ? DTA_FORMAT_SAFETENSORS_INDEX
                                                : DTA_FORMAT_TORCH_INDEX);
    free(m->index_path);
    if (!(m->index_path = strdup(src->name))) {
        st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    st = DTA_OK;
out:
    free(mapped.slot);
    dtap_strmap_free(&by_shard);
    free(shards);
    free(x.ents);
    free(text);
    return st;
}
