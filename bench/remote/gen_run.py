#!/usr/bin/env python3
"""Writes a synthetic run folder of about SIZE_MB megabytes shaped like a real exp run
(docs/RUN_FILES.md): trials x conditions x parts of request and response JSONL, predictions CSV,
metrics. Deterministic (seeded), so every benchmark run moves the same bytes.

usage: gen_run.py OUT_DIR [SIZE_MB=600]
"""
import json
import os
import random
import sys

out = sys.argv[1]
size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 600
rng = random.Random(7)
words = [
    "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
    for _ in range(5000)
]
labels = ["positive", "negative", "neutral"]


def text(n):
    return " ".join(rng.choice(words) for _ in range(n))


trials = [f"sim-demo-operational_only-t{t}-tk50-tp1-mx1024-r{r}" for t in (0, 1) for r in range(4)]
conditions = ["control", "treatment"]
parts = 8
target = size_mb * 1_000_000
per_file = target // (len(trials) * len(conditions) * parts * 2)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump({"format": 1, "run_id": "bench", "status": "complete",
               "started_at": "2025-11-27T13:05:01Z", "finished_at": "2025-11-27T15:05:01Z",
               "trials": trials, "conditions": conditions, "parts_per_dataset": parts}, f)
item = 0
for slug in trials:
    for cond in conditions:
        for p in range(parts):
            for kind in ("inputs", "responses"):
                d = os.path.join(out, slug, kind, cond)
                os.makedirs(d, exist_ok=True)
                written = 0
                with open(os.path.join(d, f"part-{p:04d}.jsonl"), "w") as f:
                    while written < per_file:
                        item += 1
                        cid = f"demo:{item}:{cond}:r0"
                        if kind == "inputs":
                            line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": "sim-demo", "temperature": 0.0,
                                             "messages": [{"role": "system", "content": text(40)},
                                                          {"role": "user", "content": text(60)}]}}
                        else:
                            line = {"custom_id": cid, "status": "ok",
                                    "content": text(80) + " " + rng.choice(labels),
                                    "finish_reason": "stop", "input_tokens": rng.randint(50, 400),
                                    "output_tokens": rng.randint(5, 300),
                                    "latency_ms": rng.randint(20, 900), "attempts": 1, "error": None}
                        s = json.dumps(line) + "\n"
                        f.write(s)
                        written += len(s)
    r = os.path.join(out, slug, "results")
    os.makedirs(r, exist_ok=True)
    with open(os.path.join(r, "metrics.json"), "w") as f:
        json.dump({"n_items": item, "conditions": {c: {"accuracy": rng.random()} for c in conditions}}, f)
