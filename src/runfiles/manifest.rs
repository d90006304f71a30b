//! `multi_trial_manifest.json`: every trial of the run with its parameters, status and headline
//! figures, and the run's totals (docs/RUN_FILES.md).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RunStatus;

/// One point of the decoding grid, as a trial records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decoding {
    pub temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    pub top_p: f64,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub run_id: String,
    pub status: RunStatus,
    pub trials: Vec<ManifestTrial>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestTrial {
    pub slug: String,
    pub model: String,
    pub provider: String,
    pub prompt_set: String,
    pub decoding: Decoding,
    pub status: String,
    pub path: String,
    pub metrics: BTreeMap<String, HeadlineMetrics>,
    pub effect: Option<f64>,
    pub p_value: Option<f64>,
    pub holm_p: Option<f64>,
    pub usd: f64,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadlineMetrics {
    pub n: u64,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
    /// Answers reused instead of sent (the response cache, `exp rescore`).
    #[serde(default)]
    pub reused: u64,
    #[serde(default)]
    pub usd_saved: f64,
}

/// A manifest read leniently (for commit summaries of any run, old or hand-edited): a figure
/// that is absent or not a number is `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestView {
    #[serde(default, deserialize_with = "super::lenient::list")]
    pub trials: Vec<TrialView>,
    #[serde(default, deserialize_with = "super::lenient::object")]
    pub totals: Option<TotalsView>,
}

/// One trial of a [`ManifestView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TrialView {
    #[serde(default, deserialize_with = "super::lenient::value")]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::value")]
    pub status: Option<String>,
    /// Per condition: `n` and `accuracy`.
    #[serde(default, deserialize_with = "super::lenient::map")]
    pub metrics: BTreeMap<String, FiguresView>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub effect: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub p_value: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub holm_p: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub usd: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub failures: Option<u64>,
}

/// One condition's headline of a [`TrialView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FiguresView {
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub n: Option<u64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub accuracy: Option<f64>,
}

/// The totals of a [`ManifestView`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TotalsView {
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub usd: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::count")]
    pub failures: Option<u64>,
}
