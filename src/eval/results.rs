//! A trial's results from its journals: `predictions.csv`, `per_item_scores.csv`, `metrics.json`
//! and `costs.json` (docs/RUN_FILES.md). Every planned request gets a row, in plan order: a scored
//! answer, a recorded failure (empty score, counted as a failure, never as a wrong answer), or,
//! after an interruption, a row saying it was never answered.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::build::custom_id_into;
use super::config::Pricing;
use super::journal::{self, JournalError, Status};
use super::plan::Condition;
use super::prepare::Item;
use super::score::Scorer;
use crate::error::Hint;
use crate::runfiles::results::{ConditionMetrics, CostLine, Costs, Metrics};
use crate::runfiles::tables::{PREDICTIONS_HEADER, SCORES_HEADER, TableWriter};
use crate::runfiles::{self, COSTS, METRICS, PREDICTIONS, RESULTS_DIR, SCORES};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A results file could not be written.
    #[error(transparent)]
    Files(#[from] runfiles::Error),
    #[error("baseline {what} is not a results CSV exp can read: {problem}")]
    Baseline { what: String, problem: String },
}

impl Hint for ResultsError {
    fn hint(&self) -> Option<String> {
        match self {
            ResultsError::Journal(e) => e.hint(),
            ResultsError::Files(e) => e.hint(),
            ResultsError::Baseline { .. } => Some(
                "pick a baseline run written by exp run (see `exp log`), or drop --baseline".into(),
            ),
        }
    }
}

/// One job of the trial, for reading its journal.
pub struct ResultJob<'a> {
    pub condition: Condition,
    pub part: usize,
    pub dataset: &'a str,
    pub items: &'a [Item],
    pub journal: PathBuf,
    /// Every answer of the journal was reused, not paid for by this run (`exp rescore`).
    pub reused: bool,
}

/// Control rows taken from a baseline run instead of being paid for again.
pub struct BaselineRows {
    /// `predictions.csv` and `per_item_scores.csv` of the baseline trial, as bytes.
    pub predictions: Vec<u8>,
    pub scores: Vec<u8>,
    pub condition: Condition,
}

/// What the trial's results say, for the manifest.
#[derive(Debug, Clone)]
pub struct TrialResults {
    pub metrics: Metrics,
    pub costs: Costs,
    /// Some row was never answered.
    pub incomplete: bool,
}

