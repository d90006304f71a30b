//! One trial's paired comparison, assembled from per-item scores: everything that goes into
//! `results/significance.json`. Pure: rows in, a serializable value out.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::dist::norm_ppf;
use super::estimate::{self, MeanEstimate};
use super::headline::{self, Design, Headline, Paired, Test};
use super::paired::{self, Units};
use super::plan::{self, Plan};
use super::power;
use super::repeats::{self, ItemRepeats, RepeatStats};

pub const CONTROL: &str = "control";
pub const TREATMENT: &str = "treatment";
/// The power the minimum detectable effect is computed for.
pub const POWER: f64 = 0.8;
/// Version of the significance.json shape (2: `headline`, `failures`, `power_analysis`,
/// `repeats_by_condition`; every field of 1 kept).
pub const FORMAT: u32 = 2;

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

/// Failed requests, reported beside the paired effect (which is over items scored in both
/// conditions only: a failure is never counted as a wrong answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Failed rows (requests without a score) per condition.
    pub control_failed: usize,
    pub treatment_failed: usize,
    /// Items scored in one condition only, so left out of the paired effect.
    pub unpaired_items: usize,
}

/// What the headline test can detect with this many items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerAnalysis {
    pub test: Test,
    /// The power aimed for.
    pub target: f64,
    /// The largest effect the data allow: the discordance for McNemar (every discordant item
    /// favouring one side), the score range around the control mean otherwise.
    pub max_effect: f64,
    /// Probability that the headline test rejects at `max_effect`.
    pub power_at_max: f64,
    /// Smallest effect detected with probability `target`; `None` when not even `max_effect` is.
    pub mde: Option<f64>,
    /// When the observed effect is below what can be detected: the items (and, with clusters,
    /// the clusters) needed to detect an effect of its size with probability `target`.
    pub needed_for_effect: Option<f64>,
    pub items_needed: Option<u64>,
    pub clusters_needed: Option<u64>,
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
    /// Headline test, chosen by the design (see [`headline`]): `headline.p_value`.
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
    /// The headline test and the interval that inverts it (format 2).
    #[serde(default)]
    pub headline: Option<Headline>,
    #[serde(default)]
    pub failures: Option<Failures>,
    #[serde(default)]
    pub power_analysis: Option<PowerAnalysis>,
    /// With more than one repeat: pass@k, pass^k, per-item pass rates, variance split.
    #[serde(default)]
    pub repeats_by_condition: BTreeMap<String, RepeatStats>,
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
    /// Sum of squared scores, for the within-item variance of repeats.
    sum_sq: f64,
}

impl Default for Cell {
    fn default() -> Self {
        Cell { rows: 0, scored: 0, sum: -0.0, sum_sq: 0.0 }
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
    /// Hashed with foldhash (seeded per process), not SipHash: a million-item trial looks up
    /// a million keys per pass.
    item_index: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    cluster_index: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    items: Vec<ItemTally>,
    arms: [Option<ArmCount>; 2],
    /// Conditions other than control and treatment, in first-seen order (reported, not used).
    other_conditions: Vec<String>,
    any_score: bool,
    binary: bool,
    /// Smallest and largest score seen: the range that bounds any effect.
    score_range: Option<(f64, f64)>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            item_index: HashMap::default(),
            cluster_index: HashMap::default(),
            items: Vec::new(),
            arms: [None; 2],
            other_conditions: Vec::new(),
            any_score: false,
            // Binary until a score other than 0 or 1 is seen.
            binary: true,
            score_range: None,
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
                cell.sum_sq += s * s;
                self.any_score = true;
                let (lo, hi) = self.score_range.unwrap_or((s, s));
                self.score_range = Some((lo.min(s), hi.max(s)));
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

    /// Item keys in index order.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys = vec![""; self.items.len()];
        for (k, &i) in &self.item_index {
            keys[i] = k;
        }
        keys
    }

    /// The cluster label index of item `idx`, if it has one.
    pub fn cluster_of(&self, idx: usize) -> Option<usize> {
        self.items.get(idx)?.cluster
    }

    /// Rows and scored rows of item `idx` in control and in treatment.
    pub fn rows_and_scored(&self, idx: usize) -> [(u32, u32); 2] {
        self.items.get(idx).map_or([(0, 0); 2], |i| i.cells.map(|c| (c.rows, c.scored)))
    }

