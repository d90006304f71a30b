//! Reading a trial's `metrics.json`, `costs.json` and the headline of `significance.json` back
//! (docs/RUN_FILES.md): the one reader behind the reports, `exp diff`, `exp import` and the
//! commit summary. The shapes written are `super::results` (and `crate::stats::Significance`);
//! this module never writes.
//!
//! Tolerant by design, because it also reads what older tools wrote: today's shape and the
//! Python scripts' (`run_all.py`: conditions at the top level, `n_correct`, `prompt_tokens`,
//! `cost_usd`, `total_cost_usd`). A figure that is absent, null or not a number is `None`, never
//! an error; what to show in its place is the reader's caller's business. Only a file that is
//! empty or not JSON is an error, and it names the file and the line.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Error, Malformed, parse_json};

/// `metrics.json`: the figures as the file states them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub n_items: Option<u64>,
    pub repeats: Option<u64>,
    pub conditions: BTreeMap<String, ConditionMetrics>,
}

/// One condition's line of `metrics.json` (old names: `n_items`, `n_scored`, `n_failed`,
/// `n_correct`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConditionMetrics {
    pub n: Option<u64>,
    pub scored: Option<u64>,
    pub failed: Option<u64>,
    /// Rows never answered (an interrupted run).
    pub missing: Option<u64>,
    /// The sum of scores.
    pub correct: Option<f64>,
    pub accuracy: Option<f64>,
}

/// `costs.json`: the trial's totals and the same figures per condition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    pub total: CostLine,
    pub conditions: BTreeMap<String, CostLine>,
    /// Conditions whose rows came from a baseline run (not paid for in this run).
    pub from_baseline: Vec<String>,
}

/// One line of `costs.json` (old names: `prompt_tokens`, `completion_tokens`, `cost_usd`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostLine {
    pub requests: Option<u64>,
    pub failures: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub usage_missing: Option<u64>,
    pub usd: Option<f64>,
    pub usd_per_correct: Option<f64>,
}

impl CostLine {
    /// Whether the line has any tokens or money in it.
    pub fn has_figures(&self) -> bool {
        self.input_tokens.is_some() || self.output_tokens.is_some() || self.usd.is_some()
    }
}

/// Reads `path` as `metrics.json`; `Ok(None)` when it does not exist.
pub fn read_metrics(path: &Path) -> Result<Option<Metrics>, Error> {
    super::read_with(path, parse_metrics)
}

/// Reads `path` as `costs.json`; `Ok(None)` when it does not exist.
pub fn read_costs(path: &Path) -> Result<Option<Costs>, Error> {
    super::read_with(path, parse_costs)
}

/// `metrics.json` from its bytes: `{"n_items", "repeats", "conditions": {"control": {n,
/// scored, failed, missing, correct, accuracy}}}`, or the old `{"trial": …, "control":
/// {n_items, n_scored, n_failed, n_correct, accuracy}, "delta": …}`.
pub fn parse_metrics(bytes: &[u8]) -> Result<Metrics, Malformed> {
    let v: Value = parse_json(bytes)?;
    let line = |m: &Value| ConditionMetrics {
        n: count(m, &["n", "n_items"]),
        scored: count(m, &["scored", "n_scored"]),
        failed: count(m, &["failed", "n_failed"]),
        missing: count(m, &["missing"]),
        correct: num(m, &["correct", "n_correct"]),
        accuracy: num(m, &["accuracy"]),
    };
    let has_result =
        |m: &Value| ["accuracy", "correct", "n_correct"].iter().any(|k| m.get(*k).is_some());
    let conditions = lines(&v, has_result, line);
    Ok(Metrics { n_items: count(&v, &["n_items"]), repeats: count(&v, &["repeats"]), conditions })
}

