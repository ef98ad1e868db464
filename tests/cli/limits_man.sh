#!/bin/sh
# Every cap in include/dtaudit/limits.h is documented, with its value, in the man page's
# LIMITS item its "man: LABEL" tag names; every LIMITS item is backed by a cap there.
. "$(dirname "$0")/lib.sh"

h=include/dtaudit/limits.h
# NAME<TAB>VALUE-EXPRESSION<TAB>LABEL, one line per cap
sed -n 's|^#define \(DTA_MAX_[A-Z0-9_]*\) \{1,\}\([^/]*[^/ ]\) *\(/\*.*\)$|\1\t\2\t\3|p' "$h" |
    sed 's|\t/\*.*man: \(.*\) \*/$|\t\1|' >"$TMP/caps"
[ "$(wc -l <"$TMP/caps")" -ge 30 ] && pass || fail "only $(wc -l <"$TMP/caps") caps read from $h"
ndef=$(grep -c '^#define DTA_MAX_' "$h")
[ "$ndef" -eq "$(wc -l <"$TMP/caps")" ] && pass || fail "$h: $ndef caps, $(wc -l <"$TMP/caps") in the one-line form"

# the LIMITS section as LABEL<TAB>text, one line per .TP item (troff quoting removed)
sed -n '/^\.SH LIMITS/,/^\.SH /p' man/dtaudit.1 | sed 's/\\-/-/g' | awk '
    /^\.TP/ { if (label != "") print label "\t" text; label = ""; text = ""; want = 1; next }
    /^\.(PP|SH)/ { if (label != "") print label "\t" text; label = ""; text = ""; want = 0; next }
    want == 1 && /^\.B / { label = substr($0, 4); want = 2; next }
    want == 2 { sub(/^\.[A-Z]+ /, ""); gsub(/"/, ""); text = text " " $0 }
    END { if (label != "") print label "\t" text }' >"$TMP/items"
[ "$(wc -l <"$TMP/items")" -ge 10 ] && pass || fail "only $(wc -l <"$TMP/items") LIMITS items in the man page"

group3() { echo "$1" | sed ':a;s/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/;ta'; }
tab=$(printf '\t')
while IFS="$tab" read -r name expr label; do
    case "$label" in
    */*|"") fail "$name has no 'man: LABEL' tag"; continue ;;
    esac
    value=$(( $(echo "$expr" | sed 's/\([0-9]\)[uUlL]*/\1/g') ))
    text=$(awk -F "$tab" -v l="$label" '$1 == l { print $2 }' "$TMP/items")
    if [ -z "$text" ]; then fail "$name: man page LIMITS has no item '.B $label'"; continue; fi
    forms="$value $(group3 "$value")"
    for unit in KiB MiB GiB; do
        [ $((value % 1024)) -eq 0 ] || break
        value=$((value / 1024))
        forms="$forms $value@$unit"
    done
    ok=0
    for f in $forms; do
        f=$(echo "$f" | tr '@' ' ')
        echo " $text " | grep -Eq "[^0-9,]$f([^0-9,]|,[^0-9])" && ok=1
    done
    [ "$ok" -eq 1 ] && pass || fail "$name: man page item '$label' does not give its value (any of: $forms)"
done <"$TMP/caps"

while IFS="$tab" read -r label text; do
    awk -F "$tab" -v l="$label" '$3 == l { f = 1 } END { exit !f }' "$TMP/caps" && pass ||
        fail "man page LIMITS item '$label' has no cap tagged 'man: $label' in $h"
done <"$TMP/items"
finish
