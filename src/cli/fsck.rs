use clap::Args;
use exp::display::plural;
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

pub fn run(ctx: &Context, args: &FsckArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let r = fsck::fsck(&repo, args.quick)?;
    if args.json {
        ui::print_json(ui::Schema::FSCK, &r)?;
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
                "note: {} left over from interrupted writes; `exp gc` removes them",
                plural(r.temp_files, "temp file")
            )?;
        }
        ui::outln!(
            "checked {} from {}{}: {}",
            plural(r.objects, "object"),
            plural(r.refs, "ref"),
            if r.quick { " (quick)" } else { "" },
            if r.is_ok() { "ok".to_string() } else { plural(r.problems.len() as u64, "problem") }
        )?;
    }
    if !r.is_ok() {
        return Err(Hinted::new(
            format!(
                "the store has {}, first: {}",
                plural(r.problems.len() as u64, "problem"),
                r.problems[0].message
            ),
            "restore the objects from a remote (`exp fetch`) or re-commit the run folders they came from",
        )
        .into());
    }
    Ok(())
}
