//! The headline of a paired comparison: one test chosen by the design, and the interval that
//! inverts that same test, so a report can never print "p = 0.06" beside an interval that
//! excludes 0. The decision table (docs/STATISTICS.md):
//!
//! | scores | repeats | clusters | unit | test and interval |
//! | --- | --- | --- | --- | --- |
//! | 0/1 | 1 | no | item | exact McNemar; exact conditional interval |
//! | any other | any | no | item (mean over its repeats) | sign-flip on items; its inversion |
//! | any | any | yes | cluster (of item means) | sign-flip on clusters; its inversion |
//!
//! Repeats of one item are not independent draws of the experiment, and items of one cluster
//! are correlated: treating either as independent items makes the test reject a true null far
//! more often than alpha (60% instead of 5% with 10 clusters of 40 items flipping together).
use serde::{Deserialize, Serialize};

use super::{dist, estimate, paired, signflip};

/// The headline tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    ExactMcnemar,
    SignFlipItems,
    SignFlipClusters,
    /// The paired t test on item differences: the sign-flip test's stand-in when it would have
    /// to sample sign patterns and `bootstrap_resamples` is 0.
    TItems,
    /// The t test on the mean difference with the cluster-robust (CR1) standard error and
    /// G − 1 degrees of freedom: the same stand-in for clusters.
    TClusters,
}

impl Test {
    /// A short name for tables and sentences.
    pub fn label(self) -> &'static str {
        match self {
            Test::ExactMcnemar => "exact McNemar",
            Test::SignFlipItems => "sign-flip test on items",
            Test::SignFlipClusters => "sign-flip test on clusters",
            Test::TItems => "paired t test on items",
            Test::TClusters => "t test on clusters (CR1)",
        }
    }

    /// Whether the test's units are clusters.
    pub fn clustered(self) -> bool {
        matches!(self, Test::SignFlipClusters | Test::TClusters)
    }
}

/// What decides the test: the kind of scores, repeats per item, clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Design {
    /// Every score is 0 or 1.
    pub binary: bool,
    /// The most scored rows of one item in one condition.
    pub repeats: usize,
    /// Some item has a cluster label.
    pub clustered: bool,
}

impl Design {
    /// The row of the decision table this design falls in.
    pub fn test(&self) -> Test {
        if self.clustered {
            Test::SignFlipClusters
        } else if self.binary && self.repeats <= 1 {
            Test::ExactMcnemar
        } else {
            Test::SignFlipItems
        }
    }

    /// Why [`Design::test`] chose its test, in a sentence.
    pub fn why(&self) -> String {
        let repeats = if self.repeats > 1 {
            format!(
                "{} repeats per item are not independent items, so each item counts once, as \
                 the mean over its repeats",
                self.repeats
            )
        } else if !self.binary {
            "scores are not all 0/1, so McNemar does not apply".to_string()
        } else {
            String::new()
        };
        match self.test() {
            Test::ExactMcnemar => "0/1 scores, one repeat, no clusters: each item is one \
                                   independent pair of 0/1 outcomes, so the exact McNemar test \
                                   on the discordant items applies"
                .into(),
            Test::SignFlipItems | Test::TItems => {
                format!("{repeats}; the item is the unit of a paired sign-flip permutation test")
            }
            Test::SignFlipClusters | Test::TClusters => {
                let mut s = "a cluster field is set and items of one cluster are correlated, \
                             so the cluster is the unit of a sign-flip permutation test on \
                             cluster sums"
                    .to_string();
                if !repeats.is_empty() {
                    s = format!("{s}; {repeats}");
                }
                s
            }
        }
    }
}

/// The headline test and interval of a paired comparison (the `headline` block of
/// significance.json; `effect`, `p_value` and `p_method` repeat its figures at the top).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub test: Test,
    /// Why the design calls for this test.
    pub why: String,
    /// `items` or `clusters`: what the test treats as independent.
    pub unit: String,
    pub n_units: usize,
    /// Items in the comparison (scored in both conditions).
    pub n_items: usize,
    /// Mean paired difference per item.
    pub effect: f64,
    pub p_value: f64,
    /// The interval that inverts the test; `None` when unbounded (see `ci_note`).
    pub ci: Option<[f64; 2]>,
    pub ci_method: String,
    /// Why there is no interval, when there is none.
    pub ci_note: Option<String>,
    pub method: String,
    pub exact: bool,
    pub resamples: Option<u32>,
    pub seed: Option<u64>,
}

/// The pieces a headline is computed from: per item its difference and, with clusters, its
/// cluster index.
pub struct Paired<'a> {
    /// treatment − control per item (means over repeats).
    pub d: &'a [f64],
    /// Cluster index of each item and the number of clusters, when clustered.
    pub groups: Option<(&'a [usize], usize)>,
}

