/* dtaudit diff OLD NEW: reads both checkpoints, asks the library for the drift
 * (dta_diff_build) and renders it as text or JSON. Exit status: 1 when a change is at or
 * above --fail-on, 2 when an input cannot be read (nothing is printed on stdout then).
 *
 * Text groups changes whose names differ only in numeric components
 * (layers.{0..31}.mlp.weight  BF16 -> F32  32 tensors); -v lists every tensor. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtaudit/diff.h"
#include "dtaudit/version.h"
#include "report.h"

#define BOLD "\033[1m"
#define DIM "\033[2m"
#define RED "\033[31m"
#define YELLOW "\033[33m"
#define CYAN "\033[36m"
#define GREEN "\033[32m"
#define RESET "\033[0m"

typedef struct {
    FILE *out;
    bool color;
    const dta_diff *d;
    const cli_options *o;
    const char *old_path, *new_path;
} dctx;

static const char *C(const dctx *c, const char *code) { return c->color ? code : ""; }


static void shape_str(char *buf, size_t cap, const dta_tensor *t)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static const dta_tensor *old_t(const dctx *c, const dta_change *ch)
{
    return ch->old_tensor == SIZE_MAX ? NULL : &c->d->old_model->tensors[ch->old_tensor];
}

static const dta_tensor *new_t(const dctx *c, const dta_change *ch)
{
    return ch->new_tensor == SIZE_MAX ? NULL : &c->d->new_model->tensors[ch->new_tensor];
}

static void change_message(char *buf, size_t cap, const dctx *c, const dta_change *ch)
{
    const dta_tensor *a = old_t(c, ch), *b = new_t(c, ch);
    char s1[200], s2[200];
    switch (ch->kind) {
    case DTA_CHANGE_DTYPE:
        snprintf(buf, cap, "'%.500s' changed dtype from %s to %s (%llu elements)", ch->name,
                 dta_dtype_name(a->dtype), dta_dtype_name(b->dtype),
                 (unsigned long long)a->numel);
        break;
    case DTA_CHANGE_SHAPE:
        shape_str(s1, sizeof s1, a);
        shape_str(s2, sizeof s2, b);
        snprintf(buf, cap, "'%.500s' changed shape from %s to %s", ch->name, s1, s2);
        break;
    case DTA_CHANGE_ADDED:
        shape_str(s2, sizeof s2, b);
        snprintf(buf, cap, "'%.500s' (%s %s) is only in the new checkpoint", ch->name,
                 dta_dtype_name(b->dtype), s2);
        break;
    default:
        shape_str(s1, sizeof s1, a);
        snprintf(buf, cap, "'%.500s' (%s %s) is only in the old checkpoint", ch->name,
                 dta_dtype_name(a->dtype), s1);
        break;
    }
}

/* ---- JSON --------------------------------------------------------------------------- */

static void side_json(jw *w, const char *k, const dta_model *m, const dta_tensor *t)
{
    jw_key(w, k);
    if (!t) {
        jw_raw(w, "null");
        return;
    }
    jw_obj(w);
    jw_kv_str(w, "dtype", dta_dtype_name(t->dtype));
    jw_key(w, "shape");
    jw_shape(w, t);
    jw_kv_u64(w, "numel", t->numel);
    jw_kv_str(w, "file", m->files[t->file].path);
    jw_obj_end(w);
}