    /// Whether every score seen is 0 or 1.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The most rows of one item in one condition.
    pub fn repeats(&self) -> usize {
        self.items.iter().flat_map(|i| i.cells.iter().map(|c| c.rows as usize)).max().unwrap_or(0)
    }

    /// Items needed for the headline test to detect `effect` with probability `power` at
    /// level `alpha`, with this tally as the pilot (`exp power`); `None` when no item is
    /// scored in both conditions.
    pub fn plan(&self, effect: f64, power: f64, alpha: f64) -> Option<Plan> {
        let settings = Settings { alpha, bootstrap_resamples: 0, seed: 0 };
        let ctx = Ctx::new(self, &settings);
        let mut notes = Notes::default();
        let (_, means) = condition_section(&ctx, &mut notes);
        let pairs = paired_items(&ctx, &means, &mut notes)?;
        let p = Paired { d: &pairs.d, groups: pairs.groups(ctx.clustered) };
        Some(plan::plan(ctx.design(), &p, plan::Target { effect, power, alpha, seed: 0 }))
    }

    /// Computes every figure of the trial, exactly as [`analyze`] does for the same rows.
    pub fn analyze(&self, settings: &Settings) -> Significance {
        analyze_tally(self, settings)
    }
}

/// Computes every figure of one trial from its score rows.
pub fn analyze(rows: &[ScoreRow], settings: &Settings) -> Significance {
    let mut tally = Tally::new();
    for r in rows {
        tally.add(&r.item, &r.condition, r.score, r.cluster.as_deref());
    }
    tally.analyze(settings)
}

/// What every section of the analysis needs to know about the trial.
struct Ctx<'t> {
    tally: &'t Tally,
    settings: &'t Settings,
    /// "95%" for alpha = 0.05.
    level: String,
    repeats: usize,
    binary: bool,
    single: bool,
    clustered: bool,
}

impl<'t> Ctx<'t> {
    fn new(tally: &'t Tally, settings: &'t Settings) -> Ctx<'t> {
        let repeats = tally.repeats();
        Ctx {
            tally,
            settings,
            level: crate::display::confidence(settings.alpha),
            repeats,
            binary: tally.binary,
            single: repeats <= 1,
            clustered: tally.items.iter().any(|i| i.cluster.is_some()),
        }
    }

    /// Items without a cluster label are their own cluster (the conservative choice: it never
    /// pools unrelated items).
    fn unit_of(&self, i: usize) -> Unit {
        match self.tally.items[i].cluster {
            Some(c) => Unit::Cluster(c),
            None => Unit::Item(i),
        }
    }

    /// Dense cluster indices for a subset of items, in order of first appearance.
    fn groups_for(&self, items: &[usize]) -> (Vec<usize>, usize) {
        dense_units(items, |i| self.unit_of(i))
    }

    fn se_method(&self, n_groups: usize) -> String {
        if self.clustered {
            format!("cluster-robust SE (CR1, {n_groups} clusters), t on {} df", n_groups.max(1) - 1)
        } else {
            "SE of independent items".to_string()
        }
    }

    fn design(&self) -> Design {
        Design { binary: self.binary, repeats: self.repeats, clustered: self.clustered }
    }
}

/// The items scored in both conditions and their differences.
struct PairedItems {
    items: Vec<usize>,
    /// treatment − control per item (means over repeats).
    d: Vec<f64>,
    /// Control mean per item, for the largest effect the data allow.
    control: Vec<f64>,
    g: Vec<usize>,
    n_groups: usize,
}

impl PairedItems {
    fn groups(&self, clustered: bool) -> Option<(&[usize], usize)> {
        clustered.then_some((self.g.as_slice(), self.n_groups))
    }
}

/// Notes of what could not be computed, in order.
#[derive(Default)]
struct Notes(Vec<NotComputed>);

impl Notes {
    fn skip(&mut self, what: &str, reason: String) {
        self.0.push(NotComputed { what: what.to_string(), reason });
    }
}

