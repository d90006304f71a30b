//! One trial's paired comparison, assembled from per-item scores: everything that goes into
//! `results/significance.json`. Pure: rows in, a serializable value out.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::estimate::{self, MeanEstimate};
use super::paired::{self, Units};

pub const CONTROL: &str = "control";
pub const TREATMENT: &str = "treatment";
/// The power the minimum detectable effect is computed for.
pub const POWER: f64 = 0.8;
/// Version of the significance.json shape.
pub const FORMAT: u32 = 1;

/// One row of `per_item_scores.csv`, reduced to what the statistics need.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// Identifies the item across conditions (the report uses `dataset:item_id`).
    pub item: String,
    pub condition: String,
    /// `None` when the request failed: a failure, never a wrong answer.
    pub score: Option<f64>,
    pub cluster: Option<String>,
}

/// Knobs of the analysis (the config's `significance:` section).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub alpha: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
}

/// Whether every score is 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    Binary,
    Continuous,
}

/// Something that could not be computed, and why (instead of a NaN or a silent gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotComputed {
    pub what: String,
    pub reason: String,
}

/// One condition on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionStats {
    /// Rows in per_item_scores.csv (items × repeats).
    pub rows: usize,
    pub scored: usize,
    pub failed: usize,
    /// Items with at least one score: the units of the estimate.
    pub items: usize,
    /// Mean of the item means (the accuracy for 0/1 scores).
    pub mean: Option<f64>,
    pub se: Option<f64>,
    /// [low, high] at 1 − alpha.
    pub ci: Option<[f64; 2]>,
    pub method: Option<String>,
}

/// The paired mean difference, treatment − control, over items scored in both conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub n: usize,
    pub mean: f64,
    pub se: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub method: String,
    /// Items where treatment scored higher, lower, the same.
    pub improved: usize,
    pub worsened: usize,
    pub unchanged: usize,
}

/// Exact McNemar test (0/1 scores, one repeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Items right under control only (b).
    pub control_only: u64,
    /// Items right under treatment only (c).
    pub treatment_only: u64,
    pub n_discordant: u64,
    pub p_value: f64,
    pub method: String,
}

/// Paired bootstrap percentile interval of the mean difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub ci: [f64; 2],
    pub resamples: u32,
    pub seed: u64,
    /// "items" or "clusters": what was resampled.
    pub unit: String,
    pub method: String,
}

/// Sign-flip permutation test on item (or cluster) differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permutation {
    pub p_value: f64,
    pub n_nonzero: usize,
    pub exact: bool,
    pub resamples: Option<u32>,
    pub seed: Option<u64>,
    pub unit: String,
    pub method: String,
}

/// Minimum detectable effect at `power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mde {
    pub value: f64,
    pub power: f64,
    /// Share of paired items whose scores differ between conditions.
    pub discordance: f64,
    pub method: String,
}

/// Everything in `results/significance.json`. See the module docs of `crate::stats` for the
/// meaning of each field; `holm_p` is filled in later, across trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    pub format: u32,
    /// Headline: the paired mean difference, treatment − control.
    pub effect: Option<f64>,
    /// Headline test: exact McNemar for 0/1 scores with one repeat, sign-flip otherwise.
    pub p_value: Option<f64>,
    pub p_method: Option<String>,
    /// Holm-adjusted p-value across the run's trials (written by the aggregate step).
    pub holm_p: Option<f64>,
    pub alpha: f64,
    pub seed: u64,
    pub bootstrap_resamples: u32,
    pub power: f64,
    /// `None` when nothing was scored.
    pub score_kind: Option<ScoreKind>,
    /// The most rows seen for one item and condition.
    pub repeats: usize,
    /// Distinct items in the scores file.
    pub n_items: usize,
    /// Items with a score in both conditions.
    pub n_paired: usize,
    /// Number of clusters when the dataset has a cluster field, else `None`.
    pub clusters: Option<usize>,
    pub conditions: BTreeMap<String, ConditionStats>,
    pub difference: Option<Difference>,
    pub mcnemar: Option<McNemar>,
    pub bootstrap: Option<Bootstrap>,
    pub permutation: Option<Permutation>,
    pub mde: Option<Mde>,
    pub not_computed: Vec<NotComputed>,
}

