#!/usr/bin/env bash
# The kernel's floor under a 1 MiB copy on this machine, next to keepmover's cost, in one run
# (the machine's speed drifts, so only figures from the same run compare). Each round runs,
# one after the other:
#   copy    tools/copy_floor/copy_floor.c: read() each 1 MiB block from one loopback TCP
#           connection and write() it to another, nothing else (writer and reader on core 0,
#           the middle on core 1), reusing one buffer
#   copy64  the same, cycling through 64 buffers as a copier with 64 blocks in flight does
#   splice  the same through pipes: splice in, tee, read the tee'd copy (what a hash needs),
#           splice out (no send-side copy from user memory)
#   keepmover, if a binary is given: 3 GiB of 1 MiB blocks as ab.sh copies them (bench
#           serving, keepsim on core 0, keepmover on core 1)
# and prints each one's CPU seconds per GiB, then the medians.
#
#   tools/copy_floor.sh ./target/release/keepmover 5
#   tools/copy_floor.sh "" 5        # the floor alone
set -euo pipefail
cd "$(dirname "$0")/.."
km=${1:-} rounds=${2:-3}
[ -z "$km" ] || km=$(realpath "$km")
command -v cc >/dev/null || { echo "needs a C compiler (cc)" >&2; exit 2; }
# start_sim, stop_sim, bench_setup
source tools/lib.sh
bench_setup
cc -O2 -Wall -Wextra -o "$work/copy_floor" tools/copy_floor/copy_floor.c
[ -z "$km" ] || cargo build --release -p keepsim >&2

blocks=3072
keepmover_cpu_per_gib() {
  local dir
  dir=$(start_sim "1MiBx$blocks") || exit 1
  /usr/bin/time -f "%U %S" -o "$work/time" "${copier_on[@]}" "$km" \
    -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -progress log \
    >"$work/km.log" 2>&1 || { tail -5 "$work/km.log" >&2; exit 1; }
  stop_sim
  awk -v gib=$((blocks / 1024)) '{printf "%.3f\n", ($1 + $2) / gib}' "$work/time"
}

: >"$work/copy" && : >"$work/copy64" && : >"$work/splice" && : >"$work/keepmover"
for round in $(seq "$rounds"); do
  for mode in copy copy64 splice; do
    buffers=1 && [ $mode = copy64 ] && buffers=64
    line=$(BUFFERS=$buffers "$work/copy_floor" ${mode%64} $blocks)
    echo "round $round $line"
    echo "$line" | sed 's/.*: \([0-9.]*\) CPU-s\/GiB.*/\1/' >>"$work/$mode"
  done
  if [ -n "$km" ]; then
    cpu=$(keepmover_cpu_per_gib)
    echo "round $round keepmover: $cpu CPU-s/GiB (user + system, 1 MiB blocks)"
    echo "$cpu" >>"$work/keepmover"
  fi
done
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "medians, CPU-s/GiB: copy $(median "$work/copy"), copy64 $(median "$work/copy64"), splice $(median "$work/splice")${km:+, keepmover $(median "$work/keepmover")}"