/// Writes the trial's `results/` files from its journals (and baseline rows, if any).
pub fn write(
    trial_dir: &Path,
    jobs: &[ResultJob<'_>],
    repeats: u32,
    scorer: &Scorer,
    pricing: Option<Pricing>,
    baseline: Option<&BaselineRows>,
) -> Result<TrialResults, ResultsError> {
    let dir = trial_dir.join(RESULTS_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|source| runfiles::Error::Write { path: dir.clone(), source })?;
    let mut pred = TableWriter::create(&dir.join(PREDICTIONS), &PREDICTIONS_HEADER)?;
    let mut scores = TableWriter::create(&dir.join(SCORES), &SCORES_HEADER)?;

    let mut metrics: BTreeMap<String, ConditionMetrics> = BTreeMap::new();
    let mut costs: BTreeMap<String, CostLine> = BTreeMap::new();
    // A dataset's parts are disjoint ranges of its items (whose ids prepare made unique), and
    // each condition's job of a part holds the same range: distinct items are counted per part,
    // not by a set of every id (a million-entry table missing the cache).
    let mut part_sizes: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    let repeat_s: Vec<String> = (0..repeats).map(|r| r.to_string()).collect();
    let mut id = String::new();
    let mut incomplete = false;
    // One job's journal in memory at a time (a million-item run holds a quarter of a million
    // entries per job; reading the next one meanwhile raised the run's peak by a third).
    for job in jobs {
        let entries = journal::read(&job.journal)?;
        let cond = job.condition.as_str();
        let m = metrics.entry(cond.to_string()).or_default();
        let c = costs.entry(cond.to_string()).or_default();
        let part_s = job.part.to_string();
        part_sizes.insert((job.dataset, job.part), job.items.len());
        for item in job.items {
            let cluster = item.cluster.as_deref().unwrap_or_default();
            for (repeat, repeat_s) in repeat_s.iter().enumerate() {
                custom_id_into(&mut id, job.dataset, &item.id, job.condition, repeat as u32);
                let a = answer(entries.get(&id), job.reused, &item.label, scorer, m, c);
                incomplete |= a.missing;
                let mut digits = [itoa::Buffer::new(); 4];
                let [inp, out, reason, lat] = &mut digits;
                pred.row([
                    item.id.as_str(),
                    job.dataset,
                    cond,
                    repeat_s,
                    &part_s,
                    &a.prediction,
                    a.raw,
                    a.finish,
                    cell(inp, a.input_tokens),
                    cell(out, a.output_tokens),
                    cell(reason, a.reasoning_tokens),
                    cell(lat, a.latency),
                    a.error,
                ])?;
                let score_s = a.score.map(format_score).unwrap_or_default();
                scores.row([
                    item.id.as_str(),
                    job.dataset,
                    cond,
                    repeat_s,
                    &item.label,
                    &a.prediction,
                    &score_s,
                    cluster,
                ])?;
            }
        }
    }
    let mut from_baseline = Vec::new();
    if let Some(b) = baseline {
        let cond = b.condition.as_str().to_string();
        let m = append_baseline(&mut pred, &mut scores, b)?;
        metrics.insert(cond.clone(), m);
        from_baseline.push(cond);
    }
    pred.finish()?;
    scores.finish()?;

    for m in metrics.values_mut() {
        m.accuracy = (m.scored > 0).then(|| m.correct / m.scored as f64);
    }
    let total = price(&mut costs, &metrics, pricing);
    let n_items = part_sizes.values().map(|&n| n as u64).sum();
    let metrics = Metrics { n_items, repeats, conditions: metrics };
    let costs = Costs { total, conditions: costs, from_baseline, endpoint: None };
    runfiles::write_json(&dir.join(METRICS), &metrics)?;
    runfiles::write_json(&dir.join(COSTS), &costs)?;
    Ok(TrialResults { metrics, costs, incomplete })
}

/// One planned request's row of the CSVs, from its journal entry (if any).
struct Answer<'e> {
    prediction: String,
    score: Option<f64>,
    raw: &'e str,
    finish: &'e str,
    /// Empty cells when `None`.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// The part of `output_tokens` spent reasoning (never more than the whole).
    reasoning_tokens: Option<u64>,
    latency: Option<u64>,
    error: &'e str,
    /// Never answered (the run was interrupted).
    missing: bool,
}

/// A number's CSV cell, written into `digits` (no allocation per row); empty for `None`.
fn cell(digits: &mut itoa::Buffer, n: Option<u64>) -> &str {
    n.map_or("", |n| digits.format(n))
}

/// Scores `entry` against `label` and counts it into the condition's metrics and costs: a
/// scored answer, a recorded failure (no score: a failure, never a wrong answer), or none.
fn answer<'e>(
    entry: Option<&'e journal::Entry>,
    reused: bool,
    label: &str,
    scorer: &Scorer,
    m: &mut ConditionMetrics,
    c: &mut CostLine,
) -> Answer<'e> {
    m.n += 1;
    match entry {
        Some(e) if e.status == Status::Ok => {
            let raw = e.content.as_deref().unwrap_or_default();
            let (prediction, score) = scorer.score(raw, label);
            // Reasoning tokens are part of the output tokens; a server claiming more is counted
            // at its output tokens, so the reasoning share never exceeds the whole.
            let reasoning = e.reasoning_tokens.min(e.output_tokens);
            m.scored += 1;
            m.correct += score;
            if reused || e.reused.is_some() {
                c.reused += 1;
                c.reused_input_tokens += e.input_tokens;
                c.reused_output_tokens += e.output_tokens;
            } else {
                c.requests += 1;
                c.input_tokens += e.input_tokens;
                c.output_tokens += e.output_tokens;
                c.reasoning_tokens += reasoning;
            }
            c.usage_missing += u64::from(e.usage_missing);
            Answer {
                prediction,
                score: Some(score),
                raw,
                finish: e.finish_reason.as_deref().unwrap_or_default(),
                input_tokens: Some(e.input_tokens),
                output_tokens: Some(e.output_tokens),
                reasoning_tokens: Some(reasoning),
                latency: Some(e.latency_ms),
                error: "",
                missing: false,
            }
        }
        Some(e) => {
            m.failed += 1;
            c.requests += 1;
            c.failures += 1;
            Answer {
                prediction: String::new(),
                score: None,
                raw: "",
                finish: "",
                input_tokens: Some(0),
                output_tokens: Some(0),
                reasoning_tokens: Some(0),
                latency: Some(e.latency_ms),
                error: e.error.as_deref().unwrap_or("failed"),
                missing: false,
            }
        }
        None => {
            m.missing += 1;
            Answer {
                prediction: String::new(),
                score: None,
                raw: "",
                finish: "",
                input_tokens: None,
                output_tokens: None,
                reasoning_tokens: None,
                latency: None,
                error: "not answered: the run was interrupted (exp run --resume finishes it)",
                missing: true,
            }
        }
    }
}

