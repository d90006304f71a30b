use std::path::PathBuf;

use clap::Args;
use exp::store::Repo;

use super::{Context, ui};

/// Create the store (`.exprepo/`) in the workspace: the current folder, or `--repo DIR`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  exp init\n  exp --repo ~/evals init")]
pub struct InitArgs {}

/// The workspace a command works in: `--repo DIR`, else the current folder.
pub(crate) fn cwd() -> super::Result<PathBuf> {
    Ok(std::env::current_dir()?)
}

/// The store of `--repo DIR`, or the nearest `.exprepo` upward from the current folder.
pub(crate) fn open_repo(ctx: &Context) -> super::Result<Repo> {
    Ok(Repo::locate(ctx.repo.as_deref(), &cwd()?)?)
}

/// `open_repo` for commands that find or place run folders by default: they go where the
/// workspace's config keeps runs (`paths.experiments_dir`). A config that cannot be read leaves
/// the default `experiments/`: it must not stop a commit or a checkout.
pub(crate) fn open_repo_for_runs(ctx: &Context) -> super::Result<Repo> {
    let repo = open_repo(ctx)?;
    Ok(match exp::eval::config::workspace_folders(None, repo.workspace()) {
        Ok(folders) => repo.with_experiments_dir(folders.experiments),
        Err(_) => repo,
    })
}

pub fn run(ctx: &Context, _args: &InitArgs) -> super::Result<()> {
    let dir = match &ctx.repo {
        Some(d) => d.clone(),
        None => cwd()?,
    };
    let (repo, created) = Repo::init(&dir)?;
    if created {
        ui::outln!("created an empty exp store in {}", repo.store_dir().display())?;
    } else {
        ui::outln!("{} already holds an exp store; nothing changed", repo.workspace().display())?;
    }
    Ok(())
}
