#!/usr/bin/env bash
# Reproduces BENCHMARKS.md "Scale: a billion locators": keepmover's dry-run diff against
# keepsim's index-only clusters (synthetic locators, nothing stored) over loopback, keepsim
# pinned to core 0 and keepmover to core 1; then the same walk in-process at 10^9 locators
# (examples/index_scale.rs: keepsim's generator, no sockets); then the one-core parse, sort,
# merge and diff rate (benches/index_walk.rs).
#
#   tools/bench_scale.sh                  # 10^8 per side over sockets, 10^9 in-process, bench
#   N=10000000 INPROCESS_N=0 BENCH=0 tools/bench_scale.sh   # a quick 10^7 only
#
# N: source locators over sockets (the destination lists 95% as many, 90% of the source's
# in common, 2 replicas on 3 keepstores); SHARED=1 also runs it with one shared mount behind
# the 3 keepstores (every locator once); INPROCESS_N: locators for the in-process walk
# (0 to skip); BENCH=0 skips criterion. Needs /usr/bin/time, taskset, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000000}
SHARED=${SHARED:-1}
INPROCESS_N=${INPROCESS_N:-1000000000}
BENCH=${BENCH:-1}
OUT=${OUT:-$(mktemp -d /tmp/bench_scale.XXXXXX)}
mkdir -p "$OUT"

# One cargo invocation: built separately, the example rebuilds the library.
cargo build --release -p keepmover -p keepsim --bins --example index_scale
KEEPMOVER=target/release/keepmover
KEEPSIM=target/release/keepsim

keepsim_pid=
cleanup() {
  if [ -n "$keepsim_pid" ]; then kill "$keepsim_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# socket_run NAME EXTRA_KEEPSIM_FLAGS...
socket_run() {
  local name=$1
  shift
  local dir="$OUT/$name"
  mkdir -p "$dir"
  local dst=$((N / 20 * 19))
  taskset -c 0 "$KEEPSIM" --dir "$dir/sim" --keepstores 3 \
    --index-only-source "$N" --index-only-destination "$dst" \
    --index-only-overlap 0.9 --index-only-replicas 2 "$@" >"$dir/keepsim.log" 2>&1 &
  keepsim_pid=$!
  for _ in $(seq 1 600); do
    grep -q "ready" "$dir/keepsim.log" 2>/dev/null && break
    kill -0 "$keepsim_pid" 2>/dev/null || { cat "$dir/keepsim.log"; exit 1; }
    sleep 0.5
  done
  local ids
  ids=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(' '.join(c['id'] for c in d['clusters']))" "$dir/sim/cluster.json")
  set -- $ids
  /usr/bin/time -v taskset -c 1 "$KEEPMOVER" -src "$dir/sim/$1.conf" -dst "$dir/sim/$2.conf" \
    -dry-run -progress log -json "$dir/summary.json" >"$dir/keepmover.out" 2>"$dir/keepmover.err"
  python3 - "$dir" "$name" <<'EOF'
import json, re, subprocess, sys
d, name = sys.argv[1], sys.argv[2]
sim = json.load(open(f"{d}/sim/cluster.json"))
summary = json.load(open(f"{d}/summary.json"))
err = open(f"{d}/keepmover.err").read()
def field(label):
    m = re.search(re.escape(label) + r"\s*:\s*(\S+)", err)
    return m.group(1) if m else "?"
served = once = 0
for c in sim["clusters"]:
    once += c["index_only"]["index_bytes_once"]
    for k in c["keepstores"]:
        stats = subprocess.run(["curl", "-sf", "-H", f"Authorization: Bearer {c['system_root_token']}",
                                f"{k['url']}/_keepsim/stats"], capture_output=True, check=True).stdout
        served += json.loads(stats)["index_bytes"]
exp = sim["index_only_expected"]["diff"]
plan = summary["plan"]
exact = (plan["src_blocks"], plan["dst_blocks"], plan["to_copy_blocks"], plan["present_blocks"]) == \
        (exp["source_locators"], exp["destination_locators"], exp["source_only"], exp["common"])
lines = summary["totals"]["index_lines"]
wall = summary["elapsed_s"]
h, m_, s = (["0"] + field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"))[-3:]
elapsed = int(h) * 3600 + int(m_) * 60 + float(s)
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
locators = exp["source_locators"] + exp["destination_locators"]
print(f"{name}: diff {'exact' if exact else 'WRONG'} {plan}")
print(f"{name}: {lines} index lines, {locators} locators (both sides) in {elapsed:.1f}s wall "
      f"(run {wall:.1f}s): {lines/elapsed/1e6:.2f} M lines/s, {locators/elapsed/1e6:.2f} M locators/s")
print(f"{name}: keepmover CPU {cpu:.1f}s = {cpu/(lines/1e6):.3f} CPU-s per million lines, "
      f"{cpu/(locators/1e6):.3f} per million locators; peak RSS {int(field('Maximum resident set size (kbytes)'))//1024} MiB")
print(f"{name}: index bytes read {served} vs both indexes once {once}: {served/once:.4f}x")
EOF
  kill "$keepsim_pid"
  wait "$keepsim_pid" 2>/dev/null || true
  keepsim_pid=
}

echo "== dry-run diff over loopback, $N source locators (keepsim core 0, keepmover core 1)"
socket_run "sockets-$N"
if [ "$SHARED" = 1 ]; then
  echo "== the same with one shared mount behind the 3 keepstores (no local mounts)"
  socket_run "shared-$N" --mounts 0 --shared-mounts 1
fi

if [ "$INPROCESS_N" != 0 ]; then
  echo "== in-process walk, $INPROCESS_N source locators (generator core 0, walk core 1)"
  /usr/bin/time -v target/release/examples/index_scale "$INPROCESS_N" --gen-cpu 0 --walk-cpu 1 \
    2>"$OUT/inprocess.err" | tee "$OUT/inprocess.out"
  grep -E "index_scale:|Maximum resident|Elapsed|User time|System time" "$OUT/inprocess.err"
fi

if [ "$BENCH" = 1 ]; then
  echo "== one core: parse, sort, merge, diff"
  taskset -c 1 cargo bench --bench index_walk 2>&1 | grep -E "index_walk|time:|thrpt:"
fi
echo "outputs in $OUT"
