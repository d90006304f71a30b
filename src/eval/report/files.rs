//! Reading the run files the statistics and reports are computed from (docs/RUN_FILES.md), and
//! writing results atomically so a crash never leaves half a report.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ReportError;

/// `<trial>/trial.json`; every field optional so an older or partial trial still reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TrialInfo {
    pub slug: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub model_id: Option<String>,
    pub prompt_set: Option<String>,
    pub decoding: Option<serde_json::Map<String, serde_json::Value>>,
    pub repeats: Option<u64>,
    pub datasets: Vec<String>,
    pub conditions: Vec<String>,
    pub scoring: Option<serde_json::Value>,
    pub pricing: Option<serde_json::Value>,
}

/// One row of `results/per_item_scores.csv`, borrowed from the reader's record: the files of
/// a large run are streamed, never held row by row.
#[derive(Debug, Deserialize)]
pub struct ScoreLine<'a> {
    pub item_id: &'a str,
    pub dataset: &'a str,
    pub condition: &'a str,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub gold: &'a str,
    #[serde(default)]
    pub prediction: &'a str,
    #[serde(default)]
    pub score: &'a str,
    #[serde(default)]
    pub cluster: &'a str,
}

/// One row of `results/predictions.csv` (only what the report shows), borrowed.
#[derive(Debug, Deserialize)]
pub struct PredictionLine<'a> {
    pub item_id: &'a str,
    pub dataset: &'a str,
    pub condition: &'a str,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub finish_reason: &'a str,
    #[serde(default)]
    pub error: &'a str,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

/// Reads and parses a JSON file; `Ok(None)` when it does not exist.
pub fn read_json_opt<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        line: source.line(),
        source,
    })
}

/// Streams `per_item_scores.csv`, calling `each` with every row and its parsed score (`None` =
/// failed request) in file order. A score must be empty or a finite number in [0, 1]: anything
/// else is an error naming the line, because a NaN or a 7 would silently poison every figure
/// downstream. Returns the number of rows.
pub fn for_each_score(
    path: &Path,
    mut each: impl FnMut(&ScoreLine<'_>, Option<f64>),
) -> Result<u64, ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportError::MissingScores { path: path.to_path_buf() });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut rows = 0u64;
    for_each_record(path, file, |record, headers| {
        let line: ScoreLine<'_> =
            record.deserialize(headers).map_err(|source| csv_err(path, source))?;
        let text = line.score.trim();
        let score = if text.is_empty() {
            None
        } else {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Some(v),
                _ => {
                    return Err(ReportError::BadScore {
                        path: path.to_path_buf(),
                        line: rows + 2,
                        value: text.to_string(),
                    });
                }
            }
        };
        each(&line, score);
        rows += 1;
        Ok(())
    })?;
    Ok(rows)
}

/// Streams `predictions.csv` (every row is checked against its columns); an absent file has
/// no rows (the report then shows less detail).
pub fn for_each_prediction(
    path: &Path,
    mut each: impl FnMut(&PredictionLine<'_>),
) -> Result<(), ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    for_each_record(path, file, |record, headers| {
        let line: PredictionLine<'_> =
            record.deserialize(headers).map_err(|source| csv_err(path, source))?;
        each(&line);
        Ok(())
    })
}

/// Calls `each` with every record of a CSV with a header line (and the header), reusing one
/// record buffer, so memory stays constant whatever the file's size. Errors and their line
/// numbers are those of `csv::Reader::deserialize`, which this mirrors: the header is read
/// once, and a header that cannot be read leaves the rows to be matched by position, as there.
fn for_each_record(
    path: &Path,
    file: std::fs::File,
    mut each: impl FnMut(&csv::StringRecord, Option<&csv::StringRecord>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let headers = reader.headers().ok().cloned();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|source| csv_err(path, source))? {
        each(&record, headers.as_ref())?;
    }
    Ok(())
}

fn csv_err(path: &Path, source: csv::Error) -> ReportError {
    let line = source.position().map(|p| p.line());
    ReportError::Csv { path: path.to_path_buf(), line, message: source.to_string() }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so
/// readers (and a crash) see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let dir: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    // Reports are read by people and committed to the store: world-readable like any file
    // the user would create, not the 0600 a temporary file starts with.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(path))?;
    }
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// Pretty JSON with a trailing newline, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ReportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        line: 0,
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}
