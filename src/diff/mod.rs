//! Structured diffs of runs (`exp diff`, the old `compare_runs.py`): a tree diff that skips every
//! subtree whose id is equal on both sides, plus semantic diffs of the artifacts it knows
//! (docs/RUN_FILES.md and the old `run_all.py` layout): the resolved config key by key, trials
//! present in one run only, metrics side by side per trial and condition, a paired test between
//! the runs on the items both scored (the headline test of the design, see [`paired`]), the
//! change in the treatment effect, costs, and the files.
//!
//! Owns: reading two snapshots through [`Source`] (and `crate::runfiles`) and returning a [`RunDiff`]. Never
//! prints, never writes, never needs a checkout. An artifact that cannot be parsed is reported
//! in [`RunDiff::lacks`], never a reason to fail: the point of a diff of an old run is to show
//! what it has. Only store errors (a missing or corrupt object) fail a diff.
pub mod config;
pub mod paired;
pub mod pilot;
pub mod settings;
pub mod store;
pub mod text;
pub mod tree;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use config::ConfigChange;
use tree::FileChange;

use crate::runfiles::headline::{self, CondMetrics, Cost};
use crate::runfiles::layout::{self, Layout, RunFiles, TrialFiles};
use crate::runfiles::source::{self, Entry, Source};
use crate::runfiles::tables::{self, ScoreTable};
use crate::runfiles::trial;

use crate::error::Hint;

/// Errors of a diff: only what stops it (unreadable objects, revisions that do not resolve).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of a snapshot could not be read.
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error("cannot read {path} from the store")]
    Store {
        path: String,
        #[source]
        source: crate::store::Error,
    },
    /// A revision that does not resolve (unknown, ambiguous, not a commit).
    #[error(transparent)]
    Rev(crate::store::Error),
    #[error("{rev} has no parent to compare with")]
    NoParent { rev: String },
    #[error("nothing is checked out and HEAD names no run")]
    NoHead,
    #[error("the run HEAD names ({path}) is not in the workspace")]
    NotCheckedOut { path: String },
    #[error("{path}: folders nested deeper than {limit} levels")]
    TooDeep { path: String, limit: usize },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Source(e) => e.hint(),
            Error::Store { source, .. } | Error::Rev(source) => source.hint(),
            Error::NoParent { rev } => Some(format!(
                "it is the first commit of its run: compare it with another run, e.g. `exp diff OTHER {rev}`"
            )),
            Error::NoHead => Some(
                "name two runs (`exp diff A B`, see `exp list`), or `exp checkout REF` first"
                    .into(),
            ),
            Error::NotCheckedOut { .. } => {
                Some("`exp checkout HEAD` restores it, or name two runs: `exp diff A B`".into())
            }
            Error::TooDeep { .. } => Some(
                "no run exp writes nests that deep: the commit was forged or damaged; \
                 `exp fsck` names it"
                    .into(),
            ),
        }
    }
}

/// What the caller wants beyond the default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// List every flipped item (`--items`).
    pub items: bool,
}

/// One side of a diff, as the caller names it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// What the user typed (or `workspace`).
    pub label: String,
    pub commit: Option<String>,
    pub run_id: Option<String>,
    pub status: Option<String>,
    /// Filled in by the diff.
    pub layout: Option<Layout>,
}

/// Everything that differs between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    pub a: Side,
    pub b: Side,
    /// No file differs.
    pub identical: bool,
    pub config: Vec<ConfigChange>,
    pub trials: Trials,
    pub metrics: Vec<MetricsRow>,
    pub paired: Vec<PairedRow>,
    /// Per trial: did the treatment's effect change between the runs?
    pub effect_changes: Vec<EffectChangeRow>,
    pub costs: Vec<CostRow>,
    /// What one side has not got, so cannot be compared.
    pub lacks: Vec<Lack>,
    pub files: Vec<FileChange>,
    /// Unified diffs of the changed prompts, config and other authored text files.
    pub text: Vec<text::TextDiff>,
    /// Flipped items, when asked for (`--items`).
    pub items: Vec<FlippedItem>,
    /// α, sampled sign patterns and seed of the paired tests, from the runs' configs.
    pub significance: settings::DiffSettings,
}

/// How the trials of the two runs correspond.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trials {
    pub paired: Vec<TrialPair>,
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// Two trials compared with each other.
#[derive(Debug, Clone, Serialize)]
pub struct TrialPair {
    pub a: String,
    pub b: String,
    /// `slug` (same folder name) or `parameters` (closest parameters, e.g. only temperature differs).
    pub matched_by: &'static str,
    /// Parameters that differ (only for trials matched by parameters).
    pub changes: Vec<ParamChange>,
    /// Same content on both sides.
    pub unchanged: bool,
    /// How rows name this pair (see [`pair_name`]).
    pub name: String,
}

