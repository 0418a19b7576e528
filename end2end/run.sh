#!/usr/bin/env bash
# Runs the Playwright suite against a real Kiln: a free port, a temp data dir, the server
# stopped afterwards whatever happens. Usage: end2end/run.sh path/to/kiln [playwright args…]
# The binary is copied to an empty temp dir and run from there, with no --site-root: every
# browser test proves that the one file serves the whole UI (the site is built into it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
kiln=$(realpath "${1:?usage: run.sh path/to/kiln}")
shift
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
alone=$(mktemp -d)
log=$(mktemp)
mkdir -p "$here/test-results"
cp "$kiln" "$alone/kiln"
(cd "$alone" && exec env -u KILN_SITE_ROOT ./kiln serve --listen "127.0.0.1:$port" --data-dir "$data") >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data" "$alone"; [ "${KEEP_LOG:-}" ] || rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "kiln exited early:"; cat "$log"; exit 1; }
  sleep 0.1
done
# The wasm it serves is the one `make site` built.
if ! curl -fs "http://127.0.0.1:$port/pkg/kiln_bg.wasm" | cmp -s - "$root/target/site/pkg/kiln_bg.wasm"; then
  echo "the relocated kiln does not serve target/site/pkg/kiln_bg.wasm: rebuild it after \`make site\`"
  exit 1
fi
cd "$here"
status=0
KILN_URL="http://127.0.0.1:$port" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npx playwright test "$@" || status=$?
node -e '
  const fs = require("fs");
  let s = { expected: 0, unexpected: 0, skipped: 0, flaky: 0 };
  try { s = JSON.parse(fs.readFileSync("test-results/results.json", "utf8")).stats; } catch (e) {}
  console.log(`e2e: ${s.expected + s.flaky} passed, ${s.unexpected} failed, ${s.skipped} skipped`);
'
if [ "$status" -ne 0 ]; then
  echo "--- kiln log (last 40 lines) ---"
  tail -n 40 "$log" || true
fi
exit "$status"
