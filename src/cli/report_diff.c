/* dtaudit diff rendered (report_diff.c): the drift between two checkpoints as text or JSON.
 *
 * Text groups changes whose names differ only in numeric components
 * (layers.{0..31}.mlp.weight  BF16 -> F32  32 tensors); -v lists every tensor. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "report.h"

typedef struct {
    FILE *out;
    const palette *pal;
    const dta_diff *d;
    const cli_options *o;
    const char *old_path, *new_path;
} dctx;


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
        fmt_shape(s1, sizeof s1, a);
        fmt_shape(s2, sizeof s2, b);
        snprintf(buf, cap, "'%.500s' changed shape from %s to %s", ch->name, s1, s2);
        break;
    case DTA_CHANGE_ADDED:
        fmt_shape(s2, sizeof s2, b);
        snprintf(buf, cap, "'%.500s' (%s %s) is only in the new checkpoint", ch->name,
                 dta_dtype_name(b->dtype), s2);
        break;
    default:
        fmt_shape(s1, sizeof s1, a);
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
    jw_doc(w, "diff");
    jw_kv_str(w, "old", c->old_path);
    jw_kv_str(w, "new", c->new_path);
    jw_key(w, "inputs");
    jw_arr(w);
    json_input(w, &in[0], c->o);
    json_input(w, &in[1], c->o);
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
    json_findings_count(w, sev);
    jw_obj_end(w);
    jw_obj_end(w);
    return jw_end(w);
}

/* ---- text --------------------------------------------------------------------------- */

typedef struct {
    size_t change;
    const dta_change *ch; /* d->changes[change]: qsort has no context argument */
    char *pattern; /* name with all-digit components as '#' */
    char key[96];  /* dtypes and shapes that must agree inside a group */
} gitem;

static int cmp_gitem(const void *x, const void *y)
{
    const gitem *a = x, *b = y;
    const dta_change *ca = a->ch, *cb = b->ch;
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
    const dta_change *ca = a->ch, *cb = b->ch;
    return ca->root == cb->root && ca->kind == cb->kind && !strcmp(a->key, b->key) &&
           !strcmp(a->pattern, b->pattern) && strchr(a->pattern, '#');
}

/* The group's names as one label: layers.{0..3,7}.mlp.weight */
static void group_label(char *buf, size_t cap, const gitem *g, size_t n)
{
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        snprintf(buf, cap, "%s", g[0].ch->name);
        return;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = g[i].ch->name;
    names_pattern(names, n, buf, cap, NULL, 0);
    free(names);
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
        fprintf(c->out, "%s%s -> %s%s\n", C(c->pal, BOLD), clean(shown, sizeof shown, c->old_path),
                clean(shown2, sizeof shown2, c->new_path), C(c->pal, RESET));
    }
    if (o->verbosity >= 0) {
        print_side(c, "old", &in[0]);
        print_side(c, "new", &in[1]);
        for (size_t r = 0; r < d->nroots; r++) {
            const dta_diff_root *rt = &d->roots[r];
            if (rt->name[0])
                fprintf(c->out, "\n  %sroot '%s'%s", C(c->pal, BOLD), clean(shown, sizeof shown, rt->name),
                        C(c->pal, RESET));
            else
                fprintf(c->out, "\n  %sroot (flat state dict)%s", C(c->pal, BOLD), C(c->pal, RESET));
            fprintf(c->out, "  dominant %s -> %s, tensors %llu -> %llu\n",
                    rt->old_dominant == DTA_DTYPE_NONE ? "-" : dta_dtype_name(rt->old_dominant),
                    rt->new_dominant == DTA_DTYPE_NONE ? "-" : dta_dtype_name(rt->new_dominant),
                    (unsigned long long)rt->old_tensors, (unsigned long long)rt->new_tensors);
            uint64_t total = 0;
            for (int k = 0; k < DTA_CHANGE_KINDS; k++)
                total += rt->changes[k];
            if (!total) {
                fprintf(c->out, "    %sno drift%s\n", C(c->pal, GREEN), C(c->pal, RESET));
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
        fprintf(c->out, "\n  %schanges%s\n", C(c->pal, BOLD), C(c->pal, RESET));
        if (!d->nchanges)
            fprintf(c->out, "    %snone%s\n", C(c->pal, GREEN), C(c->pal, RESET));
    }

    /* group */
    size_t ng = 0;
    bool oom = false;
    for (size_t i = 0; i < d->nchanges; i++) {
        const dta_change *ch = &d->changes[i];
        const dta_tensor *a = old_t(c, ch), *b = new_t(c, ch);
        char s1[40], s2[40];
        g[ng].change = i;
        g[ng].ch = ch;
        if (!(g[ng].pattern = malloc(strlen(ch->name) + 1))) {
            oom = true;
            break;
        }
        name_shape(g[ng].pattern, strlen(ch->name) + 1, ch->name);
        s1[0] = s2[0] = 0;
        if (ch->kind == DTA_CHANGE_SHAPE) {
            fmt_shape(s1, sizeof s1, a);
            fmt_shape(s2, sizeof s2, b);
        }
        snprintf(g[ng].key, sizeof g[ng].key, "%s>%s|%s>%s",
                 a ? dta_dtype_name(a->dtype) : "", b ? dta_dtype_name(b->dtype) : "", s1, s2);
        ng++;
    }
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
            group_label(label, sizeof label, g + i, j - i);
        else
            snprintf(label, sizeof label, "%s", ch->name);
        switch (ch->kind) {
        case DTA_CHANGE_DTYPE:
            snprintf(what, sizeof what, "%s -> %s", dta_dtype_name(a->dtype),
                     dta_dtype_name(b->dtype));
            break;
        case DTA_CHANGE_SHAPE:
            fmt_shape(s1, sizeof s1, a);
            fmt_shape(s2, sizeof s2, b);
            snprintf(what, sizeof what, "%.70s -> %.70s", s1, s2);
            break;
        case DTA_CHANGE_ADDED:
            fmt_shape(s2, sizeof s2, b);
            snprintf(what, sizeof what, "%s %.120s", dta_dtype_name(b->dtype), s2);
            break;
        default:
            fmt_shape(s1, sizeof s1, a);
            snprintf(what, sizeof what, "%s %.120s", dta_dtype_name(a->dtype), s1);
            break;
        }
        fprintf(c->out, "    %s%-7s%s %-15s %s%s%s  %s", C(c->pal, sev_color(ch->severity)),
                dta_severity_name(ch->severity), C(c->pal, RESET), ch->rule, C(c->pal, BOLD),
                clean(shown, sizeof shown, label), C(c->pal, RESET), what);
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

int report_diff(FILE *out, const cli_options *o, const input_result *in, const dta_diff *d)
{
    palette pal = {o->format != FMT_JSON && cli_use_color(o)};
    dctx c = {out, &pal, d, o, o->paths[0], o->paths[1]};
    if (o->format == FMT_JSON)
        return diff_json(&c, in);
    diff_text(&c, in);
    return 0;
}
