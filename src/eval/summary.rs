//! The compact summary a run's commit carries (per trial and condition: n, accuracy, effect,
//! p-values, cost), read from the run folder through `crate::runfiles`:
//! `multi_trial_manifest.json` when present, else each trial's `results/*.json`. Absent files
//! are fine (an empty or partial summary); malformed JSON is an error naming file and line.
use std::collections::BTreeMap;
use std::path::Path;

use crate::runfiles::manifest::ManifestView;
use crate::runfiles::{self, RunHeader, figures};
use crate::store::{ConditionSummary, Summary, TrialSummary};

fn effect(conditions: &BTreeMap<String, ConditionSummary>) -> Option<f64> {
    Some(conditions.get("treatment")?.accuracy? - conditions.get("control")?.accuracy?)
}

/// The summary of the run folder `dir` (`header`: its run.json, which lists the trials).
pub fn read_summary(dir: &Path, header: Option<&RunHeader>) -> Result<Summary, runfiles::Error> {
    if let Some(manifest) = runfiles::read_view::<ManifestView>(&dir.join(runfiles::MANIFEST))? {
        return Ok(from_manifest(manifest));
    }
    let mut slugs: Vec<String> = header.map(|h| h.trials.clone()).unwrap_or_default();
    if slugs.is_empty() {
        // No list: every folder holding results/ or trial.json is a trial.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir()
                    && (p.join(runfiles::RESULTS_DIR).is_dir()
                        || p.join(runfiles::TRIAL_JSON).is_file())
                {
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

fn from_manifest(m: ManifestView) -> Summary {
    let mut summary = Summary::default();
    for t in m.trials {
        let conditions: BTreeMap<String, ConditionSummary> = t
            .metrics
            .into_iter()
            .map(|(cond, v)| (cond, ConditionSummary { n: v.n, accuracy: v.accuracy }))
            .collect();
        let effect_v = t.effect.or_else(|| effect(&conditions));
        summary.trials.push(TrialSummary {
            slug: t.slug.unwrap_or_default(),
            status: t.status,
            conditions,
            effect: effect_v,
            p_value: t.p_value,
            holm_p: t.holm_p,
            usd: t.usd,
            failures: t.failures,
        });
    }
    if let Some(totals) = m.totals {
        summary.usd = totals.usd;
        summary.failures = totals.failures;
    }
    summary
}

fn trial_from_files(trial: &Path, slug: &str) -> Result<TrialSummary, runfiles::Error> {
    let mut t = TrialSummary { slug: slug.to_string(), ..Default::default() };
    if let Some(m) = figures::read_metrics(&runfiles::result_file(trial, runfiles::METRICS))? {
        for (cond, c) in m.conditions {
            t.conditions.insert(cond, ConditionSummary { n: c.n, accuracy: c.accuracy });
        }
    }
    t.effect = effect(&t.conditions);
    let sig = runfiles::result_file(trial, runfiles::SIGNIFICANCE);
    if let Some(sig) = figures::read_significance(&sig)? {
        t.p_value = sig.p_value;
        t.holm_p = sig.holm_p;
        // significance.json's effect is the paired one; where it has none (no item scored in
        // both conditions) the difference of accuracies must not stand in for it.
        t.effect = sig.effect;
    }
    if let Some(c) = figures::read_costs(&runfiles::result_file(trial, runfiles::COSTS))? {
        t.usd = c.total.usd;
        t.failures = c.total.failures;
    }
    let trial_json: Option<serde_json::Value> =
        runfiles::read_json(&trial.join(runfiles::TRIAL_JSON))?;
    t.status = trial_json.and_then(|v| v.get("status")?.as_str().map(str::to_string));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
        assert!(
            matches!(&e, runfiles::Error::Malformed { problem, .. } if problem.line() == Some(2)),
            "{e}"
        );
    }

    #[test]
    fn a_manifest_is_read_leniently_entry_by_entry() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("multi_trial_manifest.json"),
            r#"{"trials": [{"slug": "a", "metrics": {"control": {"n": 4.0, "accuracy": 0.5},
                "treatment": {"n": 4, "accuracy": 0.75}, "odd": 3}, "usd": "x"}, 7],
                "totals": {"usd": 0.5, "failures": 2}}"#,
        )
        .unwrap();
        let s = read_summary(d.path(), None).unwrap();
        assert_eq!(s.trials.len(), 2, "an entry that is no object is an empty trial");
        let a = &s.trials[0];
        assert_eq!(a.conditions["control"].n, Some(4));
        assert_eq!(a.conditions["odd"].n, None, "a condition that is no object has no figures");
        assert_eq!((a.effect, a.usd), (Some(0.25), None));
        assert_eq!((s.usd, s.failures), (Some(0.5), Some(2)));
    }
}
