//! The `bundle` binary: parses arguments, calls the library, prints, and maps
//! the outcome to the documented exit code.

mod cli;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode as ProcessExit;

use clap::Parser;
use serde::Serialize;

use bundle::config::{absolute, parse_span, parse_store_flag, Config, StoreKind};
use bundle::create::{create, CreateOptions};
use bundle::prune::{prune, PruneOptions, PruneReport};
use bundle::restore::{drill, restore, Mode, Outcome, RestoreOptions};
use bundle::retention::Policy;
use bundle::schedule;
use bundle::verify::{verify, VerifyOptions};
use bundle::{Error, ExitCode, Result};
use cli::{Cli, Command, TargetArgs};

fn main() -> ProcessExit {
    let cli = Cli::parse();
    let code = match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            err.exit_code()
        }
    };
    ProcessExit::from(code as u8)
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Create(args) => run_create(cli, args),
        Command::Verify(args) => run_verify(cli, args),
        Command::List(args) => run_list(cli, args),
        Command::Restore(args) => run_restore(cli, args),
        Command::Drill(args) => run_drill(cli, args),
        Command::Prune(args) => run_prune(cli, args),
        Command::Schedule(cmd) => run_schedule(cli, cmd),
    }
}

/// The config file in use: `--config`, else `./bundle.toml` when present.
fn config_file(cli: &Cli) -> Option<PathBuf> {
    cli.config.clone().or_else(|| {
        let default = PathBuf::from("bundle.toml");
        default.is_file().then_some(default)
    })
}

/// Loads the config file in use, else an empty config.
fn load_config(cli: &Cli) -> Result<Config> {
    match config_file(cli) {
        Some(path) => Config::load(&path),
        None => Ok(Config::default()),
    }
}

/// The config with command-line stores and destination applied.
fn effective_config(cli: &Cli, targets: &TargetArgs) -> Result<Config> {
    let mut config = load_config(cli)?;
    let mut extra = Vec::new();
    for (kind, values) in [
        (StoreKind::Sqlite, &targets.sqlite),
        (StoreKind::Jsonl, &targets.jsonl),
        (StoreKind::Dir, &targets.dir),
    ] {
        for value in values {
            extra.push(parse_store_flag(kind, value)?);
        }
    }
    config.add_stores(extra)?;
    if let Some(dest) = &targets.dest {
        config.destination = Some(absolute(dest)?);
    }
    Ok(config)
}

fn destination_of(config: &Config, dest_flag: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(dest) = dest_flag {
        return absolute(dest);
    }
    config.destination.clone().ok_or_else(|| {
        Error::Usage(
            "no destination for bundles: set `destination = \"backups\"` in bundle.toml (or point --config at one), or pass --dest DIR"
                .into(),
        )
    })
}

fn progress_hidden(cli: &Cli) -> bool {
    cli.quiet || cli.json || cli.no_progress
}

#[derive(Serialize)]
struct CreatedJson<'a> {
    id: &'a str,
    path: String,
    created_at: &'a str,
    label: Option<&'a str>,
    bytes: u64,
    warnings: &'a [String],
    removed_leftovers: &'a [String],
    stores: Vec<CreatedStoreJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a PruneReport>,
}

#[derive(Serialize)]
struct CreatedStoreJson<'a> {
    name: &'a str,
    kind: StoreKind,
    status: bundle::manifest::StoreStatus,
    files: usize,
    reused: usize,
    bytes: u64,
}

