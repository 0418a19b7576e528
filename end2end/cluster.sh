#!/usr/bin/env bash
# Cluster run: three Kiln servers on a three-node NATS cluster (R=3 streams) and one s3s-fs
# bucket, all on loopback, behind a round-robin TCP proxy, with simulated agents uploading
# real agent bodies. During the run one NATS node and one Kiln server are killed (SIGKILL);
# the NATS node is started again, the Kiln server is not. At the end every acknowledged upload
# must be counted exactly once by every surviving server. Then (MODE=both, the default) the
# same load against one Kiln server without --cluster, for CPU per upload in both modes.
# Not run in CI.
#
#   end2end/cluster.sh                                              # 50 agents, 2 minutes, debug build
#   AGENTS=600 INTERVAL=10 DURATION=10m PROFILE=release end2end/cluster.sh
#
# Agents (end2end/cluster_load.py): each uploads every INTERVAL seconds, on a new connection
# through the proxy (end2end/rr_proxy.py: round-robin per connection, skipping a backend that
# refuses the connection, no health checks), the folded body a released Rust agent sent
# (server/tests/data/agents/rust-v05-folded, gzip) plus one line unique to the upload, with
# an Idempotency-Key; a failed attempt is retried through the proxy with the same key, up to
# 10 times, as `kiln upload` retries. An upload is acknowledged when one attempt answered 200.
#
# Timeline (fractions of DURATION): 1/4 NATS node 2 killed, 1/2 Kiln server 3 killed (it
# holds some of the partition leases, as every server does; KILL=N to kill server N instead),
# 3/4 NATS node 2 started again.
#
# Prints, per mode: uploads acknowledged, attempts that failed (and their statuses), ingest
# latency p50/p99 (every attempt), query latency p50/p99 (a merge of everything uploaded,
# through the proxy every 2 s), freshness lag p50/p99 (an upload on one live server until
# another live server's query shows it; in single mode the same server), Kiln's CPU per
# acknowledged upload (and NATS's), the load average, and whether anything acknowledged is
# missing or counted twice. Exits non-zero if so.
#
# Environment:
#   AGENTS    simulated agents (default 50)
#   DURATION  seconds or Nm (default 2m)
#   INTERVAL  seconds between one agent's uploads (default 1)
#   MODE      cluster, single or both (default both)
#   PROFILE   debug or release (default debug); KILN to use a built binary instead
#   BASE      first loopback port used (default 24000; the run takes BASE … BASE+400)
#   KILL      the Kiln server killed: 1, 2 or 3 (default 3)
#   KEEP=1    keep the work directory (logs, latencies) instead of deleting it
set -euo pipefail
export LC_ALL=C

AGENTS=${AGENTS:-50}
DURATION=${DURATION:-2m}
INTERVAL=${INTERVAL:-1}
MODE=${MODE:-both}
PROFILE=${PROFILE:-debug}
BASE=${BASE:-24000}

case "$DURATION" in
  *m) duration=$(( ${DURATION%m} * 60 )) ;;
  *s) duration=${DURATION%s} ;;
  *) duration=$DURATION ;;
esac

cd "$(dirname "$0")/.."
if [ -z "${KILN:-}" ]; then
  case "$PROFILE" in
    debug) cargo build -p kiln-server --bin kiln ;;
    release) cargo build --release -p kiln-server --bin kiln ;;
    *) echo "PROFILE must be debug or release" >&2; exit 2 ;;
  esac
  KILN="${CARGO_TARGET_DIR:-target}/$PROFILE/kiln"
fi
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
S3S=$(command -v s3s-fs) || { echo "s3s-fs is not on PATH (make s3s-fs)" >&2; exit 2; }
[ -x "$NATS_SERVER" ] || { echo "nats-server is not installed (make nats-server)" >&2; exit 2; }
BODIES=server/tests/data/agents/rust-v05-folded/bodies

ulimit -n "$(( AGENTS * 4 + 1024 ))" 2>/dev/null || true
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)

# --- The bucket (both modes, each under its own prefix).
mkdir -p "$work/s3/kiln"
s3_port=$(( BASE + 10 ))
"$S3S" --host 127.0.0.1 --port "$s3_port" --access-key kilnkey --secret-key kilnsecret "$work/s3" >"$work/s3.log" 2>&1 &
pids+=("$!")

