//! Statistics and reports of a run, computed only from the files the run wrote
//! (docs/RUN_FILES.md), so every number in a report can be traced to a file.
//!
//! Per trial: `results/significance.json` (the numbers, from `crate::stats`) and
//! `reports/report.md` (the same numbers in words). Per run: Holm-adjusted p-values across
//! trials (into every significance.json and `multi_trial_manifest.json`),
//! `aggregate_report.md` with SVG charts in `charts/`, and a self-contained
//! `aggregate_report.html`. Never prints; never touches the network.
use std::path::{Path, PathBuf};

use crate::error::Hint;
use crate::runfiles::figures::{self, Costs, Metrics};
use crate::runfiles::{self, COSTS, MANIFEST, METRICS, PREDICTIONS, SCORES, SIGNIFICANCE};
use crate::stats::{self, Significance};

pub(crate) mod charts;
pub(crate) mod format;
mod headline;
mod html;
mod markdown;
mod scan;

pub use crate::runfiles::TrialInfo;

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
    /// A run file could not be read or written (`crate::runfiles` names it and the line).
    #[error(transparent)]
    Files(runfiles::Error),
    /// A CSV without the columns of docs/RUN_FILES.md.
    #[error(transparent)]
    Csv(runfiles::Error),
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
            ReportError::Files(e) | ReportError::Csv(e) => e.hint(),
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
            ReportError::Io { .. } => {
                Some("check that the run folder exists and is writable".into())
            }
            ReportError::Chart { .. } => None,
        }
    }
}

impl From<runfiles::Error> for ReportError {
    fn from(e: runfiles::Error) -> Self {
        match e {
            runfiles::Error::Csv { .. } => ReportError::Csv(e),
            other => ReportError::Files(other),
        }
    }
}

/// Writes a report file atomically.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    runfiles::atomic_write(path, bytes)
        .map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
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
    let results = trial_dir.join(runfiles::RESULTS_DIR);
    // The rows are streamed into a per-item tally, never held: see `scan`.
    let scan = scan::scores(&results.join(SCORES))?;
    let mut sig = scan.tally.analyze(&settings);
    // A re-run of the trial step must not forget the adjustment the aggregate step made.
    let sig_path = results.join(SIGNIFICANCE);
    if let Some(old) = runfiles::read_json::<Significance>(&sig_path).ok().flatten()
        && old.p_value == sig.p_value
    {
        sig.holm_p = old.holm_p;
    }
    runfiles::write_json(&sig_path, &sig)?;
    render_trial(trial_dir, sig, scan)
}

/// Writes `reports/report.md` from `sig` and the trial's other files.
fn render_trial(trial_dir: &Path, sig: Significance, scan: scan::Scan) -> Result<(), ReportError> {
    let results = trial_dir.join(runfiles::RESULTS_DIR);
    let scan::Scan { tally, rows, mut failures } = scan;
    let info: TrialInfo =
        runfiles::read_json(&trial_dir.join(runfiles::TRIAL_JSON))?.unwrap_or_default();
    let slug = info.slug.clone().unwrap_or_else(|| {
        trial_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    });
    scan::failure_errors(&results.join(PREDICTIONS), &mut failures)?;
    let discordant = scan::discordant(&results.join(SCORES), &tally)?;
    drop(tally);
    let data = TrialData {
        slug,
        run_id: trial_dir.parent().and_then(run_id_of),
        info,
        sig,
        rows,
        discordant,
        failures,
        metrics: figures::read_metrics(&results.join(METRICS))?,
        costs: figures::read_costs(&results.join(COSTS))?,
    };
    let md = markdown::trial_report(&data);
    write_file(&trial_dir.join("reports").join("report.md"), md.as_bytes())
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
    let manifest_path = run_dir.join(MANIFEST);
    let bad =
        |reason: &str| ReportError::Manifest { path: manifest_path.clone(), reason: reason.into() };
    let mut manifest: serde_json::Value =
        runfiles::read_json(&manifest_path)?.ok_or_else(|| bad("the run has no trial manifest"))?;
    let entries = manifest
        .get("trials")
        .and_then(|t| t.as_array())
        .ok_or_else(|| bad("no \"trials\" list"))?;

    let mut trials = Vec::with_capacity(entries.len());
    for (i, t) in entries.iter().enumerate() {
        let text = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let slug = text("slug").ok_or_else(|| bad(&format!("trial {} has no \"slug\"", i + 1)))?;
        let path = text("path").unwrap_or_else(|| format!("{slug}/"));
        let results = run_dir.join(&path).join(runfiles::RESULTS_DIR);
        trials.push(AggTrial {
            sig: runfiles::read_json(&results.join(SIGNIFICANCE))?,
            costs: figures::read_costs(&results.join(COSTS))?,
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
            runfiles::write_json(&runfiles::result_file(&trial_dir, SIGNIFICANCE), sig)?;
            // The trial's own report states its Holm-adjusted p-value too.
            let scores_path = runfiles::result_file(&trial_dir, SCORES);
            if scores_path.exists() {
                render_trial(&trial_dir, sig.clone(), scan::scores(&scores_path)?)?;
            }
        }
    }

    if let Some(list) = manifest.get_mut("trials").and_then(|t| t.as_array_mut()) {
        for (entry, t) in list.iter_mut().zip(&trials) {
            let Some(obj) = entry.as_object_mut() else { continue };
            obj.insert("holm_p".into(), t.holm_p.into());
            // significance.json is the one headline (the paired effect and the test the
            // design calls for); the orchestrator's own figures stand only without it.
            let Some(sig) = t.sig.as_ref() else { continue };
            obj.insert("effect".into(), sig.effect.into());
            obj.insert("p_value".into(), sig.p_value.into());
        }
    }
    runfiles::write_json(&manifest_path, &manifest)?;

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
        write_file(&charts_dir.join(chart.file), chart.svg.as_bytes())?;
    }
    write_file(
        &run_dir.join("aggregate_report.md"),
        markdown::aggregate_report(&agg, &drawn).as_bytes(),
    )?;
    write_file(
        &run_dir.join("aggregate_report.html"),
        html::aggregate_report(&agg, &drawn).as_bytes(),
    )?;
    Ok(())
}
