use clap::{Args, CommandFactory};
use clap_complete::Shell;

use std::io::Write;

use super::{Cli, Context, ui};

/// Print a shell completion script.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp completions bash > ~/.local/share/bash-completion/completions/exp\n  exp completions zsh > \"${fpath[1]}/_exp\"\n  exp completions fish > ~/.config/fish/completions/exp.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

pub fn run(_ctx: &Context, args: &CompletionsArgs) -> super::Result<()> {
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "exp", &mut script);
    Ok(ui::stdout().write_all(&script)?)
}