fn analyze_tally(tally: &Tally, settings: &Settings) -> Significance {
    let ctx = Ctx::new(tally, settings);
    let repeats = ctx.repeats;
    let mut notes = Notes::default();
    for c in &tally.other_conditions {
        notes.skip(
            &format!("{c} condition"),
            format!("only {CONTROL} and {TREATMENT} are compared; rows of {c:?} are ignored"),
        );
    }
    let (conditions, means_by_arm) = condition_section(&ctx, &mut notes);
    let mut sig = Significance {
        format: FORMAT,
        effect: None,
        p_value: None,
        p_method: None,
        holm_p: None,
        alpha: settings.alpha,
        seed: settings.seed,
        bootstrap_resamples: settings.bootstrap_resamples,
        power: POWER,
        score_kind: tally.any_score.then_some(if ctx.binary {
            ScoreKind::Binary
        } else {
            ScoreKind::Continuous
        }),
        repeats,
        n_items: tally.items.len(),
        n_paired: 0,
        clusters: ctx.clustered.then(|| {
            let all: Vec<usize> = (0..tally.items.len()).collect();
            ctx.groups_for(&all).1
        }),
        conditions,
        difference: None,
        mcnemar: None,
        bootstrap: None,
        permutation: None,
        mde: None,
        headline: None,
        failures: None,
        power_analysis: None,
        repeats_by_condition: repeats_section(&ctx),
        not_computed: Vec::new(),
    };
    if let Some(pairs) = paired_items(&ctx, &means_by_arm, &mut notes) {
        sig.n_paired = pairs.items.len();
        sig.failures = Some(failures(&ctx, &sig, &pairs));
        sig.difference = Some(difference_section(&ctx, &pairs, &mut notes));
        sig.mcnemar = mcnemar_section(&ctx, &pairs, &mut notes);
        sig.permutation = Some(permutation_section(&ctx, &pairs));
        let head = headline::headline(
            ctx.design(),
            &Paired { d: &pairs.d, groups: pairs.groups(ctx.clustered) },
            settings.alpha,
            settings.bootstrap_resamples,
            settings.seed,
        );
        if let Some(note) = &head.ci_note {
            notes.skip("headline interval", note.clone());
        }
        let head_test = head.test;
        sig.effect = Some(head.effect);
        sig.p_value = Some(head.p_value);
        sig.p_method = Some(head.method.clone());
        sig.headline = Some(head);
        sig.bootstrap = bootstrap_section(&ctx, &pairs, &mut notes);
        let (analysis, mde) = power_section(&ctx, &pairs, head_test, &mut notes);
        sig.power_analysis = analysis;
        sig.mde = mde;
    }
    sig.not_computed = notes.0;
    sig
}

/// Per condition, each item's mean score (`None` where it has none), by item index.
type ItemMeans = BTreeMap<&'static str, Vec<Option<f64>>>;

/// Each condition on its own: mean, SE and interval over its items. Also returns each
/// condition's item means, by item index.
fn condition_section(
    ctx: &Ctx,
    notes: &mut Notes,
) -> (BTreeMap<String, ConditionStats>, ItemMeans) {
    let tally = ctx.tally;
    let n_items = tally.items.len();
    let mut conditions = BTreeMap::new();
    let mut means_by_arm = BTreeMap::new();
    // BTreeMap order: control before treatment, as the names sort.
    for (a, name) in ARMS.iter().enumerate() {
        let Some(arm) = tally.arms[a] else { continue };
        let means: Vec<Option<f64>> = (0..n_items).map(|i| tally.item_mean(i, name)).collect();
        let items: Vec<usize> = (0..n_items).filter(|&i| means[i].is_some()).collect();
        let values: Vec<f64> = items.iter().filter_map(|&i| means[i]).collect();
        let mut stats = ConditionStats {
            rows: arm.rows,
            scored: arm.rows - arm.failed,
            failed: arm.failed,
            items: items.len(),
            mean: estimate::mean(&values),
            se: None,
            ci: None,
            method: None,
        };
        if values.is_empty() {
            notes.skip(
                &format!("{name} mean"),
                format!("every request failed ({} of {} rows have no score)", arm.failed, arm.rows),
            );
        } else if ctx.binary && ctx.single && !ctx.clustered {
            if let Some(MeanEstimate { se, lo, hi, .. }) =
                estimate::proportion(&values, ctx.settings.alpha)
            {
                stats.se = Some(se);
                stats.ci = Some([lo, hi]);
                stats.method = Some(format!("{} Wilson score interval", ctx.level));
            }
        } else {
            let (g, n_groups) = ctx.groups_for(&items);
            let groups = ctx.clustered.then_some((g.as_slice(), n_groups));
            match estimate::clt(&values, groups, ctx.settings.alpha) {
                Some(e) => {
                    stats.se = Some(e.se);
                    stats.ci = Some([e.lo, e.hi]);
                    let unit = if ctx.single { "items" } else { "item means over repeats" };
                    stats.method = Some(format!(
                        "{} normal (CLT) interval on {unit}, {}",
                        ctx.level,
                        ctx.se_method(n_groups)
                    ));
                }
                None => notes.skip(
                    &format!("{name} confidence interval"),
                    too_few(values.len(), n_groups, ctx.clustered),
                ),
            }
        }
        conditions.insert(name.to_string(), stats);
        means_by_arm.insert(*name, means);
    }
    (conditions, means_by_arm)
}

