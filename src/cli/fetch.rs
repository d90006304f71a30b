//! `exp fetch`: bring a remote's runs and tags here, as remote-tracking refs.
use clap::Args;

use exp::display::plural;
use exp::remote::{self, RefStatus, RefUpdate};
use exp::store::Repo;

use super::{Context, ui};

/// Download a remote's runs and tags into remotes/<remote>/…; local runs are not touched
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    exp fetch                 # from origin\n  \
    exp fetch cloud\n  \
    exp log --all             # shows remotes/origin/runs/<ID> too\n  \
    exp diff runs/ID remotes/origin/runs/ID")]
pub struct FetchArgs {
    /// The remote [default: origin, or the only one]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::remote))]
    pub remote: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &FetchArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let repo = Repo::locate(ctx.repo.as_deref(), &cwd)?;
    let target = remote::resolve_remote(&repo, args.remote.as_deref())?;
    let progress = ui::TermProgress::new();
    let report = remote::fetch(&repo, &target, &progress)?;
    if args.json {
        return ui::print_json(ui::Schema::FETCH, &report);
    }
    print_refs(&report.refs, &format!("remotes/{}/", report.remote))?;
    print_received(&report)?;
    Ok(())
}

pub fn print_received(report: &remote::FetchReport) -> std::io::Result<()> {
    let t = &report.transfer;
    ui::outln!(
        "received {} ({}) from {} ({}) in {}",
        plural(t.objects, "object"),
        ui::human_bytes(t.bytes),
        report.remote,
        report.url,
        plural(t.requests, "request")
    )
}

/// The ref table every remote command prints: name, what happened, old and new commit.
pub fn print_refs(refs: &[RefUpdate], prefix: &str) -> std::io::Result<()> {
    if refs.is_empty() {
        return ui::outln!("no runs or tags");
    }
    let mut t = ui::table(["REF", "STATUS", "OLD", "NEW"]);
    let short = |id: &Option<exp::store::ObjectId>| id.map_or("-".to_string(), |i| i.short());
    for u in refs {
        let status = match u.status {
            RefStatus::UpToDate => "up to date".to_string(),
            s => s.as_str().to_string(),
        };
        t.add_row([format!("{prefix}{}", u.name), status, short(&u.old), short(&u.new)]);
    }
    ui::outln!("{t}")
}
