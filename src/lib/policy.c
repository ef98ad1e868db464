/* Policy files (include/dtaudit/policy.h); the rule catalogue is rules.c.
 *
 * A policy file is hostile input like any checkpoint: it is read with a size cap, parsed
 * by cJSON, and every key is checked; the first problem stops the load with one line that
 * names the file and the key ("p.json: allow[2]: unknown dtype 'f33'"). Unknown keys and
 * unknown rule names are errors: in CI a typo must not silently weaken the gate. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtaudit/policy.h"
#include "src.h"

int dta_severity_override_from_name(const char *s)
{
    if (strcmp(s, "off") == 0)
        return DTA_SEV_OFF;
    int v = dta_severity_from_name(s);
    return v >= DTA_SEV_INFO && v <= DTA_SEV_ERROR ? v : -2;
}

void dta_policy_free(dta_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nallow; i++)
        free((char *)p->allow[i].glob);
    free(p->allow);
    free(p->severity); /* rule names are the catalogue's static strings */
    free(p->description);
    free(p->path);
    dta_intended_free(p->intended);
    free(p);
}

typedef struct {
    dta_policy *p;
    const char *name;
    dta_error *err;
} pctx;

static dta_status bad(pctx *c, const char *what, const char *detail)
{
    return dta_error_set(c->err, DTA_E_FORMAT, 0, "%s: %s: %s", c->name, what, detail);
}

/* "'x'" shortened for a message (dta_error_set escapes control bytes, as everywhere). */
static const char *quoted(char *buf, size_t cap, const char *s)
{
    size_t o = 0;
    buf[o++] = '\'';
    for (; *s && o + 5 < cap; s++)
        buf[o++] = *s;
    if (*s && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = 0;
    return buf;
}

static dta_status add_allow(pctx *c, const char *where, const char *glob, size_t glob_len,
                            const char *dtype)
{
    char q[96], msg[160];
    dta_allow a = {NULL, DTA_DTYPE_NONE};
    if (c->p->nallow >= DTA_MAX_POLICY_RULES) {
        snprintf(msg, sizeof msg, "more than %u allow rules", DTA_MAX_POLICY_RULES);
        return dta_error_set(c->err, DTA_E_LIMIT, 0, "%s: %s: %s", c->name, where, msg);
    }
    if (glob_len == 0)
        return bad(c, where, "empty pattern");
    if (glob_len > DTA_MAX_POLICY_GLOB)
        return bad(c, where, "pattern longer than 4096 bytes");
    if (dtype && strcmp(dtype, "*") != 0 && strcmp(dtype, "any") != 0) {
        a.dtype = dta_dtype_from_alias(dtype);
        if (a.dtype == DTA_DTYPE_NONE) {
            snprintf(msg, sizeof msg, "unknown dtype %s", quoted(q, sizeof q, dtype));
            return bad(c, where, msg);
        }
    }
    dta_allow *p = realloc(c->p->allow, (c->p->nallow + 1) * sizeof *p);
    if (!p)
        return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    c->p->allow = p;
    char *g = malloc(glob_len + 1);
    if (!g)
        return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
    memcpy(g, glob, glob_len);
    g[glob_len] = 0;
    a.glob = g;
    p[c->p->nallow++] = a;
    return DTA_OK;
}

static dta_status parse_allow(pctx *c, const cJSON *v)
{
    char where[64];
    dta_status st = DTA_OK;
    size_t i = 0;
    if (cJSON_IsObject(v)) {
        /* {GLOB: DTYPE or null} */
        for (const cJSON *e = v->child; e && st == DTA_OK; e = e->next, i++) {
            snprintf(where, sizeof where, "allow[%zu]", i);
            if (!e->string)
                return bad(c, where, "entry without a name");
            if (!cJSON_IsString(e) && !cJSON_IsNull(e))
                return bad(c, where, "expected a dtype string or null (any dtype)");
            st = add_allow(c, where, e->string, strlen(e->string),
                           cJSON_IsString(e) ? e->valuestring : NULL);
        }
        return st;
    }
    if (!cJSON_IsArray(v))
        return bad(c, "allow", "expected an array of \"GLOB[=DTYPE]\" strings or objects");
    for (const cJSON *e = v->child; e && st == DTA_OK; e = e->next, i++) {
        snprintf(where, sizeof where, "allow[%zu]", i);
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *eq = strrchr(s, '=');
            st = add_allow(c, where, s, eq ? (size_t)(eq - s) : strlen(s), eq ? eq + 1 : NULL);
        } else if (cJSON_IsObject(e)) {
            const cJSON *g = NULL, *d = NULL;
            for (const cJSON *k = e->child; k; k = k->next) {
                char q[96], msg[160];
                if (strcmp(k->string, "glob") == 0 && !g)
                    g = k;
                else if (strcmp(k->string, "dtype") == 0 && !d)
                    d = k;
                else if (strcmp(k->string, "reason") == 0 && cJSON_IsString(k))
                    continue;
                else {
                    snprintf(msg, sizeof msg, "unexpected key %s (glob, dtype, reason)",
                             quoted(q, sizeof q, k->string));
                    return bad(c, where, msg);
                }
            }
            if (!cJSON_IsString(g))
                return bad(c, where, "\"glob\" must be a string");
            if (d && !cJSON_IsString(d) && !cJSON_IsNull(d))
                return bad(c, where, "\"dtype\" must be a string or null");
            st = add_allow(c, where, g->valuestring, strlen(g->valuestring),
                           cJSON_IsString(d) ? d->valuestring : NULL);
        } else {
            return bad(c, where, "expected a \"GLOB[=DTYPE]\" string or an object");
        }
    }
    return st;
}

