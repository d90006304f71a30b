#!/usr/bin/env bash
# The whole test suite, from a fresh machine with only the Rust toolchain:
#   1. installs what the tests need and the toolchain lacks (idempotent; skipped when present):
#      the S3 server s3s-fs, a llama.cpp OpenAI-compatible server (llama-cpp-python), Chromium;
#   2. checks formatting and lints;
#   3. runs every test with EXP_TEST_STRICT=1, so a test whose server or browser is missing fails
#      instead of skipping;
#   4. runs every benchmark of bench/ at tiny sizes (scripts/bench_smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v s3s-fs >/dev/null 2>&1; then
  log "installing s3s-fs (real S3 server for remote tests)"
  cargo install --locked s3s-fs --version 0.14.1 --features binary
fi

if ! python3 -c 'import llama_cpp.server' >/dev/null 2>&1; then
  log "installing llama-cpp-python[server] (real llama.cpp endpoint; compiles ~5 min)"
  python3 -m pip install --quiet 'llama-cpp-python[server]'
fi

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (HTML report test)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
# The tests build with the `fault-injection` feature (Cargo.toml); lint the release build too.
cargo clippy --quiet -- -D warnings

# The parser fuzzers run EXP_FUZZ_SECS per target (12 targets, two at a time) and the kill-point
# suite EXP_CRASH_ROUNDS kills per command: about a minute each. scripts/soak.sh runs them longer.
log "cargo test"
EXP_TEST_STRICT=1 EXP_FUZZ_SECS="${EXP_FUZZ_SECS:-10}" EXP_CRASH_ROUNDS="${EXP_CRASH_ROUNDS:-6}" \
  cargo test 2>&1

# The benchmark scripts at tiny sizes (a few minutes), so they keep working.
log "benchmark smoke (bench/*)"
bash scripts/bench_smoke.sh
