//! `exp rescore REF`: a new run made of REF's answers, scored anew (other scoring, other
//! statistics and reports), without sending a request.
//!
//! Everything is read from the store (REF's commit), so it works in a clone with nothing checked
//! out. The new run folder holds byte-for-byte copies of REF's request files and journals (the
//! store keeps them once: they add no object), a config snapshot with the new scoring, and its
//! own results; its run.json says `rescored` and names REF, its costs count every answer as
//! reused, and it is committed with REF's commit as parent. A config whose requests differ from
//! REF's in anything but scoring (and statistics, execution and prices) is refused, naming the
//! changed keys: those answers were never given to that config's requests.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::archive::RunFolder;
use super::config::{self, Config, ConfigError, LoadedConfig};
use super::execute::ExecOutcome;
use super::overrides::Override;
use super::plan::{self, Condition, Trial};
use super::prepare::{Item, Prepared};
use super::runner::{self, Plan, RunError, Started};
use crate::error::Hint;
use crate::progress::Progress;
use crate::runfiles::run::RescoredFrom;
use crate::runfiles::{self, Manifest, RunJson, RunStatus};
use crate::store::{CommitOptions, Mode, ObjectId, Repo};

#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error("cannot rescore `{reference}`")]
    Store {
        reference: String,
        #[source]
        source: crate::store::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot rescore `{reference}`: {problem}")]
    Unusable { reference: String, problem: String, fix: String },
    #[error(
        "the config asks other requests than `{reference}` answered: {}",
        changes.join("; ")
    )]
    RequestsChanged { reference: String, changes: Vec<String> },
}

impl Hint for RescoreError {
    fn hint(&self) -> Option<String> {
        match self {
            RescoreError::Store { source, .. } => source.hint(),
            RescoreError::Config(e) => e.hint(),
            RescoreError::Run(e) => e.hint(),
            RescoreError::Unusable { fix, .. } => Some(fix.clone()),
            RescoreError::RequestsChanged { reference, .. } => Some(format!(
                "rescore changes scoring and statistics only: put those keys back as `{reference}` had them (`exp show {reference} config/eval_config.yaml`), or send the new requests with `exp run`"
            )),
        }
    }
}

/// What `exp rescore` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RescoreOptions {
    pub reference: String,
    /// Another config (its requests must be REF's); default: REF's own snapshot.
    pub config: Option<PathBuf>,
    pub workspace: PathBuf,
    pub overrides: Vec<Override>,
    pub run_id: Option<String>,
    pub message: Option<String>,
}

/// The new run, committed.
#[derive(Debug, Clone)]
pub struct Rescored {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub from: RescoredFrom,
    pub commit: String,
    pub manifest: Manifest,
    pub warnings: Vec<String>,
}

/// REF's commit, read through the store.
struct Source<'a> {
    repo: &'a Repo,
    commit: ObjectId,
    reference: &'a str,
}

impl Source<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, RescoreError> {
        self.repo.read_path(&self.commit, path).map_err(|e| self.unusable_read(path, e))
    }

    fn unusable_read(&self, path: &str, e: crate::store::Error) -> RescoreError {
        RescoreError::Unusable {
            reference: self.reference.to_string(),
            problem: format!("{path}: {e}"),
            fix: "rescore a run `exp run` wrote and finished (see `exp log`)".into(),
        }
    }

    /// Copies every file below `rel` into `dest/rel`, byte for byte.
    fn copy_tree(&self, rel: &str, dest: &Path) -> Result<(), RescoreError> {
        let entry =
            self.repo.lookup_path(&self.commit, rel).map_err(|e| self.unusable_read(rel, e))?;
        let mut stack = vec![(rel.to_string(), entry)];
        while let Some((path, entry)) = stack.pop() {
            if entry.mode == Mode::Tree {
                let tree =
                    self.repo.odb.read_tree(&entry.id).map_err(|e| self.unusable_read(&path, e))?;
                // Store trees hold at most two levels below a trial's inputs/ and responses/.
                if path.matches('/').count() > 4 {
                    continue;
                }
                stack.extend(tree.entries.into_iter().map(|e| (format!("{path}/{}", e.name), e)));
                continue;
            }
            let bytes =
                self.repo.odb.read_blob(&entry.id).map_err(|e| self.unusable_read(&path, e))?;
            let to = dest.join(&path);
            runfiles::atomic_write(&to, &bytes)
                .map_err(|source| RunError::Write { path: to, source })?;
        }
        Ok(())
    }
}

