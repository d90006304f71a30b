//! `<trial>/trial.json`: one cell of the trial matrix, its parameters as the run resolved them
//! (docs/RUN_FILES.md).
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Condition, Decoding};

/// `trial.json` as `exp run` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialJson {
    pub slug: String,
    pub model: String,
    pub provider: String,
    /// The model string the API is sent.
    pub model_id: String,
    pub prompt_set: String,
    pub prompts: TrialPrompts,
    pub decoding: Decoding,
    pub repeats: u32,
    pub datasets: Vec<String>,
    pub conditions: Vec<Condition>,
    pub scoring: TrialScoring,
    pub pricing: Option<TrialPricing>,
}

/// The prompt files of the trial's prompt set, as the config names them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialPrompts {
    pub control: PathBuf,
    pub treatment: PathBuf,
}

/// How answers were scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialScoring {
    /// `label`, `exact` or `regex`.
    #[serde(rename = "type")]
    pub kind: String,
    pub labels: Vec<String>,
    pub extract: Option<String>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TrialPricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Any `trial.json` as the reports read it: every field optional, so an older or partial trial
/// still reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TrialInfo {
    pub slug: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub model_id: Option<String>,
    pub prompt_set: Option<String>,
    pub decoding: Option<serde_json::Map<String, Value>>,
    pub repeats: Option<u64>,
    pub datasets: Vec<String>,
    pub conditions: Vec<String>,
    pub scoring: Option<Value>,
    pub pricing: Option<Value>,
}

/// The parameters of a trial from its `trial.json`, flattened (`model`, `prompt_set`,
/// `decoding.temperature`, …), its slug left out.
pub fn params(trial_json: &[u8]) -> Result<BTreeMap<String, String>, super::Malformed> {
    let v: Value = super::parse_json(trial_json)?;
    let mut out = BTreeMap::new();
    flatten(&v, "", &mut out);
    out.remove("slug");
    Ok(out)
}

/// Flattens a JSON object into `a.b.c -> value` pairs (values rendered compactly).
pub fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &key, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}
