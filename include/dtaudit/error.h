/* dtaudit: status codes and the error record every call fills in. */
#ifndef DTAUDIT_ERROR_H
#define DTAUDIT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DTA_OK = 0,
    DTA_E_ARG,         /* bad argument from the caller */
    DTA_E_IO,          /* open/read/write failed; sys_errno says why */
    DTA_E_FORMAT,      /* malformed input */
    DTA_E_UNSUPPORTED, /* valid input that dtaudit does not handle */
    DTA_E_LIMIT,       /* a safety cap was exceeded */
    DTA_E_NOMEM,
    DTA_E_DEVICE,      /* accelerator asked for but unavailable */
    DTA_E_REFUSED      /* a valid request dtaudit declines (e.g. converting half a storage) */
} dta_status;

#define DTA_ERROR_MSG_MAX 512

typedef struct {
    dta_status code;
    int sys_errno;
    char msg[DTA_ERROR_MSG_MAX]; /* "FILE: what is wrong", one line */
} dta_error;

#if defined(__GNUC__)
#define DTA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DTA_PRINTF(f, a)
#endif

/* Fills *err (when not NULL) and returns code. */
dta_status dta_error_set(dta_error *err, dta_status code, int sys_errno,
                         const char *fmt, ...) DTA_PRINTF(4, 5);

/* Prepends "PREFIX: " to err->msg (used to name the file a reader failed on). */
void dta_error_prefix(dta_error *err, const char *prefix);

const char *dta_status_name(dta_status code);

#ifdef __cplusplus
}
#endif
#endif
