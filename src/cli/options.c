/* Option table, getopt_long wiring and --help text. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtaudit/backend.h"
#include "dtaudit/policy.h"
#include "dtaudit/version.h"
#include "options.h"
#include "term.h"

const cli_option cli_option_table[] = {
    {"format", 'f', "FMT", CMD_ALL, "output format: text (default), json, sarif (SARIF 2.1.0; audit) or github (workflow annotations; audit)"},
    {"color", 0, "WHEN", CMD_ALL, "colour text output: auto (default; honours NO_COLOR), always, never"},
    {"quiet", 'q', NULL, CMD_ALL, "text: print findings and errors only"},
    {"verbose", 'v', NULL, CMD_ALL, "text: also list every tensor"},
    {"expect", 'e', "DTYPE", CMD_AUDIT, "every floating tensor must be DTYPE (expect-mismatch, error)"},
    {"allow", 'a', "GLOB[=DTYPE]", CMD_AUDIT, "intended exception: tensors or modules matching GLOB (in DTYPE) raise no dtype finding; repeatable"},
    {"fail-on", 0, "LEVEL", CMD_AUDIT | CMD_DIFF, "lowest severity that makes the exit status 1: error, warning (default), info, never"},
    {"policy", 0, "FILE", CMD_AUDIT | CMD_DIFF, "JSON policy: expect, allow, per-rule severity, fail_on (command-line options override it)"},
    {"base", 0, "DIR", CMD_AUDIT, "base model of a PEFT adapter: compare dominant dtypes (adapter-mismatch, warning)"},
    {"values", 0, NULL, CMD_AUDIT, "read the tensor data: NaN/inf (nonfinite), and against the target overflow (range-overflow) and values lost to zero (precision-underflow)"},
    {"target", 0, "DTYPE", CMD_AUDIT, "dtype --values checks the values against: f32, f16 or bf16 (default: --expect when it is one of them); implies --values"},
    {"strict", 0, NULL, CMD_AUDIT, "report intended-precision islands (T5 wo, MoE routing biases, A_log, ...) as ordinary dtype findings"},
    {"to", 't', "DTYPE", CMD_CONVERT, "target dtype: f32, f16 or bf16 (floating tensors only; integers never change), or auto: each root to its dominant dtype"},
    {"keep-intended", 0, NULL, CMD_CONVERT, "keep intended-precision islands (T5 wo, MoE routing biases, A_log, ...) in their dtype (default with --to auto)"},
    {"no-keep-intended", 0, NULL, CMD_CONVERT, "convert intended-precision islands too (with --to auto)"},
    {"output", 'o', "OUT", CMD_CONVERT, "output file, or directory for a model directory or sharded index"},
    {"only", 0, "GLOB", CMD_CONVERT, "convert only tensors or modules matching GLOB; repeatable"},
    {"keep", 0, "GLOB", CMD_CONVERT, "keep tensors or modules matching GLOB in their dtype (e.g. '*norm*'); repeatable"},
    {"optimizer", 0, NULL, CMD_CONVERT, "also convert roots named optimizer* (left as they are by default)"},
    {"out-format", 0, "FMT", CMD_CONVERT, "same (default), safetensors or torch"},
    {"on-overflow", 0, "MODE", CMD_CONVERT | CMD_VERIFY, "values the target cannot hold: error (default: refuse, write nothing), inf (as torch's .to()), saturate"},
    {"force", 0, NULL, CMD_CONVERT, "replace an existing OUT"},
    {"keep-quantized", 0, NULL, CMD_CONVERT, "quantized input: convert only the unquantized tensors, keep quantized parameters and their scales byte-identical"},
    {"dequantize", 0, NULL, CMD_CONVERT, "make quantized parameters plain --to tensors (FP8, NVFP4/MXFP4, bitsandbytes, GPTQ/AWQ, compressed-tensors, ComfyUI scaled FP8 and nvfp4/mxfp8/int8; see the man page); other schemes refused"},
    {"verify", 0, NULL, CMD_CONVERT, "check the written data against the source before publishing it"},
    {"jobs", 'j', "N", CMD_CONVERT, "threads: shards converted at once, the rest sharing the tensors of a file (default: the number of CPUs; 1: one after the other)"},
    {"part", 0, "K/N", CMD_CONVERT, "convert only the K-th of N disjoint sets of shards into a staging directory beside OUT; the last part to finish publishes OUT (one process per part, e.g. a Slurm array)"},
    {"device", 0, "DEV", CMD_CONVERT | CMD_VERIFY | CMD_AUDIT, "auto (default: CUDA for large jobs when built in and a GPU is present), cpu, or cuda (exit 3 when unavailable)"},
    {"help", 'h', NULL, CMD_ALL, "show this help and exit"},
    {"version", 'V', NULL, CMD_ALL, "show the version and built-in features and exit"},
    {NULL, 0, NULL, 0, NULL},
};

void cli_version(FILE *out)
{
    const char *x = dta_build_features();
    fprintf(out, "dtaudit %s\nfeatures: safetensors torch-zip torch-legacy %s%s%s\n",
            dta_version(), dta_convert_backend(), *x ? " " : "", x);
}

void cli_usage(FILE *out, int command)
{
    fputs("usage: dtaudit scan  [options] PATH...    per-tensor dtype map and per-root summary\n"
          "       dtaudit audit [options] PATH...    scan plus findings, CI exit status\n"
          "       dtaudit diff  [options] OLD NEW    dtype drift between two checkpoints\n"
          "       dtaudit convert [options] --to DTYPE PATH -o OUT   rewrite to one dtype\n"
          "       dtaudit verify  [options] SOURCE CONVERTED   values == conversion of SOURCE\n"
          "\n"
          "PATH: a safetensors file, a PyTorch checkpoint (zip, legacy or TorchScript), a sharded\n"
          "checkpoint's *.index.json, or a model directory; formats are detected by content.\n"
          "\noptions:\n",
          out);
    for (const cli_option *o = cli_option_table; o->name; o++) {
        char left[64];
        if (command && !(o->commands & command))
            continue;
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        const char *only = "";
        if (!command && o->commands != CMD_ALL)
            only = o->commands == CMD_AUDIT ? " (audit)"
                 : o->commands == (CMD_AUDIT | CMD_DIFF) ? " (audit, diff)"
                 : o->commands == CMD_CONVERT ? " (convert)"
                 : o->commands == (CMD_CONVERT | CMD_VERIFY) ? " (convert, verify)" : "";
        fprintf(out, "  %-26s %s%s\n", left, o->help, only);
    }
    fputs("\nDTYPE: a safetensors code (BF16, F16, F32, F8_E4M3, ...) or an alias: bf16 bfloat16,\n"
          "fp16 f16 half float16, fp32 f32 float float32 (case-insensitive).\n",
          out);
    /* the rule list comes from the library's catalogue, grouped by default severity */
    size_t nrules;
    const dta_rule_info *rules = dta_rules(&nrules);
    static const struct { const char *cmd; dta_severity sev; const char *head; } groups[] = {
        {"audit", DTA_SEV_ERROR, "\nrules (audit), error:"},
        {"audit", DTA_SEV_WARNING, "\nrules (audit), warning:"},
        {"audit", DTA_SEV_INFO, "\nreader notes (audit), info:"},
        {"diff", DTA_SEV_ERROR, "\nchanges (diff), error:"},
        {"diff", DTA_SEV_WARNING, "\nchanges (diff), warning:"},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        size_t col = (size_t)fprintf(out, "%s", groups[g].head) - 1;
        for (size_t i = 0; i < nrules; i++) {
            if (rules[i].severity != groups[g].sev || strcmp(rules[i].command, groups[g].cmd))
                continue;
            size_t len = strlen(rules[i].name) + 1;
            if (col + len > 88) {
                fputs("\n ", out);
                col = 1;
            }
            col += (size_t)fprintf(out, " %s", rules[i].name);
        }
    }
    fputs("\n\nexit status: 0 no finding (or change) at or above --fail-on; 1 findings, drift\n"
          "(diff), refused conversion or verify mismatch; 2 usage error or unreadable, malformed\n"
          "or unsupported input; 3 --device cuda asked for but unavailable.\n"
          "See dtaudit(1).\n",
          out);
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("dtaudit: ", stderr);
    fprintf(stderr, fmt, shown(arg)); /* argv may hold any bytes */
    fputs(" (see 'dtaudit --help')\n", stderr);
    return 2;
}

