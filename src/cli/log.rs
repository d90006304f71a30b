use clap::Args;
use exp::store::{ObjectId, RefName};

use super::init::open_repo;
use super::show::headline_table;
use super::{Context, ui};
use exp::display::{or_missing, usd};

/// Run history, newest first, with status, trial count and cost from each commit's summary.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp log\n  exp log t1_r20250821 -v\n  exp log --all -n 20 --json"
)]
pub struct LogArgs {
    /// Where to start [default: HEAD]
    pub rev: Option<String>,
    /// History of every ref, not just one
    #[arg(long)]
    pub all: bool,
    /// Show at most N commits
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub max_count: Option<usize>,
    /// Also show each commit's per-trial headline table
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &LogArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    if !args.all && args.rev.is_none() && repo.refs.read(&RefName::head())?.is_none() {
        ui::outln!("no commits yet: `exp commit experiments/run_<ID>` stores a run")?;
        return Ok(());
    }
    let tips: Vec<ObjectId> = if args.all {
        let mut t: Vec<ObjectId> = repo.refs.list("")?.into_iter().map(|(_, id)| id).collect();
        t.extend(repo.refs.read(&RefName::head())?);
        t
    } else {
        vec![repo.resolve(args.rev.as_deref().unwrap_or("HEAD"))?]
    };
    let commits = repo.log(&tips, args.max_count)?;
    let refs = repo.refs.list("")?;
    let decorate = |id: &ObjectId| -> Vec<String> {
        refs.iter().filter(|(_, i)| i == id).map(|(n, _)| n.to_string()).collect()
    };
    if args.json {
        let rows: Vec<serde_json::Value> = commits
            .iter()
            .map(|(id, c)| serde_json::json!({"id": id, "refs": decorate(id), "commit": c}))
            .collect();
        return ui::print_json(&rows);
    }
    if commits.is_empty() {
        ui::outln!("no commits")?;
        return Ok(());
    }
    if args.verbose {
        for (id, c) in &commits {
            let d = decorate(id);
            let d = if d.is_empty() { String::new() } else { format!(" ({})", d.join(", ")) };
            ui::outln!("commit {}{d}", id.short())?;
            ui::outln!(
                "  {} · run {} · {} · {} · {}",
                c.time,
                c.run_id,
                c.status.as_deref().unwrap_or("-"),
                or_missing(c.summary.usd, usd),
                c.message
            )?;
            if !c.summary.trials.is_empty() {
                ui::outln!("{}", headline_table(&c.summary))?;
            }
            ui::outln!()?;
        }
        return Ok(());
    }
    // The refs go before the message, as git decorates a log line (a column of their own
    // would leave the message no room at 80 columns), all but the run's own `runs/<run>`,
    // which the run column already says.
    let mut t = ui::table(["commit", "time", "run", "status", "trials", "cost", "message"])
        .cut(["message"]);
    for (id, c) in &commits {
        let own = format!("runs/{}", c.run_id);
        let refs: Vec<String> = decorate(id).into_iter().filter(|r| *r != own).collect();
        let refs = if refs.is_empty() { String::new() } else { format!("({}) ", refs.join(", ")) };
        t.add_row(vec![
            id.short(),
            ui::time(&c.time),
            c.run_id.clone(),
            c.status.clone().unwrap_or("-".into()),
            c.summary.trials.len().to_string(),
            or_missing(c.summary.usd, usd),
            format!("{refs}{}", c.message),
        ]);
    }
    ui::outln!("{t}")?;
    Ok(())
}