/// The two compared conditions, as indices into [`ItemTally::cells`].
const ARMS: [&str; 2] = [CONTROL, TREATMENT];

/// One item's scores in one condition, folded as they arrive.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// Rows of this item and condition, failed ones included (their maximum is `repeats`).
    rows: u32,
    /// Rows with a score.
    scored: u32,
    /// Sum of the scores in row order. It starts at −0.0, the start of `Iterator::sum` for
    /// floats, so the item mean is bit for bit the mean of the collected scores.
    sum: f64,
}

impl Default for Cell {
    fn default() -> Self {
        Cell { rows: 0, scored: 0, sum: -0.0 }
    }
}

#[derive(Debug, Clone, Default)]
struct ItemTally {
    /// Index of the first non-empty cluster label seen for the item.
    cluster: Option<usize>,
    cells: [Cell; 2],
}

/// Per condition: the row counts.
#[derive(Debug, Clone, Copy, Default)]
struct ArmCount {
    rows: usize,
    failed: usize,
}

/// Score rows folded per item as they are read: everything [`Tally::analyze`] needs, in memory
/// proportional to the number of items (a few dozen bytes each), not to the rows and their
/// strings. A 100,000-item trial would otherwise hold every row of `per_item_scores.csv` as
/// owned strings while the statistics are computed; this is what keeps a large run's report
/// step small. Items are numbered in first-seen order.
#[derive(Debug, Clone)]
pub struct Tally {
    item_index: HashMap<Box<str>, usize>,
    cluster_index: HashMap<Box<str>, usize>,
    items: Vec<ItemTally>,
    arms: [Option<ArmCount>; 2],
    /// Conditions other than control and treatment, in first-seen order (reported, not used).
    other_conditions: Vec<String>,
    any_score: bool,
    binary: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            item_index: HashMap::new(),
            cluster_index: HashMap::new(),
            items: Vec::new(),
            arms: [None; 2],
            other_conditions: Vec::new(),
            any_score: false,
            // Binary until a score other than 0 or 1 is seen.
            binary: true,
        }
    }

    /// Adds one row: `item` identifies the item across conditions, `score` is `None` for a
    /// failed request, `cluster` is the item's cluster label (empty or `None`: no cluster).
    /// Returns the item's index.
    pub fn add(
        &mut self,
        item: &str,
        condition: &str,
        score: Option<f64>,
        cluster: Option<&str>,
    ) -> usize {
        let idx = match self.item_index.get(item) {
            Some(&i) => i,
            None => {
                let i = self.items.len();
                self.item_index.insert(item.into(), i);
                self.items.push(ItemTally::default());
                i
            }
        };
        if let Some(c) = cluster.filter(|c| !c.is_empty())
            && self.items[idx].cluster.is_none()
        {
            let next = self.cluster_index.len();
            let ci = *self.cluster_index.entry(c.into()).or_insert(next);
            self.items[idx].cluster = Some(ci);
        }
        let Some(arm) = ARMS.iter().position(|a| *a == condition) else {
            if !self.other_conditions.iter().any(|c| c == condition) {
                self.other_conditions.push(condition.to_string());
            }
            return idx;
        };
        let count = self.arms[arm].get_or_insert_with(ArmCount::default);
        count.rows += 1;
        let cell = &mut self.items[idx].cells[arm];
        cell.rows += 1;
        match score {
            Some(s) => {
                cell.scored += 1;
                cell.sum += s;
                self.any_score = true;
                self.binary &= s == 0.0 || s == 1.0;
            }
            None => count.failed += 1,
        }
        idx
    }

    /// Distinct items seen, in any condition.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The index [`Tally::add`] gave `item`, if it was seen.
    pub fn index_of(&self, item: &str) -> Option<usize> {
        self.item_index.get(item).copied()
    }

    /// The mean score of item `idx` in `condition` (control or treatment) over its scored
    /// rows; `None` when it has none.
    pub fn item_mean(&self, idx: usize, condition: &str) -> Option<f64> {
        let arm = ARMS.iter().position(|a| *a == condition)?;
        let cell = self.items.get(idx)?.cells[arm];
        (cell.scored > 0).then(|| cell.sum / f64::from(cell.scored))
    }

    /// Computes every figure of the trial, exactly as [`analyze`] does for the same rows.
    pub fn analyze(&self, settings: &Settings) -> Significance {
        analyze_tally(self, settings)
    }
}

