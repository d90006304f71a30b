#!/usr/bin/env python3
"""Writes one run folder in the layout of docs/RUN_FILES.md holding one trial of ITEMS items,
both conditions, with realistic sizes: a ~400-character input and a ~300-character answer per
request (the part of a trial `exp view` streams for its item pages).

Each input starts with "Order #NNNNNN:" (the item's number), a text that names one item.

Usage: gen_trial.py RUN_DIR ITEMS [VARIANT]     Deterministic (seeded), so every machine serves
the same bytes. VARIANT 1 answers the treatment requests with another seed (and a little more
accuracy), so it and VARIANT 0 of the same size differ on some items: a compare has flips."""
import csv, json, os, random, sys

root, items = sys.argv[1], int(sys.argv[2])
variant = int(sys.argv[3]) if len(sys.argv) > 3 else 0
slug = "sim-bench-operational_only-t0-tk50-tp1-mx1024"
labels = ["positive", "negative", "neutral"]
words = ("the service was quick but the refund took weeks and nobody answered my emails about "
         "the order so I called twice and waited on hold for an hour before giving up").split()
d = os.path.join(root, slug)
for sub in ["inputs/control", "inputs/treatment", "results"]:
    os.makedirs(os.path.join(d, sub), exist_ok=True)
with open(os.path.join(d, "trial.json"), "w") as f:
    json.dump({"slug": slug, "model": "sim-bench", "prompt_set": "operational_only",
               "decoding": {"temperature": 0.0}, "repeats": 1, "conditions": ["control", "treatment"]}, f)
rng = random.Random(7)
gold = [labels[rng.randrange(3)] for _ in range(items)]
with open(os.path.join(d, "results", "predictions.csv"), "w", newline="") as pf, \
        open(os.path.join(d, "results", "per_item_scores.csv"), "w", newline="") as sf:
    pw, sw = csv.writer(pf), csv.writer(sf)
    pw.writerow(["item_id", "dataset", "condition", "repeat", "part", "prediction", "raw_output",
                 "finish_reason", "input_tokens", "output_tokens", "latency_ms", "error"])
    sw.writerow(["item_id", "dataset", "condition", "repeat", "gold", "prediction", "score", "cluster"])
    metrics = {}
    for cond, acc in [("control", 0.70), ("treatment", 0.78 + 0.04 * variant)]:
        r = random.Random(11 if cond == "control" else 13 + 4 * variant)
        correct = 0
        with open(os.path.join(d, "inputs", cond, "part-0000.jsonl"), "w") as inp:
            for i in range(items):
                ok = r.random() < acc
                pred = gold[i] if ok else labels[(labels.index(gold[i]) + 1) % 3]
                text = f"Order #{i:06d}: " + " ".join(r.choice(words) for _ in range(70))
                answer = f"Reading the message: {' '.join(r.choice(words) for _ in range(45))}. Label: {pred}"
                pw.writerow([f"item-{i}", "bench", cond, 0, 0, pred, answer, "stop", 120, 60, 40 + i % 50, ""])
                sw.writerow([f"item-{i}", "bench", cond, 0, gold[i], pred, int(ok), ""])
                inp.write(json.dumps({"custom_id": f"bench:item-{i}:{cond}:r0", "method": "POST",
                                      "url": "/v1/chat/completions",
                                      "body": {"model": "sim-bench", "messages": [
                                          {"role": "system", "content": f"The {cond} system prompt."},
                                          {"role": "user", "content": text}]}}) + "\n")
                correct += ok
        metrics[cond] = {"n": items, "scored": items, "failed": 0, "correct": float(correct),
                         "accuracy": correct / items}
with open(os.path.join(d, "results", "metrics.json"), "w") as f:
    json.dump({"n_items": items, "repeats": 1, "conditions": metrics}, f)
with open(os.path.join(root, "run.json"), "w") as f:
    json.dump({"format": 1, "run_id": os.path.basename(root).removeprefix("run_"), "status": "complete",
               "trials": [slug]}, f)
print(slug)
