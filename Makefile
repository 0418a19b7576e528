# Kiln: `make run` starts the server, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

WASM_BINDGEN_VERSION := $(shell grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
SITE := target/site
PKG := $(SITE)/pkg
WASM_PROFILE := wasm-release
WASM := target/wasm32-unknown-unknown/$(WASM_PROFILE)/kiln_app.wasm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run build test tools s3s-fs npm chromium site lint unit e2e fuzz clean

## make run: release build, then Kiln on 127.0.0.1:4040 with data in ./data
run: build
	target/release/kiln serve --listen 127.0.0.1:4040 --data-dir ./data --site-root $(SITE)

## make build: target/release/kiln plus the site assets in target/site
build: tools npm site
	cargo build --release -p kiln-server

## make test: fmt, clippy, unit and integration tests, the wasm build, Playwright
test: tools s3s-fs npm chromium lint unit site e2e

tools:
	rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (the lockfile's version)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

## A real S3-compatible server for the storage tests (server/tests/s3.rs).
s3s-fs:
	@command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked

npm: end2end/node_modules/.package-lock.json

end2end/node_modules/.package-lock.json: end2end/package.json end2end/package-lock.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

chromium:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

## The browser half: the app crate for wasm, bound by wasm-bindgen, shrunk by wasm-opt.
site:
	cargo build -p kiln-app --lib --target wasm32-unknown-unknown --features hydrate --profile $(WASM_PROFILE)
	mkdir -p $(PKG)
	wasm-bindgen --target web --no-typescript --out-dir $(PKG) --out-name kiln $(WASM)
	end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
		$(PKG)/kiln_bg.wasm -o $(PKG)/kiln_bg.wasm
	cp style/main.css $(PKG)/kiln.css
	@echo "wasm: $$(stat -c %s $(PKG)/kiln_bg.wasm) bytes, $$(gzip -9c $(PKG)/kiln_bg.wasm | wc -c) gzipped"

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p kiln-app --lib --target wasm32-unknown-unknown --features hydrate -- -D warnings

unit:
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
FUZZ_TARGETS ?= folded pprof selector timespec render_query push speedscope
# Release code with overflow checks and debug assertions: wrapped arithmetic is a finding.
FUZZ_FLAGS := -s none -O -a
fuzz:
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
