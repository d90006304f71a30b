use std::path::PathBuf;

use clap::Args;

use super::run::{display_rel, render_summary, summary_json, workspace};
use super::{Context, Result, ui};
use exp::display::count;
use exp::eval::batch::ingest::latest_awaiting;
use exp::eval::runner::{self, Outcome, RunOptions, RunStatus};

/// Read batch output files into a run and complete it (results, statistics, reports).
///
/// The files are recognized by content, whatever they are called: OpenAI's output and error
/// files, vLLM's `run-batch` output, any JSONL of {"custom_id", "response", "error"} lines. Each
/// line answers the request of its custom_id (`<trial>/<custom_id>` as `exp run --backend files`
/// writes them; a bare custom_id of inputs/ when only one trial has it). The run is --run-id, else
/// the newest run awaiting outputs. Nothing is journaled unless every line of every file reads:
/// a malformed or oversized line is an error naming its file and line; an unknown, duplicated or
/// already answered custom_id is a warning, and that line is skipped.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  exp run --backend files                     # writes experiments/run_<ID>/batch_inputs/…
  exp ingest ~/Downloads/batch_abc_output.jsonl ~/Downloads/batch_abc_error.jsonl --archive
  vllm run-batch -i in.jsonl -o out.jsonl --model M && exp ingest out.jsonl --run-id 20251127-130501")]
pub struct IngestArgs {
    /// Batch output files (JSONL)
    #[arg(required = true, value_name = "OUTPUT.jsonl")]
    pub files: Vec<PathBuf>,

    /// The run to complete [default: the newest run awaiting outputs]
    #[arg(long, alias = "run_id", value_name = "ID")]
    pub run_id: Option<String>,

    /// The run's config [default: the one the run was started with]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Commit the run into the store (.exprepo/, created when missing) when done
    #[arg(long)]
    pub archive: bool,

    /// Commit message for --archive
    #[arg(short = 'm', long, value_name = "MSG")]
    pub message: Option<String>,

    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &IngestArgs) -> Result<()> {
    let workspace = workspace(ctx)?;
    let given = args.config.clone().unwrap_or_else(|| exp::eval::config::DEFAULT_CONFIG.into());
    let paths =
        exp::eval::config::load_paths(&exp::eval::config::locate(&given, &workspace), &workspace)?;
    let experiments = workspace.join(&paths.experiments_dir);
    let (run_id, recorded) = match &args.run_id {
        Some(id) => {
            let dir = runner::run_dir(&experiments, id);
            (id.clone(), runner::read_run_json(&dir).ok().and_then(|rj| rj.config))
        }
        None => {
            let rj = latest_awaiting(&experiments)?;
            (rj.run_id, rj.config)
        }
    };
    let config = args.config.clone().or(recorded.map(PathBuf::from)).unwrap_or(given);
    let opts = RunOptions {
        config: exp::eval::config::locate(&config, &workspace),
        workspace: workspace.clone(),
        run_id: Some(run_id),
        resume: true,
        ingest: args.files.clone(),
        ..RunOptions::default()
    };
    let progress = ui::TermProgress::new();
    let open_baseline = |reference: &str| exp::eval::archive::open_baseline(&workspace, reference);
    let Outcome::Ran(summary) = runner::run(&opts, &open_baseline, &progress)? else {
        return Ok(());
    };
    if !args.json
        && let Some(i) = &summary.ingested
    {
        ui::outln!(
            "ingested {} answers ({} failed) from {}; {} not run by the batch",
            count(i.journaled),
            count(i.failures),
            args.files.iter().map(|f| display_rel(f)).collect::<Vec<_>>().join(", "),
            count(i.not_run)
        )?;
    }
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
    if args.json {
        for w in &summary.warnings {
            eprintln!("warning: {w}");
        }
        let mut v = summary_json(&summary, archived.as_ref());
        v["ingested"] = serde_json::json!({
            "files": args.files,
            "journaled": summary.ingested.as_ref().map_or(0, |i| i.journaled),
            "failures": summary.ingested.as_ref().map_or(0, |i| i.failures),
            "not_run": summary.ingested.as_ref().map_or(0, |i| i.not_run),
        });
        return ui::print_json(ui::Schema::INGEST, &v);
    }
    render_summary(&summary, archived.as_ref(), false)?;
    if summary.status == RunStatus::AwaitingOutputs {
        ui::outln!("run {} still awaits outputs for its unanswered requests", summary.run_id)?;
    }
    Ok(())
}
