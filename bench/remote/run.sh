#!/usr/bin/env bash
# Push and clone a ~600 MB generated run with exp, against `dvc push` / `dvc pull`, to a folder
# remote and to a loopback S3 server (s3s-fs) at the same endpoint, in one run; prints medians.
#
# usage: bash bench/remote/run.sh [REPEATS=3] [SIZE_MB=600]
#   EXP=path/to/exp   (default target/release/exp, else target/debug/exp)
# Needs: s3s-fs (scripts/test.sh installs it), dvc with dvc-s3 (pip install 'dvc[s3]'), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=$(pwd)/bench/remote
REPEATS=${1:-3}
SIZE=${2:-600}
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
mkdir -p "$dv"
cp -r "$ws/experiments/run_bench" "$dv/run_bench"
(cd "$dv" && dvc init --no-scm -q && dvc add run_bench -q >/dev/null)

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
python3 - "$results" "$run_bytes" "$REPEATS" "$SIZE" "$EXP" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
run_bytes, repeats, size, exe = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
m = {}
for k, v in rows:
    m.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in m.items()}
mb = run_bytes / 1e6
print(f"Run: {mb:.0f} MB in {repeats} rounds (medians); exp binary: {exe}\n")
print("| operation | remote | exp | DVC | DVC / exp |")
print("| --- | --- | --- | --- | --- |")
for kind, label in (("folder", "folder"), ("s3", "S3 (s3s-fs, loopback)")):
    push, dpush = med[f"exp_push_{kind}"], med[f"dvc_push_{kind}"]
    clone, co, dpull = med[f"exp_clone_{kind}"], med[f"exp_checkout_{kind}"], med[f"dvc_pull_{kind}"]
    pr, cr = int(med[f"exp_push_{kind}_requests"]), int(med[f"exp_clone_{kind}_requests"])
    print(f"| push | {label} | {push:.2f} s ({mb/push:.0f} MB/s, {pr} requests) | {dpush:.2f} s | {dpush/push:.1f}x |")
    print(f"| clone (store only) vs pull | {label} | {clone:.2f} s ({cr} requests) | {dpull:.2f} s | {dpull/clone:.1f}x |")
    print(f"| clone + checkout vs pull | {label} | {clone+co:.2f} s | {dpull:.2f} s | {dpull/(clone+co):.1f}x |")
    eb, db = med[f"exp_{kind}_bytes"], med[f"dvc_{kind}_bytes"]
    print(f"| remote storage | {label} | {eb/1e6:.0f} MB | {db/1e6:.0f} MB | {db/eb:.1f}x |")
PY
