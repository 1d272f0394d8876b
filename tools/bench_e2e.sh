#!/usr/bin/env bash
# End-to-end copy throughput, side by side in one run against the same simulated servers:
# keepmover on io_uring, keepmover on epoll, keepmover with scalar MD5 forced, and a copier
# written with the official Arvados Python SDK (tools/pysdk/copier.py: keep-rsync's
# algorithm with KeepClient.get/put in a thread pool). Each copier gets a fresh keepsim (its
# own process): a synthetic source (blocks generated on demand, signatures enforced) and an
# empty in-memory destination. Prints a Markdown table.
#
#   tools/bench_e2e.sh                 # SCALE=1: 1 GiB of 64 MiB blocks, 512 MiB of 1 MiB, 20000 x 4 KiB
#   SCALE=2 tools/bench_e2e.sh         # twice as many blocks
#   COPIERS="uring epoll" WORKLOADS=64MiB tools/bench_e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
COPIERS=${COPIERS:-"uring epoll uring-scalar-md5 python-sdk"}
PY_MAX_SMALL=${PY_MAX_SMALL:-20000}
WORKLOADS=${WORKLOADS:-"64MiB 1MiB 4KiB"}
work=$(mktemp -d)
trap 'pkill -f "keepsim --dir $work" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p keepmover -p keepsim >&2
if ! .venv/bin/python -c "import arvados.keep" >/dev/null 2>&1; then
  python3 -m venv .venv >&2
  .venv/bin/pip install --quiet arvados-python-client >&2
fi

echo "openssl speed -evp md5 (single stream, the scalar MD5 ceiling):"
openssl speed -seconds 2 -evp md5 2>/dev/null | grep -E "^md5" | awk '{print "  16 KiB blocks: " $NF}'
echo

start_sim() { # count-per-keepstore size
  local dir="$work/sim-$RANDOM"
  ./target/release/keepsim --dir "$dir" --keepstores 3 --synthetic "$1" --synthetic-size "$2" >"$dir.log" 2>&1 &
  for _ in $(seq 100); do grep -q ready "$dir.log" 2>/dev/null && break; sleep 0.1; done
  # The synthetic source hashes all its blocks on the first index request; pay that here.
  local token
  token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clusters'][0]['system_root_token'])" "$dir/cluster.json")
  for url in $(python3 -c "import json,sys;[print(k['url']) for k in json.load(open(sys.argv[1]))['clusters'][0]['keepstores']]" "$dir/cluster.json"); do
    curl -s -H "Authorization: Bearer $token" "$url/index" >/dev/null
  done
  echo "$dir"
}

echo "| workload | copier | blocks | wall s | MB/s | blocks/s | CPU s | CPU-s/GiB | peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for workload in "64MiB 67108864 $((16 * SCALE))" "1MiB 1048576 $((512 * SCALE))" "4KiB 4096 $((20000 * SCALE))"; do
  read -r name size count <<<"$workload"
  case " $WORKLOADS " in *" $name "*) ;; *) continue ;; esac
  for copier in $COPIERS; do
    n=$count
    if [ "$copier" = python-sdk ] && [ "$n" -gt "$PY_MAX_SMALL" ]; then n=$PY_MAX_SMALL; fi
    per_store=$(( (n + 2) / 3 ))
    dir=$(start_sim "$per_store" "$size")
    blocks=$((per_store * 3))
    timing="$work/time"
    case $copier in
      uring | epoll | uring-scalar-md5)
        io=${copier%%-*}
        md5=$([ "$copier" = uring-scalar-md5 ] && echo scalar || echo "")
        KEEPMOVER_MD5=$md5 /usr/bin/time -o "$timing" -f "%e %U %S %M" \
          ./target/release/keepmover -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 \
          -io "$io" -progress log >"$work/out" 2>&1 || { echo "$copier failed:" >&2; tail -5 "$work/out" >&2; }
        ;;
      python-sdk)
        /usr/bin/time -o "$timing" -f "%e %U %S %M" .venv/bin/python tools/pysdk/copier.py \
          --src "$dir/cluster.json:srcaa" --dst "$dir/cluster.json:dstbb" --threads 8 --replicas 1 \
          >"$work/out" 2>&1 || { echo "$copier failed:" >&2; tail -5 "$work/out" >&2; }
        ;;
    esac
    pkill -f "keepsim --dir $dir" 2>/dev/null || true
    read -r wall user sys rss <"$timing"
    python3 - "$name" "$copier" "$blocks" "$size" "$wall" "$user" "$sys" "$rss" <<'EOF'
import sys
name, copier, blocks, size, wall, user, sys_, rss = sys.argv[1:]
blocks, size, wall, cpu = int(blocks), int(size), float(wall), float(user) + float(sys_)
total = blocks * size
gib = total / 2**30
print(f"| {name} | {copier} | {blocks} | {wall:.2f} | {total / 1e6 / wall:.0f} | {blocks / wall:.0f} | {cpu:.2f} | {cpu / gib:.2f} | {int(rss) / 1024:.0f} |")
EOF
  done
done
