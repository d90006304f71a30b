//! The compact summary a commit carries, read from a run folder's files (docs/RUN_FILES.md):
//! `multi_trial_manifest.json` when present, else each trial's `results/*.json`. Absent files
//! are fine (an empty or partial summary); malformed JSON is an error naming file and line.
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde_json::Value;

use super::error::{Error, Result};
use super::object::{ConditionSummary, Summary, TrialSummary};
use crate::eval::artifacts;

/// Read `path` as JSON; Ok(None) when it does not exist.
pub fn read_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::BadJson {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

/// A results file `eval::artifacts` could not read, as the store's error.
fn bad_file(e: artifacts::Error) -> Error {
    match e {
        artifacts::Error::Io { path, source } => Error::io(path, source),
        artifacts::Error::Malformed { path, problem } => Error::BadJson {
            line: problem.line().unwrap_or(1),
            message: match problem {
                artifacts::Malformed::Json(e) => e.to_string(),
                empty => empty.to_string(),
            },
            path,
        },
    }
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn effect(conditions: &BTreeMap<String, ConditionSummary>) -> Option<f64> {
    Some(conditions.get("treatment")?.accuracy? - conditions.get("control")?.accuracy?)
}

/// The summary of the run folder `dir`.
pub fn read_summary(dir: &Path, run_json: Option<&Value>) -> Result<Summary> {
    if let Some(manifest) = read_json(&dir.join("multi_trial_manifest.json"))? {
        return Ok(from_manifest(&manifest));
    }
    let mut slugs: Vec<String> = run_json
        .and_then(|r| r.get("trials"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if slugs.is_empty() {
        // No list: every folder holding results/ or trial.json is a trial.
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && (p.join("results").is_dir() || p.join("trial.json").is_file()) {
                    slugs.push(e.file_name().to_string_lossy().to_string());
                }
            }
        }
        slugs.sort();
    }
    let mut summary = Summary::default();
    for slug in slugs {
        if slug.contains('/') || slug.contains("..") {
            continue;
        }
        summary.trials.push(trial_from_files(&dir.join(&slug), &slug)?);
    }
    let usds: Vec<f64> = summary.trials.iter().filter_map(|t| t.usd).collect();
    if !usds.is_empty() {
        summary.usd = Some(usds.iter().sum());
    }
    let fails: Vec<u64> = summary.trials.iter().filter_map(|t| t.failures).collect();
    if !fails.is_empty() {
        summary.failures = Some(fails.iter().sum());
    }
    Ok(summary)
}

fn from_manifest(m: &Value) -> Summary {
    let mut summary = Summary::default();
    for t in m.get("trials").and_then(Value::as_array).into_iter().flatten() {
        let mut conditions = BTreeMap::new();
        if let Some(obj) = t.get("metrics").and_then(Value::as_object) {
            for (cond, v) in obj {
                conditions.insert(
                    cond.clone(),
                    ConditionSummary { n: u(v, "n"), accuracy: f(v, "accuracy") },
                );
            }
        }
        let effect_v = f(t, "effect").or_else(|| effect(&conditions));
        summary.trials.push(TrialSummary {
            slug: s(t, "slug").unwrap_or_default(),
            status: s(t, "status"),
            conditions,
            effect: effect_v,
            p_value: f(t, "p_value"),
            holm_p: f(t, "holm_p"),
            usd: f(t, "usd"),
            failures: u(t, "failures"),
        });
    }
    if let Some(totals) = m.get("totals") {
        summary.usd = f(totals, "usd");
        summary.failures = u(totals, "failures");
    }
    summary
}

fn trial_from_files(trial: &Path, slug: &str) -> Result<TrialSummary> {
    let results = trial.join("results");
    let mut t = TrialSummary { slug: slug.to_string(), ..Default::default() };
    if let Some(m) = artifacts::read_metrics(&results.join("metrics.json")).map_err(bad_file)? {
        for (cond, c) in m.conditions {
            t.conditions.insert(cond, ConditionSummary { n: c.n, accuracy: c.accuracy });
        }
    }
    t.effect = effect(&t.conditions);
    if let Some(sig) = read_json(&results.join("significance.json"))? {
        t.p_value = f(&sig, "p_value");
        t.holm_p = f(&sig, "holm_p");
        if let Some(e) = f(&sig, "effect") {
            t.effect = Some(e);
        }
    }
    if let Some(c) = artifacts::read_costs(&results.join("costs.json")).map_err(bad_file)? {
        t.usd = c.total.usd;
        t.failures = c.total.failures;
    }
    if let Some(tj) = read_json(&trial.join("trial.json"))? {
        t.status = s(&tj, "status");
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_per_trial_files_and_tolerates_absent_ones() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("slug-a/results");
        fs::create_dir_all(&r).unwrap();
        fs::write(
            r.join("metrics.json"),
            r#"{"conditions":{"control":{"n":10,"accuracy":0.5},"treatment":{"n":10,"accuracy":0.7}}}"#,
        )
        .unwrap();
        fs::write(r.join("costs.json"), r#"{"usd":0.25,"failures":1}"#).unwrap();
        let s = read_summary(d.path(), None).unwrap();
        assert_eq!(s.trials.len(), 1);
        let t = &s.trials[0];
        assert!((t.effect.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!((t.usd, t.failures, t.p_value), (Some(0.25), Some(1), None));
        assert_eq!(s.usd, Some(0.25));
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("multi_trial_manifest.json"), "{\n\"trials\": [,]}").unwrap();
        let e = read_summary(d.path(), None).unwrap_err();
        assert!(matches!(e, Error::BadJson { line: 2, .. }), "{e}");
    }
}
