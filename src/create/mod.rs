//! `bundle create`: capture the selected stores into a new bundle.
//!
//! The bundle is built in a hidden staging folder under the destination lock,
//! every file and folder is fsynced, and only then is it renamed into place:
//! the rename is the commit point, so a crash never leaves a half bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::bundle::locate::error_chain;
use crate::bundle::{id::rfc3339, lock::DestinationLock, staging, BundleId};
use crate::capture::{self as unit, CaptureContext, Previous};
use crate::config::{Hooks, StoreSpec};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hash;
use crate::history::History;
use crate::hooks::{self, HookEnv, Operation};
use crate::manifest::spool::{self, RecordSpool, SpooledList};
use crate::manifest::{self, FileRecord, Manifest, StoreRecord, ToolInfo, MANIFEST_FILE};
use crate::parallel;
use crate::progress::Progress;
use crate::shrink::Baseline;
use crate::store::{self, CapturePlan, UnitKind};

mod gather;

pub use gather::StoreTally;
use gather::{capture_all, writes_the_bundle, Captured};

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Folder that holds the bundles.
    pub destination: PathBuf,
    /// Stores to capture.
    pub stores: Vec<StoreSpec>,
    /// Free text recorded in the manifest.
    pub label: Option<String>,
    /// Full `integrity_check` on SQLite copies instead of `quick_check`.
    pub full_check: bool,
    /// Folder of the config file, for git provenance (`None`: no provenance).
    pub config_dir: Option<PathBuf>,
    /// The `pre_create`/`post_create` hooks to run around the capture.
    pub hooks: Hooks,
    /// How many files to capture at once (at least 1).
    pub jobs: usize,
    /// Hard-link unchanged files from the previous good bundle instead of copying.
    pub reuse: bool,
    /// The fraction of loss that makes the bundle suspicious (see
    /// [`crate::shrink`]); a store's own `shrink_alarm` overrides it.
    pub shrink_alarm: f64,
    /// The creator acknowledges a shrink (`--accept-shrink`, or a label):
    /// it is recorded as accepted, and the bundle is not suspicious.
    pub accept_shrink: bool,
}

/// A created bundle.
#[derive(Debug, Clone)]
pub struct CreateOutcome {
    /// Its folder.
    pub path: PathBuf,
    /// Its manifest, without the file records of the stores captured file
    /// by file (they were spooled, not held: see [`crate::manifest::spool`]).
    pub manifest: Manifest,
    /// What each store's files add up to, in the manifest's store order.
    pub tallies: Vec<StoreTally>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Staging folders of crashed runs that were removed first.
    pub removed_leftovers: Vec<String>,
}

/// Creates a bundle; see the module docs for the steps and their guarantees.
/// The configured hooks run around it (see [`crate::hooks`]).
pub fn create(opts: &CreateOptions, progress: &dyn Progress) -> Result<CreateOutcome> {
    if opts.stores.is_empty() {
        return Err(Error::Usage(
            "no stores to back up: add [[stores]] to bundle.toml or pass --sqlite/--jsonl/--dir NAME=PATH"
                .into(),
        ));
    }
    crate::bundle::lock::check_destination(&opts.destination)?;
    check_nesting(&opts.destination, &opts.stores)?;
    let before = HookEnv {
        id: None,
        path: None,
        destination: opts.destination.clone(),
    };
    hooks::around(
        &opts.hooks,
        Operation::Create,
        &before,
        || capture_bundle(opts, None, progress),
        |outcome| HookEnv {
            id: Some(outcome.manifest.id.clone()),
            path: Some(outcome.path.clone()),
            destination: opts.destination.clone(),
        },
    )
}

