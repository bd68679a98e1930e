#!/usr/bin/env bash
# Runs every cargo-fuzz target for N minutes each from its committed corpus, merges the inputs
# that found new coverage back into fuzz/corpus/<target> (libFuzzer's -merge), minimises the
# corpus (cargo fuzz cmin: the smallest set with the same coverage), and prints one line per
# target: executions, speed, corpus size before and after, and crashes (saved under
# fuzz/artifacts/<target>/; the script then exits non-zero).
#
#   bash scripts/fuzz-all.sh [minutes per target, default 10] [parallel jobs per target, default 1]
#
# Needs the nightly toolchain (`rustup toolchain list`) and cargo-fuzz (`cargo install cargo-fuzz`).
# CI never runs this: it replays the committed corpora (core/tests/corpus.rs) on every run.
set -euo pipefail
minutes=${1:-10}
jobs=${2:-1}
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
failed=0
for t in $targets; do
  scratch=$(mktemp -d)
  log=$(mktemp)
  before=$(ls "corpus/$t" | wc -l)
  extra=()
  [ "$jobs" -gt 1 ] && extra=(-fork="$jobs")
  status=ok
  # New inputs go to the scratch folder (the first one); the committed corpus is read only.
  if ! cargo +nightly fuzz run -O "$t" "$scratch" "corpus/$t" -- \
      -max_total_time=$((minutes * 60)) -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    status="CRASH (see fuzz/artifacts/$t and $log)"
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END{print s+0}')
  [ "$runs" -gt 0 ] || runs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
  cargo +nightly fuzz run -O "$t" "corpus/$t" "$scratch" -- -merge=1 >/dev/null 2>&1 || true
  cargo +nightly fuzz cmin -O "$t" >/dev/null 2>&1 || true
  after=$(ls "corpus/$t" | wc -l)
  printf '%-14s %4d min x%d  %12s runs  %9s runs/s  corpus %d -> %d  %s\n' "$t" "$minutes" "$jobs" "$runs" \
    "$(awk -v r="${runs:-0}" -v s=$((minutes * 60 * jobs)) 'BEGIN{printf "%.0f", r / s}')" "$before" "$after" "$status"
  rm -rf "$scratch"
  [ "$status" = ok ] && rm -f "$log"
done
exit $failed
