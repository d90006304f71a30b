//! `exp remote`: name the places runs are shared through.
use clap::{Args, Subcommand};

use exp::remote;
use exp::store::Repo;

use super::{Context, ui};

/// List, add or remove remotes (a shared folder or S3 storage runs are pushed to and pulled from)
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    exp remote add origin /mnt/team/exp\n  \
    exp remote add cloud s3://team-bucket/exp   # credentials from AWS_* variables\n  \
    exp remote -v\n  \
    exp remote remove cloud")]
pub struct RemoteArgs {
    /// Show each remote's URL
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the remotes (or the remote added or removed) as JSON
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<RemoteCommand>,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a remote: a folder (/path, file:///path) or s3://bucket/prefix
    Add {
        /// Its name, e.g. origin
        name: String,
        /// Where it is
        url: String,
    },
    /// Remove a remote and its remote-tracking refs (local runs stay)
    #[command(visible_alias = "rm")]
    Remove {
        /// Its name
        #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::remote))]
        name: String,
    },
}

pub fn run(ctx: &Context, args: &RemoteArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let repo = Repo::locate(ctx.repo.as_deref(), &cwd)?;
    match &args.command {
        Some(RemoteCommand::Add { name, url }) => {
            let r = remote::add_remote(&repo, name, url, &cwd)?;
            if args.json {
                return ui::print_json(ui::Schema::REMOTE, &r);
            }
            ui::outln!("added remote {} -> {}", r.name, r.url)?;
        }
        Some(RemoteCommand::Remove { name }) => {
            let r = remote::remove_remote(&repo, name)?;
            if args.json {
                return ui::print_json(ui::Schema::REMOTE, &r);
            }
            ui::outln!("removed remote {} ({})", r.name, r.url)?;
        }
        None => {
            let remotes = remote::list_remotes(&repo)?;
            if args.json {
                return ui::print_json(ui::Schema::REMOTES, &ui::Named("remotes", &remotes));
            }
            if args.verbose {
                let mut t = ui::table(["NAME", "URL"]).cut(["URL"]);
                for r in &remotes {
                    t.add_row([r.name.clone(), r.url.to_string()]);
                }
                if !remotes.is_empty() {
                    ui::outln!("{t}")?;
                }
            } else {
                for r in &remotes {
                    ui::outln!("{}", r.name)?;
                }
            }
        }
    }
    Ok(())
}
