/* The intended-precision table (include/dtaudit/intended.h): parsing and matching.
 *
 * The table is JSON (data/intended.json, compiled in by scripts/embed-text.sh; a policy's
 * "intended" adds local rules). Parsing is strict like policies: unknown keys, unknown
 * dtypes and malformed patterns are errors naming the source and the rule, so that a typo
 * cannot silently widen what is excused. Rule strings point into the cJSON documents the
 * table keeps alive.
 *
 * Matching: the rules that apply to the model (config keys, tensor signature, or none) are
 * selected once; each floating tensor off its root's compute dtype is tried against their
 * patterns in table order. Patterns are dotted-component globs (intended.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtaudit/intended.h"
#include "intended_mark.h"
#include "src.h"

/* scripts/embed-text.sh data/intended.json -> intended_data.c (built, not committed) */
extern const char dtap_intended_json[];
extern const size_t dtap_intended_json_len;

#define MAX_COMPONENTS 32u

typedef struct {
    char **strs; /* joined evidence strings this table allocated */
    size_t nstrs;
} owned;

struct dta_intended {
    dta_intended_rule *rules;
    size_t nrules;
    cJSON **docs;
    size_t ndocs;
    const char ***lists; /* string arrays allocated for rules */
    size_t nlists;
    owned own;
    char *version;
};

static dta_status nomem(dta_error *err)
{
    return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
}

void dta_intended_free(dta_intended *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ndocs; i++)
        cJSON_Delete(t->docs[i]);
    for (size_t i = 0; i < t->nlists; i++)
        free((void *)t->lists[i]);
    for (size_t i = 0; i < t->own.nstrs; i++)
        free(t->own.strs[i]);
    free(t->own.strs);
    free(t->docs);
    free(t->lists);
    free(t->rules);
    free(t->version);
    free(t);
}

const dta_intended_rule *dta_intended_rules(const dta_intended *t, size_t *n)
{
    if (n)
        *n = t ? t->nrules : 0;
    return t ? t->rules : NULL;
}

const char *dta_intended_source_version(const dta_intended *t)
{
    return t ? t->version : NULL;
}

/* ---- pattern matching ------------------------------------------------------------------ */

/* fnmatch-style '*' and '?' over s[0..sn) (one component: no '.' inside). */
static bool glob_n(const char *p, size_t pn, const char *s, size_t sn)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
    while (si < sn) {
        if (pi < pn && (p[pi] == '?' || p[pi] == s[si])) {
            pi++;
            si++;
        } else if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (star != SIZE_MAX) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* A pattern made ready for many names: its first component copied out when it is literal
 * (most patterns), so that only the places a name holds it as a whole component are tried
 * (strstr finds them); ncomp is its number of components. */
typedef struct {
    const char *pattern;
    size_t ncomp;
    size_t p0;  /* bytes of the first component */
    bool lit0;  /* the first component has no '*' or '?' */
    char *first; /* its NUL-terminated copy when lit0: DTA_INTENDED_MAX_PATTERN + 1 bytes */
    uint16_t coff[MAX_COMPONENTS + 1]; /* component k: [coff[k], coff[k + 1] - 1) */
    uint32_t lit;     /* bit k: component k has no '*' or '?' */
    bool fits;        /* coff and lit hold the whole pattern */
} cpattern;

/* first: room for the copy of the first component (DTA_INTENDED_MAX_PATTERN + 1 bytes) */
static bool cpattern_init(cpattern *cp, const char *pattern, char *first)
{
    if (!pattern || !*pattern)
        return false;
    const char *pe0 = strchr(pattern, '.');
    cp->pattern = pattern;
    cp->p0 = pe0 ? (size_t)(pe0 - pattern) : strlen(pattern);
    cp->lit0 = cp->p0 <= DTA_INTENDED_MAX_PATTERN && !memchr(pattern, '*', cp->p0) &&
               !memchr(pattern, '?', cp->p0);
    cp->first = first;
    if (cp->lit0) {
        memcpy(first, pattern, cp->p0);
        first[cp->p0] = 0;
    }
    /* the components, for has_tensor_scan (a table's patterns have at most MAX_COMPONENTS
     * of at most DTA_INTENDED_MAX_PATTERN bytes in all; longer ones never get here) */
    size_t n = strlen(pattern), k = 0;
    cp->ncomp = 0;
    cp->lit = 0;
    cp->fits = false;
    if (n > DTA_INTENDED_MAX_PATTERN)
        return true;
    cp->coff[0] = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || pattern[i] == '.') {
            if (k == MAX_COMPONENTS)
                return true;
            if (!memchr(pattern + cp->coff[k], '*', i - cp->coff[k]) &&
                !memchr(pattern + cp->coff[k], '?', i - cp->coff[k]))
                cp->lit |= 1u << k;
            cp->coff[++k] = (uint16_t)(i + 1);
        }
    cp->ncomp = k;
    cp->fits = true;
    return true;
}

