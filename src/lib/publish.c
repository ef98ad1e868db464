/* Conversion output: temporary name, containment check, atomic exclusive publish.
 *
 * Output goes to ".NAME.dtaudit-XXXXXX" in OUT's directory (NAME cut so the temporary's
 * name fits NAME_MAX), held under an flock while it is written. Publishing:
 *  - without --force, nothing at OUT is ever replaced: renameat2(RENAME_NOREPLACE); where
 *    the filesystem lacks it, link()+unlink() for a file, and for a directory mkdir(OUT)
 *    (exclusive) then rename over that empty directory of our own;
 *  - with --force, a file is rename()d over OUT; a directory is swapped with OUT by
 *    renameat2(RENAME_EXCHANGE) and the old tree (now at the temporary name) removed;
 *    concurrent --force runs each remove what they swapped out, so no ".old" is left.
 * A later run removes temporaries whose writer died: their lock is free (a directory
 * without its lock file only once it is a minute old: its writer may be about to lock
 * it). A writer checks after locking that its temporary was not removed meanwhile. */
#define _GNU_SOURCE /* renameat2, flock */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pathsafe.h"
#include "publish.h"
#include "util_io.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define LEFTOVER_AGE 60 /* seconds */

/* renameat2 through the system call: older C libraries lack the wrapper. -1 with
 * errno EINVAL/ENOSYS where the kernel or filesystem does not offer the flag. */
static int rename_flags(const char *from, const char *to, unsigned flags)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags); /* the wrapper: shims see it */
#elif defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
#else
    (void)from;
    (void)to;
    (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static bool unsupported(int e) { return e == EINVAL || e == ENOSYS || e == EOPNOTSUPP; }

static void split_path(const char *p, char *dir, size_t dcap, const char **base)
{
    const char *slash = strrchr(p, '/');
    if (!slash) {
        snprintf(dir, dcap, ".");
        *base = p;
    } else if (slash == p) {
        snprintf(dir, dcap, "/");
        *base = p + 1;
    } else {
        snprintf(dir, dcap, "%.*s", (int)(slash - p), p);
        *base = slash + 1;
    }
}

void dtap_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char sub[PATH_MAX];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (dtap_fmt_path(sub, sizeof sub, "%s/%s", path, e->d_name))
                dtap_remove_tree(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* The temporary's prefix for an output named base: ".BASE.dtaudit-", BASE cut (at a UTF-8
 * character boundary) so that prefix + "XXXXXX" fits in NAME_MAX. */
static void tmp_prefix(const char *base, char *out, size_t cap)
{
    size_t n = strlen(base), room = NAME_MAX - 1 - strlen(".dtaudit-XXXXXX");
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)base[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, cap, ".%.*s.dtaudit-", (int)n, base);
}

/* Removes leftovers of runs that died: nobody holds their lock and they are old enough. */
static void clean_leftovers(const char *dir, const char *prefix)
{
    char path[PATH_MAX + NAME_MAX + 2];
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    time_t now = time(NULL);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        struct stat st;
        if (!dtap_fmt_path(path, sizeof path, "%s/%s", dir, e->d_name) || lstat(path, &st) != 0)
            continue;
        char lockp[sizeof path + 16];
        if (!dtap_fmt_path(lockp, sizeof lockp, "%s%s", path,
                      S_ISDIR(st.st_mode) ? "/.dtaudit-lock" : ""))
            continue;
        int fd = open(lockp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
            /* a directory without its lock: a run killed before locking it (or one that is
             * about to lock it: hence the age), or an old tree swapped out by --force */
            if (S_ISDIR(st.st_mode) && now - st.st_mtime >= LEFTOVER_AGE)
                dtap_remove_tree(path);
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            dtap_remove_tree(path);
        close(fd);
    }
    closedir(d);
}

/* a == b, or one is an ancestor directory of the other (both absolute, resolved) */
static int relation(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (!strcmp(a, b))
        return 0;
    if (la < lb && !strncmp(a, b, la) && (b[la] == '/' || (la == 1 && a[0] == '/')))
        return 1; /* a contains b */
    if (lb < la && !strncmp(a, b, lb) && (a[lb] == '/' || (lb == 1 && b[0] == '/')))
        return -1; /* a is inside b */
    return 2;
}

