//! `bundle list`.

use bundle::{ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, ListArgs};
use crate::output::{self, Printer};

/// Lists the destination's bundles, oldest first.
pub fn run(cli: &Cli, args: &ListArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    if let Some(name) = &args.remote {
        return remote_list(cli, &config, name, args, printer);
    }
    let destination = destination_of(&config, args.dest.as_ref())?;
    let listing = bundle::bundle::list_summaries(&destination)?;
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

/// Lists a remote's complete bundles, and says which are local too.
fn remote_list(
    cli: &Cli,
    config: &bundle::config::Config,
    name: &str,
    args: &ListArgs,
    printer: Printer,
) -> Result<ExitCode> {
    let remote = super::remote::open(cli, config, Some(name))?;
    let listing = remote.list()?;
    for (id, why) in &listing.incomplete {
        output::warn(&format!(
            "{id} on remote \"{name}\" is not a complete bundle: {why}"
        ));
    }
    let local = destination_of(config, args.dest.as_ref())
        .ok()
        .and_then(|d| bundle::bundle::list_summaries(&d).ok())
        .map(|l| l.bundles)
        .unwrap_or_default();
    let rows = output::list::remote_json(&listing.bundles, &local, name);
    if rows.is_empty() && !printer.json() {
        printer.note(&format!("no bundles on remote \"{name}\""));
        return Ok(ExitCode::Success);
    }
    printer.result(&rows, || output::list::render_remote(&rows));
    Ok(ExitCode::Success)
}