/* Whether the pattern matches the run of name's components that starts at s (just after a
 * dot of name, or name itself). */
static bool match_at(const char *pattern, const char *s)
{
    const char *p = pattern;
    for (;;) {
        const char *pe = strchr(p, '.'), *se = strchr(s, '.');
        size_t pn = pe ? (size_t)(pe - p) : strlen(p);
        size_t sn = se ? (size_t)(se - s) : strlen(s);
        if (!glob_n(p, pn, s, sn))
            return false;
        if (!pe)
            return true;
        if (!se)
            return false;
        p = pe + 1;
        s = se + 1;
    }
}

/* Whether the pattern matches a run of name's components that starts at from or after it
 * (from is name or just after one of its dots). */
static bool cpattern_match_from(const cpattern *cp, const char *name, const char *from)
{
    const char *first = cp->first;
    size_t p0 = cp->p0;
    /* every start component of the name from `from` on */
    for (const char *start = from;;) {
        if (cp->lit0) {
            const char *f = start;
            while ((f = strstr(f, first)) != NULL &&
                   !((f == name || f[-1] == '.') && (f[p0] == '.' || !f[p0])))
                f++;
            if (!f)
                return false;
            start = f;
        }
        if (match_at(cp->pattern, start))
            return true;
        start = strchr(start, '.');
        if (!start)
            return false;
        start++;
    }
}

bool dta_intended_pattern_matches(const char *pattern, const char *name)
{
    cpattern cp;
    char first[DTA_INTENDED_MAX_PATTERN + 1];
    if (!name || !cpattern_init(&cp, pattern, first))
        return false;
    return cpattern_match_from(&cp, name, name);
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct {
    dta_intended *t;
    const char *name;
    const char *origin;
    dta_error *err;
    char where[96];
} pctx;

static dta_status bad(pctx *c, const char *what)
{
    return dta_error_set(c->err, DTA_E_FORMAT, 0, "%s: %s: %s", c->name, c->where, what);
}

static bool valid_pattern(const char *s)
{
    size_t n = strlen(s), comps = 1;
    if (n == 0 || n > DTA_INTENDED_MAX_PATTERN || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return false;
            comps++;
        }
        if ((unsigned char)s[i] < 0x20)
            return false;
    }
    return comps <= MAX_COMPONENTS;
}