/// The pre-restore safety snapshot of `stores`: a bundle with reason
/// `pre-restore` naming the bundle about to be restored, made while the
/// restore already holds the destination lock (and its journal may exist),
/// without hooks, reusing the previous bundle's unchanged files.
pub fn safety_snapshot(
    destination: &Path,
    stores: Vec<StoreSpec>,
    restoring: &str,
    progress: &dyn Progress,
) -> Result<CreateOutcome> {
    let opts = CreateOptions {
        destination: destination.to_path_buf(),
        stores,
        label: Some(format!("before restoring {restoring}")),
        full_check: false,
        config_dir: None,
        hooks: Hooks::default(),
        jobs: parallel::default_jobs(),
        reuse: true,
        shrink_alarm: crate::config::DEFAULT_SHRINK_ALARM,
        accept_shrink: true,
    };
    let safety = Safety {
        restoring: restoring.to_string(),
    };
    capture_bundle(&opts, Some(&safety), progress)
}

/// What makes a create a restore's safety snapshot.
struct Safety {
    /// The id of the bundle about to be restored.
    restoring: String,
}

/// The create itself: lock, staging, capture, commit by rename. A safety
/// snapshot runs under its restore's lock and despite its journal.
fn capture_bundle(
    opts: &CreateOptions,
    safety: Option<&Safety>,
    progress: &dyn Progress,
) -> Result<CreateOutcome> {
    let (_lock, removed_leftovers) = prepare_destination(&opts.destination, safety)?;

    // Walk every store first (no copying), so space is known before writing.
    let mut stores = opts.stores.clone();
    stores.sort_by(|a, b| a.name.cmp(&b.name));
    let (walked, history) = walk_beside_history(opts, &stores);
    let (previous, spool) = match history.previous {
        Some((previous, spool)) => (Some(previous), spool),
        None => (None, RecordSpool::new_in(&opts.destination)?),
    };
    let plans = walk_stores(&stores, walked, safety.is_some(), previous.as_ref())?;
    let new_files = check_space(opts, &plans, previous.as_ref())?;

    let now = Timestamp::now();
    let id = free_id(&opts.destination, BundleId::at(now));
    let staging_dir = staging::staging_path(&opts.destination, &id.to_string());
    // The bundle folder is its owner's alone; its files keep their sources'
    // permission bits without write. It is registered before it exists, so
    // an interruption never misses it.
    let staged = crate::interrupt::scratch(
        &staging_dir,
        match safety {
            Some(_) => "the unfinished safety snapshot (nothing was restored)",
            None => "the unfinished bundle",
        },
    );
    fsutil::create_private_dir(&staging_dir)?;

    let ctx = CaptureContext {
        bundle_root: &staging_dir,
        full_check: opts.full_check,
        progress,
        previous: previous.as_ref(),
        spool: &spool,
    };
    let built = build(
        opts,
        safety,
        &id,
        now,
        &stores,
        (plans, new_files),
        &ctx,
        &history.baselines,
    );
    let (manifest, tallies, warnings) = match built {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging_dir);
            return Err(e);
        }
    };
    let path = opts.destination.join(id.to_string());
    if let Err(e) = crate::interrupt::publish(staged, || std::fs::rename(&staging_dir, &path)) {
        let _ = std::fs::remove_dir_all(&staging_dir);
        return Err(Error::io(
            "could not move the new bundle into place at",
            &path,
            e,
        ));
    }
    fsutil::fsync_path(&opts.destination)?;
    refuse_partial(&manifest, &path)?;
    Ok(CreateOutcome {
        path,
        manifest,
        tallies,
        warnings,
        removed_leftovers,
    })
}

/// Every store's walk, and the history ([`crate::history`]), read once:
/// the previous good bundle to reuse from and the bundles a new one is
/// judged against. They run at once (the walk's listing on one thread, the
/// history's checks on the others).
fn walk_beside_history(
    opts: &CreateOptions,
    stores: &[StoreSpec],
) -> (Vec<Result<CapturePlan>>, History) {
    std::thread::scope(|scope| {
        let history = scope.spawn(|| crate::history::read(&opts.destination, stores, opts.reuse));
        let walked = stores.iter().map(store::plan_walked).collect();
        (
            walked,
            history.join().expect("reading the history does not panic"),
        )
    })
}

