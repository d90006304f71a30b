use std::path::{Path, PathBuf};

use super::Result;
use clap::{Args, ValueEnum};

use super::Context;
use super::ui;
use exp::display::{count, or_missing, p_value, percent, plural, points, usd};
use exp::eval::archive::Archived;
use exp::eval::plan::Condition;
use exp::eval::runner::{self, DryRun, Outcome, RunOptions, RunStatus, RunSummary};
use exp::runfiles::manifest::ManifestTrial;
use exp::runfiles::results::EndpointUse;

/// Run an experiment: every trial of the config's matrix, on both conditions, then score it.
///
/// Writes experiments/run_<ID>/ (requests, the response journal, results, reports); resumable
/// after any crash with --resume. Old spellings (--run_id, --parts_per_dataset, --dry_run, …) work.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  exp run --config config/eval_config.yaml --archive   # the demo (sim model), into .exprepo/
  exp run --config config/eval_config.yaml --dry-run   # the plan and its cost, nothing sent
  exp run --config cfg.yaml --condition treatment --baseline runs/20251127-130501
  exp run --config cfg.yaml --resume                   # continue the latest unfinished run
  exp run --config cfg.yaml --max-usd 5                # stop sending before $5 could be spent
  exp run --config cfg.yaml --resume --max-usd 10      # raise the cap and finish the run
  exp run --config cfg.yaml --no-cache                 # send every request, reuse nothing
  exp run -S decoding.temps=[0.7] -S models[0].max_connections=8 -m 'warmer'  # one-off changes
  exp run --config cfg.yaml --parts_per_dataset=24 --max_concurrent_jobs=4 --resume --run-id ID
  exp run --backend files                              # write batch input files, then: exp ingest OUT.jsonl")]
pub struct RunArgs {
    /// The experiment definition (YAML)
    #[arg(long, short = 'c', value_name = "FILE", default_value = exp::eval::config::DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Run id (folder experiments/run_<ID>) [default: the UTC start time, 20251127-130501]
    #[arg(long, alias = "run_id", value_name = "ID")]
    pub run_id: Option<String>,

    /// Which condition to run
    #[arg(long, value_enum, default_value = "both")]
    pub condition: ConditionArg,

    /// Split each dataset into N parts (jobs) [default: execution.parts_per_dataset]
    #[arg(long, alias = "parts_per_dataset", value_name = "N")]
    pub parts_per_dataset: Option<usize>,

    /// Jobs in flight at once [default: execution.max_concurrent_jobs]
    #[arg(long, alias = "max_concurrent_jobs", value_name = "N")]
    pub max_concurrent_jobs: Option<usize>,

    /// Continue the run given by --run-id, or else the latest unfinished one; only requests
    /// without a journaled response are sent
    #[arg(long)]
    pub resume: bool,

    /// Commit the run folder into the store (.exprepo/, created when missing) when done
    #[arg(long)]
    pub archive: bool,

    /// Use the datasets as last prepared in prepared/, without reading the raw files
    #[arg(long, alias = "skip_prepare")]
    pub skip_prepare: bool,

    /// Reuse the request files (inputs/) of the run being resumed
    #[arg(long, alias = "skip_build")]
    pub skip_build: bool,

    /// With --condition treatment: take control rows from this earlier run (a REF), paired by item
    #[arg(long, value_name = "REF", add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub baseline: Option<String>,

    /// Print the plan (trials, jobs, requests, estimated tokens and cost) and send nothing
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,

    /// Commit message for --archive
    #[arg(short = 'm', long, value_name = "MSG")]
    pub message: Option<String>,

    /// Name the run (a label like an id: letters, digits, '.', '_', '-'); the id stays its
    /// identity. Kept in run.json and its commits; log, list and show print it beside the id
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Override a config value for this run without editing the file: a dotted key and a YAML
    /// value, validated like the file and recorded in the run's config snapshot (repeatable)
    #[arg(short = 'S', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Stop sending before the run's spend could pass X USD (in-flight requests count at
    /// their maximum cost); the run ends incomplete and `--resume --max-usd` raises the cap
    /// [default: execution.max_usd]
    #[arg(long, alias = "max_usd", value_name = "X")]
    pub max_usd: Option<f64>,

