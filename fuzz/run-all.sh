#!/usr/bin/env bash
# Builds and runs every fuzz target for ${FUZZ_SECONDS:-60} seconds each, one after another.
# Stable Rust only here: cargo-fuzz needs -Z flags, which RUSTC_BOOTSTRAP=1 allows.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in $(cargo fuzz list); do
  echo "== $target (${seconds}s)"
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=65536 2>&1 | grep -E "^#[0-9]+\s+DONE|Done [0-9]+ runs|SUMMARY|panicked|deadly signal" || true
done