/// Makes the destination and takes its lock (a safety snapshot runs under
/// its restore's lock and despite its journal), then removes the leftovers
/// of crashed runs; returns the lock and what was removed.
fn prepare_destination(
    destination: &Path,
    safety: Option<&Safety>,
) -> Result<(Option<DestinationLock>, Vec<String>)> {
    fsutil::create_private_dir_all(destination)?;
    let lock = match safety {
        Some(_) => None,
        None => Some(DestinationLock::acquire(destination)?),
    };
    if safety.is_none() {
        crate::bundle::journal::refuse_if_interrupted(destination)?;
    }
    Ok((lock, staging::remove_leftovers(destination)?))
}

/// Every store's capture plan, from its walk (`walked`, in `stores`'
/// order): which of its files are databases is settled (a file the
/// previous bundle holds unchanged as plain is not opened). A store that
/// cannot be walked fails alone (its plan says so); a config error stops
/// all, except in a safety snapshot, which keeps such a store's raw bytes
/// instead.
fn walk_stores(
    stores: &[StoreSpec],
    walked: Vec<Result<CapturePlan>>,
    safety: bool,
    previous: Option<&Previous>,
) -> Result<Vec<CapturePlan>> {
    // A file unchanged since the previous bundle recorded it as plain is
    // still not a database: its header need not be read again.
    let known_plain = |unit: &store::Unit| {
        previous.is_some_and(|prev| {
            (unit.walked_stat()).is_some_and(|stat| prev.entry_for(unit, &stat, false).is_some())
        })
    };
    stores
        .iter()
        .zip(walked)
        .map(|(spec, walked)| {
            // Each file's previous record, found once for every question below.
            let matched = walked.map(|mut plan| {
                if let Some(prev) = previous {
                    prev.match_units(&mut plan.units);
                }
                plan
            });
            match matched.and_then(|plan| store::settle_databases(plan, &known_plain)) {
                Ok(mut plan) => {
                    // In the manifest's order: their records are spooled
                    // and written back in unit order.
                    plan.units
                        .sort_unstable_by(|a, b| unit_order(a).cmp(&unit_order(b)));
                    Ok(plan)
                }
                Err(e @ Error::Usage(_)) if !safety => Err(Error::Snapshot {
                    store: spec.name.clone(),
                    source: Box::new(e),
                }),
                Err(e) => Ok(CapturePlan::failed(e)),
            }
        })
        .collect()
}

/// The order of a store's files in its manifest: by text path, then by
/// exact bytes.
fn unit_order(unit: &store::Unit) -> (&str, Option<&str>) {
    (&*unit.path, unit.path_hex.as_deref())
}

/// After publishing: a bundle missing some of its stores is an error (exit 1)
/// that names them, though the bundle stays as evidence.
fn refuse_partial(manifest: &Manifest, path: &Path) -> Result<()> {
    let failures: Vec<(String, String)> = manifest
        .failed_stores()
        .into_iter()
        .map(|(s, why)| (s.to_string(), why.to_string()))
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::StoresFailed {
        id: manifest.id.clone(),
        path: path.to_path_buf(),
        failures,
    })
}

