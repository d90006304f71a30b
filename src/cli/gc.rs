use clap::Args;
use exp::display::plural;
use exp::store::gc;

use super::init::open_repo;
use super::{Context, ui};

/// Delete objects nothing reaches (refs, reflogs, HEAD, index), once older than the grace period,
/// and merge the packs into one when there are more than 8 (and loose objects, more than 256).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp gc --dry-run\n  exp gc --grace 0   # also prune what `exp rm` just dropped"
)]
pub struct GcArgs {
    /// Say what would be deleted; delete nothing
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// Keep unreachable objects younger than this (s, m, h, d, w)
    #[arg(long, default_value = "14d", value_parser = gc::parse_duration, value_name = "DURATION")]
    pub grace: std::time::Duration,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &GcArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let r = gc::gc(&repo, args.grace, args.dry_run)?;
    if args.json {
        return ui::print_json(ui::Schema::GC, &r);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    ui::outln!(
        "{} objects, {} reachable; {verb} {} unreachable ({}); kept {} younger than the grace period",
        r.objects,
        r.reachable,
        r.removed.len(),
        ui::human_bytes(r.removed_bytes),
        r.kept_young
    )?;
    if r.dry_run {
        for id in &r.removed {
            ui::outln!("  {id}")?;
        }
    }
    for n in &r.reflogs_dropped {
        ui::outln!("{verb} the history of deleted ref {n}")?;
    }
    if r.temp_files_removed > 0 {
        ui::outln!("{verb} {}", plural(r.temp_files_removed, "stale temp file"))?;
    }
    if r.packs_merged > 0 {
        let merged = if r.dry_run { "would merge" } else { "merged" };
        ui::outln!("{merged} {} into one", plural(r.packs_merged, "pack"))?;
    }
    if r.loose_packed > 0 {
        let moved = if r.dry_run { "would move" } else { "moved" };
        ui::outln!("{moved} {} loose objects into a pack", r.loose_packed)?;
    }
    Ok(())
}
