//! The orchestrator behind `exp run`, and the resume of an unfinished run. [`run`] reads as its
//! pipeline, one function per stage with explicit inputs and outputs: `load` (config, command
//! line, which run) -> `prepare_and_plan` (datasets, trial matrix, jobs, prompts) -> `dry_run`
//! stops here -> `start` (the run folder, new or resumed; the baseline) -> `build_requests` ->
//! `queue` (what is still to send) -> `reuse` (answers the response cache has, `cache`) ->
//! `execute::execute` (within the budget, `budget`) -> `score` (results and trial reports)
//! -> `record_endpoints` (replicas and concurrency into costs.json) -> `finish` (manifest,
//! aggregate report, run.json). Committing it is `archive`'s job.
//!
//! It owns the run folder's life cycle: `run.json` says `running` from the first write until the
//! end, then `complete`, `incomplete` (stopped; resumable) or `failed`. A resume recomputes the
//! config fingerprint (resolved config, prompt file contents, prepared dataset hashes) and refuses
//! to continue a run whose inputs changed, listing what changed, because mixing answers to two
//! different experiments in one run would make its statistics meaningless.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use super::batch::{self, BatchError, BatchJob};
use super::budget::Budget;
use super::build::{self, RequestLine};
use super::cache::{self, CacheError};
use super::config::{self, Backend, Config, ConfigError, LoadedConfig, ProviderKind};
use super::endpoint;
use super::execute::{self, ExecJob, ExecModel, ExecOutcome, ExecSettings, ExecuteError};
use super::journal::{self, Status};
use super::plan::{self, Condition, Job, Trial};
use super::prepare::{self, PrepareError, Prepared};
use super::providers::{Provider, ProviderError};
use super::report::{self, SignificanceSettings};
use super::results::{self, BaselineRows, ResultJob, ResultsError};
use super::score::Scorer;
use crate::error::Hint;
use crate::progress::Progress;
use crate::runfiles::results::EndpointUse;
use crate::runfiles::{self, TrialJson};
pub use crate::runfiles::{
    BaselineRecord, DatasetRecord, HeadlineMetrics, Manifest, ManifestTrial, RunJson, RunStatus,
    Totals, run_dir,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error(transparent)]
    Files(#[from] runfiles::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {problem}")]
    Read { path: PathBuf, problem: String },
    #[error("run `{run_id}` already exists at {path}")]
    RunExists { run_id: String, path: PathBuf },
    #[error("run `{run_id}` does not exist (no {path})")]
    NoSuchRun { run_id: String, path: PathBuf },
    #[error(
        "no unfinished run and no run with failed requests to resume in {dir} for config {config}"
    )]
    NothingToResume { dir: PathBuf, config: String },
    #[error("run `{run_id}` is already complete, with no failed request to retry")]
    AlreadyComplete { run_id: String },
    #[error("the config changed since run `{run_id}` started: {}", changes.join("; "))]
    ConfigChanged { run_id: String, changes: Vec<String> },
    #[error("`{value}` is not a valid run id")]
    BadRunId { value: String },
    #[error("`{value}` is not a valid run name")]
    BadRunName { value: String },
    #[error("{what}")]
    Usage { what: String, fix: String },
    #[error("{path}: {problem}")]
    Template { path: PathBuf, problem: String },
    #[error("--skip-build: {path} was never built")]
    NotBuilt { path: PathBuf },
    #[error("baseline `{reference}`: {problem}")]
    Baseline { reference: String, problem: String },
    #[error("cannot open baseline `{reference}`")]
    BaselineOpen {
        reference: String,
        #[source]
        source: crate::store::Error,
    },
    #[error("run `{run_id}` is being run by another exp process (pid {pid})")]
    Locked { run_id: String, pid: u32 },
}

impl Hint for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::Config(e) => e.hint(),
            RunError::Prepare(e) => e.hint(),
            RunError::Provider(e) => e.hint(),
            RunError::Execute(e) => e.hint(),
            RunError::Results(e) => e.hint(),
            RunError::Cache(e) => e.hint(),
            RunError::Batch(e) => e.hint(),
            RunError::Report(e) => e.hint(),
            RunError::Files(e) => e.hint(),
            RunError::Write { .. } => Some("check the disk has space and the folder is writable".into()),
            RunError::Read { .. } => Some("the run folder is damaged; start a new run".into()),
            RunError::RunExists { run_id, .. } => Some(format!(
                "continue it with `exp run --resume --run-id {run_id}`, or choose another --run-id"
            )),
            RunError::NoSuchRun { .. } => Some("check the id: runs live in experiments/run_<ID>/".into()),
            RunError::NothingToResume { .. } => {
                Some("every run there is complete: start a new one without --resume".into())
            }
            RunError::AlreadyComplete { .. } => {
                Some("start a new run (without --resume), or commit this one with `exp commit`".into())
            }
            RunError::ConfigChanged { .. } => Some(
                "restore the old config (the run keeps a copy in its config/ folder), or start a new run without --resume"
                    .into(),
            ),
            RunError::BadRunId { .. } => {
                Some("use letters, digits, '.', '_' and '-' only, e.g. --run-id 20251127-demo".into())
            }
            RunError::BadRunName { .. } => Some(
                "a name is a label like an id: letters, digits, '.', '_' and '-', e.g. --name warmer-prompt (put prose in -m)".into(),
            ),
            RunError::Usage { fix, .. } => Some(fix.clone()),
            RunError::Template { .. } => Some(
                "user_template may only use fields every row has ({input} is the input field)".into(),
            ),
            RunError::NotBuilt { .. } => {
                Some("run without --skip-build so the request files are built".into())
            }
            RunError::Baseline { .. } => {
                Some("pick a baseline from `exp log` that ran the same trials, or drop --baseline".into())
            }
            // The store's own error has the better hint.
            RunError::BaselineOpen { source, .. } => source.hint(),
            RunError::Locked { pid, .. } => Some(format!(
                "wait for it to finish, or stop it (kill {pid}) and resume with `exp run --resume`"
            )),
        }
    }
}

/// What `exp run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Relative paths in the config resolve here.
    pub workspace: PathBuf,
    pub run_id: Option<String>,
    /// `None`: both (or, on resume, what the run was started with).
    pub condition: Option<Condition>,
    pub parts_per_dataset: Option<usize>,
    pub max_concurrent_jobs: Option<usize>,
    pub resume: bool,
    pub skip_prepare: bool,
    pub skip_build: bool,
    pub baseline: Option<String>,
    pub dry_run: bool,
    pub stop_on_ctrl_c: bool,
    /// `-S KEY=VALUE` overrides, applied to the config before it is validated.
    pub overrides: Vec<super::overrides::Override>,
    /// `--no-cache`: `execution.cache: off` for this run.
    pub no_cache: bool,
    /// `--max-usd`: `execution.max_usd` for this run.
    pub max_usd: Option<f64>,
    /// `--backend files`: write batch input files and stop, awaiting their outputs.
    pub backend_files: bool,
    /// `exp ingest`: these batch output files answer the run's requests; nothing is sent.
    pub ingest: Vec<PathBuf>,
    /// `--name`: a label for the run beside its id, kept in run.json and its commits.
    pub name: Option<String>,
}

/// Reads files of a baseline run (from the store); `Ok(None)` when the path does not exist.
pub trait BaselineSource {
    /// The commit the reference resolved to, for the record.
    fn commit(&self) -> String;
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
}

/// Opens a baseline by reference (`archive::open_baseline` does it with the store).
pub type OpenBaseline<'a> =
    &'a dyn Fn(&str) -> Result<Box<dyn BaselineSource>, crate::store::Error>;

/// What a finished (or stopped) run reports back.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub status: RunStatus,
    pub resumed: bool,
    /// Requests answered in an earlier invocation (resume).
    pub already_done: u64,
    pub outcome: ExecOutcome,
    /// Answers reused from earlier runs instead of sent (the response cache).
    pub reused: u64,
    pub manifest: Manifest,
    pub datasets: Vec<(String, usize, bool)>,
    pub warnings: Vec<String>,
    /// `--backend files`: the batch input files written, awaiting their outputs.
    pub batch_files: Vec<batch::chunks::Chunk>,
    /// `exp ingest`: what the output files held.
    pub ingested: Option<batch::ingest::Ingested>,
}