static int diff_json(const dctx *c, const input_result *in)
{
    const dta_diff *d = c->d;
    uint64_t sev[3] = {0, 0, 0};
    char msg[1024];
    jw *w = jw_new(c->out);
    if (!w)
        return 2;
    jw_obj(w);
    jw_kv_str(w, "tool", "dtaudit");
    jw_kv_str(w, "version", dta_version());
    jw_kv_u64(w, "schema", 1);
    jw_kv_str(w, "command", "diff");
    jw_kv_str(w, "old", c->old_path);
    jw_kv_str(w, "new", c->new_path);
    jw_key(w, "inputs");
    jw_arr(w);
    jw_input(w, &in[0], c->o);
    jw_input(w, &in[1], c->o);
    jw_arr_end(w);

    jw_key(w, "roots");
    jw_arr(w);
    for (size_t r = 0; r < d->nroots; r++) {
        const dta_diff_root *rt = &d->roots[r];
        jw_item(w, true);
        jw_obj(w);
        jw_kv_str(w, "name", rt->name);
        jw_kv_dtype(w, "old_dominant", rt->old_dominant);
        jw_kv_dtype(w, "new_dominant", rt->new_dominant);
        jw_kv_u64(w, "old_tensors", rt->old_tensors);
        jw_kv_u64(w, "new_tensors", rt->new_tensors);
        jw_key(w, "changes");
        jw_obj(w);
        for (int k = 0; k < DTA_CHANGE_KINDS; k++)
            jw_kv_u64(w, dta_change_rule((dta_change_kind)k), rt->changes[k]);
        jw_obj_end(w);
        jw_key(w, "moves");
        jw_arr(w);
        for (size_t i = 0; i < rt->nmoves; i++) {
            jw_item(w, true);
            jw_obj(w);
            jw_kv_dtype(w, "from", rt->moves[i].from);
            jw_kv_dtype(w, "to", rt->moves[i].to);
            jw_kv_u64(w, "tensors", rt->moves[i].tensors);
            jw_kv_u64(w, "numel", rt->moves[i].numel);
            jw_obj_end(w);
        }
        jw_arr_end(w);
        jw_obj_end(w);
    }
    jw_arr_end(w);

    jw_key(w, "changes");
    jw_arr(w);
    for (size_t i = 0; i < d->nchanges; i++) {
        const dta_change *ch = &d->changes[i];
        jw_item(w, true);
        jw_obj(w);
        jw_kv_str(w, "rule", ch->rule);
        jw_kv_str(w, "severity", dta_severity_name(ch->severity));
        jw_kv_str(w, "root", d->roots[ch->root].name);
        jw_kv_str(w, "name", ch->name);
        side_json(w, "old", d->old_model, old_t(c, ch));
        side_json(w, "new", d->new_model, new_t(c, ch));
        change_message(msg, sizeof msg, c, ch);
        jw_kv_str(w, "message", msg);
        jw_obj_end(w);
        if (ch->severity <= DTA_SEV_ERROR)
            sev[ch->severity]++;
    }
    jw_arr_end(w);

    jw_key(w, "summary");
    jw_obj(w);
    jw_kv_u64(w, "inputs", 2);
    jw_kv_u64(w, "changes", d->nchanges);
    for (int k = 0; k < DTA_CHANGE_KINDS; k++)
        jw_kv_u64(w, dta_change_rule((dta_change_kind)k), d->changes_by_kind[k]);
    jw_key(w, "findings");
    jw_obj(w);
    jw_kv_u64(w, "error", sev[DTA_SEV_ERROR]);
    jw_kv_u64(w, "warning", sev[DTA_SEV_WARNING]);
    jw_kv_u64(w, "info", sev[DTA_SEV_INFO]);
    jw_obj_end(w);
    jw_obj_end(w);
    jw_obj_end(w);
    return jw_end(w);
}

/* ---- text --------------------------------------------------------------------------- */

typedef struct {
    size_t change;
    char *pattern; /* name with all-digit components as '#' */
    char key[96];  /* dtypes and shapes that must agree inside a group */
} gitem;

static const dctx *g_ctx; /* qsort has no context argument in C11 */

static char *pattern_of(const char *name)
{
    size_t n = strlen(name), o = 0;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    for (const char *s = name; *s;) {
        const char *e = strchr(s, '.');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        bool num = len > 0 && len < 19;
        for (size_t i = 0; i < len && num; i++)
            num = s[i] >= '0' && s[i] <= '9';
        if (num)
            p[o++] = '#';
        else {
            memcpy(p + o, s, len);
            o += len;
        }
        if (!e)
            break;
        p[o++] = '.';
        s = e + 1;
    }
    p[o] = 0;
    return p;
}

