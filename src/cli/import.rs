use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use exp::display::{MISSING, plural};

use super::{Context, ui};

/// Import legacy run folders as tagged commits (the migration from the old scripts)
///
/// Each folder becomes a commit on `runs/<NAME>` with a tag `tags/<NAME>` (NAME: the folder's
/// name), status `imported`, dated from names like `t1_r20250821` or `t05_r20250825123456`
/// (else the folder's mtime). Several folders are imported oldest first, each the parent of the
/// next, so `exp log` reads as history. Every file is stored byte-exact; what exp recognizes
/// (config, metrics, costs, OpenAI batch request/output files wherever they lie and whatever they
/// are called) goes into the commit summary, the rest is listed as unrecognized.
/// Symlinks are stored as links and never followed. Importing the same folder again changes
/// nothing. Creates the store when there is none.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp import examples/legacy/*                 # both shipped legacy runs, oldest first\n  exp log                                      # they read as history\n  exp diff t0_r20250818 t1_r20250821\n  exp import /archive/old_run --tag baseline   # one folder under another name"
)]
pub struct ImportArgs {
    /// Run folders to import
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Name for the run and its tag [default: the folder's name]; only with one folder
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// What was imported, as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &ImportArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let (repo, created) = exp::store::Repo::open_or_init(ctx.repo.as_deref(), &cwd)?;
    if created && !args.json {
        eprintln!("created a new store in {}", repo.store_dir().display());
    }
    let progress = ui::TermProgress::new();
    let imported = exp::import::import(&repo, &args.dirs, args.tag.as_deref(), &progress)?;
    if args.json {
        return ui::print_json(ui::Schema::IMPORT, &ui::Named("imported", &imported));
    }
    let mut t = ui::table(["run", "commit", "date", "parent", "files", "recognized", "result"])
        .cut(["recognized"]);
    for i in &imported {
        let date = match i.date_from {
            exp::import::DateSource::Name => i.date.format("%Y-%m-%d %H:%M").to_string(),
            exp::import::DateSource::Mtime => {
                format!("{} (mtime)", i.date.format("%Y-%m-%d %H:%M"))
            }
        };
        let results = i.inspection.trials.iter().filter(|t| t.status == "complete").count();
        let mut recognized = Vec::new();
        if let Some(c) = &i.inspection.config_path {
            recognized.push(format!("config ({c})"));
        }
        let trials = i.inspection.trials.len();
        if trials > 0 {
            recognized.push(format!("{}, {results} with metrics", plural(trials as u64, "trial")));
        }
        let batch = |of: fn(&exp::import::TrialHeadline) -> &BTreeMap<String, u64>, what| {
            let with = i.inspection.trials.iter().filter(|t| !of(t).is_empty()).count();
            let mut per: BTreeMap<&str, u64> = BTreeMap::new();
            for (c, n) in i.inspection.trials.iter().flat_map(of) {
                *per.entry(c).or_default() += n;
            }
            let per: Vec<String> = per.iter().map(|(c, n)| format!("{c} {n}")).collect();
            (with > 0).then(|| format!("{with} with batch {what} ({})", per.join(", ")))
        };
        recognized.extend(batch(|t| &t.requests, "inputs: requests"));
        recognized.extend(batch(|t| &t.responses, "outputs: responses"));
        if i.inspection.usd.is_some() {
            recognized.push("costs".into());
        }
        t.add_row([
            i.name.clone(),
            i.commit.short(),
            date,
            i.parent.map(|p| p.short()).unwrap_or_else(|| MISSING.into()),
            format!("{} ({})", i.files, ui::human_bytes(i.bytes)),
            if recognized.is_empty() { "nothing".into() } else { recognized.join(", ") },
            if i.unchanged { "already imported, unchanged".into() } else { "imported".into() },
        ]);
    }
    ui::outln!("{t}")?;
    for i in &imported {
        let odd: Vec<&str> = i.inspection.unrecognized().collect();
        if !odd.is_empty() && !i.unchanged {
            ui::outln!("{}: stored byte-exact but not recognized: {}", i.name, odd.join(", "))?;
        }
        for l in &i.inspection.links {
            let where_ = if l.outside { "points outside the folder; " } else { "" };
            ui::outln!(
                "{}: symlink {} -> {} ({where_}stored as a link, not followed)",
                i.name,
                l.path,
                l.target
            )?;
        }
        for n in &i.inspection.notes {
            ui::outln!("{}: recognized but unreadable: {n}", i.name)?;
        }
    }
    if imported.iter().all(|i| i.unchanged) {
        ui::outln!("Nothing to do: every folder was already imported with the same content.")?;
    } else {
        let names: Vec<&str> = imported.iter().map(|i| i.name.as_str()).collect();
        if let [a, .., b] = names.as_slice() {
            ui::outln!("Next: `exp log` shows them as history; `exp diff {a} {b}` compares them.")?;
        } else if let [a] = names.as_slice() {
            ui::outln!(
                "Next: `exp show {a}`, or compare it with another run: `exp diff OTHER {a}`."
            )?;
        }
    }
    Ok(())
}
