#!/bin/sh
# Directory and index convert (issue 11): every file and folder not converted is copied,
# nothing from outside the input is; shards are read only inside the index's folder and
# a shard in a subfolder converts to a correct output.
. "$(dirname "$0")/lib.sh"
py_start
S=tests/fixtures/seeds/001_distill_logit_projector.safetensors
o=$TMP/ct
mkdir -p "$o"
export DTAUDIT_NO_PROGRESS=1
one_line() { [ "$(wc -l <"$TMP/err")" -eq 1 ]; }
no_temps() { [ -z "$(find "$1" -name '.*dtaudit-*' | head -1)" ]; }

# ---- a training folder: everything not converted is copied -----------------------------
m=$o/run
mkdir -p "$m/sub/deep" "$m/.cache/hf" "$m/.git" "$m/checkpoint-500"
cp $S "$m/model.safetensors"
cp $S "$m/extra.safetensors"
echo '{"torch_dtype": "float32"}' >"$m/config.json"
for f in optimizer.pt scheduler.pt training_args.bin rng_state.pth sub/deep/notes.txt \
    .cache/hf/meta checkpoint-500/trainer_state.json .gitattributes; do
    echo "content of $f" >"$m/$f"
done
chmod 600 "$m/sub/deep/notes.txt"
chmod 755 "$m/scheduler.pt"
echo ref >"$m/.git/HEAD"
ln -s sub/deep/notes.txt "$m/notes-link"          # relative, inside: recreated
ln -s checkpoint-500 "$m/latest"                  # a folder link inside: recreated
ln -s "$(cd "$m" && pwd)/optimizer.pt" "$m/abs-link" # absolute, into the input: copied
ln -s does-not-exist "$m/dangling"                # dangling, inside: recreated
dta convert --to bf16 "$m" -o "$o/run-bf16"
[ "$rc" -eq 0 ] && pass || fail "training folder: $rc $(cat "$TMP/err")"
for f in optimizer.pt scheduler.pt training_args.bin rng_state.pth extra.safetensors \
    sub/deep/notes.txt .cache/hf/meta checkpoint-500/trainer_state.json .gitattributes; do
    cmp -s "$m/$f" "$o/run-bf16/$f" && pass || fail "not copied: $f"
done
[ "$(stat -c %a "$o/run-bf16/sub/deep/notes.txt")" = 600 ] && [ "$(stat -c %a "$o/run-bf16/scheduler.pt")" = 755 ] \
    && pass || fail "modes not kept"
[ "$(readlink "$o/run-bf16/notes-link")" = sub/deep/notes.txt ] && [ "$(readlink "$o/run-bf16/latest")" = checkpoint-500 ] \
    && [ "$(readlink "$o/run-bf16/dangling")" = does-not-exist ] && pass || fail "inner links not recreated"
[ -f "$o/run-bf16/abs-link" ] && [ ! -L "$o/run-bf16/abs-link" ] && cmp -s "$m/optimizer.pt" "$o/run-bf16/abs-link" \
    && pass || fail "absolute link into the input not copied as a file"
[ ! -e "$o/run-bf16/.git" ] && grep -q "left out: .git" "$TMP/out" && pass || fail ".git: $(cat "$TMP/out")"
grep -q "note: optimizer.pt copied without conversion" "$TMP/out" && grep -q "note: extra.safetensors copied" "$TMP/out" \
    && pass || fail "copied weights not named: $(cat "$TMP/out")"
grep -q '"torch_dtype": "bfloat16"' "$o/run-bf16/config.json" && pass || fail "config.json not updated"
dta audit --expect bf16 "$o/run-bf16"
[ "$rc" -eq 0 ] && pass || fail "audit of the converted folder: $rc"
# the listing of input and output match, but for .git
(cd "$m" && find . -path ./.git -prune -o -print | sort) >"$TMP/a"
(cd "$o/run-bf16" && find . | sort) >"$TMP/b"
cmp -s "$TMP/a" "$TMP/b" && pass || fail "listings differ: $(diff "$TMP/a" "$TMP/b")"
dta convert -f json --to bf16 "$m" -o "$o/run-json"
[ "$rc" -eq 0 ] && py -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['left_out'][0].startswith('.git'), d
assert 'optimizer.pt' in d['copied_weights'] and d['files_copied'] >= 12, d
" "$TMP/out" && pass || fail "convert -f json of a folder: $rc $(cat "$TMP/out")"