/// What rows call a pair of trials: the slug, or where the names differ only in the middle,
/// the shared parts around `{old→new}` (`sim-demo-ops-t{0→1}-tk50`), so tables stay narrow.
pub fn pair_name(a: &str, b: &str) -> String {
    if a == b {
        return a.to_string();
    }
    let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut pre = ac.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let max_suf = ac.len().min(bc.len()) - pre;
    let suf =
        ac.iter().rev().zip(bc.iter().rev()).take(max_suf).take_while(|(x, y)| x == y).count();
    // Never cut a number in two: `t10` vs `t15` reads `t{10→15}`, not `t1{0→5}`; `0.0` vs
    // `1.0` reads `{0.0→1.0}`.
    while pre > 0 && (ac[pre - 1].is_ascii_digit() || ac[pre - 1] == '.') {
        pre -= 1;
    }
    let mut suf = suf;
    while suf > 0 && (ac[ac.len() - suf].is_ascii_digit() || ac[ac.len() - suf] == '.') {
        suf -= 1;
    }
    if pre + suf < 2 {
        return format!("{a} → {b}");
    }
    let mid = |c: &[char]| c[pre..c.len() - suf].iter().collect::<String>();
    let (p, s): (String, String) =
        (ac[..pre].iter().collect(), ac[ac.len() - suf..].iter().collect());
    format!("{p}{{{}→{}}}{s}", mid(&ac), mid(&bc))
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamChange {
    pub key: String,
    pub a: String,
    pub b: String,
}

/// One trial and condition, both sides.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsRow {
    pub trial: String,
    pub condition: String,
    pub a: Option<CondMetrics>,
    pub b: Option<CondMetrics>,
    /// b accuracy − a accuracy.
    pub accuracy_change: Option<f64>,
}

/// The paired comparison of the two runs on the items both scored, one trial and condition.
#[derive(Debug, Clone, Serialize)]
pub struct PairedRow {
    pub trial: String,
    pub condition: String,
    /// Items scored on both sides (an item's repeats count once).
    pub paired: u64,
    /// With one 0/1 outcome per item; 0 otherwise.
    pub both_correct: u64,
    pub both_wrong: u64,
    /// Wrong in a, right in b (with repeats or non-0/1 scores: items whose mean rose).
    pub fixed: u64,
    /// Right in a, wrong in b (with repeats or non-0/1 scores: items whose mean fell).
    pub broken: u64,
    /// Items present on both sides but failed (no score) on at least one.
    pub failed_either: u64,
    /// Items present on one side only.
    pub unmatched: u64,
    /// Mean per-item change, b − a.
    pub change: Option<f64>,
    /// The interval inverting the test.
    pub ci: Option<[f64; 2]>,
    /// The headline test of the design on the per-item changes.
    pub p_value: Option<f64>,
    pub test: Option<String>,
    pub method: String,
    /// Why the test was not computed, when it was not.
    pub not_computed: Option<String>,
}

/// The change in one trial's treatment effect: (treatment − control in b) − (the same in a),
/// per item over items scored in all four cells.
#[derive(Debug, Clone, Serialize)]
pub struct EffectChangeRow {
    pub trial: String,
    pub items: usize,
    pub effect_a: f64,
    pub effect_b: f64,
    pub change: f64,
    pub ci: Option<[f64; 2]>,
    pub p_value: f64,
    /// The test's short name (`sign-flip test on items`, …).
    pub test: String,
    pub method: String,
}

/// Costs of one trial and condition (or `total`), both sides.
#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    pub trial: String,
    /// `control`, `treatment`, … or `total`.
    pub scope: String,
    pub a: Option<Cost>,
    pub b: Option<Cost>,
    pub usd_change: Option<f64>,
}

/// Something one side does not have, so it was not compared.
#[derive(Debug, Clone, Serialize)]
pub struct Lack {
    /// `a` or `b`.
    pub side: &'static str,
    /// None for the run as a whole.
    pub trial: Option<String>,
    pub what: String,
    pub detail: String,
}

/// An item whose correctness differs between the runs.
#[derive(Debug, Clone, Serialize)]
pub struct FlippedItem {
    pub trial: String,
    pub condition: String,
    pub dataset: String,
    pub item: String,
    pub repeat: u32,
    pub gold: String,
    pub prediction_a: String,
    pub prediction_b: String,
    /// `fixed` (wrong → right) or `broken` (right → wrong).
    pub change: &'static str,
}