/// `--dry-run`: the plan and what it would cost, with nothing written or sent.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// `--run-id`, or the run a `--resume` would continue; a new run without `--run-id` gets
    /// its id (its start time) only when it starts.
    pub run_id: Option<String>,
    /// The run's folder, when its id is known.
    pub run_dir: Option<PathBuf>,
    pub conditions: Vec<Condition>,
    pub parts_per_dataset: usize,
    pub trials: Vec<DryTrial>,
    pub totals: DryTotals,
    pub unpriced_models: Vec<String>,
    /// `execution.max_usd`, to set against `totals.max_usd`.
    pub max_usd: Option<f64>,
}

/// The plan's sums over its trials.
#[derive(Debug, Clone, Serialize)]
pub struct DryTotals {
    pub jobs: usize,
    pub requests: u64,
    pub est_input_tokens: u64,
    pub max_output_tokens: u64,
    pub est_input_usd: f64,
    pub max_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryTrial {
    pub slug: String,
    pub model: String,
    pub provider: String,
    pub jobs: usize,
    pub requests: u64,
    pub est_input_tokens: u64,
    pub max_output_tokens: u64,
    pub est_input_usd: f64,
    pub max_usd: f64,
}

pub enum Outcome {
    Planned(DryRun),
    Ran(RunSummary),
}

/// The whole of `exp run`, one stage after another, each taking what the earlier ones produced.
/// Committing the run (`--archive`) is the caller's next step (`archive::commit_run`).
pub fn run(
    opts: &RunOptions,
    open_baseline: OpenBaseline<'_>,
    progress: &dyn Progress,
) -> Result<Outcome, RunError> {
    let setup = load(opts)?;
    let mut plan = prepare_and_plan(opts, &setup)?;
    let users = render_users(&setup.loaded, &plan.datasets)?;
    if opts.dry_run {
        return Ok(Outcome::Planned(dry_run(opts, &setup, &plan, &users)));
    }
    keep_item_keys(&mut plan.datasets);
    let mut run = start(opts, &setup, &plan, open_baseline)?;
    let _lock = RunLock::take(&run.dir, &run.rj.run_id)?;
    write_run_json(&run.dir, &run.rj)?;
    // Stage timings go to the log (`EXP_LOG=info`), for finding where a slow run spends its time.
    let clock = Instant::now();
    tracing::info!(elapsed_ms = ms(clock), "prepared; building");
    build_requests(opts, &setup, &plan, users, &run.dir, progress)?;
    release_freed_memory();
    let mut queue = queue(&setup.loaded.config, &plan, &run.dir)?;
    let already_done = queue.already_done;
    // Answers the cache has are journaled first, so batch files and the live queue skip them.
    let reused =
        if opts.ingest.is_empty() { reuse(&setup, &plan, &mut queue, progress)? } else { 0 };
    let batch_jobs = take_batch_jobs(opts, &plan, &mut queue);
    tracing::info!(elapsed_ms = ms(clock), pending = queue.pending, reused, "built; sending");
    let delivered = match deliver(opts, &setup.loaded.config, queue, &batch_jobs, &run, progress) {
        Ok(delivered) => delivered,
        // Output files that cannot be ingested leave the run as it was: nothing was journaled.
        Err(err) if !opts.ingest.is_empty() => {
            if let Some(previous) = &setup.previous {
                write_run_json(&run.dir, previous)?;
            }
            return Err(err);
        }
        Err(err) => return Err(run.fail(err)),
    };
    let (outcome, ingested) = match delivered {
        Delivered::Answers(outcome, ingested) => (outcome, ingested),
        Delivered::Files(chunks) => {
            return Ok(Outcome::Ran(await_outputs(run, &plan, chunks, reused)?));
        }
    };
    if let Some(i) = &ingested {
        run.warnings.extend(i.warnings.iter().cloned());
    }
    let batched = !opts.ingest.is_empty();
    let earlier = earlier_endpoints(&run.dir, &plan);
    let scored = score(&run, &setup.loaded, &plan, batched, clock)?;
    record_endpoints(&run.dir, &plan, &outcome, earlier)?;
    let manifest = finish(&mut run, &setup.loaded.config, scored, &outcome, batched, clock)?;
    Ok(Outcome::Ran(RunSummary {
        run_id: run.rj.run_id.clone(),
        run_dir: run.dir,
        status: run.rj.status,
        resumed: !run.rj.resumed_at.is_empty(),
        already_done,
        outcome,
        reused,
        manifest,
        datasets: dataset_counts(&plan),
        warnings: run.warnings,
        batch_files: Vec::new(),
        ingested,
    }))
}

/// What the delivery stage got: answers (live, from batches, or ingested), or, in file mode,
/// the batch input files written for someone else to run.
enum Delivered {
    Answers(ExecOutcome, Option<batch::ingest::Ingested>),
    Files(Vec<batch::chunks::Chunk>),
}

/// Stage `deliver`: the live requests through `execute`, then, by how the run is delivered,
/// file mode's batch input files, `exp ingest`'s output files, or the Batch API backend.
fn deliver(
    opts: &RunOptions,
    config: &Config,
    queue: Queue,
    batch_jobs: &[BatchJob],
    run: &Started,
    progress: &dyn Progress,
) -> Result<Delivered, RunError> {
    let e = &config.execution;
    let limits = batch::Limits { max_requests: e.batch_max_requests, max_bytes: e.batch_max_bytes };
    if opts.backend_files {
        return Ok(Delivered::Files(batch::files::write(&run.dir, batch_jobs, limits)?));
    }
    if !opts.ingest.is_empty() {
        let i = batch::ingest::ingest(
            &run.rj.run_id,
            &opts.ingest,
            batch_jobs,
            e.max_response_bytes,
            e.fsync,
        )?;
        let outcome = ExecOutcome {
            sent: 0,
            responses: i.journaled - i.failures,
            failures: i.failures,
            ..ExecOutcome::default()
        };
        return Ok(Delivered::Answers(outcome, Some(i)));
    }
    let mut outcome = ExecOutcome::default();
    // One budget for live and batched requests.
    let budget = e.max_usd.map(|cap| Arc::new(Budget::new(cap, queue.spent)));
    if !queue.jobs.is_empty() {
        let models = exec_models(config)?;
        let mut settings = exec_settings(opts, config);
        settings.budget = budget.clone();
        outcome = execute::execute(queue.jobs, models, &settings, queue.pending, progress)?;
    }
    if !batch_jobs.is_empty() && !outcome.interrupted {
        let settings = batch::backend::Settings {
            poll: Duration::from_secs_f64(e.batch_poll_s),
            limits,
            max_retries: e.max_retries,
            timeout: Duration::from_secs_f64(e.timeout_s),
            max_response_bytes: e.max_response_bytes,
            fsync: e.fsync,
            stop_on_ctrl_c: opts.stop_on_ctrl_c,
            budget: budget.clone(),
        };
        let b = batch::backend::run(&run.dir, batch_jobs, &config.models, &settings, progress)?;
        outcome.sent += b.journaled;
        outcome.responses += b.journaled - b.failures;
        outcome.failures += b.failures;
        outcome.interrupted |= b.interrupted;
        outcome.budget_stopped |= b.budget_stopped;
        outcome.budget = budget.map(|b| (b.cap(), b.spent()));
    }
    Ok(Delivered::Answers(outcome, None))
}

/// Each dataset's name, item count and whether it was prepared now, for the summary.
fn dataset_counts(plan: &Plan) -> Vec<(String, usize, bool)> {
    plan.datasets.iter().map(|d| (d.name.clone(), d.items.len(), d.written)).collect()
}

/// Jobs delivered through batch files, taken out of the live queue: every job in file mode and
/// for `exp ingest`, else those of models with `backend: batch`.
fn take_batch_jobs(opts: &RunOptions, plan: &Plan, queue: &mut Queue) -> Vec<BatchJob> {
    let all = opts.backend_files || !opts.ingest.is_empty();
    let mut out = Vec::new();
    for (job, ej) in plan.jobs.iter().zip(std::mem::take(&mut queue.jobs)) {
        let trial = &plan.trials[job.trial];
        if !all && trial.model.backend != Backend::Batch {
            queue.jobs.push(ej);
            continue;
        }
        let expected = (ej.end - ej.start) as u64 * u64::from(ej.repeats);
        queue.pending -= expected.saturating_sub(ej.done.len() as u64);
        out.push(BatchJob {
            slug: trial.slug.to_string(),
            model: trial.model.name.clone(),
            inputs: ej.inputs,
            journal: ej.journal,
            done: ej.done,
        });
    }
    out
}

/// File mode's end: run.json says the run awaits the outputs of the batch files just written.
fn await_outputs(
    mut run: Started,
    plan: &Plan,
    chunks: Vec<batch::chunks::Chunk>,
    reused: u64,
) -> Result<RunSummary, RunError> {
    run.rj.status = RunStatus::AwaitingOutputs;
    write_run_json(&run.dir, &run.rj)?;
    Ok(RunSummary {
        run_id: run.rj.run_id.clone(),
        manifest: Manifest {
            format: 1,
            run_id: run.rj.run_id.clone(),
            status: RunStatus::AwaitingOutputs,
            trials: Vec::new(),
            totals: Totals::default(),
        },
        run_dir: run.dir,
        status: RunStatus::AwaitingOutputs,
        resumed: !run.rj.resumed_at.is_empty(),
        already_done: 0,
        outcome: ExecOutcome::default(),
        reused,
        datasets: dataset_counts(plan),
        warnings: run.warnings,
        batch_files: chunks,
        ingested: None,
    })
}

/// Stage `load`'s output: the config with the command line applied, and which run this is.
struct Setup {
    loaded: LoadedConfig,
    experiments: PathBuf,
    /// The config's path relative to the workspace, recorded in run.json so `--resume` picks
    /// a run of this config.
    config_key: String,
    /// The run being resumed, as its run.json was before this invocation.
    previous: Option<RunJson>,
    conditions: Vec<Condition>,
    /// The run to take control rows from (`--baseline`, or the resumed run's).
    baseline: Option<String>,
}

/// Stages `prepare` and `plan`: what will be asked, of which items, with which prompts.
pub(super) struct Plan {
    pub(super) datasets: Vec<Prepared>,
    pub(super) trials: Vec<Trial>,
    pub(super) jobs: Vec<Job>,
    /// Prompt texts keyed by their path as written in the config.
    pub(super) prompts: BTreeMap<PathBuf, String>,
}

/// The run folder this invocation writes (new or resumed), with its baseline opened.
pub(super) struct Started {
    pub(super) dir: PathBuf,
    pub(super) rj: RunJson,
    pub(super) baseline: Option<(String, Box<dyn BaselineSource>)>,
    pub(super) warnings: Vec<String>,
}

impl Started {
    /// Records in run.json that the run failed, and hands `err` back (or the error writing it).
    fn fail(&mut self, err: RunError) -> RunError {
        self.rj.status = RunStatus::Failed;
        self.rj.finished_at = Some(now());
        match write_run_json(&self.dir, &self.rj) {
            Ok(()) => err,
            Err(write) => write,
        }
    }
}

/// Stage `execute`'s input: every job with the requests it has answered already.
struct Queue {
    jobs: Vec<ExecJob>,
    /// Requests still to send.
    pending: u64,
    /// Requests answered in an earlier invocation (resume).
    already_done: u64,
    /// What the run paid in earlier invocations (the budget counts it).
    spent: f64,
}

/// Stage `score`'s output: each trial's line of the manifest and what they add up to.
#[derive(Default)]
pub(super) struct Scored {
    trials: Vec<ManifestTrial>,
    totals: Totals,
    /// Some request of some trial got an answer.
    any_answer: bool,
    /// Some trial still lacks answers.
    any_missing: bool,
    /// Trials the baseline had no results for.
    baseline_missing: Vec<String>,
    warnings: Vec<String>,
}

/// Stage `load`: the config, the run to resume (if any), the conditions, and the command line's
/// overrides; every usage error is found here, before anything is read or written.
fn load(opts: &RunOptions) -> Result<Setup, RunError> {
    let mut loaded = config::load_with(&opts.config, &opts.workspace, &opts.overrides)?;
    if opts.baseline.is_some() && opts.condition != Some(Condition::Treatment) {
        return Err(RunError::Usage {
            what: "--baseline takes the control rows from an earlier run, so it needs --condition treatment".into(),
            fix: "add --condition treatment (or drop --baseline to run both conditions)".into(),
        });
    }
    if let Some(id) = &opts.run_id {
        check_run_id(id)?;
    }
    if let Some(name) = &opts.name
        && check_run_id(name).is_err()
    {
        return Err(RunError::BadRunName { value: name.clone() });
    }
    let experiments = loaded.resolve(&loaded.config.paths.experiments_dir);
    let config_key = runfiles::run::config_key(&opts.config, &opts.workspace);
    // A resumed run's own settings win over the config's defaults.
    let previous = if opts.resume {
        Some(resumable(&experiments, opts.run_id.as_deref(), &config_key)?)
    } else {
        None
    };
    let conditions = conditions(previous.as_ref(), opts.condition)?;
    if let Some(n) = opts.parts_per_dataset.or(previous.as_ref().map(|p| p.parts_per_dataset)) {
        loaded.config.execution.parts_per_dataset =
            within("--parts-per-dataset", n, config::MAX_PARTS_PER_DATASET)?;
    }
    if opts.no_cache {
        loaded.config.execution.cache = config::CacheMode::Off;
    }
    if let Some(cap) = opts.max_usd {
        if !(cap.is_finite() && cap >= 0.0) {
            return Err(RunError::Usage {
                what: format!("--max-usd is {cap}, not an amount of USD"),
                fix: "give the most the run may spend, e.g. --max-usd 5".into(),
            });
        }
        loaded.config.execution.max_usd = Some(cap);
    }
    if let Some(n) = opts.max_concurrent_jobs {
        loaded.config.execution.max_concurrent_jobs =
            within("--max-concurrent-jobs", n, config::MAX_CONCURRENT_JOBS)?;
    }
    let baseline = opts.baseline.clone().or(previous.as_ref().and_then(|p| p.baseline.clone()));
    Ok(Setup { loaded, experiments, config_key, previous, conditions, baseline })
}

/// The run `--resume` continues: `--run-id`, else the newest unfinished one of this config.
fn resumable(experiments: &Path, run_id: Option<&str>, config: &str) -> Result<RunJson, RunError> {
    let id = match run_id {
        Some(id) => id.to_string(),
        None => latest_unfinished(experiments, config)?,
    };
    let dir = run_dir(experiments, &id);
    let rj = read_run_json(&dir)
        .map_err(|_| RunError::NoSuchRun { run_id: id.clone(), path: dir.join("run.json") })?;
    if !has_work_left(&dir, &rj) {
        return Err(RunError::AlreadyComplete { run_id: id });
    }
    Ok(rj)
}

/// The conditions to run: `--condition`, else both; a resumed run keeps its own.
fn conditions(
    previous: Option<&RunJson>,
    asked: Option<Condition>,
) -> Result<Vec<Condition>, RunError> {
    Ok(match (previous, asked) {
        (Some(p), Some(c)) if p.conditions != vec![c] => {
            return Err(RunError::Usage {
                what: format!(
                    "run `{}` was started with conditions {}, not {c}",
                    p.run_id,
                    p.conditions.iter().map(|c| c.as_str()).collect::<Vec<_>>().join("+")
                ),
                fix: "resume without --condition".into(),
            });
        }
        (Some(p), _) => p.conditions.clone(),
        (None, Some(c)) => vec![c],
        (None, None) => Condition::BOTH.to_vec(),
    })
}

/// Stages `prepare` and `plan`: the datasets (a dry run reads and checks them but writes nothing),
/// the trial matrix and its jobs, and the prompt files.
fn prepare_and_plan(opts: &RunOptions, setup: &Setup) -> Result<Plan, RunError> {
    let loaded = &setup.loaded;
    let prepared_dir = loaded.resolve(&loaded.config.paths.prepared_dir);
    let mut datasets = Vec::new();
    for ds in &loaded.config.datasets {
        let p = if opts.skip_prepare {
            prepare::load_latest(ds, &prepared_dir)?
        } else if opts.dry_run {
            prepare::prepare_in_memory(ds, &loaded.resolve(&ds.path))?
        } else {
            prepare::prepare(ds, &loaded.resolve(&ds.path), &prepared_dir)?
        };
        datasets.push(p);
    }
    let trials = plan::trials(&loaded.config);
    let sizes: Vec<usize> = datasets.iter().map(|d| d.items.len()).collect();
    let parts = loaded.config.execution.parts_per_dataset;
    let jobs = plan::jobs(trials.len(), &setup.conditions, &sizes, parts);
    let prompts = read_prompts(loaded)?;
    Ok(Plan { datasets, trials, jobs, prompts })
}

/// From here on an item is its id, gold label and cluster: the other columns were only needed
/// for the user messages, already rendered, and would otherwise stay in memory all run long.
fn keep_item_keys(datasets: &mut [Prepared]) {
    for d in datasets {
        d.items = Arc::new(
            d.items
                .iter()
                .map(|i| prepare::Item {
                    id: i.id.clone(),
                    label: i.label.clone(),
                    cluster: i.cluster.clone(),
                    fields: prepare::Fields::default(),
                })
                .collect(),
        );
    }
}

/// Stage `start`: the run folder. A resumed run must have the inputs it started with; a new one
/// gets its folder, run.json and a copy of its config. The baseline is opened first, so a wrong
/// REF costs nothing.
fn start(
    opts: &RunOptions,
    setup: &Setup,
    plan: &Plan,
    open_baseline: OpenBaseline<'_>,
) -> Result<Started, RunError> {
    let fingerprint = fingerprint(&setup.loaded.config, &plan.prompts, &plan.datasets);
    let config_hash = blake3::hash(fingerprint.to_string().as_bytes()).to_hex().to_string();
    let mut warnings = Vec::new();
    let baseline = match &setup.baseline {
        Some(reference) => {
            let src = open_baseline(reference).map_err(|source| RunError::BaselineOpen {
                reference: reference.clone(),
                source,
            })?;
            let (l, prompts, datasets) = (&setup.loaded, &plan.prompts, &plan.datasets);
            warnings.extend(baseline_checks(reference, src.as_ref(), l, prompts, datasets));
            Some((reference.clone(), src))
        }
        None => None,
    };
    let rj = match &setup.previous {
        Some(previous) => {
            let mut rj = resume_run(&setup.experiments, previous, &config_hash, &fingerprint)?;
            rj.config.get_or_insert_with(|| setup.config_key.clone());
            // `--resume --name` names (or renames) the run; without it the name stays.
            if opts.name.is_some() {
                rj.name = opts.name.clone();
            }
            rj
        }
        None => new_run(opts, setup, plan, config_hash)?,
    };
    Ok(Started { dir: run_dir(&setup.experiments, &rj.run_id), rj, baseline, warnings })
}

/// The resumed run's run.json, `running` again, once its inputs are known to be unchanged.
fn resume_run(
    experiments: &Path,
    previous: &RunJson,
    config_hash: &str,
    fingerprint: &serde_json::Value,
) -> Result<RunJson, RunError> {
    if previous.config_hash != config_hash {
        let old = stored_fingerprint(&run_dir(experiments, &previous.run_id), previous)?;
        let mut changes = diff_fingerprints(&old, fingerprint);
        if changes.is_empty() {
            changes.push("the resolved config differs in a way exp cannot itemize".into());
        }
        return Err(RunError::ConfigChanged { run_id: previous.run_id.clone(), changes });
    }
    let mut rj = previous.clone();
    rj.status = RunStatus::Running;
    rj.finished_at = None;
    rj.resumed_at.push(now());
    Ok(rj)
}

/// A new run's folder with its copy of the config and prompts, and its run.json (not yet written).
fn new_run(
    opts: &RunOptions,
    setup: &Setup,
    plan: &Plan,
    config_hash: String,
) -> Result<RunJson, RunError> {
    let run_id = match &opts.run_id {
        Some(id) => id.clone(),
        None => fresh_run_id(&setup.experiments),
    };
    let dir = run_dir(&setup.experiments, &run_id);
    if dir.exists() {
        return Err(RunError::RunExists { run_id, path: dir });
    }
    if opts.skip_build {
        return Err(RunError::Usage {
            what: "--skip-build reuses the request files of a run being resumed, and this is a new run".into(),
            fix: "add --resume (with --run-id ID) to continue a run, or drop --skip-build".into(),
        });
    }
    let loaded = &setup.loaded;
    let rj = RunJson {
        format: 1,
        run_id,
        status: RunStatus::Running,
        started_at: now(),
        finished_at: None,
        config_hash,
        provenance: crate::eval::provenance_of(&loaded.workspace),
        exp_version: env!("CARGO_PKG_VERSION").to_string(),
        conditions: setup.conditions.clone(),
        parts_per_dataset: loaded.config.execution.parts_per_dataset,
        baseline: setup.baseline.clone(),
        baseline_detail: None,
        trials: plan.trials.iter().map(|t| t.slug.to_string()).collect(),
        datasets: plan.datasets.iter().map(dataset_record).collect(),
        resumed_at: Vec::new(),
        config: Some(setup.config_key.clone()),
        rescored_from: None,
        name: opts.name.clone(),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|source| RunError::Write { path: dir.clone(), source })?;
    snapshot_config(loaded, &plan.prompts, &dir)?;
    Ok(rj)
}

fn dataset_record(d: &Prepared) -> DatasetRecord {
    DatasetRecord {
        name: d.name.clone(),
        items: d.items.len(),
        hash: d.hash.clone(),
        prepared: d.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
    }
}

/// Stage `build`: each trial's trial.json and the request files (`--skip-build` insists they are
/// there). Takes the rendered user messages so they are freed once written.
fn build_requests(
    opts: &RunOptions,
    setup: &Setup,
    plan: &Plan,
    users: Vec<Vec<String>>,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    let config = &setup.loaded.config;
    for t in &plan.trials {
        write_trial_json(dir, t, config, &setup.conditions, &plan.datasets)?;
    }
    progress.start("build", plan.jobs.len() as u64, false);
    // Jobs are built on every core: each is its own file (serializing and its fsync overlap).
    plan.jobs.par_iter().try_for_each(|job| {
        let path = inputs_path(dir, &plan.trials[job.trial], job);
        if !path.is_file() {
            if opts.skip_build {
                return Err(RunError::NotBuilt { path });
            }
            let trial = &plan.trials[job.trial];
            let lines = build_job(trial, job, &plan.datasets, &plan.prompts, &users, config);
            build::write_lines(&path, lines)
                .map_err(|source| RunError::Write { path: path.clone(), source })?;
        }
        progress.advance(1);
        Ok(())
    })?;
    progress.finish();
    Ok(())
}

/// What every job still has to send: the requests its journal holds no `ok` answer for.
fn queue(config: &Config, plan: &Plan, dir: &Path) -> Result<Queue, RunError> {
    let mut queue = Queue { jobs: Vec::new(), pending: 0, already_done: 0, spent: 0.0 };
    let model_index: BTreeMap<&str, usize> =
        config.models.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect();
    for job in &plan.jobs {
        let trial = &plan.trials[job.trial];
        let journal_path = journal_path(dir, trial, job);
        let entries = journal::read(&journal_path).map_err(ExecuteError::from)?.into_values();
        let mut done = HashSet::new();
        for e in entries {
            if let (Some(p), None) = (trial.model.pricing, &e.reused) {
                queue.spent += p.usd(e.input_tokens, e.output_tokens);
            }
            if e.status == Status::Ok {
                done.insert(e.custom_id);
            }
        }
        let expected = (job.end - job.start) as u64 * trial.repeats as u64;
        queue.already_done += done.len() as u64;
        queue.pending += expected.saturating_sub(done.len() as u64);
        queue.jobs.push(ExecJob {
            inputs: inputs_path(dir, trial, job),
            journal: journal_path,
            model: model_index.get(trial.model.name.as_str()).copied().unwrap_or(0),
            condition: job.condition,
            dataset: plan.datasets[job.dataset].name.clone(),
            items: plan.datasets[job.dataset].items.clone(),
            start: job.start,
            end: job.end,
            repeats: trial.repeats,
            max_tokens: u64::from(trial.decoding.max_tokens),
            done,
        });
    }
    Ok(queue)
}

/// A provider for every model of the config, in its order (`ExecJob::model` indexes it).
fn exec_models(config: &Config) -> Result<Vec<ExecModel>, RunError> {
    let labels = &config.scoring.labels;
    let mut models = Vec::new();
    for m in &config.models {
        models.push(ExecModel {
            provider: Provider::new(m, &config.execution, labels)?,
            max_connections: endpoint::task_bound(m),
            pricing: m.pricing,
        });
    }
    Ok(models)
}

fn exec_settings(opts: &RunOptions, config: &Config) -> ExecSettings {
    let e = &config.execution;
    ExecSettings {
        max_concurrent_jobs: e.max_concurrent_jobs,
        max_retries: e.max_retries,
        backoff_base: Duration::from_secs_f64(e.backoff_base_s),
        backoff_max: Duration::from_secs_f64(e.backoff_max_s),
        fsync: e.fsync,
        stop_on_ctrl_c: opts.stop_on_ctrl_c,
        budget: None,
    }
}

/// Stage `reuse`: answers to identical earlier requests, journaled instead of sent (the
/// response cache, unless `execution.cache: off`); how many.
fn reuse(
    setup: &Setup,
    plan: &Plan,
    queue: &mut Queue,
    progress: &dyn Progress,
) -> Result<u64, RunError> {
    let c = &setup.loaded.config;
    if !c.execution.cache.reads() || queue.pending == 0 {
        return Ok(0);
    }
    let input = cache::ReuseInput {
        workspace: &setup.loaded.workspace,
        experiments: &setup.experiments,
        keyers: c.models.iter().map(|m| cache::Keyer::new(m, &c.scoring.labels)).collect(),
        datasets: plan.datasets.iter().map(|d| (d.name.clone(), d.hash.clone())).collect(),
        fsync: c.execution.fsync,
    };
    Ok(cache::reuse(&input, &mut queue.jobs, &mut queue.pending, progress)?)
}

/// Stages `score`, `results` and `reports`: every trial's results files and report.md, and its
/// line of the manifest.
pub(super) fn score(
    run: &Started,
    loaded: &LoadedConfig,
    plan: &Plan,
    batched: bool,
    clock: Instant,
) -> Result<Scored, RunError> {
    let scorer = Scorer::new(&loaded.config.scoring).map_err(|e| ConfigError::Invalid {
        path: loaded.path.clone(),
        key: "scoring.extract".into(),
        line: loaded.line_of("extract"),
        problem: e.to_string(),
        fix: "fix the pattern".into(),
    })?;
    let settings = significance_settings(&loaded.config);
    let mut scored = Scored::default();
    for (ti, trial) in plan.trials.iter().enumerate() {
        let slug = trial.slug.as_str();
        let trial_dir = run.dir.join(slug);
        let rjobs: Vec<ResultJob<'_>> = plan
            .jobs
            .iter()
            .filter(|j| j.trial == ti)
            .map(|j| ResultJob {
                condition: j.condition,
                part: j.part,
                dataset: &plan.datasets[j.dataset].name,
                items: &plan.datasets[j.dataset].items[j.start..j.end],
                journal: journal_path(&run.dir, trial, j),
                // A rescored run's answers were all paid for by the run it rescored.
                reused: run.rj.rescored_from.is_some(),
            })
            .collect();
        let rows = match &run.baseline {
            Some((reference, src)) => {
                let rows = baseline_rows(reference, src.as_ref(), slug)?;
                if rows.is_none() {
                    scored.warnings.push(format!(
                        "baseline `{reference}` has no results for trial {slug}: it holds treatment rows only, so no paired statistics"
                    ));
                    scored.baseline_missing.push(slug.to_string());
                }
                rows
            }
            None => None,
        };
        tracing::info!(elapsed_ms = ms(clock), trial = %trial.slug, "scoring");
        // Answers obtained through batches cost the batch prices.
        let batch = batched || trial.model.backend == Backend::Batch;
        let pricing = trial.model.pricing.map(|p| if batch { p.batch() } else { p });
        let r = results::write(&trial_dir, &rjobs, trial.repeats, &scorer, pricing, rows.as_ref())?;
        tracing::info!(elapsed_ms = ms(clock), trial = %trial.slug, "reporting");
        report::write_trial_report(&trial_dir, &settings)?;
        scored.add(trial, &r, &trial_dir);
    }
    Ok(scored)
}

/// A trial's control rows from the baseline run; `None` when it has no results for the trial.
fn baseline_rows(
    reference: &str,
    src: &dyn BaselineSource,
    slug: &str,
) -> Result<Option<BaselineRows>, RunError> {
    let read = |name: &str| {
        src.read(&format!("{slug}/results/{name}"))
            .map_err(|problem| RunError::Baseline { reference: reference.to_string(), problem })
    };
    Ok(match (read("predictions.csv")?, read("per_item_scores.csv")?) {
        (Some(predictions), Some(scores)) => {
            Some(BaselineRows { predictions, scores, condition: Condition::Control })
        }
        _ => None,
    })
}

impl Scored {
    /// Adds a scored trial: its manifest line, its costs to the totals.
    fn add(&mut self, trial: &Trial, r: &results::TrialResults, trial_dir: &Path) {
        self.any_answer |= answered(&r.costs);
        self.any_missing |= r.incomplete;
        let total = &r.costs.total;
        self.totals.requests += total.requests;
        self.totals.failures += total.failures;
        self.totals.input_tokens += total.input_tokens;
        self.totals.output_tokens += total.output_tokens;
        self.totals.usd += total.usd;
        self.totals.reused += total.reused;
        self.totals.usd_saved += total.usd_saved;
        // The one headline: the paired effect and its test from significance.json, never the
        // difference of the two accuracies (which mixes in items failed on one side).
        let headline = read_headline(trial_dir);
        self.trials.push(ManifestTrial {
            slug: trial.slug.to_string(),
            model: trial.model.name.clone(),
            provider: trial.model.provider.as_str().into(),
            prompt_set: trial.prompt_set.clone(),
            decoding: trial.decoding,
            status: trial_status(r).into(),
            path: format!("{}/", trial.slug),
            metrics: r
                .metrics
                .conditions
                .iter()
                .map(|(k, m)| (k.clone(), HeadlineMetrics { n: m.n, accuracy: m.accuracy }))
                .collect(),
            effect: headline.effect,
            p_value: headline.p_value,
            holm_p: None,
            usd: total.usd,
            failures: total.failures,
        });
    }
}

/// The endpoint counts earlier invocations of this run left in each trial's costs.json (none for
/// a new run), read before `score` rewrites the file.
fn earlier_endpoints(dir: &Path, plan: &Plan) -> Vec<Option<EndpointUse>> {
    plan.trials
        .iter()
        .map(|t| {
            let path = runfiles::result_file(&dir.join(t.slug.as_str()), runfiles::COSTS);
            let costs = runfiles::read_json::<runfiles::results::Costs>(&path).ok().flatten();
            costs?.endpoint
        })
        .collect()
}

/// Stage `endpoints`: each real model's replica counts and concurrency, added to what earlier
/// invocations counted, go into the costs.json of its trials (which `score` just wrote).
fn record_endpoints(
    dir: &Path,
    plan: &Plan,
    outcome: &ExecOutcome,
    earlier: Vec<Option<EndpointUse>>,
) -> Result<(), RunError> {
    for (trial, earlier) in plan.trials.iter().zip(earlier) {
        let now = outcome.endpoints.iter().find(|e| e.model == trial.model.name);
        let total = match (earlier, now) {
            (Some(mut e), Some(now)) => {
                e.add(now);
                e
            }
            (Some(e), None) => e,
            (None, Some(now)) => now.clone(),
            (None, None) => continue,
        };
        let path = runfiles::result_file(&dir.join(trial.slug.as_str()), runfiles::COSTS);
        let Some(mut costs) = runfiles::read_json::<runfiles::results::Costs>(&path)? else {
            continue;
        };
        costs.endpoint = Some(total);
        runfiles::write_json(&path, &costs)?;
    }
    Ok(())
}

/// Stage `finish`: how the run ended, the manifest and aggregate report, and run.json saying so.
/// Returns the manifest as written (the aggregate step adds Holm p-values to it).
pub(super) fn finish(
    run: &mut Started,
    config: &Config,
    scored: Scored,
    outcome: &ExecOutcome,
    ingest: bool,
    clock: Instant,
) -> Result<Manifest, RunError> {
    let status = if ingest && scored.any_missing {
        RunStatus::AwaitingOutputs
    } else if outcome.interrupted || scored.any_missing {
        RunStatus::Incomplete
    } else if !scored.any_answer && scored.totals.requests > 0 {
        RunStatus::Failed
    } else {
        RunStatus::Complete
    };
    if let Some((reference, src)) = &run.baseline {
        run.rj.baseline_detail = Some(BaselineRecord {
            reference: reference.clone(),
            commit: src.commit(),
            condition: Condition::Control,
            missing_trials: scored.baseline_missing,
        });
    }
    run.warnings.extend(scored.warnings);
    if let Some(down) = outcome.endpoints.iter().find_map(|e| e.down.as_ref()) {
        run.warnings.push(format!(
            "{down}; the run stopped with every answer so far journaled: resume it once the endpoint is back"
        ));
    }
    let manifest = Manifest {
        format: 1,
        run_id: run.rj.run_id.clone(),
        status,
        trials: scored.trials,
        totals: scored.totals,
    };
    runfiles::write_json(&run.dir.join(runfiles::MANIFEST), &manifest)?;
    tracing::info!(elapsed_ms = ms(clock), "aggregating");
    report::write_aggregate(&run.dir, &significance_settings(config))?;
    tracing::info!(elapsed_ms = ms(clock), "done");
    run.rj.status = status;
    run.rj.finished_at = Some(now());
    write_run_json(&run.dir, &run.rj)?;
    Ok(read_manifest(&run.dir).unwrap_or(manifest))
}

/// Hand the pages of freed allocations back to the system. The datasets' columns and the
/// rendered user messages (a few hundred bytes an item) are freed once the requests are built,
/// but glibc keeps small freed blocks in its heap, so without this a million-item run kept
/// ~600 MB it no longer used through sending, scoring and reports (bench/run/bench.py).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no live allocation moves.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// `n` from the command line, or a usage error naming `flag` when it is outside [1, max]: zero
/// parts would send nothing, zero job slots would wait forever, and the config's own bound
/// applies to the flag that overrides it.
fn within(flag: &str, n: usize, max: usize) -> Result<usize, RunError> {
    if n == 0 || n > max {
        return Err(RunError::Usage {
            what: format!("{flag} is {n}, outside [1, {max}]"),
            fix: format!("give 1 or more, at most {max}"),
        });
    }
    Ok(n)
}

/// `<run>/.exp-run.lock`: one process per run, so two `--resume`s never send the same requests
/// twice. A lock left by a killed process (its pid is gone) is taken over.
struct RunLock(PathBuf);

impl RunLock {
    fn take(dir: &Path, run_id: &str) -> Result<RunLock, RunError> {
        let path = dir.join(crate::store::RUN_LOCK);
        let write_err = |source| RunError::Write { path: path.clone(), source };
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(std::process::id().to_string().as_bytes()).map_err(write_err)?;
                    return Ok(RunLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: Option<u32> =
                        std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok());
                    if let Some(pid) = pid
                        && pid != std::process::id()
                        && process_alive(pid)
                    {
                        return Err(RunError::Locked { run_id: run_id.to_string(), pid });
                    }
                    std::fs::remove_file(&path).map_err(write_err)?;
                }
                Err(e) => return Err(write_err(e)),
            }
        }
        Err(RunError::Write {
            path: path.clone(),
            source: std::io::Error::other("lock file keeps reappearing"),
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill(2) with signal 0 only checks that the process exists; it sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What could make the baseline's control rows a poor match for this run's treatment rows.
fn baseline_checks(
    reference: &str,
    src: &dyn BaselineSource,
    l: &LoadedConfig,
    prompts: &BTreeMap<PathBuf, String>,
    datasets: &[Prepared],
) -> Vec<String> {
    let mut out = Vec::new();
    let run: Option<RunJson> =
        src.read("run.json").ok().flatten().and_then(|b| serde_json::from_slice(&b).ok());
    match run {
        Some(run) => {
            for d in datasets {
                match run.datasets.iter().find(|b| b.name == d.name) {
                    Some(b) if b.hash != d.hash => out.push(format!(
                        "baseline `{reference}` ran a different version of dataset `{}`: items are paired by id, and items it lacks stay unpaired",
                        d.name
                    )),
                    None => out.push(format!("baseline `{reference}` did not run dataset `{}`", d.name)),
                    _ => {}
                }
            }
        }
        None => out.push(format!(
            "baseline `{reference}` has no readable run.json: its datasets cannot be checked"
        )),
    }
    for (name, set) in &l.config.prompt_sets {
        let rel = snapshot_path(Path::new(""), &set.control);
        let theirs = src.read(&rel.to_string_lossy()).ok().flatten();
        let ours = prompts.get(&set.control).map(|t| t.as_bytes());
        if theirs.as_deref() != ours {
            out.push(format!(
                "baseline `{reference}`'s control prompt of prompt set `{name}` differs from {}",
                set.control.display()
            ));
        }
    }
    out
}

fn trial_status(r: &results::TrialResults) -> &'static str {
    let answered = answered(&r.costs) || !r.costs.from_baseline.is_empty();
    if r.incomplete {
        "incomplete"
    } else if !answered {
        "failed"
    } else {
        "complete"
    }
}

/// Some request of the trial got an answer, sent now or reused.
fn answered(costs: &runfiles::results::Costs) -> bool {
    costs.conditions.values().any(|c| c.requests + c.reused > c.failures)
}

pub fn significance_settings(c: &Config) -> SignificanceSettings {
    SignificanceSettings {
        alpha: c.significance.alpha,
        bootstrap_resamples: c.significance.bootstrap_resamples,
        seed: c.significance.seed,
    }
}

/// The headline of the trial's significance.json (empty when it could not be read).
fn read_headline(trial_dir: &Path) -> runfiles::figures::SignificanceHeadline {
    let path = runfiles::result_file(trial_dir, runfiles::SIGNIFICANCE);
    runfiles::figures::read_significance(&path).ok().flatten().unwrap_or_default()
}

pub fn read_manifest(run_dir: &Path) -> Option<Manifest> {
    runfiles::read_json(&run_dir.join(runfiles::MANIFEST)).ok()?
}

pub(super) fn check_run_id(id: &str) -> Result<(), RunError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(RunError::BadRunId { value: id.to_string() }) }
}