# kiln_start I PREFIX [ARGS…]: Kiln server I on port BASE+80+I.
declare -A kiln_pid
kiln_start() {
  local i=$1 prefix=$2
  shift 2
  NO_COLOR=1 KILN_LOG="${KILN_LOG:-warn,kiln_server=info}" "$KILN" serve --listen "127.0.0.1:$(( BASE + 80 + i ))" \
    --data-dir "$work/$prefix$i" --storage "s3://kiln/$prefix" --s3-endpoint "http://127.0.0.1:$s3_port" \
    --s3-region us-east-1 --s3-access-key kilnkey --s3-secret-key kilnsecret \
    --block-duration 15s --block-refresh 5s "$@" >"$work/$prefix$i.log" 2>&1 &
  kiln_pid[$i]=$!
  pids+=("$!")
}
kiln_ready() {
  local i=$1 prefix=$2 server="127.0.0.1:$(( BASE + 80 + $1 ))"
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://$server/readyz" && return 0
    kill -0 "${kiln_pid[$i]}" 2>/dev/null || { tail -n 30 "$work/$prefix$i.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "Kiln $i not ready" >&2; tail -n 30 "$work/$prefix$i.log" >&2; exit 1
}

# load MODE SERVERS…: proxy on BASE+1 in front of SERVERS, the agents through it.
load() {
  local mode=$1
  shift
  python3 end2end/rr_proxy.py --listen "127.0.0.1:$(( BASE + 1 ))" "$@" >"$work/proxy-$mode.log" 2>&1 &
  proxy_pid=$!
  pids+=("$!")
  printf '%s\n' "$@" >"$work/alive"
  sleep 1
  python3 end2end/cluster_load.py run --proxy "127.0.0.1:$(( BASE + 1 ))" --alive "$work/alive" \
    --agents "$AGENTS" --interval "$INTERVAL" --duration "$duration" --bodies "$BODIES" --out "$work/$mode" &
  load_pid=$!
  pids+=("$!")
}

status=0
verify() {
  local mode=$1
  shift
  for server in "$@"; do
    python3 end2end/cluster_load.py verify --server "$server" --out "$work/$mode" --deadline 120 || status=1
  done
}

# --- Cluster mode.
if [ "$MODE" = cluster ] || [ "$MODE" = both ]; then
  nats_port() { echo $(( BASE + 222 + $1 )); }
  route_port() { echo $(( BASE + 322 + $1 )); }
  routes="nats://127.0.0.1:$(route_port 1),nats://127.0.0.1:$(route_port 2),nats://127.0.0.1:$(route_port 3)"
  declare -A nats_pid
  start_nats() {
    local i=$1
    mkdir -p "$work/nats$i"
    "$NATS_SERVER" -js -a 127.0.0.1 -p "$(nats_port "$i")" -sd "$work/nats$i" -n "n$i" \
      --cluster_name kiln --cluster "nats://127.0.0.1:$(route_port "$i")" --routes "$routes" \
      >>"$work/nats$i.log" 2>&1 &
    nats_pid[$i]=$!
    pids+=("$!")
  }
  for i in 1 2 3; do start_nats "$i"; done
  cluster_urls="nats://127.0.0.1:$(nats_port 1),nats://127.0.0.1:$(nats_port 2),nats://127.0.0.1:$(nats_port 3)"
  # The cluster's JetStream needs a moment to elect leaders; Kiln waits.
  servers=()
  for i in 1 2 3; do
    kiln_start "$i" c --cluster "$cluster_urls" --cluster-replicas 3
    servers+=("127.0.0.1:$(( BASE + 80 + i ))")
  done
  for i in 1 2 3; do kiln_ready "$i" c; done
  log "cluster: NATS on $cluster_urls; Kiln on ${servers[*]}; $AGENTS agents every ${INTERVAL}s for ${duration}s"
  load cluster "${servers[@]}"

  sleep $(( duration / 4 ))
  log "killing NATS node 2"
  nats_killed_ticks=$(cpu_ticks "${nats_pid[2]}")
  kill -9 "${nats_pid[2]}"
  wait "${nats_pid[2]}" 2>/dev/null || true
  sleep $(( duration / 4 ))
  victim=${KILL:-3}
  log "killing Kiln server $victim"
  kiln_killed_ticks=$(cpu_ticks "${kiln_pid[$victim]}")
  grep -v "${servers[$((victim - 1))]}" "$work/alive" >"$work/alive.new"; mv "$work/alive.new" "$work/alive"
  kill -9 "${kiln_pid[$victim]}"
  wait "${kiln_pid[$victim]}" 2>/dev/null || true
  survivors=()
  for i in 1 2 3; do [ "$i" = "$victim" ] || survivors+=("$i"); done
  sleep $(( duration / 4 ))
  log "starting NATS node 2 again"
  start_nats 2
  load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
  log "waiting for the agents (they stop by themselves at the end of DURATION)"
  wait "$load_pid" || true
  kiln_ticks=$(( kiln_killed_ticks + $(cpu_ticks "${kiln_pid[${survivors[0]}]}") + $(cpu_ticks "${kiln_pid[${survivors[1]}]}") ))
  nats_ticks=$(( nats_killed_ticks + $(cpu_ticks "${nats_pid[1]}") + $(cpu_ticks "${nats_pid[2]}") + $(cpu_ticks "${nats_pid[3]}") ))
  acked=$(wc -l <"$work/cluster/acked")
  echo "== cluster mode: 3 Kiln servers, 3 NATS nodes (R=3), NATS node 2 and Kiln server $victim killed"
  python3 end2end/cluster_load.py report --out "$work/cluster"
  awk -v k="$kiln_ticks" -v n2="$nats_ticks" -v hz="$hz" -v a="$acked" 'BEGIN {
    if (a) printf "CPU per acknowledged upload: Kiln %.2f ms (3 servers together), NATS %.2f ms (3 nodes together)\n", k * 1000 / hz / a, n2 * 1000 / hz / a }'
  echo "load average at 3/4 of the run: $load_avg"
  verify cluster "${servers[$((survivors[0] - 1))]}" "${servers[$((survivors[1] - 1))]}"
  echo "blocks in the bucket: $(find "$work/s3/kiln/c/blocks" -name '*.meta.json' | wc -l)"
  for i in "${survivors[@]}"; do
    took=$(grep "now cuts a partition" "$work/c$i.log" | cut -c12-19 | tr '\n' ' ' || true)
    if [ -n "$took" ]; then echo "Kiln server $i took partition leases at (UTC): $took"; fi
  done
  echo "blocks by the server that cut them: $(grep -ho '"cut_by": "[0-9a-f]*"' "$work"/s3/kiln/c/blocks/cluster/*.meta.json | sort | uniq -c | awk '{printf "%s ", $1}')"
  # Stop the cluster before the single-server run, so that it does not share the machine.
  kill "$proxy_pid" "${kiln_pid[${survivors[0]}]}" "${kiln_pid[${survivors[1]}]}" "${nats_pid[1]}" "${nats_pid[2]}" "${nats_pid[3]}" 2>/dev/null || true
  sleep 2
fi

# --- Single-server mode: the same load against one Kiln server without --cluster.
if [ "$MODE" = single ] || [ "$MODE" = both ]; then
  kiln_start 1 s
  kiln_ready 1 s
  server="127.0.0.1:$(( BASE + 81 ))"
  log "single: Kiln on $server; $AGENTS agents every ${INTERVAL}s for ${duration}s"
  load single "$server"
  sleep $(( duration * 3 / 4 ))
  load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
  wait "$load_pid" || true
  kiln_ticks=$(cpu_ticks "${kiln_pid[1]}")
  acked=$(wc -l <"$work/single/acked")
  echo "== single-server mode: one Kiln server, no failures"
  python3 end2end/cluster_load.py report --out "$work/single"
  awk -v k="$kiln_ticks" -v hz="$hz" -v a="$acked" 'BEGIN {
    if (a) printf "CPU per acknowledged upload: Kiln %.2f ms\n", k * 1000 / hz / a }'
  echo "load average at 3/4 of the run: $load_avg"
  verify single "$server"
fi

[ "$status" = 0 ] && echo "nothing acknowledged was lost or counted twice" || echo "FAILED" >&2
exit "$status"
