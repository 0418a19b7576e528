#!/bin/sh
# Regenerates jfr-demo.jfr and what `jfr` itself reports of it (OpenJDK 17: java, javac, jfr).
# Three seconds of JfrDemo (CPU in named methods, allocation, a contended monitor and lock, a
# thread waiting in native code), recorded with the events Kiln reads (jfr-demo.jfc).
set -eu
cd "$(dirname "$0")"
out=$(mktemp -d)
javac -d "$out" JfrDemo.java
java -XX:StartFlightRecording=settings="$PWD/jfr-demo.jfc",filename="$PWD/jfr-demo.jfr" -cp "$out" JfrDemo 3000 >/dev/null
rm -r "$out"
jfr summary jfr-demo.jfr | grep -v '^ Start:' | awk 'NF < 3 || $2 != "0"' > jfr-demo.summary.txt
python3 jfr-expected.py jfr-demo.jfr > jfr-demo.jfr-print.folded