/// Puts USD on each condition's line (paid, and saved by reused answers) and returns the
/// trial's total. `usd_per_correct` is at list price (paid + saved), so a run that reused its
/// answers reads like one that paid for them.
fn price(
    costs: &mut BTreeMap<String, CostLine>,
    metrics: &BTreeMap<String, ConditionMetrics>,
    pricing: Option<Pricing>,
) -> CostLine {
    let mut total = CostLine::default();
    let mut total_correct = 0.0;
    let usd = |i, o| pricing.map(|p| p.usd(i, o)).unwrap_or(0.0);
    for (cond, c) in costs.iter_mut() {
        c.usd = usd(c.input_tokens, c.output_tokens);
        c.usd_saved = usd(c.reused_input_tokens, c.reused_output_tokens);
        c.reasoning_usd = usd(0, c.reasoning_tokens);
        let correct = metrics.get(cond).map(|m| m.correct).unwrap_or(0.0);
        c.usd_per_correct = (correct > 0.0).then(|| (c.usd + c.usd_saved) / correct);
        total.requests += c.requests;
        total.failures += c.failures;
        total.input_tokens += c.input_tokens;
        total.output_tokens += c.output_tokens;
        total.usage_missing += c.usage_missing;
        total.reasoning_tokens += c.reasoning_tokens;
        total.reused += c.reused;
        total.reused_input_tokens += c.reused_input_tokens;
        total.reused_output_tokens += c.reused_output_tokens;
        total_correct += correct;
    }
    total.usd = usd(total.input_tokens, total.output_tokens);
    total.usd_saved = usd(total.reused_input_tokens, total.reused_output_tokens);
    total.reasoning_usd = usd(0, total.reasoning_tokens);
    total.usd_per_correct =
        (total_correct > 0.0).then(|| (total.usd + total.usd_saved) / total_correct);
    total
}

/// 1 -> "1", 0 -> "0", 0.5 -> "0.5": binary scores stay integers in the CSV.
fn format_score(s: f64) -> String {
    format!("{s}")
}

/// Copies the baseline's rows of one condition into this trial's CSVs; its metrics.
fn append_baseline(
    pred: &mut TableWriter,
    scores: &mut TableWriter,
    b: &BaselineRows,
) -> Result<ConditionMetrics, ResultsError> {
    let cond = b.condition.as_str();
    let bad = |what: &str, problem: String| ResultsError::Baseline { what: what.into(), problem };
    let copy = |bytes: &[u8],
                header: &[&str],
                w: &mut TableWriter,
                what: &str|
     -> Result<Vec<csv::StringRecord>, ResultsError> {
        let mut r = csv::Reader::from_reader(bytes);
        let h = r.headers().map_err(|e| bad(what, e.to_string()))?.clone();
        if h.iter().collect::<Vec<_>>() != header {
            return Err(bad(
                what,
                format!("header is `{}`", h.iter().collect::<Vec<_>>().join(",")),
            ));
        }
        let mut kept = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| bad(what, e.to_string()))?;
            if rec.get(2) == Some(cond) {
                w.row(&rec)?;
                kept.push(rec);
            }
        }
        Ok(kept)
    };
    copy(&b.predictions, &PREDICTIONS_HEADER, pred, PREDICTIONS)?;
    let rows = copy(&b.scores, &SCORES_HEADER, scores, SCORES)?;
    let mut m = ConditionMetrics::default();
    for rec in rows {
        m.n += 1;
        match rec.get(6).filter(|s| !s.is_empty()) {
            Some(s) => {
                let v: f64 = s.parse().map_err(|_| {
                    bad("per_item_scores.csv", format!("score `{s}` is not a number"))
                })?;
                m.scored += 1;
                m.correct += v;
            }
            None => m.failed += 1,
        }
    }
    Ok(m)
}
