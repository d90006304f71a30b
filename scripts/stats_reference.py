#!/usr/bin/env python3
"""Reference numbers for exp's statistics (src/stats/), computed independently with scipy,
statsmodels and numpy, and written to tests/data/stats_reference.json.

tests/stats.rs reads that file and checks exp against it: closed forms to 1e-9, Monte-Carlo
quantities (bootstrap intervals, sampled permutation p-values) within Monte-Carlo error, whose size
this script also measures. Inputs are generated here from fixed seeds and stored next to the
expected values, so the Rust side needs nothing but the JSON.

Where exp uses a search or a closed form (exact power, the interval inverting the sign-flip test),
the reference is computed the slow, obvious way: exact power by enumerating every discordant
count and every split with scipy's binomtest deciding rejection; interval ends by bisection on
scipy's permutation_test applied to shifted data.

Run:  python3 scripts/stats_reference.py   (scipy >= 1.11, statsmodels >= 0.14, numpy)
"""
import json
import os
import sys

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import special, stats
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
    # Clustered intervals use Student t on G - 1 degrees of freedom (CR1 + t, Cameron & Miller).
    crit = z if clusters is None else stats.t.ppf(1 - alpha / 2, len(set(clusters)) - 1)
    case["ci_lo"] = float(d.mean() - crit * se)
    case["ci_hi"] = float(d.mean() + crit * se)
    se0 = null_se(d, clusters)
    case["mde_normal_80"] = float((z + stats.norm.ppf(POWER)) * se0)
    if binary and clusters is None:
        b = int(np.sum((control == 1) & (treatment == 0)))
        c = int(np.sum((control == 0) & (treatment == 1)))
        case["mde_exact_80"] = exact_mde(n, (b + c) / n, alpha)
    per = {}
    for cond, x in (("control", control), ("treatment", treatment)):
        entry = {"mean": float(x.mean())}
        if binary and clusters is None:
            k = int(round(x.sum()))
            lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
            entry.update(se=float(np.sqrt(x.mean() * (1 - x.mean()) / n)), lo=float(lo), hi=float(hi))
        else:
            s = cluster_se(x, clusters) if clusters is not None else float(x.std(ddof=1) / np.sqrt(n))
            entry.update(se=s, lo=float(x.mean() - crit * s), hi=float(x.mean() + crit * s))
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


def t_cases():
    return [{"q": q, "df": df, "x": float(stats.t.ppf(q, df))}
            for q, df in [(0.975, 1), (0.975, 2), (0.975, 9), (0.995, 4), (0.9, 29), (0.975, 200),
                          (0.6, 3), (0.025, 9)]]


def binom_cases():
    out = []
    for k, n, p in [(0, 10, 0.3), (3, 10, 0.3), (9, 10, 0.3), (40, 100, 0.5), (10, 1000, 0.004),
                    (480, 1000, 0.52), (5, 5, 0.9)]:
        out.append({"k": k, "n": n, "p": p, "cdf": float(stats.binom.cdf(k, n, p)),
                    "pmf": float(stats.binom.pmf(k, n, p))})
    return out


def clopper_pearson_cases():
    out = []
    for x, n, alpha in [(0, 5, 0.05), (5, 5, 0.05), (3, 10, 0.05), (12, 16, 0.05), (5, 1100, 0.05),
                        (0, 1100, 0.05), (40, 120, 0.1)]:
        lo, hi = proportion_confint(x, n, alpha=alpha, method="beta")
        out.append({"x": x, "n": n, "alpha": alpha, "lo": float(lo), "hi": float(hi)})
    return out