/// With more than one repeat, what the repeats show per condition.
fn repeats_section(ctx: &Ctx) -> BTreeMap<String, RepeatStats> {
    let mut out = BTreeMap::new();
    if ctx.single {
        return out;
    }
    for (a, name) in ARMS.iter().enumerate() {
        if ctx.tally.arms[a].is_none() {
            continue;
        }
        let items: Vec<ItemRepeats> = ctx
            .tally
            .items
            .iter()
            .map(|i| {
                let c = i.cells[a];
                ItemRepeats { scored: c.scored, sum: c.sum, sum_sq: c.sum_sq }
            })
            .collect();
        out.insert(name.to_string(), repeats::repeat_stats(&items, ctx.repeats, ctx.binary));
    }
    out
}

/// The items scored in both conditions; `None` (with the reason noted) when there are none.
fn paired_items(ctx: &Ctx, means: &ItemMeans, notes: &mut Notes) -> Option<PairedItems> {
    let (control, treatment) = match (means.get(CONTROL), means.get(TREATMENT)) {
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
            notes.skip("paired comparison", reason);
            return None;
        }
    };
    let mut pairs = PairedItems {
        items: Vec::new(),
        d: Vec::new(),
        control: Vec::new(),
        g: Vec::new(),
        n_groups: 0,
    };
    for (i, (c, t)) in control.iter().zip(treatment).enumerate() {
        if let (Some(c), Some(t)) = (c, t) {
            pairs.items.push(i);
            pairs.d.push(t - c);
            pairs.control.push(*c);
        }
    }
    if pairs.items.is_empty() {
        notes.skip(
            "paired comparison",
            "no item has a score in both conditions (every request failed in at least one)".into(),
        );
        return None;
    }
    (pairs.g, pairs.n_groups) = ctx.groups_for(&pairs.items);
    Some(pairs)
}

fn failures(ctx: &Ctx, sig: &Significance, pairs: &PairedItems) -> Failures {
    let failed = |c: &str| sig.conditions.get(c).map_or(0, |s| s.failed);
    let scored_somewhere =
        ctx.tally.items.iter().filter(|i| i.cells.iter().any(|c| c.scored > 0)).count();
    Failures {
        control_failed: failed(CONTROL),
        treatment_failed: failed(TREATMENT),
        unpaired_items: scored_somewhere - pairs.items.len(),
    }
}

/// The paired mean difference with its normal (clusters: CR1 with t) interval, a secondary
/// figure beside the headline.
fn difference_section(ctx: &Ctx, pairs: &PairedItems, notes: &mut Notes) -> Difference {
    let d = &pairs.d;
    let n = d.len();
    let mean_d = d.iter().sum::<f64>() / n as f64;
    let (se, crit) = match pairs.groups(ctx.clustered) {
        Some((g, k)) => {
            (estimate::se_cluster(d, g, k), estimate::t_crit(ctx.settings.alpha, k as f64 - 1.0))
        }
        None => (estimate::se_iid(d), estimate::z_crit(ctx.settings.alpha)),
    };
    if se.is_none() {
        notes.skip("difference standard error", too_few(n, pairs.n_groups, ctx.clustered));
    }
    Difference {
        n,
        mean: mean_d,
        se,
        ci: se.map(|s| [mean_d - crit * s, mean_d + crit * s]),
        method: format!(
            "paired mean difference (treatment − control) over {}, {}; {} {} interval \
             (secondary: the headline interval inverts the headline test)",
            if ctx.single { "items" } else { "item means over repeats" },
            ctx.se_method(pairs.n_groups),
            ctx.level,
            if ctx.clustered { "t" } else { "normal" }
        ),
        improved: d.iter().filter(|v| **v > 0.0).count(),
        worsened: d.iter().filter(|v| **v < 0.0).count(),
        unchanged: d.iter().filter(|v| **v == 0.0).count(),
    }
}

