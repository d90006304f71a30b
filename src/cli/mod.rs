//! The command line: one file per command (an `Args` struct whose doc comments are the help text,
//! and a `run` function), after jj's `cli/src/commands/`. No business logic lives here: a command
//! opens the repository, calls the library and renders the result as a table or as `--json`.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exp::error::{Failure, Hint};

mod cat_object;
mod checkout;
mod clean;
mod clone;
mod commit;
mod completions;
mod diff;
mod fetch;
mod fsck;
mod gc;
mod hash_object;
mod import;
mod ingest;
mod init;
mod list;
mod log;
mod power;
mod pull;
mod push;
mod remote;
mod rescore;
mod rm;
mod run;
mod show;
mod status;
mod tag;
pub mod ui;
mod view;

/// Run LLM prompt experiments and keep every run as immutable, content-addressed history.
#[derive(Parser, Debug)]
#[command(name = "exp", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Quickstart:\n  exp run --config config/eval_config.yaml --archive\n  exp log\n  exp diff t0_r20250818 t1_r20250821"
)]
pub struct Cli {
    /// Workspace holding `.exprepo/` [default: nearest `.exprepo` upward, else the current folder]
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Init(init::InitArgs),
    Run(run::RunArgs),
    Ingest(ingest::IngestArgs),
    Rescore(rescore::RescoreArgs),
    #[command(visible_alias = "archive")]
    Commit(commit::CommitArgs),
    Log(log::LogArgs),
    List(list::ListArgs),
    Show(show::ShowArgs),
    Diff(diff::DiffArgs),
    Power(power::PowerArgs),
    Checkout(checkout::CheckoutArgs),
    Status(status::StatusArgs),
    Clean(clean::CleanArgs),
    Import(import::ImportArgs),
    Tag(tag::TagArgs),
    Rm(rm::RmArgs),
    Remote(remote::RemoteArgs),
    Push(push::PushArgs),
    Fetch(fetch::FetchArgs),
    Pull(pull::PullArgs),
    Clone(clone::CloneArgs),
    Fsck(fsck::FsckArgs),
    Gc(gc::GcArgs),
    CatObject(cat_object::CatObjectArgs),
    HashObject(hash_object::HashObjectArgs),
    Completions(completions::CompletionsArgs),
    View(view::ViewArgs),
}

/// What every command gets besides its own arguments.
pub struct Context {
    /// `--repo`, when given.
    pub repo: Option<PathBuf>,
}

/// What every command returns. Its error converts (by `?`) from any error implementing
/// `exp::error::Hint`, capturing the hint; add words with `exp::error::Context`.
pub type Result<T> = std::result::Result<T, Failure>;

pub fn run(cli: Cli) -> Result<()> {
    let ctx = Context { repo: cli.repo };
    dispatch(&ctx, &cli.command)?;
    // What is still buffered must reach the reader now, where a closed pipe can be noticed.
    Ok(ui::stdout().flush()?)
}

fn dispatch(ctx: &Context, command: &Command) -> Result<()> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Run(a) => run::run(ctx, a),
        Command::Ingest(a) => ingest::run(ctx, a),
        Command::Rescore(a) => rescore::run(ctx, a),
        Command::Commit(a) => commit::run(ctx, a),
        Command::Log(a) => log::run(ctx, a),
        Command::List(a) => list::run(ctx, a),
        Command::Show(a) => show::run(ctx, a),
        Command::Diff(a) => diff::run(ctx, a),
        Command::Power(a) => power::run(ctx, a),
        Command::Checkout(a) => checkout::run(ctx, a),
        Command::Status(a) => status::run(ctx, a),
        Command::Clean(a) => clean::run(ctx, a),
        Command::Import(a) => import::run(ctx, a),
        Command::Tag(a) => tag::run(ctx, a),
        Command::Rm(a) => rm::run(ctx, a),
        Command::Remote(a) => remote::run(ctx, a),
        Command::Push(a) => push::run(ctx, a),
        Command::Fetch(a) => fetch::run(ctx, a),
        Command::Pull(a) => pull::run(ctx, a),
        Command::Clone(a) => clone::run(ctx, a),
        Command::Fsck(a) => fsck::run(ctx, a),
        Command::Gc(a) => gc::run(ctx, a),
        Command::CatObject(a) => cat_object::run(ctx, a),
        Command::HashObject(a) => hash_object::run(ctx, a),
        Command::Completions(a) => completions::run(ctx, a),
        Command::View(a) => view::run(ctx, a),
    }
}

/// Ends the process with `code` and no message: for `exp diff --exit-code` and the like,
/// where a non-zero exit is an answer, not a failure.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct SilentExit(pub u8);

impl Hint for SilentExit {
    fn hint(&self) -> Option<String> {
        None
    }
}

/// Prints `error: …` (the chain, joined) and `hint: …`, and picks the exit code.
pub fn report_error(failure: &Failure) -> ExitCode {
    // The reader of stdout left (`exp log | head`): it has what it wanted. Whatever error the
    // failed write turned into is not the user's problem, so nothing is printed.
    if ui::stdout_closed() {
        return ExitCode::SUCCESS;
    }
    let err = failure.error();
    if let Some(SilentExit(code)) = err.downcast_ref::<SilentExit>() {
        return ExitCode::from(*code);
    }
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    let mut message = chain[0].clone();
    for cause in &chain[1..] {
        if !message.contains(cause.as_str()) {
            message.push_str(": ");
            message.push_str(cause);
        }
    }
    // A closed stderr has nobody to tell; the exit code still says it failed.
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {message}");
    if let Some(hint) = failure.hint() {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    ExitCode::FAILURE
}

/// Logs go to stderr, filtered by `EXP_LOG` (e.g. `EXP_LOG=debug`); silent by default.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