/// `20251127-130501`, with `-2`, `-3`… when two runs start in the same second.
pub(super) fn fresh_run_id(experiments: &Path) -> String {
    let base = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut id = base.clone();
    let mut n = 2;
    while run_dir(experiments, &id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

pub fn read_run_json(dir: &Path) -> Result<RunJson, RunError> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Read { path: path.clone(), problem: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| RunError::Read { path, problem: e.to_string() })
}

pub(super) fn write_run_json(dir: &Path, rj: &RunJson) -> Result<(), RunError> {
    Ok(runfiles::write_json(&dir.join(runfiles::RUN_JSON), rj)?)
}

/// Whether `--resume` has something to send: the run did not finish, or it finished with
/// recorded failures (the journal keeps them, and a resume sends exactly those again).
fn has_work_left(dir: &Path, rj: &RunJson) -> bool {
    !matches!(rj.status, RunStatus::Complete | RunStatus::Rescored)
        || read_manifest(dir).is_some_and(|m| m.totals.failures > 0)
}

/// The newest run (by start time) of `config` with work left: not complete, or with failed
/// requests. A run.json that does not record its config matches any.
fn latest_unfinished(experiments: &Path, config: &str) -> Result<String, RunError> {
    let mut best: Option<(String, String)> = None;
    if let Ok(entries) = std::fs::read_dir(experiments) {
        for entry in entries.flatten() {
            let Ok(rj) = read_run_json(&entry.path()) else { continue };
            if !has_work_left(&entry.path(), &rj)
                || rj.config.as_deref().is_some_and(|c| c != config)
            {
                continue;
            }
            if best.as_ref().is_none_or(|(t, _)| rj.started_at > *t) {
                best = Some((rj.started_at, rj.run_id));
            }
        }
    }
    best.map(|(_, id)| id).ok_or_else(|| RunError::NothingToResume {
        dir: experiments.to_path_buf(),
        config: config.to_string(),
    })
}

/// Prompt texts keyed by their path as written in the config.
pub(super) fn read_prompts(l: &LoadedConfig) -> Result<BTreeMap<PathBuf, String>, RunError> {
    let mut out = BTreeMap::new();
    for set in l.config.prompt_sets.values() {
        for p in [&set.control, &set.treatment] {
            let full = l.resolve(p);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| RunError::Read { path: full.clone(), problem: e.to_string() })?;
            out.insert(p.clone(), text);
        }
    }
    Ok(out)
}

