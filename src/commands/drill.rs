//! `bundle drill`.

use bundle::config::absolute;
use bundle::restore::drill;
use bundle::{ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, DrillArgs};
use crate::output::{self, Printer};

/// Restores a bundle into a temp folder and checks it.
pub fn run(cli: &Cli, args: &DrillArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref()).ok();
    let path = bundle::bundle::resolve(&args.bundle, destination.as_deref())?;
    let bar = printer.bar();
    let report = drill(&absolute(&path)?, None, &config.stores, &bar)?;
    drop(bar);
    if !report.ok {
        let message = format!(
            "bundle {} restored, but a store's check failed: do not count on it until you know why",
            report.bundle_id
        );
        return Ok(printer.failure(
            &report,
            ExitCode::CheckFailed,
            "check_failed",
            &message,
            || output::drill::render(&report),
        ));
    }
    printer.result(&report, || output::drill::render(&report));
    Ok(ExitCode::Success)
}
