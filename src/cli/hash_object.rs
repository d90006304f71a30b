use std::path::PathBuf;

use clap::Args;
use exp::store::Odb;

use super::init::open_repo;
use super::{Context, ui};

/// Plumbing: print the blob id of each file; with -w also store it.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp hash-object results/metrics.json\n  exp hash-object -w big.csv"
)]
pub struct HashObjectArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the blobs into the store
    #[arg(short = 'w')]
    pub write: bool,
}

pub fn run(ctx: &Context, args: &HashObjectArgs) -> super::Result<()> {
    if args.write {
        let repo = open_repo(ctx)?;
        for f in &args.files {
            ui::outln!("{}", repo.odb.write_blob_from_path(f)?)?;
        }
        return Ok(());
    }
    // Hashing alone needs no store.
    for f in &args.files {
        ui::outln!("{}", Odb::hash_file(f)?)?;
    }
    Ok(())
}
