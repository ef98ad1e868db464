/* Error messages (error.c) escape what must not reach a terminal the way the CLI shows
 * names (text_safe.h dtap_escape): \xNN for control bytes and invalid UTF-8, \uNNNN for C1,
 * bidi and zero-width characters; everything else, UTF-8 included, stays as it is. */
#include <criterion/criterion.h>
#include <string.h>

#include "dtaudit/error.h"
#include "text_safe.h"

Test(error, set_escapes_like_the_cli)
{
    dta_error err;
    dta_error_set(&err, DTA_E_FORMAT, 0, "%s", "a\x1b[31mb\ncaf\xc3\xa9 \xc2\x9b \xe2\x80\xae \xff!");
    cr_assert_str_eq(err.msg, "a\\x1b[31mb\\x0acaf\xc3\xa9 \\u009b \\u202e \\xff!");
    cr_assert_eq(err.code, DTA_E_FORMAT);
}

Test(error, prefix_is_escaped_and_escaping_is_idempotent)
{
    dta_error err;
    dta_error_set(&err, DTA_E_IO, 0, "bad \x07 byte");
    dta_error_prefix(&err, "dir\x1b]0;x/file");
    cr_assert_str_eq(err.msg, "dir\\x1b]0;x/file: bad \\x07 byte");
    char again[DTA_ERROR_MSG_MAX];
    dtap_escape(again, sizeof again, err.msg, strlen(err.msg));
    cr_assert_str_eq(again, err.msg);
}

Test(error, long_messages_stay_within_the_buffer_at_a_character_boundary)
{
    char big[2 * DTA_ERROR_MSG_MAX];
    memset(big, 0x1b, sizeof big - 1);
    big[sizeof big - 1] = 0;
    dta_error err;
    dta_error_set(&err, DTA_E_FORMAT, 0, "%s", big);
    size_t n = strlen(err.msg);
    cr_assert(n < DTA_ERROR_MSG_MAX && n % 4 == 0 && n >= DTA_ERROR_MSG_MAX - 8, "%zu", n);
}

Test(error, escape_takes_a_length_nul_and_cut_sequences_included)
{
    char buf[64];
    cr_assert_str_eq(dtap_escape(buf, sizeof buf, "a\0b", 3), "a\\x00b");
    cr_assert_str_eq(dtap_escape(buf, sizeof buf, "x\xc3", 2), "x\\xc3"); /* cut at the end */
    cr_assert_str_eq(dtap_escape(buf, 5, "\x1b\x1b", 2), "\\x1b");      /* whole escapes only */
    cr_assert_str_eq(dtap_escape(buf, 3, "caf\xc3\xa9", 5), "ca");
}
