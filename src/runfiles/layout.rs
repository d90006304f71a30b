//! Where a run keeps its files: today's layout (docs/RUN_FILES.md) and the old `run_all.py`
//! layout (`config_snapshot.yaml`, `trials/<model>__<prompt_set>__temp<T>/` holding
//! `batch_input_<condition>_partNN.jsonl`, `batch_output_…`, `predictions_<condition>.csv`,
//! `metrics.json`, `costs.json`). Finding files costs a few small directory listings; in a
//! folder that is not in today's layout, batch files elsewhere are recognized by their first
//! few KB (`super::batch`). Otherwise no file is read here ([`legacy_trial_params`] and
//! [`count_lines`] parse bytes their caller read).
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::source::{Entry, Error, Kind, Source};

/// Which layout a run folder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// docs/RUN_FILES.md
    Current,
    /// The Python scripts' `run_all.py` folders.
    Legacy,
    /// Neither: only a file diff is possible.
    Unknown,
}

/// The known files of one trial.
#[derive(Debug, Clone)]
pub struct TrialFiles {
    pub slug: String,
    /// Path of the trial folder from the run root.
    pub path: String,
    /// Path of the folder holding metrics/costs/scores (`<slug>/results`, or the trial folder).
    pub results_path: String,
    pub dir: Entry,
    pub trial_json: Option<Entry>,
    pub metrics: Option<Entry>,
    pub costs: Option<Entry>,
    pub significance: Option<Entry>,
    /// Today's `results/per_item_scores.csv`.
    pub scores: Option<Entry>,
    /// Old `predictions_<condition>.csv`, one per condition.
    pub legacy_scores: Vec<(String, Entry)>,
    /// Batch request files by condition.
    pub inputs: Vec<(String, Entry)>,
    /// Response journals / batch outputs by condition.
    pub outputs: Vec<(String, Entry)>,
    /// Parameters known from the scan (trials of batch files recognized by content); empty:
    /// they come from `trial.json` or the folder name and first request.
    pub params: BTreeMap<String, String>,
}

impl TrialFiles {
    /// The trial in folder `dir` (at `path`, results in `results_path`), no files found yet.
    pub(super) fn new(dir: &Entry, path: String, results_path: String) -> Self {
        TrialFiles {
            slug: dir.name.clone(),
            path,
            results_path,
            dir: dir.clone(),
            trial_json: None,
            metrics: None,
            costs: None,
            significance: None,
            scores: None,
            legacy_scores: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params: BTreeMap::new(),
        }
    }

    pub fn has_results(&self) -> bool {
        self.metrics.is_some() || self.scores.is_some() || !self.legacy_scores.is_empty()
    }
}

/// The known files of one run.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub layout: Layout,
    /// Path and entry of the resolved config.
    pub config: Option<(String, Entry)>,
    pub run_json: Option<Entry>,
    pub trials: Vec<TrialFiles>,
    /// Files recognized by content rather than path (batch files in a legacy folder), with
    /// their role.
    pub sniffed: Vec<(String, &'static str)>,
}

/// Top-level folders of today's layout that are never trials.
const NOT_TRIALS: &[&str] = &["config", "charts", "logs", "prompts", "trials"];