/// Compares run `a` with run `b`.
pub fn diff_runs(
    a: &dyn Source,
    b: &dyn Source,
    mut side_a: Side,
    mut side_b: Side,
    opts: &Options,
) -> Result<RunDiff, Error> {
    let (files, scans) =
        rayon::join(|| tree::diff(a, b), || rayon::join(|| layout::scan(a), || layout::scan(b)));
    let files = files?;
    let (ra, rb) = (scans.0?, scans.1?);
    let significance = settings::read(a, &ra, b, &rb);
    side_a.layout = Some(ra.layout);
    side_b.layout = Some(rb.layout);
    let mut out = RunDiff {
        a: side_a,
        b: side_b,
        identical: files.is_empty(),
        config: Vec::new(),
        trials: Trials::default(),
        metrics: Vec::new(),
        paired: Vec::new(),
        effect_changes: Vec::new(),
        costs: Vec::new(),
        lacks: Vec::new(),
        files,
        text: Vec::new(),
        items: Vec::new(),
        significance,
    };
    if out.identical {
        return Ok(out);
    }
    out.text = text::diffs(a, b, &out.files)?;
    compare_config(a, &ra, b, &rb, &mut out)?;

    let (pairs, only_a, only_b) = pair_trials(a, &ra, b, &rb)?;
    out.trials.only_a = only_a.iter().map(|t| t.slug.clone()).collect();
    out.trials.only_b = only_b.iter().map(|t| t.slug.clone()).collect();
    let stats = out.significance.settings();
    let results: Vec<TrialDiff> = pairs
        .par_iter()
        .map(|(ta, tb, pair)| compare_trial((a, ta), (b, tb), pair, opts, &stats))
        .collect::<Result<_, _>>()?;
    // A trial only one run has still shows its figures (beside an empty column).
    let mut one_sided_trials = Vec::new();
    for (side, src, trials) in [("a", a, &only_a), ("b", b, &only_b)] {
        for t in trials.iter().filter(|t| t.has_results()) {
            let mut r = TrialDiff::default();
            one_side_figures(src, t, &t.slug, side, &mut r)?;
            one_sided_trials.push(r);
        }
    }
    for ((_, _, pair), r) in pairs.into_iter().zip(results) {
        out.trials.paired.push(pair);
        out.metrics.extend(r.metrics);
        out.paired.extend(r.paired);
        out.effect_changes.extend(r.effect);
        out.costs.extend(r.costs);
        out.lacks.extend(r.lacks);
        out.items.extend(r.items);
    }
    for r in one_sided_trials {
        out.metrics.extend(r.metrics);
        out.costs.extend(r.costs);
        out.lacks.extend(r.lacks);
    }
    Ok(out)
}

fn read_text(src: &dyn Source, e: &Entry) -> Result<Vec<u8>, Error> {
    Ok(src.read(e)?)
}

fn compare_config(
    a: &dyn Source,
    ra: &RunFiles,
    b: &dyn Source,
    rb: &RunFiles,
    out: &mut RunDiff,
) -> Result<(), Error> {
    match (&ra.config, &rb.config) {
        (Some((pa, ea)), Some((pb, eb))) if !ea.same_as(eb) => {
            let (ya, yb) = (read_text(a, ea)?, read_text(b, eb)?);
            let parse = |bytes: &[u8], side: &'static str, path: &str, lacks: &mut Vec<Lack>| {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    lacks.push(Lack {
                        side,
                        trial: None,
                        what: "config".into(),
                        detail: format!("{path} is empty"),
                    });
                    return None;
                }
                match serde_yaml::from_slice::<serde_yaml::Value>(bytes) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        lacks.push(Lack {
                            side,
                            trial: None,
                            what: "config".into(),
                            detail: format!("{path} is not valid YAML ({e})"),
                        });
                        None
                    }
                }
            };
            let va = parse(&ya, "a", pa, &mut out.lacks);
            let vb = parse(&yb, "b", pb, &mut out.lacks);
            if let (Some(va), Some(vb)) = (va, vb) {
                out.config = config::diff(&va, &vb);
            }
        }
        (None, Some(_)) => out.lacks.push(Lack {
            side: "a",
            trial: None,
            what: "config".into(),
            detail: "no resolved config in the run".into(),
        }),
        (Some(_), None) => out.lacks.push(Lack {
            side: "b",
            trial: None,
            what: "config".into(),
            detail: "no resolved config in the run".into(),
        }),
        _ => {}
    }
    // Prompt files are part of the configuration too; their contents are in the files section.
    for f in out.files.iter().filter(|f| layout::role_of(&f.path) == Some("prompt")) {
        let (change, old, new) = match f.status {
            tree::Status::Added => {
                (config::ChangeKind::Added, None, Some("(file added)".to_string()))
            }
            tree::Status::Removed => {
                (config::ChangeKind::Removed, Some("(file removed)".to_string()), None)
            }
            _ => (
                config::ChangeKind::Changed,
                Some(size_text(f.old_size)),
                Some(size_text(f.new_size)),
            ),
        };
        out.config.push(ConfigChange { key: f.path.clone(), change, old, new });
    }
    Ok(())
}

