#!/usr/bin/env bash
# Store benchmark: exp vs git vs DVC on the same generated ~600 MB run folder, in one run.
#
#   bash bench/store/run.sh            # REPS=3 MB=600 by default; writes bench/out/store/results.md
#   REPS=5 MB=600 bash bench/store/run.sh --write   # also updates the store section of BENCHMARKS.md
#
# Measures (wall clock, medians over REPS fresh stores, warm page cache for every tool):
#   commit      exp commit            | git add -A && git commit | dvc add
#   recommit    the same, unchanged   | the same                 | dvc add (unchanged)
#   checkout    exp checkout --to EMPTY | git checkout into an empty work tree | dvc checkout after rm
#   store size  .exprepo/objects      | .git/objects             | .dvc/cache
# Needs: cargo, python3, git, dvc (`pip install dvc`).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
REPS=${REPS:-3}
MB=${MB:-600}
OUT=${OUT:-$ROOT/bench/out/store}
WRITE=${1:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 ($2)" >&2; exit 1; }; }
need git "apt-get install git"
need dvc "pip install dvc"
need python3 "apt-get install python3"
[ -x /usr/bin/time ] || { echo "missing: /usr/bin/time (apt-get install time)" >&2; exit 1; }

# PROFILE=dev measures the dev build (dependencies are optimized there too, see Cargo.toml) when
# a release build is not available yet.
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  log "building exp (release)"
  cargo build --release --quiet --bin exp
  EXP=$CARGO_TARGET_DIR/release/exp
else
  cargo build --quiet --bin exp
  EXP=$CARGO_TARGET_DIR/debug/exp
fi

mkdir -p "$OUT"
DATA=$OUT/data/run_bench
if [ ! -f "$OUT/data/.done-$MB" ]; then
  log "generating a ${MB} MB run folder"
  rm -rf "$OUT/data"
  python3 bench/store/generate.py "$DATA" --mb "$MB"
  touch "$OUT/data/.done-$MB"
fi
SIZE=$(du -sb "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)

# Wall-clock ms of running "$@" (output discarded, failure aborts); its CPU ms (user + sys,
# children included) is left in $OUT/.cpu for `cpu` to pick up. The untimed `sync` first flushes
# what the previous step left dirty (600 MB checkouts, DVC's cache copy), so no tool pays for
# another's writeback: that penalized whichever tool fsyncs (exp does, for durability).
ms() {
  sync
  /usr/bin/time -f "%e %U %S" -o "$OUT/.time" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }
  python3 - "$OUT/.time" "$OUT/.cpu" <<'PY'
import sys
e, u, s = map(float, open(sys.argv[1]).read().split()[-3:])
open(sys.argv[2], "w").write(str(int((u + s) * 1000)))
print(int(e * 1000))
PY
}
cpu() { cat "$OUT/.cpu"; }
median() { python3 -c 'import sys,statistics; print(int(statistics.median(int(x) for x in sys.argv[1:])))' "$@"; }
dusize() { du -sb "$1" | cut -f1; }

# Every rep of every tool gets its own fresh copy of the folder, store and checkout target, and
# nothing is deleted until all reps are done. Deleting thousands of files just before a step
# would make that step pay for it: ext4 without a journal (this machine's) scans past recently
# freed inodes on every create, so whichever tool creates files first after a mass delete pays
# for the others' leftovers, which measured the delete order rather than the tools. A freed inode
# counts as recent for up to 6 minutes, so a run right after a clean-up (the last run's, below,
# or an interrupted run's, here) first waits that out.
if compgen -G "$OUT/ws-*" >/dev/null; then rm -rf "$OUT"/ws-*; sync; touch "$OUT/.cleaned"; fi
if [ -f "$OUT/.cleaned" ]; then
  age=$(( $(date +%s) - $(stat -c %Y "$OUT/.cleaned") ))
  if [ "$age" -lt 370 ]; then
    log "waiting $((370 - age)) s for the files deleted $age s ago to stop counting as recent (ext4)"
    sleep $((370 - age))
  fi
fi
declare -A R C
for rep in $(seq 1 "$REPS"); do
  for tool in exp git dvc; do
    mkdir -p "$OUT/ws-$tool-$rep/experiments"
    cp -a "$DATA" "$OUT/ws-$tool-$rep/experiments/run_bench"
  done
done

for rep in $(seq 1 "$REPS"); do
  log "rep $rep/$REPS: exp"
  W=$OUT/ws-exp-$rep; cd "$W"; "$EXP" init >/dev/null
  R[exp_commit]+=" $(ms "$EXP" commit experiments/run_bench)"
  C[exp_commit]+=" $(cpu)"
  R[exp_recommit]+=" $(ms "$EXP" commit experiments/run_bench)"
  C[exp_recommit]+=" $(cpu)"
  R[exp_checkout]+=" $(ms "$EXP" checkout bench --to co)"
  C[exp_checkout]+=" $(cpu)"
  R[exp_size]+=" $(dusize .exprepo/objects)"
  cmp <(cd experiments/run_bench && find . -type f -exec md5sum {} + | sort) <(cd co && find . -type f -exec md5sum {} + | sort) >/dev/null \
    || { echo "exp checkout differs from the original" >&2; exit 1; }

  log "rep $rep/$REPS: git"
  W=$OUT/ws-git-$rep; cd "$W"; git init -q; git config user.email b@b; git config user.name bench
  R[git_commit]+=" $(ms sh -c 'git add -A && git commit -qm bench')"
  C[git_commit]+=" $(cpu)"
  R[git_recommit]+=" $(ms sh -c 'git add -A && git commit -qm again --allow-empty')"
  C[git_recommit]+=" $(cpu)"
  mkdir co
  R[git_checkout]+=" $(ms git --work-tree=co checkout -f HEAD -- .)"
  C[git_checkout]+=" $(cpu)"
  R[git_size]+=" $(dusize .git/objects)"

  log "rep $rep/$REPS: dvc"
  W=$OUT/ws-dvc-$rep; cd "$W"
  dvc init --no-scm -q; dvc config cache.type copy
  R[dvc_commit]+=" $(ms dvc add -q experiments/run_bench)"
  C[dvc_commit]+=" $(cpu)"
  R[dvc_recommit]+=" $(ms dvc add -q experiments/run_bench)"
  C[dvc_recommit]+=" $(cpu)"
  # dvc checks out into the folder it tracks; moving the original aside leaves it empty
  # without deleting anything.
  mv experiments/run_bench experiments/original
  R[dvc_checkout]+=" $(ms dvc checkout -q experiments/run_bench.dvc)"
  C[dvc_checkout]+=" $(cpu)"
  R[dvc_size]+=" $(dusize .dvc/cache)"
  cd "$ROOT"
done

declare -A M MC
for k in "${!R[@]}"; do M[$k]=$(median ${R[$k]}); done
for k in "${!C[@]}"; do MC[$k]=$(median ${C[$k]}); done
# ratio PEER EXP [better worse]: "2.5x faster" when exp took less, "1.5x slower" when it took more.
ratio() { python3 -c "a,b=max($1,1),max($2,1); print(f'{a/b:.1f}x ${3:-faster}' if a>=b else f'{b/a:.1f}x ${4:-slower}')"; }
mib() { python3 -c "print(f'{$1/1048576:.0f} MiB')"; }
met() { python3 -c "print('met' if $1 else 'MISSED')"; }

cat > "$OUT/results.md" <<MD
Run folder: $(mib "$SIZE"), $FILES files, 12 trials of JSONL/CSV/JSON/Markdown (bench/store/generate.py).
Medians of $REPS runs, wall clock, warm page cache for every tool, on $(nproc) cores
(1-minute load average at the end: $(cut -d' ' -f1 /proc/loadavg); above 2 means other work shared the cores);
$(git --version), dvc $(dvc --version 2>/dev/null | head -1), exp $PROFILE build. Reproduce: \`bash bench/store/run.sh\`.

| operation | exp | git | dvc | exp vs git | exp vs dvc |
| --- | ---: | ---: | ---: | ---: | ---: |
| commit (store the folder) | ${M[exp_commit]} ms | ${M[git_commit]} ms | ${M[dvc_commit]} ms | $(ratio "${M[git_commit]}" "${M[exp_commit]}") | $(ratio "${M[dvc_commit]}" "${M[exp_commit]}") |
| re-commit, unchanged | ${M[exp_recommit]} ms | ${M[git_recommit]} ms | ${M[dvc_recommit]} ms | $(ratio "${M[git_recommit]}" "${M[exp_recommit]}") | $(ratio "${M[dvc_recommit]}" "${M[exp_recommit]}") |
| checkout into an empty folder | ${M[exp_checkout]} ms | ${M[git_checkout]} ms | ${M[dvc_checkout]} ms | $(ratio "${M[git_checkout]}" "${M[exp_checkout]}") | $(ratio "${M[dvc_checkout]}" "${M[exp_checkout]}") |
| CPU time of commit (user + sys) | ${MC[exp_commit]} ms | ${MC[git_commit]} ms | ${MC[dvc_commit]} ms | $(ratio "${MC[git_commit]}" "${MC[exp_commit]}" less more) | $(ratio "${MC[dvc_commit]}" "${MC[exp_commit]}" less more) |
| CPU time of checkout | ${MC[exp_checkout]} ms | ${MC[git_checkout]} ms | ${MC[dvc_checkout]} ms | $(ratio "${MC[git_checkout]}" "${MC[exp_checkout]}" less more) | $(ratio "${MC[dvc_checkout]}" "${MC[exp_checkout]}" less more) |
| store size | $(mib "${M[exp_size]}") | $(mib "${M[git_size]}") | $(mib "${M[dvc_size]}") | $(python3 -c "print(f'{${M[exp_size]}/${M[git_size]}:.2f}x')") of git | $(python3 -c "print(f'{${M[exp_size]}/${M[dvc_size]}:.2f}x')") of dvc |

Targets (issue 2):
- commit at least 4x faster than git: $(met "${M[git_commit]} >= 4*${M[exp_commit]}"); at least 2x faster than dvc add: $(met "${M[dvc_commit]} >= 2*${M[exp_commit]}")
- re-commit unchanged under 100 ms: $(met "${M[exp_recommit]} < 100")
- checkout at least 3x faster than git: $(met "${M[git_checkout]} >= 3*${M[exp_checkout]}")
- store no larger than git's: $(met "${M[exp_size]} <= ${M[git_size]}")

Raw (ms / bytes per rep): $(for k in $(echo "${!R[@]}" | tr ' ' '\n' | sort); do printf '%s:%s; ' "$k" "${R[$k]}"; done)
MD
cat "$OUT/results.md"
rm -rf "$OUT"/ws-*
sync
touch "$OUT/.cleaned"

if [ "$WRITE" = "--write" ]; then
  python3 - "$OUT/results.md" <<'PY'
import re, sys
body = open(sys.argv[1]).read().strip()
p = "BENCHMARKS.md"
s = open(p).read()
start = "<!-- section: store (bench/store) -->"
end = "<!-- end section: store -->"
i, j = s.index(start) + len(start), s.index(end)
open(p, "w").write(s[:i] + "\n\n" + body + "\n\n" + s[j:])
PY
  log "updated BENCHMARKS.md"
fi