/* A string or an array of strings -> a NULL-free list owned by the table. */
static dta_status str_list(pctx *c, const cJSON *v, const char *key, bool patterns,
                           const char *const **out, size_t *n)
{
    char msg[160];
    size_t cnt = 0;
    *out = NULL;
    *n = 0;
    if (!v)
        return DTA_OK;
    if (cJSON_IsString(v))
        cnt = 1;
    else if (cJSON_IsArray(v))
        cnt = (size_t)cJSON_GetArraySize(v);
    else {
        snprintf(msg, sizeof msg, "\"%s\" must be a string or an array of strings", key);
        return bad(c, msg);
    }
    if (cnt > DTA_INTENDED_MAX_PATTERNS) {
        snprintf(msg, sizeof msg, "\"%s\" has more than %u entries", key,
                 DTA_INTENDED_MAX_PATTERNS);
        return dta_error_set(c->err, DTA_E_LIMIT, 0, "%s: %s: %s", c->name, c->where, msg);
    }
    if (cnt == 0)
        return DTA_OK;
    const char **l = calloc(cnt, sizeof *l);
    if (!l)
        return nomem(c->err);
    const char ***lp = realloc(c->t->lists, (c->t->nlists + 1) * sizeof *lp);
    if (!lp) {
        free(l);
        return nomem(c->err);
    }
    c->t->lists = lp;
    lp[c->t->nlists++] = l;
    const cJSON *e = cJSON_IsString(v) ? v : v->child;
    for (size_t i = 0; i < cnt; i++, e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            snprintf(msg, sizeof msg, "\"%s\"[%zu] must be a non-empty string", key, i);
            return bad(c, msg);
        }
        if (patterns && !valid_pattern(e->valuestring)) {
            snprintf(msg, sizeof msg,
                     "\"%s\"[%zu]: a pattern is 1 to %u '.'-separated non-empty components "
                     "of at most %u bytes in all",
                     key, i, MAX_COMPONENTS, DTA_INTENDED_MAX_PATTERN);
            return bad(c, msg);
        }
        l[i] = e->valuestring;
        if (cJSON_IsString(v))
            break;
    }
    *out = l;
    *n = cnt;
    return DTA_OK;
}

static const char *opt_str(pctx *c, const cJSON *v, const char *key, dta_status *st)
{
    char msg[96];
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (!cJSON_IsString(v)) {
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
        *st = bad(c, msg);
        return NULL;
    }
    return v->valuestring;
}

/* evidence: a string or strings, joined with "; " */
static dta_status evidence(pctx *c, const cJSON *v, const char **out)
{
    const char *const *l;
    size_t n, len = 1;
    dta_status st = str_list(c, v, "evidence", false, &l, &n);
    *out = NULL;
    if (st != DTA_OK || n == 0)
        return st;
    for (size_t i = 0; i < n; i++)
        len += strlen(l[i]) + 2;
    char *s = malloc(len), **p = realloc(c->t->own.strs, (c->t->own.nstrs + 1) * sizeof *p);
    if (!s || !p) {
        free(s);
        if (p)
            c->t->own.strs = p;
        return nomem(c->err);
    }
    c->t->own.strs = p;
    p[c->t->own.nstrs++] = s;
    s[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, "; ");
        strcat(s, l[i]);
    }
    *out = s;
    return DTA_OK;
}

static dta_status parse_match(pctx *c, const cJSON *m, dta_intended_rule *r)
{
    static const char *keys[] = {"model_type", "architectures", "class_name", "has_tensor"};
    if (!m)
        return DTA_OK;
    if (!cJSON_IsObject(m))
        return bad(c, "\"match\" must be an object (model_type, architectures, class_name, has_tensor)");
    for (const cJSON *e = m->child; e; e = e->next) {
        size_t k = 0;
        while (k < 4 && strcmp(e->string, keys[k]) != 0)
            k++;
        char msg[200];
        if (k == 4) {
            snprintf(msg, sizeof msg,
                     "unknown key \"match.%.60s\" (model_type, architectures, class_name, has_tensor)",
                     e->string);
            return bad(c, msg);
        }
        dta_status st;
        switch (k) {
        case 0: st = str_list(c, e, "match.model_type", false, &r->model_type, &r->nmodel_type); break;
        case 1: st = str_list(c, e, "match.architectures", false, &r->architectures, &r->narchitectures); break;
        case 2: st = str_list(c, e, "match.class_name", false, &r->class_name, &r->nclass_name); break;
        default: st = str_list(c, e, "match.has_tensor", true, &r->has_tensor, &r->nhas_tensor); break;
        }
        if (st != DTA_OK)
            return st;
    }
    return DTA_OK;
}

