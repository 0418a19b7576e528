#!/bin/sh
# Writes this folder's OTLP requests (*.binpb, *.json, expected.json) with Python's
# opentelemetry-proto, a producer Kiln did not write, pinned in requirements.txt, into this
# folder or the one given. The venv is its own, made on first use (KILN_OTLP_VENV names it).
# server/tests/otlp.rs decodes the committed files; rerun this after changing make.py and bless
# the goldens (BLESS=1 cargo test -p kiln-server --test otlp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${KILN_OTLP_VENV:-${TMPDIR:-/tmp}/kiln-otlp-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" "$here/make.py" "${1:-$here}"
