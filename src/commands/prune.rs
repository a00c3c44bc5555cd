//! `bundle prune`.

use bundle::prune::{prune, PruneOptions};
use bundle::{Error, ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, PruneArgs};
use crate::output::{self, Printer};

/// Applies the retention policy (dry run unless `--apply`).
pub fn run(cli: &Cli, args: &PruneArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let now = match &args.now {
        None => jiff::Timestamp::now(),
        Some(text) => text.parse().map_err(|e| {
            Error::Usage(format!(
                "--now \"{text}\" is not an RFC 3339 time ({e}); write it like 2026-11-23T03:00:00Z"
            ))
        })?,
    };
    let report = match &args.remote {
        Some(name) => {
            let remote = super::remote::open(cli, &config, Some(name))?;
            let base = remote.spec.retention.as_ref().unwrap_or(&config.retention);
            let destination = destination_of(&config, args.dest.as_ref()).ok();
            let policy = base.or_flags(&args.policy);
            bundle::remote::prune(&remote, &policy, now, args.apply, destination.as_deref())?
        }
        None => prune(&PruneOptions {
            destination: destination_of(&config, args.dest.as_ref())?,
            policy: config.retention.or_flags(&args.policy),
            now,
            apply: args.apply,
        })?,
    };
    printer.result(&report, || output::prune::render(&report));
    Ok(ExitCode::Success)
}
