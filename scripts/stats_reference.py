#!/usr/bin/env python3
"""Reference numbers for exp's statistics (src/stats/), computed independently with scipy,
statsmodels and numpy, and written to tests/data/stats_reference.json.

tests/stats.rs reads that file and checks exp against it: closed forms to 1e-9, Monte-Carlo
quantities (bootstrap intervals, sampled permutation p-values) within Monte-Carlo error, whose size
this script also measures. Inputs are generated here from fixed seeds and stored next to the
expected values, so the Rust side needs nothing but the JSON.

Run:  python3 scripts/stats_reference.py   (scipy >= 1.11, statsmodels >= 0.14, numpy)
"""
import json
import os
import sys

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                   "stats_reference.json")
POWER = 0.8


def norm_cases():
    ps = [1e-12, 1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95,
          0.975, 0.99, 0.995, 0.999, 1 - 1e-6]
    return [{"p": p, "x": float(stats.norm.ppf(p))} for p in ps]


def wilson_cases():
    out = []
    for k, n, alpha in [(0, 1, 0.05), (1, 1, 0.05), (0, 10, 0.05), (10, 10, 0.05), (3, 10, 0.05),
                        (84, 120, 0.05), (84, 120, 0.01), (7, 13, 0.1), (500, 1000, 0.05),
                        (1, 2000, 0.05), (1999, 2000, 0.05), (37, 50, 0.2)]:
        lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
        out.append({"k": k, "n": n, "alpha": alpha, "lo": float(lo), "hi": float(hi)})
    return out


def mcnemar_cases():
    out = []
    for b, c in [(0, 0), (0, 1), (1, 0), (3, 3), (5, 12), (12, 5), (0, 9), (20, 40), (1, 30),
                 (150, 190), (480, 560), (2500, 2610)]:
        table = [[10, b], [c, 10]]
        p_sm = mcnemar(table, exact=True).pvalue
        p_bt = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c > 0 else 1.0
        out.append({"b": b, "c": c, "p_statsmodels": float(p_sm), "p_binomtest": float(p_bt)})
    return out


def cluster_se(d, groups):
    """Cluster-robust SE of the mean of d: OLS of d on a constant, statsmodels' cluster
    covariance with its default small-sample correction (CR1: G/(G-1) * (N-1)/(N-K))."""
    x = np.ones((len(d), 1))
    fit = sm.OLS(np.asarray(d, float), x).fit(cov_type="cluster",
                                              cov_kwds={"groups": np.asarray(groups)})
    return float(fit.bse[0])


def null_se(d, groups):
    """SE of the mean difference under H0 (E d = 0): uncentered, summed within clusters."""
    d = np.asarray(d, float)
    if groups is None:
        sums = d
    else:
        _, inv = np.unique(np.asarray(groups), return_inverse=True)
        sums = np.bincount(inv, weights=d)
    return float(np.sqrt(np.sum(sums ** 2)) / len(d))


