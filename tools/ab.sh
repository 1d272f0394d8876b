#!/usr/bin/env bash
# Two keepmover builds, alternated on one workload: the way to compare them on a machine whose
# speed drifts from minute to minute (a whole bench_e2e.sh round per build does not). Each
# run gets a fresh keepsim started as bench_e2e.sh starts it (3 keepstores per cluster, one
# replica of each source block, a digest-only destination; --bench-serving unless
# SERVING=default; LATENCY_MS as there; TLS=1 for HTTPS keepstores, keepsim --tls; TLS=b for
# plain HTTP on A's side and HTTPS on B's, to measure what TLS costs one build), with
# keepmover on core 1 and keepsim on core 0, and
# prints keepmover's user and system CPU seconds, wall time, peak RSS and minor faults (and
# keepsim's CPU seconds during the copy: a change may move work to the other side; and the
# blocks/s of keepmover's summary line), then
# the medians of user and system seconds, and of CPU-s per GiB (or µs per block) for A and B
# and their ratio.
#
#   tools/ab.sh /tmp/keepmover-old ./target/release/keepmover 1MiBx3072 5
#   LATENCY_MS=5 SERVING=default tools/ab.sh A B 4096x60000 3
#   EXTRA="-concurrency 1" tools/ab.sh A B 64MiBx8 3
#   TLS=1 tools/ab.sh A B 1MiBx3072 5
#   TLS=b tools/ab.sh A A 1MiBx9216 4      # TLS overhead: B's CPU minus A's
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
bin_a=$1 bin_b=$2 blocks=$3 rounds=${4:-3}
SERVING=${SERVING:-bench}
LATENCY_MS=${LATENCY_MS:-0}
EXTRA=${EXTRA:-}
work=$(mktemp -d)
cleanup() {
  stop_sim
  rm -rf "$work"
}
trap cleanup EXIT
case ${TLS:-0} in 0 | 1 | b) ;; *) echo "TLS must be 0, 1 or b" >&2; exit 2 ;; esac
# keepsim's flags for a side (a or b).
serving_flags() {
  serving_flag=()
  [ "$SERVING" = bench ] && serving_flag+=(--bench-serving)
  { [ "${TLS:-0}" = 1 ] || { [ "${TLS:-0}" = b ] && [ "$1" = b ]; }; } && serving_flag+=(--tls)
  return 0
}
# start_sim, stop_sim, pin_cores
source tools/lib.sh
pin_cores

cargo build --release -p keepsim >&2
# Total bytes and blocks of a BLOCKSPEC such as 64MiBx48 or 4096x60000 (one size only).
size=${blocks%x*} count=${blocks##*x}
case $size in
  *KiB) bytes=$((${size%KiB} << 10)) ;;
  *MiB) bytes=$((${size%MiB} << 20)) ;;
  *) bytes=$size ;;
esac

ticks_per_s=$(getconf CLK_TCK)
run() { # BINARY -> "cpu_seconds user sys wall maxrss_kib minflt keepsim_cpu_seconds blocks_per_s"
  local dir sim_before sim_after rate
  dir=$(start_sim "$blocks") || exit 1
  sim_before=$(sim_ticks)
  # shellcheck disable=SC2086 # EXTRA is a list of flags
  /usr/bin/time -f "%U %S %e %M %R" -o "$work/time" "${copier_on[@]}" "$1" \
    -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -progress log $EXTRA \
    >"$work/km.log" 2>&1 || { tail -5 "$work/km.log" >&2; exit 1; }
  sim_after=$(sim_ticks)
  stop_sim
  # keepmover's own figure, from its summary line ("..., 612 blocks/s (io: uring)").
  rate=$(sed -n 's/.*, \([0-9][0-9]*\) blocks\/s (io:.*/\1/p' "$work/km.log" | tail -1)
  awk -v sim=$((sim_after - sim_before)) -v hz="$ticks_per_s" -v rate="${rate:-?}" \
    '{printf "%.2f %s %s %s %s %s %.2f %s\n", $1 + $2, $1, $2, $3, $4, $5, sim / hz, rate}' "$work/time"
}

echo "build | CPU s | user | sys | wall s | peak RSS KiB | minor faults | keepsim CPU s | blocks/s"
for f in a b a.sim b.sim a.user b.user a.sys b.sys; do : >"$work/$f"; done
for _ in $(seq "$rounds"); do
  for side in a b; do
    bin=$bin_a && [ $side = b ] && bin=$bin_b
    serving_flags $side
    line=$(run "$bin")
    echo "$side | ${line// / | }"
    echo "${line%% *}" >>"$work/$side"
    echo "$line" | cut -d' ' -f7 >>"$work/$side.sim"
    echo "$line" | cut -d' ' -f2 >>"$work/$side.user"
    echo "$line" | cut -d' ' -f3 >>"$work/$side.sys"
  done
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ma=$(median "$work/a") mb=$(median "$work/b")
echo "median keepsim CPU s during the copy: A $(median "$work/a.sim"), B $(median "$work/b.sim")"
# User and system time apart: system time swings with how much of the block pool a short run
# first touches (page faults), which most changes do not touch.
echo "median user s: A $(median "$work/a.user"), B $(median "$work/b.user"); median sys s: A $(median "$work/a.sys"), B $(median "$work/b.sys")"
awk -v a="$ma" -v b="$mb" -v bytes="$bytes" -v n="$count" 'BEGIN {
  gib = bytes * n / 2^30
  if (bytes >= 1048576) printf "median CPU-s/GiB: A %.3f, B %.3f, B/A %.2f\n", a / gib, b / gib, b / a
  else printf "median CPU µs/block: A %.1f, B %.1f, B/A %.2f\n", a * 1e6 / n, b * 1e6 / n, b / a
}'
