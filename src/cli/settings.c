/* The settings a command runs under (settings.h): --policy merged under the command line,
 * the intended-precision table. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"
#include "term.h"

/* --policy FILE: the file's settings under the command line's. The allow list is the
 * policy's rules followed by --allow's (borrowed pointers, freed by the caller). */
static int apply_policy(cli_options *o, dta_policy **pol, dta_allow **merged)
{
    dta_error err;
    *pol = NULL;
    *merged = NULL;
    if (!o->policy)
        return -1;
    if (dta_policy_load(o->policy, pol, &err) != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        return 2;
    }
    dta_policy *p = *pol;
    if (!o->expect_set)
        o->expect = p->expect;
    if (!o->fail_on_set && p->fail_on >= 0)
        o->fail_on = (dta_severity)p->fail_on;
    if (p->underflow_share >= 0) /* 0 in a policy: any underflow (the library's -1) */
        o->underflow_share = p->underflow_share > 0 ? p->underflow_share : -1;
    if (!o->strict_set && p->strict >= 0)
        o->strict = p->strict == 1;
    o->severity = p->severity;
    o->nseverity = p->nseverity;
    if (p->nallow) {
        dta_allow *a = malloc((p->nallow + o->nallow) * sizeof *a);
        if (!a) {
            fputs("dtaudit: out of memory\n", stderr);
            return 2;
        }
        memcpy(a, p->allow, p->nallow * sizeof *a);
        if (o->nallow)
            memcpy(a + p->nallow, o->allow, o->nallow * sizeof *a);
        *merged = a;
    }
    return -1;
}

int cli_settings_load(cli_options *o, cli_settings *s)
{
    memset(s, 0, sizeof *s);
    int rc = apply_policy(o, &s->policy, &s->merged);
    if (rc >= 0)
        return rc;
    /* the built-in intended-precision table, a policy's local rules in front */
    dta_error err;
    dta_status ist = dta_intended_builtin(&s->intended, &err);
    if (ist == DTA_OK && s->policy && s->policy->intended) {
        ist = dta_intended_prepend(s->intended, s->policy->intended, &err);
        s->policy->intended = NULL; /* moved into the table (or freed on failure) */
    }
    o->intended = s->intended;
    if (ist != DTA_OK) {
        fprintf(stderr, "dtaudit: %s\n", shown(err.msg));
        return 2;
    }
    if (s->merged) {
        s->own_allow = o->allow;
        s->own_nallow = o->nallow;
        o->allow = s->merged;
        o->nallow += s->policy->nallow;
    }
    return -1;
}

void cli_settings_free(cli_options *o, cli_settings *s)
{
    if (s->merged) {
        o->allow = s->own_allow;
        o->nallow = s->own_nallow;
    }
    free(s->merged);
    dta_intended_free(s->intended);
    dta_policy_free(s->policy);
    memset(s, 0, sizeof *s);
}