static dta_status parse_rule(pctx *c, const cJSON *o, dta_intended_rule *r)
{
    static const char *keys[] = {"id", "origin", "match", "patterns", "sibling", "dtypes", "when",
                                 "kind", "why", "evidence", "since", "until", "read", "comment"};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    const cJSON *v[NKEYS] = {NULL};
    char msg[200];
    dta_status st = DTA_OK;
    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(o))
        return bad(c, "a rule is a JSON object");
    for (const cJSON *e = o->child; e; e = e->next) {
        size_t k = 0;
        while (k < NKEYS && strcmp(e->string, keys[k]) != 0)
            k++;
        if (k == NKEYS) {
            snprintf(msg, sizeof msg,
                     "unknown key \"%.60s\" (id, match, patterns, sibling, dtypes, when, kind, "
                     "why, evidence, since, until)",
                     e->string);
            return bad(c, msg);
        }
        if (v[k])
            return bad(c, "a key given twice");
        v[k] = e;
    }
    r->id = opt_str(c, v[0], "id", &st);
    if (st == DTA_OK && (!r->id || !r->id[0]))
        return bad(c, "\"id\" (a non-empty string) is required");
    snprintf(c->where + strlen(c->where), sizeof c->where - strlen(c->where), " (%.40s)", r->id);
    r->origin = opt_str(c, v[1], "origin", &st);
    if (!r->origin)
        r->origin = c->origin;
    if (st == DTA_OK)
        st = parse_match(c, v[2], r);
    if (st == DTA_OK)
        st = str_list(c, v[3], "patterns", true, &r->patterns, &r->npatterns);
    if (st == DTA_OK && r->npatterns == 0)
        return bad(c, "\"patterns\" (at least one) is required");
    if (st == DTA_OK) {
        r->sibling = opt_str(c, v[4], "sibling", &st);
        if (st == DTA_OK && r->sibling && (!r->sibling[0] || strchr(r->sibling, '.')))
            return bad(c, "\"sibling\" is one name component (e.g. \"A_log\")");
    }
    if (st == DTA_OK) {
        const char *const *l;
        size_t n;
        st = str_list(c, v[5], "dtypes", false, &l, &n);
        if (st == DTA_OK && n == 0)
            return bad(c, "\"dtypes\" (at least one floating dtype) is required");
        for (size_t i = 0; i < n && st == DTA_OK; i++) {
            dta_dtype d = dta_dtype_from_alias(l[i]);
            if (d == DTA_DTYPE_NONE || !dta_dtype_is_float(d) || (int)d >= 64) {
                snprintf(msg, sizeof msg, "\"dtypes\"[%zu]: '%.40s' is not a floating dtype", i,
                         l[i]);
                return bad(c, msg);
            }
            r->dtypes |= 1ull << d;
        }
    }
    if (st == DTA_OK) {
        const char *w = opt_str(c, v[6], "when", &st);
        if (st == DTA_OK) {
            if (!w || strcmp(w, "any") == 0)
                r->when = DTA_WHEN_ANY;
            else if (strcmp(w, "half") == 0)
                r->when = DTA_WHEN_HALF;
            else if (strcmp(w, "fp16") == 0)
                r->when = DTA_WHEN_FP16;
            else
                return bad(c, "\"when\" is \"any\", \"half\" (fp16 or bf16) or \"fp16\"");
        }
    }
    if (st == DTA_OK)
        r->kind = opt_str(c, v[7], "kind", &st);
    if (st == DTA_OK)
        r->why = opt_str(c, v[8], "why", &st);
    if (st == DTA_OK)
        st = evidence(c, v[9], &r->evidence);
    if (st == DTA_OK)
        r->since = opt_str(c, v[10], "since", &st);
    if (st == DTA_OK)
        r->until = opt_str(c, v[11], "until", &st);
    if (st == DTA_OK)
        (void)opt_str(c, v[12], "read", &st);
    if (!r->kind)
        r->kind = "declared";
    if (!r->why)
        r->why = "listed in the intended-precision table";
    if (!r->evidence)
        r->evidence = "";
    return st;
}

static dta_status parse_rules(pctx *c, const cJSON *arr)
{
    if (!cJSON_IsArray(arr))
        return dta_error_set(c->err, DTA_E_FORMAT, 0, "%s: \"rules\" must be an array of rules",
                             c->name);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > DTA_INTENDED_MAX_RULES)
        return dta_error_set(c->err, DTA_E_LIMIT, 0, "%s: more than %u intended rules", c->name,
                             DTA_INTENDED_MAX_RULES);
    c->t->rules = calloc(n ? n : 1, sizeof *c->t->rules);
    if (!c->t->rules)
        return nomem(c->err);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        snprintf(c->where, sizeof c->where, "rules[%zu]", i);
        dta_status st = parse_rule(c, e, &c->t->rules[c->t->nrules]);
        if (st != DTA_OK)
            return st;
        c->t->nrules++;
    }
    return DTA_OK;
}

