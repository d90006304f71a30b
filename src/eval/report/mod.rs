//! Statistics and reports of a run, computed only from the files the run wrote
//! (docs/RUN_FILES.md), so every number in a report can be traced to a file.
//!
//! Per trial: `results/significance.json` (the numbers, from `crate::stats`) and
//! `reports/report.md` (the same numbers in words). Per run: Holm-adjusted p-values across
//! trials (into every significance.json and `multi_trial_manifest.json`),
//! `aggregate_report.md` with SVG charts in `charts/`, and a self-contained
//! `aggregate_report.html`. Never prints; never touches the network.
use std::path::{Path, PathBuf};

use super::artifacts::{self, Costs, Metrics};
use crate::error::Hint;
use crate::stats::{self, Significance};

mod charts;
mod files;
mod format;
mod html;
mod markdown;
mod scan;

pub use files::TrialInfo;

/// The config's `significance:` section.
#[derive(Debug, Clone)]
pub struct SignificanceSettings {
    pub alpha: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
}

impl Default for SignificanceSettings {
    fn default() -> Self {
        SignificanceSettings { alpha: 0.05, bootstrap_resamples: 10_000, seed: 0 }
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no per-item scores to compute statistics from")]
    MissingScores { path: PathBuf },
    #[error("{path}:{line}: score {value:?} is not a number between 0 and 1")]
    BadScore { path: PathBuf, line: u64, value: String },
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Csv { path: PathBuf, line: Option<u64>, message: String },
    #[error("{path}:{line}: {source}")]
    Json { path: PathBuf, line: usize, source: serde_json::Error },
    /// metrics.json or costs.json (read by `eval::artifacts`).
    #[error(transparent)]
    Results(#[from] artifacts::Error),
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("significance.{key} = {value} is out of range")]
    Setting { key: &'static str, value: String },
    #[error("{path}: drawing the chart failed: {message}")]
    Chart { path: PathBuf, message: String },
}

impl Hint for ReportError {
    fn hint(&self) -> Option<String> {
        match self {
            ReportError::MissingScores { .. } => Some(
                "the trial was not scored (no results/per_item_scores.csv): finish it with \
                 `exp run --config FILE --run-id ID --resume`"
                    .into(),
            ),
            ReportError::BadScore { .. } => Some(
                "each score must be empty (failed request) or a number in [0, 1]: fix the \
                 scorer or the file, then rerun with --resume"
                    .into(),
            ),
            ReportError::Csv { .. } => Some(
                "the CSV does not have the columns of docs/RUN_FILES.md: rerun the trial with \
                 --resume to rewrite it"
                    .into(),
            ),
            ReportError::Json { .. } | ReportError::Results(artifacts::Error::Malformed { .. }) => {
                Some("the JSON file is damaged: rerun with --resume to rewrite it".into())
            }
            ReportError::Manifest { .. } => Some(
                "multi_trial_manifest.json is missing or not in the format of docs/RUN_FILES.md: \
                 rerun with --resume to rewrite it"
                    .into(),
            ),
            ReportError::Setting { key, .. } => Some(match *key {
                "alpha" => "set significance.alpha in the config to a number between 0 and 1, \
                            e.g. 0.05"
                    .into(),
                _ => format!("fix significance.{key} in the config"),
            }),
            ReportError::Io { .. } | ReportError::Results(artifacts::Error::Io { .. }) => {
                Some("check that the run folder exists and is writable".into())
            }
            ReportError::Chart { .. } => None,
        }
    }
}

fn check(settings: &SignificanceSettings) -> Result<stats::Settings, ReportError> {
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(ReportError::Setting { key: "alpha", value: settings.alpha.to_string() });
    }
    Ok(stats::Settings {
        alpha: settings.alpha,
        bootstrap_resamples: settings.bootstrap_resamples,
        seed: settings.seed,
    })
}

/// What one trial's report is made of, read from its folder.
pub(crate) struct TrialData {
    pub slug: String,
    pub run_id: Option<String>,
    pub info: TrialInfo,
    pub sig: Significance,
    /// Rows in per_item_scores.csv.
    pub rows: u64,
    pub discordant: scan::Discordant,
    pub failures: scan::Failures,
    pub metrics: Option<Metrics>,
    pub costs: Option<Costs>,
}

fn run_id_of(run_dir: &Path) -> Option<String> {
    let name = run_dir.file_name()?.to_str()?;
    Some(name.strip_prefix("run_").unwrap_or(name).to_string())
}

/// Computes one trial's statistics from `<trial>/results/` and writes `results/significance.json`
/// and `reports/report.md`.
pub fn write_trial_report(
    trial_dir: &Path,
    settings: &SignificanceSettings,
) -> Result<(), ReportError> {
    let settings = check(settings)?;
    let results = trial_dir.join("results");
    // The rows are streamed into a per-item tally, never held: see `scan`.
    let scan = scan::scores(&results.join("per_item_scores.csv"))?;
    let mut sig = scan.tally.analyze(&settings);
    // A re-run of the trial step must not forget the adjustment the aggregate step made.
    let sig_path = results.join("significance.json");
    if let Some(old) = files::read_json_opt::<Significance>(&sig_path).ok().flatten()
        && old.p_value == sig.p_value
    {
        sig.holm_p = old.holm_p;
    }
    files::write_json(&sig_path, &sig)?;
    render_trial(trial_dir, sig, scan)
}

/// Writes `reports/report.md` from `sig` and the trial's other files.
fn render_trial(trial_dir: &Path, sig: Significance, scan: scan::Scan) -> Result<(), ReportError> {
    let results = trial_dir.join("results");
    let scan::Scan { tally, rows, mut failures } = scan;
    let info: TrialInfo = files::read_json_opt(&trial_dir.join("trial.json"))?.unwrap_or_default();
    let slug = info.slug.clone().unwrap_or_else(|| {
        trial_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    });
    scan::failure_errors(&results.join("predictions.csv"), &mut failures)?;
    let discordant = scan::discordant(&results.join("per_item_scores.csv"), &tally)?;
    drop(tally);
    let data = TrialData {
        slug,
        run_id: trial_dir.parent().and_then(run_id_of),
        info,
        sig,
        rows,
        discordant,
        failures,
        metrics: artifacts::read_metrics(&results.join("metrics.json"))?,
        costs: artifacts::read_costs(&results.join("costs.json"))?,
    };
    let md = markdown::trial_report(&data);
    files::write_atomic(&trial_dir.join("reports").join("report.md"), md.as_bytes())
}

/// One trial as the aggregate sees it.
pub(crate) struct AggTrial {
    pub slug: String,
    pub path: String,
    pub status: Option<String>,
    pub model: Option<String>,
    pub prompt_set: Option<String>,
    pub decoding: Option<serde_json::Map<String, serde_json::Value>>,
    pub sig: Option<Significance>,
    pub costs: Option<Costs>,
    /// Cost from the manifest when costs.json is absent.
    pub manifest_usd: Option<f64>,
    pub holm_p: Option<f64>,
}

impl AggTrial {
    pub fn usd(&self) -> Option<f64> {
        self.costs.as_ref().and_then(|c| c.total.usd).or(self.manifest_usd)
    }
}

/// The whole run as the aggregate reports see it.
pub(crate) struct Aggregate {
    pub run_id: Option<String>,
    pub status: Option<String>,
    pub alpha: f64,
    pub trials: Vec<AggTrial>,
    pub totals: Option<serde_json::Value>,
}

/// Reads `multi_trial_manifest.json` and every trial's `significance.json`, adds Holm-adjusted
/// p-values to both, and writes `aggregate_report.md`, `aggregate_report.html` and `charts/*.svg`.
pub fn write_aggregate(run_dir: &Path, settings: &SignificanceSettings) -> Result<(), ReportError> {
    let settings = check(settings)?;
    let manifest_path = run_dir.join("multi_trial_manifest.json");
    let bad =
        |reason: &str| ReportError::Manifest { path: manifest_path.clone(), reason: reason.into() };
    let mut manifest: serde_json::Value = files::read_json_opt(&manifest_path)?
        .ok_or_else(|| bad("the run has no trial manifest"))?;
    let entries = manifest
        .get("trials")
        .and_then(|t| t.as_array())
        .ok_or_else(|| bad("no \"trials\" list"))?;

    let mut trials = Vec::with_capacity(entries.len());
    for (i, t) in entries.iter().enumerate() {
        let text = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let slug = text("slug").ok_or_else(|| bad(&format!("trial {} has no \"slug\"", i + 1)))?;
        let path = text("path").unwrap_or_else(|| format!("{slug}/"));
        let results = run_dir.join(&path).join("results");
        trials.push(AggTrial {
            sig: files::read_json_opt(&results.join("significance.json"))?,
            costs: artifacts::read_costs(&results.join("costs.json"))?,
            manifest_usd: t.get("usd").and_then(|v| v.as_f64()),
            status: text("status"),
            model: text("model"),
            prompt_set: text("prompt_set"),
            decoding: t.get("decoding").and_then(|v| v.as_object()).cloned(),
            holm_p: None,
            slug,
            path,
        });
    }

    let p: Vec<Option<f64>> =
        trials.iter().map(|t| t.sig.as_ref().and_then(|s| s.p_value)).collect();
    for (t, h) in trials.iter_mut().zip(stats::holm(&p)) {
        t.holm_p = h;
        if let Some(sig) = t.sig.as_mut() {
            sig.holm_p = h;
            let trial_dir = run_dir.join(&t.path);
            files::write_json(&trial_dir.join("results").join("significance.json"), sig)?;
            // The trial's own report states its Holm-adjusted p-value too.
            let scores_path = trial_dir.join("results").join("per_item_scores.csv");
            if scores_path.exists() {
                render_trial(&trial_dir, sig.clone(), scan::scores(&scores_path)?)?;
            }
        }
    }

    if let Some(list) = manifest.get_mut("trials").and_then(|t| t.as_array_mut()) {
        for (entry, t) in list.iter_mut().zip(&trials) {
            let Some(obj) = entry.as_object_mut() else { continue };
            obj.insert("holm_p".into(), t.holm_p.into());
            let sig = t.sig.as_ref();
            for (key, value) in
                [("effect", sig.and_then(|s| s.effect)), ("p_value", sig.and_then(|s| s.p_value))]
            {
                if obj.get(key).is_none_or(|v| v.is_null()) {
                    obj.insert(key.into(), value.into());
                }
            }
        }
    }
    files::write_json(&manifest_path, &manifest)?;

    let agg = Aggregate {
        run_id: manifest
            .get("run_id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| run_id_of(run_dir)),
        status: manifest.get("status").and_then(|v| v.as_str()).map(str::to_string),
        alpha: settings.alpha,
        trials,
        totals: manifest.get("totals").cloned(),
    };
    let charts_dir = run_dir.join("charts");
    let drawn = charts::draw_all(&agg, &charts_dir)?;
    for chart in &drawn {
        files::write_atomic(&charts_dir.join(chart.file), chart.svg.as_bytes())?;
    }
    files::write_atomic(
        &run_dir.join("aggregate_report.md"),
        markdown::aggregate_report(&agg, &drawn).as_bytes(),
    )?;
    files::write_atomic(
        &run_dir.join("aggregate_report.html"),
        html::aggregate_report(&agg, &drawn).as_bytes(),
    )?;
    Ok(())
}
