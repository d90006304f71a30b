#!/usr/bin/env bash
# Store benchmark: exp vs git vs DVC on the same generated ~600 MB run folder, in one run.
#
#   bash bench/store/run.sh            # REPS=5 MB=600 by default; writes bench/out/store/results.md
#   bash bench/store/run.sh --write    # also updates the `store` block of BENCHMARKS.md
#   BENCH_SMOKE=1 bash bench/store/run.sh   # CI: a 5 MB folder, 2 reps, seconds
#
# Measures (wall clock, median (min-max) over REPS fresh stores, warm page cache for every tool):
#   commit      exp commit            | git add -A && git commit | dvc add
#   recommit    the same, unchanged   | the same                 | dvc add (unchanged)
#   checkout    exp checkout --to NEW | git checkout into a new work tree | (dvc cannot: n/a)
#   checkout after the folder was deleted: exp checkout | git checkout -f | dvc checkout
#   gc          exp gc                | git gc                   | (n/a)
#   store size  .exprepo/objects before and after gc | .git/objects: loose, and after git gc | .dvc/cache
# Needs: cargo, python3, git, dvc (`pip install dvc`; without it the dvc column says skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
REPS=${REPS:-5}
MB=${MB:-600}
if [ "${BENCH_SMOKE:-}" = 1 ]; then REPS=2; MB=2; OUT=${OUT:-$ROOT/bench/out/store-smoke}; fi
OUT=${OUT:-$ROOT/bench/out/store}
WRITE=${1:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 ($2)" >&2; exit 1; }; }
need git "apt-get install git"
HAVE_DVC=1
command -v dvc >/dev/null 2>&1 || { HAVE_DVC=0; echo "dvc not installed (pip install dvc): its column is skipped" >&2; }
need python3 "apt-get install python3"
[ -x /usr/bin/time ] || { echo "missing: /usr/bin/time (apt-get install time)" >&2; exit 1; }

# PROFILE=dev measures the dev build (dependencies are optimized there too, see Cargo.toml) when
# a release build is not available yet.
PROFILE=${PROFILE:-release}
if [ -n "${EXP:-}" ]; then
  EXP=$(realpath "$EXP"); PROFILE="given (EXP=$EXP)"
elif [ "$PROFILE" = release ]; then
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
  settle "$1"
  /usr/bin/time -f "%e %U %S" -o "$OUT/.time" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }
  python3 - "$OUT/.time" "$OUT/.cpu" <<'PY'
import sys
e, u, s = map(float, open(sys.argv[1]).read().split()[-3:])
open(sys.argv[2], "w").write(str(int((u + s) * 1000)))
print(int(e * 1000))
PY
}
cpu() { cat "$OUT/.cpu"; }
# Fifteen copies of the run folder, their stores and checkouts outgrow the page cache, so a step
# could find its inputs evicted, or pay (in its own sys time) for reclaiming pages others left.
# Where the kernel allows it (root), every timed step therefore starts from an emptied page
# cache with its own workspace (inputs, store, earlier outputs: the cwd) read back in: the same
# warm cache and no reclaim for every tool. DVC, a Python program, also gets its modules read
# back in (an untimed `dvc doctor` imports them), as exp's and git's binaries are.
DROP=0
if [ -w /proc/sys/vm/drop_caches ] && [ "${BENCH_SMOKE:-}" != 1 ]; then DROP=1; fi
settle() {
  [ "$DROP" = 1 ] || return 0
  echo 3 > /proc/sys/vm/drop_caches
  find . -type f -print0 | xargs -0 -r cat > /dev/null
  if [ "$1" = dvc ]; then dvc doctor > /dev/null 2>&1 || true; else "$1" --version > /dev/null 2>&1 || true; fi
}
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
  if [ "$age" -lt 370 ] && [ "${BENCH_SMOKE:-}" != 1 ]; then
    log "waiting $((370 - age)) s for the files deleted $age s ago to stop counting as recent (ext4)"
    sleep $((370 - age))
  fi
