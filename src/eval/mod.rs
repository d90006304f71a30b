//! Running experiments: config, plan, prepare, build, execute, providers, score, results, and the
//! orchestrator (`runner`) that strings them together for `exp run`. Reports and statistics of a
//! finished run live in `report` (and `crate::stats`).
pub mod archive;
pub mod batch;
pub mod budget;
pub mod build;
pub mod cache;
pub mod concurrency;
pub mod config;
pub mod endpoint;
pub mod execute;
pub mod journal;
pub mod overrides;
pub mod plan;
pub mod prepare;
pub mod providers;
pub mod report;
pub mod rescore;
pub mod results;
pub mod runner;
pub mod score;
pub mod summary;

/// The code provenance recorded in run.json (git HEAD, dirty, untracked, via gix).
pub fn provenance_of(workspace: &std::path::Path) -> serde_json::Value {
    serde_json::to_value(crate::provenance::capture(workspace)).unwrap_or_default()
}
