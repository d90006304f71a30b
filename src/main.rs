//! The `exp` binary: parse arguments, run one command, map the outcome to an exit code.
//! Exit codes: 0 success, 1 failure (one line `error: …`, then `hint: …` where there is one),
//! 2 bad usage (clap's own). A closed stdout (`exp log | head`) is 0, silently: the reader took
//! what it wanted, as ripgrep sees it (git dies of SIGPIPE, 141, which fails every
//! `set -o pipefail` script that stops reading early). Rust ignores SIGPIPE, so the write fails
//! with an error instead, which `cli::ui` notices.
mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    // A shell asking what completes the command line (`COMPLETE=bash exp -- exp diff …`):
    // answered here, before anything else runs.
    clap_complete::CompleteEnv::with_factory(cli::Cli::command).complete();
    let args = cli::Cli::parse();
    cli::init_tracing();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::report_error(&err),
    }
}
