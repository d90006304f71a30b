use clap::Args;
use exp::error::Hinted;
use exp::store::fsck;

use super::init::open_repo;
use super::{Context, ui};

/// Check the store: re-hash every object, check every pack, every ref, and that everything refs
/// name is there and of the kind that names it.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp fsck\n  exp fsck --quick   # parse commits and trees, check blobs exist; no re-hash"
)]
pub struct FsckArgs {
    /// Skip re-hashing blobs; check connectivity only
    #[arg(long)]
    pub quick: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &FsckArgs) -> anyhow::Result<()> {
    let repo = open_repo(ctx)?;
    let r = fsck::fsck(&repo, args.quick)?;
    if args.json {
        ui::print_json(&r)?;
    } else {
        for p in &r.problems {
            ui::outln!("problem: {}", p.message)?;
        }
        for l in &r.locks {
            ui::outln!(
                "lock: {} (an exp is running, or one was killed: then delete it)",
                l.display()
            )?;
        }
        if r.temp_files > 0 {
            ui::outln!(
                "note: {} leftover temp file(s) from interrupted writes; `exp gc` removes them",
                r.temp_files
            )?;
        }
        ui::outln!(
            "checked {} objects from {} refs{}: {}",
            r.objects,
            r.refs,
            if r.quick { " (quick)" } else { "" },
            if r.is_ok() { "ok".to_string() } else { format!("{} problem(s)", r.problems.len()) }
        )?;
    }
    if !r.is_ok() {
        return Err(Hinted::new(
            format!("the store has {} problem(s), first: {}", r.problems.len(), r.problems[0].message),
            "restore the objects from a remote (`exp fetch`) or re-commit the run folders they came from",
        )
        .into());
    }
    Ok(())
}
