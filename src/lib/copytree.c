/* A directory convert's other files: everything it does not convert is copied, nothing
 * from outside the input is (copytree.h). */
#define _GNU_SOURCE /* realpath, O_NOFOLLOW */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copytree.h"
#include "pathsafe.h"
#include "util_io.h"

#define MAX_DEPTH 64
#define MAX_ENTRIES 1000000

typedef struct {
    const char *src, *dst;
    char root[PATH_MAX]; /* realpath of src */
    const char *const *skip;
    size_t nskip;
    dtap_copy_report *rep;
    dta_error *err;
    size_t entries;
} walk;

static bool fmt(char *buf, size_t cap, const char *f, ...) DTA_PRINTF(3, 4);
static bool fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, cap, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

static dta_status push(char ***v, size_t *n, const char *s, dta_error *err)
{
    char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p || !(p[*n] = strdup(s))) {
        if (p)
            *v = p;
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory");
    }
    *v = p;
    (*n)++;
    return DTA_OK;
}

static bool weights_like(const char *n)
{
    static const char *ext[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf"};
    size_t l = strlen(n);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t k = strlen(ext[i]);
        if (l > k && !strcmp(n + l - k, ext[i]))
            return true;
    }
    return false;
}

/* Copies the regular file at from (already known to be one: opened without following a
 * link, checked again on the descriptor) to the new file to. */
static dta_status copy_reg(walk *w, const char *from, const char *to, bool follow)
{
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
    struct stat st;
    if (in < 0)
        return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot open: %s", from,
                             strerror(errno));
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return dta_error_set(w->err, DTA_E_UNSUPPORTED, 0,
                             "%s: changed while copying (no longer a regular file)", from);
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    dta_status s = DTA_OK;
    if (out < 0)
        s = dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot create: %s", to, strerror(errno));
    static char buf[1 << 16];
    while (s == DTA_OK) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            s = dta_error_set(w->err, DTA_E_IO, errno, "%s: read failed: %s", from,
                              strerror(errno));
        if (r <= 0)
            break;
        s = dtap_write_all(out, buf, (size_t)r, to, w->err);
        w->rep->bytes += (unsigned long long)r;
    }
    if (s == DTA_OK && fsync(out) != 0)
        s = dta_error_set(w->err, DTA_E_IO, errno, "%s: fsync failed: %s", to, strerror(errno));
    if (out >= 0)
        close(out);
    close(in);
    if (s == DTA_OK)
        w->rep->files++;
    return s;
}

/* rel's folder joined with a relative link target, normalised: false when it climbs out
 * of the tree's top. */
