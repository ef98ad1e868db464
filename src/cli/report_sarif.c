/* CI output for audit: SARIF 2.1.0 (GitHub code scanning, other SARIF viewers) and GitHub
 * Actions workflow commands (::warning file=...::message annotations).
 *
 * SARIF: one run; tool.driver.rules is the library's catalogue of audit rules (help text,
 * helpUri naming the dtaudit(1) section, default level); one result per finding with
 * the file that holds its first tensor as artifactLocation (or, for file-level findings,
 * the file the rule is about: config.json, adapter_config.json, the index), the module as
 * a logical location, and partialFingerprints that depend only on what the finding is
 * about (rule, input, root, module, dtypes), not on messages or counts, so an alert keeps
 * its identity from one run to the next. Inputs that could not be read become
 * toolExecutionNotifications and executionSuccessful false. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dtaudit/policy.h"
#include "dtaudit/version.h"
#include "fix.h"
#include "report.h"
#include "text_safe.h"

#define SARIF_MAX_TENSORS 100 /* tensors listed per result (the count is always given) */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* DIR/NAME without doubled slashes. */
static void join(char *buf, size_t cap, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    snprintf(buf, cap, "%.*s/%s", (int)n, dir, name);
}

/* The file a finding is about. */
static void finding_file(char *buf, size_t cap, const input_result *in, const dta_finding *f)
{
    const dta_model *m = in->model;
    if (f->file != SIZE_MAX && f->file < m->nfiles) {
        snprintf(buf, cap, "%s", m->files[f->file].path);
        return;
    }
    if (m->format_id == DTA_FORMAT_DIRECTORY) {
        static const char *index_names[] = {"model.safetensors.index.json",
                                            "pytorch_model.bin.index.json"};
        const char *name = NULL;
        if (f->rule_id == DTA_RULE_CONFIG_MISMATCH || f->rule_id == DTA_RULE_QUANTIZATION)
            name = "config.json";
        else if (f->rule_id == DTA_RULE_ADAPTER_CONFIG)
            name = "adapter_config.json";
        else if (f->rule_id == DTA_RULE_ADAPTER_MISMATCH && m->nfiles) { /* the weights */
            snprintf(buf, cap, "%s", m->files[0].path);
            return;
        }
        if (name) {
            join(buf, cap, in->path, name);
            return;
        }
        if (f->module[0] && !strchr(f->module, '/') && strcmp(f->module, "..") != 0) {
            join(buf, cap, in->path, f->module);
            if (is_file(buf))
                return;
        }
        if (f->rule_id == DTA_RULE_INDEX_MISMATCH)
            for (size_t i = 0; i < 2; i++) {
                join(buf, cap, in->path, index_names[i]);
                if (is_file(buf))
                    return;
            }
        if (m->nfiles) {
            snprintf(buf, cap, "%s", m->files[0].path);
            return;
        }
    }
    snprintf(buf, cap, "%s", in->path);
}

/* A uri-reference for a path: relative paths stay relative (GitHub resolves them against
 * the checkout), absolute ones become file:// URIs; every byte outside RFC 3986's
 * unreserved set, sub-delims and '/' '@' is percent-encoded (':' too, so that a first
 * segment never reads as a scheme). */
static void path_uri(char *buf, size_t cap, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    if (path[0] == '/')
        o += (size_t)snprintf(buf, cap, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~!$&'()*+,;=/@", *p))
            buf[o++] = (char)*p;
        else {
            buf[o++] = '%';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        }
    }
    buf[o] = 0;
}

/* FNV-1a, spelt out here on purpose: the fingerprint is output that code scanning compares
 * across runs and versions, so it must not follow the library's in-memory table hash
 * (dtap_hash), which may change. */
static uint64_t fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* field separator */
}

/* "locations": the file at uri, and with a finding about a module its logical location
 * (results and tool notifications both say where this way). */