/// Finds the run's known files.
pub fn scan(src: &dyn Source) -> Result<RunFiles, Error> {
    let root = src.root();
    let top = src.list(&root)?;
    let find = |list: &[Entry], name: &str, kind: Kind| {
        list.iter().find(|e| e.name == name && e.kind == kind).cloned()
    };
    let run_json = find(&top, "run.json", Kind::File);

    let mut trials = Vec::new();
    for dir in top.iter().filter(|e| e.kind == Kind::Dir && !NOT_TRIALS.contains(&e.name.as_str()))
    {
        let inside = src.list(dir)?;
        let results = find(&inside, "results", Kind::Dir);
        let inputs = find(&inside, "inputs", Kind::Dir);
        let responses = find(&inside, "responses", Kind::Dir);
        let trial_json = find(&inside, "trial.json", Kind::File);
        if results.is_none() && inputs.is_none() && trial_json.is_none() && responses.is_none() {
            continue;
        }
        let mut t = TrialFiles::new(dir, dir.name.clone(), format!("{}/results", dir.name));
        t.trial_json = trial_json;
        if let Some(results) = results {
            let r = src.list(&results)?;
            t.metrics = find(&r, "metrics.json", Kind::File);
            t.costs = find(&r, "costs.json", Kind::File);
            t.significance = find(&r, "significance.json", Kind::File);
            t.scores = find(&r, "per_item_scores.csv", Kind::File);
        }
        t.inputs = by_condition(src, inputs.as_ref())?;
        t.outputs = by_condition(src, responses.as_ref())?;
        trials.push(t);
    }
    let config_dir = find(&top, "config", Kind::Dir);
    let mut config = match &config_dir {
        Some(d) => find(&src.list(d)?, "eval_config.yaml", Kind::File)
            .map(|e| ("config/eval_config.yaml".to_string(), e)),
        None => None,
    };
    if !trials.is_empty() || run_json.is_some() {
        return Ok(RunFiles {
            layout: Layout::Current,
            config,
            run_json,
            trials,
            sniffed: Vec::new(),
        });
    }

    if config.is_none() {
        config = ["config_snapshot.yaml", "eval_config.yaml", "config.yaml"]
            .iter()
            .find_map(|n| find(&top, n, Kind::File).map(|e| (n.to_string(), e)));
    }
    if let Some(dir) = find(&top, "trials", Kind::Dir) {
        for tdir in src.list(&dir)?.into_iter().filter(|e| e.kind == Kind::Dir) {
            let path = format!("trials/{}", tdir.name);
            let mut t = TrialFiles::new(&tdir, path.clone(), path);
            for f in src.list(&tdir)?.into_iter().filter(|e| e.kind == Kind::File) {
                match legacy_role(&f.name) {
                    Some(LegacyRole::Metrics) => t.metrics = Some(f),
                    Some(LegacyRole::Costs) => t.costs = Some(f),
                    Some(LegacyRole::Predictions(c)) => t.legacy_scores.push((c, f)),
                    Some(LegacyRole::Input(c)) => t.inputs.push((c, f)),
                    Some(LegacyRole::Output(c)) => t.outputs.push((c, f)),
                    None => {}
                }
            }
            if t.has_results() || !t.inputs.is_empty() || !t.outputs.is_empty() {
                trials.push(t);
            }
        }
    }
    let taken: Vec<String> = trials.iter().map(|t| t.slug.clone()).collect();
    let found = super::batch::find(src, config.as_ref().map(|c| &c.1), &taken)?;
    trials.extend(found.trials);
    let layout =
        if trials.is_empty() && config.is_none() { Layout::Unknown } else { Layout::Legacy };
    Ok(RunFiles { layout, config, run_json, trials, sniffed: found.roles })
}

/// `inputs/<condition>/part-NNNN.jsonl` (or `responses/…`): every part file with its condition.
fn by_condition(src: &dyn Source, dir: Option<&Entry>) -> Result<Vec<(String, Entry)>, Error> {
    let mut out = Vec::new();
    let Some(dir) = dir else { return Ok(out) };
    for cond in src.list(dir)?.into_iter().filter(|e| e.kind == Kind::Dir) {
        for part in src.list(&cond)?.into_iter().filter(|e| e.kind == Kind::File) {
            out.push((cond.name.clone(), part));
        }
    }
    Ok(out)
}

enum LegacyRole {
    Metrics,
    Costs,
    Predictions(String),
    Input(String),
    Output(String),
}

fn legacy_role(name: &str) -> Option<LegacyRole> {
    if name == "metrics.json" {
        return Some(LegacyRole::Metrics);
    }
    if name == "costs.json" {
        return Some(LegacyRole::Costs);
    }
    if let Some(c) = name.strip_prefix("predictions_").and_then(|r| r.strip_suffix(".csv")) {
        return Some(LegacyRole::Predictions(c.to_string()));
    }
    let part = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|r| r.rsplit_once("_part"))
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(c, _)| c.to_string())
    };
    if let Some(c) = part("batch_input_") {
        return Some(LegacyRole::Input(c));
    }
    part("batch_output_").map(LegacyRole::Output)
}

/// What a file in a run folder is, by its path alone (for `exp import`'s list of what it
/// recognized and what it stored without understanding).
pub fn role_of(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.split('/').collect();
    let name = *parts.last()?;
    let ext = |e: &str| name.ends_with(e);
    Some(match parts.as_slice() {
        ["run.json"] => "run metadata",
        ["multi_trial_manifest.json"] => "trial manifest",
        ["aggregate_report.md" | "aggregate_report.html"] => "aggregate report",
        ["charts", ..] if ext(".svg") => "chart",
        ["config", "eval_config.yaml"]
        | ["config_snapshot.yaml" | "eval_config.yaml" | "config.yaml"] => "config",
        ["config", "prompts", ..] | ["prompts", ..] => "prompt",
        ["logs", ..] if ext(".log") => "log",
        ["trials", _, file] => match legacy_role(file) {
            Some(LegacyRole::Metrics) => "metrics",
            Some(LegacyRole::Costs) => "costs",
            Some(LegacyRole::Predictions(_)) => "predictions",
            Some(LegacyRole::Input(_)) => "batch input",
            Some(LegacyRole::Output(_)) => "batch output",
            None if file.starts_with("batch_errors") && ext(".jsonl") => "batch errors",
            None => return None,
        },
        [_, "trial.json"] => "trial parameters",
        [_, "inputs", _, _] if ext(".jsonl") => "batch input",
        [_, "responses", _, _] if ext(".jsonl") => "response journal",
        [_, "results", "metrics.json"] => "metrics",
        [_, "results", "costs.json"] => "costs",
        [_, "results", "significance.json"] => "significance",
        [_, "results", "predictions.csv"] => "predictions",
        [_, "results", "per_item_scores.csv"] => "per-item scores",
        [_, "reports", "report.md"] => "trial report",
        _ => return None,
    })
}