/* Refuses an OUT that is, contains or lies inside what the conversion reads. */
static dta_status check_containment(const char *out, const char *dir, const char *base,
                                    bool tree, bool index, const char *in, dta_error *err)
{
    char rin[PATH_MAX], rdir[PATH_MAX], rout[PATH_MAX + NAME_MAX + 2], rfinal[PATH_MAX];
    char protect[2][PATH_MAX];
    int np = 0;
    if (!realpath(in, rin))
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot open: %s", in, strerror(errno));
    snprintf(protect[np++], sizeof protect[0], "%s", rin);
    if (tree && index) { /* an index reads its directory: protect that */
        char *slash = strrchr(rin, '/');
        if (slash)
            snprintf(protect[np++], sizeof protect[0], "%.*s",
                     slash == rin ? 1 : (int)(slash - rin), rin);
    }
    if (!realpath(dir, rdir))
        return DTA_OK; /* creating the temporary fails and says why */
    if (!dtap_fmt_path(rout, sizeof rout, "%s/%s", strcmp(rdir, "/") ? rdir : "", base))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: output path too long", out);
    const char *cand[2] = {rout, NULL};
    struct stat sb;
    if (lstat(rout, &sb) == 0 && S_ISLNK(sb.st_mode) && realpath(rout, rfinal))
        cand[1] = rfinal; /* OUT is a link: where it leads must be safe too */
    for (int c = 0; c < 2 && cand[c]; c++)
        for (int p = 0; p < np; p++) {
            int r = relation(cand[c], protect[p]);
            if (r == 0 && p == 0)
                return dta_error_set(err, DTA_E_ARG, 0,
                                     "%s: the output is the input; write elsewhere (dtaudit "
                                     "never modifies its input)",
                                     out);
            if (r == 0 || r == -1)
                return dta_error_set(err, DTA_E_ARG, 0,
                                     "%s: the output would be inside the input %s%s; write "
                                     "elsewhere (dtaudit never modifies its input)",
                                     out, in, p ? " (the index's directory)" : "");
            if (r == 1)
                return dta_error_set(err, DTA_E_ARG, 0,
                                     "%s: the output would contain the input %s; write "
                                     "elsewhere (dtaudit never modifies its input)",
                                     out, in);
        }
    return DTA_OK;
}