static void locations(jw *w, const char *uri, const dta_finding *f)
{
    jw_key(w, "locations");
    jw_arr(w);
    jw_item(w, true);
    jw_obj(w);
    jw_key(w, "physicalLocation");
    jw_obj(w);
    jw_key(w, "artifactLocation");
    jw_obj(w);
    jw_kv_str(w, "uri", uri);
    jw_obj_end(w);
    jw_obj_end(w);
    if (f && f->module[0]) {
        jw_key(w, "logicalLocations");
        jw_arr(w);
        jw_item(w, true);
        jw_obj(w);
        jw_kv_str(w, "fullyQualifiedName", f->module);
        jw_kv_str(w, "kind", f->ntensors == 1 && !strcmp(f->tensors[0], f->module) ? "member"
                                                                                      : "module");
        jw_obj_end(w);
        jw_arr_end(w);
    }
    jw_obj_end(w);
    jw_arr_end(w);
}

static void fingerprint(char *buf, size_t cap, const input_result *in, const dta_finding *f)
{
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, f->rule);
    h = fnv(h, in->path);
    h = fnv(h, f->root);
    h = fnv(h, f->module);
    h = fnv(h, f->dtype == DTA_DTYPE_NONE ? "" : dta_dtype_name(f->dtype));
    h = fnv(h, f->expected == DTA_DTYPE_NONE ? "" : dta_dtype_name(f->expected));
    snprintf(buf, cap, "%016llx", (unsigned long long)h);
}

static const char *sarif_level(dta_severity s)
{
    return s == DTA_SEV_ERROR ? "error" : s == DTA_SEV_WARNING ? "warning" : "note";
}

/* "dtype-outlier" -> "DtypeOutlier" */
static void pascal(char *buf, size_t cap, const char *id)
{
    size_t o = 0;
    bool up = true;
    for (; *id && o + 1 < cap; id++) {
        if (*id == '-') {
            up = true;
            continue;
        }
        buf[o++] = up && *id >= 'a' && *id <= 'z' ? (char)(*id - 32) : *id;
        up = false;
    }
    buf[o] = 0;
}

static void text_obj(jw *w, const char *k, const char *text)
{
    jw_key(w, k);
    jw_obj(w);
    jw_kv_str(w, "text", text);
    jw_obj_end(w);
}

static void rule_json(jw *w, const dta_rule_info *r)
{
    char name[64], help[1400];
    pascal(name, sizeof name, r->name);
    snprintf(help, sizeof help, "%s %s See dtaudit(1), section %s, rule %s.", r->summary,
             r->help, r->man_section, r->name);
    jw_item(w, true);
    jw_obj(w);
    jw_kv_str(w, "id", r->name);
    jw_kv_str(w, "name", name);
    text_obj(w, "shortDescription", r->summary);
    text_obj(w, "fullDescription", r->help);
    text_obj(w, "help", help);
    jw_kv_str(w, "helpUri", r->help_uri);
    jw_key(w, "defaultConfiguration");
    jw_obj(w);
    jw_kv_str(w, "level", sarif_level(r->severity));
    jw_obj_end(w);
    jw_key(w, "properties");
    jw_obj(w);
    jw_key(w, "tags");
    jw_arr(w);
    jw_item(w, false);
    jw_str(w, r->category);
    jw_item(w, false);
    jw_str(w, "dtype");
    jw_arr_end(w);
    if (r->security_severity)
        jw_kv_str(w, "security-severity", r->security_severity);
    jw_obj_end(w);
    jw_obj_end(w);
}

