use clap::Args;

use super::init::open_repo;
use super::show::headline_table;
use super::{Context, ui};
use exp::display::{or_missing, usd};

/// Every run and tag in the store, one row each (the old list_runs.py).
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  exp list\n  exp list -v\n  exp list --json")]
pub struct ListArgs {
    /// Also show each run's per-trial headline table
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &ListArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let rows = repo.list_refs()?;
    if args.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, id, c)| serde_json::json!({"ref": n, "id": id, "commit": c}))
            .collect();
        return ui::print_json(&out);
    }
    if rows.is_empty() {
        ui::outln!("no runs yet: `exp commit experiments/run_<ID>` stores one")?;
        return Ok(());
    }
    let mut t = ui::table(["ref", "commit", "time", "status", "trials", "cost", "message"])
        .cut(["ref", "message"]);
    for (n, id, c) in &rows {
        t.add_row(vec![
            n.to_string(),
            id.short(),
            ui::time(&c.time),
            c.status.clone().unwrap_or("-".into()),
            c.summary.trials.len().to_string(),
            or_missing(c.summary.usd, usd),
            c.message.clone(),
        ]);
    }
    ui::outln!("{t}")?;
    if args.verbose {
        for (n, _, c) in &rows {
            if !c.summary.trials.is_empty() {
                ui::outln!("\n{n}")?;
                ui::outln!("{}", headline_table(&c.summary))?;
            }
        }
    }
    Ok(())
}
