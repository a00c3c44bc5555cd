//! `bundle completions <shell>` and `bundle man`: generated from the clap
//! definitions, so they can never disagree with the real flags.

use clap::CommandFactory;

use bundle::{Error, ExitCode, Result};

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bundle", &mut out);
    crate::output::stdout(&String::from_utf8_lossy(&out));
    Ok(ExitCode::Success)
}

/// Prints the man page (roff) on stdout.
pub fn man() -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| {
            Error::io(
                "could not render the man page to",
                std::path::Path::new("stdout"),
                e,
            )
        })?;
    crate::output::stdout(&String::from_utf8_lossy(&out));
    Ok(ExitCode::Success)
}
