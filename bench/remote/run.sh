#!/usr/bin/env bash
# Push and clone a ~600 MB generated run with exp, against `dvc push` / `dvc pull`, to a folder
# remote and to a loopback S3 server (s3s-fs) at the same endpoint, in one run; prints median
# (min-max) of every timing, MB/s on the bytes each tool actually sent or received (what landed
# in the remote), and the load average.
#
# usage: bash bench/remote/run.sh [REPEATS=5] [SIZE_MB=600] [--write]   (--write: the `remote` block of BENCHMARKS.md)
#   BENCH_SMOKE=1 bash bench/remote/run.sh      # CI: a 2 MB run, 2 rounds
#   EXP=path/to/exp   (default target/release/exp, else target/debug/exp)
# Needs: s3s-fs (scripts/test.sh installs it), dvc with dvc-s3 (pip install 'dvc[s3]'; without it
# the DVC column says skipped), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=$(pwd)/bench/remote
REPEATS=${1:-5}
SIZE=${2:-600}
WRITE=${3:-}
if [ "${BENCH_SMOKE:-}" = 1 ]; then REPEATS=2; SIZE=2; WRITE=""; fi
HAVE_DVC=1
command -v dvc >/dev/null 2>&1 || { HAVE_DVC=0; echo "dvc not installed (pip install 'dvc[s3]'): the DVC column is skipped" >&2; }
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
EXP=${EXP:-}
if [ -z "$EXP" ]; then
  if [ -x "${CARGO_TARGET_DIR:-target}/release/exp" ]; then EXP="${CARGO_TARGET_DIR:-target}/release/exp"
  else EXP="${CARGO_TARGET_DIR:-target}/debug/exp"; fi
fi
EXP=$(realpath "$EXP")
work=$(mktemp -d /tmp/exp-bench-remote.XXXXXX)
s3pid=""
cleanup() { [ -n "$s3pid" ] && kill "$s3pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '==> %s\n' "$*" >&2; }

log "generating a ${SIZE} MB run in $work"
ws=$work/ws
mkdir -p "$ws/experiments"
# The store benchmark's generator: text that compresses like real model output.
python3 bench/store/generate.py "$ws/experiments/run_bench" --mb "$SIZE" >/dev/null
(cd "$ws" && "$EXP" init >/dev/null && "$EXP" commit experiments/run_bench -m bench >/dev/null)
dv=$work/dvc
if [ "$HAVE_DVC" = 1 ]; then
  mkdir -p "$dv"
  cp -r "$ws/experiments/run_bench" "$dv/run_bench"
  (cd "$dv" && dvc init --no-scm -q && dvc add run_bench -q >/dev/null)
fi

log "starting s3s-fs on 127.0.0.1"
mkdir -p "$work/s3/bench"
RUST_LOG=info s3s-fs --host 127.0.0.1 --port 0 --access-key benchkey --secret-key benchsecret \
  "$work/s3" >"$work/s3.log" 2>&1 &
s3pid=$!
for _ in $(seq 100); do grep -q 'server is running' "$work/s3.log" && break; sleep 0.1; done
port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/s3.log" | head -1 | sed 's/.*://')
endpoint=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint AWS_ALLOW_HTTP=true

results=$work/results.tsv
: >"$results"
# time_it NAME CMD...: runs CMD, appends NAME<TAB>seconds.
time_it() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.out" 2>"$work/last.err" || { cat "$work/last.out" "$work/last.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo -e "$name\t$(echo "$t1 - $t0" | bc)" >>"$results"
}
size_of() { du -sb "$1" | cut -f1; }
# requests NAME: the request count in the JSON report the last timed exp command printed.
requests() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print((r.get("fetch") or r)["transfer"]["requests"])' \
    "$work/last.out" | sed "s/^/$1\t/" >>"$results"
}

dvc_pull_dir() { # dvc_pull_dir DIR REMOTE_NAME URL [endpoint]: a fresh DVC project that only has the .dvc file
  mkdir -p "$1"
  (cd "$1" && dvc init --no-scm -q && cp "$dv/run_bench.dvc" . && dvc remote add -d "$2" "$3" >/dev/null)
  if [ -n "${4:-}" ]; then (cd "$1" && dvc remote modify "$2" endpointurl "$4" && dvc remote modify "$2" region us-east-1); fi
}