fn size_text(n: Option<u64>) -> String {
    n.map(|n| format!("{n} bytes")).unwrap_or_default()
}

type Params = BTreeMap<String, String>;

fn params(src: &dyn Source, t: &TrialFiles) -> Result<Params, Error> {
    if !t.params.is_empty() {
        return Ok(t.params.clone());
    }
    if let Some(tj) = &t.trial_json
        && let Ok(p) = trial::params(&src.read(tj)?)
    {
        return Ok(p);
    }
    let first = match t.inputs.first() {
        Some((_, e)) => Some(src.read(e)?),
        None => None,
    };
    Ok(layout::legacy_trial_params(&t.slug, first.as_deref()))
}

/// Trials with the same folder name are compared; the rest are matched by closest parameters
/// (same model and prompt set, fewest differing settings), which is what makes two runs that
/// differ only in temperature comparable although their slugs differ.
#[allow(clippy::type_complexity)]
fn pair_trials<'r>(
    a: &dyn Source,
    ra: &'r RunFiles,
    b: &dyn Source,
    rb: &'r RunFiles,
) -> Result<
    (Vec<(&'r TrialFiles, &'r TrialFiles, TrialPair)>, Vec<&'r TrialFiles>, Vec<&'r TrialFiles>),
    Error,
> {
    let mut pairs = Vec::new();
    let mut rest_a = Vec::new();
    let mut rest_b: Vec<&TrialFiles> =
        rb.trials.iter().filter(|t| !ra.trials.iter().any(|x| x.slug == t.slug)).collect();
    for ta in &ra.trials {
        match rb.trials.iter().find(|tb| tb.slug == ta.slug) {
            Some(tb) => pairs.push((
                ta,
                tb,
                TrialPair {
                    a: ta.slug.clone(),
                    b: tb.slug.clone(),
                    matched_by: "slug",
                    changes: Vec::new(),
                    unchanged: ta.dir.same_as(&tb.dir),
                    name: ta.slug.clone(),
                },
            )),
            None => rest_a.push(ta),
        }
    }
    if rest_a.is_empty() || rest_b.is_empty() {
        return Ok((pairs, rest_a, rest_b));
    }
    let pa: Vec<Params> = rest_a.iter().map(|t| params(a, t)).collect::<Result<_, _>>()?;
    let mut pb: Vec<Option<Params>> =
        rest_b.iter().map(|t| params(b, t).map(Some)).collect::<Result<_, _>>()?;
    let mut unmatched_a = Vec::new();
    for (ta, pa) in rest_a.into_iter().zip(pa) {
        let best = pb
            .iter()
            .enumerate()
            .filter_map(|(i, pb)| {
                let pb = pb.as_ref()?;
                let common: Vec<&String> = pa.keys().filter(|k| pb.contains_key(*k)).collect();
                let must_match = ["model", "prompt_set"];
                if common.is_empty()
                    || must_match
                        .iter()
                        .any(|k| pa.get(*k).zip(pb.get(*k)).is_some_and(|(x, y)| x != y))
                {
                    return None;
                }
                let differing = common.iter().filter(|k| pa[**k] != pb[**k]).count();
                Some((differing, i))
            })
            .min();
        match best {
            Some((_, i)) => {
                let pbi = pb[i].take().unwrap_or_default();
                let changes = pa
                    .iter()
                    .filter_map(|(k, va)| {
                        pbi.get(k).filter(|vb| *vb != va).map(|vb| ParamChange {
                            key: k.clone(),
                            a: va.clone(),
                            b: vb.clone(),
                        })
                    })
                    .collect();
                let tb = rest_b[i];
                pairs.push((
                    ta,
                    tb,
                    TrialPair {
                        a: ta.slug.clone(),
                        b: tb.slug.clone(),
                        matched_by: "parameters",
                        changes,
                        unchanged: false,
                        name: pair_name(&ta.slug, &tb.slug),
                    },
                ));
            }
            None => unmatched_a.push(ta),
        }
    }
    rest_b = rest_b.into_iter().zip(pb).filter(|(_, p)| p.is_some()).map(|(t, _)| t).collect();
    Ok((pairs, unmatched_a, rest_b))
}