fn fmt_pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Computes every figure of one trial from its score rows.
pub fn analyze(rows: &[ScoreRow], settings: &Settings) -> Significance {
    let mut tally = Tally::new();
    for r in rows {
        tally.add(&r.item, &r.condition, r.score, r.cluster.as_deref());
    }
    tally.analyze(settings)
}

fn analyze_tally(tally: &Tally, settings: &Settings) -> Significance {
    let mut not_computed = Vec::new();
    let mut skip = |what: &str, reason: String| {
        not_computed.push(NotComputed { what: what.to_string(), reason });
    };
    let alpha = settings.alpha;
    let level = fmt_pct(1.0 - alpha);

    for c in &tally.other_conditions {
        skip(
            &format!("{c} condition"),
            format!("only {CONTROL} and {TREATMENT} are compared; rows of {c:?} are ignored"),
        );
    }
    let n_items = tally.items.len();
    let repeats =
        tally.items.iter().flat_map(|i| i.cells.iter().map(|c| c.rows as usize)).max().unwrap_or(0);
    let binary = tally.binary;
    let score_kind =
        tally.any_score.then_some(if binary { ScoreKind::Binary } else { ScoreKind::Continuous });
    let single = repeats <= 1;

    // Clusters: items without a label are their own cluster (the conservative choice: it never
    // pools unrelated items).
    let clustered = tally.items.iter().any(|i| i.cluster.is_some());
    let unit_of = |i: usize| match tally.items[i].cluster {
        Some(c) => Unit::Cluster(c),
        None => Unit::Item(i),
    };
    let clusters = clustered.then(|| {
        let all: Vec<usize> = (0..n_items).collect();
        dense_units(&all, unit_of).1
    });
    // Dense cluster indices for a subset of items, in order of first appearance.
    let groups_for = |items: &[usize]| dense_units(items, unit_of);
    let se_method = |n_groups: usize| {
        if clustered {
            format!("cluster-robust SE (CR1, {n_groups} clusters)")
        } else {
            "SE of independent items".to_string()
        }
    };

    // Each condition on its own.
    let mut conditions = BTreeMap::new();
    let mut means_by_arm: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    // BTreeMap order: control before treatment, as the names sort.
    for (a, name) in ARMS.iter().enumerate() {
        let Some(arm) = tally.arms[a] else { continue };
        let means: Vec<Option<f64>> = (0..n_items).map(|i| tally.item_mean(i, name)).collect();
        let items: Vec<usize> = (0..n_items).filter(|&i| means[i].is_some()).collect();
        let values: Vec<f64> = items.iter().filter_map(|&i| means[i]).collect();
        let scored = arm.rows - arm.failed;
        let mut stats = ConditionStats {
            rows: arm.rows,
            scored,
            failed: arm.failed,
            items: items.len(),
            mean: estimate::mean(&values),
            se: None,
            ci: None,
            method: None,
        };
        if values.is_empty() {
            skip(
                &format!("{name} mean"),
                format!("every request failed ({} of {} rows have no score)", arm.failed, arm.rows),
            );
        } else if binary && single && !clustered {
            if let Some(MeanEstimate { se, lo, hi, .. }) = estimate::proportion(&values, alpha) {
                stats.se = Some(se);
                stats.ci = Some([lo, hi]);
                stats.method = Some(format!("{level} Wilson score interval"));
            }
        } else {
            let (g, n_groups) = groups_for(&items);
            let groups = clustered.then_some((g.as_slice(), n_groups));
            match estimate::clt(&values, groups, alpha) {
                Some(e) => {
                    stats.se = Some(e.se);
                    stats.ci = Some([e.lo, e.hi]);
                    let unit = if single { "items" } else { "item means over repeats" };
                    stats.method = Some(format!(
                        "{level} normal (CLT) interval on {unit}, {}",
                        se_method(n_groups)
                    ));
                }
                None => skip(
                    &format!("{name} confidence interval"),
                    too_few(values.len(), n_groups, clustered),
                ),
            }
        }
        conditions.insert(name.to_string(), stats);
        means_by_arm.insert(name, means);
    }

    let mut sig = Significance {
        format: FORMAT,
        effect: None,
        p_value: None,
        p_method: None,
        holm_p: None,
        alpha,
        seed: settings.seed,
        bootstrap_resamples: settings.bootstrap_resamples,
        power: POWER,
        score_kind,
        repeats,
        n_items,
        n_paired: 0,
        clusters,
        conditions,
        difference: None,
        mcnemar: None,
        bootstrap: None,
        permutation: None,
        mde: None,
        not_computed: Vec::new(),
    };

    // The paired comparison.
    let (control, treatment) = match (means_by_arm.get(CONTROL), means_by_arm.get(TREATMENT)) {
        (Some(c), Some(t)) => (c, t),
        (c, t) => {
            let reason = match (c.is_some(), t.is_some()) {
                (true, false) => format!(
                    "only the {CONTROL} condition is in the results: run the {TREATMENT} too"
                ),
                (false, true) => format!(
                    "only the {TREATMENT} condition is in the results: run the {CONTROL} too, \
                     or pair with a baseline run (--baseline REF)"
                ),
                _ => "no scored rows".to_string(),
            };
            skip("paired comparison", reason);
            sig.not_computed = not_computed;
            return sig;
        }
    };
    let paired_items: Vec<usize> =
        (0..n_items).filter(|&i| control[i].is_some() && treatment[i].is_some()).collect();
    sig.n_paired = paired_items.len();
    if paired_items.is_empty() {
        skip(
            "paired comparison",
            "no item has a score in both conditions (every request failed in at least one)".into(),
        );
        sig.not_computed = not_computed;
        return sig;
    }
    let mean_of = |m: &[Option<f64>], i: usize| m[i].unwrap_or(0.0);
    let d: Vec<f64> =
        paired_items.iter().map(|&i| mean_of(treatment, i) - mean_of(control, i)).collect();
    let n = d.len();
    let (g, n_groups) = groups_for(&paired_items);
    let groups = clustered.then_some((g.as_slice(), n_groups));
    let mean_d = d.iter().sum::<f64>() / n as f64;
    let se = match groups {
        Some((g, k)) => estimate::se_cluster(&d, g, k),
        None => estimate::se_iid(&d),
    };
    if se.is_none() {
        skip("difference standard error", too_few(n, n_groups, clustered));
    }
    let z = estimate::z_crit(alpha);
    sig.difference = Some(Difference {
        n,
        mean: mean_d,
        se,
        ci: se.map(|s| [mean_d - z * s, mean_d + z * s]),
        method: format!(
            "paired mean difference (treatment − control) over {}, {}; {level} normal interval",
            if single { "items" } else { "item means over repeats" },
            se_method(n_groups)
        ),
        improved: d.iter().filter(|v| **v > 0.0).count(),
        worsened: d.iter().filter(|v| **v < 0.0).count(),
        unchanged: d.iter().filter(|v| **v == 0.0).count(),
    });
    sig.effect = Some(mean_d);

    // Exact McNemar: only when each item has one 0/1 outcome per condition.
    if binary && single {
        let b = paired_items
            .iter()
            .filter(|&&i| mean_of(control, i) == 1.0 && mean_of(treatment, i) == 0.0)
            .count() as u64;
        let c = paired_items
            .iter()
            .filter(|&&i| mean_of(control, i) == 0.0 && mean_of(treatment, i) == 1.0)
            .count() as u64;
        let p = paired::mcnemar_exact(b, c);
        sig.mcnemar = Some(McNemar {
            control_only: b,
            treatment_only: c,
            n_discordant: b + c,
            p_value: p,
            method: "exact McNemar (two-sided binomial test on discordant pairs)".into(),
        });
        if clustered {
            skip(
                "clustered McNemar",
                "exact McNemar assumes independent items; with clusters read it next to the \
                 cluster-robust interval and the cluster sign-flip test"
                    .into(),
            );
        }
    } else {
        let why = if !binary {
            "scores are not all 0/1"
        } else {
            "items have several repeats, so an item has no single 0/1 outcome"
        };
        skip(
            "mcnemar",
            format!("{why}; the sign-flip permutation test on item means is used instead"),
        );
    }

    // Sign-flip permutation test on items, or whole clusters.
    let units = Units::new(&d, groups);
    let unit_sums: Vec<f64> = match groups {
        Some((g, k)) => {
            let mut s = vec![0.0; k];
            for (v, &j) in d.iter().zip(g) {
                s[j] += v;
            }
            s
        }
        None => d.clone(),
    };
    let unit_name = if clustered { "clusters" } else { "items" };
    let flip = paired::sign_flip_test(&unit_sums, settings.bootstrap_resamples, settings.seed);
    let flip_method = if flip.exact && flip.n_nonzero > paired::EXACT_PERMUTATION_LIMIT {
        format!(
            "sign-flip permutation test on {unit_name}, exact (equal-sized differences: \
             binomial count of the {} sign flips)",
            flip.n_nonzero
        )
    } else if flip.exact {
        format!(
            "sign-flip permutation test on {unit_name}, exact (all 2^{} sign patterns)",
            flip.n_nonzero
        )
    } else {
        format!(
            "sign-flip permutation test on {unit_name}, {} seeded random sign patterns",
            settings.bootstrap_resamples
        )
    };
    sig.permutation = Some(Permutation {
        p_value: flip.p_value,
        n_nonzero: flip.n_nonzero,
        exact: flip.exact,
        resamples: flip.resamples,
        seed: (!flip.exact).then_some(settings.seed),
        unit: unit_name.into(),
        method: flip_method.clone(),
    });

    // Headline test.
    if let Some(m) = &sig.mcnemar {
        sig.p_value = Some(m.p_value);
        sig.p_method = Some(m.method.clone());
    } else {
        sig.p_value = Some(flip.p_value);
        sig.p_method = Some(flip_method);
    }

    match paired::bootstrap_ci(&units, alpha, settings.bootstrap_resamples, settings.seed) {
        Some((lo, hi)) => {
            sig.bootstrap = Some(Bootstrap {
                ci: [lo, hi],
                resamples: settings.bootstrap_resamples,
                seed: settings.seed,
                unit: unit_name.into(),
                method: format!("{level} paired percentile bootstrap, resampling {unit_name}"),
            })
        }
        None if settings.bootstrap_resamples == 0 => {
            skip("bootstrap", "bootstrap_resamples is 0 in the config".into())
        }
        None => {
            skip("bootstrap", format!("needs at least 2 {unit_name}, there is {}", units.len()))
        }
    }

    let discordance = d.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
    match paired::minimum_detectable_effect(&units, alpha, POWER) {
        Some(v) => {
            sig.mde = Some(Mde {
                value: v,
                power: POWER,
                discordance,
                method: format!(
                    "(z(1−α/2) + z(power))·SE under no effect, from the observed discordance, \
                     over {unit_name}"
                ),
            })
        }
        None => skip(
            "minimum detectable effect",
            "no item scored differently between conditions, so the variance of the \
             difference is unknown"
                .into(),
        ),
    }
    sig.not_computed = not_computed;
    sig
}

