"""`exp run` throughput, memory and growth with items, in one script against one binary.

    python3 bench/run/bench.py [--reps 5] [--write]     # builds exp and the stub server (release)
    BENCH_SMOKE=1 python3 bench/run/bench.py            # CI: tiny sizes, 2 reps, seconds

Scenarios:
  no delay : `exp run` against bench/run/server.rs (a raw keep-alive OpenAI-compatible stub), C
             connections, against peers sending the very request bodies exp built: a plain
             Python asyncio client (py_client.py, aiohttp), a bare hyper client (bare_client.rs:
             exp's transport and nothing else, the floor of a Rust client) and `wrk` (C, one
             fixed body: the most the stub serves). Targets: exp's whole command >= 5x Python;
             exp's sending >= 60% of wrk.
  50 ms    : each answer delayed 50 ms; target: sending >= 90% of C / 0.05 s.
  growth   : `exp run` of the sim model (no network, no delay) at 10k, 100k and 1M items: wall
             time and max RSS per phase. Targets: max RSS < 1 GB at 1M items; time linear.
Every figure is min / median / max of --reps runs (growth: --growth-reps); exp runs with the
config's defaults (10,000 bootstrap resamples), journal fsynced, results and reports written.
"Sending" is exp's send phase, timed from its own log (`EXP_LOG=info`: from `built; sending` to
the first `scoring`); "whole command" is the wall time of `exp run` end to end. Max RSS is the
kernel's (`ru_maxrss`); per-phase peaks are /proc samples every 20 ms charged to the phase the
log names. The 1-minute load average is recorded before and after every scenario.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import benchlib as B  # noqa: E402

PHASES = [("prepared; building", "build"), ("built; sending", "send"), ("scoring", "score"),
          ("reporting", "report"), ("aggregating", "aggregate"), ("done", "finish")]


def start_server(binary, delay_ms, threads=1):
    p = subprocess.Popen([binary, "--port", "0", "--delay-ms", str(delay_ms), "--threads", str(threads)],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return p, line.split()[-1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workspace(d, items, model):
    """A workspace of `items` items; `model` is the YAML of the one model."""
    d = Path(d)
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "config/prompts").mkdir(parents=True, exist_ok=True)
    with open(d / "data/b.jsonl", "w") as f:
        for i in range(items):
            label = ["positive", "negative", "neutral"][i % 3]
            f.write(json.dumps({"id": f"b{i}", "text": f"Benchmark item {i}: the service was fine, I guess.",
                                "label": label}) + "\n")
    (d / "config/prompts/c.txt").write_text("Classify the sentiment as positive, negative or neutral.")
    (d / "config/prompts/t.txt").write_text("You are a careful annotator. Classify the sentiment as positive, negative or neutral.")
    (d / "config/eval_config.yaml").write_text(f"""
datasets:
  - {{name: b, path: data/b.jsonl}}
models:
  - {model}
prompt_sets:
  ps: {{control: config/prompts/c.txt, treatment: config/prompts/t.txt}}
