"""`exp run` throughput and memory against a fast loopback OpenAI-compatible server, compared in
the same run with a plain Python asyncio client (py_client.py) sending the same requests.

    cargo build --release --bin exp --example bench_server
    python3 bench/run/bench.py            # prints a Markdown table, writes bench/run/results.json

Scenarios (issue 3's targets):
  no delay  : exp run vs the Python client, C connections each; target exp >= 5x Python rps
  50 ms     : each answer delayed 50 ms; target exp >= 90% of C / 0.05 s
  memory    : a 100,000-item run (200,000 requests); target max RSS < 300 MB
Each figure is the median of --repeats runs; exp's time is the whole command (prepare, build,
send, journal with fsync, score, write results), the client's only its sending.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_server(binary, delay_ms, threads):
    p = subprocess.Popen([binary, "--port", "0", "--delay-ms", str(delay_ms), "--threads", str(threads)],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return p, line.split()[-1]


def cpu_seconds(pid):
    """User + system CPU time of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workspace(dir, items, addr, conc):
    d = Path(dir)
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "config/prompts").mkdir(parents=True, exist_ok=True)
    with open(d / "data/b.jsonl", "w") as f:
        for i in range(items):
            label = ["positive", "negative", "neutral"][i % 3]
            f.write(json.dumps({"id": f"b{i}", "text": f"Benchmark item {i}: the service was fine, I guess.", "label": label}) + "\n")
    (d / "config/prompts/c.txt").write_text("Classify the sentiment as positive, negative or neutral.")
    (d / "config/prompts/t.txt").write_text("You are a careful annotator. Classify the sentiment as positive, negative or neutral.")
    (d / "config/eval_config.yaml").write_text(f"""
datasets:
  - {{name: b, path: data/b.jsonl}}
models:
  - {{name: bench, provider: openai, base_url: "http://{addr}/v1", model: bench, max_connections: {conc},
     pricing: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}}}
prompt_sets:
  ps: {{control: config/prompts/c.txt, treatment: config/prompts/t.txt}}
user_template: "{{text}}"
decoding: {{temps: [0.0], top_p: [1.0], max_tokens: [16]}}
scoring: {{type: label, labels: [positive, negative, neutral]}}
significance: {{bootstrap_resamples: 1000}}
execution: {{parts_per_dataset: 4, max_concurrent_jobs: 8, max_retries: 2, timeout_s: 60}}
""")
    return d


def send_rate(stderr):
    """The send phase's rate from exp's last plain progress line: `requests: N/N · R/s · …`."""
    lines = [l for l in stderr.splitlines() if l.startswith("requests: ")]
    return float(lines[-1].split(" · ")[1].removesuffix("/s"))


