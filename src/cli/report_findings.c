/* Text output: an audit's findings, grouped (layers.{0..31}.mlp: one line for the modules
 * that differ only in numeric components), each with why and a fix. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fix.h"
#include "names.h"
#include "report_text.h"

/* ---- findings ------------------------------------------------------------------------ */

/* Grouping key of a finding: a single top-level tensor groups by its name; a module whose
 * name has numeric components groups by its shape (layers.#.mlp); any other module is its
 * own group. Returns the kind (0..3, 2 = alone) and writes the key text for the others. */
static int group_key(const dta_finding *f, char *buf, size_t cap)
{
    /* intended findings (one per tensor) group by rule and name shape, only among
     * themselves: layers.{0..31}.x */
    if (f->intended) {
        name_shape(buf, cap, f->module);
        return strchr(buf, '#') ? 3 : 2;
    }
    if (f->ntensors == 1 && strcmp(f->tensors[0], f->module) == 0) {
        snprintf(buf, cap, "%s", f->module);
        return 0;
    }
    name_shape(buf, cap, f->module);
    return strchr(buf, '#') ? 1 : 2;
}

static bool same_attrs(const dta_finding *a, const dta_finding *b)
{
    return a->rule_id == b->rule_id && a->severity == b->severity && a->dtype == b->dtype &&
           a->expected == b->expected && a->root_index == b->root_index;
}

/* gid[i] = index of the first finding of i's group, through a hash of the keys: linear in
 * the findings (64k distinct findings used to take 30 s pairwise). */
static bool group_findings(const dta_finding *fs, size_t n, size_t *gid)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot); /* leader + 1 */
    if (!slot)
        return false;
    for (size_t i = 0; i < n; i++) {
        char key[1024], other[1024];
        const dta_finding *f = &fs[i];
        int kind = group_key(f, key, sizeof key);
        gid[i] = i;
        if (kind == 2)
            continue;
        uint64_t h = 1469598103934665603ull;
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ (uint64_t)kind ^ ((uint64_t)f->rule_id << 8) ^ ((uint64_t)f->severity << 20) ^
             ((uint64_t)f->dtype << 24) ^ ((uint64_t)f->expected << 32) ^
             ((uint64_t)f->root_index << 40)) * 0x9e3779b97f4a7c15ull;
        size_t k = (size_t)(h >> 17) & (cap - 1);
        for (; slot[k]; k = (k + 1) & (cap - 1)) {
            const dta_finding *l = &fs[slot[k] - 1];
            if (same_attrs(f, l) && group_key(l, other, sizeof other) == kind &&
                strcmp(key, other) == 0)
                break;
        }
        if (slot[k])
            gid[i] = slot[k] - 1;
        else
            slot[k] = i + 1;
    }
    free(slot);
    return true;
}

