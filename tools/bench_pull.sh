#!/usr/bin/env bash
# Pull mode against copy mode, side by side against the same kind of simulated clusters:
# a synthetic source (blocks generated on demand) and an empty in-memory destination whose
# keepstores share the source's signing key (keepsim --shared-signing-key), so they can pull.
# Each row is a fresh keepsim process, warmed (every index listed once) before timing.
# `perf stat` measures keepmover's process only (task-clock = its CPU, user + sys); the
# keepstores' work (the pulls themselves, or serving and storing the copy) is not in it.
# Prints a Markdown table.
#
#   tools/bench_pull.sh                                  # 2048 x 1 MiB, 2/4/8 keepstores, pull and copy
#   KEEPSTORES=4 TOTAL=10000 BLOCK=65536 tools/bench_pull.sh
#   MODES=pull REPLICAS=1 tools/bench_pull.sh
#   AGAIN=1 MODES=pull tools/bench_pull.sh             # also the same pull again (nothing left):
#                                                      # keepmover's fixed cost (start-up, walk)
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCK=${BLOCK:-1048576}
TOTAL=${TOTAL:-2048}
KEEPSTORES=${KEEPSTORES:-"2 4 8"}
MODES=${MODES:-"pull copy"}
REPLICAS=${REPLICAS:-2}
EXTRA=${EXTRA:-}
AGAIN=${AGAIN:-}
work=$(mktemp -d)
sim_on=() # keepsim not pinned
# launch_sim, warm_sim, stop_sim
source tools/lib.sh
cleanup() {
  stop_sim
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -p keepmover -p keepsim >&2

echo "| keepstores/cluster | mode | blocks | GiB | wall s | run s (plan to confirmation) | MB/s | keepmover CPU s | CPU-ms/GiB | pulled | fallback | lists |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $KEEPSTORES; do
  per=$(( (TOTAL + n - 1) / n ))
  for mode in $MODES; do
    dir="$work/sim-$RANDOM"
    launch_sim "$dir" --keepstores "$n" --synthetic "$per" --synthetic-size "$BLOCK" --shared-signing-key
    warm_sim "$dir"
    sub=$([ "$mode" = pull ] && echo pull || echo "")
    # shellcheck disable=SC2086
    perf stat -x, -e task-clock -o "$work/perf" -- /usr/bin/time -o "$work/time" -f "%e" \
      ./target/release/keepmover $sub -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" \
      -replications "$REPLICAS" -progress log -json "$work/summary.json" $EXTRA \
      >"$work/out" 2>&1 || {
      echo "| $n | $mode | FAILED: $(tail -1 "$work/out" | cut -c1-200) |"
      tail -5 "$work/out" >&2
      stop_sim
      continue
    }
    if [ -n "$AGAIN" ]; then
      # shellcheck disable=SC2086
      perf stat -x, -e task-clock -o "$work/perf-again" -- ./target/release/keepmover $sub \
        -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications "$REPLICAS" -progress log \
        $EXTRA >/dev/null 2>&1 || true
      again_ms=$(grep task-clock "$work/perf-again" | cut -d, -f1)
      echo "<!-- $mode again, nothing left: keepmover CPU ${again_ms} ms -->"
    fi
    stop_sim
    wall=$(cat "$work/time")
    python3 - "$n" "$mode" "$BLOCK" "$wall" "$work/perf" "$work/summary.json" <<'EOF'
import json, sys
n, mode, size, wall, perf, summary = sys.argv[1:]
size, wall = int(size), float(wall)
cpu_ms = next(float(l.split(",")[0]) for l in open(perf) if "task-clock" in l)
s = json.load(open(summary))
t = s["totals"]
blocks = t["copied_blocks"]
gib = blocks * size / 2**30
print(f"| {n} | {mode} | {blocks} | {gib:.2f} | {wall:.2f} | {s['elapsed_s']:.2f} | {blocks * size / 1e6 / s['elapsed_s']:.0f} "
      f"| {cpu_ms / 1000:.3f} | {cpu_ms / max(gib, 1e-9):.0f} | {t['pulled_blocks']} | {t['fallback_blocks']} | {t['pull_lists']} |")
EOF
  done
done
