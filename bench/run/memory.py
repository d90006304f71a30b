"""Peak memory and time of a 100,000-item `exp run`, phase by phase.

    cargo build --release --bin exp --example bench_server
    python3 bench/run/memory.py [--items 100000] [--exp PATH]

The workspace is bench.py's memory scenario (the same config, the same loopback server). exp
runs with EXP_LOG=info, whose phase lines (`prepared; building`, `built; sending`, `scoring`,
`reporting`, `aggregating`, `done`) split the run; its RSS is sampled every 50 ms from /proc and
each sample is charged to the phase whose log line came last. The whole command's max RSS is
the kernel's (`ru_maxrss` of the child), not a sample, so it cannot miss a short spike.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the workspace and server helpers)


def rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def phase_of(line):
    """The phase an EXP_LOG=info line starts, or None."""
    for marker, phase in [("prepared; building", "build"), ("built; sending", "send"),
                          ("scoring", "score"), ("reporting", "report"),
                          ("aggregating", "aggregate"), ("done", "finish")]:
        if marker in line:
            return phase
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", default=str(bench.ROOT / "target/release/exp"))
    ap.add_argument("--server", default=str(bench.ROOT / "target/release/examples/bench_server"))
    ap.add_argument("--items", type=int, default=100000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--keep", help="keep the workspace in this folder")
    a = ap.parse_args()
    if os.environ.get("CARGO_TARGET_DIR") and not Path(a.exp).exists():
        t = Path(os.environ["CARGO_TARGET_DIR"])
        a.exp, a.server = str(t / "release/exp"), str(t / "release/examples/bench_server")
    exp = str(Path(a.exp).resolve())

    server, addr = bench.start_server(str(Path(a.server).resolve()), 0, 1)
    tmp = None
    try:
        if a.keep:
            ws = Path(a.keep)
        else:
            tmp = tempfile.TemporaryDirectory()
            ws = Path(tmp.name)
        bench.workspace(ws, a.items, addr, a.concurrency)
        env = dict(os.environ, EXP_LOG="info", NO_COLOR="1")
        start = time.perf_counter()
        p = subprocess.Popen([exp, "run", "--config", "config/eval_config.yaml", "--run-id", "mem"],
                             cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        phase = ["prepare"]
        peaks, starts = {}, {"prepare": 0.0}
        order = ["prepare"]
        errors = []

        def read_log():
            for line in p.stderr:
                errors.append(line)
                ph = phase_of(line)
                if ph and ph != phase[0]:
                    phase[0] = ph
                    if ph not in starts:
                        starts[ph] = time.perf_counter() - start
                        order.append(ph)

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        while p.poll() is None:
            r = rss_mb(p.pid)
            if r is not None:
                peaks[phase[0]] = max(peaks.get(phase[0], 0.0), r)
            time.sleep(0.05)
        reader.join()
        total = time.perf_counter() - start
        if p.returncode != 0:
            sys.stderr.write("".join(errors[-20:]))
            sys.exit(f"exp run failed with {p.returncode}")
        max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        server.kill()
        server.wait()
        if tmp:
            tmp.cleanup()

    ends = {ph: (starts[order[i + 1]] if i + 1 < len(order) else total) for i, ph in enumerate(order)}
    result = {"items": a.items, "requests": 2 * a.items, "seconds": total, "max_rss_mb": max_rss,
              "send_rps": bench.send_rate("".join(errors)),
              "load_average": os.getloadavg(),
              "phases": [{"phase": ph, "seconds": ends[ph] - starts[ph], "peak_rss_mb": peaks.get(ph)}
                         for ph in order]}
    print(f"{a.items:,} items: {total:.1f} s ({2 * a.items / total:,.0f} req/s whole command, "
          f"{result['send_rps']:,.0f} req/s sending), max RSS {max_rss:.0f} MB "
          f"(load average {result['load_average'][0]:.1f})")
    print("| phase | seconds | peak RSS (sampled) |")
    print("| --- | ---: | ---: |")
    for ph in result["phases"]:
        peak = "—" if ph["peak_rss_mb"] is None else f"{ph['peak_rss_mb']:.0f} MB"
        print(f"| {ph['phase']} | {ph['seconds']:.2f} | {peak} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
