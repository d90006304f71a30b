#!/usr/bin/env bash
# Every benchmark in bench/ at tiny sizes (BENCH_SMOKE=1: seconds each), so the scripts keep
# working; CI runs this from scripts/test.sh after the tests. Figures from a smoke run mean
# nothing and are never written to BENCHMARKS.md.
#   bash scripts/bench_smoke.sh        # uses target/debug/exp and the bench_server example
# Installs the peers it can (aiohttp, dvc with dvc-s3, wrk); a script whose peer is still
# missing says which one it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '==> %s\n' "$*" >&2; }

if ! python3 -c 'import aiohttp' >/dev/null 2>&1 || ! command -v dvc >/dev/null 2>&1; then
  log "installing the Python peers (aiohttp, dvc[s3])"
  python3 -m pip install --quiet aiohttp 'dvc[s3]' || log "pip failed: the benchmarks will say which peers they skipped"
fi
python3 -c 'import pandas, scipy' >/dev/null 2>&1 || python3 -m pip install --quiet pandas scipy
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null; } \
    || log "apt-get failed: bench/run will say it skipped wrk"
fi

T=${CARGO_TARGET_DIR:-target}
cargo build --quiet --bin exp --example bench_server --example bare_client
case "$T" in /*) D=$T/debug ;; *) D=$PWD/$T/debug ;; esac
export BENCH_SMOKE=1 EXP=$D/exp BENCH_SERVER=$D/examples/bench_server BARE_CLIENT=$D/examples/bare_client
for b in "python3 bench/scale/run.py" "python3 bench/run/bench.py" "python3 bench/diff/run.py" \
         "bash bench/store/run.sh" "bash bench/remote/run.sh" "python3 bench/view/run.py" \
         "bash bench/cache/run.sh"; do
  log "smoke: $b"
  start=$(date +%s)
  timeout 600 $b >/dev/null
  log "smoke: $b ok in $(( $(date +%s) - start )) s"
done