/// Refuses (exit 4) when the destination's file system lacks the bytes the
/// files that will not be reused need, plus their records' room and a
/// margin; returns how many files will be copied.
fn check_space(
    opts: &CreateOptions,
    plans: &[CapturePlan],
    previous: Option<&Previous>,
) -> Result<usize> {
    let (destination, full_check) = (&opts.destination, opts.full_check);
    let mut needed: u64 = 0;
    let mut new_files = 0;
    let mut files: u64 = 0;
    for unit in plans.iter().flat_map(|p| &p.units) {
        files += 1;
        let reusable = previous.is_some_and(|prev| {
            let stat = match unit.walked_stat() {
                Some(stat) => Ok(stat),
                None => unit::source_stat(&unit.src(), unit.kind == UnitKind::Sqlite),
            };
            stat.is_ok_and(|stat| prev.entry_for(unit, &stat, full_check).is_some())
        });
        if !reusable {
            needed = needed.saturating_add(unit.bytes);
            new_files += 1;
        }
    }
    // Each file's record takes room too: spooled once, then in the manifest.
    let records = files.saturating_mul(RECORD_ROOM);
    let needed = (needed.saturating_add(needed / 20))
        .saturating_add(records)
        .saturating_add(1 << 20);
    let (available, _) = fsutil::free_space(destination)?;
    if needed > available {
        return Err(Error::NoSpace {
            path: destination.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(new_files)
}

/// The room a file's record takes while a create runs, about: its spooled
/// line and its manifest line (some 300 bytes each for a small file).
const RECORD_ROOM: u64 = 768;

/// Captures every unit in parallel (biggest first), assembles the stores in
/// name order with their files sorted, and writes the manifest; fsyncs all.
#[allow(clippy::too_many_arguments)]
fn build(
    opts: &CreateOptions,
    safety: Option<&Safety>,
    id: &BundleId,
    now: Timestamp,
    stores: &[StoreSpec],
    (plans, new_files): (Vec<CapturePlan>, usize),
    ctx: &CaptureContext<'_>,
    history: &[Baseline],
) -> Result<(Manifest, Vec<StoreTally>, Vec<String>)> {
    let mut folders = 0;
    for folder in plans.iter().flat_map(|p| &p.folders) {
        fsutil::create_dir_all(&ctx.target(folder))?;
        folders += 1;
    }
    let mut plans = plans;
    // Many new files: their writeback runs while they are copied.
    let syncing = crate::writeback::worth_it(new_files);
    let mut captured = crate::writeback::syncing_while(ctx.bundle_root, syncing, || {
        capture_all(opts, stores, &mut plans, ctx)
    })??;
    capture_sets(opts, stores, &mut plans, ctx, &mut captured)?;
    if safety.is_some() {
        captured.damaged = keep_raw(stores, &mut plans, &mut captured.failed, ctx, opts.jobs)?;
    }
    refuse_if_nothing_captured(stores, &mut plans, &mut captured.failed)?;
    let (built, warnings) = store_records(stores, plans, &mut captured, ctx)?;
    let (suspicious_reasons, accepted_shrink) = judge_shrink(opts, safety, &built, history);
    let Stores {
        records,
        spooled,
        tallies,
    } = built;
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        id: id.to_string(),
        created_at: rfc3339(now),
        label: opts.label.clone(),
        reason: safety.map(|_| manifest::PRE_RESTORE.to_string()),
        restoring: safety.map(|s| s.restoring.clone()),
        tool: ToolInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        host: host_name(),
        git: opts.config_dir.as_deref().and_then(crate::vcs::provenance),
        topology: manifest::topology(records.iter().map(|s| (s.name.as_str(), s.kind))),
        stores: records,
        suspicious: !suspicious_reasons.is_empty(),
        suspicious_reasons,
        accepted_shrink,
    };
    // Many folders (or files): `syncfs`, not a walk of the whole tree to
    // fsync each.
    let wrote = written_files(ctx.bundle_root, &manifest, &spooled, captured.copied.take())
        .filter(|w| w.len().max(folders) <= fsutil::SYNCFS_ABOVE_FILES);
    let written = Written {
        spooled: &spooled,
        spool: ctx.spool,
        tallies: &tallies,
    };
    write_durably(
        ctx.bundle_root,
        &manifest,
        written,
        opts.jobs,
        wrote.as_deref(),
    )?;
    Ok((manifest, tallies, warnings))
}

/// The manifest's records that are not in it: where each store's spooled
/// records are, the spool (emptied once the manifest is written), and each
/// store's tally (for a message).
struct Written<'a> {
    spooled: &'a [Option<SpooledList>],
    spool: &'a RecordSpool,
    tallies: &'a [StoreTally],
}

/// Writes the manifest into the bundle being built at `root`, then makes
/// all that this create wrote durable before the rename publishes it.
/// Every copy got its read-only mode as it was written
/// (`capture::capture_unit`), and a reused file is a hard link to a copy
/// already read-only and durable in the previous bundle: only its
/// directory entry is new. The manifest's files are made read-only here.
///
/// When the files it `wrote` are few (and the folders), each of them and
/// every folder is fsynced ([`fsync_tree`]). Else (`None`) a first
/// `syncfs` writes the capture's data and entries back while the manifest
/// is written beside it (a manifest of 50,000 files takes about as long to
/// write as that sync), and a last one, once the manifest is complete,
/// makes everything durable: the guarantee rests on the last alone.
fn write_durably(
    root: &Path,
    manifest: &Manifest,
    records: Written<'_>,
    jobs: usize,
    wrote: Option<&[PathBuf]>,
) -> Result<()> {
    let manifest_files = MANIFEST_FILES.map(|f| root.join(f));
    let read_only = || fsutil::make_read_only(manifest_files.iter().map(PathBuf::as_path));
    if let Some(wrote) = wrote {
        write_manifest(root, manifest, records, true)?;
        read_only()?;
        return fsync_tree(root, jobs, wrote);
    }
    let spool = records.spool;
    let (early, written) = std::thread::scope(|scope| {
        let early = scope.spawn(|| fsutil::syncfs(root));
        let written = write_manifest(root, manifest, records, false);
        (early.join().expect("a sync does not panic"), written)
    });
    written?;
    early?;
    spool.discard()?;
    read_only()?;
    fsutil::syncfs(root)
}

/// A new bundle's stores: the manifest record of each (in config order;
/// without the records of those whose files are spooled), where each
/// one's spooled records are, and what each one's files add up to.
struct Stores {
    records: Vec<StoreRecord>,
    spooled: Vec<Option<SpooledList>>,
    tallies: Vec<StoreTally>,
}

/// The manifest record of each store, in config order, where the spooled
/// records of each are, and the warnings gathered on the way.
fn store_records(
    stores: &[StoreSpec],
    plans: Vec<CapturePlan>,
    captured: &mut Captured,
    ctx: &CaptureContext<'_>,
) -> Result<(Stores, Vec<String>)> {
    let mut out = Stores {
        records: Vec::new(),
        spooled: Vec::new(),
        tallies: Vec::new(),
    };
    let mut warnings = Vec::new();
    for (i, (spec, mut plan)) in stores.iter().zip(plans).enumerate() {
        warnings.append(&mut plan.warnings);
        let files = std::mem::take(&mut captured.files[i]);
        let spooled = captured.spooled[i].take();
        let (record, spooled, tally) = if let Some(record) = captured.damaged.remove(&spec.name) {
            warnings.push(format!(
                "store \"{}\" could not be captured normally ({}); its exact bytes are kept raw, recorded as damaged",
                spec.name,
                record.error.as_deref().unwrap_or("unknown error")
            ));
            let tally = StoreTally::of(record.kind, &record.files);
            (record, None, tally)
        } else {
            let failure = match plan.failure.as_deref() {
                Some(e) => Some(error_chain(e)),
                None => captured.failed.remove(&spec.name).map(|e| error_chain(&e)),
            };
            match failure {
                Some(reason) => (
                    failed_record(spec, plan, reason, ctx)?,
                    None,
                    StoreTally::default(),
                ),
                None => {
                    warnings.append(&mut captured.warnings[i]);
                    let mut record = captured_record(spec, plan, files);
                    record.chroma = captured.sets.remove(&spec.name);
                    (record, spooled, captured.tallies[i])
                }
            }
        };
        out.records.push(record);
        out.spooled.push(spooled);
        out.tallies.push(tally);
    }
    Ok((out, warnings))
}

/// The new bundle's (suspicious, accepted) shrink reasons. A safety
/// snapshot records whatever is live: only creates are judged.
fn judge_shrink(
    opts: &CreateOptions,
    safety: Option<&Safety>,
    stores: &Stores,
    history: &[Baseline],
) -> (Vec<String>, Vec<String>) {
    let shrunk = match safety {
        Some(_) => Vec::new(),
        None => shrink_reasons(opts, stores, history),
    };
    match opts.accept_shrink {
        true => (Vec::new(), shrunk),
        false => (shrunk, Vec::new()),
    }
}

/// Why the new bundle's stores look wiped or gutted next to the bundles
/// already in the destination.
fn shrink_reasons(opts: &CreateOptions, stores: &Stores, history: &[Baseline]) -> Vec<String> {
    let size_of = |i: usize, record: &StoreRecord| {
        crate::shrink::size_with(record, stores.tallies[i].measure)
    };
    crate::shrink::reasons(&stores.records, size_of, history, |name| {
        opts.stores
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.shrink_alarm)
            .unwrap_or(opts.shrink_alarm)
    })
}