dta_status dta_intended_parse(const char *text, size_t n, const char *name,
                              const char *default_origin, dta_intended **out, dta_error *err)
{
    pctx c = {NULL, name ? name : "intended", default_origin ? default_origin : "local", err, ""};
    *out = NULL;
    if (n > DTA_INTENDED_MAX_BYTES)
        return dta_error_set(err, DTA_E_LIMIT, 0, "%s: intended table larger than %u bytes",
                             c.name, DTA_INTENDED_MAX_BYTES);
    cJSON *doc = cJSON_ParseWithLength(text, n);
    if (!doc)
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: not valid JSON", c.name);
    c.t = calloc(1, sizeof *c.t);
    cJSON **docs = malloc(sizeof *docs);
    if (!c.t || !docs) {
        free(docs);
        free(c.t);
        cJSON_Delete(doc);
        return nomem(err);
    }
    c.t->docs = docs;
    c.t->docs[c.t->ndocs++] = doc;
    dta_status st;
    if (cJSON_IsArray(doc)) {
        st = parse_rules(&c, doc);
    } else if (cJSON_IsObject(doc)) {
        st = parse_rules(&c, cJSON_GetObjectItemCaseSensitive(doc, "rules"));
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(doc, "sources");
        const cJSON *tf = cJSON_GetObjectItemCaseSensitive(src, "transformers");
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(tf, "version");
        if (st == DTA_OK && cJSON_IsString(ver)) {
            size_t len = strlen(ver->valuestring) + 16;
            if (!(c.t->version = malloc(len)))
                st = nomem(err);
            else
                snprintf(c.t->version, len, "transformers %s", ver->valuestring);
        }
    } else {
        st = dta_error_set(err, DTA_E_FORMAT, 0,
                           "%s: an intended table is an object with \"rules\" or an array of rules",
                           c.name);
    }
    if (st != DTA_OK) {
        dta_intended_free(c.t);
        return st;
    }
    /* the rule arrays moved into place: rebase the list pointers kept for freeing */
    *out = c.t;
    return DTA_OK;
}

dta_status dta_intended_builtin(dta_intended **out, dta_error *err)
{
    return dta_intended_parse(dtap_intended_json, dtap_intended_json_len,
                              "built-in intended table", "curated", out, err);
}

dta_status dta_intended_prepend(dta_intended *t, dta_intended *more, dta_error *err)
{
    if (!more)
        return DTA_OK;
    size_t n = t->nrules + more->nrules;
    if (n > DTA_INTENDED_MAX_RULES) {
        dta_intended_free(more);
        return dta_error_set(err, DTA_E_LIMIT, 0, "more than %u intended rules",
                             DTA_INTENDED_MAX_RULES);
    }
    dta_intended_rule *r = malloc((n ? n : 1) * sizeof *r);
    cJSON **d = realloc(t->docs, (t->ndocs + more->ndocs) * sizeof *d);
    if (d)
        t->docs = d;
    const char ***l = realloc(t->lists, (t->nlists + more->nlists + 1) * sizeof *l);
    if (l)
        t->lists = l;
    char **s = realloc(t->own.strs, (t->own.nstrs + more->own.nstrs + 1) * sizeof *s);
    if (s)
        t->own.strs = s;
    if (!r || !d || !l || !s) {
        free(r);
        dta_intended_free(more);
        return nomem(err);
    }
    if (more->nrules)
        memcpy(r, more->rules, more->nrules * sizeof *r);
    if (t->nrules)
        memcpy(r + more->nrules, t->rules, t->nrules * sizeof *r);
    free(t->rules);
    t->rules = r;
    t->nrules = n;
    if (more->ndocs) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(t->docs + t->ndocs, more->docs, more->ndocs * sizeof *d);
    t->ndocs += more->ndocs;
    if (more->nlists)
        memcpy(t->lists + t->nlists, more->lists, more->nlists * sizeof *l);
    t->nlists += more->nlists;
    if (more->own.nstrs)
        memcpy(t->own.strs + t->own.nstrs, more->own.strs, more->own.nstrs * sizeof *s);
    t->own.nstrs += more->own.nstrs;
    /* everything moved: free only more's containers */
    free(more->rules);
    free(more->docs);
    free(more->lists);
    free(more->own.strs);
    free(more->version);
    free(more);
    return DTA_OK;
}

