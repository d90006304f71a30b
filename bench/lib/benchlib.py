"""Helpers every benchmark script shares: where the exp binary is, repeated timings with
min/median/max, the machine's load, an SVG line chart, and the generated blocks of BENCHMARKS.md.

Generated blocks: a script writes its output between `<!-- generated: NAME -->` and
`<!-- end generated: NAME -->` in BENCHMARKS.md (`write_block`), and nothing else. Prose around
the block is never touched, so explanations survive a re-run; a missing block is appended at the
end of the file with its markers. Every figure in a block is the script's own output.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "BENCHMARKS.md"


def smoke():
    """BENCH_SMOKE=1: tiny sizes, a couple of repetitions, nothing written to BENCHMARKS.md
    (CI runs every script this way so they keep working)."""
    return os.environ.get("BENCH_SMOKE") == "1"


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def exp_binary():
    """$EXP, else the release build (built first unless EXP is set), else the debug build."""
    if os.environ.get("EXP"):
        return str(Path(os.environ["EXP"]).resolve())
    profile = os.environ.get("PROFILE", "release")
    args = ["cargo", "build", "--quiet", "--bin", "exp"] + (["--release"] if profile == "release" else [])
    subprocess.run(args, cwd=ROOT, check=True)
    return str(target_dir() / ("release" if profile == "release" else "debug") / "exp")


def load():
    """1-minute load average, rounded: recorded next to every figure."""
    return round(os.getloadavg()[0], 2)


def run(cmd, cwd=None, env=None, check=True, capture=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-2000:]}")
    return r


def timed(cmd, cwd=None, env=None):
    """Wall seconds of one run of `cmd` (output discarded; failure aborts)."""
    t = time.perf_counter()
    run(cmd, cwd=cwd, env=env, capture=False)
    return time.perf_counter() - t


def spread(values):
    """min, median, max of a list, as a dict (also the raw values)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "n": len(values), "values": values}


def fmt_spread(s, unit="ms", scale=1000.0, digits=0):
    """`median (min-max)` in `unit`."""
    f = lambda v: f"{v * scale:,.{digits}f}"  # noqa: E731
    return f"{f(s['median'])} {unit} ({f(s['min'])}-{f(s['max'])})"


def save_json(path, data):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def rerender(name, render, write):
    """--render: measure nothing, print the block of bench NAME again from its saved
    bench/out/NAME/results.json (after a change to how it is rendered), and write it with --write."""
    text = render(json.loads((ROOT / "bench/out" / name / "results.json").read_text()))
    print(text)
    if write:
        write_block(name, text)


def write_block(name, text, path=BENCHMARKS):
    """Replace the generated block NAME in BENCHMARKS.md with `text` (prose outside untouched)."""
    begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    doc = Path(path).read_text()
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    Path(path).write_text(doc)


def svg_chart(path, title, xlabel, ylabel, series, logx=False, logy=False):
    """A small line chart as SVG: `series` is {name: [(x, y), ...]}. No plotting library."""
    import math
    W, H, L, R, T, B = 640, 360, 70, 170, 30, 50
    pts = [p for s in series.values() for p in s if p[1] is not None]
    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(max(v, 1e-9))) if logy else (lambda v: v)
    xs, ys = [tx(p[0]) for p in pts], [ty(p[1]) for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (min(ys), max(ys)) if logy else (0, max(ys) * 1.1 or 1)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    X = lambda v: L + (tx(v) - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    Y = lambda v: H - B - (ty(v) - y0) / (y1 - y0) * (H - T - B)  # noqa: E731
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="14" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 {(T + H - B) / 2})">{ylabel}</text>']
    for x in sorted({p[0] for p in pts}):
        out.append(f'<text x="{X(x):.1f}" y="{H - B + 15}" text-anchor="middle">{x:,}</text>')
    ticks = 5
    for i in range(ticks + 1):
        v = y0 + (y1 - y0) * i / ticks
        label = 10 ** v if logy else v
        yy = H - B - i / ticks * (H - T - B)
        out.append(f'<line x1="{L - 4}" y1="{yy:.1f}" x2="{W - R}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">{label:,.{0 if label >= 10 else 2}f}</text>')
    for i, (name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        s = [p for p in s if p[1] is not None]
        if not s:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{X(x):.1f},{Y(y):.1f}" for j, (x, y) in enumerate(s))
        out.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        out += [f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{c}"/>' for x, y in s]
        out.append(f'<rect x="{W - R + 10}" y="{T + 16 * i}" width="10" height="10" fill="{c}"/>')
        out.append(f'<text x="{W - R + 25}" y="{T + 9 + 16 * i}">{name}</text>')
    out.append("</svg>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(out) + "\n")
