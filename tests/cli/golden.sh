#!/bin/sh
# Golden tests: stdout, stderr and exit status of dtaudit for the cases in golden/cases.
. "$(dirname "$0")/lib.sh"
g=tests/cli/golden
while IFS='|' read -r name args; do
    case "$name" in ''|'#'*) continue ;; esac
    # shellcheck disable=SC2086  # arguments are split on purpose
    set -f; dta $args; set +f
    echo "$rc" >"$TMP/exit"
    if [ "${UPDATE_GOLDEN:-}" = 1 ]; then
        cp "$TMP/out" "$g/$name.out"; cp "$TMP/err" "$g/$name.err"; cp "$TMP/exit" "$g/$name.exit"
        pass; continue
    fi
    ok=1
    for k in out err exit; do
        if ! diff -u "$g/$name.$k" "$TMP/$k" >"$TMP/diff" 2>&1; then
            fail "$name: $k differs"; head -40 "$TMP/diff"; ok=0
        fi
    done
    [ $ok -eq 1 ] && pass
done <"$g/cases"
finish