def mcnemar_interval(b, c, n, alpha):
    """The interval exp reports beside exact McNemar: each end of (2*pi - 1), pi from
    Clopper-Pearson of c out of b + c, scaled by the Clopper-Pearson end of the discordance
    (b + c)/n that widens it. Both pieces are statsmodels' proportion_confint(method="beta")."""
    if b + c == 0:
        pi_lo, pi_hi = 0.0, 1.0
    else:
        pi_lo, pi_hi = proportion_confint(c, b + c, alpha=alpha, method="beta")
    w_lo, w_hi = proportion_confint(b + c, n, alpha=alpha, method="beta")
    lo = 2 * pi_lo - 1
    hi = 2 * pi_hi - 1
    lo *= w_hi if lo < 0 else w_lo
    hi *= w_hi if hi > 0 else w_lo
    return float(lo), float(hi)


def mcnemar_interval_cases():
    out = []
    for b, c, n in [(0, 5, 1100), (1, 1, 1100), (4, 12, 120), (12, 4, 120), (0, 0, 50), (30, 55, 400),
                    (0, 9, 40)]:
        lo, hi = mcnemar_interval(b, c, n, 0.05)
        p = mcnemar([[0, b], [c, 0]], exact=True).pvalue
        out.append({"b": b, "c": c, "n": n, "alpha": 0.05, "lo": lo, "hi": hi, "p": float(p)})
    return out


def exact_mcnemar_power(n, pd, effect, alpha):
    """P(exact McNemar rejects) by enumeration: m discordant ~ Binomial(n, pd); of them x favour
    treatment ~ Binomial(m, pi), pi = (1 + effect/pd)/2; rejection decided by scipy's binomtest."""
    pi = (1 + effect / pd) / 2
    power = 0.0
    for m in range(n + 1):
        w = stats.binom.pmf(m, n, pd)
        if m == 0 or w < 1e-17:
            if m > n * pd:
                break
            continue
        xs = np.arange(m + 1)
        reject = np.array([stats.binomtest(int(x), m, 0.5).pvalue < alpha for x in xs])
        power += w * float(np.sum(stats.binom.pmf(xs, m, pi)[reject]))
    return power


def mcnemar_power_cases():
    out = []
    for n, b, c, alpha in [(1100, 0, 5, 0.05), (1100, 1, 1, 0.05), (120, 4, 12, 0.05),
                           (400, 30, 50, 0.05), (60, 3, 9, 0.1)]:
        pd = (b + c) / n
        at_max = exact_mcnemar_power(n, pd, pd, alpha)
        case = {"n": n, "b": b, "c": c, "alpha": alpha, "discordance": pd,
                "power_at_max": at_max, "mde": None}
        case["mde"] = exact_mde(n, pd, alpha)
        out.append(case)
    return out


def exact_mde(n, pd, alpha):
    """Smallest effect the exact McNemar test detects with probability POWER, by bisection on
    the enumerated power; None when even the whole discordance favouring one side falls short."""
    if pd == 0 or exact_mcnemar_power(n, pd, pd, alpha) < POWER:
        return None
    lo, hi = 0.0, pd
    while hi - lo > 1e-7:
        mid = (lo + hi) / 2
        if exact_mcnemar_power(n, pd, mid, alpha) >= POWER:
            hi = mid
        else:
            lo = mid
    return hi


