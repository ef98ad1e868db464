/* Checkpoint conversion: decide a dtype per storage, stream the data through the kernels
 * (convert_cpu.c) into a writer, and publish the result atomically. The parts live in
 * convert_plan.c, convert_stream.c, convert_file.c and convert_tree.c (convert_job.h),
 * publishing in publish.c, verification in convert_verify.c.
 *
 * Memory is bounded by two chunk buffers whatever the checkpoint size. Output goes to a
 * temporary name in the destination directory (".NAME.dtaudit-XXXXXX", held under an
 * flock while it is written), is fsynced, optionally verified, then renamed over NAME;
 * the directory is fsynced after. A later run removes temporaries whose writer died
 * (their lock is free). The input is opened read-only and never written. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtaudit/backend.h"
#include "convert_job.h"
#include "convert_shards.h"
#include "format.h"
#include "src.h"

#define CHUNK_DEFAULT (4u << 20)

/* ---- the job --------------------------------------------------------------------------- */

static bool is_index_file(const char *path)
{
    dtap_src s;
    dta_error e;
    dta_format fmt;
    if (dtap_src_open_file(&s, path, &e) != DTA_OK)
        return false;
    bool r = dtap_detect(&s, false, &fmt, &e) == DTA_OK && fmt == DTA_FORMAT_INDEX;
    dtap_src_close(&s);
    return r;
}


/* Frees what one conversion holds but its result (j->res): buffers, plans, the
 * dequantization state and the whole input model (NULL when not opened). */
static void job_release(dtap_job *j, dtap_auto *ap, dtap_qnames *qn, dta_model *whole)
{
    free(j->only_hit);
    free(j->in);
    free(j->out);
    dtap_auto_free(ap);
    dtap_qnames_free(qn);
    dtap_dq_free(j->dq);
    dta_model_free(whole);
}

