/* Fixes for findings (fix.h). Which rule gets which command:
 *   dtype-outlier, mixed-module, expect-mismatch: convert the finding's tensors (--only
 *     GLOB) to the root's dominant dtype (or the expected one); intended islands of the
 *     model are kept (--keep-intended) so that a fix never undoes them, and quantized
 *     parameters too (--keep-quantized: their codes are never cast without their scales);
 *   config-mismatch: convert the weights to config.json's dtype;
 *   adapter-mismatch: convert the adapter to its base model's dtype;
 *   everything else (unsafe pickles, meta tensors, broken indexes, value rules, intended
 *   findings): no command; the text renderer gives advice in words.
 * The output path is a suggestion next to the input ("x.safetensors" -> "x.bf16.safetensors",
 * a directory "d" -> "d-bf16"). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "dtaudit/convert.h"
#include "dtaudit/quant.h"
#include "fix.h"

static const char *keep(cli_fix *fx, const char *s)
{
    size_t n = strlen(s) + 1;
    if (fx->used + n > sizeof fx->buf)
        return NULL;
    char *p = fx->buf + fx->used;
    memcpy(p, s, n);
    fx->used += n;
    return p;
}

static bool arg(cli_fix *fx, const char *s)
{
    const char *p = keep(fx, s);
    if (!p || fx->argc >= CLI_FIX_MAX_ARGS)
        return false;
    fx->argv[fx->argc++] = p;
    return true;
}

void cli_fix_glob(const dta_finding *f, char *glob, size_t cap)
{
    bool single_tensor = f->ntensors == 1 && strcmp(f->tensors[0], f->module) == 0;
    snprintf(glob, cap, "%s%s", f->module, !single_tensor && f->module[0] ? ".*" : "");
}

static bool writable(dta_dtype t)
{
    return t == DTA_F32 || t == DTA_F16 || t == DTA_BF16;
}

/* The model holds intended islands that a conversion must keep. */
static bool has_intended(const input_result *in)
{
    const dta_report *r = in->report;
    for (size_t i = 0; r && r->intended && i < in->model->ntensors; i++)
        if (r->intended[i])
            return true;
    return false;
}

/* The model holds quantized parameters: convert must keep them (--keep-quantized). */
static bool has_quantized(const input_result *in)
{
    const dta_quant *q = in->report->quant;
    for (size_t i = 0; q && i < in->model->ntensors; i++)
        if (dta_quant_tensor_is_quantized(q, i))
            return true;
    return false;
}

/* Every floating tensor of the model can be converted to `to` (or already is it); intended
 * islands and quantized parameters are kept, so they do not count. */
static bool all_convertible(const input_result *in, dta_dtype to)
{
    const dta_model *m = in->model;
    for (size_t i = 0; i < m->ntensors; i++) {
        dta_dtype t = m->tensors[i].dtype;
        if (dta_dtype_is_float(t) && t != to && !dta_convert_supported(t, to) &&
            !(in->report->intended && in->report->intended[i]) &&
            !dta_quant_tensor_is_quantized(in->report->quant, i))
            return false;
    }
    return true;
}

bool cli_fix_build(const cli_options *o, const input_result *in, const dta_finding *f,
                   const char *glob, cli_fix *fx)
{
    char outp[2048];
    dta_dtype to = f->expected;
    dta_dtype expect = o && o->command == CMD_AUDIT ? o->expect : DTA_DTYPE_NONE;
    memset(fx, 0, sizeof *fx);
    if (!in->model || !in->report || f->values || f->intended)
        return false;
    switch (f->rule_id) {
    case DTA_RULE_DTYPE_OUTLIER:
    case DTA_RULE_MIXED_MODULE:
    case DTA_RULE_EXPECT_MISMATCH: {
        const dta_report *r = in->report;
        dta_dtype dom = f->root_index < r->nroots ? r->roots[f->root_index].dominant
                                                  : DTA_DTYPE_NONE;
        /* With --expect X off the root's dominant dtype, converting a part to either dtype
         * raises the other rule; converting the whole checkpoint to X satisfies both. */
        bool whole = writable(expect) && (dom != expect || to != expect);
        if (whole) {
            to = expect;
            glob = "";
            if (!all_convertible(in, to))
                return false;
        }
        if (!writable(to) || !dta_convert_supported(f->dtype, to))
            return false;
        if (whole)
            snprintf(fx->description, sizeof fx->description,
                     "convert the whole checkpoint to %s, the expected dtype (--expect): "
                     "converting only the finding's tensors would leave them off the root's "
                     "dominant %s",
                     dta_dtype_name(to), dta_dtype_name(dom));
        else
            snprintf(fx->description, sizeof fx->description,
                     "convert '%s' to %s (%s); every other tensor is copied unchanged", glob,
                     dta_dtype_name(to),
                     f->rule_id == DTA_RULE_EXPECT_MISMATCH ? "the expected dtype"
                                                            : "the root's dominant dtype");
        break;
    }
    case DTA_RULE_CONFIG_MISMATCH:
        /* expected: config.json's dtype, dtype: the weights' */
        if (!writable(to))
            return false;
        glob = "";
        snprintf(fx->description, sizeof fx->description,
                 "convert the weights to config.json's %s (or set \"torch_dtype\": \"%s\" in "
                 "config.json by hand)",
                 dta_dtype_name(to), dta_dtype_get(f->dtype)->torch_name);
        break;
    case DTA_RULE_ADAPTER_MISMATCH:
        if (!writable(to) || !dta_convert_supported(f->dtype, to))
            return false;
        glob = "";
        snprintf(fx->description, sizeof fx->description,
                 "convert the adapter to its base model's %s (or set the trainer's precision "
                 "from the base model)",
                 dta_dtype_name(to));
        break;
    default:
        return false;
    }
    suggest_output(outp, sizeof outp, in->path, to);
    bool ok = arg(fx, "dtaudit") && arg(fx, "convert") && arg(fx, "--to") &&
              arg(fx, dtype_alias(to));
    if (ok && glob[0])
        ok = arg(fx, "--only") && arg(fx, glob);
    if (ok && has_intended(in))
        ok = arg(fx, "--keep-intended");
    if (ok && has_quantized(in)) /* never cast quantized codes without their scales */
        ok = arg(fx, "--keep-quantized");
    ok = ok && arg(fx, in->path) && arg(fx, "-o") && arg(fx, outp);
    return ok;
}

const char *cli_fix_shell(const cli_fix *fx, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < fx->argc && o < cap; i++) {
        char w[2400];
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? " " : "",
                              shell_quote(w, sizeof w, fx->argv[i]));
    }
    return buf;
}

void suggest_output(char *buf, size_t cap, const char *path, dta_dtype to)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (dot && dot != base)
        snprintf(buf, cap, "%.*s.%s%s", (int)(dot - path), path, dtype_alias(to), dot);
    else
        snprintf(buf, cap, "%.*s-%s", (int)len, path, dtype_alias(to));
}
