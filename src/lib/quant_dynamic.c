/* GPTQModel's per-module overrides (quant_dynamic.h).
 *
 * quantization_config "dynamic" maps a pattern to overrides, in order: "-:PATTERN" marks
 * the modules it matches as not quantized, "+:PATTERN" or "PATTERN" gives them their own
 * "bits" / "group_size" (and other fields dtaudit does not need). GPTQModel's dynamic_get
 * takes the first pattern that matches the module name with Python's re.match (anchored
 * at the start only). Only whether a pattern matches matters here, so a pattern is
 * translated to a POSIX extended regular expression: literals, ".", "[...]" classes,
 * groups "(...)" and "(?:...)", "|", the quantifiers * + ? {m,n} (lazy ones as greedy:
 * the same strings match), "^" "$" "\A" "\Z", and the escapes \d \D \w \W \s \S \. and
 * the other escaped punctuation. Anything else (lookarounds, named groups, backreferences,
 * possessive quantifiers, inline flags) is "a pattern dtaudit cannot evaluate". */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "quant_dynamic.h"

#define QD_MAX_RULES 4096u
#define QD_MAX_PATTERN 4096u

typedef struct {
    bool negative;
    bool usable;   /* translated and compiled */
    regex_t re;
    long bits, group; /* DTAP_QDYN_ABSENT: not overridden */
    char *pattern;    /* as written (without "+:" / "-:") */
} qd_rule;

struct dtap_qdyn {
    qd_rule *rules;
    size_t n;
};

/* Appends s to the growing buffer o (cap bytes); false when full. */
static bool put(char *o, size_t *at, size_t cap, const char *s)
{
    size_t l = strlen(s);
    if (*at + l + 1 > cap)
        return false;
    memcpy(o + *at, s, l + 1);
    *at += l;
    return true;
}

/* Python re pattern p -> POSIX ERE "^(...)" in o; false: not in the subset. */
static bool translate(const char *p, char *o, size_t cap)
{
    size_t at = 0;
    bool in_class = false;
    if (!put(o, &at, cap, "^("))
        return false;
    for (size_t i = 0; p[i]; i++) {
        char c = p[i], one[2] = {c, 0};
        if (c == '\\') {
            char e = p[++i];
            const char *rep = NULL;
            switch (e) {
            case 'd': rep = in_class ? "0-9" : "[0-9]"; break;
            case 'w': rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
            case 's': rep = in_class ? " \t\n\r\f\v" : "[ \t\n\r\f\v]"; break;
            case 'D': rep = in_class ? NULL : "[^0-9]"; break;
            case 'W': rep = in_class ? NULL : "[^A-Za-z0-9_]"; break;
            case 'S': rep = in_class ? NULL : "[^ \t\n\r\f\v]"; break;
            case 'A': rep = in_class ? NULL : "^"; break;
            case 'Z': rep = in_class ? NULL : "$"; break;
            default:
                if (e && strchr(".^$*+?()[]{}|\\/-_:#&~=!<>,'\"@%", e)) {
                    char lit[5];
                    if (in_class)
                        snprintf(lit, sizeof lit, "%c", e == '\\' ? '\\' : e);
                    else
                        snprintf(lit, sizeof lit, "[%c]", e);
                    if (in_class && (e == ']' || e == '^' || e == '-' || e == '['))
                        return false; /* a class needing POSIX placement rules */
                    if (!in_class && e == '^')
                        snprintf(lit, sizeof lit, "\\^");
                    if (!in_class && e == '\\')
                        snprintf(lit, sizeof lit, "\\\\");
                    if (!put(o, &at, cap, lit))
                        return false;
                    continue;
                }
                return false; /* \b, \1, \n, \x.., \u.. ... */
            }
            if (!rep || !put(o, &at, cap, rep))
                return false;
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = false;
            else if (c == '[')
                return false; /* POSIX [: :] / nested sets differ */
            if (!put(o, &at, cap, one))
                return false;
            continue;
        }
        switch (c) {
        case '[':
            in_class = true;
            if (!put(o, &at, cap, "["))
                return false;
            if (p[i + 1] == '^') {
                i++;
                if (!put(o, &at, cap, "^"))
                    return false;
            }
            if (p[i + 1] == ']') { /* a literal ] first */
                i++;
                if (!put(o, &at, cap, "]"))
                    return false;
            }
            continue;
        case '(':
            if (p[i + 1] == '?') {
                if (p[i + 2] != ':')
                    return false; /* lookarounds, named groups, flags */
                i += 2;
            }
            if (!put(o, &at, cap, "("))
                return false;
            continue;
        case '*': case '+': case '?': case '}':
            if (!put(o, &at, cap, one))
                return false;
            if (p[i + 1] == '?') /* lazy: the same strings match */
                i++;
            else if (p[i + 1] == '+' || (c != '?' && p[i + 1] == '*'))
                return false; /* possessive, or a quantifier of a quantifier */
            continue;
        default:
            if (!put(o, &at, cap, one))
                return false;
        }
    }
    return !in_class && put(o, &at, cap, ")");
}