/// `costs.json` from its bytes: the totals at the top level with a line per condition under
/// `conditions`, or the old `{"control": {prompt_tokens, completion_tokens, cost_usd}, …,
/// "total_cost_usd": …}`, whose totals are the sums of its lines (USD: `total_cost_usd`, rounded
/// as the old scripts rounded their parts).
pub fn parse_costs(bytes: &[u8]) -> Result<Costs, Malformed> {
    let v: Value = parse_json(bytes)?;
    let line = |m: &Value| CostLine {
        requests: count(m, &["requests"]),
        failures: count(m, &["failures"]),
        input_tokens: count(m, &["input_tokens", "prompt_tokens"]),
        output_tokens: count(m, &["output_tokens", "completion_tokens"]),
        usage_missing: count(m, &["usage_missing"]),
        usd: num(m, &["usd", "cost_usd", "total_cost_usd"]),
        usd_per_correct: num(m, &["usd_per_correct"]),
    };
    // Whether an object states a cost itself (the old files mixed lines and a total at one
    // level; `total_cost_usd` alone is not a line).
    let is_line = |m: &Value| {
        ["usd", "cost_usd", "input_tokens", "prompt_tokens"].iter().any(|k| m.get(*k).is_some())
    };
    let conditions = lines(&v, is_line, line);
    let total = if is_line(&v) || conditions.is_empty() {
        line(&v)
    } else {
        let sum = |f: fn(&CostLine) -> Option<u64>| {
            conditions.values().filter_map(f).reduce(|a, b| a + b)
        };
        CostLine {
            requests: sum(|c| c.requests),
            failures: sum(|c| c.failures),
            input_tokens: sum(|c| c.input_tokens),
            output_tokens: sum(|c| c.output_tokens),
            usage_missing: sum(|c| c.usage_missing),
            usd: num(&v, &["total_cost_usd"])
                .or_else(|| conditions.values().filter_map(|c| c.usd).reduce(|a, b| a + b)),
            usd_per_correct: None,
        }
    };
    let from_baseline = v
        .get("from_baseline")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Costs { total, conditions, from_baseline })
}

/// The per-condition lines: every object under today's `"conditions"`, or, in the old files
/// that kept them at the top level beside the trial's name, parameters and `delta`, the objects
/// `is_line` accepts.
fn lines<T>(
    v: &Value,
    is_line: impl Fn(&Value) -> bool,
    line: impl Fn(&Value) -> T,
) -> BTreeMap<String, T> {
    let (level, old) = match v.get("conditions").filter(|c| c.is_object()) {
        Some(conditions) => (conditions, false),
        None => (v, true),
    };
    let objects = level.as_object().into_iter().flatten().filter(|(_, m)| m.is_object());
    objects.filter(|(_, m)| !old || is_line(m)).map(|(c, m)| (c.clone(), line(m))).collect()
}

/// The first of `keys` that holds a number.
fn num(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_f64))
}

/// The first of `keys` that holds a count (`12.0` is read as 12).
fn count(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| v.get(*k).and_then(super::lenient::as_count))
}

/// The headline of `significance.json` (its whole shape is `crate::stats::Significance`): the
/// figures a summary or a diff shows, each `None` when absent or not a number.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SignificanceHeadline {
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub p_value: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub holm_p: Option<f64>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    pub effect: Option<f64>,
}

/// Reads `path` as `significance.json`'s headline; `Ok(None)` when it does not exist.
pub fn read_significance(path: &Path) -> Result<Option<SignificanceHeadline>, Error> {
    super::read_with(path, parse_significance)
}

