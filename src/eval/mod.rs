//! Running experiments: config, plan, prepare, build, execute, providers, score, results, and the
//! orchestrator (`runner`) that strings them together for `exp run`. Reports and statistics of a
//! finished run live in `report` (and `crate::stats`).
pub mod archive;
pub mod build;
pub mod config;
pub mod execute;
pub mod journal;
pub mod plan;
pub mod prepare;
pub mod providers;
pub mod report;
pub mod results;
pub mod runner;
pub mod score;

/// The code provenance recorded in run.json.
pub fn provenance_of(workspace: &std::path::Path) -> serde_json::Value {
    let _ = workspace;
    serde_json::json!({"git_commit": null, "dirty": false, "untracked": false, "note": "provenance not captured yet"})
}