static long int_field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= -1e9 && v->valuedouble <= 1e9 &&
                   v->valuedouble == (double)(long)v->valuedouble
               ? (long)v->valuedouble : DTAP_QDYN_ABSENT;
}

dta_status dtap_qdyn_parse(const char *config, dtap_qdyn **out, dta_error *err)
{
    *out = NULL;
    cJSON *doc = config ? cJSON_Parse(config) : NULL;
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(doc, "dynamic");
    if (!cJSON_IsObject(dyn) || !dyn->child) {
        cJSON_Delete(doc);
        return DTA_OK;
    }
    dtap_qdyn *d = calloc(1, sizeof *d);
    size_t n = 0;
    for (const cJSON *r = dyn->child; r; r = r->next)
        n++;
    if (n > QD_MAX_RULES)
        n = QD_MAX_RULES;
    if (d)
        d->rules = calloc(n, sizeof *d->rules);
    if (!d || !d->rules) {
        free(d);
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    for (const cJSON *r = dyn->child; r && d->n < n; r = r->next) {
        qd_rule *x = &d->rules[d->n++];
        const char *k = r->string ? r->string : "";
        x->negative = !strncmp(k, "-:", 2);
        if (x->negative || !strncmp(k, "+:", 2))
            k += 2;
        x->pattern = strdup(k);
        x->bits = int_field(r, "bits");
        x->group = int_field(r, "group_size");
        char *buf = malloc(2 * QD_MAX_PATTERN + 8);
        x->usable = buf && x->pattern && strlen(k) <= QD_MAX_PATTERN &&
                    translate(k, buf, 2 * QD_MAX_PATTERN + 8) &&
                    regcomp(&x->re, buf, REG_EXTENDED | REG_NOSUB) == 0;
        free(buf);
        if (!x->pattern) {
            dtap_qdyn_free(d);
            cJSON_Delete(doc);
            return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
        }
    }
    cJSON_Delete(doc);
    *out = d;
    return DTA_OK;
}

void dtap_qdyn_free(dtap_qdyn *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        if (d->rules[i].usable)
            regfree(&d->rules[i].re);
        free(d->rules[i].pattern);
    }
    free(d->rules);
    free(d);
}

int dtap_qdyn_match(const dtap_qdyn *d, const char *module, long *bits, long *group,
                    const char **pattern)
{
    *bits = *group = DTAP_QDYN_ABSENT;
    if (pattern)
        *pattern = NULL;
    for (size_t i = 0; d && i < d->n; i++) {
        const qd_rule *x = &d->rules[i];
        if (pattern)
            *pattern = x->pattern;
        if (!x->usable)
            return DTAP_QDYN_UNKNOWN; /* cannot tell whether this one, first, matches */
        if (regexec(&x->re, module, 0, NULL, 0) != 0)
            continue;
        if (x->negative)
            return DTAP_QDYN_SKIP;
        *bits = x->bits;
        *group = x->group;
        return DTAP_QDYN_OVERRIDE;
    }
    if (pattern)
        *pattern = NULL;
    return DTAP_QDYN_NONE;
}
