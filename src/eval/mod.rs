//! Running experiments: config, plan, prepare, build, execute, providers, scoring, reports.
pub mod report;