/// The user message of every item (it does not depend on the trial), checked once.
fn render_users(l: &LoadedConfig, datasets: &[Prepared]) -> Result<Vec<Vec<String>>, RunError> {
    datasets
        .iter()
        .map(|d| {
            d.items
                .iter()
                .map(|item| {
                    build::render(&l.config.user_template, item).map_err(|problem| {
                        RunError::Template {
                            path: l.path.clone(),
                            problem: format!(
                                "user_template {problem} (dataset `{}`, item `{}`)",
                                d.name, item.id
                            ),
                        }
                    })
                })
                .collect()
        })
        .collect()
}

fn system_prompt<'a>(
    trial: &Trial,
    c: &Config,
    prompts: &'a BTreeMap<PathBuf, String>,
    cond: Condition,
) -> &'a str {
    let set = &c.prompt_sets[&trial.prompt_set];
    let path = match cond {
        Condition::Control => &set.control,
        Condition::Treatment => &set.treatment,
    };
    prompts.get(path).map(String::as_str).unwrap_or_default()
}

/// A job's request lines, made one at a time as they are written (a part can hold a whole
/// 100,000-item dataset; its lines are never all in memory).
fn build_job<'a>(
    trial: &'a Trial,
    job: &'a Job,
    datasets: &'a [Prepared],
    prompts: &'a BTreeMap<PathBuf, String>,
    users: &'a [Vec<String>],
    c: &'a Config,
) -> impl Iterator<Item = RequestLine> + 'a {
    let system = system_prompt(trial, c, prompts, job.condition);
    let ds = &datasets[job.dataset];
    let slice = ds.items[job.start..job.end].iter().zip(&users[job.dataset][job.start..job.end]);
    slice.flat_map(move |(item, user)| {
        let body = build::body(&trial.model, &trial.decoding, system, user);
        (0..trial.repeats).map(move |repeat| RequestLine {
            custom_id: build::custom_id(&ds.name, &item.id, job.condition, repeat),
            method: "POST".into(),
            url: build::CHAT_URL.into(),
            body: body.clone(),
        })
    })
}

