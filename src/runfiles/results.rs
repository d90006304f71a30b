//! `<trial>/results/metrics.json` and `costs.json` as `exp run` writes them (docs/RUN_FILES.md).
//! Readers of any run, old shapes included, use [`super::figures`].
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// `metrics.json`.
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
    /// Answers reused from earlier runs (the response cache, `exp rescore`): not sent, not
    /// paid, and not in `requests`, the token counts or `usd`.
    #[serde(default)]
    pub reused: u64,
    #[serde(default)]
    pub reused_input_tokens: u64,
    #[serde(default)]
    pub reused_output_tokens: u64,
    /// What the reused answers would have cost at the trial's prices.
    #[serde(default)]
    pub usd_saved: f64,
}

/// `costs.json`: the trial's totals at the top level, the same per condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    #[serde(flatten)]
    pub total: CostLine,
    pub conditions: BTreeMap<String, CostLine>,
    /// Conditions whose rows came from a baseline run: not paid for in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_baseline: Vec<String>,
}
