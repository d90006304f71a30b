#!/usr/bin/env python3
"""Generate a run folder shaped like real `exp run` output (docs/RUN_FILES.md), deterministically.

Usage: generate.py OUT_DIR [--mb 600] [--trials 12] [--seed 0]

Per trial: batch request lines (JSONL), response journals (JSONL), predictions and per-item
scores (CSV), metrics/significance/costs (JSON) and a Markdown report; plus run.json,
multi_trial_manifest.json and aggregate_report.md at the top. Text is drawn from a word list
so it compresses like real model output (roughly 4-6x), not like random bytes or repeated lines.
"""
import argparse
import json
import os
import random

WORDS = (
    "the a an of to and in is was it for on with as by at this that from be are or not have has "
    "positive negative neutral sentiment review product service movie quality price delivery "
    "great terrible okay fine excellent awful love hate recommend return broken works perfectly "
    "customer support experience would again never always sometimes really very quite slightly "
    "battery screen sound camera size color shipping package arrived late early damaged"
).split()
LABELS = ["positive", "negative", "neutral"]


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--mb", type=int, default=600)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    per_trial = a.mb * 1024 * 1024 // a.trials
    os.makedirs(a.out, exist_ok=True)
    slugs = []
    manifest = []
    for t in range(a.trials):
        temp = [0.0, 0.7, 1.0][t % 3]
        model = ["gpt-oss-120b", "llama-3.1-8b", "qwen2.5-7b", "mistral-small"][t // 3 % 4]
        slug = f"{model}-operational_only-t{temp:g}-tk50-tp1-mx1024"
        slug = f"{slug}-r{t}"
        slugs.append(slug)
        td = os.path.join(a.out, slug)
        written = 0
        items = 0
        acc = {"control": [0, 0], "treatment": [0, 0]}
        preds = []
        part = 0
        files = {}
        for cond in ("control", "treatment"):
            for sub in ("inputs", "responses"):
                os.makedirs(os.path.join(td, sub, cond), exist_ok=True)
        # Requests and responses until the trial reaches its size, in parts of ~2 MB.
        while written < per_trial * 0.77:
            for cond in ("control", "treatment"):
                fi = open(os.path.join(td, "inputs", cond, f"part-{part:04d}.jsonl"), "w")
                fr = open(os.path.join(td, "responses", cond, f"part-{part:04d}.jsonl"), "w")
                for i in range(items, items + 400):
                    text = sentence(rng, rng.randint(20, 120))
                    gold = rng.choice(LABELS)
                    req = {"custom_id": f"demo:{i}:{cond}:r0", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": model, "temperature": temp, "max_tokens": 1024,
                                    "messages": [{"role": "system", "content": f"You are a careful {cond} classifier."},
                                                 {"role": "user", "content": "Classify the sentiment of this text as positive, negative or neutral.\n\n" + text}]}}
                    line = json.dumps(req) + "\n"
                    fi.write(line)
                    pred = gold if rng.random() < (0.7 if cond == "control" else 0.78) else rng.choice(LABELS)
                    content = sentence(rng, rng.randint(5, 60)) + f" The sentiment is {pred}."
                    resp = {"custom_id": req["custom_id"], "status": "ok", "content": content, "finish_reason": "stop",
                            "input_tokens": len(text.split()) + 30, "output_tokens": len(content.split()),
                            "latency_ms": rng.randint(30, 900), "attempts": 1, "error": None}
                    rline = json.dumps(resp) + "\n"
                    fr.write(rline)
                    written += len(line) + len(rline)
                    acc[cond][0] += pred == gold
                    acc[cond][1] += 1
                    preds.append((i, cond, part, pred, gold, content, resp))
                fi.close()
                fr.close()
            items += 400
            part += 1
        os.makedirs(os.path.join(td, "results"), exist_ok=True)
        with open(os.path.join(td, "results", "predictions.csv"), "w") as f:
            f.write("item_id,dataset,condition,repeat,part,prediction,raw_output,finish_reason,input_tokens,output_tokens,latency_ms,error\n")
            for (i, cond, p, pred, gold, content, r) in preds:
                f.write(f'{i},demo,{cond},0,{p},{pred},"{content}",stop,{r["input_tokens"]},{r["output_tokens"]},{r["latency_ms"]},\n')
        with open(os.path.join(td, "results", "per_item_scores.csv"), "w") as f:
            f.write("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n")
            for (i, cond, p, pred, gold, content, r) in preds:
                f.write(f"{i},demo,{cond},0,{gold},{pred},{int(pred == gold)},\n")
        metrics = {"n_items": items, "repeats": 1, "conditions": {
            c: {"n": v[1], "scored": v[1], "failed": 0, "correct": float(v[0]), "accuracy": v[0] / v[1]} for c, v in acc.items()}}
        json.dump(metrics, open(os.path.join(td, "results", "metrics.json"), "w"), indent=2)
        usd = items * 2 * 0.00002
        json.dump({"requests": items * 2, "failures": 0, "usd": usd}, open(os.path.join(td, "results", "costs.json"), "w"), indent=2)
        json.dump({"p_value": 0.01, "p_method": "mcnemar_exact", "holm_p": None, "not_computed": []},
                  open(os.path.join(td, "results", "significance.json"), "w"), indent=2)
        os.makedirs(os.path.join(td, "reports"), exist_ok=True)
        with open(os.path.join(td, "reports", "report.md"), "w") as f:
            f.write(f"# {slug}\n\n| condition | accuracy |\n|---|---|\n")
            for c, v in acc.items():
                f.write(f"| {c} | {v[0] / v[1]:.3f} |\n")
        json.dump({"slug": slug, "model": model, "decoding": {"temperature": temp}}, open(os.path.join(td, "trial.json"), "w"))
        manifest.append({"slug": slug, "model": model, "status": "complete", "path": slug + "/",
                         "metrics": {c: {"n": v[1], "accuracy": v[0] / v[1]} for c, v in acc.items()},
                         "effect": acc["treatment"][0] / acc["treatment"][1] - acc["control"][0] / acc["control"][1],
                         "p_value": 0.01, "holm_p": 0.05, "usd": usd, "failures": 0})
    json.dump({"format": 1, "run_id": "bench", "status": "complete", "trials": slugs,
               "started_at": "2025-11-27T13:05:01Z", "config_hash": "0" * 64},
              open(os.path.join(a.out, "run.json"), "w"), indent=2)
    json.dump({"format": 1, "run_id": "bench", "status": "complete", "trials": manifest,
               "totals": {"usd": sum(t["usd"] for t in manifest), "failures": 0}},
              open(os.path.join(a.out, "multi_trial_manifest.json"), "w"), indent=2)
    with open(os.path.join(a.out, "aggregate_report.md"), "w") as f:
        f.write("# bench\n\n" + "\n".join(f"- {s}" for s in slugs) + "\n")


if __name__ == "__main__":
    main()
