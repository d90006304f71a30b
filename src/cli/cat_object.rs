use std::io::Write;

use clap::Args;
use exp::store::Object;

use super::init::open_repo;
use super::{Context, ui};

/// Plumbing: print an object's content (verified), type (-t) or size (-s).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp cat-object -t 3fa9c2\n  exp cat-object -p HEAD\n  exp cat-object <blob-id> > file"
)]
pub struct CatObjectArgs {
    /// Object id, hex prefix or any revision
    pub object: String,
    /// Print the type
    #[arg(short = 't', conflicts_with_all = ["size", "pretty"])]
    pub kind: bool,
    /// Print the payload size in bytes
    #[arg(short = 's', conflicts_with = "pretty")]
    pub size: bool,
    /// Pretty-print trees and commits
    #[arg(short = 'p')]
    pub pretty: bool,
}

pub fn run(ctx: &Context, args: &CatObjectArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let id = repo.resolve(&args.object)?;
    if args.kind || args.size {
        let (kind, size) = repo.odb.header(&id)?;
        ui::outln!("{}", if args.kind { kind.to_string() } else { size.to_string() })?;
        return Ok(());
    }
    let mut out = ui::stdout();
    if !args.pretty {
        repo.odb.read_to(&id, &mut out)?;
        return Ok(out.flush()?);
    }
    match repo.odb.read(&id)? {
        Object::Blob(b) => out.write_all(&b)?,
        Object::Tree(t) => {
            for e in t.entries {
                writeln!(out, "{} {}\t{}", e.mode.as_octal(), e.id, e.name)?;
            }
        }
        Object::Commit(c) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&c).map_err(std::io::Error::from)?)?
        }
    }
    Ok(out.flush()?)
}