user_template: "{{text}}"
decoding: {{temps: [0.0], top_p: [1.0], max_tokens: [16]}}
scoring: {{type: label, labels: [positive, negative, neutral]}}
execution: {{parts_per_dataset: 4, max_concurrent_jobs: 8, max_retries: 2, timeout_s: 60}}
""")
    return d


def served_model(addr, conc):
    return (f'{{name: bench, provider: openai, base_url: "http://{addr}/v1", model: bench, '
            f'max_connections: {conc}, pricing: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}}}')


SIM_MODEL = ("{name: sim, provider: sim, sim: {accuracy: {control: 0.70, treatment: 0.78}, seed: 7}, "
             "pricing: {input_per_mtok: 0.15, output_per_mtok: 0.60}}")


def run_exp(exp, ws, run_id):
    """One `exp run`: wall seconds, send seconds (from its log), max RSS (MB), per-phase
    {phase: [seconds, sampled peak MB]}."""
    env = dict(os.environ, EXP_LOG="info", NO_COLOR="1")
    # A fresh Python whose only child is exp, so RUSAGE_CHILDREN's max RSS is exp's alone.
    wrapper = ("import resource,subprocess,sys;"
               "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode, file=sys.stderr)")
    # --no-cache: every rep sends every request (the workspace keeps the earlier reps' answers,
    # which the response cache would otherwise reuse).
    cmd = [sys.executable, "-c", wrapper, exp, "run", "--config", "config/eval_config.yaml", "--run-id", run_id,
           "--no-cache"]
    start = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, marks, phase = [], {"prepare": 0.0}, ["prepare"]
    peaks = {}

    def read_log():
        for line in p.stderr:
            lines.append(line)
            for marker, ph in PHASES:
                if f": {marker} elapsed_ms=" in line and ph not in marks:
                    marks[ph] = time.perf_counter() - start
                    phase[0] = ph

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    child = None
    while p.poll() is None:
        if child is None:
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children")
            try:
                child = int(kids.read_text().split()[0])
            except (FileNotFoundError, IndexError, ValueError):
                pass
        if child:
            try:
                for l in Path(f"/proc/{child}/status").read_text().splitlines():
                    if l.startswith("VmRSS:"):
                        peaks[phase[0]] = max(peaks.get(phase[0], 0.0), int(l.split()[1]) / 1024)
            except (FileNotFoundError, ProcessLookupError):
                pass
        time.sleep(0.02)
    reader.join()
    wall = time.perf_counter() - start
    kb, rc = lines[-1].split()
    if rc != "0" or p.returncode != 0:
        sys.exit("exp run failed:\n" + "".join(lines[-20:]))
    log = "".join(lines)
    ms = {ph: int(m.group(1)) for marker, ph in PHASES
          for m in [re.search(": " + re.escape(marker) + r" elapsed_ms=(\d+)", log)] if m}
    send = (ms["score"] - ms["send"]) / 1000 if "score" in ms and "send" in ms else None
    order = [ph for ph in ["prepare"] + [x for _, x in PHASES] if ph in marks]
    phases = {ph: [(marks[order[i + 1]] if i + 1 < len(order) else wall) - marks[ph], peaks.get(ph)]
              for i, ph in enumerate(order)}
    return {"wall": wall, "send": send, "max_rss_mb": int(kb) / 1024, "phases": phases}


def inputs_of(ws, run_id):
    return sorted(str(p) for p in (Path(ws) / "experiments" / f"run_{run_id}").glob("*/inputs/*/*.jsonl"))


def have_aiohttp():
    return subprocess.run([sys.executable, "-c", "import aiohttp"], capture_output=True).returncode == 0


def run_py(addr, conc, files):
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("py_client.py")),
                          "--url", f"http://{addr}/v1/chat/completions", "--concurrency", str(conc)] + files,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_bare(bare, addr, conc, files):
    out = subprocess.run([bare, "--url", f"http://{addr}/v1/chat/completions", "--concurrency", str(conc)] + files,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_wrk(addr, conc, body_file, seconds):
    """Requests/s `wrk` reaches with C connections, POSTing one of exp's bodies."""
    body = json.loads(Path(body_file).read_text().splitlines()[0])["body"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n")
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{conc}", f"-d{seconds}s", "-s", script,
                              f"http://{addr}/v1/chat/completions"], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(script)
    assert "Non-2xx" not in out, out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def build():
    """exp, the stub server and the bare client (EXP, BENCH_SERVER, BARE_CLIENT to use others)."""
    given = [os.environ.get(k) for k in ["EXP", "BENCH_SERVER", "BARE_CLIENT"]]
    if all(given):
        return tuple(given)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "exp", "--example", "bench_server",
                    "--example", "bare_client"], cwd=B.ROOT, check=True)
    t = B.target_dir() / "release"
    return str(t / "exp"), str(t / "examples/bench_server"), str(t / "examples/bare_client")


def throughput(a, exp, server_bin, bare_bin, tmp, name, delay, items, skipped):
    server, addr = start_server(server_bin, delay)
    try:
        ws = workspace(Path(tmp) / name, items, served_model(addr, a.concurrency))
        r = {"requests": 2 * items, "load_before": B.load(), "exp_wall": [], "exp_send": [], "python": [],
             "server_cpu_share": []}
        have_wrk = delay == 0 and shutil.which("wrk")
        if delay == 0:
            r["bare"], r["wrk"] = [], []
        # Interleaved: each rep runs exp and then every peer, so a change in the machine's speed
        # over the minutes the benchmark takes (this shared VM's varies) moves all of them alike.
        for rep in range(a.reps):
            cpu0 = cpu_seconds(server.pid)
            e = run_exp(exp, ws, f"{name}-{rep}")
            r["server_cpu_share"].append((cpu_seconds(server.pid) - cpu0) / e["send"])
            r["exp_wall"].append(r["requests"] / e["wall"])
            r["exp_send"].append(r["requests"] / e["send"])
            files = inputs_of(ws, f"{name}-{rep}")
            if have_aiohttp():
                py = run_py(addr, a.concurrency, files)
                assert py["errors"] == 0 and py["requests"] == r["requests"], py
                r["python"].append(py["rps"])
            if delay == 0:
                bare = run_bare(bare_bin, addr, a.concurrency, files)
                assert bare["errors"] == 0 and bare["requests"] == r["requests"], bare
                r["bare"].append(bare["rps"])
            if have_wrk:
                r["wrk"].append(run_wrk(addr, a.concurrency, files[0], a.wrk_seconds))
        if not r["python"]:
            skipped.append("Python asyncio client (aiohttp not installed: pip install aiohttp)")
        if delay == 0 and not have_wrk:
            skipped.append("wrk (not installed: apt-get install wrk)")
        r["load_after"] = B.load()
        for k in ["exp_wall", "exp_send", "python", "bare", "wrk", "server_cpu_share"]:
            if r.get(k):
                r[k] = B.spread(r[k])
        return r
    finally:
        server.kill()
        server.wait()


