/* An outside program using the installed libdtaudit: lists each tensor's name, dtype and
 * shape, then the audit's findings, for the checkpoint files given. With "-" it reads one
 * file from standard input into memory (dta_model_open_memory).
 *
 *     cc list-dtypes.c $(pkg-config --cflags --libs dtaudit) -o list-dtypes
 *     ./list-dtypes model.safetensors
 *
 * Built and run against the installed library by `make installcheck` (and so by
 * `make distcheck`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dtaudit/dtaudit.h>

static unsigned char *slurp(FILE *f, size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    *n = len;
    return buf;
}

static int list(const char *path)
{
    dta_model *m = NULL;
    dta_error err = {0};
    dta_status st;
    if (strcmp(path, "-") == 0) {
        size_t n = 0;
        unsigned char *buf = slurp(stdin, &n);
        if (!buf) {
            fprintf(stderr, "list-dtypes: out of memory\n");
            return 2;
        }
        st = dta_model_open_memory("<stdin>", buf, n, &m, &err);
        free(buf); /* the model keeps no pointer into it */
    } else {
        st = dta_model_open(path, &m, &err);
    }
    if (st != DTA_OK) {
        fprintf(stderr, "list-dtypes: %s\n", err.msg);
        return 2;
    }
    printf("%s: %s, %zu tensors\n", m->path, m->format, m->ntensors);
    for (size_t i = 0; i < m->ntensors; i++) {
        const dta_tensor *t = &m->tensors[i];
        printf("  %s %s [", t->name, dta_dtype_name(t->dtype));
        for (int k = 0; k < t->rank; k++)
            printf("%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
        printf("]\n");
    }
    dta_audit_options opt = {.expect = DTA_DTYPE_NONE, .findings = true};
    dta_report *r = NULL;
    if (dta_report_build(m, &opt, &r, &err) != DTA_OK) {
        fprintf(stderr, "list-dtypes: %s\n", err.msg);
        dta_model_free(m);
        return 2;
    }
    for (size_t i = 0; i < r->nfindings; i++)
        printf("  finding %s (%s, default %s): %s\n", r->findings[i].rule,
               dta_severity_name(r->findings[i].severity),
               dta_severity_name(dta_rule_get(r->findings[i].rule_id)->severity),
               r->findings[i].module);
    dta_report_free(r);
    dta_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    printf("libdtaudit %s\n", dta_version());
    for (int i = 1; i < argc; i++) {
        int r = list(argv[i]);
        if (r > rc)
            rc = r;
    }
    return rc;
}