/// The whole of `exp rescore`: read REF, check the config, write the new run folder, score it,
/// commit it on top of REF.
pub fn rescore(opts: &RescoreOptions, progress: &dyn Progress) -> Result<Rescored, RescoreError> {
    let clock = Instant::now();
    let store_err = |source| RescoreError::Store { reference: opts.reference.clone(), source };
    let repo = Repo::discover(&opts.workspace).map_err(store_err)?;
    let (commit, _) = repo.resolve_commit(&opts.reference).map_err(store_err)?;
    let src = Source { repo: &repo, commit, reference: &opts.reference };
    let old = read_run_json(&src)?;
    let snapshot_name = PathBuf::from(format!("{}:config/eval_config.yaml", opts.reference));
    let snapshot = String::from_utf8_lossy(&src.read("config/eval_config.yaml")?).to_string();
    let theirs = config::from_snapshot(&snapshot_name, &opts.workspace, snapshot.clone(), &[])?;
    let prompts = ref_prompts(&src, &theirs.config)?;
    let (loaded, config_key) = match &opts.config {
        Some(path) => {
            let path = config::locate(path, &opts.workspace);
            let loaded = config::load_with(&path, &opts.workspace, &opts.overrides)?;
            let key = runfiles::run::config_key(&path, &opts.workspace);
            (loaded, Some(key))
        }
        None => {
            let loaded =
                config::from_snapshot(&snapshot_name, &opts.workspace, snapshot, &opts.overrides)?;
            (loaded, old.config.clone())
        }
    };
    let ours_prompts = match &opts.config {
        Some(_) => super::runner::read_prompts(&loaded)?,
        None => prompts.clone(),
    };
    let changes = request_changes(&theirs.config, &prompts, &loaded.config, &ours_prompts);
    if !changes.is_empty() {
        return Err(RescoreError::RequestsChanged { reference: opts.reference.clone(), changes });
    }
    let plan = plan_of(&src, &old, &loaded.config, prompts)?;
    let experiments = loaded.resolve(&loaded.config.paths.experiments_dir);
    let run_id = match &opts.run_id {
        Some(id) => {
            runner::check_run_id(id)?;
            id.clone()
        }
        None => runner::fresh_run_id(&experiments),
    };
    let dir = runfiles::run_dir(&experiments, &run_id);
    if dir.exists() {
        return Err(RunError::RunExists { run_id, path: dir }.into());
    }
    let from = RescoredFrom {
        reference: opts.reference.clone(),
        run: old.run_id.clone(),
        commit: commit.to_hex(),
    };
    let fingerprint = runner::fingerprint(&loaded.config, &plan.prompts, &plan.datasets);
    let rj = RunJson {
        format: 1,
        run_id: run_id.clone(),
        status: RunStatus::Running,
        started_at: runner::now(),
        finished_at: None,
        config_hash: blake3::hash(fingerprint.to_string().as_bytes()).to_hex().to_string(),
        provenance: crate::eval::provenance_of(&opts.workspace),
        exp_version: env!("CARGO_PKG_VERSION").to_string(),
        conditions: old.conditions.clone(),
        parts_per_dataset: old.parts_per_dataset,
        baseline: None,
        baseline_detail: None,
        trials: old.trials.clone(),
        datasets: old.datasets.clone(),
        resumed_at: Vec::new(),
        config: config_key,
        rescored_from: Some(from.clone()),
        name: None,
    };
    let mut run = Started { dir: dir.clone(), rj, baseline: None, warnings: Vec::new() };
    write_folder(&src, &loaded, &plan, &run)?;
    let scored = runner::score(&run, &loaded, &plan, false, clock)?;
    let outcome = ExecOutcome::default();
    let manifest = runner::finish(&mut run, &loaded.config, scored, &outcome, false, clock)?;
    run.rj.status = RunStatus::Rescored;
    runner::write_run_json(&dir, &run.rj)?;
    let options = CommitOptions {
        run_id: Some(run_id.clone()),
        message: Some(opts.message.clone().unwrap_or_else(|| {
            format!("rescore {} (run {}) with new scoring", opts.reference, old.run_id)
        })),
        parent: Some(commit),
        ..CommitOptions::default()
    };
    let describe = RunFolder::new(repo.workspace());
    let outcome = repo.commit_run(&dir, &describe, &options, progress).map_err(store_err)?;
    let mut warnings = run.warnings;
    warnings.extend(outcome.warnings);
    Ok(Rescored {
        run_id,
        run_dir: dir,
        from,
        commit: outcome.commit.map(|c| c.to_hex()).unwrap_or_default(),
        manifest,
        warnings,
    })
}