/// Exact McNemar, whenever each item has one 0/1 outcome per condition (the headline only
/// without clusters).
fn mcnemar_section(ctx: &Ctx, pairs: &PairedItems, notes: &mut Notes) -> Option<McNemar> {
    if !(ctx.binary && ctx.single) {
        let why = if !ctx.binary {
            "scores are not all 0/1"
        } else {
            "items have several repeats, so an item has no single 0/1 outcome"
        };
        notes.skip(
            "mcnemar",
            format!("{why}; the sign-flip permutation test on item means is used instead"),
        );
        return None;
    }
    let (b, c) = headline::discordant(&pairs.d);
    if ctx.clustered {
        notes.skip(
            "clustered McNemar",
            "exact McNemar assumes independent items; with clusters the headline is the \
             cluster sign-flip test, and McNemar is shown for reference only"
                .into(),
        );
    }
    Some(McNemar {
        control_only: b,
        treatment_only: c,
        n_discordant: b + c,
        p_value: paired::mcnemar_exact(b, c),
        method: "exact McNemar (two-sided binomial test on discordant pairs)".into(),
    })
}

/// The sign-flip permutation test on items or clusters with zero differences dropped (exact up
/// to 20 non-zero units), as scipy's `permutation_test` computes it.
fn permutation_section(ctx: &Ctx, pairs: &PairedItems) -> Permutation {
    let (sums, _) =
        headline::unit_sums(&Paired { d: &pairs.d, groups: pairs.groups(ctx.clustered) });
    let unit_name = if ctx.clustered { "clusters" } else { "items" };
    let s = ctx.settings;
    let flip = paired::sign_flip_test(&sums, s.bootstrap_resamples, s.seed);
    let method = if flip.exact && flip.n_nonzero > paired::EXACT_PERMUTATION_LIMIT {
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
            s.bootstrap_resamples
        )
    };
    Permutation {
        p_value: flip.p_value,
        n_nonzero: flip.n_nonzero,
        exact: flip.exact,
        resamples: flip.resamples,
        seed: (!flip.exact).then_some(s.seed),
        unit: unit_name.into(),
        method,
    }
}

fn bootstrap_section(ctx: &Ctx, pairs: &PairedItems, notes: &mut Notes) -> Option<Bootstrap> {
    let units = Units::new(&pairs.d, pairs.groups(ctx.clustered));
    let unit_name = if ctx.clustered { "clusters" } else { "items" };
    let s = ctx.settings;
    match paired::bootstrap_ci(&units, s.alpha, s.bootstrap_resamples, s.seed) {
        Some((lo, hi)) => Some(Bootstrap {
            ci: [lo, hi],
            resamples: s.bootstrap_resamples,
            seed: s.seed,
            unit: unit_name.into(),
            method: format!(
                "{} paired percentile bootstrap, resampling {unit_name} (secondary)",
                ctx.level
            ),
        }),
        None if s.bootstrap_resamples == 0 => {
            notes.skip("bootstrap", "bootstrap_resamples is 0 in the config".into());
            None
        }
        None => {
            notes.skip(
                "bootstrap",
                format!("needs at least 2 {unit_name}, there is {}", units.len()),
            );
            None
        }
    }
}

/// Power of the headline test: exact for McNemar, simulated for the sign-flip test. Returns
/// the analysis and, when one exists, the minimum detectable effect in the format-1 shape.
fn power_section(
    ctx: &Ctx,
    pairs: &PairedItems,
    test: Test,
    notes: &mut Notes,
) -> (Option<PowerAnalysis>, Option<Mde>) {
    let d = &pairs.d;
    let n = d.len();
    let discordance = d.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
    if discordance == 0.0 {
        notes.skip(
            "minimum detectable effect",
            "no item scored differently between conditions, so the variance of the \
             difference is unknown"
                .into(),
        );
        return (None, None);
    }
    let alpha = ctx.settings.alpha;
    let observed = (d.iter().sum::<f64>() / n as f64).abs();
    let analysis = if test == Test::ExactMcnemar {
        mcnemar_power_analysis(n as u64, discordance, observed, alpha)
    } else {
        sign_flip_power_analysis(ctx, pairs, test, observed)
    };
    let mde = match analysis.mde {
        Some(value) => {
            Some(Mde { value, power: POWER, discordance, method: analysis.method.clone() })
        }
        None => {
            notes.skip(
                "minimum detectable effect",
                format!(
                    "even the largest effect the data allow ({:+.2} pp) would be detected only \
                     {} of the time by the {}",
                    analysis.max_effect * 100.0,
                    crate::display::percent(analysis.power_at_max),
                    test.label()
                ),
            );
            None
        }
    };
    (Some(analysis), mde)
}