def paired_case(name, control, treatment, clusters, alpha, binary):
    control = np.asarray(control, float)
    treatment = np.asarray(treatment, float)
    d = treatment - control
    n = len(d)
    z = stats.norm.ppf(1 - alpha / 2)
    case = {"name": name, "alpha": alpha, "binary": binary,
            "control": control.tolist(), "treatment": treatment.tolist(),
            "clusters": clusters, "mean_diff": float(d.mean()),
            "se_iid": float(d.std(ddof=1) / np.sqrt(n))}
    if clusters is not None:
        se = cluster_se(d, clusters)
        case["se_cluster"] = se
        case["n_clusters"] = int(len(set(clusters)))
        # Sign-flip test on whole clusters: flip the sign of each cluster's sum of differences.
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inv, weights=d)
        nonzero = sums[sums != 0]
        if len(nonzero) <= 20:
            res = stats.permutation_test((nonzero,), np.mean, permutation_type="samples",
                                         n_resamples=np.inf, alternative="two-sided")
            case["perm_p_clusters"] = float(res.pvalue)
    else:
        se = case["se_iid"]
        case["se_cluster"] = None
        case["n_clusters"] = None
    case["ci_lo"] = float(d.mean() - z * se)
    case["ci_hi"] = float(d.mean() + z * se)
    se0 = null_se(d, clusters)
    case["mde_80"] = float((z + stats.norm.ppf(POWER)) * se0)
    per = {}
    for cond, x in (("control", control), ("treatment", treatment)):
        entry = {"mean": float(x.mean())}
        if binary and clusters is None:
            k = int(round(x.sum()))
            lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
            entry.update(se=float(np.sqrt(x.mean() * (1 - x.mean()) / n)), lo=float(lo), hi=float(hi))
        else:
            s = cluster_se(x, clusters) if clusters is not None else float(x.std(ddof=1) / np.sqrt(n))
            entry.update(se=s, lo=float(x.mean() - z * s), hi=float(x.mean() + z * s))
        per[cond] = entry
    case["conditions"] = per
    if binary:
        b = int(np.sum((control == 1) & (treatment == 0)))
        c = int(np.sum((control == 0) & (treatment == 1)))
        case["mcnemar_p"] = float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
    return case


def paired_cases():
    rng = np.random.default_rng(20251127)
    out = []
    # binary, 120 items, treatment a little better
    c = (rng.random(120) < 0.65).astype(int)
    t = np.where(rng.random(120) < 0.7, c, (rng.random(120) < 0.9).astype(int))
    out.append(paired_case("binary_120", c.tolist(), t.tolist(), None, 0.05, True))
    # same with 15 clusters of 8 items, correlated within cluster
    cl = [f"g{i // 8}" for i in range(120)]
    out.append(paired_case("binary_120_clustered", c.tolist(), t.tolist(), cl, 0.05, True))
    # clusters of size 1 (must equal the iid SE)
    out.append(paired_case("binary_120_singleton_clusters", c.tolist(), t.tolist(),
                           [f"s{i}" for i in range(120)], 0.05, True))
    # continuous scores in [0,1], unequal clusters, alpha 0.1
    n = 57
    base = rng.random(n)
    cc = np.clip(base + rng.normal(0, 0.1, n), 0, 1).round(4)
    tt = np.clip(base + 0.05 + rng.normal(0, 0.1, n), 0, 1).round(4)
    cl2 = [f"doc{int(i ** 0.5)}" for i in range(n)]
    out.append(paired_case("continuous_57_clustered", cc.tolist(), tt.tolist(), cl2, 0.1, False))
    out.append(paired_case("continuous_57", cc.tolist(), tt.tolist(), None, 0.05, False))
    # small binary, n = 9
    out.append(paired_case("binary_9", [1, 0, 1, 1, 0, 1, 0, 1, 1], [1, 1, 1, 1, 1, 0, 1, 1, 1],
                           None, 0.05, True))
    return out


def perm_exact_cases():
    out = []
    rng = np.random.default_rng(7)
    samples = [
        [0.5, -0.25, 1.0, 0.75, 0.0, 0.25],
        [1, 1, 1, -1, 1, 0, 1, 1],
        [1, 1, 1, 1, 1],
        [0.0, 0.0, 0.0],
        [1 / 3, 2 / 3, -1 / 3, 1.0, 1 / 3, 0.0, -2 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3, 0.0],
        rng.normal(0.2, 1, 14).round(3).tolist(),
        (rng.integers(-3, 4, 16) / 3).tolist(),
    ]
    for d in samples:
        d = np.asarray(d, float)
        if np.all(d == 0):
            p = 1.0  # scipy's permutation_test cannot run on a degenerate sample; p = 1 by definition
        else:
            res = stats.permutation_test((d,), np.mean, permutation_type="samples",
                                         n_resamples=np.inf, alternative="two-sided")
            p = float(res.pvalue)
        out.append({"d": d.tolist(), "p": p})
    return out


