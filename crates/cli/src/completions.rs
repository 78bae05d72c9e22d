//! `keel completions SHELL`: prints a completion script for bash, zsh or fish (`clap_complete`),
//! generated from the same command definition that parses the arguments.

use clap::{Args, ValueEnum};
use clap_complete::Shell;

/// The shells `keel completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellName {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Flags of `keel completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: ShellName,
    /// Whose commands `keel client` completes.
    #[arg(long, value_enum, default_value_t = crate::engine_args::AppName::Bookstore)]
    pub app: crate::engine_args::AppName,
}

/// Writes the completion script for `command` (the whole `keel` command) to `out`.
pub fn write(shell: ShellName, command: &mut clap::Command, out: &mut dyn std::io::Write) {
    let shell = match shell {
        ShellName::Bash => Shell::Bash,
        ShellName::Zsh => Shell::Zsh,
        ShellName::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, command, "keel", out);
}

/// Prints the script on standard output; a closed pipe (`| head`) is not an error.
pub fn print(shell: ShellName, command: &mut clap::Command) -> Result<(), String> {
    let mut script = Vec::new();
    write(shell, command, &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing the completion script: {e}"))
        }
        _ => Ok(()),
    }
}
