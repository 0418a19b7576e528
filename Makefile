# Kiln: `make run` starts the server, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

WASM_BINDGEN_VERSION := $(shell grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
SITE := target/site
PKG := $(SITE)/pkg
WASM_PROFILE := wasm-release
WASM := target/wasm32-unknown-unknown/$(WASM_PROFILE)/kiln_app.wasm
WASM_RUSTFLAGS := -C target-feature=+simd128
# The wasm download's ceiling, gzipped: `make site` fails above it.
WASM_BUDGET_GZIP := 358400
# What the site is built from. The wasm-bindgen and binaryen (wasm-opt) versions come from the
# two lockfiles, so a new version of either rebuilds it too; the build flags are in this file.
SITE_INPUTS := $(shell find app/src app/model/src style -type f) app/Cargo.toml app/model/Cargo.toml \
	Cargo.toml Cargo.lock end2end/package-lock.json Makefile
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run build test tools s3s-fs nats-server npm chromium site lint unit e2e fuzz clean

## make run: release build, then Kiln on 127.0.0.1:4040 with data in ./data
run: build
	target/release/kiln serve --listen 127.0.0.1:4040 --data-dir ./data

## make build: target/release/kiln, one file with the web UI built in (server/build.rs embeds
## target/site/pkg, so the site is built first)
build: site
	cargo build --release -p kiln-server

## make test: the wasm site (which the server embeds), fmt, clippy, unit and integration
## tests, Playwright
test: tools s3s-fs nats-server npm chromium site lint unit e2e

tools:
	rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (the lockfile's version)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

## A real S3-compatible server for the storage tests (server/tests/s3.rs).
s3s-fs:
	@command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked

## NATS JetStream for the cluster-mode tests (server/tests/cluster.rs): Debian's 2.9.
nats-server:
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nats-server; }

npm: end2end/node_modules/.package-lock.json

end2end/node_modules/.package-lock.json: end2end/package.json end2end/package-lock.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

chromium:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

## The browser half: the app crate for wasm, bound by wasm-bindgen, shrunk by wasm-opt, with
## gzip copies to serve, and the icons (style/favicon.*). Rebuilt only when its inputs change;
## built in a fresh directory and swapped in whole, so a failed or over-budget build leaves no
## half site for the server to embed.
site: $(PKG)/kiln_bg.wasm

$(PKG)/kiln_bg.wasm: $(SITE_INPUTS) | tools npm
	# 128-bit SIMD (every browser since 2021, Safari since 16.4): the search's substring
	# scan and the raster's copies use it, and the wasm comes out smaller.
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$(WASM_RUSTFLAGS)" \
		cargo build -p kiln-app --lib --target wasm32-unknown-unknown --features hydrate --profile $(WASM_PROFILE)
	rm -rf $(PKG).new && mkdir -p $(PKG).new
	wasm-bindgen --target web --no-typescript --out-dir $(PKG).new --out-name kiln $(WASM)
	end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-simd \
		$(PKG).new/kiln_bg.wasm -o $(PKG).new/kiln_bg.wasm
	cp style/main.css $(PKG).new/kiln.css
	cp style/favicon.svg style/favicon.ico $(PKG).new/
	gzip -9 -k -n $(PKG).new/kiln_bg.wasm $(PKG).new/kiln.js $(PKG).new/kiln.css
	@raw=$$(stat -c %s $(PKG).new/kiln_bg.wasm); gz=$$(stat -c %s $(PKG).new/kiln_bg.wasm.gz); \
	echo "wasm: $$raw bytes, $$gz gzipped (budget $(WASM_BUDGET_GZIP))"; \
	if [ "$$gz" -gt $(WASM_BUDGET_GZIP) ]; then \
		echo "error: the wasm is $$gz bytes gzipped, over the budget of $(WASM_BUDGET_GZIP) bytes." >&2; \
		echo "Every browser that opens Kiln downloads it: shrink it, or raise WASM_BUDGET_GZIP in the Makefile on purpose." >&2; \
		rm -rf $(PKG).new; exit 1; \
	fi
	rm -rf $(PKG) && mv $(PKG).new $(PKG)

lint: site
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p kiln-app --lib --target wasm32-unknown-unknown --features hydrate -- -D warnings

unit: site
	# tests/live_agents.rs runs the real agents as child processes: build their binaries first
	# (a test can only name its own package's binaries).
	cargo build -p kiln-agent-rust-v05 -p kiln-agent-rust-v2
	cargo test --workspace

e2e: site
	# The whole workspace, as `cargo test --workspace` builds it: the same features, so the
	# dependencies compiled for the tests are reused instead of rebuilt for one package.
	cargo build --workspace --bins
	end2end/run.sh target/debug/kiln

## make fuzz: every fuzz target for FUZZ_SECONDS each, seeded from server/tests/data; not part
## of `make test` (the instrumented release build alone takes ~10 min). See server/fuzz/README.md.
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 65536
FUZZ_TARGETS ?= folded pprof selector timespec render_query push speedscope jfr
# Release code with overflow checks and debug assertions: wrapped arithmetic is a finding.
FUZZ_FLAGS := -s none -O -a
fuzz: site
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
	server/fuzz/seed.sh
	cd server/fuzz && cargo fuzz build $(FUZZ_FLAGS)
	cd server/fuzz && for target in $(FUZZ_TARGETS); do \
		echo "== $$target: $(FUZZ_SECONDS) s"; \
		cargo fuzz run $(FUZZ_FLAGS) $$target -- -max_total_time=$(FUZZ_SECONDS) \
			-rss_limit_mb=2048 -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1; \
	done

clean:
	cargo clean
	rm -rf end2end/node_modules end2end/test-results
