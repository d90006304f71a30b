use clap::Args;
use exp::error::Hinted;
use exp::store::{Expect, RefName};

use super::init::open_repo;
use super::{Context, ui};

/// Create, list or delete tags (names for important runs).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp tag baseline\n  exp tag t1 runs/t1_r20250821\n  exp tag -l\n  exp tag -d baseline"
)]
pub struct TagArgs {
    /// Tag name to create (or delete with -d)
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::tag))]
    pub name: Option<String>,
    /// What to tag [default: HEAD]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: Option<String>,
    /// List tags
    #[arg(short, long, conflicts_with_all = ["delete", "rev"])]
    pub list: bool,
    /// Delete the tag NAME
    #[arg(short, long, conflicts_with = "rev")]
    pub delete: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &TagArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    if args.list || args.name.is_none() {
        let tags = repo.refs.list("tags/")?;
        if args.json {
            let rows: Vec<_> = tags
                .iter()
                .map(|(n, id)| serde_json::json!({"tag": n.short(), "id": id}))
                .collect();
            return ui::print_json(ui::Schema::TAGS, &ui::Named("tags", &rows));
        }
        let mut t = ui::table(["tag", "commit", "run", "message"]).cut(["message"]);
        for (n, id) in &tags {
            let c = repo.read_commit(id)?;
            t.add_row(vec![n.short().to_string(), id.short(), c.run_id, c.message]);
        }
        if tags.is_empty() {
            ui::outln!("no tags")?;
        } else {
            ui::outln!("{t}")?;
        }
        return Ok(());
    }
    let Some(name) = &args.name else {
        return Err(Hinted::new("no tag name given", "exp tag NAME [REF]").into());
    };
    if args.delete {
        let old = repo.refs.delete(&RefName::tag(name)?, Expect::Any, "tag -d")?;
        ui::outln!("deleted tag {name} (was {})", old.short())?;
        return Ok(());
    }
    let (r, id) = repo.tag(name, args.rev.as_deref())?;
    ui::outln!("tagged {} as {r}", id.short())?;
    Ok(())
}
