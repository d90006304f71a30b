#!/usr/bin/env bash
# A long local soak of the parser fuzzers and the kill-point suite (CI runs both briefly):
#   scripts/soak.sh [SECONDS_PER_FUZZ_TARGET] [KILL_ROUNDS_PER_COMMAND]
# Defaults: 600 s per fuzz target (12 targets) and 100 kills per command in tests/crash.rs
# (6 commands, so 600 kills), plus tests/store_crash.rs once. Release builds, for throughput.
# A fuzz failure prints its EXP_FUZZ_SEED and writes the minimal input under
# target/release/tmp/fuzz-<target>-failure; copy it into tests/data/fuzz/<target>/crash-<what>.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export EXP_FUZZ_SECS="${1:-600}"
export EXP_CRASH_ROUNDS="${2:-100}"
echo "==> fuzzing each parser for ${EXP_FUZZ_SECS}s" >&2
cargo test --release --test fuzz_parsers -- --nocapture
echo "==> ${EXP_CRASH_ROUNDS} kills per command" >&2
cargo test --release --test crash --test store_crash -- --nocapture --test-threads=1
