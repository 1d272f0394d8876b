#!/usr/bin/env bash
# What -listen costs and how fast it answers while a copy saturates the machine.
#  1. CPU-s/GiB of a pinned copy (keepmover on CPU 1, keepsim on CPU 0), RUNS times without
#     -listen and RUNS times with -listen while /metrics is scraped every second; medians.
#  2. Latency of GET /status, GET /metrics and POST /control (a bwlimit 0, which changes
#     nothing) during one more pinned copy with -listen: up to REQS requests each, one
#     Python client on a kept-alive connection, not pinned (both cores are busy: keepsim on
#     0, keepmover on 1); p50, p99, max. ONLY_LATENCY=1 runs this part alone.
# Prints Markdown. Each copy gets a fresh keepsim (synthetic source, in-memory destination).
#
#   tools/bench_listen.sh                     # 3 x 700 blocks of 1 MiB (2.1 GiB), RUNS=3
#   BLOCKS=1400 RUNS=5 tools/bench_listen.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BLOCKS=${BLOCKS:-700}
SIZE=${SIZE:-1048576}
RUNS=${RUNS:-3}
REQS=${REQS:-200}
work=$(mktemp -d)
sim_on=(taskset -c 0)
# launch_sim, warm_sim, stop_sim
source tools/lib.sh
cleanup() { stop_sim; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release -p keepmover -p keepsim >&2

# Runs one pinned copy; $1 = with|without; $2 = what to do with the address meanwhile.
copy() {
  # A fresh keepsim, warmed (copy runs in a subshell: the pid file reaches the EXIT trap).
  sim_dir="$work/sim-$RANDOM"
  launch_sim "$sim_dir" --keepstores 3 --synthetic "$BLOCKS" --synthetic-size "$SIZE"
  warm_sim "$sim_dir"
  export XDG_RUNTIME_DIR="$work/run-$RANDOM"
  mkdir -p "$XDG_RUNTIME_DIR"
  local listen=()
  [ "$1" = with ] && listen=(-listen 127.0.0.1:0)
  taskset -c 1 /usr/bin/time -o "$work/time" -f "%e %U %S" ./target/release/keepmover \
    -src "$sim_dir/srcaa.conf" -dst "$sim_dir/dstbb.conf" -replications 1 -progress log "${listen[@]}" \
    >"$work/km.log" 2>&1 &
  local km=$!
  if [ "$1" = with ]; then
    for _ in $(seq 200); do ls "$XDG_RUNTIME_DIR"/keepmover/*.json >/dev/null 2>&1 && break; sleep 0.02; done
    addr=$(python3 -c "import json,glob;print(json.load(open(glob.glob('$XDG_RUNTIME_DIR/keepmover/*.json')[0]))['address'])")
    "$2" "$km"
  fi
  wait "$km" || { echo "copy failed:" >&2; tail -3 "$work/km.log" >&2; }
  stop_sim
  read -r wall user sys <"$work/time"
  python3 -c "import sys; w,u,s=map(float,sys.argv[1:4]); g=$BLOCKS*3*$SIZE/2**30; print(f'{w:.2f} {u+s:.2f} {(u+s)/g:.3f}')" "$wall" "$user" "$sys"
}

scrape_every_second() {
  while kill -0 "$1" 2>/dev/null; do curl -s -o /dev/null "http://$addr/metrics" || true; sleep 1; done
}

latency() {
  # One client process (not pinned) on one kept-alive connection, as a scraper would be:
  # requests in turn at 20 a second, each timed from send to the last byte.
  python3 - "$addr" "$REQS" "$1" >"$work/lat" <<'PY'
import http.client, os, sys, time
addr, reqs, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = addr.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=10)
asks = [("status", "GET", "/status", None), ("metrics", "GET", "/metrics", None),
        ("control", "POST", "/control", '{"action":"bwlimit","value":0}')]
for i in range(reqs):
    if not os.path.exists(f"/proc/{pid}"):
        break
    for name, method, path, body in asks:
        t = time.perf_counter()
        try:
            conn.request(method, path, body=body)
            conn.getresponse().read()
        except Exception:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            continue
        print(name, time.perf_counter() - t)
    time.sleep(0.05)
PY
}

if [ -z "${ONLY_LATENCY:-}" ]; then
echo "| copy | run | wall s | CPU s | CPU-s/GiB |"
echo "|---|---:|---:|---:|---:|"
for mode in without with; do
  for run in $(seq "$RUNS"); do
    read -r wall cpu per < <(copy "$mode" scrape_every_second)
    echo "| $mode -listen | $run | $wall | $cpu | $per |"
    echo "$per" >>"$work/per-$mode"
  done
done
for mode in without with; do
  echo "median CPU-s/GiB $mode -listen: $(sort -n "$work/per-$mode" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
echo
fi
read -r wall cpu per < <(copy with latency)
echo "latency during a copy ($wall s, $per CPU-s/GiB; requests while it ran):"
echo
echo "| endpoint | requests | p50 ms | p99 ms | max ms |"
echo "|---|---:|---:|---:|---:|"
python3 - "$work/lat" <<'PY'
import sys, collections
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, t = line.split()
    by[name].append(float(t) * 1000)
for name in ("status", "metrics", "control"):
    v = sorted(by[name])
    if not v:
        continue
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print(f"| {name} | {len(v)} | {q(0.5):.2f} | {q(0.99):.2f} | {v[-1]:.2f} |")
PY
