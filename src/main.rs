//! The `bundle` binary: parses arguments, dispatches to a command, and maps
//! the outcome to the documented exit code. The commands (`commands/`) turn
//! arguments into library calls; `output/` decides what is printed where.

mod cli;
mod commands;
mod output;

use std::process::ExitCode as ProcessExit;

use clap::Parser;

use bundle::{ExitCode, Result};
use cli::{Cli, Command};
use output::Printer;

fn main() -> ProcessExit {
    let cli = Cli::parse();
    let code = match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            err.exit_code()
        }
    };
    ProcessExit::from(code as u8)
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let printer = Printer::new(cli.json, cli.quiet, cli.no_progress);
    match &cli.command {
        Command::Create(args) => commands::create::run(cli, args, printer),
        Command::Verify(args) => commands::verify::run(cli, args, printer),
        Command::List(args) => commands::list::run(cli, args, printer),
        Command::Restore(args) => commands::restore::run(cli, args, printer),
        Command::Drill(args) => commands::drill::run(cli, args, printer),
        Command::Prune(args) => commands::prune::run(cli, args, printer),
        Command::Schedule(cmd) => commands::schedule::run(cli, cmd, printer),
    }
}