def perm_mc_cases():
    """Too many non-zero differences to enumerate: scipy with 10^6 random sign flips is the
    reference; its own Monte-Carlo SD is reported so the test can allow both errors."""
    rng = np.random.default_rng(11)
    out = []
    for n, shift in [(40, 0.25), (80, 0.1)]:
        d = (rng.integers(-2, 3, n) / 2 + np.where(rng.random(n) < shift, 0.5, 0)).round(3)
        B = 1_000_000
        res = stats.permutation_test((d,), np.mean, permutation_type="samples",
                                     n_resamples=B, alternative="two-sided",
                                     random_state=np.random.default_rng(3))
        p = float(res.pvalue)
        out.append({"d": d.tolist(), "p": p, "reference_resamples": B,
                    "reference_sd": float(np.sqrt(p * (1 - p) / B))})
    return out


def bootstrap_ci(control, treatment, clusters, alpha, B, rng):
    d = np.asarray(treatment, float) - np.asarray(control, float)
    if clusters is None:
        idx = rng.integers(0, len(d), size=(B, len(d)))
        means = d[idx].mean(axis=1)
    else:
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inv, weights=d)
        sizes = np.bincount(inv)
        g = len(sums)
        idx = rng.integers(0, g, size=(B, g))
        means = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    return np.quantile(means, [alpha / 2, 1 - alpha / 2])


def bootstrap_cases(paired):
    out = []
    for case in paired:
        if case["name"] not in ("binary_120", "binary_120_clustered", "continuous_57"):
            continue
        rng = np.random.default_rng(99)
        B = 10_000
        reps = np.array([bootstrap_ci(case["control"], case["treatment"], case["clusters"],
                                      case["alpha"], B, rng) for _ in range(200)])
        big = bootstrap_ci(case["control"], case["treatment"], case["clusters"], case["alpha"],
                           400_000, rng)
        out.append({"name": case["name"], "control": case["control"],
                    "treatment": case["treatment"], "clusters": case["clusters"],
                    "alpha": case["alpha"], "resamples": B,
                    "lo": float(big[0]), "hi": float(big[1]),
                    "mc_sd_lo": float(reps[:, 0].std(ddof=1)),
                    "mc_sd_hi": float(reps[:, 1].std(ddof=1))})
    return out


def holm_cases():
    out = []
    for ps in [[0.01, 0.04, 0.03, 0.005], [0.5], [0.2, 0.2, 0.2], [1e-6, 0.049, 0.051, 0.9, 0.01],
               [0.04, 0.01, 0.03, 0.02, 0.05, 0.6]]:
        _, adj, _, _ = multipletests(ps, method="holm")
        out.append({"p": ps, "adjusted": [float(a) for a in adj]})
    return out


def clt_cases():
    rng = np.random.default_rng(5)
    out = []
    for n, alpha in [(2, 0.05), (30, 0.05), (200, 0.01)]:
        x = rng.random(n).round(5)
        z = stats.norm.ppf(1 - alpha / 2)
        se = float(x.std(ddof=1) / np.sqrt(n))
        out.append({"x": x.tolist(), "alpha": alpha, "mean": float(x.mean()), "se": se,
                    "lo": float(x.mean() - z * se), "hi": float(x.mean() + z * se)})
    return out


def main():
    paired = paired_cases()
    doc = {
        "generated_by": "scripts/stats_reference.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "scipy": scipy.__version__, "statsmodels": statsmodels.__version__},
        "power": POWER,
        "norm_ppf": norm_cases(),
        "wilson": wilson_cases(),
        "mcnemar": mcnemar_cases(),
        "clt": clt_cases(),
        "paired": paired,
        "permutation_exact": perm_exact_cases(),
        "permutation_mc": perm_mc_cases(),
        "bootstrap": bootstrap_cases(paired),
        "holm": holm_cases(),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
