//! `exp push`: send runs and tags to a remote.
use clap::Args;

use exp::remote::{self, PushOptions, RefStatus};
use exp::store::Repo;

use super::{Context, ui};

/// Send runs and tags to a remote: only the objects it lacks, then the refs (compare-and-swap)
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    exp push                      # the run HEAD names, to origin\n  \
    exp push origin 20251127-1305 # one run\n  \
    exp push origin --all         # every run and tag\n\n\
    If someone pushed the same run first, the push is rejected (nothing is overwritten):\n\
    run `exp pull`, then push again. An interrupted push is finished by pushing again.\n\
    EXP_PACK_BYTES sets the pack size (default 16 MiB).")]
pub struct PushArgs {
    /// The remote [default: origin, or the only one]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::remote))]
    pub remote: Option<String>,
    /// Runs (ID, runs/ID) or tags (NAME, tags/NAME) to push [default: the run HEAD names]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub refs: Vec<String>,
    /// Push every run and tag
    #[arg(long, conflicts_with = "refs")]
    pub all: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &PushArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let repo = Repo::locate(ctx.repo.as_deref(), &cwd)?;
    // `exp push RUN_ID`: a first word that names no remote is a ref, pushed to the default one.
    let mut refs = args.refs.clone();
    let mut name = args.remote.clone();
    if let Some(first) = &args.remote {
        let known = remote::list_remotes(&repo)?;
        if !known.iter().any(|r| &r.name == first) && repo.resolve_named(first).is_ok() {
            refs.insert(0, first.clone());
            name = None;
        }
    }
    let target = remote::resolve_remote(&repo, name.as_deref())?;
    let mut opts = PushOptions { refs, all: args.all, ..Default::default() };
    #[cfg(feature = "fault-injection")]
    {
        opts.hooks = fault::hooks();
    }
    if let Some(n) = std::env::var("EXP_PACK_BYTES").ok().and_then(|v| v.parse().ok()) {
        opts.pack_bytes = n;
    }
    let progress = ui::TermProgress::new();
    let report = remote::push(&repo, &target, &opts, &progress)?;
    if args.json {
        ui::print_json(ui::Schema::PUSH, &report)?;
    } else {
        super::fetch::print_refs(&report.refs, "")?;
        let t = &report.transfer;
        let plural = exp::display::plural;
        ui::outln!(
            "sent {} ({}, {}) to {} ({}) in {}",
            plural(t.objects, "object"),
            ui::human_bytes(t.bytes),
            plural(t.packs, "pack"),
            report.remote,
            report.url,
            plural(t.requests, "request")
        )?;
    }
    let with = |s: RefStatus| -> Vec<String> {
        report.refs.iter().filter(|u| u.status == s).map(|u| u.name.clone()).collect()
    };
    let rejected = with(RefStatus::Rejected);
    if !rejected.is_empty() {
        return Err(
            remote::Error::Rejected { remote: report.remote.clone(), refs: rejected }.into()
        );
    }
    let conflicts = with(RefStatus::Conflict);
    if !conflicts.is_empty() {
        return Err(
            remote::Error::Conflict { remote: report.remote.clone(), refs: conflicts }.into()
        );
    }
    Ok(())
}

/// Fault injection for the black-box tests (tests/remote.rs), compiled only with the
/// `fault-injection` feature, which `cargo test` turns on and a release build leaves off.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use exp::remote::Hooks;

    /// Fault injection for the black-box tests, off unless the variables are set:
    /// `EXP_TEST_KILL_AFTER_PACKS=N` kills this process (SIGKILL) once N packs are on the remote;
    /// `EXP_TEST_PUSH_BARRIER=DIR` creates `DIR/ready-<pid>` before the remote refs move and waits
    /// for `DIR/go` (or `DIR/go-<pid>`), so a test can line up two pushers deterministically.
    pub fn hooks() -> Hooks {
        let mut hooks = Hooks::default();
        if let Some(n) =
            std::env::var("EXP_TEST_KILL_AFTER_PACKS").ok().and_then(|v| v.parse::<u64>().ok())
        {
            hooks.after_pack = Some(Arc::new(move |done| {
                if done >= n {
                    // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                }
            }));
        }
        if let Some(dir) = std::env::var_os("EXP_TEST_PUSH_BARRIER") {
            let dir = std::path::PathBuf::from(dir);
            let waited = Arc::new(AtomicBool::new(false));
            hooks.before_refs = Some(Arc::new(move || {
                if waited.swap(true, Ordering::SeqCst) {
                    return;
                }
                let pid = std::process::id();
                let _ = std::fs::write(dir.join(format!("ready-{pid}")), b"");
                let deadline = Instant::now() + Duration::from_secs(120);
                while Instant::now() < deadline
                    && !dir.join("go").exists()
                    && !dir.join(format!("go-{pid}")).exists()
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        hooks
    }
}
