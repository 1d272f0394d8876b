# Shared by the end-to-end benchmark scripts (bench_e2e.sh, ab.sh): start and stop a keepsim
# with a synthetic source, and read its CPU time. The caller sets:
#   work          a scratch directory (keepsim's pid goes in $work/sim.pid)
#   sim_on        the command prefix that pins keepsim, e.g. (taskset -c 0), or ()
#   serving_flag  extra keepsim flags, e.g. (--bench-serving --tls), or ()
#   LATENCY_MS    ms added to every keepstore response (0: none)

start_sim() { # BLOCKSPEC
  local dir="$work/sim-$RANDOM"
  mkdir -p "$dir"
  "${sim_on[@]}" ./target/release/keepsim --dir "$dir" --keepstores 3 --digest-only \
    "${serving_flag[@]}" --source-sizes "$1" --source-replicas 1 >"$dir.log" 2>&1 &
  echo $! >"$work/sim.pid"
  for _ in $(seq 600); do grep -q ready "$dir.log" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$dir.log" || { echo "keepsim did not start:" >&2; cat "$dir.log" >&2; exit 1; }
  if [ "$LATENCY_MS" != 0 ]; then
    python3 - "$dir/cluster.json" "$LATENCY_MS" <<'EOF'
import json, sys, urllib.request
doc = json.load(open(sys.argv[1]))
for cluster in doc["clusters"]:
    for ks in cluster["keepstores"]:
        req = urllib.request.Request(ks["url"] + "/_keepsim/faults", method="PUT",
            data=json.dumps({"delay_ms": int(sys.argv[2])}).encode(),
            headers={"Authorization": "Bearer " + cluster["system_root_token"]})
        urllib.request.urlopen(req).read()
EOF
  fi
  echo "$dir"
}

sim_ticks() { # utime + stime of keepsim, in clock ticks
  awk '{print $14 + $15}' "/proc/$(cat "$work/sim.pid")/stat"
}

stop_sim() {
  local pid
  pid=$(cat "$work/sim.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$work/sim.pid"
}