fi
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
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
  # The folder deleted (untimed; each tool deletes its own, right before its own checkout).
  mv experiments/run_bench deleted; rm -rf deleted
  R[exp_restore]+=" $(ms "$EXP" checkout bench)"
  C[exp_restore]+=" $(cpu)"
  # gc once (rep 1): git gc of a 600 MB folder takes minutes, and sizes do not vary by rep.
  if [ "$rep" = 1 ]; then
    R[exp_gc]+=" $(ms "$EXP" gc)"
    R[exp_size_gc]+=" $(dusize .exprepo/objects)"
  fi

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
  rm -rf experiments
  R[git_restore]+=" $(ms git checkout -f HEAD -- .)"
  C[git_restore]+=" $(cpu)"
  if [ "$rep" = 1 ]; then
    R[git_gc]+=" $(ms git gc -q)"
    R[git_size_gc]+=" $(dusize .git/objects)"
  fi

  [ "$HAVE_DVC" = 1 ] || { cd "$ROOT"; continue; }
  log "rep $rep/$REPS: dvc"
  W=$OUT/ws-dvc-$rep; cd "$W"
  dvc init --no-scm -q; dvc config cache.type copy
  R[dvc_commit]+=" $(ms dvc add -q experiments/run_bench)"
  C[dvc_commit]+=" $(cpu)"
  R[dvc_recommit]+=" $(ms dvc add -q experiments/run_bench)"
  C[dvc_recommit]+=" $(cpu)"
  # dvc checks out into the folder it tracks; moving the original aside leaves it empty
  # without deleting anything.
  mv experiments/run_bench experiments/original; rm -rf experiments/original
  R[dvc_restore]+=" $(ms dvc checkout -q experiments/run_bench.dvc)"
  C[dvc_restore]+=" $(cpu)"
  R[dvc_size]+=" $(dusize .dvc/cache)"
  cd "$ROOT"
done

declare -A M MC
for k in "${!R[@]}"; do M[$k]=$(median ${R[$k]}); done
for k in "${!C[@]}"; do MC[$k]=$(median ${C[$k]}); done
# ms KEY: "median ms (min-max)"; "skipped" when the tool did not run.
t() { [ -n "${R[$1]:-}" ] || { echo "skipped"; return; }; python3 -c 'import sys,statistics; v=[int(x) for x in sys.argv[1:]]; print(f"{int(statistics.median(v)):,} ms ({min(v):,}-{max(v):,})")' ${R[$1]}; }
c() { [ -n "${MC[$1]:-}" ] && echo "${MC[$1]} ms" || echo "skipped"; }
# ratio PEER_KEY EXP_KEY [better worse] over medians: "2.5x faster" / "1.5x slower"; "" if a side is missing.
ratio() { [ -n "${M[$1]:-}" ] && [ -n "${M[$2]:-}" ] || { echo "n/a"; return; }
  python3 -c "a,b=max(${M[$1]},1),max(${M[$2]},1); print(f'{a/b:.1f}x ${3:-faster}' if a>=b else f'{b/a:.1f}x ${4:-slower}')"; }
cratio() { [ -n "${MC[$1]:-}" ] && [ -n "${MC[$2]:-}" ] || { echo "n/a"; return; }
  python3 -c "a,b=max(${MC[$1]},1),max(${MC[$2]},1); print(f'{a/b:.1f}x less' if a>=b else f'{b/a:.1f}x more')"; }
mib() { [ -n "${M[$1]:-}" ] && python3 -c "print(f'{${M[$1]}/1048576:.0f} MiB')" || echo "skipped"; }
of() { [ -n "${M[$1]:-}" ] && [ -n "${M[$2]:-}" ] && python3 -c "print(f'{${M[$1]}/${M[$2]}:.2f}x of')" || echo "n/a"; }
met() { python3 -c "print('met' if $1 else '**not met**')"; }
DVC_VERSION=$( [ "$HAVE_DVC" = 1 ] && dvc --version 2>/dev/null | head -1 || echo "not installed (skipped)")