/* ---- matching ------------------------------------------------------------------------------ */

static bool in_list(const char *const *l, size_t n, char *const *have, size_t nhave)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < nhave; k++)
            if (strcmp(l[i], have[k]) == 0)
                return true;
    return false;
}

/* Whether the config keys (model_type, architectures, class_name) select rule r. */
static bool config_selects(const dta_intended_rule *r, const dta_model *m)
{
    if (in_list(r->model_type, r->nmodel_type, m->model_types, m->nmodel_types) ||
        in_list(r->architectures, r->narchitectures, m->architectures, m->narchitectures))
        return true;
    if (m->class_name)
        for (size_t i = 0; i < r->nclass_name; i++)
            if (strcmp(r->class_name[i], m->class_name) == 0)
                return true;
    return false;
}

static bool keyed(const dta_intended_rule *r)
{
    return r->nmodel_type || r->narchitectures || r->nclass_name || r->nhas_tensor;
}

#define SCAN_BATCH 64u /* has_tensor patterns tried in one pass over the names */

/* Whether the pattern matches the run of name's components that ends with [cs, ce), compared
 * from its last component back. */
static bool run_ends_at(const cpattern *cp, const char *name, size_t cs, size_t ce)
{
    for (size_t k = cp->ncomp; k-- > 0;) {
        const char *p = cp->pattern + cp->coff[k];
        size_t pn = (size_t)(cp->coff[k + 1] - cp->coff[k]) - 1;
        if ((cp->lit >> k) & 1) {
            if (pn != ce - cs || memcmp(p, name + cs, pn) != 0)
                return false;
        } else if (!glob_n(p, pn, name + cs, ce - cs)) {
            return false;
        }
        if (k == 0)
            return true;
        if (cs == 0)
            return false; /* the name has fewer components before this one */
        ce = cs - 1; /* the dot before it */
        cs = ce;
        while (cs > 0 && name[cs - 1] != '.')
            cs--;
    }
    return false;
}

/* found[j] = whether pattern pats[j] matches some tensor name, for n <= SCAN_BATCH patterns,
 * in one pass. Tensors come grouped by module: a name is tried only on the runs of
 * components that end past what it shares with the name before it (a run inside the
 * shared components was tried on that name already), and a run only when its last
 * component has the length of the pattern's last one (when literal). firsts: n *
 * (MAX_PATTERN + 1) bytes. */
