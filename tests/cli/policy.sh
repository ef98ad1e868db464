#!/bin/sh
# --policy FILE: expect, allow, per-rule severity and fail_on from JSON; command-line options
# override it; a bad policy is a usage error (exit 2) with one line naming file and key.
. "$(dirname "$0")/lib.sh"
py_start
S=tests/fixtures/seeds/003_higgs_audio.safetensors   # bf16 model, two f32 audio modules
P=$TMP/p.json
rules() { pyj 'sorted(set((f["rule"], f["severity"]) for f in d["findings"]))'; }

# The example "bf16 except norms and inv_freq in fp32" policy: expect-mismatch errors for
# the f32 audio modules, dtype-outlier raised to error, fail_on error.
dta audit --format json --policy examples/policies/bf16-keep-fp32-norms.json $S
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'error'), ('expect-mismatch', 'error')]" ] \
    && pass || fail "example policy: exit $rc $(rules)"

# allow in its three spellings clears them.
for allow in '["audio_*=f32"]' '[{"glob": "audio_*", "dtype": "F32", "reason": "audio tower stays fp32"}]' \
             '{"audio_*": "float32"}' '{"audio_*": null}' '["audio_*"]'; do
    printf '{"expect": "bf16", "allow": %s}' "$allow" >"$P"
    dta audit --format json --policy "$P" $S
    [ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "allow $allow: exit $rc"
done
# an allow with another dtype does not match
printf '{"allow": ["audio_*=f16"]}' >"$P"
dta audit --format json --policy "$P" $S
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('dtype-outlier', 'warning')]" ] && pass || fail "allow with another dtype"

# Command-line options override the file: --expect, --fail-on; --allow adds to the file's.
printf '{"expect": "f16", "fail_on": "info"}' >"$P"
dta audit --format json --policy "$P" --expect bf16 --allow 'audio_*' $S
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"])')" = 0 ] && pass || fail "--expect/--allow over the policy: exit $rc"
dta audit --format json --policy "$P" --fail-on never $S
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"]) > 0')" = True ] && pass || fail "--fail-on over the policy: exit $rc"
dta audit --policy "$P" --color never $S
[ "$rc" -eq 1 ] && grep -q "(fail-on info)" "$TMP/out" && grep -q "expect-mismatch" "$TMP/out" && pass || fail "policy fail_on/expect used"

# severity: lower, raise, switch off; reader notes too.
printf '{"severity": {"dtype-outlier": "info"}}' >"$P"
dta audit --format json --policy "$P" $S
[ "$rc" -eq 0 ] && [ "$(rules)" = "[('dtype-outlier', 'info')]" ] && pass || fail "severity info: exit $rc"
dta audit --format json --policy "$P" --fail-on info $S
[ "$rc" -eq 1 ] && pass || fail "severity info with --fail-on info: exit $rc"
printf '{"severity": {"dtype-outlier": "off"}}' >"$P"
dta audit --format json --policy "$P" $S
[ "$rc" -eq 0 ] && [ "$(pyj 'len(d["findings"]), d["summary"]["findings"]')" = "(0, {'error': 0, 'warning': 0, 'info': 0})" ] \
    && pass || fail "severity off: exit $rc"
printf '{"severity": {"adapter-config": "error"}}' >"$P"
mkdir -p "$TMP/mlx" && cp tests/fixtures/dirs/peft-f32-adapter/adapter_model.safetensors "$TMP/mlx/" \
    && echo '{"lora_parameters": {}}' >"$TMP/mlx/adapter_config.json"
dta audit --format json --policy "$P" "$TMP/mlx"
[ "$rc" -eq 1 ] && [ "$(rules)" = "[('adapter-config', 'error')]" ] && pass || fail "severity of a reader note: exit $rc"

