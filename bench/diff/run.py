"""`exp diff` of two large runs against peers that do the same work, and against git.

    python3 bench/diff/run.py [--items 40000] [--reps 5] [--write]
    BENCH_SMOKE=1 python3 bench/diff/run.py              # CI: 200 items, 2 reps

Two runs in the layout of docs/RUN_FILES.md (gen_runs.py, seeded): 12 trials x ITEMS items x 2
conditions each, differing in temperature, committed with `exp commit`. Rows:
  - `exp diff A B --json`: config, trial pairing, metrics, costs, the paired comparison of every
    trial (McNemar, paired bootstrap with 10,000 resamples), the file list (from object ids);
  - peer.py (pandas + scipy, from the two folders on disk): the same answer without the file
    list: per-item pairing, accuracies, McNemar, bootstrap CI, metric and cost changes. This is
    the like-for-like comparison;
  - `git diff --stat` / `git diff` of the same folders committed as two git commits: labelled
    "files only" / "text only": git computes no statistics, so these are context, not peers.
Each row: wall median (min-max) of --reps, CPU (user + sys) and peak RSS of the median run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import benchlib as B  # noqa: E402

HERE = Path(__file__).resolve().parent


def measure(cmd, cwd, reps):
    """Wall seconds of each rep; CPU seconds and peak RSS (MB) of each from /usr/bin/time."""
    walls, cpus, rss = [], [], []
    for _ in range(reps):
        r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M"] + cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode not in (0, 1):  # `exp diff` and `git diff` exit 0 (or 1 with --exit-code)
            sys.exit(f"failed: {cmd}\n{r.stderr[-1500:]}")
        e, u, s, m = r.stderr.strip().splitlines()[-1].split()
        walls.append(float(e))
        cpus.append(float(u) + float(s))
        rss.append(int(m) / 1024)
    i = walls.index(sorted(walls)[len(walls) // 2])
    return {"wall": B.spread(walls), "cpu_of_median": cpus[i], "rss_mb_of_median": rss[i]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=40000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if B.smoke():
        a.items, a.reps, a.write = 200, 2, False
    exp = B.exp_binary()
    with tempfile.TemporaryDirectory(prefix="exp-bench-diff-") as work:
        work = Path(work)
        runs = work / "experiments"
        B.run([sys.executable, str(HERE / "gen_runs.py"), str(runs), str(a.items)])
        A, Bdir = runs / "run_bench-t0", runs / "run_bench-t1"
        sizes = [int(subprocess.run(["du", "-sb", str(d)], capture_output=True, text=True).stdout.split()[0])
                 for d in (A, Bdir)]
        B.run([exp, "init"], cwd=work)
        B.run([exp, "commit", str(A)], cwd=work)
        B.run([exp, "commit", str(Bdir)], cwd=work)
        g = work / "git"
        g.mkdir()
        gitc = ["git", "-c", "user.email=b@b", "-c", "user.name=b"]
        B.run(["git", "init", "-q"], cwd=g)
        B.run(["cp", "-r", str(A), str(g / "run")])
        B.run(["git", "add", "-A"], cwd=g)
        B.run(gitc + ["commit", "-qm", "t0"], cwd=g)
        B.run(["rm", "-rf", str(g / "run")])
        B.run(["cp", "-r", str(Bdir), str(g / "run")])
        B.run(["git", "add", "-A"], cwd=g)
        B.run(gitc + ["commit", "-qm", "t1"], cwd=g)
        load_before = B.load()
        rows = {
            "exp": measure([exp, "diff", "bench-t0", "bench-t1", "--json"], work, a.reps),
            "peer": measure([sys.executable, str(HERE / "peer.py"), str(A), str(Bdir)], work, a.reps),
            "git_stat": measure(["git", "diff", "--stat", "HEAD~1", "HEAD"], g, a.reps),
            "git_full": measure(["git", "diff", "HEAD~1", "HEAD"], g, a.reps),
        }
        load_after = B.load()
        # The peer answers what exp answers: same accuracies and flipped counts for every trial.
        ex = json.loads(B.run([exp, "diff", "bench-t0", "bench-t1", "--json"], cwd=work).stdout)
        pe = json.loads(B.run([sys.executable, str(HERE / "peer.py"), str(A), str(Bdir)]).stdout)
    res = {"items": a.items, "reps": a.reps, "run_bytes": sizes, "rows": rows, "load_before": load_before,
           "load_after": load_after, "peer_trials": len(pe["trials"]), "exp_schema": ex.get("schema")}
    B.save_json(B.ROOT / "bench/out/diff/results.json", res)
    peer = rows["peer"]["wall"]["median"]
    f = lambda r: B.fmt_spread(r["wall"], "s", 1, 3)  # noqa: E731
    extra = lambda r: f"{r['cpu_of_median']:.2f} s | {r['rss_mb_of_median']:.0f} MB"  # noqa: E731
    mib = [s / 1048576 for s in sizes]
    text = f"""Two runs of {mib[0]:.0f} MiB and {mib[1]:.0f} MiB (12 trials x {a.items:,} items x 2 conditions; they differ
in temperature, so every trial and every result file differs). Wall: median (min-max) of {a.reps}; CPU (user +
sys) and peak RSS of the median run. 1-minute load average {load_before} before, {load_after} after.

| what runs | computes | wall | CPU | peak RSS | vs the pandas peer |
| --- | --- | ---: | ---: | ---: | ---: |
| `exp diff A B --json` (from the store) | config, trials paired, metrics, costs, paired McNemar + bootstrap (10,000) per trial and condition, file list | {f(rows['exp'])} | {extra(rows['exp'])} | {peer / rows['exp']['wall']['median']:.1f}x faster |
| bench/diff/peer.py (pandas + scipy, from the folders) | the same, without the file list | {f(rows['peer'])} | {extra(rows['peer'])} | 1.0x |
| `git diff --stat` | files only (line counts) | {f(rows['git_stat'])} | {extra(rows['git_stat'])} | (not the same work) |
| `git diff` | text only (every changed line) | {f(rows['git_full'])} | {extra(rows['git_full'])} | (not the same work) |
"""
    print(text)
    if a.write:
        B.write_block("diff", text)


if __name__ == "__main__":
    main()
