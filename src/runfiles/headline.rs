//! The headline figures `exp diff` compares and `exp import` records, from the run files as
//! [`super::figures`] reads them (today's shape and the old scripts' alike), with what a file
//! leaves out filled in from what it states (a count correct from an accuracy, a cost per
//! correct answer from the metrics).
//!
//! Every parser takes bytes and returns the parsed artifact or a one-line reason: an artifact
//! that cannot be read is something to report, never a reason to fail the whole diff.
use std::collections::BTreeMap;

use serde::Serialize;

use super::figures;

/// One condition's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CondMetrics {
    pub n: u64,
    pub scored: u64,
    pub failed: u64,
    pub correct: f64,
    /// `correct / scored`; None when nothing was scored.
    pub accuracy: Option<f64>,
}

/// A trial's metrics, keyed by condition.
pub type Metrics = BTreeMap<String, CondMetrics>;

/// Tokens and money for one condition, or for the whole trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
    pub usd_per_correct: Option<f64>,
}

/// A trial's costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Costs {
    pub total: Cost,
    pub conditions: BTreeMap<String, Cost>,
}

/// `results/metrics.json` or the old shape (read by [`figures::parse_metrics`]), with the
/// figures a diff shows filled in where the file leaves them out. A condition with neither a
/// count correct nor an accuracy has nothing to compare and is left out.
pub fn metrics(bytes: &[u8]) -> Result<Metrics, String> {
    let file = figures::parse_metrics(bytes).map_err(|e| e.to_string())?;
    let mut out = Metrics::new();
    for (cond, m) in file.conditions {
        if m.correct.is_none() && m.accuracy.is_none() {
            continue;
        }
        let n = m.n.unwrap_or(0);
        let failed = m.failed.unwrap_or(0);
        let scored = m.scored.unwrap_or(n.saturating_sub(failed));
        let correct =
            m.correct.or_else(|| m.accuracy.map(|a| (a * scored as f64).round())).unwrap_or(0.0);
        let exact = if scored > 0 { Some(correct / scored as f64) } else { None };
        // The file's own figure wins; the exact ratio replaces it only when the file merely
        // rounded it (the old scripts wrote 4 decimals), so nothing is shown that the file
        // does not say.
        let accuracy = match (m.accuracy, exact) {
            (Some(file), Some(exact)) if (file - exact).abs() <= 5e-5 => Some(exact),
            (Some(file), _) => Some(file),
            (None, exact) => exact,
        };
        out.insert(cond, CondMetrics { n, scored, failed, correct, accuracy });
    }
    if out.is_empty() {
        return Err("no per-condition metrics in it".into());
    }
    Ok(out)
}

/// `results/costs.json` or the old shape (read by [`figures::parse_costs`]). `correct` fills
/// in the cost per correct answer when the file does not have it.
pub fn costs(bytes: &[u8], correct: Option<&Metrics>) -> Result<Costs, String> {
    let file = figures::parse_costs(bytes).map_err(|e| e.to_string())?;
    if !file.total.has_figures() && file.conditions.is_empty() {
        return Err("no tokens or USD in it".into());
    }
    let one = |c: &figures::CostLine| Cost {
        input_tokens: c.input_tokens.unwrap_or(0),
        output_tokens: c.output_tokens.unwrap_or(0),
        usd: c.usd.unwrap_or(0.0),
        usd_per_correct: c.usd_per_correct,
    };
    let conditions = file
        .conditions
        .iter()
        .filter(|(_, c)| c.has_figures())
        .map(|(cond, c)| (cond.clone(), one(c)))
        .collect();
    let mut out = Costs { total: one(&file.total), conditions };
    if let Some(m) = correct {
        for (cond, c) in &mut out.conditions {
            if c.usd_per_correct.is_none() {
                c.usd_per_correct = m.get(cond).and_then(|m| per_correct(c.usd, m.correct));
            }
        }
        if out.total.usd_per_correct.is_none() {
            out.total.usd_per_correct =
                per_correct(out.total.usd, m.values().map(|m| m.correct).sum());
        }
    }
    Ok(out)
}

fn per_correct(usd: f64, correct: f64) -> Option<f64> {
    (correct > 0.0).then(|| usd / correct)
}

/// The headline p-value of `results/significance.json`.
pub fn significance_p(bytes: &[u8]) -> Result<Option<f64>, String> {
    Ok(figures::parse_significance(bytes).map_err(|e| e.to_string())?.p_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_todays_metrics_and_the_old_shape_alike() {
        let new = br#"{"n_items": 4, "repeats": 1, "conditions": {"control": {"n": 4, "scored": 3, "failed": 1, "correct": 2.0, "accuracy": 0.6667}}}"#;
        let old = br#"{"trial": "x", "control": {"n_items": 4, "n_scored": 3, "n_failed": 1, "n_correct": 2, "accuracy": 0.6667}, "delta": 0.1}"#;
        for bytes in [&new[..], &old[..]] {
            let m = metrics(bytes).unwrap();
            let c = &m["control"];
            assert_eq!((c.n, c.scored, c.failed, c.correct), (4, 3, 1, 2.0));
            assert!((c.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
            assert_eq!(m.len(), 1, "`delta` and `trial` are not conditions");
        }
        assert_eq!(metrics(b"").unwrap_err(), "the file is empty");
        let edited = metrics(br#"{"conditions": {"control": {"n": 4, "scored": 4, "correct": 3.0, "accuracy": 0.5}}}"#).unwrap();
        assert_eq!(
            edited["control"].accuracy,
            Some(0.5),
            "the file's figure is shown, not recomputed"
        );
        assert!(metrics(b"{nope").unwrap_err().starts_with("not valid JSON"));
    }

    #[test]
    fn old_costs_get_totals_and_cost_per_correct_from_metrics() {
        let old = br#"{"control": {"prompt_tokens": 100, "completion_tokens": 4, "cost_usd": 0.5},
                       "treatment": {"prompt_tokens": 50, "completion_tokens": 2, "cost_usd": 0.25},
                       "total_cost_usd": 0.75}"#;
        let m = metrics(br#"{"control": {"n_items": 4, "n_correct": 2, "accuracy": 0.5}, "treatment": {"n_items": 4, "n_correct": 0, "accuracy": 0.0}}"#).unwrap();
        let c = costs(old, Some(&m)).unwrap();
        assert_eq!((c.total.input_tokens, c.total.output_tokens, c.total.usd), (150, 6, 0.75));
        assert_eq!(c.conditions["control"].usd_per_correct, Some(0.25));
        assert_eq!(
            c.conditions["treatment"].usd_per_correct, None,
            "nothing correct: no cost per correct"
        );
        assert_eq!(c.total.usd_per_correct, Some(0.375));
    }
}
