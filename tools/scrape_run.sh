#!/usr/bin/env bash
# A real copy against keepsim, watched through -listen: scrapes /metrics every second into a
# file while steering the job with `keepmover ctl` (a 40 MiB/s bandwidth limit, a lower concurrency, a
# pause), then draws the dashboard's panels from the scrapes (examples/dashboard_svg.rs).
#
#   tools/scrape_run.sh                       # 3 x 1100 blocks of 1 MiB (3.2 GiB) -> docs/dashboard.svg
#   BLOCKS=500 OUT=/tmp/d.svg tools/scrape_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-1100}          # per source keepstore
SIZE=${SIZE:-1048576}
OUT=${OUT:-docs/dashboard.svg}
work=$(mktemp -d)
sim_on=() # keepsim not pinned
# launch_sim, warm_sim, stop_sim
source tools/lib.sh
cleanup() { stop_sim; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -p keepmover -p keepsim --example dashboard_svg >&2
launch_sim "$work/sim" --keepstores 3 --synthetic "$BLOCKS" --synthetic-size "$SIZE"
# The first index listing's one-time costs are paid before the run.
warm_sim "$work/sim"

export XDG_RUNTIME_DIR="$work/run"
mkdir -p "$XDG_RUNTIME_DIR"
./target/release/keepmover -src "$work/sim/srcaa.conf" -dst "$work/sim/dstbb.conf" -replications 1 \
  -progress log -prefix-length 2 -checkpoint "$work/ckpt" -listen 127.0.0.1:0 -listen-linger 3s \
  >"$work/km.log" 2>&1 &
km=$!
for _ in $(seq 100); do ls "$XDG_RUNTIME_DIR"/keepmover/*.json >/dev/null 2>&1 && break; sleep 0.05; done
addr=$(python3 -c "import json,glob;print(json.load(open(glob.glob('$XDG_RUNTIME_DIR/keepmover/*.json')[0]))['address'])")
echo "job at $addr" >&2

scrapes="$work/scrapes.txt"
(
  while kill -0 "$km" 2>/dev/null; do
    body=$(curl -s "http://$addr/metrics" || true)
    [ -n "$body" ] && printf '# SCRAPE %s\n%s\n' "$(date +%s.%N)" "$body" >>"$scrapes"
    sleep 1
  done
) &
scraper=$!

ctl() { ./target/release/keepmover ctl "$addr" "$@" >&2 || true; }
sleep 4;  ctl bwlimit 40MiB
sleep 5;  ctl bwlimit 0; ctl concurrency 2
sleep 4;  ctl concurrency 0; ctl pause
sleep 1;  ./target/release/keepmover status "$addr" >&2 || true
sleep 2;  ctl resume
wait "$km" || true
wait "$scraper" || true
tail -2 "$work/km.log" >&2
cp "$scrapes" "${SCRAPES_OUT:-/dev/null}" 2>/dev/null || true
./target/release/examples/dashboard_svg "$scrapes" "$OUT"