/// Units of the sign-flip test: per cluster (or item) the sum of its differences and its size.
pub fn unit_sums(p: &Paired) -> (Vec<f64>, Vec<f64>) {
    match p.groups {
        Some((g, k)) => {
            let (mut sums, mut sizes) = (vec![0.0; k], vec![0.0; k]);
            for (v, &j) in p.d.iter().zip(g) {
                sums[j] += v;
                sizes[j] += 1.0;
            }
            (sums, sizes)
        }
        None => (p.d.to_vec(), vec![1.0; p.d.len()]),
    }
}

/// Discordant items of 0/1 differences: (b, c) = (control only, treatment only).
pub fn discordant(d: &[f64]) -> (u64, u64) {
    let b = d.iter().filter(|v| **v < 0.0).count() as u64;
    let c = d.iter().filter(|v| **v > 0.0).count() as u64;
    (b, c)
}

/// Clusters of one item each are items: the design without clusters.
pub fn effective(design: Design, p: &Paired) -> Design {
    match p.groups {
        Some((_, k)) if k == p.d.len() => Design { clustered: false, ..design },
        _ => design,
    }
}

/// The common size of the non-zero differences, when they all have one (and there is one).
fn equal_size(d: &[f64]) -> Option<f64> {
    let mut nz = d.iter().filter(|v| **v != 0.0).map(|v| v.abs());
    let first = nz.next()?;
    nz.all(|v| v == first).then_some(first)
}

/// The headline of `p` for `design` at level `alpha`; sampled sign patterns use `resamples`
/// and `seed`. `p.d` must not be empty.
pub fn headline(design: Design, p: &Paired, alpha: f64, resamples: u32, seed: u64) -> Headline {
    let n = p.d.len();
    let effect = p.d.iter().sum::<f64>() / n.max(1) as f64;
    let level = crate::display::confidence(alpha);
    let design = effective(design, p);
    let test = design.test();
    let why = design.why();
    let size = equal_size(p.d);
    if test == Test::ExactMcnemar || (test == Test::SignFlipItems && size.is_some()) {
        // Every non-zero item difference of one size w (0/1 outcomes, or identical repeats):
        // the count of positive signs is Binomial(m, ½), so the sign-flip test on items is
        // the exact McNemar test on the signs, and the McNemar interval scaled by w inverts it.
        let w = size.unwrap_or(1.0);
        let (b, c) = discordant(p.d);
        let ci = paired::mcnemar_interval(b, c, n as u64, alpha);
        let method = if test == Test::ExactMcnemar {
            "exact McNemar (two-sided binomial test on discordant pairs)".to_string()
        } else {
            format!(
                "paired sign-flip permutation test on items, exact (every non-zero item \
                 difference is ±{w}, so it is the exact McNemar test on their signs)"
            )
        };
        return Headline {
            test,
            why,
            unit: "items".into(),
            n_units: n,
            n_items: n,
            effect,
            p_value: paired::mcnemar_exact(b, c),
            ci: ci.map(|(lo, hi)| [w * lo, w * hi]),
            ci_method: format!(
                "{level} exact conditional interval inverting the McNemar test: Clopper–Pearson \
                 for the share of discordant items favouring treatment, scaled by the \
                 Clopper–Pearson interval of the discordance"
            ),
            ci_note: None,
            method,
            exact: true,
            resamples: None,
            seed: None,
        };
    }
    let (sums, sizes) = unit_sums(p);
    let unit = if test == Test::SignFlipClusters { "clusters" } else { "items" };
    if sums.len() > paired::EXACT_PERMUTATION_LIMIT && resamples == 0 {
        return t_headline(test == Test::SignFlipClusters, why, unit, p, alpha);
    }
    let r = signflip::test_and_interval(&sums, &sizes, alpha, resamples, seed);
    let how = if r.exact {
        format!("exact, all 2^{} sign patterns", r.n_units)
    } else {
        format!("{resamples} seeded random sign patterns")
    };
    let smallest_p = 2.0 / f64::powi(2.0, r.n_units.min(1000) as i32);
    Headline {
        test,
        why,
        unit: unit.into(),
        n_units: r.n_units,
        n_items: n,
        effect,
        p_value: r.p_value,
        ci: r.ci.map(|(lo, hi)| [lo, hi]),
        ci_method: format!(
            "{level} interval inverting the sign-flip test on {unit} (every shift of the item \
             differences the test does not reject)"
        ),
        ci_note: r.ci.is_none().then(|| {
            if smallest_p >= alpha {
                format!(
                    "with {} {unit} no sign pattern can reach p < {alpha} (the smallest \
                     possible p is {smallest_p}), so every effect is consistent with the data",
                    r.n_units
                )
            } else {
                format!("the sign-flip test on {} {unit} cannot bound the effect", r.n_units)
            }
        }),
        method: format!("paired sign-flip permutation test on {unit}, {how}"),
        exact: r.exact,
        resamples: r.resamples,
        seed: (!r.exact).then_some(seed),
    }
}

