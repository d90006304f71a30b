use clap::Args;

use super::init::open_repo;
use super::{Context, ui};
use exp::diff::pilot;
use exp::display;

/// How many items each trial needs: from a stored pilot run, the items (and with clusters the
/// clusters) for the trial's headline test to detect a target effect with a target power.
/// Reads the run from the store; no checkout needed.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp power pilot-run                    # 2-point effect, 80% power\n  exp power HEAD --effect 0.05 --power 0.9\n  exp power tags/pilot --json"
)]
pub struct PowerArgs {
    /// The pilot run: a run id, runs/ID, tags/NAME, HEAD, …
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: String,
    /// Target effect, treatment − control (0.02 = 2 percentage points of accuracy)
    #[arg(long, default_value_t = 0.02, value_parser = effect)]
    pub effect: f64,
    /// Target power: the probability of detecting that effect
    #[arg(long, default_value_t = 0.8, value_parser = probability)]
    pub power: f64,
    /// Significance level of the two-sided test
    #[arg(long, default_value_t = 0.05, value_parser = probability)]
    pub alpha: f64,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(format!("{s:?} is not a number between 0 and 1 (exclusive)")),
    }
}

fn effect(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(e) if e != 0.0 && e.abs() <= 1.0 => Ok(e.abs()),
        _ => Err(format!("{s:?} is not a non-zero effect between -1 and 1 (0.02 = 2 points)")),
    }
}

pub fn run(ctx: &Context, args: &PowerArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let plan = pilot::plan_run(&repo, &args.rev, args.effect, args.power, args.alpha)?;
    if args.json {
        return ui::print_json(ui::Schema::POWER, &plan);
    }
    ui::outln!(
        "Items needed per trial to detect {:+.1} points with {} power (α = {}), from run {}",
        plan.effect * 100.0,
        display::share(plan.power),
        plan.alpha,
        plan.run_id
    )?;
    let mut t = ui::table(["trial", "test", "pilot items", "pilot power", "items needed", "note"]);
    for tp in &plan.trials {
        let Some(p) = &tp.plan else {
            t.add_row([
                tp.trial.clone(),
                display::MISSING.into(),
                display::MISSING.into(),
                display::MISSING.into(),
                display::MISSING.into(),
                tp.not_computed.clone().unwrap_or_default(),
            ]);
            continue;
        };
        let needed = match (p.items_needed, p.clusters_needed) {
            (Some(i), Some(c)) => format!("{i} ({c} clusters)"),
            (Some(i), None) => i.to_string(),
            _ => display::MISSING.into(),
        };
        t.add_row([
            tp.trial.clone(),
            p.test.label().into(),
            p.pilot_items.to_string(),
            display::percent(p.power_at_pilot_size),
            needed,
            p.note.clone().unwrap_or_default(),
        ]);
    }
    ui::outln!("{t}")?;
    Ok(())
}
