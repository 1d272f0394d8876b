#!/usr/bin/env bash
# How fast `keepmover touch` renews a cluster's blocks, against keepsim; prints Markdown rows.
# Operators plan the database move's window on it: every copy of every block gets one TOUCH.
#
# keepsim serves a synthetic cluster of BLOCKS blocks (one copy each, 3 keepstores; the
# synthetic layer records touches, so each TOUCH is real work for it), and `keepmover touch
# -dst srcaa.conf -all` renews them all, once per CONCURRENCIES value, with LATENCY_MS added
# to every keepstore response (0 = none). keepmover runs on core 1 and keepsim on core 0
# (taskset) on a machine of 2 cores or more; /usr/bin/time gives keepmover's wall time, CPU
# (user + sys) and peak RSS, so "CPU µs per touch" is keepmover's alone.
#
#   tools/bench_touch.sh                                   # 100 000 blocks, no latency
#   LATENCY_MS=5 CONCURRENCIES="32 256" tools/bench_touch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-100000}
CONCURRENCIES=${CONCURRENCIES:-"32 128"}
latency=${LATENCY_MS:-0}
# start_sim, stop_sim, bench_setup
source tools/lib.sh
bench_setup
# shellcheck disable=SC2034 # read by start_sim
LATENCY_MS=$latency
cargo build --release -p keepmover -p keepsim >&2
km=./target/release/keepmover

echo "| blocks | latency ms | -concurrency | touches/s | wall s | CPU s | CPU µs per touch | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for concurrency in $CONCURRENCIES; do
  dir=$(start_sim "4096x$BLOCKS")
  "${copier_on[@]}" /usr/bin/time -o "$work/time" -f "%e %U %S %M" \
    "$km" touch -dst "$dir/srcaa.conf" -all -concurrency "$concurrency" \
    >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
  stop_sim
  summary=$(grep 'Summary: touched' "$work/out" || true)
  touched=$(sed -E 's/.*touched ([0-9]+) copies.*/\1/' <<<"$summary")
  [ "$touched" = "$BLOCKS" ] || { echo "expected $BLOCKS touches: $summary" >&2; exit 1; }
  read -r wall user sys rss <"$work/time"
  awk -v n="$BLOCKS" -v lat="$latency" -v c="$concurrency" -v wall="$wall" -v u="$user" -v s="$sys" -v rss="$rss" \
    'BEGIN { cpu = u + s; printf "| %d | %s | %d | %.0f | %.2f | %.2f | %.1f | %.0f |\n", n, lat, c, n / wall, wall, cpu, cpu * 1e6 / n, rss / 1024 }'
done
