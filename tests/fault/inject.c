/* LD_PRELOAD shim that makes one system call fail, for the fault-injection test.
 *
 *   DTA_FAIL=CALL:N   the N-th call (1-based) of CALL fails; CALL is one of
 *                     write, pwrite, pread, fsync, rename, renameat2, link, open,
 *                     ftruncate; N = 0: every call of CALL fails
 *   DTA_FAIL_ERRNO=E  the errno to fail with (default ENOSPC; EIO for fsync, pread);
 *                     for pread, 0 means "return end of file" (the input shrank)
 *
 * Only calls on file descriptors >= 3 count, so error messages still reach stderr. Like
 * jq's inject_errors, but for whole calls. Built by tests/cli/faults.sh at test time. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static long count;

static int should_fail(const char *call, int dflt_errno)
{
    const char *spec = getenv("DTA_FAIL");
    size_t n = strlen(call);
    if (!spec || strncmp(spec, call, n) != 0 || spec[n] != ':')
        return 0;
    long want = atol(spec + n + 1);
    if (want != 0 && ++count != want)
        return 0;
    const char *e = getenv("DTA_FAIL_ERRNO");
    errno = e ? atoi(e) : dflt_errno;
    return 1;
}

#define REAL(name, ret, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) \
        real = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *p, size_t n)
{
    REAL("write", ssize_t, int, const void *, size_t);
    if (fd >= 3 && should_fail("write", ENOSPC))
        return -1;
    return real(fd, p, n);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    REAL("pwrite", ssize_t, int, const void *, size_t, off_t);
    if (fd >= 3 && should_fail("pwrite", ENOSPC))
        return -1;
    return real(fd, p, n, off);
}

ssize_t pread(int fd, void *p, size_t n, off_t off)
{
    REAL("pread", ssize_t, int, void *, size_t, off_t);
    if (fd >= 3 && should_fail("pread", EIO))
        return errno ? -1 : 0;
    return real(fd, p, n, off);
}

ssize_t pread64(int fd, void *p, size_t n, off_t off)
{
    REAL("pread64", ssize_t, int, void *, size_t, off_t);
    if (fd >= 3 && should_fail("pread", EIO))
        return errno ? -1 : 0;
    return real(fd, p, n, off);
}

int fsync(int fd)
{
    REAL("fsync", int, int);
    if (should_fail("fsync", EIO))
        return -1;
    return real(fd);
}

int rename(const char *a, const char *b)
{
    REAL("rename", int, const char *, const char *);
    if (should_fail("rename", EXDEV))
        return -1;
    return real(a, b);
}

/* convert publishes with renameat2 (RENAME_NOREPLACE / RENAME_EXCHANGE); EINVAL here
 * makes it take its fallback for filesystems without those flags */
int renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
    REAL("renameat2", int, int, const char *, int, const char *, unsigned);
    if (should_fail("renameat2", EXDEV))
        return -1;
    return real(da, a, db, b, flags);
}

int link(const char *a, const char *b)
{
    REAL("link", int, const char *, const char *);
    if (should_fail("link", EXDEV))
        return -1;
    return real(a, b);
}

int ftruncate(int fd, off_t len)
{
    REAL("ftruncate", int, int, off_t);
    if (should_fail("ftruncate", ENOSPC))
        return -1;
    return real(fd, len);
}

static int open_common(const char *name, int dirfd, const char *path, int flags, mode_t mode)
{
    if (should_fail("open", EACCES))
        return -1;
    if (dirfd == -1000) {
        REAL("open", int, const char *, int, ...);
        return real(path, flags, mode);
    }
    REAL("openat", int, int, const char *, int, ...);
    (void)name;
    return real(dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open_common("open", -1000, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open_common("open", -1000, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open_common("openat", dirfd, path, flags, mode);
}