fn read_run_json(src: &Source<'_>) -> Result<RunJson, RescoreError> {
    let unusable = |problem: String| {
        RescoreError::Unusable {
        reference: src.reference.to_string(),
        problem,
        fix: "rescore a run `exp run` wrote (see `exp log`); imported legacy runs have no journals to rescore".into(),
    }
    };
    let rj: RunJson = serde_json::from_slice(&src.read("run.json")?)
        .map_err(|e| unusable(format!("run.json is not a run.json exp run writes: {e}")))?;
    if rj.baseline.is_some() {
        return Err(unusable(format!(
            "run {} took its control rows from baseline `{}`, whose answers it does not hold",
            rj.run_id,
            rj.baseline.clone().unwrap_or_default()
        )));
    }
    if rj.status == RunStatus::AwaitingOutputs {
        return Err(unusable(format!("run {} is awaiting its batch outputs", rj.run_id)));
    }
    Ok(rj)
}

/// REF's copies of the prompt files its config names, keyed by the config's paths.
fn ref_prompts(
    src: &Source<'_>,
    config: &Config,
) -> Result<BTreeMap<PathBuf, String>, RescoreError> {
    let mut out = BTreeMap::new();
    for set in config.prompt_sets.values() {
        for p in [&set.control, &set.treatment] {
            let rel = runner::snapshot_path(Path::new(""), p);
            let text = src.read(&rel.to_string_lossy())?;
            out.insert(p.clone(), String::from_utf8_lossy(&text).to_string());
        }
    }
    Ok(out)
}

/// What decides the requests: the config without scoring, statistics, execution and paths, and
/// without the model settings that change how or what a request costs, not what it asks.
fn request_view(c: &Config, prompts: &BTreeMap<PathBuf, String>) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for k in ["scoring", "significance", "execution", "paths"] {
            m.remove(k);
        }
    }
    if let Some(models) = v.get_mut("models").and_then(|m| m.as_array_mut()) {
        for m in models.iter_mut().filter_map(|m| m.as_object_mut()) {
            for k in ["max_connections", "pricing", "api_key_env", "backend"] {
                m.remove(k);
            }
        }
    }
    let prompts: BTreeMap<String, String> = prompts
        .iter()
        .map(|(p, t)| {
            (p.to_string_lossy().to_string(), blake3::hash(t.as_bytes()).to_hex().to_string())
        })
        .collect();
    serde_json::json!({"config": v, "prompts": prompts})
}

fn request_changes(
    theirs: &Config,
    their_prompts: &BTreeMap<PathBuf, String>,
    ours: &Config,
    our_prompts: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    runner::diff_fingerprints(
        &request_view(theirs, their_prompts),
        &request_view(ours, our_prompts),
    )
}

/// REF's plan as the new config sees it: its trials (which must be REF's), its datasets with
/// the items, gold answers and clusters REF scored (from its `per_item_scores.csv`, so no
/// dataset file is needed), and its jobs.
fn plan_of(
    src: &Source<'_>,
    old: &RunJson,
    config: &Config,
    prompts: BTreeMap<PathBuf, String>,
) -> Result<Plan, RescoreError> {
    let unusable = |problem: String| {
        RescoreError::Unusable {
        reference: src.reference.to_string(),
        problem,
        fix: "rescore a run whose results were written (`exp run --resume` finishes an interrupted one)".into(),
    }
    };
    let trials: Vec<Trial> = plan::trials(config);
    let slugs: Vec<String> = trials.iter().map(|t| t.slug.to_string()).collect();
    if slugs != old.trials {
        return Err(unusable(format!(
            "its trials ({}) are not the config's ({})",
            old.trials.join(", "),
            slugs.join(", ")
        )));
    }
    let first = old.trials.first().ok_or_else(|| unusable("it has no trial".into()))?;
    let scores = src.read(&format!("{first}/results/{}", runfiles::SCORES))?;
    let cond = old.conditions.first().copied().unwrap_or(Condition::Control);
    let items = items_of(&scores, cond).map_err(unusable)?;
    let mut datasets = Vec::new();
    for d in &old.datasets {
        let items = items.get(&d.name).cloned().unwrap_or_default();
        if items.len() != d.items {
            return Err(unusable(format!(
                "its results list {} items of dataset `{}`, its run.json {}",
                items.len(),
                d.name,
                d.items
            )));
        }
        datasets.push(Prepared {
            name: d.name.clone(),
            path: PathBuf::from(&d.prepared),
            hash: d.hash.clone(),
            items: Arc::new(items),
            written: false,
        });
    }
    let sizes: Vec<usize> = datasets.iter().map(|d| d.items.len()).collect();
    let jobs = plan::jobs(trials.len(), &old.conditions, &sizes, old.parts_per_dataset);
    Ok(Plan { datasets, trials, jobs, prompts })
}

