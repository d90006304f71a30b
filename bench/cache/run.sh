#!/usr/bin/env bash
# Benchmark: the response cache. The shipped demo config (sim model, 2 trials x 2 conditions) on
# ITEMS generated items, run twice in a fresh workspace: the first run sends every request (to
# the built-in sim model), the second finds every answer in the first run's journals and sends
# none. Prints each repetition, min/median/max of both runs' wall times, the requests each sent
# (from `exp run --json`), and the load average before and after, for BENCHMARKS.md.
#
# Usage: bash bench/cache/run.sh [ITEMS] [REPEATS] [--write]   (defaults 10000, 5; EXP=path to
# skip the build). --write puts the output, verbatim, into the `cache` block of BENCHMARKS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
items=${1:-10000}
repeats=${2:-5}
write=${3:-}
if [ "${BENCH_SMOKE:-}" = 1 ]; then items=200; repeats=2; write=""; fi
if [ -n "${EXP:-}" ]; then
  exp=$(realpath "$EXP")
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
  exp="$CARGO_TARGET_DIR/release/exp"
fi

work=$(mktemp -d /tmp/exp-bench-cache.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 - "$work/data.jsonl" "$items" <<'PY'
import json, random, sys
rng = random.Random(7)
words = ["good", "bad", "fine", "great", "awful", "plain", "odd", "calm", "loud", "warm"]
labels = ["positive", "negative", "neutral"]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        f.write(json.dumps({"id": f"s{i:06d}", "text": text, "label": rng.choice(labels)}) + "\n")
PY

secs() { # secs OUT CMD…: runs CMD with stdout to OUT, prints its wall time in seconds
  local out=$1 s e; shift; s=$(date +%s.%N); "$@" >"$out" 2>/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f / %.3f / %.3f", a[1], (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[NR]}'; }
sent() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["reused"])' "$1"; }

main() {
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "items: $items; requests per run: $((items * 4)) (2 trials x 2 conditions); exp: $("$exp" --version)"
cold=(); warm=()
for rep in $(seq "$repeats"); do
  ws="$work/ws$rep"
  mkdir -p "$ws/data"
  cp -r "$repo/config" "$ws/config"
  cp "$work/data.jsonl" "$ws/data/demo_sentiment.jsonl"
  (cd "$ws" && "$exp" init >/dev/null)
  c=$(cd "$ws" && secs "$work/cold.json" "$exp" run --run-id cold --json)
  w=$(cd "$ws" && secs "$work/warm.json" "$exp" run --run-id warm --json)
  cold+=("$c"); warm+=("$w")
  printf 'rep %d: first run %.3f s (sent, reused: %s), second run %.3f s (sent, reused: %s)\n' \
    "$rep" "$c" "$(sent "$work/cold.json")" "$w" "$(sent "$work/warm.json")"
  rm -rf "$ws"
done
echo "first run  (cold cache) min / median / max: $(printf '%s\n' "${cold[@]}" | stats) s"
echo "second run (warm cache) min / median / max: $(printf '%s\n' "${warm[@]}" | stats) s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
main | tee "$work/out.txt"
if [ "$write" = "--write" ]; then
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import benchlib; benchlib.write_block("cache", "```\n" + open(sys.argv[2]).read() + "```\n")' \
    "$repo/bench/lib" "$work/out.txt"
  echo "updated the cache block of BENCHMARKS.md" >&2
fi