# ---- links that lead out of the input, special files: refused, nothing written --------
mkdir -p "$o/elsewhere"
echo secret >"$o/elsewhere/secret.txt"
i=0
for kind in abs-etc environ rel-up dir-out chain dangling-out cfg-out; do
    i=$((i + 1))
    d=$o/bad$i
    mkdir -p "$d"
    cp $S "$d/model.safetensors"
    case $kind in
    abs-etc) ln -s /etc/passwd "$d/passwd" ;;
    environ) ln -s /proc/self/environ "$d/env" ;;
    rel-up) ln -s ../elsewhere/secret.txt "$d/secret.txt" ;;
    dir-out) ln -s ../elsewhere "$d/more" ;;
    chain) ln -s /etc/hostname "$d/b" && ln -s b "$d/a" ;;
    dangling-out) ln -s ../../nowhere/x "$d/x" ;;
    cfg-out) ln -s ../elsewhere/secret.txt "$d/config.json" ;;
    esac
    dta convert --to bf16 "$d" -o "$o/bad$i-out"
    [ "$rc" -eq 2 ] && one_line && [ ! -e "$o/bad$i-out" ] && pass || fail "$kind: $rc $(cat "$TMP/err")"
done
mkfifo "$o/bad1/fifo" 2>/dev/null && rm -f "$o/bad1/passwd" && {
    set +e
    timeout 20 "$DTAUDIT" convert --to bf16 "$o/bad1" -o "$o/fifo-out" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    set -e
    [ "$rc" -eq 2 ] && one_line && grep -q FIFO "$TMP/err" && [ ! -e "$o/fifo-out" ] && pass \
        || fail "FIFO in the folder: $rc $(cat "$TMP/err")"
}
no_temps "$o" && pass || fail "temporaries left"

# ---- index shards: a subfolder converts; links out of the index's folder are refused ---
py - "$o/idx" <<'PY'
import json, os, sys, stwrite
d = sys.argv[1]
os.makedirs(d + "/shards/part", exist_ok=True)
stwrite.write_values(d + "/model-00001-of-00003.safetensors", {"a.weight": [1.0, 2.0]})
stwrite.write_values(d + "/shards/model-00002-of-00003.safetensors", {"b.weight": [3.0, 4.5]})
stwrite.write_values(d + "/shards/part/model-00003-of-00003.safetensors", {"c.weight": [5.0, -6.25, 7.0]})
json.dump({"metadata": {"total_size": 28},
           "weight_map": {"a.weight": "model-00001-of-00003.safetensors",
                          "b.weight": "shards/model-00002-of-00003.safetensors",
                          "c.weight": "shards/part/model-00003-of-00003.safetensors"}},
          open(d + "/model.safetensors.index.json", "w"))
PY
check_index() { # OUT: the index's weight_map names files that hold exactly those tensors
    py - "$1" <<'PY'
import json, os, sys
from safetensors import safe_open
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
for name, shard in idx["weight_map"].items():
    with safe_open(os.path.join(d, shard), "pt") as f:
        assert name in f.keys(), (name, shard)
        assert str(f.get_tensor(name).dtype) == "torch.bfloat16"
assert idx["metadata"]["total_size"] == 14, idx
PY
}
for in in "$o/idx" "$o/idx/model.safetensors.index.json"; do
    rm -rf "$o/idx-out"
    dta convert --to bf16 "$in" -o "$o/idx-out"
    [ "$rc" -eq 0 ] && [ -f "$o/idx-out/shards/part/model-00003-of-00003.safetensors" ] \
        && pass || fail "index with subfolder shards ($in): $rc $(cat "$TMP/err")"
    if py -c "import safetensors, torch" 2>/dev/null; then
        check_index "$o/idx-out" && pass || fail "converted index ($in) is not consistent"
    fi
    v=$in
    [ -d "$in" ] || v=$o/idx-out/model.safetensors.index.json
    [ -d "$in" ] && v=$o/idx-out
    dta verify "$in" "$v"
    [ "$rc" -eq 0 ] && pass || fail "verify index ($in): $rc $(cat "$TMP/out")"
