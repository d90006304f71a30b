//! The run folder's format (docs/RUN_FILES.md), in one place: where every file of a run lives,
//! the typed shape of each JSON file, and streaming readers and writers of the CSVs.
//!
//! - [`layout`]: paths of today's folders and of the old `run_all.py` ones; finding a run's
//!   files in any [`source::Source`] (a folder on disk, a committed tree) without reading them.
//! - [`run`], [`trial`], [`manifest`], [`results`]: `run.json`, `trial.json`,
//!   `multi_trial_manifest.json`, `metrics.json` and `costs.json` as `exp run` writes them
//!   (serde, field order and float formatting as in the files), with lenient views of run.json
//!   and trial.json for readers of older or partial runs.
//! - [`figures`]: the tolerant reader of `metrics.json`, `costs.json` and the headline of
//!   `significance.json` (whose full shape is `crate::stats::Significance`), today's shape and
//!   the old scripts' alike.
//! - [`tables`]: `predictions.csv` and `per_item_scores.csv`, written and read a row at a time,
//!   so memory stays bounded whatever the run's size.
//!
//! `eval` writes through this module; the reports, `diff`, `import` and the commit summary read
//! through it. It knows nothing of the store, the network or the terminal, and computes nothing:
//! figures are what the files say.
mod batch;
pub mod figures;
pub mod headline;
pub mod layout;
mod lenient;
pub mod manifest;
pub mod results;
pub mod run;
pub mod source;
pub mod tables;
pub mod trial;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Hint;

pub use manifest::{Decoding, HeadlineMetrics, Manifest, ManifestTrial, Totals};
pub use run::{BaselineRecord, Condition, DatasetRecord, RunHeader, RunJson, RunStatus};
pub use trial::{TrialInfo, TrialJson};

/// `run.json`, at the top of the run folder.
pub const RUN_JSON: &str = "run.json";
/// `multi_trial_manifest.json`, at the top of the run folder.
pub const MANIFEST: &str = "multi_trial_manifest.json";
/// `<trial>/trial.json`.
pub const TRIAL_JSON: &str = "trial.json";
/// `<trial>/results/`: what scoring and the statistics wrote.
pub const RESULTS_DIR: &str = "results";
pub const METRICS: &str = "metrics.json";
pub const COSTS: &str = "costs.json";
pub const SIGNIFICANCE: &str = "significance.json";
pub const PREDICTIONS: &str = "predictions.csv";
pub const SCORES: &str = "per_item_scores.csv";
/// The resolved config, inside the run folder.
pub const CONFIG: &str = "config/eval_config.yaml";

/// A run's folder for run `run_id` under the experiments folder: `run_<ID>`.
pub fn run_dir(experiments: &Path, run_id: &str) -> PathBuf {
    experiments.join(format!("run_{run_id}"))
}

/// `<trial>/results/<name>`.
pub fn result_file(trial_dir: &Path, name: &str) -> PathBuf {
    trial_dir.join(RESULTS_DIR).join(name)
}

/// A run file that could not be read, or is not what it should be. Each names the file and,
/// where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}{}: {problem}", problem.line().map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed { path: PathBuf, problem: Malformed },
    #[error("{path}: no per-item scores to compute statistics from")]
    MissingScores { path: PathBuf },
    #[error("{path}:{line}: score {value:?} is not a number between 0 and 1")]
    BadScore { path: PathBuf, line: u64, value: String },
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Csv { path: PathBuf, line: Option<u64>, message: String },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Io { .. } => "check that the run folder exists and is readable".into(),
            Error::Write { .. } => "check the disk has space and the run folder is writable".into(),
            Error::Malformed { .. } => {
                "the JSON file is damaged: rerun with --resume to rewrite it".into()
            }
            Error::MissingScores { .. } => "the trial was not scored (no \
                results/per_item_scores.csv): finish it with `exp run --config FILE --run-id ID \
                --resume`"
                .into(),
            Error::BadScore { .. } => "each score must be empty (failed request) or a number in \
                [0, 1]: fix the scorer or the file, then rerun with --resume"
                .into(),
            Error::Csv { .. } => "the CSV does not have the columns of docs/RUN_FILES.md: rerun \
                the trial with --resume to rewrite it"
                .into(),
        })
    }
}

