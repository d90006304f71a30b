use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use exp::view::{self, Site, server};

use super::init::open_repo;
use super::{Context, ui};

/// Browse runs, trials, items and flips in a browser: a read-only web app over the store
///
/// Serves every commit (in a clone too, nothing checked out): the history of runs, each run's
/// trials with statistics and charts, each trial's items with both conditions' outputs side by
/// side (filter, search, pages), and two runs compared with the items that flipped. Pages name
/// commit ids, so a link keeps showing the same thing. Everything is built into `exp`: no
/// network, works offline.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  exp view                      # http://127.0.0.1:7878/\n  \
exp view --port 0 --open      # any free port, in the desktop's browser\n  \
exp view --export site/       # the same pages as static files")]
pub struct ViewArgs {
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 7878)]
    pub port: u16,
    /// Open the page in the desktop's browser
    #[arg(long)]
    pub open: bool,
    /// Listen on ADDR instead of 127.0.0.1: anyone who can reach it reads every run
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Write the pages into DIR as a static site instead of serving them
    #[arg(long, value_name = "DIR", conflicts_with_all = ["open", "bind"])]
    pub export: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: &ViewArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    if let Some(dir) = &args.export {
        let done = view::export::export(repo, dir, &ui::TermProgress::new())?;
        ui::outln!(
            "wrote {} pages of {} commits ({} bytes) to {}",
            done.pages,
            done.runs,
            done.bytes,
            done.dir.display()
        )?;
        return Ok(());
    }
    let addr = SocketAddr::new(args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), args.port);
    if !server::is_loopback(&addr) {
        eprintln!(
            "warning: listening on {addr}: anyone who can reach it can read every run in this \
             store (no login, read-only)"
        );
    }
    let workspace = repo.workspace().display().to_string();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = server::bind(addr).await?;
        let url = format!("http://{}/", listener.local_addr()?);
        ui::outln!("exp view: {workspace} at {url} (Ctrl-C stops)")?;
        if args.open
            && let Err(e) = server::open_browser(&url)
        {
            eprintln!("warning: {e}");
        }
        server::serve(listener, Site::new(repo)).await?;
        Ok::<_, exp::error::Failure>(())
    })
}