fn run_create(cli: &Cli, args: &cli::CreateArgs) -> Result<ExitCode> {
    let config = effective_config(cli, &args.targets)?;
    let destination = destination_of(&config, None)?;
    if args.prune && config.retention.has_no_rules() {
        return Err(Error::Usage(
            "--prune needs a retention policy: add a [retention] table (for example keep_daily = 7) to bundle.toml; nothing was created"
                .into(),
        ));
    }
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
    };
    let bar = output::Bar::new(progress_hidden(cli));
    let outcome = create(&opts, &bar)?;
    drop(bar);
    for warning in &outcome.warnings {
        output::warn(warning);
    }
    let m = &outcome.manifest;
    let pruned = if args.prune {
        let report = prune(&PruneOptions {
            destination: opts.destination.clone(),
            policy: config.retention.clone(),
            now: jiff::Timestamp::now(),
            apply: true,
        })
        .map_err(|e| Error::Context {
            context: format!("bundle {} was created, but pruning failed", m.id),
            source: Box::new(e),
        })?;
        Some(report)
    } else {
        None
    };
    if cli.json {
        output::json(&CreatedJson {
            id: &m.id,
            path: outcome.path.display().to_string(),
            created_at: &m.created_at,
            label: m.label.as_deref(),
            bytes: m.total_bytes(),
            warnings: &outcome.warnings,
            removed_leftovers: &outcome.removed_leftovers,
            stores: m
                .stores
                .iter()
                .map(|s| CreatedStoreJson {
                    name: &s.name,
                    kind: s.kind,
                    status: s.status,
                    files: s.files.len(),
                    reused: s.files.iter().filter(|f| f.reused).count(),
                    bytes: s.files.iter().fold(0u64, |t, f| t.saturating_add(f.bytes)),
                })
                .collect(),
            prune: pruned.as_ref(),
        });
    } else if !cli.quiet {
        output::stdout(&format!("{}\t{}\n", m.id, outcome.path.display()));
        let files = m.stores.iter().flat_map(|s| &s.files);
        let reused = files.clone().filter(|f| f.reused).count();
        eprintln!(
            "created bundle {} ({} stores, {}; {} of {} files unchanged and shared with the previous bundle)",
            m.id,
            m.stores.len(),
            output::human_bytes(m.total_bytes()),
            reused,
            files.count()
        );
        if let Some(report) = &pruned {
            eprint!("{}", output::prune_summary(report));
        }
    }
    Ok(ExitCode::Success)
}

/// The flags' policy (empty when no rule flag is given).
fn policy_flags(args: &cli::PruneArgs) -> Result<Policy> {
    Ok(Policy {
        keep_last: args.keep_last,
        keep_within: args
            .keep_within
            .as_deref()
            .map(|t| parse_span(t).map_err(|e| Error::Usage(format!("--keep-within: {e}"))))
            .transpose()?,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_safety_days: None,
    })
}

fn run_prune(cli: &Cli, args: &cli::PruneArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref())?;
    let now = match &args.now {
        None => jiff::Timestamp::now(),
        Some(text) => text.parse().map_err(|e| {
            Error::Usage(format!(
                "--now \"{text}\" is not an RFC 3339 time ({e}); write it like 2026-11-23T03:00:00Z"
            ))
        })?,
    };
    let report = prune(&PruneOptions {
        destination,
        policy: config.retention.or_flags(&policy_flags(args)?),
        now,
        apply: args.apply,
    })?;
    if cli.json {
        output::json(&report);
    } else if !cli.quiet || !report.damaged.is_empty() {
        output::stdout(&output::prune_summary(&report));
    }
    Ok(ExitCode::Success)
}

fn run_verify(cli: &Cli, args: &cli::VerifyArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref()).ok();
    let path = bundle::bundle::resolve(&args.bundle, destination.as_deref())?;
    let bar = output::Bar::new(progress_hidden(cli));
    let report = verify(&path, VerifyOptions { quick: args.quick }, &bar)?;
    drop(bar);
    if cli.json {
        output::json(&report);
    } else {
        let mut text = String::new();
        for p in &report.problems {
            let place = match (&p.store, &p.path) {
                (_, Some(path)) => format!("{}: ", output::escape(path)),
                (Some(store), None) => format!("store \"{}\": ", output::escape(store)),
                (None, None) => String::new(),
            };
            text.push_str(&format!("problem: {place}{}\n", output::escape(&p.problem)));
        }
        if report.ok && !cli.quiet {
            text.push_str(&format!(
                "ok: {} verified ({} files, {})\n",
                path.display(),
                report.files_checked,
                output::human_bytes(report.bytes_checked)
            ));
        }
        output::stdout(&text);
    }
    if report.ok {
        Ok(ExitCode::Success)
    } else {
        eprintln!(
            "error: bundle {} failed verification: {} problem(s); do not restore from it",
            path.display(),
            report.problems.len()
        );
        Ok(ExitCode::CheckFailed)
    }
}

