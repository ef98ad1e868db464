/* Small file helpers shared by the writers (util_io.c). Internal to the library. */
#ifndef DTAUDIT_UTIL_IO_H
#define DTAUDIT_UTIL_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "dtaudit/error.h"

/* write(2) until all n bytes are written (EINTR retried); DTA_E_IO naming path else. */
dta_status dtap_write_all(int fd, const void *p, size_t n, const char *path, dta_error *err);

/* snprintf for paths: false when the result would not fit (callers refuse such paths). */
bool dtap_fmt_path(char *buf, size_t cap, const char *fmt, ...) DTA_PRINTF(3, 4);

#endif
