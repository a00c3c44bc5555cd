//! `bundle schedule install|remove|status`.

use bundle::schedule;
use bundle::{ExitCode, Result};

use super::config_file;
use crate::cli::{Cli, ScheduleCommand};
use crate::output::{self, Printer};

/// Installs, removes or lists the timers.
pub fn run(cli: &Cli, cmd: &ScheduleCommand, printer: Printer) -> Result<ExitCode> {
    let backend = schedule::detect_backend()?;
    match cmd {
        ScheduleCommand::Install(args) => {
            let config = config_file(cli);
            let plan = schedule::prepare(
                &args.name,
                config.as_deref(),
                args.at.as_deref(),
                args.every.as_deref(),
            )?;
            let done = schedule::install(&plan, &backend, args.print)?;
            printer.result(&done, || output::schedule::installed(&done));
        }
        ScheduleCommand::Remove(args) => {
            let removed = schedule::remove(&args.name, &backend)?;
            let json = serde_json::json!({ "name": args.name, "removed": removed });
            if removed.is_empty() {
                printer.notice(&format!(
                    "no schedule named \"{}\" is installed; nothing changed",
                    args.name
                ));
            }
            if printer.json() || !removed.is_empty() {
                printer.result(&json, || output::schedule::removed(&args.name, &removed));
            }
        }
        ScheduleCommand::Status => {
            let found = schedule::status(&backend)?;
            if backend == schedule::Backend::Unavailable {
                printer.notice(&format!("no scheduler: {}", schedule::NO_SCHEDULER));
            } else if found.is_empty() {
                printer.notice("no bundle schedules installed");
            }
            if printer.json() || !found.is_empty() {
                printer.result(&found, || output::schedule::status(&found));
            }
        }
    }
    Ok(ExitCode::Success)
}
