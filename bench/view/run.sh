#!/usr/bin/env bash
# Benchmark: `exp view` on trials of 1,000, 10,000 and 100,000 items (both conditions, inputs and
# answers of realistic size, committed to a store). For each: the time until the first page of
# items has arrived (all items; a filter; a text search; a page deep in the list), and the
# server's resident memory after serving them, from /proc/PID/status (VmRSS now, VmHWM peak).
# Each cell is the median wall time and, in brackets, the median CPU time the server spent on
# the request (utime + stime from /proc/PID/stat): the CPU time does not depend on what else
# the machine is doing, the wall time does.
#
# Usage: bash bench/view/run.sh [REPEATS]      (default 5; EXP=path/to/exp to skip the build)
# Prints the medians as a Markdown table for BENCHMARKS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
repeats=${1:-5}
if [ -z "${EXP:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
  EXP="$CARGO_TARGET_DIR/release/exp"
fi
work=$(mktemp -d /tmp/exp-bench-view.XXXXXX)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
"$EXP" init >/dev/null
declare -A commit slug
for n in 1000 10000 100000; do
  slug[$n]=$(python3 "$here/gen_trial.py" "$work/experiments/run_items$n" "$n")
  commit[$n]=$("$EXP" commit "experiments/run_items$n" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["commit"])')
  echo "items $n: $(du -sh "experiments/run_items$n" | cut -f1) run folder, commit ${commit[$n]:0:12}" >&2
done
rm -rf "$work/experiments"   # the server reads the store only

"$EXP" view --port 0 > "$work/view.out" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q http:// "$work/view.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$work/view.out")
mem() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' "/proc/$server/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
fetch() { # "wall-seconds cpu-seconds" of one request; fails on anything but 200
  local before after wall
  before=$(ticks)
  wall=$(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$1" | awk '$1 != 200 {exit 1} {print $2}')
  after=$(ticks)
  echo "$wall $(echo "($after - $before) / $(getconf CLK_TCK)" | bc -l)"
}
echo "| items | first page (all) | filter: fixed | search by id | page n/100 | server RSS after | peak RSS |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in 1000 10000 100000; do
  base="${url}run/${commit[$n]}/${slug[$n]}"
  row="| $n"
  for path in "all/1.html" "fixed/1.html" "all/1.html?q=item-$((n / 2))" "all/$((n / 100)).html"; do
    runs=$(for _ in $(seq "$repeats"); do fetch "$base/$path"; done)
    wall=$(echo "$runs" | cut -d' ' -f1 | median)
    cpu=$(echo "$runs" | cut -d' ' -f2 | median)
    row="$row | $(printf '%.2f s (%.2f s)' "$wall" "$cpu")"
  done
  echo "$row | $(mem VmRSS) MiB | $(mem VmHWM) MiB |"
done
