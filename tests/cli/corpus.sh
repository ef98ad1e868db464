#!/bin/sh
# Every checkpoint of the shared real-world corpus reads as its TRUTH.json says.
. "$(dirname "$0")/lib.sh"
corpus=${DTAUDIT_CORPUS:-$srcdir/../shared/corpus/real}
[ -f "$corpus/TRUTH.json" ] || { echo "SKIP: no corpus at $corpus"; exit 77; }
set +e
"$PYTHON" tests/interop/corpus_truth.py "$DTAUDIT" "$corpus" --formats "${DTAUDIT_CORPUS_FORMATS:-safetensors,torch-zip,torch-legacy,index-json}"
exit $?