done
cp -r "$o/idx" "$o/idx-pristine"
# a shard linked to another name inside the folder is fine
mv "$o/idx/shards/model-00002-of-00003.safetensors" "$o/idx/shards/real2.safetensors"
ln -s real2.safetensors "$o/idx/shards/model-00002-of-00003.safetensors"
dta scan "$o/idx"
[ "$rc" -eq 0 ] && pass || fail "shard linked inside the folder: $rc $(cat "$TMP/err")"
# ... but a shard (or a shard's folder) leading out of it is not read, by any command
for how in file abs dir; do
    rm -rf "$o/idx" "$o/elsewhere/x"
    cp -r "$o/idx-pristine" "$o/idx"
    mkdir -p "$o/elsewhere/x"
    case $how in
    file) mv "$o/idx/shards/model-00002-of-00003.safetensors" "$o/elsewhere/x/f2"
        ln -s ../../elsewhere/x/f2 "$o/idx/shards/model-00002-of-00003.safetensors" ;;
    abs) mv "$o/idx/shards/model-00002-of-00003.safetensors" "$o/elsewhere/x/f2"
        ln -s "$(cd "$o/elsewhere/x" && pwd)/f2" "$o/idx/shards/model-00002-of-00003.safetensors" ;;
    dir) mv "$o/idx/shards" "$o/elsewhere/x/shards"
        ln -s ../elsewhere/x/shards "$o/idx/shards" ;;
    esac
    for cmd in scan audit convert; do
        if [ $cmd = convert ]; then dta convert --to bf16 "$o/idx" -o "$o/idx-esc"; else dta $cmd "$o/idx"; fi
        [ "$rc" -eq 2 ] && one_line && grep -q "outside the index's folder" "$TMP/err" && [ ! -e "$o/idx-esc" ] \
            && pass || fail "$cmd with a shard linked out ($how): $rc $(cat "$TMP/err")"
    done
done

# ---- a Hugging Face hub cache snapshot: links into blobs/ are the cache's own ------------
hub=$o/hub/models--org--name
mkdir -p "$hub/blobs" "$hub/snapshots/0123abc"
cp $S "$hub/blobs/aaaa1111"
echo '{"torch_dtype": "float32"}' >"$hub/blobs/bbbb2222"
ln -s ../../blobs/aaaa1111 "$hub/snapshots/0123abc/model.safetensors"
ln -s ../../blobs/bbbb2222 "$hub/snapshots/0123abc/config.json"
bsum=$(cksum <"$hub/blobs/aaaa1111")
dta convert --to bf16 "$hub/snapshots/0123abc" -o "$o/hub-bf16"
[ "$rc" -eq 0 ] && [ -f "$o/hub-bf16/model.safetensors" ] && [ ! -L "$o/hub-bf16/config.json" ] \
    && pass || fail "hub cache snapshot: $rc $(cat "$TMP/err")"
# --force onto the blobs folder would delete what the snapshot reads: refused
dta convert --force --to bf16 "$hub/snapshots/0123abc" -o "$hub/blobs"
[ "$rc" -eq 2 ] && one_line && [ "$(cksum <"$hub/blobs/aaaa1111")" = "$bsum" ] && pass \
    || fail "--force onto the blobs: $rc $(cat "$TMP/err")"

finish
