use std::path::PathBuf;

use clap::Args;

use super::run::{condition_cell, display_rel, workspace};
use super::{Context, Result, ui};
use exp::display::{count, or_missing, p_value, points, usd};
use exp::eval::rescore::{self, RescoreOptions};

/// Score a run's answers anew (other scoring, new statistics and reports) without sending a
/// request: a new run, committed with REF as its parent, status `rescored`.
///
/// The answers and requests are read from the store, so REF may be any revision (run id, tag,
/// HEAD~1, commit id), checked out or not; they are copied byte for byte and add nothing to the
/// store. The config is REF's own with the -S overrides, or --config FILE, whose requests must be
/// REF's: only scoring, significance, execution and prices may differ.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  exp rescore HEAD -S scoring.type=regex -S 'scoring.extract=\"answer: (\\w+)\"'
  exp rescore runs/20251127-130501 --config config/eval_config.yaml   # edited scoring: section
  exp rescore HEAD~1 -S significance.alpha=0.01 -m 'stricter alpha'
  exp diff HEAD~1 HEAD                                # what the new scoring changed")]
pub struct RescoreArgs {
    /// The run whose answers are scored: a run id, tag, HEAD~1, commit id, …
    #[arg(value_name = "REF", add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub reference: String,

    /// A config to score with (its requests must be REF's) [default: REF's own config]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override a config value (scoring.…, significance.…): a dotted key and a YAML value
    /// (repeatable)
    #[arg(short = 'S', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Run id of the new run [default: the UTC time, 20251127-130501]
    #[arg(long, alias = "run_id", value_name = "ID")]
    pub run_id: Option<String>,

    /// Commit message [default: "rescore REF (run ID) with new scoring"]
    #[arg(short = 'm', long, value_name = "MSG")]
    pub message: Option<String>,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &RescoreArgs) -> Result<()> {
    let opts = RescoreOptions {
        reference: args.reference.clone(),
        config: args.config.clone(),
        workspace: workspace(ctx)?,
        overrides: args
            .set
            .iter()
            .map(|s| exp::eval::overrides::Override::parse(s))
            .collect::<std::result::Result<_, _>>()?,
        run_id: args.run_id.clone(),
        message: args.message.clone(),
    };
    let progress = ui::TermProgress::new();
    let r = rescore::rescore(&opts, &progress)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let tot = &r.manifest.totals;
    if args.json {
        return ui::print_json(
            ui::Schema::RESCORE,
            &serde_json::json!({
                "run_id": r.run_id,
                "run_dir": r.run_dir,
                "status": "rescored",
                "rescored_from": r.from,
                "commit": r.commit,
                "sent": 0,
                "reused": tot.reused,
                "trials": r.manifest.trials,
                "totals": tot,
                "warnings": r.warnings,
            }),
        );
    }
    let mut t =
        ui::table(["trial", "control", "treatment", "effect", "p", "Holm p"]).cut(["trial"]);
    for tr in &r.manifest.trials {
        t.add_row(vec![
            tr.slug.clone(),
            condition_cell(tr, "control"),
            condition_cell(tr, "treatment"),
            or_missing(tr.effect, points),
            or_missing(tr.p_value, p_value),
            or_missing(tr.holm_p, p_value),
        ]);
    }
    ui::outln!("{t}")?;
    ui::outln!(
        "run {}: rescored {} (run {}) · 0 requests sent · {} answers reused · {} saved",
        r.run_id,
        r.from.reference,
        r.from.run,
        count(tot.reused),
        usd(tot.usd_saved)
    )?;
    ui::outln!("results: {}", display_rel(&r.run_dir))?;
    let short = r.commit.get(..12).unwrap_or(&r.commit);
    let parent = r.from.commit.get(..12).unwrap_or(&r.from.commit);
    ui::outln!("committed: runs/{} -> {short} (parent {parent})", r.run_id)?;
    Ok(())
}