static void result_json(jw *w, const cli_options *o, const input_result *in, const dta_finding *f,
                        size_t rule_index)
{
    char file[8192], uri[3 * 8192 + 16], fp[32];
    finding_file(file, sizeof file, in, f);
    path_uri(uri, sizeof uri, file);
    fingerprint(fp, sizeof fp, in, f);
    jw_item(w, true);
    jw_obj(w);
    jw_kv_str(w, "ruleId", f->rule);
    if (rule_index != SIZE_MAX)
        jw_kv_u64(w, "ruleIndex", rule_index);
    jw_kv_str(w, "level", sarif_level(f->severity));
    text_obj(w, "message", f->message[0] ? f->message : f->rule);
    locations(w, uri, f);
    jw_key(w, "partialFingerprints");
    jw_obj(w);
    jw_kv_str(w, "dtauditFinding/v1", fp);
    jw_obj_end(w);
    jw_key(w, "properties");
    jw_obj(w);
    jw_kv_str(w, "input", in->path);
    jw_kv_str(w, "root", f->root);
    jw_kv_str(w, "module", f->module);
    if (f->dtype != DTA_DTYPE_NONE)
        jw_kv_dtype(w, "dtype", f->dtype);
    if (f->expected != DTA_DTYPE_NONE)
        jw_kv_dtype(w, "expected", f->expected);
    jw_kv_u64(w, "tensorCount", f->ntensors);
    if (f->ntensors) {
        jw_key(w, "tensors");
        jw_arr(w);
        for (size_t i = 0; i < f->ntensors && i < SARIF_MAX_TENSORS; i++) {
            jw_item(w, true);
            jw_str(w, f->tensors[i]);
        }
        jw_arr_end(w);
    }
    if (f->intended) /* the intended-precision rule that matched (intended.h) */
        jw_kv_str(w, "intendedRule", f->intended->id);
    if (f->values) { /* audit --values: the counts over the finding's tensors (integers) */
        jw_key(w, "values");
        jw_obj(w);
        jw_kv_dtype(w, "target", f->values->target);
        jw_kv_u64(w, "elements", f->values->elements);
        jw_kv_u64(w, "nan", f->values->nan);
        jw_kv_u64(w, "pos_inf", f->values->pos_inf);
        jw_kv_u64(w, "neg_inf", f->values->neg_inf);
        jw_kv_u64(w, "overflow", f->values->overflow);
        jw_kv_u64(w, "underflow", f->values->underflow);
        jw_kv_u64(w, "subnormal", f->values->subnormal);
        jw_obj_end(w);
    }
    /* the command that removes the finding, as in JSON's "fix" (fix.h) */
    char glob[4096];
    cli_fix fx;
    cli_fix_glob(f, glob, sizeof glob);
    if (cli_fix_build(o, in, f, glob, &fx)) {
        jw_key(w, "fix");
        jw_arr(w);
        for (size_t i = 0; i < fx.argc; i++) {
            jw_item(w, false);
            jw_str(w, fx.argv[i]);
        }
        jw_arr_end(w);
    }
    jw_obj_end(w);
    jw_obj_end(w);
}

int report_sarif(FILE *out, const cli_options *o, const input_result *in, size_t n)
{
    size_t nrules, nemit = 0;
    const dta_rule_info *rules = dta_rules(&nrules);
    size_t *index = malloc((nrules ? nrules : 1) * sizeof *index);
    jw *w = jw_new(out);
    bool ok = true;
    (void)o;
    if (!w || !index) {
        free(index);
        if (w)
            jw_end(w);
        return 2;
    }
    for (size_t i = 0; i < n; i++)
        ok = ok && in[i].model;

    jw_obj(w);
    jw_kv_str(w, "$schema", "https://json.schemastore.org/sarif-2.1.0.json");
    jw_kv_str(w, "version", "2.1.0");
    jw_key(w, "runs");
    jw_arr(w);
    jw_item(w, true);
    jw_obj(w);
    jw_key(w, "tool");
    jw_obj(w);
    jw_key(w, "driver");
    jw_obj(w);
    jw_kv_str(w, "name", "dtaudit");
    jw_kv_str(w, "version", dta_version());
    jw_kv_str(w, "semanticVersion", dta_version());
    jw_kv_str(w, "informationUri", "man:dtaudit(1)");
    jw_key(w, "rules");
    jw_arr(w);
    for (size_t i = 0; i < nrules; i++) {
        index[i] = SIZE_MAX;
        if (strcmp(rules[i].command, "audit") != 0)
            continue;
        index[i] = nemit++;
        rule_json(w, &rules[i]);
    }
    jw_arr_end(w);
    jw_obj_end(w);
    jw_obj_end(w);

    jw_key(w, "invocations");
    jw_arr(w);
    jw_item(w, true);
    jw_obj(w);
    jw_kv_bool(w, "executionSuccessful", ok);
    if (!ok) {
        jw_key(w, "toolExecutionNotifications");
        jw_arr(w);
        for (size_t i = 0; i < n; i++) {
            if (in[i].model)
                continue;
            char file[8192], uri[3 * 8192 + 16];
            snprintf(file, sizeof file, "%s", in[i].path);
            path_uri(uri, sizeof uri, file);
            jw_item(w, true);
            jw_obj(w);
            jw_kv_str(w, "level", "error");
            text_obj(w, "message", in[i].err.msg);
            locations(w, uri, NULL);
            jw_obj_end(w);
        }
        jw_arr_end(w);
    }
    jw_obj_end(w);
    jw_arr_end(w);

    jw_key(w, "results");
    jw_arr(w);
    for (size_t i = 0; i < n; i++) {
        if (!in[i].model)
            continue;
        const dta_report *rep = in[i].report;
        for (size_t k = 0; k < rep->nfindings; k++) {
            const dta_finding *f = &rep->findings[k];
            size_t ri = (size_t)f->rule_id < nrules ? index[f->rule_id] : SIZE_MAX;
            result_json(w, o, &in[i], f, ri);
        }
    }
    jw_arr_end(w);
    jw_obj_end(w);
    jw_arr_end(w);
    jw_obj_end(w);
    free(index);
    return jw_end(w);
}