static int cmp_gitem(const void *x, const void *y)
{
    const gitem *a = x, *b = y;
    const dta_change *ca = &g_ctx->d->changes[a->change], *cb = &g_ctx->d->changes[b->change];
    if (ca->root != cb->root)
        return ca->root < cb->root ? -1 : 1;
    if (ca->kind != cb->kind)
        return (int)ca->kind - (int)cb->kind;
    int k = strcmp(a->key, b->key);
    if (k)
        return k;
    k = dta_name_cmp(a->pattern, b->pattern);
    if (k)
        return k;
    return dta_name_cmp(ca->name, cb->name);
}

static bool same_group(const gitem *a, const gitem *b)
{
    const dta_change *ca = &g_ctx->d->changes[a->change], *cb = &g_ctx->d->changes[b->change];
    return ca->root == cb->root && ca->kind == cb->kind && !strcmp(a->key, b->key) &&
           !strcmp(a->pattern, b->pattern) && strchr(a->pattern, '#');
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* The group's names as one label: layers.{0..3,7}.mlp.weight */
static void group_label(char *buf, size_t cap, const dctx *c, const gitem *g, size_t n)
{
    const char *first = c->d->changes[g[0].change].name;
    uint64_t *v = malloc(n * sizeof *v);
    size_t o = 0, comp = 0;
    buf[0] = 0;
    if (!v) {
        snprintf(buf, cap, "%s", first);
        return;
    }
    for (const char *s = first; s && o + 1 < cap; comp++) {
        const char *e = strchr(s, '.');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        bool varies = false;
        for (size_t i = 0; i < n; i++) {
            const char *q = c->d->changes[g[i].change].name;
            for (size_t k = 0; k < comp && q; k++) {
                q = strchr(q, '.');
                q = q ? q + 1 : NULL;
            }
            size_t ql = q ? (strchr(q, '.') ? (size_t)(strchr(q, '.') - q) : strlen(q)) : 0;
            v[i] = q ? strtoull(q, NULL, 10) : 0;
            if (!q || ql != len || memcmp(q, s, len) != 0)
                varies = true;
        }
        if (comp)
            buf[o++] = '.';
        if (varies) {
            qsort(v, n, sizeof *v, cmp_u64);
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (m == 0 || v[i] != v[m - 1])
                    v[m++] = v[i];
            fmt_indices(buf + o, cap - o, v, m);
            o += strlen(buf + o);
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "%.*s", (int)len, s);
        }
        if (o >= cap) {
            buf[cap - 1] = 0;
            break;
        }
        s = e ? e + 1 : NULL;
    }
    free(v);
}

static const char *sev_color(dta_severity s)
{
    return s == DTA_SEV_ERROR ? RED : s == DTA_SEV_WARNING ? YELLOW : CYAN;
}

static void print_side(const dctx *c, const char *role, const input_result *r)
{
    char p[32], b[32], shown[1200];
    uint64_t numel = 0, bytes = 0;
    for (size_t i = 0; i < r->model->ntensors; i++) {
        numel += r->model->tensors[i].numel;
        bytes += r->model->tensors[i].nbytes;
    }
    fmt_count(p, sizeof p, numel);
    fmt_bytes(b, sizeof b, bytes);
    fprintf(c->out, "  %s %s: %s, %zu file%s, %zu tensors, %s params, %s\n", role,
            clean(shown, sizeof shown, r->path), r->model->format, r->model->nfiles,
            r->model->nfiles == 1 ? "" : "s", r->model->ntensors, p, b);
}