static void print_fix(tctx *c, const input_result *in, const dta_finding *f, const char *glob)
{
    char outp[1024], qg[1200], qp[1200], qo[1200], allow[1100];
    const char *pal_dim = C(c->pal, DIM), *reset = C(c->pal, RESET);
    bool dtype_rule = f->rule_id == DTA_RULE_DTYPE_OUTLIER ||
                      f->rule_id == DTA_RULE_MIXED_MODULE ||
                      f->rule_id == DTA_RULE_EXPECT_MISMATCH;
    cli_fix fx;
    char cmd[8192];
    bool has_fix = cli_fix_build(c->o, in, f, glob, &fx); /* the command JSON's "fix" holds */
    if (has_fix)
        cli_fix_shell(&fx, cmd, sizeof cmd);
    if (dtype_rule && f->expected != DTA_DTYPE_NONE) {
        if (has_fix)
            fprintf(c->out, "      %sfix:%s %s\n", pal_dim, reset, cmd);
        else
            fprintf(c->out, "      %sfix:%s none that dtaudit convert can apply (it writes f32, "
                    "f16 and bf16 from floating dtypes it can read)\n", pal_dim, reset);
        if (glob[0] && f->dtype != DTA_DTYPE_NONE) {
            snprintf(allow, sizeof allow, "%s=%s", glob, dta_dtype_name(f->dtype));
            fprintf(c->out, "      %sor, if intended:%s --allow %s\n", pal_dim, reset,
                    shell_quote(qg, sizeof qg, allow));
        }
    } else if (f->rule_id == DTA_RULE_CONFIG_MISMATCH) {
        fprintf(c->out,
                "      %sfix:%s set \"torch_dtype\": \"%s\" in config.json, or convert the weights%s%s\n",
                pal_dim, reset, dta_dtype_get(f->dtype)->torch_name, has_fix ? ": " : "",
                has_fix ? cmd : "");
    } else if (f->rule_id == DTA_RULE_ADAPTER_MISMATCH) {
        fprintf(c->out,
                "      %sfix:%s %s%sset the trainer's precision "
                "from the base model; if intended: \"severity\": {\"adapter-mismatch\": \"info\"} "
                "in a --policy file\n",
                pal_dim, reset, has_fix ? cmd : "", has_fix ? ", or " : "");
    } else if (f->rule_id == DTA_RULE_INDEX_MISMATCH) {
        fprintf(c->out, "      %sfix:%s re-save the checkpoint, or correct the index's weight_map and "
                "metadata.total_size\n", pal_dim, reset);
    } else if (f->rule_id == DTA_RULE_UNSAFE_PICKLE) {
        fprintf(c->out,
                "      %sfix:%s load it only with torch.load(weights_only=True), or re-save "
                "its tensors as safetensors from a trusted environment\n",
                pal_dim, reset);
    } else if (f->values && f->expected != DTA_DTYPE_NONE) {
        /* range-overflow / precision-underflow: keep them, clamp them, or another target */
        dta_dtype wider = f->expected == DTA_F16 ? DTA_BF16 : DTA_F32;
        suggest_output(outp, sizeof outp, in->path, f->expected);
        shell_quote(qp, sizeof qp, in->path);
        shell_quote(qo, sizeof qo, outp);
        /* advice, not a "fix": JSON's fix is null for value rules (fix.c), because auditing
         * the output of --keep with the same arguments still reports the kept tensors */
        /* a quantized parameter's dequantized values: convert casts no codes, so the ways
         * on are keeping it quantized or --dequantize with a clamp or a wider target */
        bool dq = f->values->dequantized != NULL;
        if (dq)
            fprintf(c->out, "      %skeep them quantized:%s dtaudit convert --to %s "
                    "--keep-quantized %s -o %s\n", pal_dim, reset, dtype_alias(f->expected),
                    qp, qo);
        else
            fprintf(c->out, "      %skeep them:%s dtaudit convert --to %s --keep %s %s -o %s\n",
                    pal_dim, reset, dtype_alias(f->expected),
                    shell_quote(qg, sizeof qg, glob[0] ? glob : "*"), qp, qo);
        if (glob[0] && f->dtype != DTA_DTYPE_NONE) {
            snprintf(allow, sizeof allow, "%s=%s", glob, dta_dtype_name(f->dtype));
            fprintf(c->out, "      %sthen audit the output with:%s --allow %s\n", pal_dim, reset,
                    shell_quote(qg, sizeof qg, allow));
        }
        /* a wider target exists for f16 (bf16's range) and bf16 (f32), not for f32 */
        char more[64] = "";
        if (f->expected != DTA_F32)
            snprintf(more, sizeof more, "%s--to %s (more range)", dq ? "--dequantize " : "",
                     dtype_alias(wider));
        if (f->rule_id == DTA_RULE_RANGE_OVERFLOW)
            fprintf(c->out, "      %sor:%s %s--on-overflow saturate (clamp to %s's largest "
                    "finite value)%s%s\n", pal_dim, reset, dq ? "--dequantize " : "",
                    dtype_alias(f->expected),
                    more[0] ? ", or " : "", more);
        else if (more[0])
            fprintf(c->out, "      %sor:%s %s\n", pal_dim, reset, more);
    } else if (f->rule_id == DTA_RULE_NONFINITE) {
        fprintf(c->out,
                "      %sadvice:%s re-export from a good step, or find the operation that "
                "produced them (dtaudit audit --values -f json lists the counts per tensor)\n",
                pal_dim, reset);
    } else if (f->rule_id == DTA_RULE_META_TENSOR) {
        fprintf(c->out,
                "      %sfix:%s re-save from a model materialised on a real device "
                "(to_empty() and load the weights first)\n",
                pal_dim, reset);
    }
}

