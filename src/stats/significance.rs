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

/// Per condition: item → scores (in first-seen item order) and the row counts.
struct Arm {
    rows: usize,
    failed: usize,
    scores: HashMap<usize, Vec<f64>>,
}

impl Arm {
    fn item_means(&self) -> HashMap<usize, f64> {
        self.scores
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
            .collect()
    }
}

fn fmt_pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Computes every figure of one trial from its score rows.
pub fn analyze(rows: &[ScoreRow], settings: &Settings) -> Significance {
    let mut not_computed = Vec::new();
    let mut skip = |what: &str, reason: String| {
        not_computed.push(NotComputed { what: what.to_string(), reason });
    };
    let alpha = settings.alpha;
    let level = fmt_pct(1.0 - alpha);

    // Items in first-seen order, their cluster labels, and each condition's scores.
    let mut item_index: HashMap<&str, usize> = HashMap::new();
    let mut item_cluster: Vec<Option<&str>> = Vec::new();
    let mut arms: BTreeMap<String, Arm> = BTreeMap::new();
    let mut per_cell: HashMap<(&str, usize), usize> = HashMap::new();
    let mut other_conditions: Vec<&str> = Vec::new();
    for r in rows {
        let next = item_index.len();
        let idx = *item_index.entry(r.item.as_str()).or_insert(next);
        if idx == item_cluster.len() {
            item_cluster.push(None);
        }
        if let Some(c) = r.cluster.as_deref().filter(|c| !c.is_empty()) {
            item_cluster[idx].get_or_insert(c);
        }
        if r.condition != CONTROL && r.condition != TREATMENT {
            if !other_conditions.contains(&r.condition.as_str()) {
                other_conditions.push(&r.condition);
            }
            continue;
        }
        *per_cell.entry((r.condition.as_str(), idx)).or_insert(0) += 1;
        let arm = arms.entry(r.condition.clone()).or_insert_with(|| Arm {
            rows: 0,
            failed: 0,
            scores: HashMap::new(),
        });
        arm.rows += 1;
        let cell = arm.scores.entry(idx).or_default();
        match r.score {
            Some(s) => cell.push(s),
            None => arm.failed += 1,
        }
    }
    for c in &other_conditions {
        skip(
            &format!("{c} condition"),
            format!("only {CONTROL} and {TREATMENT} are compared; rows of {c:?} are ignored"),
        );
    }
    let n_items = item_index.len();
    let repeats = per_cell.values().copied().max().unwrap_or(0);
    let all_scores = arms.values().flat_map(|a| a.scores.values().flatten());
    let mut any = false;
    let mut binary = true;
    for s in all_scores {
        any = true;
        binary &= *s == 0.0 || *s == 1.0;
    }
    let score_kind = any.then_some(if binary { ScoreKind::Binary } else { ScoreKind::Continuous });
    let single = repeats <= 1;

    // Clusters: items without a label are their own cluster (the conservative choice: it never
    // pools unrelated items).
    let clustered = item_cluster.iter().any(Option::is_some);
    let cluster_of: Vec<String> = item_cluster
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Some(c) => format!("c:{c}"),
            None => format!("i:{i}"),
        })
        .collect();
    let clusters = clustered.then(|| estimate::group_indices(&cluster_of).1);
    // Dense cluster indices for a subset of items.
    let groups_for = |items: &[usize]| {
        let labels: Vec<&str> = items.iter().map(|&i| cluster_of[i].as_str()).collect();
        estimate::group_indices(&labels)
    };
    let se_method = |n_groups: usize| {
        if clustered {
            format!("cluster-robust SE (CR1, {n_groups} clusters)")
        } else {
            "SE of independent items".to_string()
        }
    };

    // Each condition on its own.
    let mut conditions = BTreeMap::new();
    let mut means_by_arm: BTreeMap<&str, HashMap<usize, f64>> = BTreeMap::new();
    for (name, arm) in &arms {
        let means = arm.item_means();
        let mut items: Vec<usize> = means.keys().copied().collect();
        items.sort_unstable();
        let values: Vec<f64> = items.iter().map(|i| means[i]).collect();
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
        conditions.insert(name.clone(), stats);
        means_by_arm.insert(name.as_str(), means);
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
    let mut paired_items: Vec<usize> =
        control.keys().filter(|k| treatment.contains_key(k)).copied().collect();
    paired_items.sort_unstable();
    sig.n_paired = paired_items.len();
    if paired_items.is_empty() {
        skip(
            "paired comparison",
            "no item has a score in both conditions (every request failed in at least one)".into(),
        );
        sig.not_computed = not_computed;
        return sig;
    }
    let d: Vec<f64> = paired_items.iter().map(|i| treatment[i] - control[i]).collect();
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
        let b =
            paired_items.iter().filter(|i| control[i] == 1.0 && treatment[i] == 0.0).count() as u64;
        let c =
            paired_items.iter().filter(|i| control[i] == 0.0 && treatment[i] == 1.0).count() as u64;
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
}
