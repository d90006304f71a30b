#!/usr/bin/env bash
# Benchmark: `exp diff` of two ~600 MB runs (12 trials x 40,000 items x 2 conditions each, in the
# layout of docs/RUN_FILES.md) that differ in temperature, against `git diff --stat` of the same
# two folders committed in git (a file-level diff only: exp also parses and compares every
# changed metrics/costs/per-item-scores file and runs the paired tests).
#
# Usage: bash bench/diff/run.sh [ITEMS] [REPEATS]     (defaults 40000, 5)
# Prints the medians and a Markdown table for BENCHMARKS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
items=${1:-40000}
repeats=${2:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
exp="$CARGO_TARGET_DIR/release/exp"

work=$(mktemp -d /tmp/exp-bench-diff.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "generating two runs of 12 trials x $items items in $work ..." >&2
python3 "$here/gen_runs.py" "$work/experiments" "$items"
size() { du -sb "$1" | cut -f1; }
sa=$(size "$work/experiments/run_bench-t0"); sb=$(size "$work/experiments/run_bench-t1")
echo "run sizes: $((sa / 1048576)) MiB and $((sb / 1048576)) MiB" >&2

cd "$work"
"$exp" init >/dev/null
"$exp" commit experiments/run_bench-t0 >/dev/null
"$exp" commit experiments/run_bench-t1 >/dev/null

# git: the same two folders as two commits of one path, so git diffs tree against tree.
g="$work/git"; mkdir -p "$g"; (cd "$g" && git init -q && git config user.email b@b && git config user.name b)
cp -r "$work/experiments/run_bench-t0" "$g/run"; (cd "$g" && git add -A && git commit -qm t0)
rm -rf "$g/run"; cp -r "$work/experiments/run_bench-t1" "$g/run"; (cd "$g" && git add -A && git commit -qm t1)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_it() { # prints seconds for one run of "$@"
  local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l
}
exp_full=(); exp_stat=(); git_stat=(); git_full=()
for _ in $(seq "$repeats"); do
  exp_full+=("$(time_it "$exp" diff bench-t0 bench-t1 --json)")
  exp_stat+=("$(time_it "$exp" diff bench-t0 bench-t1 --stat)")
  git_stat+=("$(cd "$g" && time_it git diff --stat HEAD~1 HEAD)")
  git_full+=("$(cd "$g" && time_it git diff HEAD~1 HEAD)")
done
m_exp=$(printf '%s\n' "${exp_full[@]}" | median)
m_exp_stat=$(printf '%s\n' "${exp_stat[@]}" | median)
m_git_stat=$(printf '%s\n' "${git_stat[@]}" | median)
m_git_full=$(printf '%s\n' "${git_full[@]}" | median)
# The same diff with the metrics file of one trial changed only: everything else skipped by id.
cp -r "$work/experiments/run_bench-t1" "$work/experiments/run_bench-t1b"
python3 - "$work/experiments/run_bench-t1b" <<'PY'
import json, sys, glob
p = sorted(glob.glob(sys.argv[1] + "/*/results/metrics.json"))[0]
m = json.load(open(p)); m["conditions"]["control"]["accuracy"] = 0.5; json.dump(m, open(p, "w"))
PY
"$exp" commit experiments/run_bench-t1b --run bench-t1 >/dev/null
one=(); for _ in $(seq "$repeats"); do one+=("$(time_it "$exp" diff bench-t1)"); done
m_one=$(printf '%s\n' "${one[@]}" | median)
peak=$( { /usr/bin/time -f %M "$exp" diff bench-t0 bench-t1~1 --json >/dev/null; } 2>&1 | tail -1)

ratio() { echo "$m_git_stat / $1" | bc -l | xargs printf %.0fx; }
cat <<MD
| diff of two runs ($((sa / 1048576)) MiB and $((sb / 1048576)) MiB; 12 trials x $items items x 2 conditions; differ in temperature) | median of $repeats | git diff --stat takes |
| --- | --- | --- |
| \`exp diff A B --json\` (config, trial pairing, metrics, paired McNemar on $((24 * items)) item pairs, costs, files) | $(printf %.3f "$m_exp") s | $(ratio "$m_exp") as long |
| \`exp diff A B --stat\` (the same, rendered, with the file list) | $(printf %.3f "$m_exp_stat") s | $(ratio "$m_exp_stat") as long |
| \`git diff --stat\` (files only, with line counts) | $(printf %.3f "$m_git_stat") s | |
| \`git diff\` (full text diff) | $(printf %.3f "$m_git_full") s | |
| \`exp diff B\` after changing one trial's metrics.json (all other subtrees skipped by id) | $(printf %.3f "$m_one") s | |

Peak memory of \`exp diff A B --json\`: $((peak / 1024)) MiB.
MD