static bool lexically_inside(const char *rel, const char *target)
{
    char buf[2 * PATH_MAX];
    const char *slash = strrchr(rel, '/');
    if (!fmt(buf, sizeof buf, "%.*s%s%s", slash ? (int)(slash - rel) : 0, rel, slash ? "/" : "",
             target))
        return false;
    int depth = 0;
    for (char *p = buf; *p;) {
        char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return false;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return true;
}

static bool skipped(const walk *w, const char *rel)
{
    for (size_t i = 0; i < w->nskip; i++)
        if (!strcmp(w->skip[i], rel))
            return true;
    return false;
}

static dta_status copy_dir(walk *w, const char *rel, int depth);

static dta_status copy_entry(walk *w, const char *rel, int depth)
{
    char from[PATH_MAX], to[PATH_MAX], where[PATH_MAX];
    struct stat st;
    if (!fmt(from, sizeof from, "%s/%s", w->src, rel) || !fmt(to, sizeof to, "%s/%s", w->dst, rel))
        return dta_error_set(w->err, DTA_E_LIMIT, 0, "%s/%.200s: path too long", w->src, rel);
    if (++w->entries > MAX_ENTRIES)
        return dta_error_set(w->err, DTA_E_LIMIT, 0, "%s: more than %u entries to copy", w->src,
                             MAX_ENTRIES);
    if (lstat(from, &st) != 0)
        return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot read: %s", from,
                             strerror(errno));
    if (depth == 0 && !strcmp(rel, ".git") && S_ISDIR(st.st_mode))
        return push(&w->rep->left_out, &w->rep->nleft_out,
                    ".git (version-control data of the input, which it would not describe)",
                    w->err);
    if (S_ISREG(st.st_mode)) {
        if (weights_like(rel)) {
            dta_status s = push(&w->rep->weights, &w->rep->nweights, rel, w->err);
            if (s != DTA_OK)
                return s;
        }
        return copy_reg(w, from, to, false);
    }
    if (S_ISDIR(st.st_mode)) {
        if (depth + 1 > MAX_DEPTH)
            return dta_error_set(w->err, DTA_E_LIMIT, 0, "%s: folders nested deeper than %d",
                                 from, MAX_DEPTH);
        struct stat ds;
        if (mkdir(to, 0755) != 0 && !(errno == EEXIST && lstat(to, &ds) == 0 && S_ISDIR(ds.st_mode)))
            return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot create: %s", to,
                                 strerror(errno));
        chmod(to, st.st_mode & 0777);
        w->rep->dirs++;
        return copy_dir(w, rel, depth + 1);
    }
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(from, target, sizeof target - 1);
        if (n < 0)
            return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot read the link: %s", from,
                                 strerror(errno));
        target[n] = 0;
        int in = dtap_resolves_inside(w->root, from, where, sizeof where);
        if (target[0] != '/' && lexically_inside(rel, target) && in != 0) {
            /* relative and inside (or dangling inside): the same link in the output */
            if (symlink(target, to) != 0)
                return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot create: %s", to,
                                     strerror(errno));
            w->rep->links++;
            return DTA_OK;
        }
        struct stat ts;
        if (in == 1 && stat(from, &ts) == 0 && S_ISREG(ts.st_mode)) {
            /* an absolute link into the input, or a hub cache blob: copy the file */
            if (weights_like(rel)) {
                dta_status s = push(&w->rep->weights, &w->rep->nweights, rel, w->err);
                if (s != DTA_OK)
                    return s;
            }
            return copy_reg(w, from, to, true);
        }
        return dta_error_set(w->err, DTA_E_UNSUPPORTED, 0,
                             "%s: a symbolic link to %.300s, %s; dtaudit copies nothing from "
                             "outside its input (remove the link, or put what it leads to in "
                             "the folder)",
                             from, in < 0 ? target : where,
                             in < 0 ? "which does not resolve inside the input"
                             : in == 0 ? "outside the input"
                                       : "a folder reached by an absolute link");
    }
    return dta_error_set(w->err, DTA_E_UNSUPPORTED, 0,
                         "%s: %s, not a regular file, folder or link; not copied (remove it "
                         "from the input folder)",
                         from, S_ISFIFO(st.st_mode)   ? "a FIFO"
                               : S_ISSOCK(st.st_mode) ? "a socket"
                                                      : "a device");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static dta_status copy_dir(walk *w, const char *rel, int depth)
{
    char path[PATH_MAX];
    if (!fmt(path, sizeof path, "%s%s%s", w->src, *rel ? "/" : "", rel))
        return dta_error_set(w->err, DTA_E_LIMIT, 0, "%s/%.200s: path too long", w->src, rel);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return dta_error_set(w->err, DTA_E_IO, errno, "%s: cannot list: %s", path,
                             strerror(errno));
    }
    /* names first (sorted: reproducible order of errors), then the copies */
    char **names = NULL;
    size_t n = 0;
    dta_status s = DTA_OK;
    struct dirent *e;
    while (s == DTA_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        s = push(&names, &n, e->d_name, w->err);
        if (s == DTA_OK && n > MAX_ENTRIES)
            s = dta_error_set(w->err, DTA_E_LIMIT, 0, "%s: more than %u entries to copy", path,
                              MAX_ENTRIES);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && s == DTA_OK; i++) {
        char sub[PATH_MAX];
        if (!fmt(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]))
            s = dta_error_set(w->err, DTA_E_LIMIT, 0, "%s/%.200s: path too long", path, names[i]);
        else if (!skipped(w, sub))
            s = copy_entry(w, sub, depth);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return s;
}

dta_status dtap_copy_tree(const char *src, const char *dst, const char *const *skip,
                          size_t nskip, dtap_copy_report *rep, dta_error *err)
{
    walk w = {.src = src, .dst = dst, .skip = skip, .nskip = nskip, .rep = rep, .err = err};
    if (!realpath(src, w.root))
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot resolve: %s", src,
                             strerror(errno));
    return copy_dir(&w, "", 0);
}

void dtap_copy_report_free(dtap_copy_report *rep)
{
    for (size_t i = 0; i < rep->nleft_out; i++)
        free(rep->left_out[i]);
    for (size_t i = 0; i < rep->nweights; i++)
        free(rep->weights[i]);
    free(rep->left_out);
    free(rep->weights);
    memset(rep, 0, sizeof *rep);
}