fn inputs_path(dir: &Path, trial: &Trial, job: &Job) -> PathBuf {
    dir.join(trial.slug.as_str()).join("inputs").join(job.condition.as_str()).join(job.file_name())
}

fn journal_path(dir: &Path, trial: &Trial, job: &Job) -> PathBuf {
    dir.join(trial.slug.as_str())
        .join("responses")
        .join(job.condition.as_str())
        .join(job.file_name())
}

pub(super) fn write_trial_json(
    dir: &Path,
    t: &Trial,
    c: &Config,
    conditions: &[Condition],
    datasets: &[Prepared],
) -> Result<(), RunError> {
    let set = &c.prompt_sets[&t.prompt_set];
    let tj = TrialJson {
        slug: t.slug.to_string(),
        model: t.model.name.clone(),
        provider: t.model.provider.as_str().into(),
        model_id: t.model.api_model().to_string(),
        prompt_set: t.prompt_set.clone(),
        prompts: runfiles::trial::TrialPrompts {
            control: set.control.clone(),
            treatment: set.treatment.clone(),
        },
        decoding: t.decoding,
        repeats: t.repeats,
        datasets: datasets.iter().map(|d| d.name.clone()).collect(),
        conditions: conditions.to_vec(),
        scoring: runfiles::trial::TrialScoring {
            kind: c.scoring.kind.as_str().into(),
            labels: c.scoring.labels.clone(),
            extract: c.scoring.extract.clone(),
        },
        pricing: t.model.pricing.as_ref().map(|p| runfiles::trial::TrialPricing {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
        }),
    };
    Ok(runfiles::write_json(&dir.join(t.slug.as_str()).join(runfiles::TRIAL_JSON), &tj)?)
}

