"""Growth with history: how exp's store commands scale with the number of runs in one store.

    python3 bench/scale/run.py [--runs 10,100,1000] [--items 250] [--reps 5] [--write]
    BENCH_SMOKE=1 python3 bench/scale/run.py       # CI: 2 and 6 runs of 20 items, seconds

One real run is made with `exp run` (the built-in sim model, 4 trials x 2 conditions x ITEMS
items); every other run is generated from it (gen_run below): the same config, prompts, dataset
and request files (shared between runs, as in a real workspace), its own responses (each run's
sim answers differ on a seeded 10% of items), predictions, per-item scores, metrics and report.
Runs are committed one by one into one store. At each checkpoint (--runs) it times, median
(min-max) of --reps: `exp commit` of one more run, `exp log`, `exp list` (the cross-run table),
`exp diff` of two runs, `exp fsck`, `exp gc`; `exp push` of one new run to a folder remote that
holds all the others (and the bytes that push added to the remote), `exp fetch` of it into a
clone that has the others; and the store's size against the sum of the run folders' sizes.
Writes bench/out/scale/results.json, bench/out/scale/*.svg, and with --write the `scale`
block of BENCHMARKS.md and docs/bench/scale-*.svg.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import benchlib as B  # noqa: E402

LABELS = ["positive", "negative", "neutral"]
WORDS = ("the service was quick but the refund took weeks and nobody answered my emails about "
         "the order which arrived broken twice so I would not recommend this shop to anyone").split()


def make_template(exp, ws, items):
    """A real run of `exp run` (sim model) to generate the others from."""
    rnd = random.Random(0)
    (ws / "data").mkdir(parents=True)
    (ws / "config/prompts").mkdir(parents=True)
    with open(ws / "data/reviews.jsonl", "w") as f:
        for i in range(items):
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(25, 60)))
            f.write(json.dumps({"id": f"r{i:05d}", "text": text, "label": rnd.choice(LABELS)}) + "\n")
    (ws / "config/prompts/control.txt").write_text(
        "You are a careful annotator. Classify the sentiment of the customer message as positive, "
        "negative or neutral. Answer with one word.\n")
    (ws / "config/prompts/treatment.md").write_text(
        "# Labelling guide\n\nYou label customer messages for the support dashboard.\n\n- Complaints "
        "about delays, refunds or broken items are **negative**.\n- Plain facts are **neutral**.\n"
        "- Thanks and praise are **positive**.\n\nAnswer with one word.\n")
    (ws / "config/eval_config.yaml").write_text("""
datasets:
  - {name: reviews, path: data/reviews.jsonl}
models:
  - name: sim-demo
    provider: sim
    sim: {accuracy: {control: 0.70, treatment: 0.78}, seed: 7}
    pricing: {input_per_mtok: 0.15, output_per_mtok: 0.60}
prompt_sets:
  guide: {control: config/prompts/control.txt, treatment: config/prompts/treatment.md}