def run_exp(exp, ws, run_id, measure_rss=False):
    """(wall seconds, send-phase requests/s, max RSS MB or None)."""
    cmd = [exp, "run", "--config", "config/eval_config.yaml", "--run-id", run_id]
    if measure_rss:
        # A fresh Python whose only child is exp, so RUSAGE_CHILDREN's max RSS is exp's.
        wrapper = ("import resource,subprocess,sys;"
                   "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True);"
                   "sys.stderr.write(r.stderr);"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", wrapper] + cmd, cwd=ws, check=True, capture_output=True, text=True)
        secs = time.perf_counter() - t
        kb, rc = out.stdout.split()
        assert rc == "0", out.stderr
        return secs, send_rate(out.stderr), int(kb) / 1024
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ws, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t, send_rate(out.stderr), None


def inputs_of(ws, run_id):
    run = Path(ws) / "experiments" / f"run_{run_id}"
    return sorted(str(p) for p in run.glob("*/inputs/*/*.jsonl"))


def run_py(addr, conc, files):
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("py_client.py")),
                          "--url", f"http://{addr}/v1/chat/completions", "--concurrency", str(conc)] + files,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", default=str(ROOT / "target/release/exp"))
    ap.add_argument("--server", default=str(ROOT / "target/release/examples/bench_server"))
    ap.add_argument("--items", type=int, default=20000, help="items in the no-delay scenario (x2 conditions)")
    ap.add_argument("--delay-items", type=int, default=5000)
    ap.add_argument("--memory-items", type=int, default=100000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server-threads", type=int, default=1)
    a = ap.parse_args()
    if os.environ.get("CARGO_TARGET_DIR") and not Path(a.exp).exists():
        t = Path(os.environ["CARGO_TARGET_DIR"])
        a.exp, a.server = str(t / "release/exp"), str(t / "release/examples/bench_server")
    a.exp, a.server = str(Path(a.exp).resolve()), str(Path(a.server).resolve())
    results = {"concurrency": a.concurrency, "repeats": a.repeats, "cpus": os.cpu_count(),
               "load_average_before": os.getloadavg()}
    C = a.concurrency

    with tempfile.TemporaryDirectory() as tmp:
        for name, delay, items in [("no_delay", 0, a.items), ("delay_50ms", 50, a.delay_items)]:
            server, addr = start_server(a.server, delay, a.server_threads)
            try:
                ws = workspace(Path(tmp) / name, items, addr, C)
                requests = 2 * items
                exp_rps, exp_send, py_rps, server_busy = [], [], [], []
                for r in range(a.repeats):
                    cpu0 = cpu_seconds(server.pid)
                    secs, send, _ = run_exp(a.exp, ws, f"{name}-{r}")
                    # The server's CPU while exp was sending: well under one core means it is
                    # not what limits the rate.
                    server_busy.append((cpu_seconds(server.pid) - cpu0) / (requests / send))
                    exp_rps.append(requests / secs)
                    exp_send.append(send)
                    py = run_py(addr, C, inputs_of(ws, f"{name}-{r}"))
                    assert py["errors"] == 0 and py["requests"] == requests, py
                    py_rps.append(py["rps"])
                results[name] = {"requests": requests, "exp_rps": statistics.median(exp_rps),
                                 "exp_send_rps": statistics.median(exp_send),
                                 "python_rps": statistics.median(py_rps), "exp_runs": exp_rps,
                                 "exp_send_runs": exp_send, "python_runs": py_rps,
                                 "server_cpu_share_while_exp_sends": statistics.median(server_busy)}
                if delay:
                    results[name]["ideal_rps"] = C / (delay / 1000)
            finally:
                server.kill()
                server.wait()

        server, addr = start_server(a.server, 0, a.server_threads)
        try:
            ws = workspace(Path(tmp) / "memory", a.memory_items, addr, C)
            secs, send, rss = run_exp(a.exp, ws, "mem", measure_rss=True)
            results["memory"] = {"items": a.memory_items, "requests": 2 * a.memory_items,
                                 "seconds": secs, "send_rps": send, "max_rss_mb": rss}
        finally:
            server.kill()
            server.wait()

    results["load_average_after"] = os.getloadavg()
    nd, dl, mem = results["no_delay"], results["delay_50ms"], results["memory"]
    print(f"bench server CPU while exp sends: {nd['server_cpu_share_while_exp_sends']:.0%} of one core (no delay), "
          f"{dl['server_cpu_share_while_exp_sends']:.0%} (50 ms)")
    print(f"load average (1 min) before {results['load_average_before'][0]:.1f}, after {results['load_average_after'][0]:.1f} on {os.cpu_count()} CPUs")
    print("| scenario | requests | exp run: sending | exp run: whole command | Python asyncio (aiohttp) | result (target) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| no delay, C={C} | {nd['requests']:,} | {nd['exp_send_rps']:,.0f} req/s | {nd['exp_rps']:,.0f} req/s | "
          f"{nd['python_rps']:,.0f} req/s | sending {nd['exp_send_rps'] / nd['python_rps']:.1f}x, whole command "
          f"{nd['exp_rps'] / nd['python_rps']:.1f}x Python (>= 5x) |")
    print(f"| 50 ms delay, C={C} | {dl['requests']:,} | {dl['exp_send_rps']:,.0f} req/s | {dl['exp_rps']:,.0f} req/s | "
          f"{dl['python_rps']:,.0f} req/s | sending at {dl['exp_send_rps'] / dl['ideal_rps']:.0%} of C/0.05 s = "
          f"{dl['ideal_rps']:,.0f} req/s (>= 90%) |")
    print(f"| memory, {mem['items']:,} items | {mem['requests']:,} | {mem['send_rps']:,.0f} req/s | "
          f"{mem['requests'] / mem['seconds']:,.0f} req/s | | max RSS {mem['max_rss_mb']:.0f} MB (< 300 MB) |")
    Path(__file__).with_name("results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