dta_status dtap_target_open(dtap_target *t, const char *out, bool tree, bool index, bool force,
                            const char *in, dta_error *err)
{
    const char *base;
    struct stat so, si;
    char prefix[NAME_MAX + 1];
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->is_dir = tree;
    t->force = force;
    if (!*out)
        return dta_error_set(err, DTA_E_ARG, 0, "-o: empty output name");
    if (!dtap_fmt_path(t->final, sizeof t->final, "%s", out))
        return dta_error_set(err, DTA_E_ARG, 0, "%.200s...: output path too long", out);
    /* strip trailing slashes of a directory output */
    for (size_t n = strlen(t->final); n > 1 && t->final[n - 1] == '/'; n--)
        t->final[n - 1] = 0;
    split_path(t->final, t->dir, sizeof t->dir, &base);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: not a usable output name", out);
    if (strlen(base) > NAME_MAX)
        return dta_error_set(err, DTA_E_ARG, 0, "%s: output name longer than %d bytes", out,
                             NAME_MAX);
    if (stat(in, &si) == 0 && stat(t->final, &so) == 0 && si.st_dev == so.st_dev &&
        si.st_ino == so.st_ino)
        return dta_error_set(err, DTA_E_ARG, 0,
                             "%s: the output is the input; write elsewhere (dtaudit never "
                             "modifies its input)",
                             out);
    dta_status cs = check_containment(out, t->dir, base, tree, index, in, err);
    if (cs != DTA_OK)
        return cs;
    if (lstat(t->final, &so) == 0 && !force)
        return dta_error_set(err, DTA_E_ARG, EEXIST, "%s: exists; use --force to replace it",
                             out);
    if (lstat(t->final, &so) == 0 && force && S_ISDIR(so.st_mode) != tree)
        return dta_error_set(err, DTA_E_ARG, 0, "%s: exists and is %s; not replaced", out,
                             S_ISDIR(so.st_mode) ? "a directory" : "not a directory");
    char rdir[PATH_MAX];
    if (realpath(t->dir, rdir))
        dtap_fmt_path(t->real, sizeof t->real, "%s/%s", strcmp(rdir, "/") ? rdir : "", base);
    tmp_prefix(base, prefix, sizeof prefix);
    clean_leftovers(t->dir, prefix);
    /* A concurrent run's clean_leftovers may take the lock of a temporary we have just
     * created, before we lock it, and remove it: after locking, check that ours is still
     * the one at the name, else make another. */
    for (int tries = 0;; tries++) {
        if (!dtap_fmt_path(t->tmp, sizeof t->tmp, "%s/%sXXXXXX", t->dir, prefix))
            return dta_error_set(err, DTA_E_ARG, 0, "%s: output path too long", out);
        char lockp[PATH_MAX + 96];
        if (tree) {
            if (!mkdtemp(t->tmp)) {
                int e = errno;
                t->tmp[0] = 0;
                return dta_error_set(err, DTA_E_IO, e, "%s: cannot create a temporary "
                                     "directory in %s: %s", out, t->dir, strerror(e));
            }
            snprintf(lockp, sizeof lockp, "%s/.dtaudit-lock", t->tmp);
            t->fd = open(lockp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        } else {
            snprintf(lockp, sizeof lockp, "%s", t->tmp);
            t->fd = mkostemp(t->tmp, O_CLOEXEC);
            snprintf(lockp, sizeof lockp, "%s", t->tmp);
        }
        int e = errno;
        if (t->fd >= 0) {
            struct stat a, b;
            flock(t->fd, LOCK_EX); /* held until published or removed */
            if (fstat(t->fd, &a) == 0 && stat(lockp, &b) == 0 && a.st_ino == b.st_ino &&
                a.st_dev == b.st_dev)
                break;
            close(t->fd);
            t->fd = -1;
            e = ENOENT;
        } else if (tree) {
            dtap_remove_tree(t->tmp);
        }
        if (t->fd < 0 && (e != ENOENT || tries >= 8)) {
            t->tmp[0] = 0;
            return dta_error_set(err, DTA_E_IO, e, "%s: cannot create a temporary file in %s: "
                                 "%s", out, t->dir, strerror(e));
        }
    }
    /* mkstemp/mkdtemp create private entries; the result gets the usual umask mode */
    mode_t mask = umask(0);
    umask(mask);
    if (tree)
        chmod(t->tmp, 0777 & ~mask);
    else
        fchmod(t->fd, 0666 & ~mask);
    return DTA_OK;
}

dta_status dtap_target_guard(const dtap_target *t, const char *path, dta_error *err)
{
    char r[PATH_MAX];
    if (!t || !t->real[0] || !realpath(path, r) || !dtap_under(t->real, r))
        return DTA_OK;
    return dta_error_set(err, DTA_E_ARG, 0,
                         "%s: this conversion reads it, and the output %s would replace it; "
                         "write elsewhere (dtaudit never modifies its input)",
                         path, t->final);
}

void dtap_target_abort(dtap_target *t)
{
    if (t->tmp[0]) {
        if (t->is_dir)
            dtap_remove_tree(t->tmp);
        else
            unlink(t->tmp);
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    t->tmp[0] = 0;
}

static dta_status fsync_path(const char *p, dta_error *err)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dta_error_set(err, DTA_E_IO, errno, "%s: cannot open to sync: %s", p,
                             strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    /* directories on some filesystems refuse fsync; the data files were synced already */
    if (r != 0 && e != EINVAL && e != EROFS)
        return dta_error_set(err, DTA_E_IO, e, "%s: fsync failed: %s", p, strerror(e));
    return DTA_OK;
}

static dta_status appeared(const dtap_target *t, dta_error *err)
{
    return dta_error_set(err, DTA_E_ARG, EEXIST,
                         "%s: appeared while converting (another writer?); not replaced, "
                         "nothing written (use --force to replace it)",
                         t->final);
}

/* Publishes without replacing anything. 1: done; 0: OUT exists; -1: error (errno). */
static int publish_new(dtap_target *t)
{
    if (rename_flags(t->tmp, t->final, RENAME_NOREPLACE) == 0)
        return 1;
    if (errno == EEXIST)
        return 0;
    if (!unsupported(errno))
        return -1;
    if (!t->is_dir) {
        if (link(t->tmp, t->final) == 0) {
            unlink(t->tmp);
            return 1;
        }
        return errno == EEXIST ? 0 : -1;
    }
    /* claim OUT with an empty directory of our own, then rename over it (atomic) */
    if (mkdir(t->final, 0700) != 0)
        return errno == EEXIST ? 0 : -1;
    if (rename(t->tmp, t->final) == 0)
        return 1;
    int e = errno;
    if (e == ENOTEMPTY || e == EEXIST)
        return 0; /* another writer filled OUT meanwhile: the claim is not ours any more */
    rmdir(t->final);
    errno = e;
    return -1;
}

/* Publishes over whatever is at OUT (--force). */
static int publish_force(dtap_target *t)
{
    if (!t->is_dir)
        return rename(t->tmp, t->final) == 0 ? 1 : -1;
    for (int tries = 0; tries < 16; tries++) {
        int r = publish_new(t);
        if (r != 0)
            return r;
        struct stat so;
        if (lstat(t->final, &so) == 0 && !S_ISDIR(so.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        /* swap: OUT gets the new tree, the temporary name the old one, removed after */
        if (rename_flags(t->tmp, t->final, RENAME_EXCHANGE) == 0) {
            dtap_remove_tree(t->tmp);
            return 1;
        }
        if (errno == ENOENT)
            continue; /* removed meanwhile: publish as new */
        if (!unsupported(errno))
            return -1;
        /* no exchange: move the old tree aside under a temporary name, then rename */
        char old[sizeof t->tmp];
        snprintf(old, sizeof old, "%s", t->tmp);
        size_t n = strlen(old);
        memcpy(old + n - 6, "XXXXXX", 6);
        if (!mkdtemp(old))
            return -1;
        if (rename(t->final, old) != 0) {
            int e = errno;
            rmdir(old);
            if (e == ENOENT)
                continue;
            errno = e;
            return -1;
        }
        r = publish_new(t);
        dtap_remove_tree(old);
        if (r != 0)
            return r;
    }
    errno = EBUSY;
    return -1;
}

dta_status dtap_target_publish(dtap_target *t, dta_error *err)
{
    dta_status st = DTA_OK;
    if (!t->is_dir && fsync(t->fd) != 0)
        st = dta_error_set(err, DTA_E_IO, errno, "%s: fsync failed: %s", t->final,
                           strerror(errno));
    if (st == DTA_OK && t->is_dir) {
        char lockp[PATH_MAX + 96];
        snprintf(lockp, sizeof lockp, "%s/.dtaudit-lock", t->tmp);
        unlink(lockp);
        st = fsync_path(t->tmp, err);
    }
    if (st == DTA_OK) {
        int r = t->force ? publish_force(t) : publish_new(t);
        if (r == 0)
            st = appeared(t, err);
        else if (r < 0)
            st = dta_error_set(err, DTA_E_IO, errno, "%s: cannot publish the output: %s",
                               t->final, strerror(errno));
    }
    if (st != DTA_OK) {
        dtap_target_abort(t);
        return st;
    }
    t->tmp[0] = 0;
    close(t->fd);
    t->fd = -1;
    return fsync_path(t->dir, err);
}

void dtap_target_name_final(const dtap_target *t, const char *tmp, dta_error *err)
{
    if (!err || !tmp || !*tmp)
        return;
    char *at = strstr(err->msg, tmp);
    if (!at)
        return;
    char rest[sizeof err->msg];
    snprintf(rest, sizeof rest, "%s", at + strlen(tmp));
    size_t head = (size_t)(at - err->msg);
    snprintf(at, sizeof err->msg - head, "%s%s", t->final, rest);
}

dta_status dtap_target_check(const char *out, bool tree, bool index, const char *in,
                             dta_error *err)
{
    char final[PATH_MAX], dir[PATH_MAX];
    const char *base;
    if (!*out || !dtap_fmt_path(final, sizeof final, "%s", out))
        return dta_error_set(err, DTA_E_ARG, 0, "%.200s: not a usable output name", out);
    for (size_t n = strlen(final); n > 1 && final[n - 1] == '/'; n--)
        final[n - 1] = 0;
    split_path(final, dir, sizeof dir, &base);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return dta_error_set(err, DTA_E_ARG, 0, "%s: not a usable output name", out);
    return check_containment(out, dir, base, tree, index, in, err);
}
