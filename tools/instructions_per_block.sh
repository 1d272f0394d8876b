#!/usr/bin/env bash
# keepmover's user-space instructions per block, counted by callgrind: a measure that does not
# drift with the machine's speed, for per-request work that CPU time on this VM cannot resolve
# (a 5% change is inside a CPU-time run's noise; this count repeats to about 2%: how
# requests batch still varies with timing).
# Copies N and 3N blocks of BLOCKSPEC's size (keepsim as ab.sh starts it, on core 0) under
# valgrind with the epoll backend (valgrind does not know io_uring), and prints the
# difference per extra block, so start-up and the pool's first fill cancel out; likewise the
# calls to the allocator (`__rust_alloc`) per extra block.
#
#   tools/instructions_per_block.sh ./target/release/keepmover 4096x3000
#
# Caveats: valgrind counts a `rep movsb` or `rep stosb` as one instruction per byte, so large
# memcpy and memset weigh far more here than on the CPU; kernel time is not counted at all;
# and valgrind hides SHA-NI, so locator signing runs sha1's portable code. Read the
# difference between two builds, not the absolute figure.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
# The binary as the caller named it, before moving to the repository's root.
bin=$(realpath "$1") size=${2%x*} count=${2##*x}
cd "$(dirname "$0")/.."
# start_sim, stop_sim, bench_setup
source tools/lib.sh
bench_setup
cargo build --release -p keepsim >&2

instructions() { # BLOCKSPEC -> instructions of one copy
  local dir
  dir=$(start_sim "$1") || exit 1
  "${copier_on[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -progress log \
    -io epoll >"$work/km.log" 2>&1 || { tail -5 "$work/km.log" >&2; exit 1; }
  stop_sim
  local refs allocations
  refs=$(sed -n 's/^==[0-9]*== I *refs: *//p' "$work/km.log" | tr -d ,)
  # Calls into Rust's global allocator (fresh allocations, not reallocations), summed over
  # every caller callgrind saw.
  allocations=$(callgrind_annotate --tree=calling --threshold=100 "$work/cg.out" 2>/dev/null |
    sed -n 's/.*>  *[^ ]*:__rust_alloc (\([0-9,]*\)x).*/\1/p' | tr -d , |
    awk '{s += $1} END {print s + 0}')
  echo "$refs $allocations"
}

read -r small small_allocations < <(instructions "${size}x${count}")
read -r large large_allocations < <(instructions "${size}x$((3 * count))")
if [ -z "$small" ] || [ -z "$large" ]; then
  echo "no instruction count in valgrind's output" >&2
  exit 1
fi
echo "instructions: $small for $count blocks, $large for $((3 * count))"
echo "allocations: $small_allocations for $count blocks, $large_allocations for $((3 * count))"
awk -v a="$small" -v b="$large" -v n="$count" \
  'BEGIN { printf "per extra block: %.0f\n", (b - a) / (2 * n) }'
awk -v a="$small_allocations" -v b="$large_allocations" -v n="$count" \
  'BEGIN { printf "allocations per extra block: %.1f\n", (b - a) / (2 * n) }'