dta_status dta_convert_checkpoint(const char *in, const char *out, const dta_convert_options *o,
                                  dta_convert_result **res, dta_error *err)
{
    dtap_job j;
    dtap_target t;
    struct stat sb;
    dta_status st;
    *res = NULL;
    if (!in || !out || !o)
        return dta_error_set(err, DTA_E_ARG, 0, "convert: missing argument");
    if (!o->to_auto && o->to != DTA_F32 && o->to != DTA_F16 && o->to != DTA_BF16)
        return dta_error_set(err, DTA_E_ARG, 0, "convert: target must be F32, F16 or BF16, not %s",
                             dta_dtype_name(o->to));
    if (o->dequantize && o->to_auto)
        return dta_error_set(err, DTA_E_ARG, 0,
                             "convert: --dequantize needs --to f32, f16 or bf16, not auto");
    if (o->dequantize && o->keep_quantized)
        return dta_error_set(err, DTA_E_ARG, 0,
                             "convert: --dequantize and --keep-quantized exclude each other");
    dtap_qnames qn = {NULL, 0};
    if ((st = dtap_quantized_names(in, o, &qn, err)) != DTA_OK) {
        dtap_qnames_free(&qn);
        return st;
    }
    dtap_auto ap;
    st = dtap_auto_plan(in, o, &ap, err);
    if (st != DTA_OK) {
        dtap_qnames_free(&qn);
        return st;
    }
    if (stat(in, &sb) != 0) {
        dtap_auto_free(&ap);
        dtap_qnames_free(&qn);
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot open: %s", in, strerror(errno));
    }
    bool tree = S_ISDIR(sb.st_mode) || is_index_file(in);

    memset(&j, 0, sizeof j);
    j.o = o;
    j.err = err;
    j.cuda = o->device == DTA_DEVICE_CUDA ||
             (o->device == DTA_DEVICE_AUTO && dta_cuda_auto((uint64_t)sb.st_size));
    j.chunk = o->chunk_bytes ? o->chunk_bytes : CHUNK_DEFAULT;
    if (j.chunk < 64)
        j.chunk = 64;
    j.res = calloc(1, sizeof *j.res);
    j.only_hit = calloc(o->nonly ? o->nonly : 1, sizeof *j.only_hit);
    j.in = malloc(j.chunk);
    j.out = malloc(j.chunk * 2); /* the target may be wider than the source (bf16 -> f32) */
    j.ap = &ap;
    j.quantized = &qn;
    if (!j.res || !j.in || !j.out || !j.only_hit) {
        job_release(&j, &ap, &qn, NULL);
        free(j.res);
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    j.res->kept_intended = ap.kept_intended;
    j.res->auto_to = o->to_auto ? ap.config_to : DTA_DTYPE_NONE;
    dta_model *whole = NULL; /* --dequantize: every shard, for the scales */
    if (o->dequantize) {
        st = dta_model_open(in, &whole, err);
        if (st == DTA_OK)
            st = dtap_dq_open(whole, &j.dq, err);
        if (st != DTA_OK) {
            job_release(&j, &ap, &qn, whole);
            free(j.res);
            return st;
        }
    }
    j.dq_model = whole;
    j.convert_file = dtap_convert_file;
    j.convert_tree = dtap_convert_tree;
    if (o->nparts) { /* --part K/N (convert_shards.c) */
        const char *pfmt = dta_format_name(DTA_FORMAT_DIRECTORY);
        st = !tree ? dta_error_set(err, DTA_E_ARG, 0,
                                   "%s: --part needs a model directory or a sharded "
                                   "checkpoint's index, not one file", in)
             : o->force ? dta_error_set(err, DTA_E_ARG, 0, "--part and --force exclude each "
                                        "other")
                        : dtap_convert_parts(&j, in, out, !S_ISDIR(sb.st_mode), &pfmt);
        job_release(&j, &ap, &qn, whole);
        if (st != DTA_OK) {
            dta_convert_result_free(j.res);
            return st;
        }
        j.res->out_format = strdup(pfmt);
        *res = j.res;
        return DTA_OK;
    }
    st = dtap_target_open(&t, out, tree, tree && !S_ISDIR(sb.st_mode), o->force, in, err);
    j.target = &t;
    char tmpname[sizeof t.tmp]; /* for error messages: named as OUT, see below */
    snprintf(tmpname, sizeof tmpname, "%s", t.tmp);
    const char *fmt = "?";
    if (st == DTA_OK)
        st = tree ? dtap_convert_tree(&j, in, t.tmp, &fmt)
                  : dtap_convert_file(&j, in, t.fd, t.tmp, &fmt);
    /* a glob that names nothing is a mistake (a typo, or ''): the run would convert less
     * than asked, silently */
    for (size_t i = 0; i < o->nonly && st == DTA_OK; i++)
        if (!j.only_hit[i])
            st = dta_error_set(err, DTA_E_ARG, 0,
                               "%s: --only '%.200s' matches no tensor; nothing written", in,
                               o->only[i]);
    if (st == DTA_OK && o->overflow == DTA_OVERFLOW_ERROR && j.res->stats.overflow > 0)
        j.res->refused = true;
    if (st == DTA_OK && !j.res->refused && o->verify) {
        if (!tree && fsync(t.fd) != 0)
            st = dta_error_set(err, DTA_E_IO, errno, "%s: fsync failed", t.tmp);
        if (st == DTA_OK)
            st = dtap_verify_unpublished(&j, in, t.tmp, out);
    }
    if (st == DTA_OK && !j.res->refused)
        st = dtap_target_publish(&t, err);
    else if (t.tmp[0] || t.fd >= 0)
        dtap_target_abort(&t);
    if (st != DTA_OK)
        dtap_target_name_final(&t, tmpname, err);
    job_release(&j, &ap, &qn, whole);
    if (st != DTA_OK) {
        dta_convert_result_free(j.res);
        return st;
    }
    j.res->written = j.res->refused ? NULL : strdup(t.final);
    j.res->out_format = strdup(fmt);
    *res = j.res;
    return DTA_OK;
}

void dta_convert_result_free(dta_convert_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nissues; i++)
        free(r->issues[i].name);
    free(r->issues);
    free(r->written);
    free(r->out_format);
    for (size_t i = 0; i < r->nleft_out; i++)
        free(r->left_out[i]);
    free(r->left_out);
    for (size_t i = 0; i < r->ncopied_weights; i++)
        free(r->copied_weights[i]);
    free(r->copied_weights);
    free(r);
}