static int add_allow(cli_options *o, const char *spec)
{
    const char *eq = strrchr(spec, '=');
    dta_allow a = {NULL, DTA_DTYPE_NONE};
    char *glob;
    if (eq) {
        a.dtype = dta_dtype_from_alias(eq + 1);
        if (a.dtype == DTA_DTYPE_NONE)
            return usage_error("--allow: unknown dtype in '%s'", spec);
        glob = strndup(spec, (size_t)(eq - spec));
    } else {
        glob = strdup(spec);
    }
    if (!glob || !*glob) {
        free(glob);
        return usage_error("--allow: empty pattern in '%s'", spec);
    }
    dta_allow *p = realloc(o->allow, (o->nallow + 1) * sizeof *p);
    if (!p) {
        free(glob);
        return usage_error("%s", "out of memory");
    }
    a.glob = glob;
    p[o->nallow++] = a;
    o->allow = p;
    return -1;
}

int cli_parse(int argc, char **argv, cli_options *o)
{
    struct option longs[64]; /* more than the table has: checked below */
    char shorts[64] = "";
    size_t n = 0, sn = 0;
    int cmd = o->command;

    for (const cli_option *t = cli_option_table; t->name; t++, n++) {
        if (n + 1 >= sizeof longs / sizeof longs[0])
            return usage_error("%s", "internal error: option table larger than longs[]");
        longs[n].name = t->name;
        longs[n].has_arg = t->arg ? required_argument : no_argument;
        longs[n].flag = NULL;
        longs[n].val = t->short_name ? t->short_name : 1000 + (int)n;
        if (t->short_name) {
            shorts[sn++] = (char)t->short_name;
            if (t->arg)
                shorts[sn++] = ':';
        }
    }
    memset(&longs[n], 0, sizeof longs[n]);
    shorts[sn] = 0;

    opterr = 0;
    optind = 1;
    for (;;) {
        int li = -1;
        int c = getopt_long(argc, argv, shorts, longs, &li);
        if (c == -1)
            break;
        if (c == '?' || c == ':') {
            if (optopt && optopt < 256)
                return usage_error("unknown option or missing argument: -%s",
                                   (char[]){(char)optopt, 0});
            return usage_error("unknown option or missing argument: %s", argv[optind - 1]);
        }
        /* find the table entry */
        const cli_option *t = NULL;
        for (size_t i = 0; cli_option_table[i].name; i++)
            if ((cli_option_table[i].short_name && cli_option_table[i].short_name == c) ||
                c == 1000 + (int)i)
                t = &cli_option_table[i];
        if (!t)
            return usage_error("%s", "internal option error");
        if (!(t->commands & cmd))
            return usage_error("--%s does not apply to this command", t->name);
        const char *arg = optarg;
        if (strcmp(t->name, "format") == 0) {
            if (strcmp(arg, "text") == 0)
                o->format = FMT_TEXT;
            else if (strcmp(arg, "json") == 0)
                o->format = FMT_JSON;
            else if (strcmp(arg, "sarif") == 0 || strcmp(arg, "github") == 0) {
                if (cmd != CMD_AUDIT)
                    return usage_error("--format %s applies to audit only", arg);
                o->format = arg[0] == 's' ? FMT_SARIF : FMT_GITHUB;
            } else
                return usage_error("--format: unknown format '%s' (text, json, sarif, github)", arg);
        } else if (strcmp(t->name, "color") == 0) {
            if (strcmp(arg, "auto") == 0)
                o->color = -1;
            else if (strcmp(arg, "always") == 0)
                o->color = 1;
            else if (strcmp(arg, "never") == 0)
                o->color = 0;
            else
                return usage_error("--color: '%s' is not auto, always or never", arg);
        } else if (strcmp(t->name, "quiet") == 0) {
            o->verbosity = -1;
        } else if (strcmp(t->name, "verbose") == 0) {
            o->verbosity = 1;
        } else if (strcmp(t->name, "expect") == 0) {
            o->expect = dta_dtype_from_alias(arg);
            if (o->expect == DTA_DTYPE_NONE)
                return usage_error("--expect: unknown dtype '%s'", arg);
            o->expect_set = true;
        } else if (strcmp(t->name, "allow") == 0) {
            int rc = add_allow(o, arg);
            if (rc >= 0)
                return rc;
        } else if (strcmp(t->name, "fail-on") == 0) {
            int s = dta_severity_from_name(arg);
            if (s < 0)
                return usage_error("--fail-on: '%s' is not error, warning, info or never", arg);
            o->fail_on = (dta_severity)s;
            o->fail_on_set = true;
        } else if (strcmp(t->name, "keep-intended") == 0 ||
                   strcmp(t->name, "no-keep-intended") == 0) {
            o->keep_intended = t->name[0] == 'k';
        } else if (strcmp(t->name, "strict") == 0) {
            o->strict = o->strict_set = true;
        } else if (strcmp(t->name, "policy") == 0) {
            o->policy = arg;
        } else if (strcmp(t->name, "base") == 0) {
            o->base = arg;
        } else if (strcmp(t->name, "values") == 0) {
            o->values = true;
        } else if (strcmp(t->name, "target") == 0) {
            o->target = dta_dtype_from_alias(arg);
            if (o->target != DTA_F32 && o->target != DTA_F16 && o->target != DTA_BF16)
                return usage_error("--target: '%s' is not f32, f16 or bf16", arg);
            o->values = true;
        } else if (strcmp(t->name, "to") == 0) {
            o->to_auto = strcmp(arg, "auto") == 0;
            o->to = o->to_auto ? DTA_DTYPE_NONE : dta_dtype_from_alias(arg);
            if (!o->to_auto && o->to != DTA_F32 && o->to != DTA_F16 && o->to != DTA_BF16)
                return usage_error("--to: '%s' is not f32, f16, bf16 or auto", arg);
        } else if (strcmp(t->name, "output") == 0) {
            o->output = arg;
        } else if (strcmp(t->name, "only") == 0 || strcmp(t->name, "keep") == 0) {
            bool only = t->name[0] == 'o';
            if (!*arg) /* an empty glob matches nothing: the run would convert nothing */
                return usage_error("--%s: empty pattern", only ? "only" : "keep");
            char ***v = only ? &o->only : &o->keep;
            size_t *nv = only ? &o->nonly : &o->nkeep;
            char **p = realloc(*v, (*nv + 1) * sizeof *p);
            if (!p)
                return usage_error("%s", "out of memory");
            p[(*nv)++] = (char *)arg;
            *v = p;
        } else if (strcmp(t->name, "optimizer") == 0) {
            o->optimizer = true;
        } else if (strcmp(t->name, "force") == 0) {
            o->force = true;
        } else if (strcmp(t->name, "keep-quantized") == 0) {
            o->keep_quantized = true;
        } else if (strcmp(t->name, "verify") == 0) {
            o->verify = true;
        } else if (strcmp(t->name, "dequantize") == 0) {
            o->dequantize = true;
        } else if (strcmp(t->name, "out-format") == 0) {
            if (strcmp(arg, "same") == 0)
                o->out_format = DTA_OUT_SAME;
            else if (strcmp(arg, "safetensors") == 0)
                o->out_format = DTA_OUT_SAFETENSORS;
            else if (strcmp(arg, "torch") == 0)
                o->out_format = DTA_OUT_TORCH;
            else
                return usage_error("--out-format: '%s' is not same, safetensors or torch", arg);
        } else if (strcmp(t->name, "on-overflow") == 0) {
            if (strcmp(arg, "error") == 0)
                o->overflow = DTA_OVERFLOW_ERROR;
            else if (strcmp(arg, "inf") == 0)
                o->overflow = DTA_OVERFLOW_INF;
            else if (strcmp(arg, "saturate") == 0)
                o->overflow = DTA_OVERFLOW_SATURATE;
            else
                return usage_error("--on-overflow: '%s' is not error, inf or saturate", arg);
        } else if (strcmp(t->name, "jobs") == 0) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(arg, &end, 10);
            if (!*arg || *end || errno || arg[0] == '-' || v < 1 || v > 1024)
                return usage_error("--jobs: '%s' is not a number from 1 to 1024", arg);
            o->jobs = (unsigned)v;
        } else if (strcmp(t->name, "part") == 0) {
            unsigned long k, n;
            char *end, *end2;
            errno = 0;
            k = strtoul(arg, &end, 10);
            n = *end == '/' ? strtoul(end + 1, &end2, 10) : 0;
            if (!*arg || arg[0] == '-' || *end != '/' || end[1] == '-' || !end[1] || *end2 ||
                errno || n < 1 || n > 100000 || k < 1 || k > n)
                return usage_error("--part: '%s' is not K/N with 1 <= K <= N <= 100000", arg);
            o->part = (unsigned)k;
            o->nparts = (unsigned)n;
        } else if (strcmp(t->name, "device") == 0) {
            if (strcmp(arg, "auto") == 0)
                o->device = DEVICE_AUTO;
            else if (strcmp(arg, "cpu") == 0)
                o->device = DEVICE_CPU;
            else if (strcmp(arg, "cuda") == 0)
                o->device = DEVICE_CUDA;
            else
                return usage_error("--device: '%s' is not auto, cpu or cuda", arg);
        } else if (strcmp(t->name, "help") == 0) {
            cli_usage(stdout, cmd);
            return 0;
        } else if (strcmp(t->name, "version") == 0) {
            cli_version(stdout);
            return 0;
        }
    }
    if (optind >= argc)
        return usage_error("%s: no PATH given", o->command_name);
    if (cmd == CMD_DIFF && argc - optind != 2)
        return usage_error("%s: needs two paths, OLD and NEW", o->command_name);
    if (cmd == CMD_VERIFY && argc - optind != 2)
        return usage_error("%s: needs two paths, SOURCE and CONVERTED", o->command_name);
    if (cmd == CMD_CONVERT && argc - optind != 1)
        return usage_error("%s: takes one PATH", o->command_name);
    if (cmd == CMD_CONVERT && !o->output)
        return usage_error("%s: needs -o OUT", o->command_name);
    if (cmd == CMD_CONVERT && o->nparts && o->force)
        return usage_error("%s: --part and --force exclude each other (remove OUT first)",
                           o->command_name);
    if (cmd == CMD_CONVERT && o->to == DTA_DTYPE_NONE && !o->to_auto)
        return usage_error("%s: needs --to f32, f16 or bf16", o->command_name);
    o->paths = argv + optind;
    o->npaths = (size_t)(argc - optind);
    return -1;
}

void cli_options_free(cli_options *o)
{
    free(o->only);
    free(o->keep);
    for (size_t i = 0; i < o->nallow; i++)
        free((char *)o->allow[i].glob);
    free(o->allow);
}
