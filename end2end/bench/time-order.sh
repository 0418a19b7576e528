#!/usr/bin/env bash
# Browser benchmark of the time-order view: a generated .cpuprofile of N samples opened on the
# Open page, switched to Time order, then wheel zooms, drags and key pans, each timed from the
# input event to the next painted frame; the flamegraph's zoom and search on the same file for
# comparison (end2end/bench/measure-time-order.mjs says what is timed). Not a test.
#
# Needs the site (`make site`, target/site) and a kiln binary; builds nothing itself.
# Usage: end2end/bench/time-order.sh [samples]            (default 1000000)
# Env: BENCH_DIR (the generated profile and results; default end2end/.tools/bench),
#      BENCH_REPS (inputs of each kind, default 40), CHROMIUM_PATH,
#      KILN_BIN (default target/release/kiln; target/debug/kiln works: the server only parses
#      the file, the views are the wasm's), BENCH_TRACE=1 (Chromium's tracing of the time-order
#      inputs into $BENCH_DIR/time-order-trace.json, to open in chrome://tracing or Perfetto).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
wasm="$root/target/site/pkg/kiln_bg.wasm"
work=${BENCH_DIR:-$root/end2end/.tools/bench}
samples=${1:-1000000}

[ -x "$kiln" ] && [ -f "$wasm" ] || { echo "need $kiln and $wasm ('make build', or 'make site' and KILN_BIN=target/debug/kiln)" >&2; exit 1; }
[ -d "$root/end2end/node_modules/playwright-core" ] || { echo "run 'make npm' first" >&2; exit 1; }
mkdir -p "$work"
# Generated, not committed: 1M samples is about 12 MB.
f="$work/samples-$samples.cpuprofile"
if [ ! -f "$f" ] || [ "$here/gen-cpuprofile.mjs" -nt "$f" ]; then
  node "$here/gen-cpuprofile.mjs" "$samples" "$f"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
log=$(mktemp)
"$kiln" serve --listen "127.0.0.1:$port" --data-dir "$data" --site-root "$root/target/site" \
  --max-body-bytes $((1 << 30)) --max-decompressed-bytes $((4 << 30)) --request-timeout 900s \
  --body-read-timeout 300s >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data" "$log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "kiln exited early:"; cat "$log"; exit 1; }
  sleep 0.1
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kiln $(git -C "$root" log -1 --format=%h) ($kiln), chromium $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null | awk '{print $2}')"
echo "wasm: $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped"
trace=()
[ "${BENCH_TRACE:-0}" = 0 ] || trace=(--trace "$work/time-order-trace.json")
node "$here/measure-time-order.mjs" --kiln "http://127.0.0.1:$port" --reps "${BENCH_REPS:-40}" \
  --out "$work/time-order-results.json" "${trace[@]}" "$f"
echo "details (every sample): $work/time-order-results.json"
