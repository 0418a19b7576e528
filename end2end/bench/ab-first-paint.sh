#!/usr/bin/env bash
# A/B of the explorer's first paint: two release servers (each a binary and the site it serves),
# the same generated upload in each, `measure.mjs` run against them in turn, REPS times.
#
#   end2end/bench/ab-first-paint.sh 100k 8 /tmp/kiln-before:/tmp/site-before /tmp/kiln-after:target/site
#
# SIZE is one of run.sh's profiles (its generated file must exist: run.sh makes it). Prints,
# per run: first paint, the HTML's end, DOMContentLoaded, when the whole tree had arrived, and
# the zoom and search medians (ms, page clock).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
size=$1; reps=$2; shift 2
folded=$here/../.tools/bench/stacks-$size.folded
[ -f "$folded.gz" ] || { echo "missing $folded.gz: run end2end/bench/run.sh $size first" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
ports=()
i=0
for pair in "$@"; do
  bin=${pair%%:*}; site=${pair#*:}
  port=$((4990 + i)); i=$((i + 1))
  "$bin" serve --listen 127.0.0.1:$port --data-dir "$work/data$port" --site-root "$site" \
    --max-body-bytes 1073741824 --max-decompressed-bytes 4294967296 --request-timeout 900s \
    > "$work/log$port" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
  # Not another server that happens to hold the port: ours must still be running.
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "server on port $port did not start (port taken?): $(tail -1 "$work/log$port")" >&2; exit 1; }
  curl -sf -o /dev/null --data-binary @"$folded.gz" "http://127.0.0.1:$port/ingest?name=bench$size.cpu&from=now-5m"
  ports+=($port)
done
for _ in $(seq "$reps"); do
  for j in "${!ports[@]}"; do
    line=$(node "$here/measure.mjs" --kiln "http://127.0.0.1:${ports[$j]}" --reps 1 "$size=bench$size.cpu=$folded" 2>&1 | grep "^kiln $size")
    echo "${line#*: }" | node -e '
      const d = JSON.parse(require("fs").readFileSync(0, "utf8")); const b = d.breakdown; const r = Math.round;
      console.log(`server ${process.argv[1]} first paint ${r(d.firstPaint)} html ${r(b.htmlResponseEnd)} dcl ${r(b.domContentLoaded)} whole tree ${r(d.wholeTreeLoaded ?? 0)} zoom ${r(d.zoom)} search ${r(d.search)}`);
    ' "$j"
  done
done