/// What the statistics resample and cluster by: a labelled cluster, or an item without one
/// (its own cluster, never pooled with unrelated items).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Cluster(usize),
    Item(usize),
}

/// Dense unit indices 0..n for `items`, in order of first appearance, and n.
fn dense_units(items: &[usize], unit_of: impl Fn(usize) -> Unit) -> (Vec<usize>, usize) {
    let mut seen: HashMap<Unit, usize> = HashMap::new();
    let idx = items
        .iter()
        .map(|&i| {
            let next = seen.len();
            *seen.entry(unit_of(i)).or_insert(next)
        })
        .collect();
    (idx, seen.len())
}

fn too_few(n: usize, n_groups: usize, clustered: bool) -> String {
    if clustered && n_groups < 2 {
        format!("needs at least 2 clusters, there is {n_groups}")
    } else {
        format!("needs at least 2 items to estimate a spread, there is {n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(item: &str, cond: &str, score: Option<f64>) -> ScoreRow {
        ScoreRow { item: item.into(), condition: cond.into(), score, cluster: None }
    }

    const S: Settings = Settings { alpha: 0.05, bootstrap_resamples: 500, seed: 1 };

    #[test]
    fn all_concordant_gives_p_one_and_no_nan() {
        let rows: Vec<ScoreRow> = (0..6)
            .flat_map(|i| {
                let s = Some(f64::from(i % 2));
                [row(&i.to_string(), CONTROL, s), row(&i.to_string(), TREATMENT, s)]
            })
            .collect();
        let sig = analyze(&rows, &S);
        assert_eq!(sig.p_value, Some(1.0));
        assert_eq!(sig.effect, Some(0.0));
        assert!(sig.mde.is_none());
        let json = serde_json::to_string(&sig).unwrap();
        assert!(!json.contains("NaN") && !json.contains("null,null"));
    }

    #[test]
    fn tally_item_means_are_bit_for_bit_the_means_of_the_collected_scores() {
        let scores = [0.1, 0.2, 0.7, 0.3];
        let mut t = Tally::new();
        for s in scores {
            t.add("a:1", TREATMENT, Some(s), None);
        }
        t.add("a:1", TREATMENT, None, None);
        t.add("a:2", CONTROL, Some(-0.0), Some("k"));
        let expected = scores.iter().sum::<f64>() / scores.len() as f64;
        assert_eq!(t.item_mean(0, TREATMENT).map(f64::to_bits), Some(expected.to_bits()));
        // Iterator::sum starts at -0.0, so a lone -0 stays -0 as it did from a Vec of scores.
        assert!(t.item_mean(1, CONTROL).is_some_and(|m| m == 0.0 && m.is_sign_negative()));
        assert_eq!(t.item_mean(0, CONTROL), None);
        assert_eq!((t.len(), t.index_of("a:2"), t.index_of("b:1")), (2, Some(1), None));
    }

    #[test]
    fn other_conditions_count_as_items_but_not_in_the_comparison() {
        let mut rows = vec![row("x", "other", Some(1.0))];
        rows.extend((0..4).flat_map(|i| {
            let i = i.to_string();
            [row(&i, CONTROL, Some(0.0)), row(&i, TREATMENT, Some(1.0))]
        }));
        let sig = analyze(&rows, &S);
        assert_eq!((sig.n_items, sig.n_paired), (5, 4));
        assert_eq!(sig.not_computed[0].what, "other condition");
        assert_eq!(sig.conditions[CONTROL].rows, 4);
    }
}