/// `significance.json`'s headline from its bytes.
pub fn parse_significance(bytes: &[u8]) -> Result<SignificanceHeadline, Malformed> {
    Ok(super::lenient::view(parse_json(bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_todays_metrics_and_costs() {
        let m = parse_metrics(
            br#"{"n_items": 120, "repeats": 1, "conditions": {
                 "control": {"n": 120, "scored": 118, "failed": 2, "missing": 0, "correct": 84.0, "accuracy": 0.7118},
                 "treatment": {"n": 120, "scored": 0, "failed": 120, "correct": 0.0, "accuracy": null}}}"#,
        )
        .unwrap();
        assert_eq!((m.n_items, m.repeats), (Some(120), Some(1)));
        let c = &m.conditions["control"];
        assert_eq!((c.n, c.scored, c.failed, c.missing), (Some(120), Some(118), Some(2), Some(0)));
        assert_eq!((c.correct, c.accuracy), (Some(84.0), Some(0.7118)));
        assert_eq!(m.conditions["treatment"].accuracy, None, "null: nothing was scored");

        let c = parse_costs(
            br#"{"requests": 240, "failures": 2, "input_tokens": 51234, "output_tokens": 1200,
                 "usage_missing": 0, "usd": 0.0084, "usd_per_correct": 0.0000512,
                 "conditions": {"control": {"requests": 120, "failures": 1, "input_tokens": 25000,
                   "output_tokens": 600, "usage_missing": 0, "usd": 0.0041, "usd_per_correct": null}},
                 "from_baseline": ["treatment"]}"#,
        )
        .unwrap();
        let t = &c.total;
        assert_eq!(
            (t.requests, t.failures, t.input_tokens, t.output_tokens),
            (Some(240), Some(2), Some(51234), Some(1200))
        );
        assert_eq!(
            (t.usd, t.usd_per_correct, t.usage_missing),
            (Some(0.0084), Some(0.0000512), Some(0))
        );
        let l = &c.conditions["control"];
        assert_eq!((l.requests, l.usd, l.usd_per_correct), (Some(120), Some(0.0041), None));
        assert_eq!(c.from_baseline, ["treatment"]);
    }

    #[test]
    fn reads_the_old_scripts_shapes_under_todays_names() {
        let m = parse_metrics(
            br#"{"trial": "m__p__temp1.0", "model": "m", "temperature": 1.0, "config": {"seed": 1},
                 "control": {"n_items": 12, "n_scored": 12, "n_failed": 0, "n_correct": 10, "accuracy": 0.8333},
                 "treatment": {"n_items": 12, "n_scored": 11, "n_failed": 1, "n_correct": 11, "accuracy": 1.0},
                 "delta": 0.1667}"#,
        )
        .unwrap();
        assert_eq!(
            m.conditions.keys().collect::<Vec<_>>(),
            ["control", "treatment"],
            "not `config`"
        );
        let t = &m.conditions["treatment"];
        assert_eq!((t.n, t.scored, t.failed, t.correct), (Some(12), Some(11), Some(1), Some(11.0)));

        let c = parse_costs(
            br#"{"control": {"prompt_tokens": 565, "completion_tokens": 12, "cost_usd": 9.195e-05},
                 "treatment": {"prompt_tokens": 1033, "completion_tokens": 12, "cost_usd": 0.00016215},
                 "total_cost_usd": 0.0002541}"#,
        )
        .unwrap();
        let l = &c.conditions["treatment"];
        assert_eq!(
            (l.input_tokens, l.output_tokens, l.usd),
            (Some(1033), Some(12), Some(0.00016215))
        );
        let t = &c.total;
        assert_eq!((t.input_tokens, t.output_tokens), (Some(1598), Some(24)), "summed");
        assert_eq!(t.usd, Some(0.0002541), "the file's own total, not a sum of rounded parts");
        assert_eq!((t.requests, t.usd_per_correct), (None, None));
        let no_total =
            parse_costs(br#"{"control": {"cost_usd": 0.5}, "treatment": {"cost_usd": 0.25}}"#);
        assert_eq!(no_total.unwrap().total.usd, Some(0.75));
    }

    #[test]
    fn absent_null_or_odd_figures_are_none_never_an_error() {
        let m = parse_metrics(
            br#"{"conditions": {"control": {"n": 4.0, "correct": "3", "accuracy": null}, "x": 1}}"#,
        )
        .unwrap();
        assert_eq!(m.conditions.len(), 1, "only objects are conditions");
        assert_eq!(
            m.conditions["control"],
            ConditionMetrics { n: Some(4), ..Default::default() },
            "4.0 counts as 4; a string or null is no figure"
        );
        assert_eq!(m.n_items, None);
        assert_eq!(parse_metrics(b"{}").unwrap(), Metrics::default());
        assert_eq!(parse_metrics(b"[1, 2]").unwrap(), Metrics::default());

        let c = parse_costs(br#"{"usd": 0.25, "failures": 1}"#).unwrap();
        assert_eq!(c.total, CostLine { usd: Some(0.25), failures: Some(1), ..Default::default() });
        assert!(c.conditions.is_empty() && c.from_baseline.is_empty());
        let empty = parse_costs(br#"{"note": "nothing"}"#).unwrap();
        assert!(!empty.total.has_figures() && empty.conditions.is_empty());
    }

    #[test]
    fn a_damaged_or_empty_file_is_an_error_naming_it_and_an_absent_one_is_none() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("costs.json");
        assert!(read_costs(&path).unwrap().is_none());

        std::fs::write(&path, "{\n  \"usd\": oops\n}").unwrap();
        let e = read_costs(&path).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&format!("{}:2: not valid JSON (", path.display())), "{text}");
        assert!(matches!(&e, Error::Malformed { problem, .. } if problem.line() == Some(2)));

        let metrics = d.path().join("metrics.json");
        std::fs::write(&metrics, " \n").unwrap();
        let e = read_metrics(&metrics).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: the file is empty", metrics.display()));
        assert_eq!(parse_metrics(b"{nope").unwrap_err().line(), Some(1));
    }
}