#[derive(Default)]
struct TrialDiff {
    metrics: Vec<MetricsRow>,
    paired: Vec<PairedRow>,
    effect: Option<EffectChangeRow>,
    costs: Vec<CostRow>,
    lacks: Vec<Lack>,
    items: Vec<FlippedItem>,
}

/// What one side of a trial holds, parsed where it differs from the other side.
struct Parsed {
    metrics: Option<headline::Metrics>,
    costs: Option<headline::Costs>,
    scores: Option<ScoreTable>,
}

fn compare_trial(
    (a, ta): (&dyn Source, &TrialFiles),
    (b, tb): (&dyn Source, &TrialFiles),
    pair: &TrialPair,
    opts: &Options,
    stats: &crate::stats::Settings,
) -> Result<TrialDiff, Error> {
    let mut out = TrialDiff::default();
    if pair.unchanged {
        return Ok(out);
    }
    let name = pair.name.clone();
    for (side, src, t, other) in [("a", a, ta, tb), ("b", b, tb, ta)] {
        if !t.has_results() {
            out.lacks.push(Lack {
                side,
                trial: Some(name.clone()),
                what: "results".into(),
                detail: what_it_has(src, t)?,
            });
        } else if other.has_results() {
            if t.costs.is_none() && other.costs.is_some() {
                out.lacks.push(Lack {
                    side,
                    trial: Some(name.clone()),
                    what: "costs".into(),
                    detail: "no costs file: costs not compared".into(),
                });
            }
            let has_scores = |t: &TrialFiles| t.scores.is_some() || !t.legacy_scores.is_empty();
            if !has_scores(t) && has_scores(other) {
                out.lacks.push(Lack {
                    side,
                    trial: Some(name.clone()),
                    what: "per-item scores".into(),
                    detail: "no per-item scores: no paired test between the runs".into(),
                });
            }
        }
    }
    if !ta.has_results() || !tb.has_results() {
        // Show what the side with results says, beside an empty column: a batch-only run is
        // diffed for what it has.
        let (side, src, t) = if ta.has_results() { ("a", a, ta) } else { ("b", b, tb) };
        if t.has_results() {
            one_side_figures(src, t, &name, side, &mut out)?;
        }
        return Ok(out);
    }
    let metrics_same = same(&ta.metrics, &tb.metrics);
    let costs_same = same(&ta.costs, &tb.costs) && metrics_same;
    let scores_same = same(&ta.scores, &tb.scores)
        && ta.legacy_scores.len() == tb.legacy_scores.len()
        && ta
            .legacy_scores
            .iter()
            .zip(&tb.legacy_scores)
            .all(|(x, y)| x.0 == y.0 && x.1.same_as(&y.1));
    let need =
        Need { metrics: !metrics_same || !costs_same, costs: !costs_same, scores: !scores_same };
    let (pa, pb) =
        rayon::join(|| parse_side(a, ta, need, &name, "a"), || parse_side(b, tb, need, &name, "b"));
    let ((pa, la), (pb, lb)) = (pa?, pb?);
    out.lacks.extend(la);
    out.lacks.extend(lb);

    if !metrics_same && let (Some(ma), Some(mb)) = (&pa.metrics, &pb.metrics) {
        out.metrics = metrics_rows(&name, Some(ma), Some(mb));
    }
    if !costs_same && let (Some(ca), Some(cb)) = (&pa.costs, &pb.costs) {
        out.costs = cost_rows(&name, Some(ca), Some(cb));
    }
    if !scores_same && let (Some(sa), Some(sb)) = (pa.scores, pb.scores) {
        let (rows, items, effect) = paired::paired_rows(&name, (&sa, &sb), opts.items, stats);
        out.paired = rows;
        out.items = items;
        out.effect = effect;
    }
    Ok(out)
}

/// The metrics and costs of trial `t`, found on `side` only, beside an empty column.
fn one_side_figures(
    src: &dyn Source,
    t: &TrialFiles,
    name: &str,
    side: &'static str,
    out: &mut TrialDiff,
) -> Result<(), Error> {
    let need = Need { metrics: true, costs: true, scores: false };
    let (parsed, lacks) = parse_side(src, t, need, name, side)?;
    out.lacks.extend(lacks);
    if let Some(m) = &parsed.metrics {
        let (x, y) = one_sided(side, m);
        out.metrics = metrics_rows(name, x, y);
    }
    if let Some(c) = &parsed.costs {
        let (x, y) = one_sided(side, c);
        out.costs = cost_rows(name, x, y);
    }
    Ok(())
}