fn mcnemar_power_analysis(n: u64, discordance: f64, observed: f64, alpha: f64) -> PowerAnalysis {
    let power = power::McnemarPower::new(n, discordance, alpha);
    let mde = power.mde(POWER);
    let underpowered = observed > 0.0 && mde.is_none_or(|m| observed < m * (1.0 - 1e-6));
    PowerAnalysis {
        test: Test::ExactMcnemar,
        target: POWER,
        max_effect: discordance,
        power_at_max: power.at(discordance),
        mde,
        needed_for_effect: underpowered.then_some(observed),
        items_needed: underpowered
            .then(|| power::mcnemar_items_needed(discordance, observed, alpha, POWER))
            .flatten(),
        clusters_needed: None,
        method: "exact power of the exact McNemar test: discordant items Binomial(n, observed \
                 discordance), those favouring treatment conditionally Binomial"
            .into(),
    }
}

fn sign_flip_power_analysis(
    ctx: &Ctx,
    pairs: &PairedItems,
    test: Test,
    observed: f64,
) -> PowerAnalysis {
    let alpha = ctx.settings.alpha;
    let clustered = test.clustered();
    let (sums, sizes) =
        headline::unit_sums(&Paired { d: &pairs.d, groups: pairs.groups(clustered) });
    let g = sums.len();
    let n_items: f64 = sizes.iter().sum();
    let mean_size = n_items / g as f64;
    let control_mean = pairs.control.iter().sum::<f64>() / pairs.control.len() as f64;
    let (lo, hi) = ctx.tally.score_range.unwrap_or((0.0, 1.0));
    let max_effect = (hi - control_mean).max(control_mean - lo);
    let mean = pairs.d.iter().sum::<f64>() / n_items;
    let unit_var =
        sums.iter().zip(&sizes).map(|(s, m)| (s - mean * m).powi(2)).sum::<f64>() / g as f64;
    let (power_at_max, mde, how) = if g <= power::SIMULATION_UNITS_LIMIT {
        let sim = power::SignFlipPower::new(&sums, &sizes, alpha, ctx.settings.seed);
        (
            sim.power(max_effect),
            sim.mde(max_effect, POWER),
            format!(
                "power of the sign-flip test by simulation: {} seeded experiments of {g} units \
                 drawn with replacement from the observed ones, centered, shifted by the effect",
                power::POWER_SIMULATIONS
            ),
        )
    } else {
        let at = |e: f64| power::normal_power(g as f64, unit_var, mean_size, e, alpha);
        let z = norm_ppf(1.0 - alpha / 2.0) + norm_ppf(POWER);
        let mde = Some(z * unit_var.sqrt() / (mean_size * (g as f64).sqrt()))
            .filter(|m| *m <= max_effect);
        (at(max_effect), mde, format!("normal approximation of the sign-flip test ({g} units)"))
    };
    let underpowered = observed > 0.0 && mde.is_none_or(|m| observed < m * (1.0 - 1e-6));
    let needed = underpowered
        .then(|| {
            power::sign_flip_units_needed(&sums, &sizes, observed, alpha, POWER, ctx.settings.seed)
        })
        .flatten();
    let units_needed = needed.map(|n| n.units);
    PowerAnalysis {
        test,
        target: POWER,
        max_effect,
        power_at_max,
        mde,
        needed_for_effect: underpowered.then_some(observed),
        items_needed: units_needed.map(|u| (u as f64 * mean_size).ceil() as u64),
        clusters_needed: if clustered { units_needed } else { None },
        method: format!("{how}; {}", units_needed_method(needed)),
    }
}

/// How the units needed were found: simulation of the sign-flip test at each trial size, or
/// beyond [`power::SEARCH_UNITS_LIMIT`] units the normal formula.
pub fn units_needed_method(needed: Option<power::UnitsNeeded>) -> String {
    if needed.is_some_and(|n| !n.simulated) {
        format!(
            "units needed by the normal approximation ((z(1−α/2) + z(power))·σ_unit / effect)², \
             beyond {} units",
            power::SEARCH_UNITS_LIMIT
        )
    } else {
        format!(
            "units needed by simulating the test at each trial size ({} seeded experiments of \
             units drawn from these, doubling then bisection on the number of units)",
            power::POWER_SIMULATIONS
        )
    }
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
