//! A trial's results from its journals: `predictions.csv`, `per_item_scores.csv`, `metrics.json`
//! and `costs.json` (docs/RUN_FILES.md). Every planned request gets a row, in plan order: a scored
//! answer, a recorded failure (empty score, counted as a failure, never as a wrong answer), or,
//! after an interruption, a row saying it was never answered.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::build::custom_id;
use super::config::Pricing;
use super::journal::{self, JournalError, Status};
use super::plan::Condition;
use super::prepare::Item;
use super::score::Scorer;
use crate::error::Hint;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("baseline {what} is not a results CSV exp can read: {problem}")]
    Baseline { what: String, problem: String },
}

impl Hint for ResultsError {
    fn hint(&self) -> Option<String> {
        match self {
            ResultsError::Journal(e) => e.hint(),
            ResultsError::Write { .. } => {
                Some("check the disk has space and the run folder is writable".into())
            }
            ResultsError::Baseline { .. } => Some(
                "pick a baseline run written by exp run (see `exp log`), or drop --baseline".into(),
            ),
        }
    }
}

pub const PREDICTIONS_HEADER: [&str; 12] = [
    "item_id",
    "dataset",
    "condition",
    "repeat",
    "part",
    "prediction",
    "raw_output",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "error",
];
pub const SCORES_HEADER: [&str; 8] =
    ["item_id", "dataset", "condition", "repeat", "gold", "prediction", "score", "cluster"];

/// One job of the trial, for reading its journal.
pub struct ResultJob<'a> {
    pub condition: Condition,
    pub part: usize,
    pub dataset: &'a str,
    pub items: &'a [Item],
    pub journal: PathBuf,
}

/// Control rows taken from a baseline run instead of being paid for again.
pub struct BaselineRows {
    /// `predictions.csv` and `per_item_scores.csv` of the baseline trial, as bytes.
    pub predictions: Vec<u8>,
    pub scores: Vec<u8>,
    pub condition: Condition,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionMetrics {
    pub n: u64,
    pub scored: u64,
    pub failed: u64,
    /// Rows never answered (the run was interrupted).
    #[serde(default)]
    pub missing: u64,
    pub correct: f64,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n_items: u64,
    pub repeats: u32,
    pub conditions: BTreeMap<String, ConditionMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub requests: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Answers whose server reported no `usage`: their tokens are not in the totals.
    pub usage_missing: u64,
    pub usd: f64,
    pub usd_per_correct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    #[serde(flatten)]
    pub total: CostLine,
    pub conditions: BTreeMap<String, CostLine>,
    /// Conditions whose rows came from a baseline run: not paid for in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_baseline: Vec<String>,
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
    let dir = trial_dir.join("results");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| ResultsError::Write { path: path.clone(), source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let pred_path = dir.join("predictions.csv");
    let score_path = dir.join("per_item_scores.csv");
    let csv_io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: csv::Error| ResultsError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        }
    };
    let mut pred = csv::Writer::from_path(&pred_path).map_err(csv_io(&pred_path))?;
    let mut scores = csv::Writer::from_path(&score_path).map_err(csv_io(&score_path))?;
    pred.write_record(PREDICTIONS_HEADER).map_err(csv_io(&pred_path))?;
    scores.write_record(SCORES_HEADER).map_err(csv_io(&score_path))?;