    /// Send every request: reuse no earlier answer, and offer none of this run's to later runs
    /// (execution.cache: off)
    #[arg(long, alias = "no_cache")]
    pub no_cache: bool,

    /// How requests are delivered: as each model's `backend` says (live, or the Batch API), or
    /// `files`: write the batch input files and stop; `exp ingest` reads their outputs back
    #[arg(long, value_enum, default_value = "config")]
    pub backend: BackendArg,

    /// Print the summary (or the --dry-run plan) as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum BackendArg {
    /// Each model's `backend` from the config
    Config,
    /// Batch input files only, for any batch runner (OpenAI, vllm run-batch)
    Files,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ConditionArg {
    Control,
    Treatment,
    Both,
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    let workspace = workspace(ctx)?;
    let config = exp::eval::config::locate(&args.config, &workspace);
    let opts = RunOptions {
        config,
        workspace: workspace.clone(),
        run_id: args.run_id.clone(),
        condition: match args.condition {
            ConditionArg::Control => Some(Condition::Control),
            ConditionArg::Treatment => Some(Condition::Treatment),
            ConditionArg::Both => None,
        },
        parts_per_dataset: args.parts_per_dataset,
        max_concurrent_jobs: args.max_concurrent_jobs,
        resume: args.resume,
        skip_prepare: args.skip_prepare,
        skip_build: args.skip_build,
        baseline: args.baseline.clone(),
        dry_run: args.dry_run,
        stop_on_ctrl_c: true,
        overrides: args
            .set
            .iter()
            .map(|s| exp::eval::overrides::Override::parse(s))
            .collect::<std::result::Result<_, _>>()?,
        no_cache: args.no_cache,
        max_usd: args.max_usd,
        backend_files: args.backend == BackendArg::Files,
        ingest: Vec::new(),
        name: args.name.clone(),
    };
    let progress = ui::TermProgress::new();
    let open_baseline = |reference: &str| exp::eval::archive::open_baseline(&workspace, reference);
    match runner::run(&opts, &open_baseline, &progress)? {
        Outcome::Planned(plan) => render_plan(&plan, args.json),
        Outcome::Ran(summary) => {
            // An interrupted run is committed too (its run.json says incomplete): history keeps
            // what was paid for, and a later resume commits on top of it.
            let archived = if args.archive {
                Some(exp::eval::archive::commit_run(
                    &workspace,
                    &summary,
                    args.message.as_deref(),
                    &progress,
                )?)
            } else {
                None
            };
            if summary.status == RunStatus::AwaitingOutputs {
                return render_awaiting(&summary, archived.as_ref(), args.json);
            }
            render_summary(&summary, archived.as_ref(), args.json)?;
            if let Some((cap, spent)) = summary.outcome.budget
                && summary.outcome.budget_stopped
            {
                return Err(exp::error::Hinted::new(
                    format!(
                        "run {} stopped at its budget: {} spent of the {} cap (execution.max_usd), before every request was answered",
                        summary.run_id,
                        usd(spent),
                        usd(cap)
                    ),
                    format!(
                        "raise the cap and continue: `exp run --config {} --resume --run-id {} --max-usd {}`",
                        args.config.display(),
                        summary.run_id,
                        next_cap(cap)
                    ),
                )
                .into());
            }
            if summary.status == RunStatus::Incomplete {
                let resume = format!(
                    "`exp run --config {} --resume --run-id {}`",
                    args.config.display(),
                    summary.run_id
                );
                let down = summary.outcome.endpoints.iter().find_map(|e| e.down.as_ref());
                return Err(match down {
                    Some(down) => exp::error::Hinted::new(
                        format!("run {} stopped: {down}", summary.run_id),
                        endpoint_down_hint(down, &resume),
                    ),
                    None => exp::error::Hinted::new(
                        format!("run {} stopped before every request was answered", summary.run_id),
                        format!("continue it with {resume}"),
                    ),
                }
                .into());
            }
            if summary.status == RunStatus::Failed {
                return Err(exp::error::Hinted::new(
                    format!("run {}: every request failed", summary.run_id),
                    "see the error column of a trial's results/predictions.csv, fix the endpoint, then `exp run --resume`",
                )
                .into());
            }
            Ok(())
        }
    }
}

/// `--repo`, else the nearest folder upward holding `.exprepo/`, else the current folder.
pub(super) fn workspace(ctx: &Context) -> Result<PathBuf> {
    if let Some(r) = &ctx.repo {
        return Ok(r.clone());
    }
    let cwd = std::env::current_dir()?;
    Ok(cwd.ancestors().find(|d| d.join(".exprepo").is_dir()).unwrap_or(&cwd).to_path_buf())
}

/// `--json`: one document on stdout, shaped like a finished run's (id, folder, status, trials,
/// totals), so a script reads both the same way.
fn render_plan(plan: &DryRun, json: bool) -> Result<()> {
    if json {
        return ui::print_json(
            ui::Schema::RUN_PLAN,
            &serde_json::json!({
                "run_id": plan.run_id,
                "run_dir": plan.run_dir,
                "status": "planned",
                "conditions": plan.conditions,
                "parts_per_dataset": plan.parts_per_dataset,
                "trials": plan.trials,
                "totals": plan.totals,
                "unpriced_models": plan.unpriced_models,
                "max_usd": plan.max_usd,
            }),
        );
    }
    let mut t = ui::table([
        "trial",
        "provider",
        "jobs",
        "requests",
        "est. input tok",
        "max output tok",
        "est. cost",
    ])
    .cut(["trial"]);
    for tr in &plan.trials {
        t.add_row(vec![
            tr.slug.clone(),
            tr.provider.clone(),
            count(tr.jobs as u64),
            count(tr.requests),
            count(tr.est_input_tokens),
            count(tr.max_output_tokens),
            format!("{} – {}", usd(tr.est_input_usd), usd(tr.max_usd)),
        ]);
    }
    ui::outln!("{t}")?;
    let conds: Vec<&str> = plan.conditions.iter().map(|c| c.as_str()).collect();
    let tot = &plan.totals;
    ui::outln!(
        "dry run: {} × {} · {} ({} per dataset) · {}",
        plural(plan.trials.len() as u64, "trial"),
        conds.join("+"),
        plural(tot.jobs as u64, "job"),
        plural(plan.parts_per_dataset as u64, "part"),
        plural(tot.requests, "request")
    )?;
    ui::outln!(
        "estimated input tokens {} (about 4 characters a token); output at most {} (max_tokens)",
        count(tot.est_input_tokens),
        count(tot.max_output_tokens)
    )?;
    ui::outln!(
        "estimated cost: {} for input, at most {} in all",
        usd(tot.est_input_usd),
        usd(tot.max_usd)
    )?;
    if let Some(cap) = plan.max_usd {
        // The budget counts a request in flight at its body's bytes as input tokens, more than
        // this estimate, so near the cap it may stop a little earlier than these figures say.
        let fits = if tot.max_usd <= cap {
            "the plan fits even at its maximum".to_string()
        } else {
            format!(
                "the plan may cost up to {}, so the run may stop sending before the end (resume it with a higher --max-usd)",
                usd(tot.max_usd)
            )
        };
        ui::outln!("budget: {} (execution.max_usd): {fits}", usd(cap))?;
    }
    if !plan.unpriced_models.is_empty() {
        ui::outln!(
            "note: no pricing for {}: their cost counts as $0",
            plan.unpriced_models.join(", ")
        )?;
    }
    ui::outln!("nothing was sent or written")?;
    Ok(())
}

/// `--json`: one document on stdout (progress, warnings and errors go to stderr), also for an
/// incomplete or failed run, whose exit code still says so.
pub(super) fn render_summary(
    s: &RunSummary,
    archived: Option<&Archived>,
    json: bool,
) -> Result<()> {
    let warn = || {
        for w in &s.warnings {
            eprintln!("warning: {w}");
        }
    };
    if json {
        warn();
        return ui::print_json(ui::Schema::RUN, &summary_json(s, archived));
    }
    let mut t = ui::table([
        "trial",
        "status",
        "control",
        "treatment",
        "effect",
        "p",
        "Holm p",
        "failures",
        "cost",
    ])
    .cut(["trial"]);
    for tr in &s.manifest.trials {
        t.add_row(vec![
            tr.slug.clone(),
            tr.status.clone(),
            condition_cell(tr, "control"),
            condition_cell(tr, "treatment"),
            or_missing(tr.effect, points),
            or_missing(tr.p_value, p_value),
            or_missing(tr.holm_p, p_value),
            count(tr.failures),
            usd(tr.usd),
        ]);
    }
    ui::outln!("{t}")?;
    let tot = &s.manifest.totals;
    let resumed = if s.resumed {
        format!(" (resumed; {} answered earlier)", count(s.already_done))
    } else {
        String::new()
    };
    ui::outln!(
        "run {}: {}{resumed} · {} sent now, {} failed · {} input / {} output tokens · {}",
        s.run_id,
        s.status.as_str(),
        plural(s.outcome.sent, "request"),
        count(s.outcome.failures),
        count(tot.input_tokens),
        count(tot.output_tokens),
        usd(tot.usd)
    )?;
    if s.reused > 0 || tot.reused > 0 {
        ui::outln!(
            "cache: {} reused now ({} in all), not sent · {} saved",
            plural(s.reused, "answer"),
            count(tot.reused),
            usd(tot.usd_saved)
        )?;
    }
    if let Some((cap, spent)) = s.outcome.budget {
        ui::outln!("budget: {} spent of {} (execution.max_usd)", usd(spent), usd(cap))?;
    }
    for (name, n, written) in &s.datasets {
        ui::outln!(
            "dataset {name}: {} ({})",
            plural(*n as u64, "item"),
            if *written { "prepared" } else { "reused from prepared/" }
        )?;
    }
    for e in &s.outcome.endpoints {
        render_endpoint(e)?;
    }
    ui::outln!("results: {}", display_rel(&s.run_dir))?;
    if let Some(a) = archived {
        if a.created_store {
            ui::outln!("created the store {}", display_rel(&a.store_dir))?;
        }
        let short = a.commit.get(..12).unwrap_or(&a.commit);
        let note = if a.unchanged { " (unchanged since its last commit)" } else { "" };
        ui::outln!("archived: runs/{} -> {short}{note}", s.run_id)?;
    }
    warn();
    Ok(())
}

/// One line per model whose endpoint is worth a word: adaptive concurrency (what it reached)
/// or more than one replica (each one's share, errors and rests).
fn render_endpoint(e: &EndpointUse) -> Result<()> {
    let (model, c) = (&e.model, &e.concurrency);
    if c.mode == "auto" {
        ui::outln!(
            "model {model}: concurrency auto reached {} (ends at {}, ceiling {}; halved {} on 429/503)",
            count(c.peak as u64),
            count(c.limit as u64),
            count(c.ceiling as u64),
            plural(c.decreases, "time"),
        )?;
    }
    if e.replicas.len() > 1 {
        for r in &e.replicas {
            ui::outln!(
                "model {model}: replica {}: {}, {} errors, {}",
                r.url,
                plural(r.requests, "request"),
                count(r.errors),
                plural(r.rests, "rest"),
            )?;
        }
    }
    Ok(())
}

/// A cap to suggest after the run stopped at `cap`: twice as much, as a plain number.
fn next_cap(cap: f64) -> String {
    let next = if cap > 0.0 { cap * 2.0 } else { 1.0 };
    format!("{}", (next * 100.0).ceil() / 100.0)
}

/// The fields of `exp.run/1` (docs/JSON.md), which `exp.ingest/1` extends.
pub(super) fn summary_json(s: &RunSummary, archived: Option<&Archived>) -> serde_json::Value {
    serde_json::json!({
        "run_id": s.run_id,
        "run_dir": s.run_dir,
        "status": s.status,
        "resumed": s.resumed,
        "already_done": s.already_done,
        "sent": s.outcome.sent,
        "reused": s.reused,
        "failures": s.outcome.failures,
        "interrupted": s.outcome.interrupted,
        "budget": s.outcome.budget.map(|(cap, spent)| serde_json::json!({
            "max_usd": cap, "spent_usd": spent, "stopped": s.outcome.budget_stopped,
        })),
        "trials": s.manifest.trials,
        "totals": s.manifest.totals,
        "datasets": s.datasets.iter().map(|(name, items, prepared)| serde_json::json!({
            "name": name, "items": items, "prepared": prepared,
        })).collect::<Vec<_>>(),
        "archived": archived.map(|a| serde_json::json!({
            "commit": a.commit, "created_store": a.created_store, "unchanged": a.unchanged,
            "store": a.store_dir,
        })),
        "warnings": s.warnings,
        "endpoints": s.outcome.endpoints,
    })
}

/// File mode: where the batch input files are, and what to do with their outputs.
fn render_awaiting(s: &RunSummary, archived: Option<&Archived>, json: bool) -> Result<()> {
    let files: Vec<serde_json::Value> = s
        .batch_files
        .iter()
        .map(|c| {
            serde_json::json!({"path": s.run_dir.join(&c.path), "model": c.model,
                "requests": c.requests, "bytes": c.bytes})
        })
        .collect();
    if json {
        return ui::print_json(
            ui::Schema::RUN_AWAITING,
            &serde_json::json!({
                "run_id": s.run_id, "run_dir": s.run_dir, "status": s.status, "batch_files": files,
                "archived": archived.map(|a| a.commit.clone()),
            }),
        );
    }
    let mut t =
        ui::table(["batch input file", "model", "requests", "bytes"]).cut(["batch input file"]);
    for c in &s.batch_files {
        let path = display_rel(&s.run_dir.join(&c.path));
        t.add_row(vec![path, c.model.clone(), count(c.requests as u64), count(c.bytes)]);
    }
    ui::outln!("{t}")?;
    let requests: usize = s.batch_files.iter().map(|c| c.requests).sum();
    ui::outln!(
        "run {}: awaiting outputs · {} in {}",
        s.run_id,
        plural(requests as u64, "request"),
        plural(s.batch_files.len() as u64, "batch input file")
    )?;
    ui::outln!(
        "next: run them (OpenAI Batch API, vllm run-batch, …), then `exp ingest OUTPUT.jsonl…` completes the run"
    )?;
    if let Some(a) = archived {
        ui::outln!("archived: runs/{} -> {}", s.run_id, a.commit.get(..12).unwrap_or(&a.commit))?;
    }
    Ok(())
}

pub(super) fn display_rel(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

/// A condition's accuracy and item count in a trial row: "69.2% (n=104)".
pub(super) fn condition_cell(tr: &ManifestTrial, condition: &str) -> String {
    or_missing(tr.metrics.get(condition), |m| {
        format!("{} (n={})", or_missing(m.accuracy, percent), count(m.n))
    })
}

/// What to do about an endpoint that stopped a run. A certificate the client does not trust
/// never heals by waiting: say how to trust it (rustls reads `SSL_CERT_FILE`, as OpenSSL does).
fn endpoint_down_hint(down: &str, resume: &str) -> String {
    if down.contains("invalid peer certificate") || down.contains("certificate verify failed") {
        return format!(
            "the endpoint's TLS certificate is not trusted: if your organisation's CA signed it, \
             set SSL_CERT_FILE to that CA's certificate (PEM); if it is for another name, put \
             that name in base_url; then {resume}"
        );
    }
    format!("bring the endpoint back (or fix base_url), then {resume}")
}