for i in $(seq "$REPEATS"); do
  log "round $i/$REPEATS"
  # exp, folder remote
  (cd "$ws" && "$EXP" remote add "f$i" "$work/exp-folder-$i" >/dev/null)
  time_it exp_push_folder bash -c "cd '$ws' && '$EXP' push f$i --all --json"
  requests exp_push_folder_requests
  time_it exp_clone_folder bash -c "cd '$work' && '$EXP' clone '$work/exp-folder-$i' clone-f$i --json"
  requests exp_clone_folder_requests
  time_it exp_checkout_folder bash -c "cd '$work/clone-f$i' && '$EXP' checkout bench"
  echo -e "exp_folder_bytes\t$(size_of "$work/exp-folder-$i")" >>"$results"
  # exp, S3
  (cd "$ws" && "$EXP" remote add "s$i" "s3://bench/exp-$i" >/dev/null)
  time_it exp_push_s3 bash -c "cd '$ws' && '$EXP' push s$i --all --json"
  requests exp_push_s3_requests
  time_it exp_clone_s3 bash -c "cd '$work' && '$EXP' clone s3://bench/exp-$i clone-s$i --json"
  requests exp_clone_s3_requests
  time_it exp_checkout_s3 bash -c "cd '$work/clone-s$i' && '$EXP' checkout bench"
  echo -e "exp_s3_bytes\t$(size_of "$work/s3/bench/exp-$i")" >>"$results"
  if [ "$HAVE_DVC" = 0 ]; then rm -rf "$work"/clone-* "$work"/exp-folder-* "$work"/s3/bench/*; continue; fi
  # DVC, local remote
  (cd "$dv" && dvc remote add "f$i" "$work/dvc-folder-$i" >/dev/null)
  time_it dvc_push_folder bash -c "cd '$dv' && dvc push -r f$i"
  dvc_pull_dir "$work/dvc-pull-f$i" "f$i" "$work/dvc-folder-$i"
  time_it dvc_pull_folder bash -c "cd '$work/dvc-pull-f$i' && dvc pull"
  echo -e "dvc_folder_bytes\t$(size_of "$work/dvc-folder-$i")" >>"$results"
  # DVC, S3 remote at the same endpoint
  (cd "$dv" && dvc remote add "s$i" "s3://bench/dvc-$i" >/dev/null && dvc remote modify "s$i" endpointurl "$endpoint" && dvc remote modify "s$i" region us-east-1)
  time_it dvc_push_s3 bash -c "cd '$dv' && dvc push -r s$i"
  dvc_pull_dir "$work/dvc-pull-s$i" "s$i" "s3://bench/dvc-$i" "$endpoint"
  # dvc_s3s.py: dvc itself, with a shim for s3s-fs's answer to DVC's connection check (see there).
  time_it dvc_pull_s3 bash -c "cd '$work/dvc-pull-s$i' && python3 '$here/dvc_s3s.py' pull"
  echo -e "dvc_s3_bytes\t$(size_of "$work/s3/bench/dvc-$i")" >>"$results"
  # Each round's copies are removed so the disk does not fill up.
  rm -rf "$work"/clone-* "$work"/dvc-pull-* "$work"/exp-folder-* "$work"/dvc-folder-* "$work"/s3/bench/*
done

run_bytes=$(size_of "$ws/experiments/run_bench")
python3 - "$results" "$run_bytes" "$REPEATS" "$SIZE" "$EXP" "$LOAD_BEFORE" "$(cut -d' ' -f1 /proc/loadavg)" "$(dvc --version 2>/dev/null || echo none)" > "$work/table.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
run_bytes, repeats, size, exe, l0, l1, dvcv = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
m = {}
for k, v in rows:
    m.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in m.items()}
def t(k):
    if k not in m: return "skipped"
    v = m[k]; return f"{statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})"
def ratio(dk, ek):
    return f"{med[dk]/med[ek]:.1f}x" if dk in med and ek in med else "n/a"
print(f"One run of {run_bytes/1e6:.0f} MB ({size} MB asked of bench/store/generate.py), committed once; {repeats} rounds, "
      f"each against fresh remotes. Times: median (min-max). MB/s: bytes that landed in the remote (what was sent; a clone or "
      f"pull receives the same) / median time. DVC {dvcv.strip()}; exp binary {exe}. 1-minute load average {l0} before, {l1} after.\n")
print("| operation | remote | exp | DVC | DVC / exp |")
print("| --- | --- | --- | --- | --- |")
for kind, label in (("folder", "folder"), ("s3", "S3 (s3s-fs, loopback)")):
    eb, db = med[f"exp_{kind}_bytes"], med.get(f"dvc_{kind}_bytes")
    push, clone, co = med[f"exp_push_{kind}"], med[f"exp_clone_{kind}"], med[f"exp_checkout_{kind}"]
    pr, cr = int(med[f"exp_push_{kind}_requests"]), int(med[f"exp_clone_{kind}_requests"])
    dpush = f"{t(f'dvc_push_{kind}')}" + (f", {db/1e6/med[f'dvc_push_{kind}']:.0f} MB/s" if db else "")
    print(f"| push | {label} | {t(f'exp_push_{kind}')}, {eb/1e6/push:.0f} MB/s of {eb/1e6:.0f} MB sent, {pr} requests | {dpush} | {ratio(f'dvc_push_{kind}', f'exp_push_{kind}')} |")
    both = [a + b for a, b in zip(m[f"exp_clone_{kind}"], m[f"exp_checkout_{kind}"])]
    cc = f"{statistics.median(both):.2f} s ({min(both):.2f}-{max(both):.2f})"
    dpull = t(f"dvc_pull_{kind}") + (f", {db/1e6/med[f'dvc_pull_{kind}']:.0f} MB/s" if db else "")
    dr = f"{med[f'dvc_pull_{kind}']/statistics.median(both):.1f}x" if f"dvc_pull_{kind}" in med else "n/a"
    print(f"| clone + checkout vs pull (both fetch and write the files) | {label} | {cc}, {eb/1e6/statistics.median(both):.0f} MB/s | {dpull} | {dr} |")
    print(f"| clone, store only (no DVC equivalent) | {label} | {t(f'exp_clone_{kind}')}, {eb/1e6/clone:.0f} MB/s, {cr} requests | | |")
    print(f"| remote storage | {label} | {eb/1e6:.0f} MB | {f'{db/1e6:.0f} MB' if db else 'skipped'} | {f'{db/eb:.1f}x' if db else 'n/a'} |")
PY
cat "$work/table.md"
if [ "$WRITE" = "--write" ]; then
  python3 -c 'import sys; sys.path.insert(0, "bench/lib"); import benchlib; benchlib.write_block("remote", open(sys.argv[1]).read())' "$work/table.md"
  log "updated the remote block of BENCHMARKS.md"
fi