/// Captures each store whose files form a set (see [`crate::settle`]), one
/// store at a time: its walk is replaced by the attempt that held, and its
/// files and facts join `captured`.
fn capture_sets(
    opts: &CreateOptions,
    stores: &[StoreSpec],
    plans: &mut [CapturePlan],
    ctx: &CaptureContext<'_>,
    captured: &mut Captured,
) -> Result<()> {
    for (i, (spec, plan)) in stores.iter().zip(plans.iter_mut()).enumerate() {
        if !plan.as_set || plan.failure.is_some() || plan.status.is_some() {
            continue;
        }
        ctx.progress.start(
            &format!("capturing store \"{}\" as one set", spec.name),
            None,
        );
        let set = crate::settle::capture_chroma(spec, ctx, opts.jobs);
        ctx.progress.finish();
        match set {
            Ok(set) => {
                for d in set.done {
                    captured.add(i, spec.kind, d);
                }
                let warnings = std::mem::take(&mut plan.warnings);
                *plan = set.plan;
                plan.warnings.splice(0..0, warnings);
                captured.sets.insert(spec.name.clone(), set.facts);
            }
            Err(e) if writes_the_bundle(&e, ctx.bundle_root) => {
                return Err(Error::Snapshot {
                    store: spec.name.clone(),
                    source: Box::new(e),
                })
            }
            Err(e) => {
                captured.failed.insert(spec.name.clone(), e);
            }
        }
    }
    Ok(())
}

