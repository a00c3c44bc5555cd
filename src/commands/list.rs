//! `bundle list`.

use bundle::{ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, ListArgs};
use crate::output::{self, Printer};

/// Lists the destination's bundles, oldest first.
pub fn run(cli: &Cli, args: &ListArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref())?;
    let listing = bundle::bundle::list(&destination)?;
    for (name, why) in &listing.unreadable {
        output::warn(&format!(
            "{name} looks like a bundle but cannot be read: {why}"
        ));
    }
    let rows = output::list::json(&listing.bundles);
    if rows.is_empty() && !printer.json() {
        printer.note(&format!("no bundles in {}", destination.display()));
        return Ok(ExitCode::Success);
    }
    printer.result(&rows, || output::list::render(&rows));
    Ok(ExitCode::Success)
}