/// Where a prompt file is copied inside the run: the same relative path as in the workspace
/// (under `config/` when it is not already there). The config chooses what is read, never where
/// the copy goes: a path climbing out with `..` is copied to `config/prompts/external/` under a
/// name tagged with its path's hash (it would otherwise be written outside the run folder).
pub(super) fn snapshot_path(dir: &Path, rel: &Path) -> PathBuf {
    let prompts = dir.join("config").join("prompts");
    let name = || rel.file_name().map(|n| n.to_string_lossy().to_string());
    if rel.is_absolute() {
        return prompts.join(name().unwrap_or_else(|| "prompt".into()));
    }
    if rel.components().any(|c| c == std::path::Component::ParentDir) {
        let tag = blake3::hash(rel.to_string_lossy().as_bytes()).to_hex();
        let name = name().unwrap_or_else(|| "prompt".into());
        return prompts.join("external").join(format!("{}-{name}", &tag[..12]));
    }
    if rel.starts_with("config") { dir.join(rel) } else { dir.join("config").join(rel) }
}

pub(super) fn snapshot_config(
    l: &LoadedConfig,
    prompts: &BTreeMap<PathBuf, String>,
    dir: &Path,
) -> Result<(), RunError> {
    let yaml = serde_yaml::to_string(&l.config).map_err(|e| RunError::Write {
        path: dir.join("config"),
        source: std::io::Error::other(e),
    })?;
    let mut header =
        "# The resolved config of this run (defaults filled in, command-line overrides applied).\n"
            .to_string();
    for o in &l.overrides {
        header.push_str(&format!("# -S {o}\n"));
    }
    let path = dir.join("config").join("eval_config.yaml");
    runfiles::atomic_write(&path, format!("{header}{yaml}").as_bytes())
        .map_err(|source| RunError::Write { path, source })?;
    for (rel, text) in prompts {
        let path = snapshot_path(dir, rel);
        runfiles::atomic_write(&path, text.as_bytes())
            .map_err(|source| RunError::Write { path, source })?;
    }
    Ok(())
}

