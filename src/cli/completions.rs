//! `exp completions SHELL` and the completers behind it. The script a shell loads asks `exp`
//! itself what fits (`COMPLETE=bash exp -- exp diff t…`, clap_complete's dynamic completion),
//! so revisions complete to the run ids, tags and remotes of the repository at hand.
//! A completer never prints and never fails: outside a repository it offers nothing.
use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;
use exp::store::Repo;

use super::{Context, ui};

/// Print a shell completion script (it completes run ids, tags and remote names too).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp completions bash > ~/.local/share/bash-completion/completions/exp\n  exp completions zsh > \"${fpath[1]}/_exp\"\n  exp completions fish > ~/.config/fish/completions/exp.fish\n  source <(COMPLETE=bash exp)   # the same, for this shell only\n\nThe script calls `exp` (on PATH) for every completion."
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

/// The environment variable the scripts set when they ask `exp` for completions.
const VAR: &str = "COMPLETE";

pub fn run(_ctx: &Context, args: &CompletionsArgs) -> super::Result<()> {
    let name = args.shell.to_string();
    let shells = Shells::builtins();
    let Some(shell) = shells.completer(&name) else {
        return Err(exp::error::Hinted::new(
            format!("no completion script for {name}"),
            "exp completions bash|zsh|fish|elvish|powershell",
        )
        .into());
    };
    // Into memory first, so a closed pipe is noticed by `ui::stdout` like any other output.
    let mut script = Vec::new();
    shell.write_registration(VAR, "exp", "exp", "exp", &mut script)?;
    Ok(ui::stdout().write_all(&script)?)
}

/// Revisions: run ids, tag names and HEAD, or the full `runs/…`, `tags/…`, `remotes/…` names
/// once one is being typed; after `A..` the second end of a range.
pub fn revision(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    if let Some((from, to)) = current.split_once("..") {
        return revision(OsStr::new(to))
            .into_iter()
            .map(|c| c.add_prefix(format!("{from}..")))
            .collect();
    }
    let Some(repo) = repo() else { return Vec::new() };
    let Ok(refs) = repo.refs.list("") else { return Vec::new() };
    let full = current.contains('/');
    let mut out: Vec<CompletionCandidate> = Vec::new();
    if "HEAD".starts_with(current.as_ref()) {
        out.push(
            CompletionCandidate::new("HEAD")
                .help(Some("the run checked out or committed last".into())),
        );
    }
    for (name, _) in &refs {
        let name = name.to_string();
        let (kind, short) = match name.split_once('/') {
            Some(("runs", id)) => ("run", id),
            Some(("tags", tag)) => ("tag", tag),
            Some(("remotes", _)) if full => ("remote-tracking", name.as_str()),
            _ => continue,
        };
        let value = if full { name.as_str() } else { short };
        if value.starts_with(current.as_ref()) && !out.iter().any(|c| c.get_value() == value) {
            out.push(CompletionCandidate::new(value).help(Some(kind.into())));
        }
    }
    out
}

/// Tag names.
pub fn tag(current: &OsStr) -> Vec<CompletionCandidate> {
    names(current, |repo| {
        Some(repo.refs.list("tags/").ok()?.iter().map(|(n, _)| n.short().to_string()).collect())
    })
}

/// Run ids.
pub fn run_id(current: &OsStr) -> Vec<CompletionCandidate> {
    names(current, |repo| {
        Some(repo.refs.list("runs/").ok()?.iter().map(|(n, _)| n.short().to_string()).collect())
    })
}

/// Remote names.
pub fn remote(current: &OsStr) -> Vec<CompletionCandidate> {
    names(current, |repo| {
        Some(exp::remote::list_remotes(repo).ok()?.into_iter().map(|r| r.name).collect())
    })
}

/// The names `list` gives that start with `current`.
fn names(current: &OsStr, list: impl Fn(&Repo) -> Option<Vec<String>>) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let Some(names) = repo().and_then(|r| list(&r)) else { return Vec::new() };
    names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// The repository the command line being completed names with `--repo`, else the one the
/// current folder is in; None outside any.
fn repo() -> Option<Repo> {
    let args: Vec<String> = std::env::args().collect();
    let explicit = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--repo" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            a.strip_prefix("--repo=").map(PathBuf::from)
        }
    });
    let cwd = std::env::current_dir().ok()?;
    Repo::locate(explicit.as_deref(), &cwd).ok()
}