void text_findings(tctx *c, const input_result *in)
{
    const dta_report *rep = in->report;
    size_t nf = rep->nfindings ? rep->nfindings : 1;
    const dta_finding **g = malloc(sizeof *g * nf);
    const char **names = malloc(sizeof *names * nf);
    size_t *gid = malloc(sizeof *gid * nf), *start = calloc(nf + 1, sizeof *start);
    size_t *order = malloc(sizeof *order * nf), *fill = malloc(sizeof *fill * nf);
    if (!g || !names || !gid || !start || !order || !fill ||
        !group_findings(rep->findings, rep->nfindings, gid))
        goto out;
    /* bucket the members of each group, in finding order */
    for (size_t i = 0; i < rep->nfindings; i++)
        start[gid[i] + 1]++;
    for (size_t i = 0; i < rep->nfindings; i++)
        start[i + 1] += start[i];
    memcpy(fill, start, sizeof *fill * rep->nfindings);
    for (size_t i = 0; i < rep->nfindings; i++)
        order[fill[gid[i]]++] = i;
    fprintf(c->out, "\n  %sfindings%s\n", C(c->pal, BOLD), C(c->pal, RESET));
    if (rep->nfindings == 0)
        fprintf(c->out, "    %snone%s\n", C(c->pal, GREEN), C(c->pal, RESET));
    for (size_t i = 0; i < rep->nfindings; i++) {
        if (gid[i] != i)
            continue;
        const dta_finding *f = &rep->findings[i];
        size_t n = 0, ntensors = 0;
        for (size_t k = start[i]; k < start[i + 1]; k++) {
            g[n++] = &rep->findings[order[k]];
            ntensors += rep->findings[order[k]].ntensors;
        }
        char pat[1024], glob[1024], what[160] = "";
        bool single_tensor = f->ntensors == 1 && strcmp(f->tensors[0], f->module) == 0;
        if (n > 1) {
            for (size_t k = 0; k < n; k++)
                names[k] = g[k]->module;
            names_pattern(names, n, pat, sizeof pat, glob, sizeof glob);
        }
        else {
            snprintf(pat, sizeof pat, "%s", f->module[0] ? f->module : "(whole state dict)");
            glob_escape(glob, sizeof glob, f->module, strlen(f->module));
        }
        if (!single_tensor && glob[0] && f->rule_id != DTA_RULE_UNSAFE_PICKLE &&
            f->rule_id != DTA_RULE_META_TENSOR) {
            size_t gl = strlen(glob);
            if (gl + 3 < sizeof glob)
                memcpy(glob + gl, ".*", 3);
        }
        if (f->values && f->dtype != DTA_DTYPE_NONE && f->expected != DTA_DTYPE_NONE)
            snprintf(what, sizeof what, "  %s -> %s", dta_dtype_name(f->dtype),
                     dta_dtype_name(f->expected));
        else if (f->dtype != DTA_DTYPE_NONE && f->expected != DTA_DTYPE_NONE)
            snprintf(what, sizeof what, "  %s, expected %s", dta_dtype_name(f->dtype),
                     dta_dtype_name(f->expected));
        char shown[1200];
        fprintf(c->out, "    %s%-7s%s %-15s %s%s%s%s", C(c->pal, sev_color(f->severity)),
                dta_severity_name(f->severity), C(c->pal, RESET), f->rule, C(c->pal, BOLD),
                clean(shown, sizeof shown, pat), C(c->pal, RESET), what);
        if (n > 1 && !f->intended)
            fprintf(c->out, "  (%zu modules, %zu tensors)\n", n, ntensors);
        else if (ntensors)
            fprintf(c->out, "  (%zu tensor%s)\n", ntensors, ntensors == 1 ? "" : "s");
        else
            fputc('\n', c->out);
        fprintf(c->out, "      %swhy:%s %s%s\n", C(c->pal, DIM), C(c->pal, RESET),
                n > 1 ? "e.g. " : "", clean(shown, sizeof shown, f->message));
        if (c->verbosity > 0)
            for (size_t k = 0; k < n; k++)
                for (size_t t = 0; t < g[k]->ntensors; t++)
                    fprintf(c->out, "        %s\n", clean(shown, sizeof shown, g[k]->tensors[t]));
        print_fix(c, in, f, glob);
    }
out:
    free(g);
    free(names);
    free(gid);
    free(start);
    free(order);
    free(fill);
}