static dta_status parse_severity(pctx *c, const cJSON *v)
{
    char where[128], q[96], msg[200];
    if (!cJSON_IsObject(v))
        return bad(c, "severity", "expected an object {\"RULE\": \"error|warning|info|off\"}");
    for (const cJSON *e = v->child; e; e = e->next) {
        const dta_rule_info *ri = dta_rule_find(e->string);
        snprintf(where, sizeof where, "severity.%s", quoted(q, sizeof q, e->string ? e->string : ""));
        if (!ri) {
            snprintf(msg, sizeof msg, "unknown rule (see dtaudit --help for the rules)");
            return bad(c, where, msg);
        }
        for (size_t k = 0; k < c->p->nseverity; k++)
            if (c->p->severity[k].rule == ri->name)
                return bad(c, where, "given twice");
        int s = cJSON_IsString(e) ? dta_severity_override_from_name(e->valuestring) : -2;
        if (s == -2)
            return bad(c, where, "expected \"error\", \"warning\", \"info\" or \"off\"");
        dta_rule_severity *p = realloc(c->p->severity, (c->p->nseverity + 1) * sizeof *p);
        if (!p)
            return dta_error_set(c->err, DTA_E_NOMEM, ENOMEM, "out of memory");
        c->p->severity = p;
        p[c->p->nseverity].rule = ri->name;
        p[c->p->nseverity].severity = s;
        c->p->nseverity++;
    }
    return DTA_OK;
}

