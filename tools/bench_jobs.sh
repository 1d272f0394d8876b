#!/usr/bin/env bash
# What the job controls cost, against keepsim; prints Markdown rows (issue 12's targets).
#
# 1. filters: a -dry-run copy and `validate` over two synthetic clusters (keepsim
#    --synthetic-clusters 2), INDEX_BLOCKS per keepstore, 3 keepstores a side, with no
#    filter and with -size, -mtime, -locators (a list of every source block) that select
#    every block, so the work after the filter is the same and the difference is the filter.
# 2. move: copy against move of BLOCKS blocks of SIZE bytes (-replications 1), each run on a
#    fresh keepsim; CPU-s per GiB, median of RUNS runs.
# 3. bwlimit: copies under -bwlimit RATE of about 15 s each; rate = copied bytes / elapsed.
#
# keepmover runs on core ${KM_CORE:-1} and keepsim on core ${SIM_CORE:-0} (taskset), so the
# CPU columns (user+sys from /usr/bin/time) are keepmover's alone.
#
#   tools/bench_jobs.sh                      # all three parts
#   PARTS=move RUNS=5 tools/bench_jobs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"filters move bwlimit"}
INDEX_BLOCKS=${INDEX_BLOCKS:-300000}
SIZE=${SIZE:-1048576}
BLOCKS=${BLOCKS:-1024}
RUNS=${RUNS:-3}
KM_CORE=${KM_CORE:-1}
SIM_CORE=${SIM_CORE:-0}
work=$(mktemp -d)
sim_on=(taskset -c "$SIM_CORE")
# launch_sim, stop_sim
source tools/lib.sh
cleanup() {
  stop_sim
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -p keepmover -p keepsim >&2
km=./target/release/keepmover

# Runs keepmover pinned; leaves "wall cpu rss_kib" in $work/last.
timed() {
  /usr/bin/time -o "$work/time" -f "%e %U %S %M" taskset -c "$KM_CORE" "$@" >"$work/out" 2>&1 || true
  read -r wall user sys rss < <(tail -1 "$work/time")
  echo "$wall $(python3 -c "print(round($user + $sys, 2))") $rss" >"$work/last"
  grep -E "Summary|Validation|Dry run|Removed|Stopped|rror" "$work/out" | tail -3 | sed 's/^/    /' >&2
}

median() { python3 -c 'import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

if [[ " $PARTS " == *" filters "* ]]; then
  dir="$work/filters"
  launch_sim "$dir" --keepstores 3 --synthetic "$INDEX_BLOCKS" --synthetic-size 64 --synthetic-clusters 2
  # Every source hash, for -locators (and the synthetic index hashed before timing).
  python3 - "$dir/cluster.json" >"$work/all.txt" <<'EOF'
import json, sys, urllib.request
c = json.load(open(sys.argv[1]))["clusters"][0]
seen = set()
for k in c["keepstores"]:
    req = urllib.request.Request(k["url"] + "/index/", headers={"Authorization": "Bearer " + c["system_root_token"]})
    for line in urllib.request.urlopen(req).read().decode().splitlines():
        if line:
            seen.add(line.split(" ")[0])
print("\n".join(sorted(seen)))
EOF
  lines=$((INDEX_BLOCKS * 6))
  echo
  echo "filters, $((INDEX_BLOCKS * 3)) blocks a side ($lines index lines), median of $RUNS runs:"
  echo
  echo "| command | filter | wall s | CPU s | CPU / unfiltered | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|"
  for cmd in copy validate; do
    base=""
    for filter in "none" "-size 1..1MiB" "-mtime ..1h" "-locators $work/all.txt" "-size 1..1MiB -mtime ..1h -locators $work/all.txt"; do
      args=()
      [ "$filter" = none ] || read -r -a args <<<"$filter"
      walls=() cpus=() rss=0
      for _ in $(seq "$RUNS"); do
        if [ "$cmd" = copy ]; then
          timed "$km" -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -dry-run -progress log "${args[@]}"
        else
          timed "$km" validate -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -quiet "${args[@]}"
        fi
        read -r w c r <"$work/last"
        walls+=("$w") cpus+=("$c") rss=$r
      done
      wall=$(median "${walls[@]}") cpu=$(median "${cpus[@]}")
      [ -n "$base" ] || base=$cpu
      shown=${filter//$work\/all.txt/ALL.txt}
      python3 -c "print(f'| {\"$cmd\"} | \`$shown\` | {$wall:.2f} | {$cpu:.2f} | {$cpu / $base:.2f} | {$rss / 1024:.0f} |')"
    done
  done
  stop_sim
fi

if [[ " $PARTS " == *" move "* ]]; then
  gib=$(python3 -c "print($SIZE * $BLOCKS / 2**30)")
  echo
  echo "copy against move, $BLOCKS x $SIZE B ($gib GiB), -replications 1, fresh keepsim per run:"
  echo
  echo "| command | run | wall s | CPU s | CPU-s/GiB | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|"
  for cmd in copy move; do
    cpus=()
    for run in $(seq "$RUNS"); do
      dir="$work/$cmd-$run"
      launch_sim "$dir" --keepstores 3 --source-sizes "${SIZE}x${BLOCKS}" --source-replicas 1
      sub=()
      [ "$cmd" = copy ] || sub=(move)
      timed "$km" "${sub[@]}" -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -progress log
      stop_sim
      read -r w c r <"$work/last"
      cpus+=("$c")
      python3 -c "print(f'| $cmd | $run | {$w:.2f} | {$c:.2f} | {$c / $gib:.2f} | {$r / 1024:.0f} |')"
    done
    echo "| $cmd | **median** | | $(median "${cpus[@]}") | $(python3 -c "print(round($(median "${cpus[@]}") / $gib, 2))") | |"
  done
fi

if [[ " $PARTS " == *" bwlimit "* ]]; then
  echo
  echo "-bwlimit accuracy (rate = copied bytes / elapsed_s of -json; about 15 s per run):"
  echo
  echo "| -bwlimit | blocks | elapsed s | measured MiB/s | measured / limit |"
  echo "|---|---|---:|---:|---:|"
  for spec in "4MiB 1048576 60" "16MiB 1048576 240" "16MiB 67108864 4" "16MiB 65536 3840"; do
    read -r limit size count <<<"$spec"
    dir="$work/bw-$limit-$size"
    launch_sim "$dir" --keepstores 3 --source-sizes "${size}x${count}" --source-replicas 1 --digest-only
    timed "$km" -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 -progress log -bwlimit "$limit" -json "$work/bw.json"
    stop_sim
    python3 - "$work/bw.json" "$limit" "$size" "$count" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
limit = {"4MiB": 4 << 20, "16MiB": 16 << 20}[sys.argv[2]]
size, count = int(sys.argv[3]), int(sys.argv[4])
copied, secs = doc["totals"]["copied_bytes"], doc["elapsed_s"]
rate = copied / secs
label = f"{count} x {size >> 20} MiB" if size >= 1 << 20 else f"{count} x {size >> 10} KiB"
print(f"| {sys.argv[2]} | {label} | {secs:.2f} | {rate / 2**20:.2f} | {rate / limit:.3f} |")
EOF
  done
fi
