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
    /// The part of `output_tokens` reasoning models spent thinking (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    pub usd: f64,
    /// The part of `usd` those reasoning tokens cost (billed as output tokens).
    #[serde(default, skip_serializing_if = "is_zero_usd")]
    pub reasoning_usd: f64,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_usd(x: &f64) -> bool {
    *x == 0.0
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
    /// How the trial's model endpoint was used over every `exp run` of the run (its replicas and
    /// concurrency; shared by every trial of that model); absent for the sim model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointUse>,
}

/// One model endpoint over one `exp run` invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointUse {
    /// The model's name in the config.
    pub model: String,
    /// Why the run stopped: every replica was down (README "More than one endpoint").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    pub replicas: Vec<ReplicaUse>,
    pub concurrency: ConcurrencyUse,
}

impl EndpointUse {
    /// `self` followed by a `later` invocation of the same run (a resume): counts add up, peaks
    /// keep the higher, the limit and whether it is down are the later one's.
    pub fn add(&mut self, later: &EndpointUse) {
        for r in &later.replicas {
            match self.replicas.iter_mut().find(|mine| mine.url == r.url) {
                Some(mine) => {
                    mine.requests += r.requests;
                    mine.errors += r.errors;
                    mine.rests += r.rests;
                }
                None => self.replicas.push(r.clone()),
            }
        }
        let (c, l) = (&mut self.concurrency, &later.concurrency);
        c.peak = c.peak.max(l.peak);
        c.in_flight_peak = c.in_flight_peak.max(l.in_flight_peak);
        c.decreases += l.decreases;
        (c.mode, c.limit, c.ceiling) = (l.mode.clone(), l.limit, l.ceiling);
        (self.model, self.down) = (later.model.clone(), later.down.clone());
    }
}

/// One replica (`base_url` entry): attempts sent to it, attempts that failed (any error, a
/// retried one included), and times it was rested after refusing connections or timing out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaUse {
    pub url: String,
    pub requests: u64,
    pub errors: u64,
    pub rests: u64,
}

/// Requests in flight to the model: `fixed` (`max_connections: N`, then `limit` = `peak` = N)
/// or `auto` (AIMD between 1 and `ceiling`: `peak` is the highest limit reached, `limit` the
/// one at the end, `decreases` how often a 429/503 halved it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyUse {
    pub mode: String,
    pub limit: usize,
    pub peak: usize,
    pub ceiling: usize,
    pub decreases: u64,
    /// The most requests that were in flight at once.
    pub in_flight_peak: usize,
}