/// Execution settings that do not change what is asked or how it is scored, so a resume may
/// change them (e.g. more concurrency after a rate-limit talk with the provider).
const VOLATILE: [&str; 12] = [
    "max_concurrent_jobs",
    "max_retries",
    "timeout_s",
    "backoff_base_s",
    "backoff_max_s",
    "fsync",
    "max_response_bytes",
    "cache",
    "max_usd",
    "batch_poll_s",
    "batch_max_requests",
    "batch_max_bytes",
];

pub(super) fn fingerprint(
    c: &Config,
    prompts: &BTreeMap<PathBuf, String>,
    datasets: &[Prepared],
) -> serde_json::Value {
    let mut config = serde_json::to_value(c).unwrap_or_default();
    if let Some(e) = config.get_mut("execution").and_then(|e| e.as_object_mut()) {
        for k in VOLATILE {
            e.remove(k);
        }
    }
    let prompts: BTreeMap<String, String> = prompts
        .iter()
        .map(|(p, t)| {
            (p.to_string_lossy().to_string(), blake3::hash(t.as_bytes()).to_hex().to_string())
        })
        .collect();
    let datasets: BTreeMap<String, String> =
        datasets.iter().map(|d| (d.name.clone(), d.hash.clone())).collect();
    serde_json::json!({"config": config, "prompts": prompts, "datasets": datasets})
}

