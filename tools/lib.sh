# Shared by the benchmark scripts: start a keepsim and wait until it is ready, warm its
# synthetic index, stop it, and read its CPU time.
#   launch_sim DIR ARGS...  keepsim --dir DIR ARGS... (log in DIR.log), pinned with sim_on;
#                           returns once its log says ready, exits 1 (log on stderr) if not
#                           ready within 60 s or if it dies
#   warm_sim DIR            GET /index from every keepstore of every cluster in
#                           DIR/cluster.json, so the first listing's one-time costs
#                           (keepsim hashes its synthetic blocks at start-up; the first
#                           index builds and touches its listing) are paid before anything
#                           is timed
#   start_sim BLOCKSPEC     bench_e2e.sh's and ab.sh's keepsim (3 keepstores a cluster, a
#                           synthetic source of BLOCKSPEC, one replica, a digest-only
#                           destination, serving_flag, LATENCY_MS); echoes its directory
#   sim_ticks               utime + stime of the running keepsim, in clock ticks
#   pin_cores               sets sim_on=(taskset -c 0) and copier_on=(taskset -c 1) on a
#                           machine of 2 cores or more (keepsim and the copier apart), else
#                           both to ()
#   bench_setup             the start of a one-copier benchmark: a scratch directory in
#                           $work, removed (and keepsim stopped) on exit; bench serving, no
#                           added latency; pin_cores
#   stop_sim                stops the running keepsim; does nothing if none runs (safe in an
#                           EXIT trap)
# One keepsim at a time: its pid goes in $work/sim.pid, a file rather than a variable because
# start_sim (and so launch_sim) may run in a command substitution (a subshell).
# The caller sets:
#   work          a scratch directory (all functions)
#   sim_on        the command prefix that pins keepsim, e.g. (taskset -c 0), or () (launch_sim)
#   serving_flag  extra keepsim flags, e.g. (--bench-serving --tls), or () (start_sim)
#   LATENCY_MS    ms added to every keepstore response, 0 for none (start_sim)

launch_sim() { # DIR KEEPSIM_ARGS...
  local dir=$1 pid
  shift
  mkdir -p "$dir"
  "${sim_on[@]}" ./target/release/keepsim --dir "$dir" "$@" >"$dir.log" 2>&1 &
  pid=$!
  echo "$pid" >"$work/sim.pid"
  for _ in $(seq 600); do
    grep -q 'keepsim: ready' "$dir.log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q 'keepsim: ready' "$dir.log" 2>/dev/null && return 0
  echo "keepsim did not start:" >&2
  cat "$dir.log" >&2
  stop_sim
  exit 1
}

warm_sim() { # DIR
  python3 - "$1/cluster.json" <<'EOF'
import json, ssl, sys, urllib.request
# keepsim --tls serves a self-signed certificate.
insecure = ssl._create_unverified_context()
for cluster in json.load(open(sys.argv[1]))["clusters"]:
    for ks in cluster["keepstores"]:
        req = urllib.request.Request(ks["url"] + "/index",
            headers={"Authorization": "Bearer " + cluster["system_root_token"]})
        urllib.request.urlopen(req, context=insecure).read()
EOF
}

start_sim() { # BLOCKSPEC
  local dir="$work/sim-$RANDOM"
  launch_sim "$dir" --keepstores 3 --digest-only "${serving_flag[@]}" \
    --source-sizes "$1" --source-replicas 1
  if [ "$LATENCY_MS" != 0 ] && ! python3 - "$dir/cluster.json" "$LATENCY_MS" <<'EOF'
import json, ssl, sys, urllib.request
# keepsim --tls serves a self-signed certificate.
insecure = ssl._create_unverified_context()
doc = json.load(open(sys.argv[1]))
for cluster in doc["clusters"]:
    for ks in cluster["keepstores"]:
        req = urllib.request.Request(ks["url"] + "/_keepsim/faults", method="PUT",
            data=json.dumps({"delay_ms": int(sys.argv[2])}).encode(),
            headers={"Authorization": "Bearer " + cluster["system_root_token"]})
        urllib.request.urlopen(req, context=insecure).read()
EOF
  then
    echo "could not set keepsim's latency" >&2
    stop_sim
    exit 1
  fi
  echo "$dir"
}

sim_ticks() { # utime + stime of keepsim, in clock ticks
  awk '{print $14 + $15}' "/proc/$(cat "$work/sim.pid")/stat"
}

stop_sim() {
  [ -f "$work/sim.pid" ] || return 0
  local pid
  pid=$(cat "$work/sim.pid")
  kill "$pid" 2>/dev/null || true
  # Reaps it if it is this shell's child; a keepsim started in a subshell is not (127).
  wait "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$work/sim.pid"
}

# shellcheck disable=SC2034 # sim_on is read by launch_sim, copier_on by the caller
pin_cores() {
  sim_on=() copier_on=()
  if [ "$(nproc)" -ge 2 ]; then sim_on=(taskset -c 0) copier_on=(taskset -c 1); fi
}

# shellcheck disable=SC2034 # serving_flag and LATENCY_MS are read by start_sim
bench_setup() {
  work=$(mktemp -d)
  trap 'stop_sim; rm -rf "$work"' EXIT
  serving_flag=(--bench-serving)
  LATENCY_MS=0
  pin_cores
}
