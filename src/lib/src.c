/* Bounded byte source: pread over a file, or memcpy over memory. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src.h"

/* Opens path for reading only if it is a regular file. O_NONBLOCK makes the open itself
 * return at once for a FIFO (or a device) instead of waiting for a writer, so the type
 * check after it cannot be raced into a hang by swapping the path; the flag is dropped
 * again for the regular file (it has no effect on regular files anyway). */
int dtap_open_regular(const char *path, uint64_t *size, dta_error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        dta_error_set(err, DTA_E_IO, e, "cannot open: %s", strerror(e));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        dta_error_set(err, DTA_E_IO, e, "cannot stat: %s", strerror(e));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        dta_error_set(err, DTA_E_UNSUPPORTED, EISDIR, "is a directory");
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        dta_error_set(err, DTA_E_UNSUPPORTED, 0, "not a regular file (%s): refused before reading",
                      S_ISFIFO(st.st_mode)   ? "a FIFO"
                      : S_ISCHR(st.st_mode)  ? "a character device"
                      : S_ISBLK(st.st_mode)  ? "a block device"
                      : S_ISSOCK(st.st_mode) ? "a socket"
                                             : "special file");
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (size)
        *size = (uint64_t)st.st_size;
    return fd;
}

dta_status dtap_src_open_file(dtap_src *s, const char *path, dta_error *err)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->name = path;
    uint64_t size = 0;
    dta_error e0;
    int fd = dtap_open_regular(path, &size, err ? err : &e0);
    if (fd < 0)
        return err ? err->code : e0.code;
    s->fd = fd;
    s->size = size;
    s->headlen = 0;
    /* one read serves the format bid and most headers */
    size_t want = s->size < DTAP_SRC_HEAD ? (size_t)s->size : DTAP_SRC_HEAD;
    while (s->headlen < want) {
        ssize_t r = pread(fd, s->head + s->headlen, want - s->headlen, (off_t)s->headlen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        s->headlen += (size_t)r;
    }
    return DTA_OK;
}

void dtap_src_open_mem(dtap_src *s, const char *name, const void *data, size_t size)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->name = name;
    s->mem = data;
    s->size = size;
}

void dtap_src_close(dtap_src *s)
{
    if (s && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

size_t dtap_src_peek(const dtap_src *s, uint64_t off, void *buf, size_t len)
{
    if (off >= s->size)
        return 0;
    if (len > s->size - off)
        len = (size_t)(s->size - off);
    if (s->mem) {
        memcpy(buf, s->mem + off, len);
        return len;
    }
    if (off + len <= s->headlen) {
        memcpy(buf, s->head + off, len);
        return len;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(s->fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

dta_status dtap_src_read(const dtap_src *s, uint64_t off, void *buf, size_t len, dta_error *err)
{
    uint64_t end;
    if (dtap_add_u64(off, len, &end) != 0 || end > s->size)
        return dta_error_set(err, DTA_E_FORMAT, 0,
                             "truncated: need bytes [%llu, %llu) of a %llu-byte file",
                             (unsigned long long)off, (unsigned long long)off + len,
                             (unsigned long long)s->size);
    if (dtap_src_peek(s, off, buf, len) != len)
        return dta_error_set(err, DTA_E_IO, errno, "read failed at offset %llu",
                             (unsigned long long)off);
    return DTA_OK;
}

dta_status dtap_src_alloc_read(const dtap_src *s, uint64_t off, uint64_t len, uint64_t cap,
                               unsigned char **out, dta_error *err)
{
    unsigned char *buf;
    dta_status st;
    *out = NULL;
    if (len > cap)
        return dta_error_set(err, DTA_E_LIMIT, 0, "%llu bytes to read exceed the cap of %llu",
                             (unsigned long long)len, (unsigned long long)cap);
    if (len > SIZE_MAX - 1)
        return dta_error_set(err, DTA_E_LIMIT, 0, "read too large");
    buf = malloc((size_t)len + 1); /* +1: callers may NUL-terminate text */
    if (!buf)
        return dta_error_set(err, DTA_E_NOMEM, ENOMEM, "out of memory reading %llu bytes",
                             (unsigned long long)len);
    st = dtap_src_read(s, off, buf, (size_t)len, err);
    if (st != DTA_OK) {
        free(buf);
        return st;
    }
    buf[len] = 0;
    *out = buf;
    return DTA_OK;
}

dta_status dtap_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path,
                          const char *tensor, dta_error *err)
{
    char *c = buf;
    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && tensor)
            return dta_error_set(err, DTA_E_IO, errno, "%s: tensor '%.200s': read failed: %s",
                                 path, tensor, strerror(errno));
        if (r < 0)
            return dta_error_set(err, DTA_E_IO, errno, "%s: read failed: %s", path,
                                 strerror(errno));
        if (r == 0 && tensor)
            return dta_error_set(err, DTA_E_FORMAT, 0,
                                 "%s: tensor '%.200s': data ends at byte %llu, before the end "
                                 "of the tensor (file truncated, or shrank while being read)",
                                 path, tensor, (unsigned long long)off);
        if (r == 0)
            return dta_error_set(err, DTA_E_FORMAT, 0,
                                 "%s: file shrank while being read (changed underneath?)", path);
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return DTA_OK;
}