/// The parameters of an old trial: `<model>__<prompt_set>__…` from its folder name and the
/// decoding settings from its first batch request line.
pub fn legacy_trial_params(slug: &str, first_request: Option<&[u8]>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut parts = slug.split("__");
    if let (Some(model), Some(prompt_set)) = (parts.next(), parts.next()) {
        out.insert("model".into(), model.to_string());
        out.insert("prompt_set".into(), prompt_set.to_string());
    }
    let line = first_request.and_then(|b| b.split(|c| *c == b'\n').next());
    if let Some(Ok(req)) = line.map(serde_json::from_slice::<Value>)
        && let Some(body) = req.get("body").and_then(Value::as_object)
    {
        out.extend(body_params(body));
    }
    out
}

/// A batch request body's settings: `model_id` and `decoding.<key>` for all but the messages.
pub(super) fn body_params(body: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in body {
        match (k.as_str(), v) {
            ("messages", _) => {}
            ("model", Value::String(s)) => {
                out.insert("model_id".into(), s.clone());
            }
            (_, Value::Object(_)) => super::trial::flatten(v, &format!("decoding.{k}"), &mut out),
            (_, Value::String(s)) => {
                out.insert(format!("decoding.{k}"), s.clone());
            }
            _ => {
                out.insert(format!("decoding.{k}"), v.to_string());
            }
        }
    }
    out
}

/// Number of complete lines (requests) in a JSONL file.
pub fn count_lines(bytes: &[u8]) -> u64 {
    bytes.split(|c| *c == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::super::source::MemSource;
    use super::*;

    #[test]
    fn finds_todays_trials_and_their_result_files() {
        let mut s = MemSource::new();
        s.insert("run.json", "{}")
            .insert("config/eval_config.yaml", "a: 1")
            .insert("charts/x.svg", "<svg/>")
            .insert("m-p-t0/trial.json", "{}")
            .insert("m-p-t0/inputs/control/part-0000.jsonl", "{}\n")
            .insert("m-p-t0/inputs/treatment/part-0000.jsonl", "{}\n")
            .insert("m-p-t0/results/metrics.json", "{}")
            .insert("m-p-t0/results/per_item_scores.csv", "");
        let r = scan(&s).unwrap();
        assert_eq!(r.layout, Layout::Current);
        assert_eq!(r.config.as_ref().map(|c| c.0.as_str()), Some("config/eval_config.yaml"));
        assert_eq!(r.trials.len(), 1);
        let t = &r.trials[0];
        assert!(
            t.trial_json.is_some()
                && t.metrics.is_some()
                && t.scores.is_some()
                && t.costs.is_none()
        );
        let conds: Vec<&str> = t.inputs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(conds, ["control", "treatment"]);
    }

    #[test]
    fn finds_old_trials_by_their_file_names() {
        let mut s = MemSource::new();
        s.insert("config_snapshot.yaml", "a: 1")
            .insert("trials/m__p__temp0.0/batch_input_control_part00.jsonl", "{}\n")
            .insert("trials/m__p__temp0.0/batch_input_treatment_part01.jsonl", "{}\n")
            .insert("trials/m__p__temp0.0/notes.txt", "x")
            .insert("trials/empty_dir_like/readme.md", "x");
        let r = scan(&s).unwrap();
        assert_eq!(r.layout, Layout::Legacy);
        assert_eq!(r.trials.len(), 1, "a folder with no run files is not a trial");
        assert!(!r.trials[0].has_results());
        assert_eq!(r.trials[0].inputs.len(), 2);
        assert_eq!(r.trials[0].inputs[1].0, "treatment");
    }

    #[test]
    fn roles_name_known_files_and_leave_the_rest_unrecognized() {
        assert_eq!(role_of("trials/x/batch_output_control_part00.jsonl"), Some("batch output"));
        assert_eq!(role_of("slug/results/per_item_scores.csv"), Some("per-item scores"));
        assert_eq!(role_of("config_snapshot.yaml"), Some("config"));
        assert_eq!(role_of("notes for Bob (final).txt"), None);
        assert_eq!(role_of(".DS_Store"), None);
        assert_eq!(role_of("trials/x/batch_input_control.jsonl"), None, "no part number");
    }

    #[test]
    fn legacy_params_come_from_the_folder_name_and_the_first_request() {
        let req = br#"{"custom_id": "a", "body": {"model": "m/x", "messages": [], "temperature": 0.0, "top_k": 50}}
{"custom_id": "b"}"#;
        let p = legacy_trial_params("gpt-oss-120b__operational_only__temp0.0", Some(req));
        assert_eq!(p["model"], "gpt-oss-120b");
        assert_eq!(p["prompt_set"], "operational_only");
        assert_eq!(p["model_id"], "m/x");
        assert_eq!(p["decoding.temperature"], "0.0");
        assert_eq!(p["decoding.top_k"], "50");
        assert_eq!(count_lines(b"a\nb\n\n"), 2);
    }
}
