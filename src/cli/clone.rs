//! `exp clone`: a new workspace with every run and tag of a remote; nothing checked out.
use std::path::PathBuf;

use clap::Args;

use exp::remote::{self, RefStatus};

use super::{Context, ui};

/// Make a new workspace from a remote: its store gets every run and tag, and `origin` points
/// at the remote. Nothing is checked out until you ask (`exp checkout ID`)
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    exp clone /mnt/team/exp my-exp\n  \
    exp clone s3://team-bucket/exp        # into ./exp\n  \
    cd exp && exp list && exp checkout 20251127-1305")]
pub struct CloneArgs {
    /// The remote: a folder, file:///path or s3://bucket/prefix
    pub url: String,
    /// The new workspace [default: the URL's last component]
    pub dir: Option<PathBuf>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(_ctx: &Context, args: &CloneArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let dir = match &args.dir {
        Some(d) => cwd.join(d),
        None => {
            let url = remote::parse_url(&args.url, &cwd)?;
            let name =
                url.base_name().ok_or(remote::Error::NoCloneName { url: args.url.clone() })?;
            cwd.join(name)
        }
    };
    let progress = ui::TermProgress::new();
    let report = remote::clone(&args.url, &dir, &cwd, &progress)?;
    if args.json {
        return ui::print_json(ui::Schema::CLONE, &report);
    }
    let count = |prefix: &str| {
        report
            .refs
            .iter()
            .filter(|u| u.name.starts_with(prefix) && u.status == RefStatus::Created)
            .count()
    };
    let t = &report.fetch.transfer;
    let plural = exp::display::plural;
    ui::outln!(
        "cloned {} into {}: {}, {} ({}, {}, {})",
        report.fetch.url,
        report.workspace.display(),
        plural(count("runs/") as u64, "run"),
        plural(count("tags/") as u64, "tag"),
        plural(t.objects, "object"),
        ui::human_bytes(t.bytes),
        plural(t.requests, "request")
    )?;
    ui::outln!(
        "nothing is checked out: `exp list` shows the runs, `exp checkout ID` materializes one"
    )?;
    Ok(())
}