user_template: "Classify the sentiment of this text as positive, negative or neutral.\\n\\n{text}"
decoding: {temps: [0.0, 1.0], top_k: [50], top_p: [1.0], max_tokens: [256, 1024], repeats: 1}
scoring: {type: label, labels: [positive, negative, neutral]}
""")
    B.run([exp, "init"], cwd=ws)
    B.run([exp, "run", "--config", "config/eval_config.yaml", "--run-id", "template"], cwd=ws)
    return ws / "experiments/run_template"


def flip(line_label, rnd):
    return LABELS[(LABELS.index(line_label) + 1 + rnd.randrange(2)) % 3]


def gen_run(template, dest, n):
    """Run `n`: the template with its own answers on a seeded 10% of items, and everything that
    follows from them (predictions, scores, metrics, report) rewritten to match."""
    shutil.copytree(template, dest)
    rj = json.loads((dest / "run.json").read_text())
    rj["run_id"] = f"s{n:05d}"
    rj["started_at"] = f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
    rj["finished_at"] = rj["started_at"]
    (dest / "run.json").write_text(json.dumps(rj, indent=2) + "\n")
    for trial in sorted(p for p in dest.iterdir() if (p / "trial.json").is_file()):
        rnd = random.Random(f"{n}/{trial.name}")
        changed = {}
        for cond in ["control", "treatment"]:
            path = trial / "responses" / cond / "part-0000.jsonl"
            out = []
            for line in path.read_text().splitlines():
                r = json.loads(line)
                if rnd.random() < 0.10 and r.get("content"):
                    old = r["content"].split()[-1]
                    if old in LABELS:
                        new = flip(old, rnd)
                        r["content"] = r["content"].replace(old, new)
                        r["latency_ms"] = rnd.randint(200, 900)
                        item = r["custom_id"].split(":")[1]
                        changed[(item, cond)] = new
                out.append(json.dumps(r, separators=(",", ":")))
            path.write_text("\n".join(out) + "\n")
        res = trial / "results"
        rows, correct = [], {"control": 0, "treatment": 0}
        lines = (res / "per_item_scores.csv").read_text().splitlines()
        for line in lines[1:]:
            f = line.split(",")
            new = changed.get((f[0], f[2]))
            if new:
                f[5], f[6] = new, "1" if new == f[4] else "0"
            correct[f[2]] += int(f[6])
            rows.append(",".join(f))
        (res / "per_item_scores.csv").write_text("\n".join([lines[0]] + rows) + "\n")
        plines = (res / "predictions.csv").read_text().splitlines()
        prow = []
        for line in plines[1:]:
            f = line.split(",")
            new = changed.get((f[0], f[2]))
            if new:
                f[5], f[6] = new, f"[simulated] {new}"
            prow.append(",".join(f))
        (res / "predictions.csv").write_text("\n".join([plines[0]] + prow) + "\n")
        m = json.loads((res / "metrics.json").read_text())
        for cond, c in m["conditions"].items():
            c["correct"] = float(correct[cond])
            c["accuracy"] = correct[cond] / c["n"]
        (res / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
        with open(trial / "reports/report.md", "a") as f:
            f.write(f"\nRun s{n:05d}: control {correct['control']}, treatment {correct['treatment']} correct.\n")
    return dest


def du(path):
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="10,100,1000")
    ap.add_argument("--items", type=int, default=250)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: print (with --write, write) the block from bench/out/scale/results.json")
    ap.add_argument("--work", help="work folder (default: a temp folder, removed at the end)")
    a = ap.parse_args()
    if a.render:
        return B.rerender("scale", render, a.write)
    if B.smoke():
        a.runs, a.items, a.reps, a.write = "2,6", 20, 2, False
    checkpoints = [int(x) for x in a.runs.split(",")]
    exp = B.exp_binary()
    tmp = None if a.work else tempfile.TemporaryDirectory(prefix="exp-bench-scale-")
    work = Path(a.work or tmp.name)
    ws, remote, clone = work / "ws", work / "remote", work / "clone"
    template = make_template(exp, work / "template", a.items)
    # The template's own prepared data and config make the store a real workspace's.
    ws.mkdir(parents=True)
    B.run([exp, "init"], cwd=ws)
    exps = ws / "experiments"
    made = [0]
    run_bytes = [0]

    def new_run():
        n = made[0]
        made[0] += 1
        d = gen_run(template, exps / f"run_s{n:05d}", n)
        run_bytes[0] += du(d)
        return d

    def commit(d):
        return B.timed([exp, "commit", str(d)], cwd=ws)

    results = {"items": a.items, "reps": a.reps, "checkpoints": [], "exp": exp,
               "template_bytes": du(template), "template_files": sum(1 for p in template.rglob("*") if p.is_file())}
    first_commit = None
    for cp in checkpoints:
        while made[0] < cp:
            t = commit(new_run())
            if first_commit is None:
                first_commit = t
        row = {"runs": made[0], "load_before": B.load()}
        # Untimed set-up: a remote holding every run so far, and a clone of it.
        if remote.exists():
            B.run([exp, "push", "origin", "--all"], cwd=ws)
        else:
            B.run([exp, "remote", "add", "origin", str(remote)], cwd=ws)
            B.run([exp, "push", "origin", "--all"], cwd=ws)
            B.run([exp, "clone", str(remote), str(clone)], cwd=work)
        B.run([exp, "fetch", "origin"], cwd=clone)
        ids = [f"s{i:05d}" for i in range(made[0])]
        row["commit"] = B.spread([commit(new_run()) for _ in range(a.reps)])
        row["log"] = B.spread([B.timed([exp, "log"], cwd=ws) for _ in range(a.reps)])
        row["list"] = B.spread([B.timed([exp, "list"], cwd=ws) for _ in range(a.reps)])
        row["diff"] = B.spread([B.timed([exp, "diff", ids[-1], ids[-2]], cwd=ws) for _ in range(a.reps)])
        row["fsck"] = B.spread([B.timed([exp, "fsck"], cwd=ws) for _ in range(a.reps)])
        push, fetch, sent = [], [], []
        for _ in range(a.reps):
            d = new_run()
            commit(d)
            before = du(remote)
            push.append(B.timed([exp, "push", "origin", d.name.removeprefix("run_")], cwd=ws))
            sent.append(du(remote) - before)
            fetch.append(B.timed([exp, "fetch", "origin"], cwd=clone))
        row["push_one"], row["fetch_one"] = B.spread(push), B.spread(fetch)
        row["push_bytes_added"] = B.spread(sent)
        row["gc"] = B.spread([B.timed([exp, "gc"], cwd=ws) for _ in range(a.reps)])
        row["runs_after"] = made[0]
        row["store_bytes"] = du(ws / ".exprepo")
        row["runs_bytes"] = run_bytes[0]
        row["load_after"] = B.load()
        results["checkpoints"].append(row)
        print(f"{made[0]} runs: commit {B.fmt_spread(row['commit'])}, log {B.fmt_spread(row['log'])}, "
              f"list {B.fmt_spread(row['list'])}, fsck {B.fmt_spread(row['fsck'])}, gc {B.fmt_spread(row['gc'])}, "
              f"push {B.fmt_spread(row['push_one'])}, fetch {B.fmt_spread(row['fetch_one'])}, "
              f"store {row['store_bytes'] / 1e6:.0f} MB of {row['runs_bytes'] / 1e6:.0f} MB (load {row['load_after']})",
              file=sys.stderr)
    results["first_commit_s"] = first_commit
    out = B.ROOT / "bench/out/scale"
    B.save_json(out / "results.json", results)
    table = render(results)
    print(table)
    svg_dir = (B.ROOT / "docs/bench") if a.write else out
    plot(results, svg_dir)
    if a.write:
        B.write_block("scale", table)
    if tmp:
        tmp.cleanup()


def render(r):
    cps = r["checkpoints"]
    head = "| operation | " + " | ".join(f"{c['runs']:,} runs" for c in cps) + " |"
    lines = [f"Each run: {r['template_files']} files, {r['template_bytes'] / 1e6:.2f} MB (4 trials x 2 conditions x "
             f"{r['items']} items); cells are median (min-max) of {r['reps']} in ms; the first commit into the empty "
             f"store took {r['first_commit_s'] * 1000:.0f} ms.", "", head,
             "| --- |" + " ---: |" * len(cps)]
    names = [("commit", "commit one more run"), ("log", "`exp log` (every run)"), ("list", "`exp list` (cross-run table)"),
             ("diff", "`exp diff` of two runs"), ("fsck", "`exp fsck`"), ("gc", "`exp gc`"),
             ("push_one", "`exp push` of one new run (folder remote holding the others)"),
             ("fetch_one", "`exp fetch` of that run into a clone holding the others")]
    for key, label in names:
        lines.append(f"| {label} | " + " | ".join(B.fmt_spread(c[key]) for c in cps) + " |")
    lines.append("| bytes one push added to the remote | " + " | ".join(
        f"{c['push_bytes_added']['median'] / 1e3:,.0f} kB" for c in cps) + " |")
    lines.append("| store size / sum of run folders | " + " | ".join(
        f"{c['store_bytes'] / 1e6:,.1f} MB / {c['runs_bytes'] / 1e6:,.1f} MB ({c['store_bytes'] / c['runs_bytes']:.3f})"
        for c in cps) + " |")
    lines.append("| 1-minute load average (before / after) | " + " | ".join(
        f"{c['load_before']} / {c['load_after']}" for c in cps) + " |")
    return "\n".join(lines + ["", targets(cps)]) + "\n"


def targets(cps):
    """Issue 15's targets at the largest checkpoint, against the smallest (met / not met)."""
    lo, hi = cps[0], cps[-1]
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    med = lambda c, k: c[k]["median"]  # noqa: E731
    growth = med(hi, "commit") / med(lo, "commit") - 1
    # Linear in bytes: time per stored MB at the largest checkpoint within 1.5x of the smallest's.
    per_mb = {k: [med(c, k) / (c["store_bytes"] / 1e6) for c in (lo, hi)] for k in ("fsck", "gc")}
    per_mb_txt = "; ".join(f"{k} {a * 1e3:.1f} then {b * 1e3:.1f} ms per stored MB: {met(b <= 1.5 * a)}"
                           for k, (a, b) in per_mb.items())
    return (f"Targets at {hi['runs']:,} runs (issue 15): `exp log` < 100 ms: {met(med(hi, 'log') < 0.1)}; "
            f"commit of one more run no slower than at {lo['runs']:,} runs, within 20% ({growth:+.0%}): "
            f"{met(growth <= 0.2)}; push of one new run < 1 s: {met(med(hi, 'push_one') < 1)}, adding "
            f"{hi['push_bytes_added']['median'] / 1e3:,.0f} kB to the remote (one run's new objects; "
            f"{lo['push_bytes_added']['median'] / 1e3:,.0f} kB at {lo['runs']:,} runs); {per_mb_txt}.")


def plot(r, d):
    cps = r["checkpoints"]
    keys = [("commit", "commit"), ("log", "log"), ("list", "list"), ("diff", "diff"), ("push_one", "push one"),
            ("fetch_one", "fetch one")]
    B.svg_chart(d / "scale-commands.svg", "Median time against runs in the store", "runs in the store (log scale)",
                "milliseconds", {label: [(c["runs"], c[k]["median"] * 1000) for c in cps] for k, label in keys},
                logx=True)
    B.svg_chart(d / "scale-fsck-gc.svg", "fsck and gc against store size", "runs in the store (log scale)",
                "milliseconds", {label: [(c["runs"], c[k]["median"] * 1000) for c in cps]
                                 for k, label in [("fsck", "fsck"), ("gc", "gc")]}, logx=True)


if __name__ == "__main__":
    main()
