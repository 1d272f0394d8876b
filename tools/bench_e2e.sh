#!/usr/bin/env bash
# End-to-end copy cost, side by side in one run against the same kind of simulated servers:
# keepmover on io_uring, keepmover on epoll, keepmover with scalar MD5 forced, and a copier
# written with the official Arvados Python SDK (tools/pysdk/copier.py: keep-rsync's
# algorithm with KeepClient.get/put in a thread pool). Each copier gets a fresh keepsim (its
# own process): a synthetic source (3 keepstores, one replica of each block) and a
# destination that keeps only digests (3 keepstores). Prints a Markdown table.
#
# What it measures is the copier, not the simulator:
# * With two or more cores, the copier runs on core 1 (`taskset`) and keepsim on core 0, so
#   CPU-s/GiB, µs/block and faults are the copier's alone.
# * SERVING=bench (the default here) starts keepsim with --bench-serving: source blocks
#   generated once into memory and served by reference, and PUT bodies NOT MD5-checked by
#   the destination. It is labelled in every row. SERVING=default generates blocks on the
#   fly and checks every PUT's MD5, as keepsim normally does.
# * LATENCY_MS=N adds N ms to every keepstore response (keepsim's delay_ms fault), closer to
#   a real network, where blocks in flight matter.
#
# Columns: wall time, throughput, CPU seconds (user+sys) and per GiB and per block, minor
# page faults per GiB, peak RSS, and for keepmover its MD5 kernels (share of bytes hashed by
# scalar code, and the mean lane occupancy of the SIMD kernels: lanes filled per call over
# the kernel's width, weighted by calls) from its -json summary. "keepsim busy" is the
# simulator's CPU time during the copy over the wall time: near 100% (of its one core) means
# the simulator, not the copier, set the pace.
#
#   tools/bench_e2e.sh                                # SCALE=1: 3 GiB of 64 MiB, 3 GiB of 1 MiB, 60000 x 4 KiB
#   SCALE=2 tools/bench_e2e.sh                        # twice as many blocks
#   COPIERS="uring epoll" WORKLOADS=64MiB tools/bench_e2e.sh
#   LATENCY_MS=5 SERVING=default WORKLOADS="1MiB 4KiB" tools/bench_e2e.sh
#   EXTRA="-concurrency 64" tools/bench_e2e.sh        # extra keepmover flags
#   TLS=1 COPIERS=uring tools/bench_e2e.sh            # keepstores serve HTTPS (keepsim --tls)
#   KEEPMOVER_BIN=/tmp/keepmover-old tools/bench_e2e.sh   # another keepmover build (A/B)
#
# TLS=1 starts keepsim with --tls: every keepstore serves HTTPS with a self-signed
# certificate, and the settings files keepsim writes say ARVADOS_API_HOST_INSECURE=true (its
# API server is HTTPS either way), so keepmover skips verification for both clusters. The
# python-sdk copier is not run over TLS (it reads cluster.json, not the settings files).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
COPIERS=${COPIERS:-"uring epoll uring-scalar-md5 python-sdk"}
WORKLOADS=${WORKLOADS:-"64MiB 1MiB 4KiB"}
SERVING=${SERVING:-bench}
LATENCY_MS=${LATENCY_MS:-0}
PY_THREADS=${PY_THREADS:-16}
PY_MAX_SMALL=${PY_MAX_SMALL:-20000}
EXTRA=${EXTRA:-}
TLS=${TLS:-0}
KEEPMOVER_BIN=${KEEPMOVER_BIN:-./target/release/keepmover}
work=$(mktemp -d)
# keepsim's pid, kept in a file: start_sim runs in a command substitution (a subshell).
cleanup() {
  stop_sim # from tools/lib.sh, sourced below
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(nproc)" -ge 2 ]; then
  sim_on=(taskset -c "${SIM_CPUS:-0}")
  copier_on=(taskset -c 1)
  pinning="copier on core 1, keepsim on core 0"
else
  sim_on=()
  copier_on=()
  pinning="one core: copier and keepsim share it (CPU figures include contention)"
fi

cargo build --release -p keepmover -p keepsim >&2
if ! .venv/bin/python -c "import arvados.keep" >/dev/null 2>&1; then
  python3 -m venv .venv >&2
  .venv/bin/pip install --quiet arvados-python-client >&2
fi

serving_flag=()
tls_label="plain HTTP"
if [ "$TLS" = 1 ]; then
  serving_flag+=(--tls)
  tls_label="HTTPS (keepsim --tls, ARVADOS_API_HOST_INSECURE=true)"
fi
serving_label="default serving (blocks generated on the fly, PUT MD5 checked)"
if [ "$SERVING" = bench ]; then
  serving_flag+=(--bench-serving)
  serving_label="BENCHMARK SERVING (keepsim --bench-serving: source from memory, PUT MD5 not checked)"
fi
echo "keepsim: $serving_label; $tls_label; latency ${LATENCY_MS} ms per response; $pinning; $(nproc) cores"
echo "openssl speed -evp md5 (one stream, the scalar MD5 ceiling): $(openssl speed -seconds 1 -evp md5 2>/dev/null | awk '/^md5/ {print $NF}') per s at 16 KiB"
echo

# start_sim, stop_sim, sim_ticks
source tools/lib.sh

echo "| workload | copier | blocks | wall s | MB/s | blocks/s | CPU s | CPU-s/GiB | CPU µs/block | minor faults/GiB | peak RSS MiB | MD5 scalar bytes | SIMD lane occupancy | keepsim busy |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for workload in "64MiB 67108864 $((48 * SCALE))" "1MiB 1048576 $((3072 * SCALE))" "4KiB 4096 $((60000 * SCALE))"; do
  read -r name size count <<<"$workload"
  case " $WORKLOADS " in *" $name "*) ;; *) continue ;; esac
  for copier in $COPIERS; do
    if [ "$copier" = python-sdk ] && [ "$TLS" = 1 ]; then continue; fi
    n=$count
    if [ "$copier" = python-sdk ] && [ "$size" -le 4096 ] && [ "$n" -gt "$PY_MAX_SMALL" ]; then n=$PY_MAX_SMALL; fi
    dir=$(start_sim "${size}x${n}") || exit 1
    timing="$work/time"
    json="$work/summary.json"
    rm -f "$json"
    ticks_before=$(sim_ticks)
    case $copier in
      uring | epoll | uring-scalar-md5)
        io=${copier%%-*}
        md5=$([ "$copier" = uring-scalar-md5 ] && echo scalar || echo "")
        # shellcheck disable=SC2086
        KEEPMOVER_MD5=$md5 "${copier_on[@]}" /usr/bin/time -o "$timing" -f "%e %U %S %M %R" \
          "$KEEPMOVER_BIN" -src "$dir/srcaa.conf" -dst "$dir/dstbb.conf" -replications 1 \
          -io "$io" -progress log -json "$json" $EXTRA >"$work/out" 2>&1 ||
          { echo "$copier failed:" >&2; tail -5 "$work/out" >&2; }
        ;;
      python-sdk)
        "${copier_on[@]}" /usr/bin/time -o "$timing" -f "%e %U %S %M %R" .venv/bin/python tools/pysdk/copier.py \
          --src "$dir/cluster.json:srcaa" --dst "$dir/cluster.json:dstbb" --threads "$PY_THREADS" --replicas 1 \
          >"$work/out" 2>&1 || { echo "$copier failed:" >&2; tail -5 "$work/out" >&2; }
        ;;
    esac
    sim_cpu=$(( $(sim_ticks) - ticks_before ))
    stop_sim
    rm -rf "$dir"
    read -r wall user sys rss faults <"$timing"
    python3 - "$name" "$copier" "$n" "$size" "$wall" "$user" "$sys" "$rss" "$faults" "$json" "$sim_cpu" "$(getconf CLK_TCK)" <<'EOF'
