use std::io::Write;

use clap::Args;
use exp::display::{count, or_missing, p_value, percent, points, usd};
use exp::store::{Commit, Mode, Summary};

use super::init::open_repo;
use super::{Context, ui};

/// Show a run's commit: metadata and the headline table (per trial: accuracy of control and
/// treatment, effect, p, Holm p, cost), or one file (or folder listing) at that commit.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  exp show t1_r20250821\n  exp show HEAD~1 --json\n  \
exp show runs/20251127-130501 multi_trial_manifest.json")]
pub struct ShowArgs {
    /// Revision: run id, runs/ID, tags/NAME, tag, hex prefix, HEAD, REF~N, REF@{N}
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: String,
    /// A file or folder inside the run, e.g. `slug/results/metrics.json`
    pub path: Option<String>,
    /// Print the commit (or folder listing) as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &ShowArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let (id, commit) = repo.resolve_commit(&args.rev)?;
    if let Some(path) = &args.path {
        let entry = repo.lookup_path(&id, path)?;
        if entry.mode == Mode::Tree {
            let tree = repo.odb.read_tree(&entry.id)?;
            if args.json {
                return ui::print_json(
                    ui::Schema::SHOW_TREE,
                    &serde_json::json!({ "path": path, "entries": tree.entries }),
                );
            }
            let mut t = ui::table(["mode", "name", "object"]).cut(["name"]);
            for e in &tree.entries {
                let name =
                    if e.mode == Mode::Tree { format!("{}/", e.name) } else { e.name.clone() };
                t.add_row(vec![format!("{:?}", e.mode).to_lowercase(), name, e.id.short()]);
            }
            ui::outln!("{t}")?;
            return Ok(());
        }
        let mut out = ui::stdout();
        repo.odb.read_to(&entry.id, &mut out)?;
        out.flush()?;
        return Ok(());
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            id: String,
            refs: Vec<String>,
            #[serde(flatten)]
            commit: &'a Commit,
        }
        let refs = repo.refs_pointing_at(&id)?.iter().map(|r| r.to_string()).collect();
        return ui::print_json(ui::Schema::SHOW, &Shown { id: id.to_hex(), refs, commit: &commit });
    }
    let refs: Vec<String> = repo.refs_pointing_at(&id)?.iter().map(|r| r.to_string()).collect();
    ui::outln!(
        "commit   {id}{}",
        if refs.is_empty() { String::new() } else { format!(" ({})", refs.join(", ")) }
    )?;
    ui::outln!("run      {}", commit.run_label())?;
    ui::outln!("status   {}", commit.status.as_deref().unwrap_or("-"))?;
    ui::outln!("time     {}", commit.time)?;
    ui::outln!("message  {}", commit.message)?;
    for p in &commit.parents {
        ui::outln!("parent   {p}")?;
    }
    if let Some(h) = &commit.config_hash {
        ui::outln!("config   {h}")?;
    }
    if let Some(p) = &commit.provenance {
        let code = match &p.git_commit {
            Some(c) => format!(
                "git {c}{}{}",
                if p.dirty { " (dirty)" } else { "" },
                if p.untracked { " (untracked files)" } else { "" }
            ),
            None => "-".to_string(),
        };
        let note = p.note.as_deref().map(|n| format!(" [{n}]")).unwrap_or_default();
        ui::outln!("code     {code}{note}")?;
    }
    ui::outln!("exp      {}", commit.exp_version)?;
    if let Some(p) = &commit.path {
        ui::outln!("folder   {p}")?;
    }
    if commit.summary.trials.is_empty() {
        ui::outln!("\n(no results in this run)")?;
    } else {
        ui::outln!("\n{}", headline_table(&commit.summary))?;
        if let Some(total) = commit.summary.usd {
            ui::outln!("total cost {}", usd(total))?;
        }
    }
    Ok(())
}

/// Per trial: n, accuracy control/treatment, effect, p, Holm p, cost, failures.
pub(crate) fn headline_table(s: &Summary) -> ui::Table {
    let mut t = ui::table([
        "trial",
        "n",
        "control",
        "treatment",
        "effect",
        "p",
        "Holm p",
        "cost",
        "failures",
    ])
    .cut(["trial"]);
    for tr in &s.trials {
        let acc = |c: &str| or_missing(tr.conditions.get(c).and_then(|c| c.accuracy), percent);
        t.add_row(vec![
            tr.slug.clone(),
            or_missing(tr.conditions.values().filter_map(|c| c.n).max(), count),
            acc("control"),
            acc("treatment"),
            or_missing(tr.effect, points),
            or_missing(tr.p_value, p_value),
            or_missing(tr.holm_p, p_value),
            or_missing(tr.usd, usd),
            or_missing(tr.failures, count),
        ]);
    }
    t
}