/// A row per condition either side has; a side without it (or without metrics at all) shows an
/// empty column and no change.
fn metrics_rows(
    trial: &str,
    a: Option<&headline::Metrics>,
    b: Option<&headline::Metrics>,
) -> Vec<MetricsRow> {
    let keys = union(a.into_iter().flat_map(|m| m.keys()), b.into_iter().flat_map(|m| m.keys()));
    let mut rows = Vec::new();
    for cond in keys {
        let (x, y) = (a.and_then(|m| m.get(&cond)), b.and_then(|m| m.get(&cond)));
        let accuracy_change =
            x.zip(y).and_then(|(x, y)| x.accuracy.zip(y.accuracy)).map(|(p, q)| q - p);
        let (a, b) = (x.cloned(), y.cloned());
        rows.push(MetricsRow { trial: trial.into(), condition: cond, a, b, accuracy_change });
    }
    rows
}

/// A row per condition either side has, then the totals (sides as in [`metrics_rows`]).
fn cost_rows(
    trial: &str,
    a: Option<&headline::Costs>,
    b: Option<&headline::Costs>,
) -> Vec<CostRow> {
    let row = |scope: String, x: Option<&Cost>, y: Option<&Cost>| CostRow {
        trial: trial.into(),
        scope,
        a: x.cloned(),
        b: y.cloned(),
        usd_change: x.zip(y).map(|(x, y)| y.usd - x.usd),
    };
    let keys = union(
        a.into_iter().flat_map(|c| c.conditions.keys()),
        b.into_iter().flat_map(|c| c.conditions.keys()),
    );
    let mut rows = Vec::new();
    for cond in keys {
        let (x, y) =
            (a.and_then(|c| c.conditions.get(&cond)), b.and_then(|c| c.conditions.get(&cond)));
        rows.push(row(cond, x, y));
    }
    rows.push(row("total".into(), a.map(|c| &c.total), b.map(|c| &c.total)));
    rows
}

/// `x` on `side`, nothing on the other.
fn one_sided<T>(side: &str, x: T) -> (Option<T>, Option<T>) {
    if side == "a" { (Some(x), None) } else { (None, Some(x)) }
}

fn same(x: &Option<Entry>, y: &Option<Entry>) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => x.same_as(y),
        (None, None) => true,
        _ => false,
    }
}

