#!/usr/bin/env bash
# Seeds each fuzz target's corpus (corpus/<target>/, git-ignored) with real inputs: the agent
# uploads recorded in server/tests/data, and a few hand-written values for the text targets.
# Safe to run again: seeds are rewritten, what the fuzzer added is kept.
set -euo pipefail
cd "$(dirname "$0")"
data=../tests/data/agents
for target in folded pprof selector timespec render_query push speedscope jfr; do
  mkdir -p "corpus/$target"
done

cp "$data"/rust-v05-folded/bodies/*.folded.txt corpus/folded/
for body in "$data"/rust-v05/bodies/*.bin; do
  name=$(basename "$body" .bin)
  cp "$body" "corpus/pprof/$name.gz"
  gzip -dc "$body" > "corpus/pprof/$name.pb"
done
printf '%s' 'myapp.cpu{env="prod",region=~"eu-.*"}' > corpus/selector/seed
printf '%s' 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app"}' > corpus/selector/pyroscope1

# Push: the first byte picks the codec (even: protobuf, odd: JSON), then the body as decoded.
for body in "$data"/rust-v2/bodies/*.bin; do
  { printf '\x00'; gzip -dc "$body"; } > "corpus/push/$(basename "$body" .bin).pb"
done
printf '\x01%s' '{"series":[{"labels":[{"name":"service_name","value":"app.cpu"},{"name":"env","value":"dev"}],"samples":[{"rawProfile":"","ID":"a1"}]}]}' \
  > corpus/push/json

# Time values: `from` and `until` split at the first newline.
printf 'now-1h\nnow' > corpus/timespec/relative
printf '1700000000\n1700003600' > corpus/timespec/seconds
printf '1700000000000\n1700003600000000' > corpus/timespec/millis-micros
printf 'now-2w\nnow+1d' > corpus/timespec/weeks

printf '%s' 'query=myapp.cpu%7Benv%3D%22prod%22%7D&from=now-1h&until=now&maxNodes=1024&format=json' \
  > corpus/render_query/selector
printf '%s' 'name=myapp.cpu&from=1700000000&until=1700003600&format=svg&title=x&inverted=true&minwidth=0.5' \
  > corpus/render_query/svg
printf '%s' 'query=process_cpu%3Acpu%3Ananoseconds%3Acpu%3Ananoseconds%7Bservice_name%3D%22app%22%7D&from=now-7d' \
  > corpus/render_query/pyroscope1

cat > corpus/speedscope/threads.json <<'JSON'
{"$schema": "https://www.speedscope.app/file-format-schema.json",
 "shared": {"frames": [{"name": "main", "file": "app.py", "line": 3}, {"name": "work"}]},
 "profiles": [
  {"type": "sampled", "name": "MainThread", "unit": "milliseconds", "startValue": 0, "endValue": 4,
   "samples": [[0, 1], [0], [0, 1]], "weights": [2, 1, 1]},
  {"type": "evented", "name": "worker-1", "unit": "milliseconds", "startValue": 0, "endValue": 2,
   "events": [{"type": "O", "at": 1, "frame": 1}, {"type": "C", "at": 2, "frame": 1}]}],
 "activeProfileIndex": 0, "exporter": "seed"}
JSON
cat > corpus/speedscope/bytes.json <<'JSON'
{"shared": {"frames": [{"name": "alloc"}, {"name": "grow"}]},
 "profiles": [{"type": "sampled", "name": "", "unit": "bytes", "startValue": 0, "endValue": 10,
   "samples": [[0, 1, 1], [0]], "weights": [4096, 16]}]}
JSON
# JFR: a real OpenJDK recording and the model's hostile recordings.
cp ../../app/model/tests/data/formats/jfr-demo.jfr ../../app/model/tests/data/formats/hostile-jfr/*.jfr corpus/jfr/

echo "seeded: $(for t in corpus/*; do printf '%s=%s ' "${t#corpus/}" "$(ls "$t" | wc -l)"; done)"