    let mut metrics: BTreeMap<String, ConditionMetrics> = BTreeMap::new();
    let mut costs: BTreeMap<String, CostLine> = BTreeMap::new();
    // Borrowed from the plan's items: counting distinct items costs no copy of their ids.
    let mut item_ids: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let mut incomplete = false;
    for job in jobs {
        let entries = journal::read(&job.journal)?;
        let cond = job.condition.as_str().to_string();
        let m = metrics.entry(cond.clone()).or_default();
        let c = costs.entry(cond.clone()).or_default();
        for item in job.items {
            item_ids.insert((job.dataset, item.id.as_str()));
            for repeat in 0..repeats {
                let id = custom_id(job.dataset, &item.id, job.condition, repeat);
                m.n += 1;
                let cluster = item.cluster.as_deref().unwrap_or_default();
                let (prediction, score, raw, finish, tin, tout, latency, error) =
                    match entries.get(&id) {
                        Some(e) if e.status == Status::Ok => {
                            let raw = e.content.as_deref().unwrap_or_default();
                            let (prediction, score) = scorer.score(raw, &item.label);
                            m.scored += 1;
                            m.correct += score;
                            c.requests += 1;
                            c.input_tokens += e.input_tokens;
                            c.output_tokens += e.output_tokens;
                            c.usage_missing += u64::from(e.usage_missing);
                            (
                                prediction,
                                Some(score),
                                raw,
                                e.finish_reason.as_deref().unwrap_or_default(),
                                e.input_tokens.to_string(),
                                e.output_tokens.to_string(),
                                e.latency_ms.to_string(),
                                String::new(),
                            )
                        }
                        Some(e) => {
                            m.failed += 1;
                            c.requests += 1;
                            c.failures += 1;
                            (
                                String::new(),
                                None,
                                "",
                                "",
                                "0".into(),
                                "0".into(),
                                e.latency_ms.to_string(),
                                e.error.clone().unwrap_or_else(|| "failed".into()),
                            )
                        }
                        None => {
                            m.missing += 1;
                            incomplete = true;
                            (
                            String::new(),
                            None,
                            "",
                            "",
                            String::new(),
                            String::new(),
                            String::new(),
                            "not answered: the run was interrupted (exp run --resume finishes it)"
                                .into(),
                        )
                        }
                    };
                let repeat_s = repeat.to_string();
                let part_s = job.part.to_string();
                pred.write_record([
                    item.id.as_str(),
                    job.dataset,
                    &cond,
                    &repeat_s,
                    &part_s,
                    &prediction,
                    raw,
                    finish,
                    &tin,
                    &tout,
                    &latency,
                    &error,
                ])
                .map_err(csv_io(&pred_path))?;
                let score_s = score.map(format_score).unwrap_or_default();
                scores
                    .write_record([
                        item.id.as_str(),
                        job.dataset,
                        &cond,
                        &repeat_s,
                        &item.label,
                        &prediction,
                        &score_s,
                        cluster,
                    ])
                    .map_err(csv_io(&score_path))?;
            }
        }
    }
    let mut from_baseline = Vec::new();
    if let Some(b) = baseline {
        let cond = b.condition.as_str().to_string();
        let m = append_baseline(&mut pred, &mut scores, b, &pred_path, &score_path)?;
        metrics.insert(cond.clone(), m);
        from_baseline.push(cond);
    }
    pred.flush().map_err(io(&pred_path))?;
    scores.flush().map_err(io(&score_path))?;

    for m in metrics.values_mut() {
        m.accuracy = (m.scored > 0).then(|| m.correct / m.scored as f64);
    }
    let mut total = CostLine::default();
    let mut total_correct = 0.0;
    for (cond, c) in costs.iter_mut() {
        c.usd = pricing.map(|p| p.usd(c.input_tokens, c.output_tokens)).unwrap_or(0.0);
        let correct = metrics.get(cond).map(|m| m.correct).unwrap_or(0.0);
        c.usd_per_correct = (correct > 0.0).then(|| c.usd / correct);
        total.requests += c.requests;
        total.failures += c.failures;
        total.input_tokens += c.input_tokens;
        total.output_tokens += c.output_tokens;
        total.usage_missing += c.usage_missing;
        total_correct += correct;
    }
    total.usd = pricing.map(|p| p.usd(total.input_tokens, total.output_tokens)).unwrap_or(0.0);
    total.usd_per_correct = (total_correct > 0.0).then(|| total.usd / total_correct);
    let metrics = Metrics { n_items: item_ids.len() as u64, repeats, conditions: metrics };
    let costs = Costs { total, conditions: costs, from_baseline };
    write_json(&dir.join("metrics.json"), &metrics)?;
    write_json(&dir.join("costs.json"), &costs)?;
    Ok(TrialResults { metrics, costs, incomplete })
}

/// 1 -> "1", 0 -> "0", 0.5 -> "0.5": binary scores stay integers in the CSV.
fn format_score(s: f64) -> String {
    format!("{s}")
}

/// Copies the baseline's rows of one condition into this trial's CSVs; its metrics.
fn append_baseline(
    pred: &mut csv::Writer<std::fs::File>,
    scores: &mut csv::Writer<std::fs::File>,
    b: &BaselineRows,
    pred_path: &Path,
    score_path: &Path,
) -> Result<ConditionMetrics, ResultsError> {
    let cond = b.condition.as_str();
    let bad = |what: &str, problem: String| ResultsError::Baseline { what: what.into(), problem };
    let werr = |path: &Path, e: csv::Error| ResultsError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let copy = |bytes: &[u8],
                header: &[&str],
                w: &mut csv::Writer<std::fs::File>,
                path: &Path,
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
                w.write_record(&rec).map_err(|e| werr(path, e))?;
                kept.push(rec);
            }
        }
        Ok(kept)
    };
    copy(&b.predictions, &PREDICTIONS_HEADER, pred, pred_path, "predictions.csv")?;
    let rows = copy(&b.scores, &SCORES_HEADER, scores, score_path, "per_item_scores.csv")?;
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

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ResultsError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| ResultsError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    atomic_write(path, &text)
        .map_err(|source| ResultsError::Write { path: path.to_path_buf(), source })
}

/// Temp file + fsync + rename: a reader (or a crash) never sees half a JSON file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