# Every example policy loads and applies.
for p in examples/policies/*.json; do
    dta audit --policy "$p" $S
    [ "$rc" -le 1 ] && [ ! -s "$TMP/err" ] && pass || fail "$p: exit $rc $(cat "$TMP/err")"
done

# Hostile or wrong policies: exit 2, nothing on stdout, one line on stderr naming the file
# and what is wrong.
bad() { # bad NAME CONTENT EXPECTED-MESSAGE
    printf '%s' "$2" >"$TMP/$1.json"
    dta audit --policy "$TMP/$1.json" $S
    if [ "$rc" -eq 2 ] && [ ! -s "$TMP/out" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] \
        && grep -q "^dtaudit: $TMP/$1.json: .*$3" "$TMP/err"; then pass
    else fail "$1: exit $rc, stderr: $(cat "$TMP/err")"; fi
}
bad empty '' 'empty policy file'
bad notjson '{"expect": bf16}' 'not valid JSON (near byte'
bad trailing '{"expect": "bf16"} {}' 'data after the document'
bad array '["bf16"]' 'a policy is a JSON object'
bad unknownkey '{"expekt": "bf16"}' "unknown key 'expekt'"
bad twice '{"expect": "bf16", "expect": "f16"}' 'expect: given twice'
bad dtype '{"expect": "bf17"}' "expect: unknown dtype 'bf17'"
bad dtypetype '{"expect": 16}' 'expect: expected a dtype string'
bad allowtype '{"allow": "x"}' 'allow: expected an array'
bad allowitem '{"allow": [1]}' 'allow\[0\]: expected'
bad allowdtype '{"allow": ["a", "*norm*=f33"]}' "allow\[1\]: unknown dtype 'f33'"
bad allowempty '{"allow": ["=f32"]}' 'allow\[0\]: empty pattern'
bad allowkey '{"allow": [{"glob": "x", "dtyp": "f32"}]}' "allow\[0\]: unexpected key 'dtyp'"
bad allowglob '{"allow": [{"dtype": "f32"}]}' 'allow\[0\]: "glob" must be a string'
bad sevtype '{"severity": ["x"]}' 'severity: expected an object'
bad sevrule '{"severity": {"dtype-outliers": "error"}}' "severity.'dtype-outliers': unknown rule"
bad sevvalue '{"severity": {"dtype-outlier": "fatal"}}' "severity.'dtype-outlier': expected"
bad sevnever '{"severity": {"dtype-outlier": "never"}}' "severity.'dtype-outlier': expected"
bad sevtwice '{"severity": {"mixed-module": "info", "mixed-module": "off"}}' 'given twice'
bad failon '{"fail_on": "sometimes"}' 'fail_on: expected'
bad version '{"version": 2}' 'only version 1 is known'
bad control "$(printf '{"expect": "bf\0336"}')" "expect: unknown dtype 'bf\\\\x1b6'"
py -c 'import sys; open(sys.argv[1], "w").write("[" * 5000 + "]" * 5000)' "$TMP/deep.json"
dta audit --policy "$TMP/deep.json" $S
[ "$rc" -eq 2 ] && grep -q "not valid JSON" "$TMP/err" && pass || fail "deeply nested policy: exit $rc"
py -c 'import sys; open(sys.argv[1], "w").write("{\"description\": \"" + "x" * (1 << 20) + "\"}")' "$TMP/big.json"
dta audit --policy "$TMP/big.json" $S
[ "$rc" -eq 2 ] && grep -q "larger than 1048576 bytes" "$TMP/err" && pass || fail "oversized policy: exit $rc"
py -c 'import sys, json; json.dump({"allow": ["g%d" % i for i in range(5000)]}, open(sys.argv[1], "w"))' "$TMP/many.json"
dta audit --policy "$TMP/many.json" $S
[ "$rc" -eq 2 ] && grep -q "more than 4096 allow rules" "$TMP/err" && pass || fail "too many allow rules: exit $rc"
dta audit --policy "$TMP/missing.json" $S
[ "$rc" -eq 2 ] && grep -q "^dtaudit: $TMP/missing.json: " "$TMP/err" && pass || fail "missing policy: exit $rc"
dta audit --policy "$TMP" $S
[ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && pass || fail "directory as policy: exit $rc"
dta scan --policy examples/policies/peft-adapter.json $S
[ "$rc" -eq 2 ] && grep -q "does not apply" "$TMP/err" && pass || fail "--policy on scan: exit $rc"
finish
