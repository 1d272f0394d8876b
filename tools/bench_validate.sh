#!/usr/bin/env bash
# How fast `keepmover validate` is, next to the copy, against keepsim; prints Markdown rows.
#
# 1. Index speed: `validate` (indexes only) and a `-dry-run` copy over the same two synthetic
#    clusters (keepsim --synthetic-clusters 2: destination keepstore k lists exactly the
#    source keepstore k's blocks), INDEX_BLOCKS per keepstore, 3 keepstores each.
# 2. Re-read speed: a synthetic source of BLOCKS blocks of SIZE bytes is copied (2 replicas)
#    to an in-memory destination, then `validate -deep` reads every destination copy back.
#
# keepmover runs on core ${KM_CORE:-1} and keepsim on core ${SIM_CORE:-0} (taskset), so the
# CPU columns are keepmover's alone. /usr/bin/time gives wall, user+sys CPU and peak RSS.
#
#   tools/bench_validate.sh                          # both parts, default sizes
#   PARTS=reread SIZE=67108864 BLOCKS=48 tools/bench_validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"index reread"}
INDEX_BLOCKS=${INDEX_BLOCKS:-1000000}
SIZE=${SIZE:-1048576}
BLOCKS=${BLOCKS:-1024}
KM_CORE=${KM_CORE:-1}
SIM_CORE=${SIM_CORE:-0}
work=$(mktemp -d)
sim_on=(taskset -c "$SIM_CORE")
# launch_sim, warm_sim, stop_sim
source tools/lib.sh
cleanup() {
  stop_sim
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -p keepmover -p keepsim >&2
km=./target/release/keepmover

# name, bytes, locators, then the command; prints one row.
measure() {
  local name=$1 bytes=$2 lines=$3
  shift 3
  /usr/bin/time -o "$work/time" -f "%e %U %S %M" taskset -c "$KM_CORE" "$@" >"$work/out" 2>&1 || true
  read -r wall user sys rss < <(tail -1 "$work/time")
  python3 - "$name" "$bytes" "$lines" "$wall" "$user" "$sys" "$rss" <<'EOF'
import sys
name, nbytes, lines, wall, user, sys_, rss = sys.argv[1:]
nbytes, lines, wall, cpu = int(nbytes), int(lines), float(wall), float(user) + float(sys_)
gib = nbytes / 2**30
per_gib = f"{cpu / gib:.2f}" if nbytes else "—"
mbs = f"{nbytes / 1e6 / wall:.0f}" if nbytes else "—"
rate = f"{lines / wall:,.0f}" if lines else "—"
print(f"| {name} | {wall:.2f} | {rate} | {mbs} | {cpu:.2f} | {per_gib} | {int(rss) / 1024:.0f} |")
EOF
  grep -E "Summary|Validation|Dry run|Error" "$work/out" | tail -3 | sed 's/^/    /' >&2
}

echo "| run | wall s | index lines/s | MB/s through MD5 | CPU s | CPU-s/GiB | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"

if [[ " $PARTS " == *" index "* ]]; then
  dir="$work/index"
  launch_sim "$dir" --keepstores 3 --synthetic "$INDEX_BLOCKS" --synthetic-size 64 --synthetic-clusters 2
  warm_sim "$dir"
  lines=$((INDEX_BLOCKS * 6))
  measure "copy -dry-run, $((INDEX_BLOCKS * 3)) blocks a side" 0 "$lines" \
    $km -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -dry-run -progress log
  measure "validate (indexes only), same clusters" 0 "$lines" \
    $km validate -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -quiet
  stop_sim
fi

if [[ " $PARTS " == *" reread "* ]]; then
  dir="$work/reread"
  launch_sim "$dir" --keepstores 3 --synthetic "$(( (BLOCKS + 2) / 3 ))" --synthetic-size "$SIZE"
  warm_sim "$dir"
  blocks=$(( (BLOCKS + 2) / 3 * 3 ))
  measure "copy, $blocks × $SIZE B, 2 replicas" $((blocks * SIZE)) 0 \
    $km -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 2 -progress log
  measure "validate -deep (reads 2 copies a block)" $((blocks * SIZE * 2)) 0 \
    $km validate -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 2 -deep -quiet
  stop_sim
fi
