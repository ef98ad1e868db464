/* The summaries of convert and verify, as text or JSON. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "report.h"

/* JSON through the one writer (jsonw.c): any bytes in paths and names give valid
 * JSON, and no inf or nan is written bare. */
static void str_array(jw *w, const char *k, char *const *v, size_t n)
{
    jw_key(w, k);
    jw_arr(w);
    for (size_t i = 0; i < n; i++) {
        jw_item(w, false);
        jw_str(w, v[i]);
    }
    jw_arr_end(w);
}

/* "BF16", or "auto" for --to auto (each root to its own compute dtype) */
static const char *to_name(const cli_options *o)
{
    return o->to_auto ? "auto" : dta_dtype_name(o->to);
}

void report_convert_json(FILE *out, const cli_options *o, const dta_convert_result *r)
{
    jw *w = jw_new(out);
    if (!w)
        return;
    jw_doc(w, "convert");
    jw_kv_str(w, "input", o->paths[0]);
    if (r->written)
        jw_kv_str(w, "output", r->written);
    else
        jw_kv_null(w, "output");
    jw_kv_str(w, "format", r->out_format);
    jw_kv_str(w, "to", to_name(o));
    if (o->to_auto) {
        if (r->auto_to != DTA_DTYPE_NONE)
            jw_kv_str(w, "auto_to", dta_dtype_name(r->auto_to));
        else
            jw_kv_null(w, "auto_to");
    }
    jw_kv_u64(w, "kept_intended", r->kept_intended);
    jw_kv_bool(w, "refused", r->refused);
    jw_kv_u64(w, "tensors", r->tensors);
    jw_kv_u64(w, "tensors_converted", r->tensors_converted);
    jw_kv_u64(w, "storages_converted", r->storages_converted);
    jw_kv_u64(w, "bytes_in", r->bytes_in);
    jw_kv_u64(w, "bytes_out", r->bytes_out);
    jw_kv_u64(w, "elements", r->stats.elements);
    jw_kv_u64(w, "overflow", r->stats.overflow);
    jw_kv_u64(w, "underflow", r->stats.underflow);
    jw_kv_u64(w, "nan", r->stats.nan);
    jw_kv_u64(w, "inf", r->stats.inf);
    jw_key(w, "issues");
    jw_arr(w);
    for (size_t i = 0; i < r->nissues; i++) {
        jw_item(w, true);
        jw_obj(w);
        jw_kv_str(w, "tensor", r->issues[i].name);
        jw_kv_u64(w, "overflow", r->issues[i].overflow);
        jw_kv_u64(w, "nan", r->issues[i].nan);
        jw_kv_u64(w, "inf", r->issues[i].inf);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    if (o->dequantize) {
        jw_kv_u64(w, "dequantized", r->params_dequantized);
        jw_kv_u64(w, "companions_dropped", r->companions_dropped);
    }
    if (r->shards) { /* a directory or sharded input */
        jw_kv_u64(w, "shards", r->shards);
        jw_kv_u64(w, "shards_converted", r->shards_converted);
        jw_kv_u64(w, "jobs", r->jobs);
    }
    if (o->nparts) {
        jw_kv_u64(w, "part", o->part);
        jw_kv_u64(w, "parts", o->nparts);
        jw_kv_u64(w, "shards_staged", r->shards_staged);
        jw_kv_bool(w, "published", r->published);
    }
    jw_kv_u64(w, "files_copied", r->files_copied);
    str_array(w, "copied_weights", r->copied_weights, r->ncopied_weights);
    str_array(w, "left_out", r->left_out, r->nleft_out);
    if (o->verify) {
        jw_key(w, "verify");
        jw_obj(w);
        jw_kv_u64(w, "elements", r->verify.elements);
        jw_kv_u64(w, "mismatches", r->verify.mismatches);
        jw_kv_u64(w, "nonfinite_added", r->verify.nonfinite_added);
        jw_kv_num(w, "max_abs_err", r->verify.max_abs_err);
        jw_kv_num(w, "max_rel_err", r->verify.max_rel_err);
        jw_obj_end(w);
    }
    jw_obj_end(w);
    jw_end(w); /* a failed write is reported by main (ferror on stdout) */
}

void report_convert_text(FILE *out, const cli_options *o, const dta_convert_result *r)
{
    char bi[32], bo[32];
    fmt_bytes(bi, sizeof bi, r->bytes_in);
    fmt_bytes(bo, sizeof bo, r->bytes_out);
    if (r->refused) {
        fprintf(out, "refused: values that %s cannot hold; nothing was written\n",
                 to_name(o));
        for (size_t i = 0; i < r->nissues; i++)
            if (r->issues[i].overflow)
                 fprintf(out, "  %s: %llu value%s beyond the %s range\n", shown(r->issues[i].name),
                         (unsigned long long)r->issues[i].overflow,
                         r->issues[i].overflow == 1 ? "" : "s", to_name(o));
        fprintf(out, "convert anyway with --on-overflow inf (what torch's .to() does) or "
                      "--on-overflow saturate, or keep those tensors with --keep\n");
        return;
    }
    if (o->verbosity < 0)
        return;
    if (o->nparts && o->part > r->shards) {
        fprintf(out, "part %u/%u of %s: no shard is assigned to it (%zu shards); nothing to do\n",
                o->part, o->nparts, shown(o->paths[0]), r->shards);
        return;
    }
    if (o->nparts && !r->published) {
        fprintf(out, "part %u/%u of %s: %zu of %zu shards converted and staged beside %s; "
                "%zu of %zu staged in all; the part that stages the last one publishes it\n",
                o->part, o->nparts, shown(o->paths[0]), r->shards_converted, r->shards,
                shown(o->output), r->shards_staged, r->shards);
        return;
    }
    fprintf(out, "converted %s -> %s (%s)\n", shown(o->paths[0]), shown(r->written), r->out_format);
    fprintf(out, "  %zu of %zu tensors to %s (%zu storages); tensor data %s -> %s\n",
            r->tensors_converted, r->tensors, o->to_auto ? "their root's dtype" : to_name(o),
            r->storages_converted, bi,
            bo);
    if (o->dequantize)
        fprintf(out, "  %zu quantized parameter%s dequantized, %zu companion tensor%s dropped\n",
                 r->params_dequantized, r->params_dequantized == 1 ? "" : "s",
                 r->companions_dropped, r->companions_dropped == 1 ? "" : "s");
    if (r->files_copied)
        fprintf(out, "  %zu other file%s and link%s copied as they are\n", r->files_copied,
                 r->files_copied == 1 ? "" : "s", r->files_copied == 1 ? "" : "s");
    for (size_t i = 0; i < r->ncopied_weights; i++)
        fprintf(out, "  note: %s copied without conversion (not read as the model's weights)\n",
                 shown(r->copied_weights[i]));
    for (size_t i = 0; i < r->nleft_out; i++)
        fprintf(out, "  left out: %s\n", shown(r->left_out[i]));
    if (o->to_auto)
        fprintf(out, "  --to auto: each root to its dominant dtype%s%s%s\n",
                 r->auto_to != DTA_DTYPE_NONE ? " (the first root: " : "",
                 r->auto_to != DTA_DTYPE_NONE ? dta_dtype_name(r->auto_to) : "",
                 r->auto_to != DTA_DTYPE_NONE ? ")" : "");
    if (r->kept_intended)
        fprintf(out, "  %zu intended tensor%s kept in %s dtype (--keep-intended; see audit's "
                      "'intended' findings)\n",
                 r->kept_intended, r->kept_intended == 1 ? "" : "s",
                 r->kept_intended == 1 ? "its" : "their");
    if (r->stats.overflow)
        fprintf(out, "  %llu values beyond the %s range became %s (--on-overflow %s)\n",
                 (unsigned long long)r->stats.overflow, to_name(o),
                 o->overflow == DTA_OVERFLOW_SATURATE ? "the largest finite value" : "inf",
                 o->overflow == DTA_OVERFLOW_SATURATE ? "saturate" : "inf");
    if (r->stats.underflow && o->verbosity > 0)
        fprintf(out, "  %llu nonzero values became zero (below the smallest %s subnormal)\n",
                 (unsigned long long)r->stats.underflow, to_name(o));
    if (r->stats.nan || r->stats.inf) {
        fprintf(out, "  note: the source already holds %llu NaN and %llu Inf values (kept):\n",
                 (unsigned long long)r->stats.nan, (unsigned long long)r->stats.inf);
        for (size_t i = 0; i < r->nissues; i++)
            if (r->issues[i].nan || r->issues[i].inf)
                 fprintf(out, "    %s: %llu NaN, %llu Inf\n", shown(r->issues[i].name),
                         (unsigned long long)r->issues[i].nan,
                         (unsigned long long)r->issues[i].inf);
    }
    if (o->verify)
        fprintf(out, "  verified before publishing: %llu elements, 0 mismatches, max abs error "
                      "%.3g, max rel error %.3g\n",
                 (unsigned long long)r->verify.elements, r->verify.max_abs_err,
                 r->verify.max_rel_err);
}

/* verify SOURCE CONVERTED: JSON, or one line and the details of what differs */
void report_verify(FILE *out, const cli_options *o, const dta_verify_result *v, bool ok)
{
    if (o->format == FMT_JSON) {
        jw *w = jw_new(out);
        if (w) {
            jw_doc(w, "verify");
            jw_kv_str(w, "source", o->paths[0]);
            jw_kv_str(w, "converted", o->paths[1]);
            jw_kv_bool(w, "ok", ok);
            jw_kv_u64(w, "tensors", v->tensors);
            jw_kv_u64(w, "tensors_bad", v->tensors_bad);
            jw_kv_u64(w, "missing", v->missing);
            jw_kv_u64(w, "extra", v->extra);
            jw_kv_u64(w, "shape_changed", v->shape_changed);
            jw_kv_u64(w, "elements", v->total.elements);
            jw_kv_u64(w, "mismatches", v->total.mismatches);
            jw_kv_u64(w, "nonfinite_added", v->total.nonfinite_added);
            jw_kv_num(w, "max_abs_err", v->total.max_abs_err);
            jw_kv_num(w, "max_rel_err", v->total.max_rel_err);
            if (v->first_bad)
                 jw_kv_str(w, "first_bad", v->first_bad);
            else
                 jw_kv_null(w, "first_bad");
            if (v->first_missing)
                 jw_kv_str(w, "first_missing", v->first_missing);
            else
                 jw_kv_null(w, "first_missing");
            jw_obj_end(w);
            jw_end(w);
        }
    } else if (o->verbosity >= 0 || !ok) {
        fprintf(out, "%s: %zu tensors compared, %llu elements; %llu mismatches, %llu non-finite values "
                "introduced; max abs error %.3g, max rel error %.3g\n",
                ok ? "ok" : "MISMATCH", v->tensors, (unsigned long long)v->total.elements,
                (unsigned long long)v->total.mismatches,
                (unsigned long long)v->total.nonfinite_added, v->total.max_abs_err,
                v->total.max_rel_err);
        if (v->tensors_bad)
            fprintf(out, "  %zu tensors differ from the conversion of their source (first: %s)\n",
                    v->tensors_bad, shown(v->first_bad));
        if (v->shape_changed)
            fprintf(out, "  %zu tensors changed shape\n", v->shape_changed);
        if (v->missing)
            fprintf(out, "  %zu source tensors are missing from the converted checkpoint (first: %s)\n",
                    v->missing, v->first_missing ? shown(v->first_missing) : "-");
        if (v->extra)
            fprintf(out, "  %zu converted tensors have no source\n", v->extra);
    }
}
