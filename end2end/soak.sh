#!/usr/bin/env bash
# Soak test: many agents on kept-alive connections against one Kiln, for minutes. Not run in CI.
#
# Starts Kiln on a free loopback port with a throwaway data directory, then runs
# `server/examples/soak.rs`: AGENTS simulated agents, each on its own kept-alive HTTP/1.1
# connection, each uploading a small folded profile every INTERVAL for DURATION. Reports the
# connections the agents opened and Kiln accepted (with Kiln keeping connections open, this
# stays at one per agent however long the run), errors, and p50/p99 ingest latency.
# Exits non-zero if any upload failed.
#
#   end2end/soak.sh                          # 200 agents, 10 minutes, debug build
#   AGENTS=500 DURATION=30m PROFILE=release end2end/soak.sh
#
# Environment:
#   AGENTS    simulated agents (default 200)
#   DURATION  how long they upload: 10m, 120s, … (default 10m)
#   INTERVAL  time between one agent's uploads (default 10s)
#   PROFILE   debug or release (default debug)
#   CARGO_TARGET_DIR  where cargo builds (default ./target)
#   KILN_LOG  Kiln's log filter (default warn); Kiln's log is printed if the run fails
set -euo pipefail

AGENTS=${AGENTS:-200}
DURATION=${DURATION:-10m}
INTERVAL=${INTERVAL:-10s}
PROFILE=${PROFILE:-debug}

cd "$(dirname "$0")/.."
case "$PROFILE" in
  debug) flags=() ;;
  release) flags=(--release) ;;
  *) echo "PROFILE must be debug or release" >&2; exit 2 ;;
esac
cargo build "${flags[@]}" -p kiln-server --bin kiln --example soak
bin_dir="${CARGO_TARGET_DIR:-target}/$PROFILE"

# Each agent holds a socket; leave room for Kiln's own files.
ulimit -n "$(( AGENTS * 2 + 256 ))" 2>/dev/null || true

work=$(mktemp -d)
log="$work/kiln.log"
NO_COLOR=1 KILN_LOG="${KILN_LOG:-warn,kiln_server=info}" \
  "$bin_dir/kiln" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$log" 2>&1 &
kiln_pid=$!
cleanup() {
  kill "$kiln_pid" 2>/dev/null || true
  wait "$kiln_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0 lets the kernel pick a free port; Kiln logs the one it got.
addr=""
for _ in $(seq 1 600); do
  addr=$(grep -o 'serving on http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 | sed 's|.*http://||' || true)
  [ -n "$addr" ] && break
  kill -0 "$kiln_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "Kiln did not start" >&2; cat "$log" >&2; exit 1; }
echo "Kiln on $addr (pid $kiln_pid, data in $work/data)" >&2

status=0
"$bin_dir/examples/soak" --addr "$addr" --agents "$AGENTS" --duration "$DURATION" --interval "$INTERVAL" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- Kiln's log" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