/// The fingerprint of the run as it started, from its own copies.
fn stored_fingerprint(dir: &Path, rj: &RunJson) -> Result<serde_json::Value, RunError> {
    let path = dir.join("config").join("eval_config.yaml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Read { path: path.clone(), problem: e.to_string() })?;
    let c: Config = serde_yaml::from_str(&text)
        .map_err(|e| RunError::Read { path: path.clone(), problem: e.to_string() })?;
    let mut prompts = BTreeMap::new();
    for set in c.prompt_sets.values() {
        for p in [&set.control, &set.treatment] {
            let text = std::fs::read_to_string(snapshot_path(dir, p)).unwrap_or_default();
            prompts.insert(p.clone(), text);
        }
    }
    let datasets: Vec<Prepared> = rj
        .datasets
        .iter()
        .map(|d| Prepared {
            name: d.name.clone(),
            path: d.prepared.clone().into(),
            hash: d.hash.clone(),
            items: Default::default(),
            written: false,
        })
        .collect();
    Ok(fingerprint(&c, &prompts, &datasets))
}

/// "decoding.temps: [0.0] -> [0.0,1.0]", "prompt config/prompts/x.md: content changed", …
pub(super) fn diff_fingerprints(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
        if let Some(p) = k.strip_prefix("prompts.") {
            out.push(format!("prompt file {p}: content changed"));
        } else if let Some(d) = k.strip_prefix("datasets.") {
            out.push(format!("dataset `{d}`: content changed"));
        } else {
            let key = k.strip_prefix("config.").unwrap_or(k);
            out.push(format!("{key}: {} -> {}", show(x), show(y)));
        }
    }
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        // A list of objects (`models`) is itemized by position, so a change reads as
        // `models[0].sim.latency_ms: 3000 -> 0`, not as two dumps of the whole list.
        serde_json::Value::Array(items)
            if !items.is_empty() && items.iter().all(|v| v.is_object()) =>
        {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `--dry-run`: what the plan would send and cost, per trial and in all.
fn dry_run(opts: &RunOptions, setup: &Setup, plan: &Plan, users: &[Vec<String>]) -> DryRun {
    let (l, conditions) = (&setup.loaded, &setup.conditions);
    let (trials, jobs, datasets, prompts) =
        (&plan.trials, &plan.jobs, &plan.datasets, &plan.prompts);
    // The user message's tokens do not depend on the trial: count them once per item.
    let user_tokens: Vec<u64> =
        users.iter().map(|d| d.iter().map(|u| build::estimate_tokens(u)).sum()).collect();
    let items: u64 = datasets.iter().map(|d| d.items.len() as u64).sum();
    let mut out = Vec::new();
    let mut unpriced = Vec::new();
    for (ti, t) in trials.iter().enumerate() {
        let mut requests = 0;
        let mut input = 0;
        for &cond in conditions {
            let system = build::estimate_tokens(system_prompt(t, &l.config, prompts, cond));
            let n = items * t.repeats as u64;
            requests += n;
            // Per request: system + user + framing (as build::estimate_prompt_tokens counts it).
            input += t.repeats as u64 * (user_tokens.iter().sum::<u64>() + items * (system + 11));
        }
        let max_output = requests * t.decoding.max_tokens as u64;
        let batch = opts.backend_files || t.model.backend == Backend::Batch;
        let pricing = t.model.pricing.map(|p| if batch { p.batch() } else { p });
        let (est_input_usd, max_usd) = match pricing {
            Some(p) => (p.usd(input, 0), p.usd(input, max_output)),
            None => {
                if t.model.provider == ProviderKind::Openai && !unpriced.contains(&t.model.name) {
                    unpriced.push(t.model.name.clone());
                }
                (0.0, 0.0)
            }
        };
        out.push(DryTrial {
            slug: t.slug.to_string(),
            model: t.model.name.clone(),
            provider: t.model.provider.as_str().into(),
            jobs: jobs.iter().filter(|j| j.trial == ti).count(),
            requests,
            est_input_tokens: input,
            max_output_tokens: max_output,
            est_input_usd,
            max_usd,
        });
    }
    // The run a `--resume` would continue, else `--run-id`'s.
    let run_id = setup.previous.as_ref().map(|p| p.run_id.clone()).or(opts.run_id.clone());
    DryRun {
        run_dir: run_id.as_ref().map(|id| run_dir(&setup.experiments, id)),
        run_id,
        conditions: conditions.to_vec(),
        parts_per_dataset: l.config.execution.parts_per_dataset,
        totals: DryTotals {
            jobs: jobs.len(),
            requests: out.iter().map(|t| t.requests).sum(),
            est_input_tokens: out.iter().map(|t| t.est_input_tokens).sum(),
            max_output_tokens: out.iter().map(|t| t.max_output_tokens).sum(),
            est_input_usd: out.iter().map(|t| t.est_input_usd).sum(),
            max_usd: out.iter().map(|t| t.max_usd).sum(),
        },
        trials: out,
        unpriced_models: unpriced,
        max_usd: l.config.execution.max_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_diffs_name_the_changed_keys() {
        let old = serde_json::json!({"config": {"decoding": {"temps": [0.0]}}, "prompts": {"a.txt": "x"}, "datasets": {"d": "1"}});
        let new = serde_json::json!({"config": {"decoding": {"temps": [0.0, 1.0]}}, "prompts": {"a.txt": "y"}, "datasets": {"d": "1"}});
        let d = diff_fingerprints(&old, &new);
        assert_eq!(
            d,
            vec![
                "decoding.temps: [0.0] -> [0.0,1.0]".to_string(),
                "prompt file a.txt: content changed".to_string()
            ]
        );
        let old = serde_json::json!({"config": {"models": [{"name": "a", "sim": {"latency_ms": 3000}}, {"name": "b"}]}});
        let new =
            serde_json::json!({"config": {"models": [{"name": "a", "sim": {"latency_ms": 0}}]}});
        assert_eq!(
            diff_fingerprints(&old, &new),
            ["models[0].sim.latency_ms: 3000 -> 0", "models[1].name: \"b\" -> (absent)"]
        );
    }

    #[test]
    fn run_ids_must_be_filesystem_safe() {
        assert!(check_run_id("20251127-130501").is_ok());
        assert!(check_run_id("../x").is_err());
        assert!(check_run_id("").is_err());
        assert!(check_run_id(".hidden").is_err());
    }

    #[test]
    fn prompt_copies_keep_their_workspace_paths() {
        let d = Path::new("/r");
        assert_eq!(
            snapshot_path(d, Path::new("config/prompts/a.txt")),
            Path::new("/r/config/prompts/a.txt")
        );
        assert_eq!(
            snapshot_path(d, Path::new("prompts/a.txt")),
            Path::new("/r/config/prompts/a.txt")
        );
        let outside = snapshot_path(d, Path::new("../../../../p.txt"));
        assert!(outside.starts_with("/r/config/prompts/external/"), "{}", outside.display());
        assert!(outside.to_string_lossy().ends_with("-p.txt"));
    }
}