/// For a safety snapshot: every store that could not be captured normally is
/// captured again as its exact raw bytes (see [`crate::store::raw`]) and
/// recorded as `damaged`, so the restore can go on without losing what was
/// live. A store whose raw copy fails too stays failed.
fn keep_raw(
    stores: &[StoreSpec],
    plans: &mut [CapturePlan],
    failed: &mut BTreeMap<String, Error>,
    ctx: &CaptureContext<'_>,
    jobs: usize,
) -> Result<BTreeMap<String, StoreRecord>> {
    let mut damaged = BTreeMap::new();
    for (spec, plan) in stores.iter().zip(plans.iter_mut()) {
        let failure = match plan.failure.take() {
            Some(e) => Some(*e),
            None => failed.remove(&spec.name),
        };
        let Some(failure) = failure else { continue };
        let reason = error_chain(&failure);
        match unit::capture_raw(spec, &reason, ctx, jobs) {
            Ok(record) => {
                plan.status = None;
                damaged.insert(spec.name.clone(), record);
            }
            Err(e) if writes_the_bundle(&e, ctx.bundle_root) => return Err(e),
            Err(_) => {
                plan.failure = Some(Box::new(failure));
            }
        }
    }
    Ok(damaged)
}

/// When stores failed and none was captured there is nothing to keep as
/// evidence: the create fails as a whole, with the first store's own error.
fn refuse_if_nothing_captured(
    stores: &[StoreSpec],
    plans: &mut [CapturePlan],
    failed: &mut BTreeMap<String, Error>,
) -> Result<()> {
    let captured_any = stores.iter().zip(plans.iter()).any(|(spec, plan)| {
        plan.failure.is_none() && plan.status.is_none() && !failed.contains_key(&spec.name)
    });
    if captured_any {
        return Ok(());
    }
    for (spec, plan) in stores.iter().zip(plans.iter_mut()) {
        let own = plan
            .failure
            .take()
            .map(|b| *b)
            .or_else(|| failed.remove(&spec.name));
        if let Some(e) = own {
            return Err(Error::Snapshot {
                store: spec.name.clone(),
                source: Box::new(e),
            });
        }
    }
    Ok(())
}