def growth(a, exp, tmp):
    out = []
    for items in a.growth:
        ws = workspace(Path(tmp) / f"growth-{items}", items, SIM_MODEL)
        load_before = B.load()
        runs = [run_exp(exp, ws, f"g{rep}") for rep in range(a.growth_reps)]
        best = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        out.append({"items": items, "requests": 2 * items, "load_before": load_before, "load_after": B.load(),
                    "wall": B.spread([r["wall"] for r in runs]),
                    "max_rss_mb": B.spread([r["max_rss_mb"] for r in runs]),
                    "phases_of_median_run": best["phases"]})
        shutil.rmtree(ws / "experiments", ignore_errors=True)
    return out


def rate(s):
    return f"{s['median']:,.0f} req/s ({s['min']:,.0f}-{s['max']:,.0f})"


def render(r):
    C, nd, dl = r["concurrency"], r["no_delay"], r["delay_50ms"]
    L = [f"Cells: median (min-max) of {r['reps']} runs. C = {C} connections for every client. "
         f"1-minute load average before / after each scenario is in its row.", "",
         "| scenario | requests | exp run: sending | exp run: whole command | Python asyncio (aiohttp) | bare hyper client (sending only) | wrk (one fixed body) | load | result (target) |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    py = nd.get("python")
    wrk = nd.get("wrk")
    bare = nd.get("bare")
    verdict = []
    if py:
        x = nd["exp_wall"]["median"] / py["median"]
        verdict.append(f"whole command {x:.1f}x Python (>= 5x: {'met' if x >= 5 else '**not met**'}); "
                       f"sending {nd['exp_send']['median'] / py['median']:.1f}x")
    if wrk:
        x = nd["exp_send"]["median"] / wrk["median"]
        verdict.append(f"sending at {x:.0%} of wrk (>= 60%: {'met' if x >= 0.6 else '**not met**'})")
    if bare:
        verdict.append(f"sending at {nd['exp_send']['median'] / bare['median']:.0%} of the bare client")
    L.append(f"| no delay | {nd['requests']:,} | {rate(nd['exp_send'])} | {rate(nd['exp_wall'])} | "
             f"{rate(py) if py else 'skipped'} | {rate(bare) if bare else ''} | {rate(wrk) if wrk else 'skipped'} | "
             f"{nd['load_before']} / {nd['load_after']} | {'; '.join(verdict)} |")
    ideal = C / 0.05
    x = dl["exp_send"]["median"] / ideal
    L.append(f"| 50 ms delay | {dl['requests']:,} | {rate(dl['exp_send'])} | {rate(dl['exp_wall'])} | "
             f"{rate(dl['python']) if dl.get('python') else 'skipped'} | | | {dl['load_before']} / {dl['load_after']} | "
             f"sending at {x:.0%} of C/0.05 s = {ideal:,.0f} req/s (>= 90%: {'met' if x >= 0.9 else '**not met**'}) |")
    L += ["", f"The stub server used {nd['server_cpu_share']['median']:.0%} of one core while exp sent (no delay).", "",
          f"Growth with items (sim model, no delay, {r['growth_reps']} run(s) each; phases of the median run):", "",
          "| items | requests | whole command | req/s | max RSS | prepare | build | send | score | report | aggregate | load |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for g in r["growth"]:
        ph = g["phases_of_median_run"]
        cell = lambda k: (f"{ph[k][0]:.2f} s / {ph[k][1]:.0f} MB" if ph.get(k) and ph[k][1] else  # noqa: E731
                          (f"{ph[k][0]:.2f} s" if ph.get(k) else ""))
        L.append(f"| {g['items']:,} | {g['requests']:,} | {B.fmt_spread(g['wall'], 's', 1, 2)} | "
                 f"{g['requests'] / g['wall']['median']:,.0f} | {B.fmt_spread(g['max_rss_mb'], 'MB', 1, 0)} | "
                 + " | ".join(cell(k) for k in ["prepare", "build", "send", "score", "report", "aggregate"])
                 + f" | {g['load_before']} / {g['load_after']} |")
    gs = r["growth"]
    if len(gs) >= 2:
        lo, hi = gs[0], gs[-1]
        per = [g["wall"]["median"] / g["items"] * 1e6 for g in gs]
        # Linear = each further item costs the same: the time between consecutive sizes per
        # item added. A run's fixed cost (process start, config, reports) is paid once, so the
        # smallest run's time per item is higher without the time growing faster than items.
        marginal = [(b["wall"]["median"] - a["wall"]["median"]) / (b["items"] - a["items"]) * 1e6
                    for a, b in zip(gs, gs[1:])]
        spread = max(marginal) / min(marginal) - 1
        rss = hi["max_rss_mb"]["max"]
        per_txt = ", ".join(f"{p:.1f} µs" for p in per)
        marginal_txt = ", ".join(f"{a['items']:,} to {b['items']:,}: {m:.1f} µs"
                                 for a, b, m in zip(gs, gs[1:], marginal))
        items_txt = ", ".join(f"{g['items']:,}" for g in gs)
        L += ["", f"Time per item (whole command / items): {per_txt} at {items_txt} items. Time per item "
              f"added (between consecutive sizes): {marginal_txt} ({spread:+.0%}; linear within ±20%: "
              f"{'met' if spread <= 0.2 else '**not met**'}). Max RSS at {hi['items']:,} items: {rss:.0f} MB, "
              f"the highest of its runs "
              f"({'target < 1 GB at 1M items: ' + ('met' if rss < 1000 else '**not met**') if hi['items'] >= 1_000_000 else 'the 1 GB target is for 1M items'}; {lo['items']:,} items: "
              f"{lo['max_rss_mb']['median']:.0f} MB)."]
    if r["skipped"]:
        L += ["", "Skipped peers: " + "; ".join(r["skipped"]) + "."]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000, help="items of the no-delay scenario (x2 conditions)")
    ap.add_argument("--delay-items", type=int, default=5000)
    ap.add_argument("--growth", default="10000,100000,1000000")
    ap.add_argument("--growth-reps", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--only", choices=["throughput", "growth"], help="run one part only")
    ap.add_argument("--write", action="store_true", help="update the `run` blocks of BENCHMARKS.md")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: print (and with --write, write) the block from bench/out/run/results.json")
    a = ap.parse_args()
    if a.render:
        return B.rerender("run", render, a.write)
    if B.smoke():
        a.items, a.delay_items, a.growth, a.reps, a.wrk_seconds, a.write = 300, 100, "1000,2000", 2, 1, False
        a.growth_reps = 1
    a.growth = [int(x) for x in a.growth.split(",")]
    exp, server_bin, bare_bin = build()
    results = {"concurrency": a.concurrency, "reps": a.reps, "growth_reps": a.growth_reps, "cpus": os.cpu_count(),
               "exp": exp, "skipped": []}
    with tempfile.TemporaryDirectory(prefix="exp-bench-run-") as tmp:
        if a.only != "growth":
            results["no_delay"] = throughput(a, exp, server_bin, bare_bin, tmp, "no_delay", 0, a.items, results["skipped"])
            results["delay_50ms"] = throughput(a, exp, server_bin, bare_bin, tmp, "delay_50ms", 50, a.delay_items, [])
        if a.only != "throughput":
            results["growth"] = growth(a, exp, tmp)
    out = B.ROOT / "bench/out/run"
    old = json.loads((out / "results.json").read_text()) if (a.only and (out / "results.json").exists()) else {}
    results = {**old, **{k: v for k, v in results.items() if v != [] or k == "skipped"}}
    B.save_json(out / "results.json", results)
    if "no_delay" in results and "growth" in results:
        text = render(results)
        print(text)
        if "growth" in results:
            d = (B.ROOT / "docs/bench") if a.write else out
            gs = results["growth"]
            B.svg_chart(d / "run-growth-time.svg", "exp run: wall time against items", "items (log scale)", "seconds",
                        {"whole command": [(g["items"], g["wall"]["median"]) for g in gs]}, logx=True, logy=True)
            B.svg_chart(d / "run-growth-rss.svg", "exp run: max RSS against items", "items (log scale)", "MB",
                        {"max RSS": [(g["items"], g["max_rss_mb"]["median"]) for g in gs]}, logx=True)
        if a.write:
            B.write_block("run", text)
    else:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