static void diff_text(const dctx *c, const input_result *in)
{
    const dta_diff *d = c->d;
    const cli_options *o = c->o;
    uint64_t sev[3] = {0, 0, 0};
    char shown[1200], shown2[1200];
    gitem *g = calloc(d->nchanges ? d->nchanges : 1, sizeof *g);
    if (!g) {
        fputs("dtaudit: out of memory\n", stderr);
        return;
    }
    for (size_t i = 0; i < d->nchanges; i++)
        if (d->changes[i].severity <= DTA_SEV_ERROR)
            sev[d->changes[i].severity]++;

    if (o->verbosity >= 0 || d->nchanges) {
        fprintf(c->out, "%s%s -> %s%s\n", C(c, BOLD), clean(shown, sizeof shown, c->old_path),
                clean(shown2, sizeof shown2, c->new_path), C(c, RESET));
    }
    if (o->verbosity >= 0) {
        print_side(c, "old", &in[0]);
        print_side(c, "new", &in[1]);
        for (size_t r = 0; r < d->nroots; r++) {
            const dta_diff_root *rt = &d->roots[r];
            if (rt->name[0])
                fprintf(c->out, "\n  %sroot '%s'%s", C(c, BOLD), clean(shown, sizeof shown, rt->name),
                        C(c, RESET));
            else
                fprintf(c->out, "\n  %sroot (flat state dict)%s", C(c, BOLD), C(c, RESET));
            fprintf(c->out, "  dominant %s -> %s, tensors %llu -> %llu\n",
                    rt->old_dominant == DTA_DTYPE_NONE ? "-" : dta_dtype_name(rt->old_dominant),
                    rt->new_dominant == DTA_DTYPE_NONE ? "-" : dta_dtype_name(rt->new_dominant),
                    (unsigned long long)rt->old_tensors, (unsigned long long)rt->new_tensors);
            uint64_t total = 0;
            for (int k = 0; k < DTA_CHANGE_KINDS; k++)
                total += rt->changes[k];
            if (!total) {
                fprintf(c->out, "    %sno drift%s\n", C(c, GREEN), C(c, RESET));
                continue;
            }
            fprintf(c->out, "    %llu dtype changed, %llu shape changed, %llu added, %llu removed\n",
                    (unsigned long long)rt->changes[DTA_CHANGE_DTYPE],
                    (unsigned long long)rt->changes[DTA_CHANGE_SHAPE],
                    (unsigned long long)rt->changes[DTA_CHANGE_ADDED],
                    (unsigned long long)rt->changes[DTA_CHANGE_REMOVED]);
            for (size_t i = 0; i < rt->nmoves; i++) {
                char p[32];
                fmt_count(p, sizeof p, rt->moves[i].numel);
                fprintf(c->out, "    moved %-8s -> %-8s %6llu tensor%s %9s params\n",
                        dta_dtype_name(rt->moves[i].from), dta_dtype_name(rt->moves[i].to),
                        (unsigned long long)rt->moves[i].tensors,
                        rt->moves[i].tensors == 1 ? " " : "s", p);
            }
        }
        fprintf(c->out, "\n  %schanges%s\n", C(c, BOLD), C(c, RESET));
        if (!d->nchanges)
            fprintf(c->out, "    %snone%s\n", C(c, GREEN), C(c, RESET));
    }

    /* group */
    size_t ng = 0;
    bool oom = false;
    for (size_t i = 0; i < d->nchanges; i++) {
        const dta_change *ch = &d->changes[i];
        const dta_tensor *a = old_t(c, ch), *b = new_t(c, ch);
        char s1[40], s2[40];
        g[ng].change = i;
        if (!(g[ng].pattern = pattern_of(ch->name))) {
            oom = true;
            break;
        }
        s1[0] = s2[0] = 0;
        if (ch->kind == DTA_CHANGE_SHAPE) {
            shape_str(s1, sizeof s1, a);
            shape_str(s2, sizeof s2, b);
        }
        snprintf(g[ng].key, sizeof g[ng].key, "%s>%s|%s>%s",
                 a ? dta_dtype_name(a->dtype) : "", b ? dta_dtype_name(b->dtype) : "", s1, s2);
        ng++;
    }
    g_ctx = c;
    if (ng > 1)
        qsort(g, ng, sizeof *g, cmp_gitem);
    for (size_t i = 0; i < ng && !oom;) {
        size_t j = i + 1;
        while (j < ng && same_group(&g[i], &g[j]))
            j++;
        const dta_change *ch = &d->changes[g[i].change];
        const dta_tensor *a = old_t(c, ch), *b = new_t(c, ch);
        char label[1024], what[160], s1[256], s2[256];
        if (j - i > 1)
            group_label(label, sizeof label, c, g + i, j - i);
        else
            snprintf(label, sizeof label, "%s", ch->name);
        switch (ch->kind) {
        case DTA_CHANGE_DTYPE:
            snprintf(what, sizeof what, "%s -> %s", dta_dtype_name(a->dtype),
                     dta_dtype_name(b->dtype));
            break;
        case DTA_CHANGE_SHAPE:
            shape_str(s1, sizeof s1, a);
            shape_str(s2, sizeof s2, b);
            snprintf(what, sizeof what, "%.70s -> %.70s", s1, s2);
            break;
        case DTA_CHANGE_ADDED:
            shape_str(s2, sizeof s2, b);
            snprintf(what, sizeof what, "%s %.120s", dta_dtype_name(b->dtype), s2);
            break;
        default:
            shape_str(s1, sizeof s1, a);
            snprintf(what, sizeof what, "%s %.120s", dta_dtype_name(a->dtype), s1);
            break;
        }
        fprintf(c->out, "    %s%-7s%s %-15s %s%s%s  %s", C(c, sev_color(ch->severity)),
                dta_severity_name(ch->severity), C(c, RESET), ch->rule, C(c, BOLD),
                clean(shown, sizeof shown, label), C(c, RESET), what);
        if (j - i > 1)
            fprintf(c->out, "  (%zu tensors)", j - i);
        fputc('\n', c->out);
        if (o->verbosity > 0 && j - i > 1)
            for (size_t k = i; k < j; k++)
                fprintf(c->out, "        %s\n",
                        clean(shown, sizeof shown, d->changes[g[k].change].name));
        i = j;
    }
    for (size_t i = 0; i < ng; i++)
        free(g[i].pattern);
    free(g);
    if (o->verbosity >= 0)
        fprintf(c->out, "\ndiff: %llu error%s, %llu warning%s, %llu info (fail-on %s)\n",
                (unsigned long long)sev[DTA_SEV_ERROR], sev[DTA_SEV_ERROR] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_WARNING], sev[DTA_SEV_WARNING] == 1 ? "" : "s",
                (unsigned long long)sev[DTA_SEV_INFO], dta_severity_name(o->fail_on));
}