/// Each dataset's items in plan order, from a trial's `per_item_scores.csv` rows of `cond`.
fn items_of(scores: &[u8], cond: Condition) -> Result<BTreeMap<String, Vec<Item>>, String> {
    let mut r = csv::Reader::from_reader(scores);
    let header = r.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("per_item_scores.csv has no `{name}` column"))
    };
    let (id, dataset, condition, repeat, gold, cluster) = (
        col("item_id")?,
        col("dataset")?,
        col("condition")?,
        col("repeat")?,
        col("gold")?,
        col("cluster")?,
    );
    let mut out: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("per_item_scores.csv: {e}"))?;
        let field = |i: usize| rec.get(i).unwrap_or_default().to_string();
        if field(condition) != cond.as_str() || field(repeat) != "0" {
            continue;
        }
        let cluster = Some(field(cluster)).filter(|c| !c.is_empty());
        out.entry(field(dataset)).or_default().push(Item {
            id: field(id),
            label: field(gold),
            cluster,
            fields: Default::default(),
        });
    }
    Ok(out)
}

/// The new run's folder before scoring: REF's request files and journals (byte for byte), the
/// config snapshot with the new scoring, each trial's trial.json, and run.json.
fn write_folder(
    src: &Source<'_>,
    loaded: &LoadedConfig,
    plan: &Plan,
    run: &Started,
) -> Result<(), RescoreError> {
    std::fs::create_dir_all(&run.dir)
        .map_err(|source| RunError::Write { path: run.dir.clone(), source })?;
    runner::snapshot_config(loaded, &plan.prompts, &run.dir)?;
    for t in &plan.trials {
        for folder in ["inputs", "responses"] {
            src.copy_tree(&format!("{}/{folder}", t.slug), &run.dir)?;
        }
        runner::write_trial_json(&run.dir, t, &loaded.config, &run.rj.conditions, &plan.datasets)?;
    }
    runner::write_run_json(&run.dir, &run.rj)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(models: &str, scoring: &str) -> Config {
        serde_yaml::from_str(&format!(
            "datasets: [{{name: d, path: d.jsonl}}]\nmodels: [{models}]\nprompt_sets: {{p: {{control: c.txt, treatment: t.txt}}}}\nuser_template: '{{text}}'\nscoring: {scoring}\n"
        ))
        .unwrap()
    }

    #[test]
    fn only_what_changes_a_request_counts_as_a_change() {
        let prompts = BTreeMap::from([(PathBuf::from("c.txt"), "x".to_string())]);
        let m = "{name: m, provider: openai, base_url: 'http://a/v1'}";
        let old = config(m, "{type: label, labels: [a, b]}");
        // Other scoring, prices and connections: the same requests.
        let priced = "{name: m, provider: openai, base_url: 'http://a/v1', max_connections: 2, pricing: {input_per_mtok: 1, output_per_mtok: 2}}";
        let new = config(priced, "{type: regex, extract: '(a)'}");
        assert!(request_changes(&old, &prompts, &new, &prompts).is_empty());
        let moved = config("{name: m, provider: openai, base_url: 'http://b/v1'}", "{type: label}");
        assert_eq!(
            request_changes(&old, &prompts, &moved, &prompts),
            ["models[0].base_url: \"http://a/v1\" -> \"http://b/v1\""]
        );
        let edited = BTreeMap::from([(PathBuf::from("c.txt"), "y".to_string())]);
        assert_eq!(
            request_changes(&old, &prompts, &old, &edited),
            ["prompt file c.txt: content changed"]
        );
    }

    #[test]
    fn items_come_from_the_first_repeat_of_one_condition_in_order() {
        let csv = "item_id,dataset,condition,repeat,gold,prediction,score,cluster\n\
                   b,d,control,0,pos,pos,1,c1\nb,d,control,1,pos,neg,0,c1\n\
                   a,d,control,0,neg,neg,1,\nb,d,treatment,0,pos,pos,1,c1\n";
        let items = items_of(csv.as_bytes(), Condition::Control).unwrap();
        let d = &items["d"];
        assert_eq!(d.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!((d[0].label.as_str(), d[0].cluster.as_deref()), ("pos", Some("c1")));
        assert_eq!(d[1].cluster, None);
        assert!(items_of(b"x,y\n1,2\n", Condition::Control).unwrap_err().contains("item_id"));
    }
}
