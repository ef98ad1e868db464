/* dta_model_open (a checkpoint file or a model directory) and dta_model_open_memory (a
 * buffer): the library's entry points for reading a model. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <sys/stat.h>

#include "format.h"
#include "model_build.h"

/* The model once read: its format named after its first file, totals computed. */
static dta_status opened(dta_model *m, dta_model **out)
{
    if (m->nfiles > 0 && m->format_id == DTA_FORMAT_UNKNOWN)
        dtap_model_set_format(m, m->files[0].format_id);
    dtap_model_finish(m);
    *out = m;
    return DTA_OK;
}

dta_status dta_model_open(const char *path, dta_model **out, dta_error *err)
{
    dtap_src src;
    dta_status st;
    dta_model *m;
    struct stat sb;

    *out = NULL;
    if (!path)
        return dta_error_set(err, DTA_E_ARG, 0, "no path");
    m = dtap_model_new(path, err);
    if (!m) {
        dta_error_prefix(err, path);
        return DTA_E_NOMEM;
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        st = dtap_read_directory(path, m, err); /* its errors name their file */
        if (st != DTA_OK) {
            dta_model_free(m);
            return st;
        }
    } else {
        st = dtap_src_open_file(&src, path, err);
        if (st == DTA_OK) {
            st = dtap_read_src(&src, m, err);
            dtap_src_close(&src);
        }
        if (st != DTA_OK) {
            dta_error_prefix(err, path);
            dta_model_free(m);
            return st;
        }
    }
    return opened(m, out);
}

dta_status dta_model_open_memory(const char *name, const void *data, size_t size,
                                 dta_model **out, dta_error *err)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    if (!data && size)
        return dta_error_set(err, DTA_E_ARG, 0, "%s: no buffer for %zu bytes", name, size);
    dta_model *m = dtap_model_new(name, err);
    if (!m) {
        dta_error_prefix(err, name);
        return DTA_E_NOMEM;
    }
    dtap_src src;
    dtap_src_open_mem(&src, name, data ? data : "", size);
    dta_status st = dtap_read_src(&src, m, err);
    dtap_src_close(&src);
    if (st != DTA_OK) {
        dta_error_prefix(err, name);
        dta_model_free(m);
        return st;
    }
    return opened(m, out);
}