int run_diff(const cli_options *o)
{
    input_result in[2];
    dta_diff *d = NULL;
    dta_diff_options dopt = {o->severity, o->nseverity};
    dta_error err;
    int status = 0;
    memset(in, 0, sizeof in);
    for (int i = 0; i < 2; i++) {
        in[i].path = o->paths[i];
        if (dta_model_open(o->paths[i], &in[i].model, &in[i].err) != DTA_OK) {
            fprintf(stderr, "dtaudit: %s\n", shown(in[i].err.msg));
            status = 2;
        }
    }
    if (status == 0 && dta_diff_build(in[0].model, in[1].model, &dopt, &d, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        status = 2;
    }
    if (status == 0) {
        dctx c = {stdout, cli_use_color(o), d, o, o->paths[0], o->paths[1]};
        if (o->format == FMT_JSON)
            status = diff_json(&c, in);
        else
            diff_text(&c, in);
        if (status == 0 && o->fail_on != DTA_SEV_NEVER)
            for (size_t i = 0; i < d->nchanges; i++)
                if (d->changes[i].severity >= o->fail_on)
                    status = 1;
    }
    dta_diff_free(d);
    for (int i = 0; i < 2; i++)
        dta_model_free(in[i].model);
    return status; /* a failed write of the report is caught in main (output_status) */
}