cat > "$OUT/results.md" <<MD
Run folder: $(python3 -c "print(f'{$SIZE/1048576:.0f} MiB')"), $FILES files, 12 trials of JSONL/CSV/JSON/Markdown (bench/store/generate.py).
Median (min-max) of $REPS runs, wall clock, each rep in fresh folders; $( [ "$DROP" = 1 ] && echo "before every timed step the page cache is emptied and the step's workspace read back in (warm inputs, no reclaim)" || echo "page cache as it comes (not emptied: not root)"); on
$(nproc) cores; 1-minute load average $LOAD_BEFORE before, $(cut -d' ' -f1 /proc/loadavg) after (above 2: other work shared the cores).
$(git --version), dvc $DVC_VERSION, exp $PROFILE build. Reproduce: \`bash bench/store/run.sh\`.

| operation | exp | git | dvc | exp vs git | exp vs dvc |
| --- | ---: | ---: | ---: | ---: | ---: |
| commit (store the folder) | $(t exp_commit) | $(t git_commit) | $(t dvc_commit) | $(ratio git_commit exp_commit) | $(ratio dvc_commit exp_commit) |
| re-commit, unchanged | $(t exp_recommit) | $(t git_recommit) | $(t dvc_recommit) | $(ratio git_recommit exp_recommit) | $(ratio dvc_recommit exp_recommit) |
| checkout into a new folder | $(t exp_checkout) | $(t git_checkout) | n/a (dvc checks out in place only) | $(ratio git_checkout exp_checkout) | |
| checkout after the run folder was deleted | $(t exp_restore) | $(t git_restore) | $(t dvc_restore) | $(ratio git_restore exp_restore) | $(ratio dvc_restore exp_restore) |
| CPU time of commit (user + sys, median) | $(c exp_commit) | $(c git_commit) | $(c dvc_commit) | $(cratio git_commit exp_commit) | $(cratio dvc_commit exp_commit) |
| CPU time of checkout into a new folder | $(c exp_checkout) | $(c git_checkout) | | $(cratio git_checkout exp_checkout) | |
| gc (\`exp gc\` / \`git gc\`; first rep only) | $(t exp_gc) | $(t git_gc) | | | |
| store size after commit (git: loose objects) | $(mib exp_size) | $(mib git_size) | $(mib dvc_size) | $(of exp_size git_size) git | $(of exp_size dvc_size) dvc |
| store size after gc (first rep) | $(mib exp_size_gc) | $(mib git_size_gc) | | $(of exp_size_gc git_size_gc) git | |

Targets (issue 15, same run): commit <= 1.5 s: $(met "${M[exp_commit]} <= 1500"); commit >= 6x git: $(met "${M[git_commit]} >= 6*${M[exp_commit]}"); commit >= 3x \`dvc add\`: $( [ "$HAVE_DVC" = 1 ] && met "${M[dvc_commit]} >= 3*${M[exp_commit]}" || echo "dvc skipped");
checkout >= 4x git into a new folder: $(met "${M[git_checkout]} >= 4*${M[exp_checkout]}"), after a deletion: $(met "${M[git_restore]} >= 4*${M[exp_restore]}");
store <= git's after \`git gc\`: $(met "${M[exp_size_gc]} <= ${M[git_size_gc]}").

Raw (ms or bytes per rep): $(for k in $(echo "${!R[@]}" | tr ' ' '\n' | sort); do printf '%s:%s; ' "$k" "${R[$k]}"; done)
MD
cat "$OUT/results.md"
rm -rf "$OUT"/ws-*
sync
touch "$OUT/.cleaned"

if [ "$WRITE" = "--write" ] && [ "${BENCH_SMOKE:-}" != 1 ]; then
  python3 -c 'import sys; sys.path.insert(0, "bench/lib"); import benchlib; benchlib.write_block("store", open(sys.argv[1]).read())' "$OUT/results.md"
  log "updated the store block of BENCHMARKS.md"
fi