import json, os, sys
name, copier, blocks, size, wall, user, sys_, rss, faults, summary, sim_ticks, tck = sys.argv[1:]
sim_busy = int(sim_ticks) / int(tck) / float(wall)
blocks, size, wall, cpu = int(blocks), int(size), float(wall), float(user) + float(sys_)
total = blocks * size
gib = total / 2**30
scalar = occupancy = "–"
if os.path.exists(summary):
    kernels = json.load(open(summary)).get("md5_kernels", [])
    hashed = sum(k["bytes"] for k in kernels)
    simd = [k for k in kernels if k["kernel"] != "scalar"]
    calls = sum(k["calls"] for k in simd)
    if hashed:
        scalar = f"{sum(k['bytes'] for k in kernels if k['kernel'] == 'scalar') / hashed:.1%}"
    if calls:
        occupancy = f"{sum(k['lane_occupancy'] * k['calls'] for k in simd) / calls:.2f}"
print(f"| {name} | {copier} | {blocks} | {wall:.2f} | {total / 1e6 / wall:.0f} | {blocks / wall:.0f} | {cpu:.2f} | {cpu / gib:.2f} | {cpu / blocks * 1e6:.1f} | {int(faults) / gib:.0f} | {int(rss) / 1024:.0f} | {scalar} | {occupancy} | {sim_busy:.0%} |")
EOF
  done
done
