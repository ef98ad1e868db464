/* Small file helpers shared by the writers: a write loop and a checked path printf. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util_io.h"

dta_status dtap_write_all(int fd, const void *p, size_t n, const char *path, dta_error *err)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return dta_error_set(err, DTA_E_IO, errno, "%s: write failed: %s", path,
                                 strerror(errno));
        c += w;
        n -= (size_t)w;
    }
    return DTA_OK;
}

bool dtap_fmt_path(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}