dta_status dta_policy_parse(const char *text, size_t n, const char *name, dta_policy **out,
                            dta_error *err)
{
    pctx c = {NULL, name ? name : "policy", err};
    dta_status st = DTA_OK;
    const char *end = NULL;
    char q[96], msg[200];

    *out = NULL;
    if (n > DTA_MAX_POLICY_BYTES)
        return dta_error_set(err, DTA_E_LIMIT, 0, "%s: policy file larger than %u bytes",
                             c.name, DTA_MAX_POLICY_BYTES);
    if (n == 0)
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: empty policy file", c.name);
    cJSON *doc = cJSON_ParseWithLengthOpts(text, n, &end, false);
    if (!doc) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: not valid JSON (near byte %zu)", c.name,
                             at);
    }
    /* only whitespace may follow the document */
    for (const char *p = end; p && p < text + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(doc);
            return dta_error_set(err, DTA_E_FORMAT, 0,
                                 "%s: not valid JSON (data after the document at byte %zu)",
                                 c.name, (size_t)(p - text));
        }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return dta_error_set(err, DTA_E_FORMAT, 0, "%s: a policy is a JSON object", c.name);
    }
    c.p = calloc(1, sizeof *c.p);
    if (!c.p || !(c.p->path = strdup(c.name))) {
        cJSON_Delete(doc);
        dta_policy_free(c.p);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    c.p->expect = DTA_DTYPE_NONE;
    c.p->fail_on = -1;
    c.p->underflow_share = -1;
    c.p->strict = -1;

    static const char *keys[] = {"version", "description", "expect", "allow", "severity",
                                 "fail_on", "$schema", "comment", "underflow_share",
                                 "strict", "intended"};
    bool seen[sizeof keys / sizeof keys[0]] = {false};
    for (const cJSON *e = doc->child; e && st == DTA_OK; e = e->next) {
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && strcmp(e->string, keys[k]) != 0)
            k++;
        if (k == sizeof keys / sizeof keys[0]) {
            snprintf(msg, sizeof msg,
                     "unknown key %s (version, description, expect, allow, severity, fail_on, "
                     "underflow_share, strict, intended)",
                     quoted(q, sizeof q, e->string));
            st = dta_error_set(err, DTA_E_FORMAT, 0, "%s: %s", c.name, msg);
            break;
        }
        if (seen[k]) {
            st = bad(&c, keys[k], "given twice");
            break;
        }
        seen[k] = true;
        switch (k) {
        case 0:
            if (!cJSON_IsNumber(e) || e->valuedouble != 1)
                st = bad(&c, "version", "only version 1 is known");
            break;
        case 1:
            if (!cJSON_IsString(e))
                st = bad(&c, "description", "expected a string");
            else if (!(c.p->description = strdup(e->valuestring)))
                st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            break;
        case 2:
            if (cJSON_IsNull(e))
                break;
            if (!cJSON_IsString(e)) {
                st = bad(&c, "expect", "expected a dtype string (bf16, F32, ...)");
                break;
            }
            c.p->expect = dta_dtype_from_alias(e->valuestring);
            if (c.p->expect == DTA_DTYPE_NONE) {
                snprintf(msg, sizeof msg, "unknown dtype %s", quoted(q, sizeof q, e->valuestring));
                st = bad(&c, "expect", msg);
            }
            break;
        case 3:
            st = parse_allow(&c, e);
            break;
        case 4:
            st = parse_severity(&c, e);
            break;
        case 5: {
            int s = cJSON_IsString(e) ? dta_severity_from_name(e->valuestring) : -1;
            if (s < 0)
                st = bad(&c, "fail_on", "expected \"error\", \"warning\", \"info\" or \"never\"");
            c.p->fail_on = s;
            break;
        }
        case 8:
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 1))
                st = bad(&c, "underflow_share",
                         "expected a number from 0 to 1 (0.001 = 0.1% of a tensor's nonzero "
                         "values)");
            else
                c.p->underflow_share = e->valuedouble;
            break;
        case 9:
            if (!cJSON_IsBool(e))
                st = bad(&c, "strict", "expected true or false");
            c.p->strict = cJSON_IsTrue(e) ? 1 : 0;
            break;
        case 10: {
            /* local intended-precision rules, same schema as data/intended.json's */
            char *text = cJSON_PrintUnformatted(e);
            char nm[300];
            snprintf(nm, sizeof nm, "%.200s: intended", c.name);
            if (!text)
                st = dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
            else if (!cJSON_IsArray(e))
                st = bad(&c, "intended", "expected an array of rules (see data/intended.json)");
            else
                st = dta_intended_parse(text, strlen(text), nm, "policy", &c.p->intended, err);
            free(text);
            break;
        }
        default: /* $schema, comment: free text for editors and people */
            break;
        }
    }
    cJSON_Delete(doc);
    if (st != DTA_OK) {
        dta_policy_free(c.p);
        return st;
    }
    *out = c.p;
    return DTA_OK;
}

dta_status dta_policy_load(const char *path, dta_policy **out, dta_error *err)
{
    dtap_src src;
    unsigned char *text = NULL;
    *out = NULL;
    dta_status st = dtap_src_open_file(&src, path, err);
    if (st != DTA_OK) {
        dta_error_prefix(err, path);
        return st;
    }
    if (src.size > DTA_MAX_POLICY_BYTES) {
        dtap_src_close(&src);
        return dta_error_set(err, DTA_E_LIMIT, 0, "%s: policy file larger than %u bytes", path,
                             DTA_MAX_POLICY_BYTES);
    }
    st = dtap_src_alloc_read(&src, 0, src.size, DTA_MAX_POLICY_BYTES, &text, err);
    dtap_src_close(&src);
    if (st != DTA_OK) {
        dta_error_prefix(err, path);
        return st;
    }
    st = dta_policy_parse((const char *)text, (size_t)src.size, path, out, err);
    free(text);
    return st;
}
