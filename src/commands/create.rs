//! `bundle create [--prune]`.

use std::path::Path;

use bundle::config::absolute;
use bundle::create::{create, CreateOptions};
use bundle::prune::{prune, PruneOptions};
use bundle::{Error, ExitCode, Result};

use super::{destination_of, effective_config};
use crate::cli::{Cli, CreateArgs};
use crate::output::{self, Printer};

/// Creates a bundle, then prunes with `--prune`.
pub fn run(cli: &Cli, args: &CreateArgs, printer: Printer) -> Result<ExitCode> {
    let config = effective_config(cli, &args.targets)?;
    let destination = destination_of(&config, None)?;
    if args.prune && config.retention.has_no_rules() {
        return Err(Error::Usage(
            "--prune needs a retention policy: add a [retention] table (for example keep_daily = 7) to bundle.toml; nothing was created"
                .into(),
        ));
    }
    // A remote that cannot be used fails before anything is created.
    let remote = match args.push {
        true => Some(super::remote::open(cli, &config, args.remote.as_deref())?),
        false => None,
    };
    let opts = CreateOptions {
        destination,
        stores: config.select(&args.stores)?,
        label: args.label.clone(),
        full_check: args.full_check || config.full_check,
        config_dir: config
            .file
            .as_deref()
            .and_then(|f| absolute(f).ok())
            .and_then(|f| f.parent().map(Path::to_path_buf)),
        hooks: config.hooks.clone(),
        jobs: args
            .jobs
            .map(usize::from)
            .unwrap_or_else(bundle::parallel::default_jobs),
        reuse: !args.no_reuse,
        shrink_alarm: config.shrink_alarm,
        accept_shrink: args.accept_shrink || args.label.is_some(),
    };
    let bar = printer.bar();
    let outcome = create(&opts, &bar)?;
    drop(bar);
    for warning in &outcome.warnings {
        output::warn(warning);
    }
    let suspicious = outcome.manifest.suspicious;
    for reason in &outcome.manifest.accepted_shrink {
        printer.note(&format!("accepted shrink: {}", output::escape(reason)));
    }
    // A suspicious bundle prunes nothing: it must not push a good one out.
    let pruned = match args.prune && !suspicious {
        true => Some(prune_after(&opts.destination, &config, &outcome)?),
        false => None,
    };
    let mut doc = output::create::json(&outcome, pruned.as_ref());
    if let Some(remote) = &remote {
        doc.push = Some(push_created(remote, &outcome, &printer)?);
    }
    if suspicious {
        for reason in &outcome.manifest.suspicious_reasons {
            output::warn(reason);
        }
        let message = output::create::suspicious(&outcome, args.prune);
        return Ok(
            printer.failure(&doc, ExitCode::CheckFailed, "suspicious", &message, || {
                output::create::render(&outcome)
            }),
        );
    }
    printer.result(&doc, || output::create::render(&outcome));
    printer.note(&output::create::summary(&outcome));
    if let Some(report) = &pruned {
        if !printer.json() {
            printer.note(output::prune::render(report).trim_end());
        }
    }
    Ok(ExitCode::Success)
}

/// `--push`: pushes the bundle just created; an error says it stays local.
fn push_created(
    remote: &bundle::remote::Remote,
    outcome: &bundle::create::CreateOutcome,
    printer: &Printer,
) -> Result<bundle::remote::push::Pushed> {
    let bar = printer.bar();
    let pushed = remote.list().and_then(|listing| {
        bundle::remote::push::push(
            remote,
            &listing,
            outcome.path.parent().unwrap_or(&outcome.path),
            std::slice::from_ref(&outcome.path),
            super::remote::DEFAULT_JOBS,
            &bar,
        )
    });
    drop(bar);
    let context = |e: Error| Error::Context {
        context: format!(
            "bundle {} was created (it stays local), but pushing it to remote \"{}\" failed",
            outcome.manifest.id, remote.spec.name
        ),
        source: Box::new(e),
    };
    let pushed = pushed.map_err(context)?.remove(0);
    if let Some(why) = &pushed.error {
        return Err(context(Error::Remote {
            remote: remote.spec.name.clone(),
            reason: why.clone(),
        }));
    }
    if !printer.json() {
        printer.note(
            crate::output::remote::render_push(&remote.spec.name, std::slice::from_ref(&pushed))
                .trim_end(),
        );
    }
    Ok(pushed)
}

/// `--prune`: applies the config's retention after a create that worked.
fn prune_after(
    destination: &Path,
    config: &bundle::config::Config,
    outcome: &bundle::create::CreateOutcome,
) -> Result<bundle::prune::PruneReport> {
    prune(&PruneOptions {
        destination: destination.to_path_buf(),
        policy: config.retention.clone(),
        now: jiff::Timestamp::now(),
        apply: true,
    })
    .map_err(|e| Error::Context {
        context: format!(
            "bundle {} was created, but pruning failed",
            outcome.manifest.id
        ),
        source: Box::new(e),
    })
}
