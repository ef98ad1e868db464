/* The library's version: configure's AC_INIT version, through config.h. This is the only
 * place the version is compiled in; the CLI and every JSON/SARIF document print it. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "dtaudit/version.h"

#ifndef PACKAGE_VERSION
#error "config.h must define PACKAGE_VERSION (build through configure)"
#endif

/* The generated header and config.h come from the same configure run; a stale
 * include/dtaudit/version.h from another tree would fail here, not at run time. */
_Static_assert(sizeof(DTA_VERSION_STRING) == sizeof(PACKAGE_VERSION),
               "include/dtaudit/version.h is stale: rerun configure");

const char *dta_version(void)
{
    return PACKAGE_VERSION;
}

unsigned dta_version_number(void)
{
    return DTA_VERSION_NUMBER;
}
