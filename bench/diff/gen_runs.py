#!/usr/bin/env python3
"""Writes two large run folders in the layout of docs/RUN_FILES.md that differ in temperature:
12 trials (3 models x 2 prompt sets x 2 max_tokens), 2 conditions, ITEMS items each.

Usage: gen_runs.py OUT_DIR [ITEMS]   -> OUT_DIR/run_bench-t0/ and OUT_DIR/run_bench-t1/
Deterministic (seeded), so every machine benchmarks the same bytes."""
import json, os, random, sys

out, items = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40000
labels = ["positive", "negative", "neutral"]
words = "the service was quick but the refund took weeks and nobody answered my emails about the order".split()
SYS = {"control": "You are a careful annotator. Answer with one word: positive, negative or neutral.",
       "treatment": "You label customer messages for the support dashboard. Complaints are negative; facts are neutral. One word."}


def run(temp, seed_shift):
    rid = f"bench-t{temp}"
    root = os.path.join(out, f"run_{rid}")
    trials = []
    for model in ["sim-a", "sim-b", "sim-c"]:
        for ps in ["operational_only", "full_policy"]:
            for mx in [256, 1024]:
                trials.append((model, ps, mx))
    slugs = []
    for ti, (model, ps, mx) in enumerate(trials):
        slug = f"{model}-{ps}-t{temp}-tk50-tp1-mx{mx}"
        slugs.append(slug)
        d = os.path.join(root, slug)
        for sub in ["inputs/control", "inputs/treatment", "responses/control", "responses/treatment", "results", "reports"]:
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "trial.json"), "w") as f:
            json.dump({"slug": slug, "model": model, "provider": "sim", "model_id": model, "prompt_set": ps,
                       "decoding": {"temperature": float(temp), "top_k": 50, "top_p": 1.0, "max_tokens": mx},
                       "repeats": 1, "datasets": ["bench"], "conditions": ["control", "treatment"],
                       "scoring": {"type": "label", "labels": labels}, "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}, f)
        pred_lines = ["item_id,dataset,condition,repeat,part,prediction,raw_output,finish_reason,input_tokens,output_tokens,latency_ms,error"]
        score_lines = ["item_id,dataset,condition,repeat,gold,prediction,score,cluster"]
        metrics, costs = {}, {}
        for cond in ["control", "treatment"]:
            base = random.Random(ti * 2 + (cond == "treatment"))       # same items, same gold in both runs
            flip = random.Random(1000 + ti * 2 + (cond == "treatment") + seed_shift)
            inp, resp = [], []
            correct = tin = tout = 0
            for i in range(items):
                gold = labels[base.randrange(3)]
                text = " ".join(base.choice(words) for _ in range(12))
                ok = base.random() < (0.70 if cond == "control" else 0.78)
                if seed_shift and flip.random() < 0.08:
                    ok = not ok
                pred = gold if ok else labels[(labels.index(gold) + 1) % 3]
                cid = f"bench:{i}:{cond}:r0"
                inp.append(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                       "body": {"model": model, "messages": [{"role": "system", "content": SYS[cond]},
                                                {"role": "user", "content": f"Classify the sentiment of this text as positive, negative or neutral.\n\n{text}"}],
                                                "temperature": float(temp), "top_p": 1.0, "max_tokens": mx}}))
                it, ot = 40 + (i % 17), 1
                tin += it; tout += ot
                resp.append(json.dumps({"custom_id": cid, "status": "ok", "content": f"{pred} (simulated)", "finish_reason": "stop",
                                        "input_tokens": it, "output_tokens": ot, "latency_ms": 3, "attempts": 1, "error": None}))
                pred_lines.append(f"{i},bench,{cond},0,0,{pred},{pred} (simulated),stop,{it},{ot},3,")
                score_lines.append(f"{i},bench,{cond},0,{gold},{pred},{int(ok)},")
                correct += ok
            with open(os.path.join(d, "inputs", cond, "part-0000.jsonl"), "w") as f:
                f.write("\n".join(inp) + "\n")
            with open(os.path.join(d, "responses", cond, "part-0000.jsonl"), "w") as f:
                f.write("\n".join(resp) + "\n")
            metrics[cond] = {"n": items, "scored": items, "failed": 0, "correct": float(correct), "accuracy": correct / items}
            usd = tin * 0.15e-6 + tout * 0.6e-6
            costs[cond] = {"requests": items, "failures": 0, "input_tokens": tin, "output_tokens": tout, "usd": usd, "usd_per_correct": usd / correct}
        with open(os.path.join(d, "results", "predictions.csv"), "w") as f:
            f.write("\n".join(pred_lines) + "\n")
        with open(os.path.join(d, "results", "per_item_scores.csv"), "w") as f:
            f.write("\n".join(score_lines) + "\n")
        with open(os.path.join(d, "results", "metrics.json"), "w") as f:
            json.dump({"n_items": items, "repeats": 1, "conditions": metrics}, f, indent=1)
        tot = {k: sum(c[k] for c in costs.values()) for k in ["requests", "failures", "input_tokens", "output_tokens", "usd"]}
        tot["usd_per_correct"] = tot["usd"] / sum(m["correct"] for m in metrics.values())
        tot["conditions"] = costs
        with open(os.path.join(d, "results", "costs.json"), "w") as f:
            json.dump(tot, f, indent=1)
        with open(os.path.join(d, "reports", "report.md"), "w") as f:
            f.write(f"# {slug}\n\ncontrol {metrics['control']['accuracy']:.3f}, treatment {metrics['treatment']['accuracy']:.3f}\n")
    os.makedirs(os.path.join(root, "config"), exist_ok=True)
    with open(os.path.join(root, "config", "eval_config.yaml"), "w") as f:
        f.write(f"decoding: {{temps: [{float(temp)}], top_k: [50], top_p: [1.0], max_tokens: [256, 1024], repeats: 1}}\n")
    with open(os.path.join(root, "run.json"), "w") as f:
        json.dump({"format": 1, "run_id": rid, "status": "complete", "started_at": "2025-11-27T13:00:00Z",
                   "finished_at": "2025-11-27T13:10:00Z", "config_hash": None, "provenance": None, "exp_version": "0.1.0",
                   "conditions": ["control", "treatment"], "parts_per_dataset": 1, "baseline": None, "trials": slugs}, f, indent=1)


run(0, 0)
run(1, 1)
