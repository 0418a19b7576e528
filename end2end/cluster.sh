#!/usr/bin/env bash
# Cluster run: three Kiln servers on a three-node NATS cluster (R=3 streams) and one s3s-fs
# bucket, all on loopback, with simulated agents uploading through all three. During the run
# one NATS node and one Kiln server are killed (SIGKILL); the NATS node is started again, the
# Kiln server is not. At the end every acknowledged upload must be counted exactly once by
# every surviving server. Not run in CI.
#
#   end2end/cluster.sh                        # 50 agents, 2 minutes, debug build
#   AGENTS=600 DURATION=10m PROFILE=release end2end/cluster.sh
#
# Agents: each a loop of curl uploads (a unique folded stack, an Idempotency-Key), sent
# round-robin over the three servers as a load balancer would; a failed attempt (a refused
# connection, a 503) is retried on the next server with the same key, as `kiln upload`
# retries. An upload is acknowledged when one attempt answered 200.
#
# Timeline (fractions of DURATION): 1/4 NATS node 2 killed, 1/2 Kiln server 3 killed,
# 3/4 NATS node 2 started again.
#
# Prints: uploads acknowledged, attempts that failed (and their statuses), ingest latency
# p50/p99 (every attempt), query latency p50/p99 (a merge of everything uploaded, asked every
# 2 s of a live server), freshness lag p50/p99 (an upload on one server until another server's
# query shows it), the Kiln servers' CPU per acknowledged upload, and whether anything
# acknowledged is missing or counted twice. Exits non-zero if so.
#
# Environment:
#   AGENTS    simulated agents (default 50)
#   DURATION  seconds or Nm (default 2m)
#   INTERVAL  seconds between one agent's uploads (default 1)
#   PROFILE   debug or release (default debug); KILN to use a built binary instead
#   BASE      first loopback port used (default 24000; the run takes BASE … BASE+40)
#   KEEP=1    keep the work directory (logs, latencies) instead of deleting it
set -euo pipefail
export LC_ALL=C

AGENTS=${AGENTS:-50}
DURATION=${DURATION:-2m}
INTERVAL=${INTERVAL:-1}
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

ulimit -n "$(( AGENTS * 4 + 1024 ))" 2>/dev/null || true
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# --- NATS: three nodes with routes to each other.
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

# --- The bucket.
mkdir -p "$work/s3/kiln"
s3_port=$(( BASE + 10 ))
"$S3S" --host 127.0.0.1 --port "$s3_port" --access-key kilnkey --secret-key kilnsecret "$work/s3" >"$work/s3.log" 2>&1 &
pids+=("$!")

# --- Three Kiln servers (the cluster's JetStream needs a moment to elect leaders; Kiln waits).
servers=()
declare -A kiln_pid
for i in 1 2 3; do
  port=$(( BASE + 80 + i ))
  NO_COLOR=1 KILN_LOG="${KILN_LOG:-warn,kiln_server=info}" "$KILN" serve --listen "127.0.0.1:$port" \
    --data-dir "$work/kiln$i" --storage s3://kiln/c --s3-endpoint "http://127.0.0.1:$s3_port" \
    --s3-region us-east-1 --s3-access-key kilnkey --s3-secret-key kilnsecret \
    --cluster "$cluster_urls" --cluster-replicas 3 --block-duration 15s --block-refresh 5s \
    >"$work/kiln$i.log" 2>&1 &
  kiln_pid[$i]=$!
  pids+=("$!")
  servers+=("127.0.0.1:$port")
done
for i in 1 2 3; do
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://${servers[$((i - 1))]}/readyz" && break
    kill -0 "${kiln_pid[$i]}" 2>/dev/null || { tail -n 30 "$work/kiln$i.log" >&2; exit 1; }
    sleep 0.2
  done
  curl -sf -o /dev/null "http://${servers[$((i - 1))]}/readyz" || { echo "Kiln $i not ready" >&2; tail -n 30 "$work/kiln$i.log" >&2; exit 1; }