def shifted_p(sums, sizes, delta):
    x = np.asarray(sums, float) - delta * np.asarray(sizes, float)
    if np.all(x == 0):
        return 1.0
    res = stats.permutation_test((x,), np.sum, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided")
    return float(res.pvalue)


def sign_flip_interval_cases():
    """Ends of {delta : p(delta) >= alpha} for the exact sign-flip test, by bisection on scipy's
    permutation_test of the shifted unit sums (sum_u - delta * size_u)."""
    rng = np.random.default_rng(17)
    out = []
    samples = [
        ([0.5, 1.0, 0.25, 0.75, -0.25, 1.0, 0.5, 0.0, 0.75], [1] * 9, 0.05),
        ((rng.integers(-3, 4, 12) / 3).tolist(), [1] * 12, 0.05),
        (rng.normal(0.3, 1, 11).round(3).tolist(), [1] * 11, 0.1),
        # cluster sums with unequal cluster sizes
        ([3.0, -1.0, 2.0, 4.0, 0.0, 1.0, 2.5, -0.5, 3.0, 1.0], [4, 2, 3, 5, 1, 2, 4, 2, 3, 2], 0.05),
    ]
    for sums, sizes, alpha in samples:
        mean = sum(sums) / sum(sizes)
        p0 = shifted_p(sums, sizes, 0.0)
        ends = []
        for direction in (-1, 1):
            inside, step = mean, 0.5
            while shifted_p(sums, sizes, mean + direction * step) >= alpha:
                step *= 2
            outside = mean + direction * step
            for _ in range(60):
                mid = (inside + outside) / 2
                if shifted_p(sums, sizes, mid) >= alpha:
                    inside = mid
                else:
                    outside = mid
            ends.append(inside)
        out.append({"sums": [float(v) for v in sums], "sizes": sizes, "alpha": alpha,
                    "p": p0, "lo": ends[0], "hi": ends[1]})
    return out


def repeat_cases():
    """pass@k (Chen et al. 2021), pass^k and the one-way ANOVA variance split, with pandas."""
    import pandas as pd
    rng = np.random.default_rng(23)
    items, k = 40, 4
    p = rng.random(items)
    rows = [(i, int(rng.random() < p[i])) for i in range(items) for _ in range(k)]
    df = pd.DataFrame(rows, columns=["item", "score"])
    g = df.groupby("item")["score"]
    n_i, c_i = g.count(), g.sum()
    pass_at_k = float(np.mean(1 - special.comb(n_i - c_i, k) / special.comb(n_i, k)))
    pass_all_k = float(np.mean(special.comb(c_i, k) / special.comb(n_i, k)))
    N, I = len(df), items
    msw = float(((df["score"] - g.transform("mean")) ** 2).sum() / (N - I))
    msb = float((n_i * (g.mean() - df["score"].mean()) ** 2).sum() / (I - 1))
    n0 = (N - float((n_i ** 2).sum()) / N) / (I - 1)
    between = max(0.0, (msb - msw) / n0)
    return [{"item_scores": [g.get_group(i).tolist() for i in range(items)], "k": k,
             "pass_at_k": pass_at_k, "pass_all_k": pass_all_k, "within": msw,
             "between": between, "within_share": msw / (msw + between)}]


def cluster_regression_case():
    """The issue's first case: 10 clusters of 40 items whose outcomes flip together (six
    clusters wrong -> right, four right -> wrong). The item-level McNemar p (what exp used to
    print), and the cluster sign-flip p (scipy, exact) that must be the headline."""
    control, treatment, clusters = [], [], []
    for g in range(10):
        up = g < 6
        for _ in range(40):
            control.append(0 if up else 1)
            treatment.append(1 if up else 0)
            clusters.append(f"k{g}")
    control, treatment = np.array(control), np.array(treatment)
    d = treatment - control
    b = int(np.sum((control == 1) & (treatment == 0)))
    c = int(np.sum((control == 0) & (treatment == 1)))
    _, inv = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inv, weights=d)
    res = stats.permutation_test((sums,), np.sum, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided")
    return {"control": control.tolist(), "treatment": treatment.tolist(), "clusters": clusters,
            "item_mcnemar_p": float(mcnemar([[0, b], [c, 0]], exact=True).pvalue),
            "cluster_sign_flip_p": float(res.pvalue)}

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
        "t_ppf": t_cases(),
        "binom": binom_cases(),
        "clopper_pearson": clopper_pearson_cases(),
        "mcnemar_interval": mcnemar_interval_cases(),
        "mcnemar_power": mcnemar_power_cases(),
        "sign_flip_interval": sign_flip_interval_cases(),
        "repeats": repeat_cases(),
        "cluster_regression": cluster_regression_case(),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