static void has_tensor_scan(const dta_model *m, const char *const *pats, size_t n, bool *found,
                            cpattern *cps, char *firsts)
{
    uint64_t active = 0, bylen[64] = {0}; /* bit j: pattern j; by its last component's length */
    for (size_t j = 0; j < n; j++) {
        found[j] = false;
        if (!cpattern_init(&cps[j], pats[j], firsts + j * (DTA_INTENDED_MAX_PATTERN + 1)))
            continue; /* an empty pattern matches nothing */
        if (!cps[j].fits) { /* not from a table (valid_pattern): tried on every name */
            for (size_t i = 0; i < m->ntensors && !found[j]; i++)
                found[j] = cpattern_match_from(&cps[j], m->tensors[i].name, m->tensors[i].name);
            continue;
        }
        size_t k = cps[j].ncomp;
        size_t ln = (size_t)(cps[j].coff[k] - cps[j].coff[k - 1]) - 1;
        active |= 1ull << j;
        if ((cps[j].lit >> (k - 1)) & 1)
            bylen[ln < 63 ? ln : 63] |= 1ull << j;
        else
            for (size_t l = 0; l < 64; l++)
                bylen[l] |= 1ull << j;
    }
    const char *prev = NULL;
    size_t plen = 0;
    for (size_t i = 0; i < m->ntensors && active; i++) {
        const char *name = m->tensors[i].name;
        size_t len = strlen(name), lim = len < plen ? len : plen, d = 0;
        if (prev) {
            while (d + 8 <= lim) {
                uint64_t a, b;
                memcpy(&a, name + d, 8);
                memcpy(&b, prev + d, 8);
                if (a != b) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                    d += (size_t)(__builtin_ctzll(a ^ b) >> 3); /* the first byte off */
                    lim = d;
#endif
                    break;
                }
                d += 8;
            }
            while (d < lim && name[d] == prev[d])
                d++;
        }
        prev = name;
        plen = len;
        /* the first component not shared: the one holding the first difference */
        size_t cs = d;
        while (cs > 0 && name[cs - 1] != '.')
            cs--;
        /* each component [cs, ce) from there on ends the runs to try */
        for (;;) {
            const char *dot = memchr(name + cs, '.', len - cs);
            size_t ce = dot ? (size_t)(dot - name) : len;
            uint64_t want = bylen[ce - cs < 63 ? ce - cs : 63] & active;
            while (want) {
                size_t j = (size_t)__builtin_ctzll(want);
                want &= want - 1;
                if (run_ends_at(&cps[j], name, cs, ce)) {
                    found[j] = true;
                    active &= ~(1ull << j);
                }
            }
            if (!dot)
                break;
            cs = ce + 1;
        }
    }
}

/* Whether a rule applies to the model: unkeyed, selected by the config keys, or every
 * has_tensor key matching a tensor (keyed rules list has_tensor to need them all). The
 * has_tensor keys cost a pass over the names: they are tried only for a rule whose
 * patterns, dtypes and "when" fit a tensor (rule_applies), at most once per rule. */
enum { APPLIES_NO, APPLIES_YES, APPLIES_UNKNOWN };

typedef struct {
    uint8_t *state;  /* per rule: APPLIES_* */
    cpattern *cps;   /* has_tensor_scan's scratch, made when first needed */
    char *firsts;
} selection;

static void select_rules(const dta_intended *t, const dta_model *m, uint8_t *state)
{
    for (size_t k = 0; k < t->nrules; k++) {
        const dta_intended_rule *r = &t->rules[k];
        state[k] = !keyed(r) || config_selects(r, m) ? APPLIES_YES
                   : r->nhas_tensor                  ? APPLIES_UNKNOWN
                                                     : APPLIES_NO;
    }
}

static dta_status rule_applies(const dta_intended *t, const dta_model *m, size_t k,
                               selection *sl, bool *out, dta_error *err)
{
    const dta_intended_rule *r = &t->rules[k];
    if (sl->state[k] == APPLIES_UNKNOWN) {
        if (!sl->cps && (!(sl->cps = malloc(SCAN_BATCH * sizeof *sl->cps)) ||
                         !(sl->firsts = malloc(SCAN_BATCH * (DTA_INTENDED_MAX_PATTERN + 1)))))
            return nomem(err);
        bool found[SCAN_BATCH], all = true;
        for (size_t b = 0; b < r->nhas_tensor && all; b += SCAN_BATCH) {
            size_t n = r->nhas_tensor - b < SCAN_BATCH ? r->nhas_tensor - b : SCAN_BATCH;
            has_tensor_scan(m, r->has_tensor + b, n, found, sl->cps, sl->firsts);
            for (size_t j = 0; j < n; j++)
                all = all && found[j];
        }
        sl->state[k] = all ? APPLIES_YES : APPLIES_NO;
    }
    *out = sl->state[k] == APPLIES_YES;
    return DTA_OK;
}

