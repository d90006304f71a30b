"""The peer of `exp diff A B`: the same answer computed by a short pandas script from the two run
folders on disk. For every trial of A paired with the trial of B that has the same parameters
but the differing one (here temperature): each condition's accuracy in both runs, items paired
by (dataset, item id), the exact McNemar p-value on the items that flipped, a paired bootstrap
95% CI of the accuracy change (10,000 resamples, as exp's diff), the change in the treatment
effect, and the changes in metrics.json and costs.json. No file list (exp's comes from object
ids; a peer would have to hash both folders).

    python3 bench/diff/peer.py RUN_A_DIR RUN_B_DIR      # prints one JSON document
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest


def trials(run):
    out = {}
    for t in sorted(Path(run).glob("*/trial.json")):
        meta = json.loads(t.read_text())
        d = dict(meta.get("decoding", {}))
        d.pop("temperature", None)
        key = (meta.get("model"), meta.get("prompt_set"), json.dumps(d, sort_keys=True))
        out[key] = t.parent
    return out


def changes(a, b, prefix=""):
    out = {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(changes(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out[prefix + k] = [va, vb]
    return out


def compare(da, db, rng):
    sa = pd.read_csv(da / "results/per_item_scores.csv", dtype={"item_id": str})
    sb = pd.read_csv(db / "results/per_item_scores.csv", dtype={"item_id": str})
    keys = ["dataset", "item_id", "condition"]
    ga = sa.groupby(keys, sort=False)["score"].mean()
    gb = sb.groupby(keys, sort=False)["score"].mean()
    both = pd.concat([ga.rename("a"), gb.rename("b")], axis=1, join="inner").reset_index()
    rows = {}
    for cond, g in both.groupby("condition", sort=False):
        a, b = g["a"].to_numpy(), g["b"].to_numpy()
        up, down = int(((a < b)).sum()), int(((a > b)).sum())
        p = binomtest(min(up, down), up + down, 0.5).pvalue if up + down else None
        diff = b - a
        idx = rng.integers(0, len(diff), size=(10_000, len(diff)), dtype=np.int32) if len(diff) <= 5_000 else None
        if idx is not None:
            boots = diff[idx].mean(axis=1)
        else:  # in chunks, so memory stays bounded at 40,000 items
            boots = np.concatenate([diff[rng.integers(0, len(diff), size=(250, len(diff)))].mean(axis=1)
                                    for _ in range(40)])
        rows[cond] = {"n": int(len(g)), "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()),
                      "change": float(diff.mean()), "ci": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
                      "flipped_up": up, "flipped_down": down, "mcnemar_p": p}
    effect = None
    if {"control", "treatment"} <= set(rows):
        effect = (rows["treatment"]["accuracy_b"] - rows["control"]["accuracy_b"]) - \
                 (rows["treatment"]["accuracy_a"] - rows["control"]["accuracy_a"])
    metrics = changes(json.loads((da / "results/metrics.json").read_text()),
                      json.loads((db / "results/metrics.json").read_text()))
    costs = changes(json.loads((da / "results/costs.json").read_text()),
                    json.loads((db / "results/costs.json").read_text()))
    return {"trial_a": da.name, "trial_b": db.name, "paired": rows, "effect_change": effect,
            "metrics_changed": metrics, "costs_changed": costs}


def main():
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    ta, tb = trials(a), trials(b)
    rng = np.random.default_rng(0)
    out = {"config": changes(json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())),
           "trials": [compare(ta[k], tb[k], rng) for k in sorted(ta) if k in tb],
           "only_in_a": [ta[k].name for k in sorted(ta) if k not in tb],
           "only_in_b": [tb[k].name for k in sorted(tb) if k not in ta]}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
