//! The `exp` binary: parse arguments, run one command, map the outcome to an exit code.
//! Exit codes: 0 success, 1 failure (one line `error: …`, then `hint: …` where there is one),
//! 2 bad usage (clap's own).
mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::report_error(&err),
    }
}