done
log "NATS on $cluster_urls; Kiln on ${servers[*]}; $AGENTS agents for ${duration}s"
printf '%s\n' "${servers[@]}" >"$work/alive"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# --- Agents.
agent() {
  local a=$1 n=0 end=$(( SECONDS + duration ))
  sleep "$(awk -v a="$a" -v n="$AGENTS" -v i="$INTERVAL" 'BEGIN { print i * a / n }')"
  while (( SECONDS < end )); do
    n=$(( n + 1 ))
    local stack="main;agent_$a;upload_$n" acked=0
    for try in 0 1 2 3 4 5 6 7 8 9; do
      local server=${servers[$(( (a + n + try) % 3 ))]}
      local out
      out=$(curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' -H "Idempotency-Key: a$a-u$n" \
        --data-binary "$stack 1" "http://$server/ingest?name=e2e.cpu" || true)
      echo "$out $EPOCHSECONDS" >>"$work/attempts.$a"
      if [ "${out%% *}" = 200 ]; then acked=1; break; fi
      sleep 0.5
    done
    if [ "$acked" = 1 ]; then echo "$stack" >>"$work/acked.$a"; else echo "$stack" >>"$work/maybe.$a"; fi
    sleep "$INTERVAL"
  done
}
load=()
for a in $(seq 1 "$AGENTS"); do agent "$a" & load+=("$!"); done

# --- Queries and freshness: an upload on one live server until another live one shows it.
queries() {
  local end=$(( SECONDS + duration ))
  while (( SECONDS < end )); do
    local server
    server=$(shuf -n1 "$work/alive")
    curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}\n' "http://$server/render?query=e2e.cpu&format=folded" >>"$work/queries" || true
    sleep 2
  done
}
freshness() {
  local end=$(( SECONDS + duration )) p=0
  while (( SECONDS < end )); do
    p=$(( p + 1 ))
    mapfile -t alive <"$work/alive"
    local on=${alive[$(( p % ${#alive[@]} ))]} off=${alive[$(( (p + 1) % ${#alive[@]} ))]}
    local t0
    t0=$(now_ms)
    if [ "$(curl -s -o /dev/null -m 10 -w '%{http_code}' --data-binary "main;probe_$p 1" "http://$on/ingest?name=fresh.cpu")" = 200 ]; then
      local seen=0
      for _ in $(seq 1 600); do
        if curl -s -m 5 "http://$off/render?query=fresh.cpu&format=folded" | grep -q "^main;probe_$p "; then seen=1; break; fi
        sleep 0.05
      done
      [ "$seen" = 1 ] && echo $(( $(now_ms) - t0 )) >>"$work/freshness"
    fi
    sleep 3
  done
}
queries & load+=("$!")
freshness & load+=("$!")
pids+=("${load[@]}")

# --- Failures.
sleep $(( duration / 4 ))
log "killing NATS node 2"
echo "nats-killed $EPOCHSECONDS" >>"$work/events"
kill -9 "${nats_pid[2]}"
sleep $(( duration / 4 ))
log "killing Kiln server 3"
echo "kiln-killed $EPOCHSECONDS" >>"$work/events"
cpu_before=$(cpu_ticks "${kiln_pid[3]}")
grep -v "${servers[2]}" "$work/alive" >"$work/alive.new"; mv "$work/alive.new" "$work/alive"
kill -9 "${kiln_pid[3]}"
sleep $(( duration / 4 ))
log "starting NATS node 2 again"
echo "nats-started $EPOCHSECONDS" >>"$work/events"
start_nats 2
log "waiting for the agents (they stop by themselves at the end of DURATION)"
wait "${load[@]}" 2>/dev/null || true

# --- Results.
cat "$work"/acked.* 2>/dev/null | sort >"$work/acked"
cat "$work"/maybe.* 2>/dev/null | sort >"$work/maybe" || true
touch "$work/maybe"
cat "$work"/attempts.* >"$work/attempts"
acked=$(wc -l <"$work/acked")
attempts=$(wc -l <"$work/attempts")
failed=$(awk '$1 != 200' "$work/attempts" | wc -l)
hz=$(getconf CLK_TCK)
ticks=$(( cpu_before + $(cpu_ticks "${kiln_pid[1]}") + $(cpu_ticks "${kiln_pid[2]}") ))
pct() { sort -n | awk -v p="$1" '{ v[NR] = $1 } END { if (NR) { i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print v[i] } else print "-" }'; }
echo "uploads acknowledged: $acked; not acknowledged after 10 attempts: $(wc -l <"$work/maybe")"
echo "attempts: $attempts, failed: $failed ($(awk '$1 != 200 { print $1 }' "$work/attempts" | sort | uniq -c | tr -s ' ' | tr '\n' ',' ))"
echo "ingest latency (every attempt): p50 $(awk '{print $2 * 1000}' "$work/attempts" | pct 50) ms, p99 $(awk '{print $2 * 1000}' "$work/attempts" | pct 99) ms"
echo "acknowledged after more than 1 s, by second since NATS node 2 was killed: $(awk -v t="$(awk '$1 == "nats-killed" { print $2 }' "$work/events")" '$1 == 200 && $2 > 1 { print $3 - t }' "$work/attempts" | sort -n | uniq -c | awk '{ printf "%s+%ss:%s ", "", $2, $1 }')"
echo "query latency (/render e2e.cpu): p50 $(awk '$1 == 200 {print $2 * 1000}' "$work/queries" | pct 50) ms, p99 $(awk '$1 == 200 {print $2 * 1000}' "$work/queries" | pct 99) ms, failed $(awk '$1 != 200' "$work/queries" | wc -l) of $(wc -l <"$work/queries")"
echo "freshness lag (upload on one server until another shows it): p50 $(pct 50 <"$work/freshness") ms, p99 $(pct 99 <"$work/freshness") ms, max $(pct 100 <"$work/freshness") ms ($(wc -l <"$work/freshness") probes)"
echo "Kiln CPU per acknowledged upload (3 servers together): $(awk -v t="$ticks" -v hz="$hz" -v n="$acked" 'BEGIN { if (n) printf "%.2f ms", t * 1000 / hz / n }')"

# Every surviving server must count every acknowledged upload exactly once.
status=0
for server in $(cat "$work/alive"); do
  ok=0
  for _ in $(seq 1 90); do
    curl -s -m 30 "http://$server/render?query=e2e.cpu&format=folded" | awk '{ v = $NF; $NF = ""; sub(/ $/, ""); print $0 "\t" v }' | sort >"$work/answer"
    missing=$(cut -f1 "$work/answer" | comm -13 - "$work/acked" | wc -l)
    twice=$(awk -F'\t' '$2 != 1' "$work/answer" | wc -l)
    unknown=$(cut -f1 "$work/answer" | comm -23 - "$work/acked" | comm -23 - "$work/maybe" | wc -l)
    if [ "$missing" = 0 ] && [ "$twice" = 0 ] && [ "$unknown" = 0 ]; then ok=1; break; fi
    sleep 1
  done
  echo "$server: missing $missing, counted more than once $twice, never sent $unknown"
  [ "$ok" = 1 ] || status=1
done
echo "blocks in the bucket: $(find "$work/s3/kiln/c/blocks" -name '*.meta.json' | wc -l)"
[ "$status" = 0 ] && echo "nothing acknowledged was lost or counted twice" || echo "FAILED" >&2
exit "$status"
