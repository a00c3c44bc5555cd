//! `bundle key new`: a new age identity for an encrypted remote.

use bundle::{ExitCode, Result};

use crate::cli::{Cli, KeyCommand};
use crate::output::Printer;

/// Runs a `bundle key` subcommand.
pub fn run(_cli: &Cli, cmd: &KeyCommand, printer: Printer) -> Result<ExitCode> {
    match cmd {
        KeyCommand::New(args) => {
            let public = bundle::remote::crypt::new_identity(&args.out)?;
            let doc = serde_json::json!({
                "ok": true,
                "path": args.out.display().to_string(),
                "public_key": public,
            });
            // The public key alone on stdout, for `recipients`; the rest on stderr.
            printer.note(&format!(
                "wrote a new identity to {} (keep it secret and offline; it is the only way to read what is pushed to its public key)",
                args.out.display()
            ));
            printer.result(&doc, || format!("{public}\n"));
            Ok(ExitCode::Success)
        }
    }
}