/// The record of a store that could not be captured; nothing of it stays in
/// the bundle.
fn failed_record(
    spec: &StoreSpec,
    plan: CapturePlan,
    reason: String,
    ctx: &CaptureContext<'_>,
) -> Result<StoreRecord> {
    unit::remove_store_folder(&ctx.target(Path::new(&spec.name)))?;
    Ok(StoreRecord {
        name: spec.name.clone(),
        kind: spec.kind,
        source: spec.path.to_string_lossy().into_owned(),
        status: manifest::StoreStatus::Failed,
        single_file: plan.single_file,
        files: Vec::new(),
        symlinks: Vec::new(),
        exclude: spec.exclude.clone(),
        error: Some(reason),
        chroma: None,
        lancedb: None,
    })
}

/// The record of a captured store, its files sorted by path.
fn captured_record(spec: &StoreSpec, plan: CapturePlan, mut files: Vec<FileRecord>) -> StoreRecord {
    // Paths are unique: an unstable sort orders them the same, in place.
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    StoreRecord {
        name: spec.name.clone(),
        kind: spec.kind,
        source: spec.path.to_string_lossy().into_owned(),
        status: plan.status.unwrap_or(manifest::StoreStatus::Ok),
        single_file: plan.single_file,
        files,
        symlinks: plan.symlinks,
        exclude: spec.exclude.clone(),
        error: None,
        chroma: None,
        lancedb: plan.lancedb,
    }
}

/// Writes the manifest (streamed: never held whole in memory), its
/// spooled records spliced in, and its checksum file into the staging
/// folder, fsyncing both when `sync` (else the caller's sync of the file
/// system must make them durable).
fn write_manifest(
    staging_dir: &Path,
    manifest: &Manifest,
    records: Written<'_>,
    sync: bool,
) -> Result<()> {
    let path = staging_dir.join(MANIFEST_FILE);
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("could not create", &path, e))?;
    // Buffered before the hash: the serializer's many small writes reach
    // the hasher and the file as a few large ones.
    let mut out = std::io::BufWriter::with_capacity(hash::BUF_SIZE, hash::HashingWriter::new(file));
    let mut spool = records.spool.reader()?;
    spool::write_spliced(manifest, records.spooled, &mut spool, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| Error::io("could not write", &path, e))?;
    let hashed = out
        .into_inner()
        .map_err(|e| Error::io("could not write", &path, e.into_error()))?;
    let (file, bytes, sha256) = hashed.finish();
    // Never publish a bundle this tool could not read back.
    if bytes > manifest::MAX_MANIFEST_BYTES {
        drop(file);
        let _ = std::fs::remove_file(&path);
        let largest = (manifest.stores.iter().zip(records.tallies))
            .max_by_key(|(_, t)| t.files)
            .map_or_else(String::new, |(s, _)| s.name.clone());
        return Err(Error::CheckFailed {
            store: largest,
            reason: format!(
                "the manifest would be {bytes} bytes ({} files), more than the {} bytes a bundle's manifest may have; nothing was published. Split the largest store into several stores (or `exclude` what need not be backed up)",
                records.tallies.iter().map(|t| t.files).sum::<usize>(),
                manifest::MAX_MANIFEST_BYTES
            ),
        });
    }
    if sync {
        file.sync_all()
            .map_err(|e| Error::io("could not write", &path, e))?;
    }
    fsutil::write_new_file(
        &staging_dir.join(manifest::MANIFEST_SUM_FILE),
        manifest::sum_line(&sha256).as_bytes(),
        sync,
    )
}

