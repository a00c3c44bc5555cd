//! `bundle restore`.

use bundle::config::absolute;
use bundle::restore::{restore, Mode, Outcome, RestoreOptions};
use bundle::{ExitCode, Result};

use super::effective_config;
use crate::cli::{Cli, ModeArg, RestoreArgs};
use crate::output::{self, Printer};

/// Plans, and unless dry-run or unconfirmed, applies a restore.
pub fn run(cli: &Cli, args: &RestoreArgs, printer: Printer) -> Result<ExitCode> {
    let config = effective_config(cli, &args.targets)?;
    // A remote bundle is pulled into a temporary folder, removed afterwards.
    let (path, _staged) = match &args.remote {
        Some(name) => {
            let (path, temp) = super::remote::stage(cli, &config, name, &args.bundle, &printer)?;
            (path, Some(temp))
        }
        None => (
            bundle::bundle::resolve(&args.bundle, config.destination.as_deref())?,
            None,
        ),
    };
    let mode = match args.mode {
        ModeArg::Merge => Mode::Merge,
        ModeArg::Replace => Mode::Replace,
    };
    let opts = RestoreOptions {
        bundle: absolute(&path)?,
        mode,
        only: args.stores.clone(),
        config,
        into: args.into.clone(),
        dry_run: args.dry_run,
        confirm_token: args.confirm_token.clone(),
        safety_snapshot: !args.no_safety_snapshot,
        force_topology_mismatch: args.force_topology_mismatch,
    };
    let bar = printer.bar();
    let report = restore(&opts, &bar)?;
    drop(bar);
    let refused = match report.outcome {
        Outcome::Applied | Outcome::DryRun => {
            printer.result(&report, || output::restore::render(&report));
            return Ok(ExitCode::Success);
        }
        Outcome::Incomplete => {
            let message = output::restore::incomplete(&report);
            return Ok(printer.failure(&report, ExitCode::CheckFailed, "incomplete", &message, || {
                output::restore::render(&report)
            }));
        }
        Outcome::TokenMissing => format!(
            "--mode replace overwrites the live stores listed above; check the plan, then re-run with --confirm-token {}",
            report.confirm_token
        ),
        Outcome::TokenMismatch => format!(
            "the confirm token does not approve this plan (another bundle, mode, store selection or target); this plan's token is {}",
            report.confirm_token
        ),
    };
    Ok(
        printer.failure(&report, ExitCode::Refused, "refused", &refused, || {
            output::restore::render(&report)
        }),
    )
}