static bool when_ok(dta_intended_when w, dta_dtype dom)
{
    switch (w) {
    case DTA_WHEN_HALF: return dom == DTA_F16 || dom == DTA_BF16;
    case DTA_WHEN_FP16: return dom == DTA_F16;
    default: return true;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Is "<module of name>.<sibling>" a tensor of the model? sorted: the names, sorted. */
static bool sibling_exists(const char *const *sorted, size_t n, const char *name,
                           const char *sibling)
{
    const char *dot = strrchr(name, '.');
    size_t mlen = dot ? (size_t)(dot - name) + 1 : 0, slen = strlen(sibling);
    char buf[512], *key = buf;
    if (mlen + slen + 1 > sizeof buf && !(key = malloc(mlen + slen + 1)))
        return false;
    memcpy(key, name, mlen);
    memcpy(key + mlen, sibling, slen + 1);
    bool found = bsearch(&key, sorted, n, sizeof *sorted, cmp_str) != NULL;
    if (key != buf)
        free(key);
    return found;
}

/* A tensor the rules are tried on: floating, off its root's compute dtype. */
static bool candidate(const dta_tensor *tn, dta_dtype dom)
{
    return dta_dtype_is_float(tn->dtype) && dom != DTA_DTYPE_NONE && tn->dtype != dom &&
           (int)tn->dtype < 64;
}

dta_status dta_intended_mark(const dta_intended *t, const dta_model *m,
                             const dta_dtype *tensor_dominant, const dta_intended_rule **out,
                             dta_error *err)
{
    return dtap_intended_mark_some(t, m, NULL, m->ntensors, tensor_dominant, out, err);
}

dta_status dtap_intended_mark_some(const dta_intended *t, const dta_model *m,
                                   const uint32_t *idx, size_t n, const dta_dtype *dom_of,
                                   const dta_intended_rule **out, dta_error *err)
{
    for (size_t j = 0; j < n; j++)
        out[j] = NULL;
    if (!t || t->nrules == 0 || n == 0)
        return DTA_OK;
    /* nothing to excuse: no floating tensor off its root's compute dtype */
    size_t j0 = 0;
    while (j0 < n && !candidate(&m->tensors[idx ? idx[j0] : j0], dom_of[j0]))
        j0++;
    if (j0 == n)
        return DTA_OK;
    const dta_intended_rule **sel = malloc(t->nrules * sizeof *sel);
    size_t *selk = malloc(t->nrules * sizeof *selk);
    selection sl = {malloc(t->nrules), NULL, NULL};
    size_t nsel = 0;
    dta_status st = DTA_OK;
    if (!sel || !selk || !sl.state) {
        free(sel);
        free(selk);
        free(sl.state);
        return nomem(err);
    }
    select_rules(t, m, sl.state);
    for (size_t k = 0; k < t->nrules; k++)
        if (sl.state[k] != APPLIES_NO) {
            selk[nsel] = k;
            sel[nsel++] = &t->rules[k];
        }
    /* the sorted names for sibling rules, made when a tensor first needs them */
    const char **sorted = NULL;
    for (size_t j = j0; j < n && nsel && st == DTA_OK; j++) {
        const dta_tensor *tn = &m->tensors[idx ? idx[j] : j];
        dta_dtype dom = dom_of[j];
        if (!candidate(tn, dom))
            continue;
        for (size_t k = 0; k < nsel && !out[j] && st == DTA_OK; k++) {
            const dta_intended_rule *r = sel[k];
            if (!(r->dtypes & (1ull << tn->dtype)) || !when_ok(r->when, dom))
                continue;
            bool hit = false;
            for (size_t p = 0; p < r->npatterns && !hit; p++)
                hit = dta_intended_pattern_matches(r->patterns[p], tn->name);
            if (hit && r->sibling && !sorted) {
                if (!(sorted = malloc(m->ntensors * sizeof *sorted))) {
                    st = nomem(err);
                    break;
                }
                for (size_t k2 = 0; k2 < m->ntensors; k2++)
                    sorted[k2] = m->tensors[k2].name;
                qsort(sorted, m->ntensors, sizeof *sorted, cmp_str);
            }
            if (hit && r->sibling)
                hit = sibling_exists(sorted, m->ntensors, tn->name, r->sibling);
            if (hit)
                st = rule_applies(t, m, selk[k], &sl, &hit, err);
            if (hit && st == DTA_OK)
                out[j] = r;
        }
    }
    free(sorted);
    free(sel);
    free(selk);
    free(sl.state);
    free(sl.cps);
    free(sl.firsts);
    return st;
}