/// The manifest's own files in a bundle.
const MANIFEST_FILES: [&str; 2] = [MANIFEST_FILE, manifest::MANIFEST_SUM_FILE];

/// The files of the bundle being built at `root` that this create wrote,
/// as paths: the files `copied` file by file (`None`: too many to fsync
/// one by one, and then `None`) of the stores whose records are `spooled`
/// (a store that failed is gone from the bundle), every file `manifest`
/// holds a record of that is not a hard link to the previous bundle's
/// copy, and the manifest's own two files.
fn written_files(
    root: &Path,
    manifest: &Manifest,
    spooled: &[Option<SpooledList>],
    copied: Option<Vec<PathBuf>>,
) -> Option<Vec<PathBuf>> {
    let kept: Vec<&str> = (manifest.stores.iter().zip(spooled))
        .filter(|(_, list)| list.is_some())
        .map(|(s, _)| s.name.as_str())
        .collect();
    let copied = copied?.into_iter().filter(|rel| {
        rel.iter()
            .next()
            .is_some_and(|s| kept.iter().any(|k| s == *k))
    });
    let listed = manifest
        .stores
        .iter()
        .flat_map(|s| &s.files)
        .filter(|f| !f.reused)
        .filter_map(|f| f.rel().ok());
    let own = MANIFEST_FILES.map(PathBuf::from);
    let wrote = copied.chain(listed).chain(own);
    Some(wrote.map(|rel| root.join(rel)).collect())
}

/// Makes the bundle being built at `root` durable: the files it `wrote`
/// (written without waiting for the disk, so writeback overlapped the
/// capture) in parallel, then every folder, deepest first, so that files
/// and entries are durable before the rename commits the bundle (for a
/// bundle of few files and folders: else one `syncfs` does it, see
/// [`write_durably`]).
fn fsync_tree(root: &Path, jobs: usize, wrote: &[PathBuf]) -> Result<()> {
    parallel::map(wrote, jobs, |f| fsutil::fsync_path(f))?;
    let mut folders = Vec::new();
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(|e| Error::io("could not walk", root, e.into()))?;
        if entry.file_type().is_dir() {
            folders.push(entry.into_path());
        }
    }
    folders.iter().try_for_each(|d| fsutil::fsync_path(d))
}

/// The first id not yet taken in `destination`, adding `-1`, `-2`… as needed.
fn free_id(destination: &Path, base: BundleId) -> BundleId {
    // Past the highest id of the same second, not into a gap a prune left:
    // ids must keep the order in which bundles were made.
    let mut n = std::fs::read_dir(destination)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| BundleId::parse(e.file_name().to_str()?))
        .filter(|id| id.same_second(&base))
        .map(|id| id.suffix() + 1)
        .max()
        .unwrap_or(0);
    loop {
        let id = base.with_suffix(n);
        if std::fs::symlink_metadata(destination.join(id.to_string())).is_err() {
            return id;
        }
        n += 1;
    }
}

/// Refuses a destination inside a store's source, or a source inside the destination.
pub fn check_nesting(destination: &Path, stores: &[StoreSpec]) -> Result<()> {
    let dest = fsutil::canonical_lenient(destination);
    for store in stores {
        let src = fsutil::canonical_lenient(&store.path);
        if fsutil::is_within(&dest, &src) {
            return Err(Error::Refused(format!(
                "the destination {} is inside store \"{}\" ({}): bundles would back up themselves; choose a destination outside every store",
                destination.display(),
                store.name,
                store.path.display()
            )));
        }
        if fsutil::is_within(&src, &dest) {
            return Err(Error::Refused(format!(
                "store \"{}\" ({}) is inside the destination {}: choose a destination outside every store",
                store.name,
                store.path.display(),
                destination.display()
            )));
        }
    }
    Ok(())
}

/// This machine's host name, or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