#[derive(Serialize)]
struct ListedJson<'a> {
    id: &'a str,
    path: String,
    created_at: &'a str,
    bytes: u64,
    stores: Vec<&'a str>,
    label: Option<&'a str>,
    reason: Option<&'a str>,
}

fn run_list(cli: &Cli, args: &cli::ListArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref())?;
    let listing = bundle::bundle::list(&destination)?;
    for (name, why) in &listing.unreadable {
        output::warn(&format!(
            "{name} looks like a bundle but cannot be read: {why}"
        ));
    }
    let rows: Vec<ListedJson> = listing
        .bundles
        .iter()
        .map(|b| ListedJson {
            id: &b.manifest.id,
            path: b.path.display().to_string(),
            created_at: &b.manifest.created_at,
            bytes: b.manifest.total_bytes(),
            stores: b.manifest.stores.iter().map(|s| s.name.as_str()).collect(),
            label: b.manifest.label.as_deref(),
            reason: b.manifest.reason.as_deref(),
        })
        .collect();
    if cli.json {
        output::json(&rows);
        return Ok(ExitCode::Success);
    }
    if rows.is_empty() {
        if !cli.quiet {
            eprintln!("no bundles in {}", destination.display());
        }
        return Ok(ExitCode::Success);
    }
    let mut text = format!(
        "{:<22} {:<22} {:>10}  {}\n",
        "ID", "CREATED", "SIZE", "STORES"
    );
    for r in &rows {
        let mut stores = output::escape(&r.stores.join(","));
        if let Some(label) = r.label {
            stores.push_str(&format!("  \"{}\"", output::escape(label)));
        }
        text.push_str(&format!(
            "{:<22} {:<22} {:>10}  {}\n",
            output::escape(r.id),
            output::escape(r.created_at),
            output::human_bytes(r.bytes),
            stores
        ));
    }
    output::stdout(&text);
    Ok(ExitCode::Success)
}

