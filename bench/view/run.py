"""`exp view` on trials of 1,000, 10,000 and 100,000 items, and the compare page of two
100,000-item runs.

    python3 bench/view/run.py [--sizes 1000,10000,100000] [--reps 5] [--write]
    BENCH_SMOKE=1 python3 bench/view/run.py          # CI: 200 and 1,000 items, 2 reps, no --write

Runs in the layout of docs/RUN_FILES.md (gen_trial.py, seeded): one trial, both conditions, a
~400-character input and a ~300-character answer per request, committed with `exp commit`; the
run folders are then deleted, so the server reads the store only. A second run of the largest
size answers the treatment with another seed, so the two differ on some items (flips).

One `exp view` (release build) serves every page. For each page: wall time of the request
(min/median/max of --reps, the body read to its end), and the CPU time the server spent on it
(utime + stime from /proc/PID/stat, median): the CPU time hardly depends on what else the
machine does, the wall time does. After each size's pages, and after the compare: the server's
resident memory now (VmRSS) and its peak so far (VmHWM), from /proc/PID/status.

Targets (issue 14): the first page of a 100,000-item trial in under 1 s; memory bounded: the
server's peak after the largest trial's pages within 2x of its peak after the smallest's (the
pages stream the trial; they never hold it). The script prints met / not met for each.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import benchlib as B  # noqa: E402

HERE = Path(__file__).resolve().parent
FIRST_PAGE_TARGET_S = 1.0
MEMORY_GROWTH_TARGET = 2.0


def pages(n, commit, slug):
    """(label, path) of the trial pages measured for a trial of n items."""
    base = f"run/{commit}/{slug}"
    return [
        ("first page (all)", f"{base}/all/1.html"),
        ("filter: fixed", f"{base}/fixed/1.html"),
        ("search by id", f"{base}/all/1.html?q=item-{n // 2}"),
        ("search by text (one item)", f"{base}/all/1.html?q=Order+%23{n // 2:06d}"),
        ("search by text (most items)", f"{base}/all/1.html?q=refund"),
        ("deep page (middle)", f"{base}/all/{max(1, n // 100)}.html"),
    ]


def cpu_seconds(pid):
    """utime + stime of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mib": kib["VmRSS"] / 1024, "hwm_mib": kib["VmHWM"] / 1024}


def get(url):
    """Wall seconds of one GET, body read to its end; anything but 200 aborts."""
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        r.read()
        if r.status != 200:
            sys.exit(f"{url}: HTTP {r.status}")
    return time.perf_counter() - t


def measure(server, url, reps):
    walls, cpus = [], []
    for _ in range(reps):
        before = cpu_seconds(server.pid)
        walls.append(get(url))
        cpus.append(cpu_seconds(server.pid) - before)
    return {"wall": B.spread(walls), "cpu": B.spread(cpus)}


def commit(exp, work, folder):
    out = B.run([exp, "commit", folder, "--json"], cwd=work).stdout
    return json.loads(out)["commit"]


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1048576, 1),
            "kernel": platform.release()}


def start_server(exp, work):
    server = subprocess.Popen([exp, "view", "--port", "0"], cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http://")), None)
    if url is None:
        server.kill()
        sys.exit(f"exp view printed no address: {line!r} {server.stderr.read()[-2000:]}")
    return server, url


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    if B.smoke():
        sizes, a.reps, a.write = [200, 1000], 2, False
    exp = B.exp_binary()
    with tempfile.TemporaryDirectory(prefix="exp-bench-view-") as work:
        work = Path(work)
        B.run([exp, "init"], cwd=work)
        trials = {}
        for n in sizes:
            folder = f"experiments/run_items{n}"
            slug = B.run([sys.executable, str(HERE / "gen_trial.py"), str(work / folder), str(n)]).stdout.strip()
            trials[n] = (commit(exp, work, folder), slug)
        big = sizes[-1]
        folder = f"experiments/run_items{big}b"
        B.run([sys.executable, str(HERE / "gen_trial.py"), str(work / folder), str(big), "1"])
        other = commit(exp, work, folder)
        B.run(["rm", "-rf", str(work / "experiments")])

        server, url = start_server(exp, work)
        try:
            load_before = B.load()
            results = {}
            for n in sizes:
                c, slug = trials[n]
                rows = {label: measure(server, url + path, a.reps) for label, path in pages(n, c, slug)}
                results[n] = {"pages": rows, "memory": memory_mib(server.pid)}
            compare = measure(server, f"{url}compare/{trials[big][0]}/{other}/1.html", a.reps)
            compare_memory = memory_mib(server.pid)
            load_after = B.load()
        finally:
            server.kill()
            server.wait()

    first = results[big]["pages"]["first page (all)"]["wall"]["median"]
    growth = results[big]["memory"]["hwm_mib"] / results[sizes[0]]["memory"]["hwm_mib"]
    verdict = {
        "first_page_under_1s": first < FIRST_PAGE_TARGET_S,
        "memory_bounded": growth <= MEMORY_GROWTH_TARGET,
    }
    box = machine()
    res = {"sizes": sizes, "reps": a.reps, "machine": box, "load_before": load_before,
           "load_after": load_after, "trials": {str(n): r for n, r in results.items()},
           "compare": {"items": big, "page": compare, "memory": compare_memory},
           "peak_growth": growth, "targets": verdict}
    B.save_json(B.ROOT / "bench/out/view/results.json", res)

    cell = lambda m: f"{B.fmt_spread(m['wall'])}, CPU {m['cpu']['median'] * 1000:,.0f} ms"  # noqa: E731
    mem = lambda m: f"{m['rss_mib']:,.0f} MiB now, {m['hwm_mib']:,.0f} MiB peak"  # noqa: E731
    head = " | ".join(f"{n:,} items" for n in sizes)
    lines = [
        f"One `exp view` (release build) on {box['cpu']} ({box['cores']} cores, {box['memory_gib']} GiB). Each cell: wall time "
        f"of the request, median (min-max) of {a.reps}, then the server's CPU time for it (median). "
        f"1-minute load average {load_before} before, {load_after} after.",
        "",
        f"| page | {head} |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    for label, _ in pages(sizes[0], "", ""):
        lines.append(f"| {label} | " + " | ".join(cell(results[n]["pages"][label]) for n in sizes) + " |")
    lines.append("| server memory after the pages | " + " | ".join(mem(results[n]["memory"]) for n in sizes) + " |")
    lines += [
        "",
        f"Compare page of two {big:,}-item runs (first page of flipped items): {cell(compare)}; "
        f"server memory after it: {mem(compare_memory)}.",
        "",
        f"Targets: first page of the {big:,}-item trial under {FIRST_PAGE_TARGET_S:.0f} s: "
        f"{'met' if verdict['first_page_under_1s'] else 'not met'} ({first * 1000:,.0f} ms); "
        f"peak memory after the {big:,}-item trial within {MEMORY_GROWTH_TARGET:.0f}x of the peak after the "
        f"{sizes[0]:,}-item one: {'met' if verdict['memory_bounded'] else 'not met'} ({growth:.2f}x).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        B.write_block("view", text)


if __name__ == "__main__":
    main()
