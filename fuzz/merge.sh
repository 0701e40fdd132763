#!/usr/bin/env bash
# Merges what a fuzz run kept into the checked-in corpus, minimised: AFL++'s
# afl-cmin.awk picks the smallest set of files covering every edge of the corpus and
# the queue together, and the picks that are new (by content) are added as
# corpus/<target>/q-<sha1 prefix>. Nothing in the corpus is removed: gen_corpus owns
# its seeds, and older finds cost little.
#
#   fuzz/merge.sh TARGET QUEUE_DIR      # e.g. model /tmp/aeternus-fuzz/model/default/queue
#
# The Python afl-cmin of AFL++ 4.40c found "0 unique tuples" here; the awk one works.
set -euo pipefail
cd "$(dirname "$0")"

target=$1
queue=$2
binary=${CARGO_TARGET_DIR:-/work/target-fuzz}/release/$target
afl_bin=$(echo ~/.local/share/afl.rs/rustc-"$(rustc -V | cut -d' ' -f2)"-*/afl.rs-*/afl/bin)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/union"
cp corpus/"$target"/* "$work/union/"
for f in "$queue"/id:*; do cp "$f" "$work/union/queue-$(basename "$f" | cut -d, -f1 | tr : -)"; done
AFL_NO_UI=1 nice -n 19 "$afl_bin/afl-cmin.awk" -i "$work/union" -o "$work/min" -t 5000 -- "$binary" \
  > "$work/cmin.log" 2>&1 || { cat "$work/cmin.log"; exit 1; }

sha1sum corpus/"$target"/* | cut -c1-40 | sort > "$work/known"
added=0
for f in "$work"/min/*; do
  sum=$(sha1sum "$f" | cut -c1-40)
  if ! grep -qx "$sum" "$work/known"; then
    cp "$f" "corpus/$target/q-${sum:0:12}"
    added=$((added + 1))
  fi
done
echo "$target: $(ls "$work/min" | wc -l) files cover the corpus and the queue; $added added"