fn union<'k>(
    x: impl Iterator<Item = &'k String>,
    y: impl Iterator<Item = &'k String>,
) -> Vec<String> {
    let mut keys: Vec<String> = x.chain(y).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

#[derive(Clone, Copy)]
struct Need {
    metrics: bool,
    costs: bool,
    scores: bool,
}

fn parse_side(
    src: &dyn Source,
    t: &TrialFiles,
    need: Need,
    name: &str,
    side: &'static str,
) -> Result<(Parsed, Vec<Lack>), Error> {
    let mut lacks = Vec::new();
    let mut bad = |what: &str, path: String, reason: String| {
        lacks.push(Lack {
            side,
            trial: Some(name.to_string()),
            what: what.into(),
            detail: format!("{path}: {reason}"),
        })
    };
    let file = |e: &Entry| format!("{}/{}", t.results_path, e.name);
    let mut parsed = Parsed { metrics: None, costs: None, scores: None };
    if need.metrics
        && let Some(e) = &t.metrics
    {
        match headline::metrics(&src.read(e)?) {
            Ok(m) => parsed.metrics = Some(m),
            Err(r) => bad("metrics", file(e), r),
        }
    }
    if need.costs
        && let Some(e) = &t.costs
    {
        match headline::costs(&src.read(e)?, parsed.metrics.as_ref()) {
            Ok(c) => parsed.costs = Some(c),
            Err(r) => bad("costs", file(e), r),
        }
    }
    if need.scores {
        let (table, problems) = read_scores(src, t)?;
        for (path, reason) in problems {
            bad("per-item scores", path, reason);
        }
        parsed.scores = table;
    }
    Ok((parsed, lacks))
}

/// A score file that did not parse: its path in the run and why.
pub(crate) type Unreadable = (String, String);

/// A trial's per-item scores: today's `per_item_scores.csv`, or the old per-condition
/// prediction files together. The table only when every file parsed; each file that did not,
/// with why (`results_path/file`, reason).
pub(crate) fn read_scores(
    src: &dyn Source,
    t: &TrialFiles,
) -> Result<(Option<ScoreTable>, Vec<Unreadable>), Error> {
    let file = |e: &Entry| format!("{}/{}", t.results_path, e.name);
    if let Some(e) = &t.scores {
        return Ok(match tables::scores(&src.read(e)?, None) {
            Ok(s) => (Some(s), Vec::new()),
            Err(r) => (None, vec![(file(e), r)]),
        });
    }
    if t.legacy_scores.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut all = ScoreTable::default();
    let mut problems = Vec::new();
    for (cond, e) in &t.legacy_scores {
        if let Err(r) = tables::add_scores(&mut all, &src.read(e)?, Some(cond)) {
            problems.push((file(e), r));
        }
    }
    Ok((problems.is_empty().then_some(all), problems))
}

/// What a trial without results has, for the lacks section: requests per condition, responses.
fn what_it_has(src: &dyn Source, t: &TrialFiles) -> Result<String, Error> {
    let mut per_cond: BTreeMap<&str, u64> = BTreeMap::new();
    for (cond, e) in &t.inputs {
        *per_cond.entry(cond.as_str()).or_default() += layout::count_lines(&src.read(e)?);
    }
    let total: u64 = per_cond.values().sum();
    let detail = per_cond.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ");
    Ok(match (t.inputs.is_empty(), t.outputs.is_empty()) {
        (false, true) => format!(
            "batch inputs only ({total} requests: {detail}); no responses, metrics, scores or costs"
        ),
        (false, false) => format!(
            "batch inputs ({total} requests: {detail}) and responses, but no scored results"
        ),
        (true, false) => "responses but no inputs and no scored results".to_string(),
        (true, true) => "no inputs, responses or results".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runfiles::source::MemSource;

    fn scores_csv(rows: &[(&str, &str, &str, &str, &str)]) -> String {
        let mut s =
            String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
        for (id, cond, gold, pred, score) in rows {
            s.push_str(&format!("{id},d,{cond},0,{gold},{pred},{score},\n"));
        }
        s
    }

    fn run(temp: &str, scores: &str, metrics: &str) -> MemSource {
        let slug = format!("m-p-t{temp}");
        let mut s = MemSource::new();
        s.insert("run.json", format!("{{\"run_id\": \"r{temp}\"}}"))
            .insert("config/eval_config.yaml", format!("decoding: {{temps: [{temp}.0], top_k: [50]}}\n"))
            .insert(&format!("{slug}/trial.json"), format!("{{\"slug\": \"{slug}\", \"model\": \"m\", \"prompt_set\": \"p\", \"decoding\": {{\"temperature\": {temp}.0, \"top_k\": 50}}}}"))
            .insert(&format!("{slug}/results/per_item_scores.csv"), scores)
            .insert(&format!("{slug}/results/metrics.json", ), metrics)
            .insert(&format!("{slug}/results/costs.json"), format!("{{\"input_tokens\": 100, \"output_tokens\": 10, \"usd\": 0.{temp}1, \"conditions\": {{}}}}"));
        s
    }

    #[test]
    fn runs_differing_in_temperature_pair_their_trials_and_count_flips() {
        let a = run(
            "0",
            &scores_csv(&[
                ("1", "control", "x", "x", "1"),
                ("2", "control", "y", "x", "0"),
                ("3", "control", "y", "y", "1"),
                ("4", "control", "x", "", ""),
            ]),
            r#"{"conditions": {"control": {"n": 4, "scored": 3, "failed": 1, "correct": 2.0, "accuracy": 0.6667}}}"#,
        );
        let b = run(
            "1",
            &scores_csv(&[
                ("1", "control", "x", "y", "0"),
                ("2", "control", "y", "y", "1"),
                ("3", "control", "y", "y", "1"),
                ("4", "control", "x", "x", "1"),
            ]),
            r#"{"conditions": {"control": {"n": 4, "scored": 4, "failed": 0, "correct": 3.0, "accuracy": 0.75}}}"#,
        );
        let d =
            diff_runs(&a, &b, Side::default(), Side::default(), &Options { items: true }).unwrap();
        assert!(!d.identical);
        assert_eq!(d.config.len(), 1);
        assert_eq!(
            (d.config[0].old.as_deref(), d.config[0].new.as_deref()),
            (Some("[0.0]"), Some("[1.0]"))
        );
        assert_eq!(d.trials.paired.len(), 1);
        let p = &d.trials.paired[0];
        assert_eq!((p.matched_by, p.changes.len()), ("parameters", 1));
        assert_eq!(p.changes[0].key, "decoding.temperature");
        assert_eq!(d.metrics.len(), 1);
        assert!((d.metrics[0].accuracy_change.unwrap() - (0.75 - 2.0 / 3.0)).abs() < 1e-12);
        let r = &d.paired[0];
        assert_eq!((r.paired, r.both_correct, r.fixed, r.broken, r.failed_either), (3, 1, 1, 1, 1));
        assert_eq!(r.p_value, Some(1.0));
        assert_eq!(d.items.len(), 2);
        assert_eq!(d.items.iter().map(|i| i.change).collect::<Vec<_>>(), ["broken", "fixed"]);
        assert_eq!(
            d.costs.last().map(|c| c.usd_change.map(|u| (u * 100.0).round())),
            Some(Some(10.0))
        );
    }

    #[test]
    fn identical_runs_report_nothing_and_batch_only_runs_say_what_they_lack() {
        let a = run(
            "0",
            &scores_csv(&[("1", "control", "x", "x", "1")]),
            r#"{"conditions": {"control": {"n": 1, "correct": 1.0, "accuracy": 1.0}}}"#,
        );
        let d = diff_runs(&a, &a.clone(), Side::default(), Side::default(), &Options::default())
            .unwrap();
        assert!(d.identical && d.files.is_empty() && d.metrics.is_empty());

        let mut old = MemSource::new();
        old.insert("config_snapshot.yaml", "decoding: {temps: [0.0]}\n")
            .insert(
                "trials/m__p__temp0.0/batch_input_control_part00.jsonl",
                "{\"body\": {\"temperature\": 0.0}}\n{}\n",
            )
            .insert("trials/m__p__temp0.0/batch_input_treatment_part00.jsonl", "{}\n");
        let mut new = MemSource::new();
        new.insert("config_snapshot.yaml", "decoding: {temps: [1.0]}\n")
            .insert(
                "trials/m__p__temp1.0/batch_input_control_part00.jsonl",
                "{\"body\": {\"temperature\": 1.0}}\n",
            )
            .insert(
                "trials/m__p__temp1.0/metrics.json",
                r#"{"control": {"n_items": 1, "n_correct": 1, "accuracy": 1.0}}"#,
            )
            .insert(
                "trials/m__p__temp1.0/predictions_control.csv",
                "id,gold,prediction,correct\r\ns1,x,x,1\r\n",
            )
            .insert("trials/m__p__temp1.0/costs.json", "");
        let d =
            diff_runs(&old, &new, Side::default(), Side::default(), &Options::default()).unwrap();
        assert_eq!(d.trials.paired.len(), 1, "{:?}", d.trials);
        assert_eq!(d.lacks.len(), 2, "{:?}", d.lacks);
        assert_eq!(d.lacks[0].side, "a");
        assert_eq!(
            (d.lacks[1].side, d.lacks[1].detail.as_str()),
            ("b", "trials/m__p__temp1.0/costs.json: the file is empty")
        );
        assert!(
            d.lacks[0].detail.contains("batch inputs only (3 requests: control 2, treatment 1)"),
            "{}",
            d.lacks[0].detail
        );
        assert!(d.paired.is_empty(), "nothing to pair with");
        assert_eq!(d.metrics.len(), 1, "the side with results is still shown");
        assert!(
            d.metrics[0].a.is_none() && d.metrics[0].b.as_ref().is_some_and(|m| m.correct == 1.0)
        );
    }

    #[test]
    fn pair_names_keep_the_shared_parts_and_whole_numbers() {
        assert_eq!(pair_name("m-p-t0-tk50", "m-p-t1-tk50"), "m-p-t{0→1}-tk50");
        assert_eq!(pair_name("m__p__temp0.0", "m__p__temp1.0"), "m__p__temp{0.0→1.0}");
        assert_eq!(pair_name("m-t10", "m-t15"), "m-t{10→15}");
        assert_eq!(pair_name("abc", "xyz"), "abc → xyz");
        assert_eq!(pair_name("same", "same"), "same");
    }

    #[test]
    fn an_empty_costs_file_is_reported_not_fatal() {
        let mk = |usd: &str| {
            let mut s = MemSource::new();
            s.insert("trials/m__p__temp1.0/metrics.json", format!(r#"{{"control": {{"n_items": 1, "n_correct": 1, "accuracy": 1.0, "x": "{usd}"}}}}"#))
                .insert("trials/m__p__temp1.0/costs.json", usd.to_string());
            s
        };
        let d = diff_runs(
            &mk(""),
            &mk(r#"{"total_cost_usd": 1.0, "control": {"cost_usd": 1.0}}"#),
            Side::default(),
            Side::default(),
            &Options::default(),
        )
        .unwrap();
        let lack = d.lacks.iter().find(|l| l.what == "costs").expect("a lack for the empty file");
        assert_eq!(lack.side, "a");
        assert!(lack.detail.ends_with("costs.json: the file is empty"), "{}", lack.detail);
        assert!(d.costs.is_empty());
    }
}
