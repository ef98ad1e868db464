/* Error record helpers. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dtaudit/error.h"
#include "text_safe.h"

/* One line, no terminal control: names in messages come from hostile files. Control
 * characters, invalid UTF-8 and invisible formatting characters (text_safe.h) are escaped
 * as \xNN / \uNNNN, as the CLI shows names: the message still says which bytes they were. */
static void sanitize(char *msg)
{
    char tmp[DTA_ERROR_MSG_MAX];
    dtap_escape(tmp, sizeof tmp, msg, strlen(msg));
    memcpy(msg, tmp, strlen(tmp) + 1);
}

dta_status dta_error_set(dta_error *err, dta_status code, int sys_errno, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->sys_errno = sys_errno;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        sanitize(err->msg);
    }
    return code;
}

void dta_error_prefix(dta_error *err, const char *prefix)
{
    size_t plen, mlen;
    if (!err || !prefix)
        return;
    plen = strlen(prefix);
    mlen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen > sizeof err->msg - 3)
        plen = sizeof err->msg - 3;
    if (plen + 2 + mlen > sizeof err->msg - 1)
        mlen = sizeof err->msg - 1 - plen - 2;
    memmove(err->msg + plen + 2, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    err->msg[plen + 2 + mlen] = 0;
    sanitize(err->msg); /* the prefix is usually a path */
}

const char *dta_status_name(dta_status code)
{
    switch (code) {
    case DTA_OK: return "ok";
    case DTA_E_ARG: return "bad argument";
    case DTA_E_IO: return "I/O error";
    case DTA_E_FORMAT: return "malformed input";
    case DTA_E_UNSUPPORTED: return "unsupported input";
    case DTA_E_LIMIT: return "limit exceeded";
    case DTA_E_NOMEM: return "out of memory";
    case DTA_E_DEVICE: return "device unavailable";
    case DTA_E_REFUSED: return "refused";
    }
    return "unknown status";
}
