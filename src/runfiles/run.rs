//! `run.json`: what the run is, its status and what it ran on (docs/RUN_FILES.md).
use std::fmt;

use serde::{Deserialize, Serialize};

use super::lenient;

/// Which system prompt of a prompt set a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Control,
    Treatment,
}

impl Condition {
    pub const BOTH: [Condition; 2] = [Condition::Control, Condition::Treatment];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Control => "control",
            Condition::Treatment => "treatment",
        }
    }

    pub fn parse(s: &str) -> Option<Condition> {
        match s {
            "control" => Some(Condition::Control),
            "treatment" => Some(Condition::Treatment),
            _ => None,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Incomplete,
    Failed,
    /// `exp run --backend files` wrote the batch input files; `exp ingest` completes the run.
    #[serde(rename = "awaiting_outputs")]
    AwaitingOutputs,
    /// Made by `exp rescore` from another run's answers: nothing was sent.
    Rescored,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Failed => "failed",
            RunStatus::AwaitingOutputs => "awaiting_outputs",
            RunStatus::Rescored => "rescored",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub items: usize,
    pub hash: String,
    pub prepared: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineRecord {
    pub reference: String,
    pub commit: String,
    pub condition: Condition,
    /// Trials the baseline had no results for: they hold treatment rows only.
    pub missing_trials: Vec<String>,
}

/// `run.json` as `exp run` writes it (and reads it back to resume).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunJson {
    pub format: u32,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub config_hash: String,
    pub provenance: serde_json::Value,
    pub exp_version: String,
    pub conditions: Vec<Condition>,
    pub parts_per_dataset: usize,
    pub baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_detail: Option<BaselineRecord>,
    pub trials: Vec<String>,
    #[serde(default)]
    pub datasets: Vec<DatasetRecord>,
    /// Every time this run was resumed.
    #[serde(default)]
    pub resumed_at: Vec<String>,
    /// The config file the run was started with, as given (relative to the workspace):
    /// `--resume` without `--run-id` picks only runs of the same config. Older run.json files
    /// lack it; their runs match any config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `exp rescore`: the run whose answers this run scored anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescored_from: Option<RescoredFrom>,
    /// `exp run --name`: a label beside the id (the id stays the run's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The run `exp rescore` took the answers from: as named, its run id, and its commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RescoredFrom {
    pub reference: String,
    pub run: String,
    pub commit: String,
}

/// How `run.json` records a config file: as given, relative to the workspace when it lies in it,
/// without `.` segments, so `./config/a.yaml` and `config/a.yaml` are one config.
pub fn config_key(config: &std::path::Path, workspace: &std::path::Path) -> String {
    let rel = config.strip_prefix(workspace).unwrap_or(config);
    rel.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect::<std::path::PathBuf>()
        .to_string_lossy()
        .into_owned()
}

/// What any `run.json` says about its run, read leniently for commits and imports: a field that
/// is absent or of another type (an older tool's file, a hand-written one) is `None`, never an
/// error, and the rest is still read. `message` and `tag` are set by hand or by older tools.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunHeader {
    #[serde(default, deserialize_with = "lenient::value")]
    pub run_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::value")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::value")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient::value")]
    pub tag: Option<String>,
    #[serde(default, deserialize_with = "lenient::value")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::value")]
    pub config_hash: Option<String>,
    /// Kept as JSON: its reader decides what it must hold.
    #[serde(default)]
    pub provenance: Option<serde_json::Value>,
    /// The trial slugs listed; entries that are not strings are left out.
    #[serde(default, deserialize_with = "lenient::strings")]
    pub trials: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_workspace_relative_without_dot_segments() {
        let ws = std::path::Path::new("/w");
        assert_eq!(config_key("./config/a.yaml".as_ref(), ws), "config/a.yaml");
        assert_eq!(config_key("/w/config/./a.yaml".as_ref(), ws), "config/a.yaml");
        assert_eq!(config_key("/elsewhere/a.yaml".as_ref(), ws), "/elsewhere/a.yaml");
    }

    #[test]
    fn the_header_reads_what_it_can_and_skips_what_it_cannot() {
        let h: RunHeader = serde_json::from_str(
            r#"{"run_id": "r1", "status": 3, "message": "m", "trials": ["a", 7, "b"],
                "provenance": null, "extra": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!((h.run_id.as_deref(), h.status), (Some("r1"), None));
        assert_eq!((h.message.as_deref(), h.tag), (Some("m"), None));
        assert_eq!(h.trials, ["a", "b"]);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("run.json");
        assert!(crate::runfiles::read_view::<RunHeader>(&path).unwrap().is_none());
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(crate::runfiles::read_view::<RunHeader>(&path).unwrap().unwrap().run_id.is_none());
        std::fs::write(&path, "{\n \"status\": \"runn").unwrap();
        let e = crate::runfiles::read_view::<RunHeader>(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2: not valid JSON", path.display())), "{e}");
    }
}