/// What is wrong with bytes that should hold JSON (said without the file's name, which the
/// caller knows: see [`Error::Malformed`]).
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("the file is empty")]
    Empty,
    #[error("not valid JSON ({0})")]
    Json(serde_json::Error),
}

impl Malformed {
    /// The line the JSON breaks on (1-based), when it is not simply empty.
    pub fn line(&self) -> Option<usize> {
        match self {
            Malformed::Empty => None,
            Malformed::Json(e) => Some(e.line()),
        }
    }
}

/// Parses JSON into `T`, telling an empty file (a crash before the first write, a truncated
/// copy) from a damaged one.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Malformed> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Malformed::Empty);
    }
    serde_json::from_slice(bytes).map_err(Malformed::Json)
}

/// Reads `path` as JSON of type `T`; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    read_with(path, parse_json)
}

/// Reads `path` and parses its bytes with `parse`; `Ok(None)` when it does not exist.
fn read_with<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, Malformed>,
) -> Result<Option<T>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    parse(&bytes)
        .map(Some)
        .map_err(|problem| Error::Malformed { path: path.to_path_buf(), problem })
}

/// A lenient view (see `RunHeader`) of JSON already parsed: JSON that is not an object says
/// nothing.
pub fn lenient_view<T: serde::de::DeserializeOwned + Default>(v: serde_json::Value) -> T {
    lenient::view(v)
}

/// Reads `path` as a lenient view (see `RunHeader`, `manifest::ManifestView`): valid JSON that
/// is not an object says nothing; `Ok(None)` when the file does not exist.
pub fn read_view<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<Option<T>, Error> {
    Ok(read_json::<serde_json::Value>(path)?.map(lenient::view))
}

/// Writes `value` as pretty JSON with a trailing newline (the shape of every JSON run file),
/// atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let write_err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| write_err(e.into()))?;
    text.push(b'\n');
    atomic_write(path, &text).map_err(write_err)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsync and a rename, so
/// a reader (or a crash) sees the old file or the new one, never a torn one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    // Run files are read by people and committed to the store: world-readable like any file
    // the user would create, not the 0600 a temporary file starts with.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `path` parsed as `T` and written back as `write_json` writes, next to the same file
    /// parsed as plain JSON (keys in the file's order) and written back the same way. Both
    /// parse numbers alike, so the two texts differ only where `T` orders, names, drops or
    /// formats something differently from the file. (serde_json's default float parsing can
    /// miss the last bit of a 17-digit number, so a text is not compared with the file itself.)
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(
        path: &Path,
    ) -> (String, String) {
        let typed: T = read_json(path).unwrap().unwrap();
        let plain: serde_json::Value = read_json(path).unwrap().unwrap();
        (pretty(&typed), pretty(&plain))
    }

    /// Pretty JSON with a trailing newline, as `write_json` writes it.
    fn pretty<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string_pretty(value).unwrap() + "\n"
    }

    #[test]
    fn the_typed_files_round_trip_the_recorded_runs_byte_for_byte() {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
        let mut checked = 0;
        for case in ["demo", "fixture", "baseline"] {
            let run = golden.join(case);
            let same = |path: &Path, (typed, plain): (String, String)| {
                assert_eq!(typed, plain, "{}", path.display());
            };
            same(&run.join(RUN_JSON), round_trip::<RunJson>(&run.join(RUN_JSON)));
            same(&run.join(MANIFEST), round_trip::<Manifest>(&run.join(MANIFEST)));
            for entry in std::fs::read_dir(&run).unwrap() {
                let trial = entry.unwrap().path();
                if !trial.is_dir() {
                    continue;
                }
                let file = |name: &str| result_file(&trial, name);
                same(&trial.join(TRIAL_JSON), round_trip::<TrialJson>(&trial.join(TRIAL_JSON)));
                same(&file(METRICS), round_trip::<results::Metrics>(&file(METRICS)));
                same(&file(COSTS), round_trip::<results::Costs>(&file(COSTS)));
                checked += 1;
            }
        }
        assert_eq!(checked, 6, "two trials in each recorded run");
    }
}
