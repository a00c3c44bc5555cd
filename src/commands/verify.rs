//! `bundle verify`.

use bundle::verify::{verify, VerifyOptions};
use bundle::{ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, VerifyArgs};
use crate::output::{self, Printer};

/// Verifies a bundle; exit 1 when any problem is found.
pub fn run(cli: &Cli, args: &VerifyArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let bar = printer.bar();
    let report = match &args.remote {
        Some(name) => {
            let remote = super::remote::open(cli, &config, Some(name))?;
            let id = bundle::remote::resolve_id(&remote, &args.bundle)?;
            bundle::remote::check::verify(&remote, &id, args.read_data, &bar)?
        }
        None => {
            let destination = destination_of(&config, args.dest.as_ref()).ok();
            let path = bundle::bundle::resolve(&args.bundle, destination.as_deref())?;
            verify(
                &path,
                VerifyOptions {
                    quick: args.quick,
                    skip_content: false,
                },
                &bar,
            )?
        }
    };
    drop(bar);
    if report.ok {
        printer.result(&report, || output::verify::render(&report));
        return Ok(ExitCode::Success);
    }
    Ok(printer.failure(
        &report,
        ExitCode::CheckFailed,
        "check_failed",
        &output::verify::failed(&report),
        || output::verify::render(&report),
    ))
}