/* ---- GitHub workflow commands ----------------------------------------------------------- */

/* GitHub's escaping (actions/toolkit command.ts): data escapes % CR LF; property values
 * also escape ':' and ','. Other control bytes are shown as \xNN to keep one line. */
static void gh_escape(FILE *out, const char *s, bool property)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '%')
            fputs("%25", out);
        else if (*p == '\r')
            fputs("%0D", out);
        else if (*p == '\n')
            fputs("%0A", out);
        else if (property && *p == ':')
            fputs("%3A", out);
        else if (property && *p == ',')
            fputs("%2C", out);
        else {
            /* controls, invalid UTF-8, C1, bidi and zero-width characters (text_safe.h) as
             * \xNN bytes: annotation logs are read on terminals too */
            uint32_t cp;
            size_t n = dtap_utf8_decode(p, &cp);
            if (n == 0 || dtap_cp_unsafe(cp)) {
                for (size_t i = 0; i < (n ? n : 1); i++)
                    fprintf(out, "\\x%02x", p[i]);
            } else {
                fwrite(p, 1, n, out);
            }
            p += (n ? n : 1) - 1;
        }
    }
}

int report_github(FILE *out, const cli_options *o, const input_result *in, size_t n)
{
    (void)o;
    for (size_t i = 0; i < n; i++) {
        if (!in[i].model) {
            fputs("::error file=", out);
            gh_escape(out, in[i].path, true);
            fputs(",title=", out);
            gh_escape(out, "dtaudit: unreadable input", true);
            fputs("::", out);
            gh_escape(out, in[i].err.msg, false);
            fputc('\n', out);
            continue;
        }
        const dta_report *rep = in[i].report;
        for (size_t k = 0; k < rep->nfindings; k++) {
            const dta_finding *f = &rep->findings[k];
            char file[8192], title[1200];
            finding_file(file, sizeof file, &in[i], f);
            if (f->module[0])
                snprintf(title, sizeof title, "dtaudit %s: %s", f->rule, f->module);
            else
                snprintf(title, sizeof title, "dtaudit %s", f->rule);
            fprintf(out, "::%s file=",
                    f->severity == DTA_SEV_ERROR     ? "error"
                    : f->severity == DTA_SEV_WARNING ? "warning"
                                                     : "notice");
            gh_escape(out, file, true);
            fputs(",title=", out);
            gh_escape(out, title, true);
            fputs("::", out);
            gh_escape(out, f->message[0] ? f->message : f->rule, false);
            fputc('\n', out);
        }
    }
    return ferror(out) ? 2 : 0;
}
