//! `bundle push` and `bundle pull`, and the `--remote` forms of list,
//! verify and restore.

use std::path::PathBuf;

use bundle::remote::{self, Remote};
use bundle::{Error, ExitCode, Result};

use super::{destination_of, load_config};
use crate::cli::{Cli, PullArgs, PushArgs};
use crate::output::{self, Printer};

/// Files in flight at once when `--jobs` is not given.
pub const DEFAULT_JOBS: usize = 2;

/// Opens the remote `name` of the config (or its only one), printing its
/// warnings, with the identity of `--identity` or `BUNDLE_IDENTITY_FILE`.
pub fn open(cli: &Cli, config: &bundle::config::Config, name: Option<&str>) -> Result<Remote> {
    let spec = remote::choose(config, name)?;
    for w in spec.warnings() {
        output::warn(&w);
    }
    let path = cli
        .identity
        .clone()
        .or_else(|| std::env::var_os("BUNDLE_IDENTITY_FILE").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    let identity = match path {
        None => None,
        Some(path) => {
            if let Some(w) = remote::crypt::readable_by_others(&path) {
                output::warn(&w);
            }
            Some(remote::crypt::Identity::load(&path, &|| {
                super::passphrase::ask(&path)
            })?)
        }
    };
    Remote::open(spec, identity)
}

/// Pushes the named bundles, or every good local one the remote lacks.
pub fn push(cli: &Cli, args: &PushArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref())?;
    let remote = open(cli, &config, args.remote.as_deref())?;
    if args.reencrypt {
        remote::reencrypt::ready(&remote)?;
    }
    // One push per remote at a time: a push aborts the uploads it finds
    // unfinished, which must not be another's still running.
    let _lock = match destination.is_dir() {
        true => Some(bundle::bundle::lock::DestinationLock::acquire_push(
            &destination,
            &remote.spec.name,
        )?),
        false => None,
    };
    // Read once: it says what is pending and what the server can copy.
    let listing = remote.list()?;
    let bundles: Vec<PathBuf> = if args.bundles.is_empty() {
        let local = bundle::bundle::list(&destination)?.bundles;
        let pruned = remote::pruned::read(&destination, &remote.spec.name)?;
        remote::push::pending(&local, &listing.bundles, &pruned)
            .into_iter()
            .map(|b| b.path.clone())
            .collect()
    } else {
        args.bundles
            .iter()
            .map(|b| bundle::bundle::resolve(b, Some(&destination)))
            .collect::<Result<_>>()?
    };
    let jobs = args.jobs.map_or(DEFAULT_JOBS, usize::from);
    let bar = printer.bar();
    let mut reports = remote::push::push(&remote, &listing, &destination, &bundles, jobs, &bar)?;
    if args.reencrypt {
        let listing = remote.list()?;
        let rewritten =
            remote::reencrypt::reencrypt_all(&remote, &listing, &destination, jobs, &bar)?;
        reports.extend(rewritten);
    }
    drop(bar);
    let failed: Vec<&remote::push::Pushed> =
        reports.iter().filter(|r| r.outcome == "failed").collect();
    let render = || output::remote::render_push(&remote.spec.name, &reports);
    if failed.is_empty() {
        printer.result(&reports, render);
        return Ok(ExitCode::Success);
    }
    let message = format!(
        "{} of {} bundle(s) were not pushed: {}",
        failed.len(),
        reports.len(),
        failed
            .iter()
            .map(|r| format!("{}: {}", r.id, r.error.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(printer.failure(
        &reports,
        ExitCode::CheckFailed,
        "push_failed",
        &message,
        render,
    ))
}

/// Pulls one remote bundle into the destination.
pub fn pull(cli: &Cli, args: &PullArgs, printer: Printer) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref())?;
    let remote = open(cli, &config, args.remote.as_deref())?;
    let id = remote::resolve_id(&remote, &args.bundle)?;
    let jobs = args.jobs.map_or(DEFAULT_JOBS, usize::from);
    let bar = printer.bar();
    let pulled = remote::pull::pull(&remote, &id, &destination, jobs, &bar)?;
    drop(bar);
    let doc = serde_json::json!({
        "ok": true,
        "remote": remote.spec.name,
        "id": id,
        "path": pulled.path.display().to_string(),
        "already": pulled.already,
    });
    printer.result(&doc, || output::remote::render_pull(&id, &pulled));
    Ok(ExitCode::Success)
}

/// The bundle a `--remote` restore uses: pulled into a temporary folder of
/// the destination (removed with the guard).
pub fn stage(
    cli: &Cli,
    config: &bundle::config::Config,
    name: &str,
    arg: &str,
    printer: &Printer,
) -> Result<(PathBuf, tempfile::TempDir)> {
    let destination = config.destination.clone().ok_or_else(|| {
        Error::Usage(
            "restore --remote needs a destination to pull into (the config's `destination`)".into(),
        )
    })?;
    let remote = open(cli, config, Some(name))?;
    let id = remote::resolve_id(&remote, arg)?;
    let bar = printer.bar();
    let staged = remote::pull::stage_for_restore(&remote, &id, &destination, DEFAULT_JOBS, &bar)?;
    drop(bar);
    Ok(staged)
}
