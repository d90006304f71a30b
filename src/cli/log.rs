use std::collections::HashSet;

use clap::Args;
use exp::history;
use exp::store::{Commit, ObjectId, Repo, TrialSummary};

use super::init::open_repo;
use super::show::headline_table;
use super::{Context, ui};
use exp::display::{or_missing, p_eq, points, usd};

/// Run history, newest first: every run of the store (local and fetched) with its best and worst
/// headline effect, p-value and cost, or the history of one revision, or a range `A..B`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  exp log                          # every run, newest first
  exp log -n 5 --since 2026-11-01
  exp log t1_r20250821 -v          # one run's history with its per-trial tables
  exp log HEAD~3..HEAD             # what the last three runs added
  exp log --json")]
pub struct LogArgs {
    /// A revision (its history) or a range A..B (reachable from B, not from A) [default: every run]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: Option<String>,
    /// Every ref's history (the default when no revision is given; kept for old scripts)
    #[arg(long)]
    pub all: bool,
    /// Show at most N commits
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    pub max_count: Option<usize>,
    /// Only commits made at or after T: a date (2026-11-01), an RFC 3339 time, or an age (7d, 12h)
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Also show each commit's per-trial headline table
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &LogArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let mut commits = match args.rev.as_deref() {
        Some(rev) if !args.all => select(&repo, rev)?,
        _ => history::all_commits(&repo)?,
    };
    if let Some(since) = &args.since {
        let cutoff = history::parse_since(since, chrono::Utc::now())?;
        commits.retain(|(_, c)| history::commit_time(c).is_some_and(|t| t >= cutoff));
    }
    if let Some(n) = args.max_count {
        commits.truncate(n);
    }
    let refs = repo.refs.list("")?;
    let decorate = |id: &ObjectId| -> Vec<String> {
        refs.iter().filter(|(_, i)| i == id).map(|(n, _)| n.to_string()).collect()
    };
    if args.json {
        let rows: Vec<serde_json::Value> = commits
            .iter()
            .map(|(id, c)| serde_json::json!({"id": id, "refs": decorate(id), "commit": c}))
            .collect();
        return ui::print_json(ui::Schema::LOG, &ui::Named("commits", &rows));
    }
    if commits.is_empty() {
        let empty = args.rev.is_none() && args.since.is_none();
        ui::outln!(
            "{}",
            if empty {
                "no commits yet: `exp run --archive` or `exp commit experiments/run_<ID>` stores a run"
            } else {
                "no commits"
            }
        )?;
        return Ok(());
    }
    if args.verbose {
        for (id, c) in &commits {
            print_verbose(id, c, &decorate(id))?;
        }
        return Ok(());
    }
    // The refs go before the message, as git decorates a log line (a column of their own
    // would leave the message no room at 80 columns), all but the run's own `runs/<run>`,
    // which the run column already says.
    let mut t = ui::table(["commit", "time", "run", "trials", "best", "worst", "cost", "message"])
        .cut(["message"]);
    for (id, c) in &commits {
        let (best, worst) = extremes(&c.summary.trials);
        let own = format!("runs/{}", c.run_id);
        let refs: Vec<String> = decorate(id).into_iter().filter(|r| *r != own).collect();
        let refs = if refs.is_empty() { String::new() } else { format!("({}) ", refs.join(", ")) };
        t.add_row(vec![
            id.short(),
            ui::time(&c.time),
            c.run_label(),
            c.summary.trials.len().to_string(),
            or_missing(best, effect_with_p),
            worst.map(effect_with_p).unwrap_or_default(),
            or_missing(c.summary.usd, usd),
            format!("{refs}{}", c.message),
        ]);
    }
    ui::outln!("{t}")?;
    Ok(())
}

/// The commits `rev` names: a range `A..B` or one revision's history.
fn select(repo: &Repo, rev: &str) -> super::Result<Vec<(ObjectId, Commit)>> {
    if let Some((from, to)) = rev.split_once("..") {
        let to = repo.resolve(if to.is_empty() { "HEAD" } else { to })?;
        let exclude: HashSet<ObjectId> = if from.is_empty() {
            HashSet::new()
        } else {
            repo.log(&[repo.resolve(from)?], None)?.into_iter().map(|(id, _)| id).collect()
        };
        let mut out = repo.log(&[to], None)?;
        out.retain(|(id, _)| !exclude.contains(id));
        return Ok(out);
    }
    Ok(repo.log(&[repo.resolve(rev)?], None)?)
}

fn print_verbose(id: &ObjectId, c: &Commit, refs: &[String]) -> std::io::Result<()> {
    let d = if refs.is_empty() { String::new() } else { format!(" ({})", refs.join(", ")) };
    ui::outln!("commit {}{d}", id.short())?;
    ui::outln!(
        "  {} · run {} · {} · {} · {}",
        c.time,
        c.run_label(),
        c.status.as_deref().unwrap_or("-"),
        or_missing(c.summary.usd, usd),
        c.message
    )?;
    if !c.summary.trials.is_empty() {
        ui::outln!("{}", headline_table(&c.summary))?;
    }
    ui::outln!()
}

/// The trials with the largest and the smallest headline effect (the same trial when only one
/// has an effect: then `worst` is None, so the line does not repeat it).
fn extremes(trials: &[TrialSummary]) -> (Option<&TrialSummary>, Option<&TrialSummary>) {
    let with: Vec<&TrialSummary> = trials.iter().filter(|t| t.effect.is_some()).collect();
    let key = |t: &&TrialSummary| t.effect.unwrap_or(0.0);
    let best = with.iter().copied().max_by(|a, b| key(a).total_cmp(&key(b)));
    let worst = with.iter().copied().min_by(|a, b| key(a).total_cmp(&key(b)));
    match (best, worst) {
        (Some(b), Some(w)) if std::ptr::eq(b, w) => (Some(b), None),
        other => other,
    }
}

fn effect_with_p(t: &TrialSummary) -> String {
    let e = or_missing(t.effect, points);
    match t.p_value {
        Some(p) => format!("{e} ({})", p_eq(p)),
        None => e,
    }
}
