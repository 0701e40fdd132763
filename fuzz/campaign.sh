#!/usr/bin/env bash
# The long fuzz campaign of docs/fuzzing.md in one command: builds every target with
# cargo-afl, runs each for SECONDS (default 3600) one after another, and prints one
# table row per target from AFL++'s fuzzer_stats (minutes, execs, corpus, the minute
# of the last new corpus entry, crashes, hangs). Findings stay in OUT/<target>/default/{crashes,hangs}.
#
#   fuzz/campaign.sh [SECONDS] [OUT] [TARGET...]
#
# Needs cargo-afl (`cargo install cargo-afl && cargo afl config --build`).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-3600}
out=${2:-/tmp/aeternus-fuzz}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(block index filter footer properties framing wal manifest_edit manifest batch table model)
fi
target_dir=${CARGO_TARGET_DIR:-/work/target-fuzz}

CARGO_TARGET_DIR=$target_dir nice -n 19 cargo afl build --release -p aeternus-fuzz
mkdir -p "$out"
echo "| target | minutes | execs | corpus | last new entry at minute | crashes | hangs |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in "${targets[@]}"; do
  # The model runs whole databases: give one input up to 5 s.
  timeout_ms=1000
  [ "$target" = model ] && timeout_ms=5000
  AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
    nice -n 19 cargo afl fuzz -i "corpus/$target" -o "$out/$target" -V "$seconds" \
    -t "$timeout_ms" -- "$target_dir/release/$target" > "$out/$target.log" 2>&1 || true
  stats="$out/$target/default/fuzzer_stats"
  field() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  if [ -f "$stats" ]; then
    last_find=$(field last_find)
    found_at=–
    [ "$last_find" -gt 0 ] && found_at=$(( (last_find - $(field start_time)) / 60 ))
    echo "| $target | $(( $(field run_time) / 60 )) | $(field execs_done) | $(field corpus_count) | $found_at | $(field saved_crashes) | $(field saved_hangs) |"
  else
    echo "| $target | – | – | – | – | – | – | (no stats: see $out/$target.log)"
  fi
done
