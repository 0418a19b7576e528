#!/usr/bin/env bash
# Browser benchmark: Kiln (release) against speedscope on generated folded profiles.
# Not a test: nothing here is picked up by Playwright's testDir or `make test`.
#
# Needs `make build` first (target/release/kiln and target/site); builds nothing itself.
# Usage: end2end/bench/run.sh [10k] [100k] [1m]        (default: 10k 100k)
# Env: BENCH_DIR (generated profiles, speedscope, results; default end2end/.tools/bench),
#      BENCH_REPS (zoom/search repetitions, default 5), CHROMIUM_PATH,
#      BENCH_SPEEDSCOPE=0 (Kiln alone: no speedscope run, no ratio),
#      KILN_BIN (another kiln binary to measure, e.g. target/debug/kiln; default the release one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
wasm="$root/target/site/pkg/kiln_bg.wasm"
work=${BENCH_DIR:-$root/end2end/.tools/bench}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10k 100k)

[ -x "$kiln" ] && [ -f "$wasm" ] || { echo "run 'make build' first (need $kiln and $wasm)" >&2; exit 1; }
head_time=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
if [ "$(stat -c %Y "$kiln")" -lt "$head_time" ] || [ "$(stat -c %Y "$wasm")" -lt "$head_time" ]; then
  echo "warning: $kiln or the site is older than HEAD ($(git -C "$root" log -1 --format=%h)); 'make build' to measure HEAD" >&2
fi
[ -d "$root/end2end/node_modules/playwright-core" ] || { echo "run 'make build' (it installs end2end/node_modules)" >&2; exit 1; }

mkdir -p "$work"
# speedscope's release build, pinned, outside the project's package.json.
ss="$work/speedscope"
if [ ! -f "$ss/node_modules/speedscope/dist/release/index.html" ]; then
  mkdir -p "$ss"
  echo '{"private":true}' >"$ss/package.json"
  (cd "$ss" && npm install --no-save --no-audit --no-fund speedscope@1.25.0 >/dev/null)
fi

count() { case "$1" in *k) echo $((${1%k} * 1000));; *m) echo $((${1%m} * 1000000));; *) echo "$1";; esac; }
profiles=()
for s in "${sizes[@]}"; do
  f="$work/stacks-$s.folded"
  if [ ! -f "$f" ] || [ "$here/gen-folded.mjs" -nt "$f" ]; then
    node "$here/gen-folded.mjs" "$(count "$s")" "$f"
  fi
  profiles+=("$s=bench$s.cpu=$f")
done

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
echo "kiln $(git -C "$root" log -1 --format=%h), chromium $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null | awk '{print $2}'), speedscope 1.25.0"
echo "release wasm: $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped"
for p in "${profiles[@]}"; do
  IFS== read -r s app f <<<"$p"
  gz="$f.gz"
  [ -f "$gz" ] && [ "$gz" -nt "$f" ] || gzip -1c "$f" >"$gz"
  t0=$(date +%s.%N)
  code=$(curl -s -o /dev/stderr -w '%{http_code}' --data-binary @"$gz" "http://127.0.0.1:$port/ingest?name=$app&from=now-5m")
  t1=$(date +%s.%N)
  [ "$code" = 200 ] || { echo "upload of $s failed: HTTP $code"; tail -20 "$log"; exit 1; }
  echo "ingest $s: $(stat -c %s "$f") bytes folded ($(stat -c %s "$gz") gzipped), $(echo "$t1 - $t0" | bc) s"
done

speedscope_dir="$ss/node_modules/speedscope/dist/release"
[ "${BENCH_SPEEDSCOPE:-1}" != 0 ] || speedscope_dir=""
node "$here/measure.mjs" --kiln "http://127.0.0.1:$port" --speedscope "$speedscope_dir" \
  --reps "${BENCH_REPS:-5}" --out "$work/results.json" "${profiles[@]}"
echo "details (breakdown, every sample): $work/results.json"