/// The t test and interval standing in for a sign-flip test that would have to sample sign
/// patterns when `bootstrap_resamples` is 0 (more than [`paired::EXACT_PERMUTATION_LIMIT`]
/// units): the paired t test on items, or with clusters the CR1 standard error on G − 1 degrees
/// of freedom (Cameron & Miller 2015). Never a p-value of 1 standing for "not computed".
fn t_headline(clustered: bool, why: String, unit: &str, p: &Paired, alpha: f64) -> Headline {
    let n = p.d.len();
    let effect = p.d.iter().sum::<f64>() / n as f64;
    let (test, se, g) = match p.groups.filter(|_| clustered) {
        Some((groups, k)) => (Test::TClusters, estimate::se_cluster(p.d, groups, k), k),
        None => (Test::TItems, estimate::se_iid(p.d), n),
    };
    let df = (g as f64 - 1.0).max(1.0);
    // Every unit moved by the same amount: no spread, so the data either are all 0 or leave
    // no doubt about the sign.
    let (p_value, ci) = match se {
        Some(se) if se > 0.0 => {
            let t = effect / se;
            let half = estimate::t_crit(alpha, df) * se;
            (2.0 * (1.0 - dist::t_cdf(t.abs(), df)), Some([effect - half, effect + half]))
        }
        _ => (if effect == 0.0 { 1.0 } else { 0.0 }, Some([effect, effect])),
    };
    let level = crate::display::confidence(alpha);
    let se_name = if test == Test::TClusters {
        format!("cluster-robust (CR1) standard error, t on {g} − 1 df")
    } else {
        format!("standard error of {n} item differences, t on {n} − 1 df")
    };
    Headline {
        test,
        why: format!(
            "{why}; with bootstrap_resamples 0 the sign-flip test on {g} {unit} cannot sample sign              patterns, so the t test stands in for it"
        ),
        unit: unit.into(),
        n_units: g,
        n_items: n,
        effect,
        p_value: p_value.clamp(0.0, 1.0),
        ci,
        ci_method: format!("{level} t interval, {se_name}"),
        ci_note: None,
        method: format!("{} ({se_name})", test.label()),
        exact: false,
        resamples: None,
        seed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_table_picks_the_unit_the_design_calls_for() {
        let d = |binary, repeats, clustered| Design { binary, repeats, clustered };
        assert_eq!(d(true, 1, false).test(), Test::ExactMcnemar);
        assert_eq!(d(true, 3, false).test(), Test::SignFlipItems);
        assert_eq!(d(false, 1, false).test(), Test::SignFlipItems);
        assert_eq!(d(true, 1, true).test(), Test::SignFlipClusters);
        assert_eq!(d(false, 5, true).test(), Test::SignFlipClusters);
        assert!(d(true, 3, true).why().contains("3 repeats"));
    }

    #[test]
    fn the_mcnemar_interval_agrees_with_the_exact_test_at_zero_and_five() {
        // The case: (b, c) = (0, 5) of 1,100 items, p = 0.0625.
        let mut d = vec![0.0; 1100];
        d[..5].iter_mut().for_each(|v| *v = 1.0);
        let design = Design { binary: true, repeats: 1, clustered: false };
        let h = headline(design, &Paired { d: &d, groups: None }, 0.05, 0, 0);
        assert_eq!(h.p_value, 0.0625);
        let [lo, hi] = h.ci.unwrap();
        assert!(lo < 0.0 && hi > 5.0 / 1100.0, "{lo} {hi}");
    }

    #[test]
    fn without_resamples_many_units_get_the_t_test_never_a_p_of_one() {
        // 30 clusters of 2 items, a clear effect: the sign-flip test would need sampled
        // patterns; the CR1 t test stands in, with an interval that agrees with it.
        let d: Vec<f64> = (0..60).map(|i| 0.5 + f64::from(i % 3) * 0.25 - 0.25).collect();
        let groups: Vec<usize> = (0..60).map(|i| i / 2).collect();
        let design = Design { binary: false, repeats: 1, clustered: true };
        let h = headline(design, &Paired { d: &d, groups: Some((&groups, 30)) }, 0.05, 0, 0);
        assert_eq!((h.test, h.n_units, h.exact), (Test::TClusters, 30, false));
        assert!(h.p_value < 1e-6 && h.why.contains("bootstrap_resamples 0"), "{h:?}");
        let [lo, hi] = h.ci.unwrap();
        assert!(lo > 0.0 && lo < h.effect && h.effect < hi);
        let items = headline(
            Design { clustered: false, ..design },
            &Paired { d: &d, groups: None },
            0.05,
            0,
            0,
        );
        assert_eq!(items.test, Test::TItems);
    }
}