fn run_restore(cli: &Cli, args: &cli::RestoreArgs) -> Result<ExitCode> {
    let config = effective_config(cli, &args.targets)?;
    let path = bundle::bundle::resolve(&args.bundle, config.destination.as_deref())?;
    let mode = match args.mode {
        cli::ModeArg::Merge => Mode::Merge,
        cli::ModeArg::Replace => Mode::Replace,
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
    let bar = output::Bar::new(progress_hidden(cli));
    let report = restore(&opts, &bar)?;
    drop(bar);
    if cli.json {
        output::json(&report);
    } else if !cli.quiet || report.outcome != Outcome::Applied {
        output::stdout(&output::restore_plan(&report));
    }
    match report.outcome {
        Outcome::Applied | Outcome::DryRun => Ok(ExitCode::Success),
        Outcome::TokenMissing => {
            eprintln!(
                "error: --mode replace overwrites the live stores listed above; check the plan, then re-run with --confirm-token {}",
                report.confirm_token
            );
            Ok(ExitCode::Refused)
        }
        Outcome::TokenMismatch => {
            eprintln!(
                "error: the confirm token does not approve this plan (another bundle, mode, store selection or target); this plan's token is {}",
                report.confirm_token
            );
            Ok(ExitCode::Refused)
        }
    }
}

fn run_schedule(cli: &Cli, cmd: &cli::ScheduleCommand) -> Result<ExitCode> {
    let backend = schedule::detect_backend()?;
    match cmd {
        cli::ScheduleCommand::Install(args) => {
            let config_file = config_file(cli).ok_or_else(|| {
                Error::Usage(
                    "schedule install needs a config: pass --config PATH (the timer runs `bundle --config PATH create --prune --quiet`)"
                        .into(),
                )
            })?;
            let config_file = std::fs::canonicalize(&config_file)
                .map_err(|e| Error::io("could not find config", &config_file, e))?;
            let config = Config::load(&config_file)?;
            if config.retention.has_no_rules() {
                return Err(Error::Usage(format!(
                    "{} has no [retention] policy, so the scheduled `create --prune` would fail every time; add one (for example keep_daily = 7) and install again",
                    config_file.display()
                )));
            }
            destination_of(&config, None)?;
            let when = match (&args.at, &args.every) {
                (Some(at), _) => schedule::When::parse_at(at)?,
                (None, Some(every)) => schedule::When::parse_every(every)?,
                (None, None) => {
                    return Err(Error::Usage("give --at HH:MM or --every DURATION".into()))
                }
            };
            let program = std::env::current_exe()
                .map_err(|e| Error::io("could not find", Path::new("the bundle executable"), e))?;
            let plan = schedule::Schedule {
                name: args.name.clone(),
                when,
                program,
                config: config_file,
            };
            let done = schedule::install(&plan, &backend, args.print)?;
            if cli.json {
                output::json(&done);
            } else if args.print || !cli.quiet {
                output::stdout(&output::schedule_installed(&done));
            }
        }
        cli::ScheduleCommand::Remove(args) => {
            let removed = schedule::remove(&args.name, &backend)?;
            if cli.json {
                output::json(&serde_json::json!({ "name": args.name, "removed": removed }));
            } else if removed.is_empty() {
                eprintln!(
                    "no schedule named \"{}\" is installed; nothing changed",
                    args.name
                );
            } else if !cli.quiet {
                let mut text = format!("removed schedule \"{}\":\n", args.name);
                for r in &removed {
                    text.push_str(&format!("  {r}\n"));
                }
                output::stdout(&text);
            }
        }
        cli::ScheduleCommand::Status => {
            let found = schedule::status(&backend)?;
            if cli.json {
                output::json(&found);
            } else if found.is_empty() {
                eprintln!("no bundle schedules installed");
            } else {
                let mut text = String::new();
                for s in &found {
                    text.push_str(&format!(
                        "{} ({}): {}\n  runs: {}\n",
                        s.name, s.backend, s.when, s.command
                    ));
                    if let Some(last) = &s.last_run {
                        text.push_str(&format!("  last run: {last}\n"));
                    }
                    if let Some(next) = &s.next_run {
                        text.push_str(&format!("  next run: {next}\n"));
                    }
                }
                output::stdout(&text);
            }
        }
    }
    Ok(ExitCode::Success)
}

fn run_drill(cli: &Cli, args: &cli::DrillArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let destination = destination_of(&config, args.dest.as_ref()).ok();
    let path = bundle::bundle::resolve(&args.bundle, destination.as_deref())?;
    let bar = output::Bar::new(progress_hidden(cli));
    let report = drill(&absolute(&path)?, None, &bar)?;
    drop(bar);
    if cli.json {
        output::json(&report);
    } else if !cli.quiet {
        let mut text = String::new();
        for s in &report.stores {
            text.push_str(&format!(
                "  {} ({}): {} written, {} kept\n",
                output::escape(&s.name),
                s.kind,
                s.counts.written,
                s.counts.kept
            ));
        }
        if let Some(sandbox) = report.sandbox {
            text.push_str(&format!("sandbox: {}\n", sandbox.describe()));
        }
        text.push_str(&format!(
            "ok: bundle {} restores cleanly and matches its manifest\n",
            output::escape(&report.bundle_id)
        ));
        output::stdout(&text);
    }
    Ok(ExitCode::Success)
}
