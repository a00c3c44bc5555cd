//! `bundle restore` and `bundle drill`: plan, then apply.
//!
//! 1. Preflight: the bundle is fully verified before anything is written.
//! 2. Targets come from the current config by store name (or `--into`), never
//!    from paths recorded in the bundle.
//! 3. Databases held by another process are refused (after the `pre_restore`
//!    hook when one is configured: it is there to stop that process).
//! 4. A plan is computed per store, reading only; `--dry-run` stops there.
//! 5. Replace on live stores needs the plan's confirm token.
//! 6. A safety snapshot of the live stores is taken, a journal written,
//!    the plan applied and the live result checked; then the journal goes.
//!    The `post_restore` hook runs afterwards, whatever the outcome.

pub mod apply;
pub mod drill;
mod records;
mod snapshot;

pub use drill::{drill, DrillReport};

pub use crate::bundle::journal;
pub use crate::manifest::PRE_RESTORE;
pub use crate::plan::Mode;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, StoreKind, StoreSpec};
use crate::error::{Error, Result};
use crate::hooks::{HookEnv, Operation};
use crate::manifest::{self, Manifest, StoreRecord, StoreStatus};
use crate::plan::{Counts, Step, Target};
use crate::progress::Progress;
use crate::rooted::RootDir;
use crate::verify::{verify, VerifyOptions};

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// Merge or replace.
    pub mode: Mode,
    /// Restore only these stores (default: every store in the bundle).
    pub only: Vec<String>,
    /// The current config: targets by store name, and the destination.
    pub config: Config,
    /// Restore into this new or empty folder instead of the live stores.
    pub into: Option<PathBuf>,
    /// Plan only.
    pub dry_run: bool,
    /// The token approving a replace plan.
    pub confirm_token: Option<String>,
    /// Take a safety snapshot before writing (default).
    pub safety_snapshot: bool,
    /// Proceed although the config's stores differ from the bundle's.
    pub force_topology_mismatch: bool,
}

/// The plan and outcome of one store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// Store name.
    pub name: String,
    /// Store kind.
    pub kind: StoreKind,
    /// Live target path.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub target: PathBuf,
    /// The folder its writes resolve beneath (not part of the JSON report).
    #[serde(skip)]
    pub root: PathBuf,
    /// `merge`, `replace`, or `skip` (nothing in the bundle for it).
    pub action: String,
    /// Planned counts, or done counts once applied.
    #[serde(flatten)]
    pub counts: Counts,
    /// Things worth knowing (conflicts, missing columns, rebuilt indexes).
    pub notes: Vec<String>,
    /// What a merge does not (or did not) bring back, and why: files that
    /// differ live, bundle rows blocked by live keys, columns live lacks,
    /// virtual-table rows. Non-empty makes the restore `incomplete` (exit 1).
    pub left_out: Vec<String>,
    /// What the store's `check` command said of the restored store (`ok`,
    /// or how it failed); absent when none is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The steps (with `--json`).
    pub steps: Vec<Step>,
}

/// How a restore call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The plan was applied and checked.
    Applied,
    /// `--dry-run`: nothing changed.
    DryRun,
    /// Replace needs `--confirm-token`: nothing changed.
    TokenMissing,
    /// The token given approves another plan: nothing changed.
    TokenMismatch,
    /// A merge was applied but could not bring back everything the bundle
    /// holds and live lacks; each store's `left_out` says what and why.
    Incomplete,
}

/// Everything a restore reports.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Whether the restore was applied and every check passed.
    pub ok: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Merge or replace.
    pub mode: Mode,
    /// The bundle folder.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub bundle: PathBuf,
    /// The bundle id.
    pub bundle_id: String,
    /// The token that approves exactly this plan.
    pub confirm_token: String,
    /// The safety snapshot taken before writing, if any.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub safety_snapshot: Option<PathBuf>,
    /// Whether this run finished an interrupted restore.
    pub resumed: bool,
    /// Whether the writes were confined by the kernel (`None`: nothing was applied).
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Per store.
    pub stores: Vec<StoreReport>,
}

/// Resolved target of one bundle store.
struct Selected {
    /// The bundle's record of the store, taken out of the manifest: once the
    /// plan is final its files go ([`Selected::forget_files`]).
    record: StoreRecord,
    /// Where its file records are when they are not in `record` but read
    /// again from the manifest for each plan.
    streamed: Option<records::ManifestRecords>,
    spec: StoreSpec,
    target_path: PathBuf,
}

impl Selected {
    /// Drops the records of the store's files and symlinks: the final plan's
    /// steps hold all that apply and its checks need, and a safety snapshot
    /// of as many files runs next, which should not hold both.
    fn forget_files(&mut self) {
        self.record.files = Vec::new();
        self.record.symlinks = Vec::new();
    }

    /// The folder every write of this store resolves beneath: the store's
    /// folder, or the folder holding a single-file store's file.
    fn root(&self) -> PathBuf {
        let single = self.record.single_file.is_some() || self.record.kind == StoreKind::Sqlite;
        match (single, self.target_path.parent()) {
            (true, Some(parent)) => parent.to_path_buf(),
            _ => self.target_path.clone(),
        }
    }

    /// A handle on [`Selected::root`] when it exists (`None`: nothing is live).
    fn open_root(&self, tag: &str) -> Result<Option<RootDir>> {
        let root = self.root();
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => RootDir::open(&root, tag).map(Some),
            Ok(_) => Err(Error::Refused(format!(
                "store \"{}\": {} is not a folder",
                self.spec.name,
                root.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("could not stat", &root, e)),
        }
    }
}

/// Verifies the bundle; returns its manifest (without the file records
/// of a manifest in this tool's layout: see [`records`]) and the
/// manifest's sha256. With `read_data` every file is hashed and checked
/// here (a merge reads the bundle in place); without it, only the
/// manifest, layout and sizes, and every file a replace uses is hashed and
/// checked as it is staged, before anything live changes.
fn preflight(
    bundle: &Path,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<records::ReadManifest> {
    let opts = VerifyOptions {
        quick: false,
        skip_content: !read_data,
    };
    let report = verify(bundle, opts, progress)?;
    if !report.ok {
        return Err(Error::BundleInvalid {
            bundle: bundle.to_path_buf(),
            problems: report
                .problems
                .iter()
                .map(|p| match &p.path {
                    Some(path) => format!("{path}: {}", p.problem),
                    None => p.problem.clone(),
                })
                .collect(),
        });
    }
    records::read(bundle)
}

/// Refuses a non-empty `--into` folder.
fn refuse_non_empty(into: &Path) -> Result<()> {
    let non_empty = std::fs::read_dir(into)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty {
        return Err(Error::Refused(format!(
            "--into {} is not empty; give a new or empty folder",
            into.display()
        )));
    }
    Ok(())
}

/// What an interrupted restore's journal means for this one.
#[derive(Default)]
struct Interrupted {
    /// This run finishes it.
    resumed: bool,
    /// Its safety snapshot (when resuming).
    safety_snapshot: Option<PathBuf>,
    /// Its token, which tags the temp files it may have left.
    leftover_tag: Option<String>,
}

/// Reads the destination's journal: this restore may finish the interrupted
/// one, or undo it by restoring the safety snapshot it names; anything else
/// is refused (exit 3).
fn interrupted_restore(
    opts: &RestoreOptions,
    destination: &Path,
    manifest: &Manifest,
    selected: &[Selected],
) -> Result<Interrupted> {
    let Some(j) = journal::read(destination)? else {
        return Ok(Interrupted::default());
    };
    if j.bundle_id == manifest.id
        && j.mode == opts.mode.as_str()
        && j.stores == sorted_names(selected)
    {
        return Ok(Interrupted {
            resumed: true,
            safety_snapshot: j.safety_snapshot.clone(),
            leftover_tag: Some(j.token.clone()),
        });
    }
    if j.undone_by(manifest) && opts.mode == Mode::Replace {
        return Ok(Interrupted {
            leftover_tag: Some(j.token.clone()),
            ..Interrupted::default()
        });
    }
    journal::refuse_if_interrupted(destination)?;
    Ok(Interrupted::default())
}

/// Plans and (unless dry-run or unconfirmed) applies a restore.
pub fn restore(opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let destination = destination_of(opts);
    let _lock = lock_unless_reading_only(opts, &destination)?;
    // 1. Preflight: nothing is trusted before a verify (a replace hashes
    // what it uses as it stages it, so the data is read once).
    let records::ReadManifest {
        mut manifest,
        streams,
    } = preflight(&opts.bundle, opts.mode == Mode::Merge, progress)?;

    // 2. Targets.
    let selected = select_targets(opts, &mut manifest, &|place| streams.of(place))?;
    let token = confirm_token(&manifest, &streams.sha256, opts.mode, &selected);
    let interrupted = match &opts.into {
        Some(into) => {
            refuse_non_empty(into)?;
            Interrupted::default()
        }
        None => {
            let found = interrupted_restore(opts, &destination, &manifest, &selected)?;
            // 3. In use (with a pre_restore hook, checked again once it stopped the service).
            // A dry run shows the plan anyway, with who holds what.
            if opts.config.hooks.pre_restore.is_none() && !opts.dry_run {
                refuse_in_use(&selected)?;
            }
            found
        }
    };
    let (resumed, safety_snapshot, leftover_tag) = (
        interrupted.resumed,
        interrupted.safety_snapshot,
        interrupted.leftover_tag,
    );

    remove_leftovers_before_planning(opts, &selected, &token, leftover_tag.as_deref())?;

    // 4. Plan.
    let stores = plan_stores(opts, &selected, &token)?;
    let mut report = RestoreReport {
        ok: false,
        outcome: Outcome::DryRun,
        mode: opts.mode,
        bundle: opts.bundle.clone(),
        bundle_id: manifest.id.clone(),
        confirm_token: token.clone(),
        safety_snapshot: safety_snapshot.clone(),
        resumed,
        sandbox: None,
        stores,
    };
    if opts.dry_run {
        if opts.into.is_none() {
            note_in_use(&selected, &mut report)?;
        }
        return Ok(report);
    }
    // A restore that would change nothing needs no token, no safety
    // snapshot, no journal and no hooks (an interrupted one still finishes
    // the normal way, so that its journal goes).
    if opts.into.is_none() && leftover_tag.is_none() && !changes_anything(&report.stores) {
        return Ok(judge_merge(nothing_to_change(report)));
    }
    // 5. Replace on live stores is gated by the token.
    if opts.mode == Mode::Replace && opts.into.is_none() {
        if let Some(refused) = token_refusal(opts.confirm_token.as_deref(), &token) {
            report.outcome = refused;
            return Ok(report);
        }
    }
    if opts.into.is_some() {
        return apply_plan(opts, selected, &destination, report, progress);
    }
    apply_live(opts, selected, &destination, report, progress)
}

/// A restore that may write to the live stores holds the destination lock
/// from the start: no create, prune or other restore runs meanwhile (so
/// nothing can delete the bundle between its verify and its use).
fn lock_unless_reading_only(
    opts: &RestoreOptions,
    destination: &Path,
) -> Result<Option<crate::bundle::lock::DestinationLock>> {
    if opts.into.is_some() || opts.dry_run {
        return Ok(None);
    }
    crate::bundle::lock::check_destination(destination)?;
    crate::fsutil::create_private_dir_all(destination)?;
    crate::bundle::lock::DestinationLock::acquire(destination).map(Some)
}

/// The destination: the config's, else the folder holding the bundle.
fn destination_of(opts: &RestoreOptions) -> PathBuf {
    opts.config
        .destination
        .clone()
        .or_else(|| opts.bundle.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The report of a restore with nothing to change: applied, with a note.
fn nothing_to_change(mut report: RestoreReport) -> RestoreReport {
    for store in &mut report.stores {
        store
            .notes
            .push("nothing to change: live already holds what the bundle has".into());
    }
    report.ok = true;
    report.outcome = Outcome::Applied;
    report
}

/// The temp files an interrupted run left go before planning, so that no
/// plan lists them as live files; only once this run may write (not a dry
/// run, and a replace approved by its token).
fn remove_leftovers_before_planning(
    opts: &RestoreOptions,
    selected: &[Selected],
    token: &str,
    leftover_tag: Option<&str>,
) -> Result<()> {
    let may_write = !opts.dry_run
        && (opts.mode == Mode::Merge
            || token_refusal(opts.confirm_token.as_deref(), token).is_none());
    match leftover_tag.filter(|_| may_write) {
        Some(tag) => remove_leftover_temps(selected, tag),
        None => Ok(()),
    }
}

/// Removes the temp files an interrupted run tagged `tag` left in the stores,
/// before anything else is written.
fn remove_leftover_temps(selected: &[Selected], tag: &str) -> Result<()> {
    for s in selected {
        if let Some(root) = s.open_root(tag)? {
            root.remove_temps(tag)?;
        }
    }
    Ok(())
}

/// Applies to the live stores, with the restore hooks around the writing
/// part. After a pre_restore hook (which may stop the service) the stores are
/// checked for use and planned again, as the service may have written.
fn apply_live(
    opts: &RestoreOptions,
    selected: Vec<Selected>,
    destination: &Path,
    mut report: RestoreReport,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let before = HookEnv {
        id: Some(report.bundle_id.clone()),
        path: Some(opts.bundle.clone()),
        destination: destination.to_path_buf(),
    };
    let hooks = &opts.config.hooks;
    crate::hooks::around(
        hooks,
        Operation::Restore,
        &before,
        || {
            if hooks.pre_restore.is_some() {
                refuse_in_use(&selected)?;
                report.stores = plan_stores(opts, &selected, &report.confirm_token)?;
            }
            apply_plan(opts, selected, destination, report, progress)
        },
        |_| before.clone(),
    )
}

/// Whether any store's plan writes, removes, inserts or appends anything.
fn changes_anything(stores: &[StoreReport]) -> bool {
    stores.iter().flat_map(|s| &s.steps).any(|step| match step {
        Step::SqliteMerge { rows, .. } => *rows > 0,
        Step::Keep { .. } | Step::Conflict { .. } | Step::PruneFolders { .. } => false,
        _ => true,
    })
}

/// Why the given confirm token does not approve the plan of `token`, if not.
fn token_refusal(given: Option<&str>, token: &str) -> Option<Outcome> {
    match given {
        None => Some(Outcome::TokenMissing),
        Some(t) if t.trim() != token => Some(Outcome::TokenMismatch),
        Some(_) => None,
    }
}

/// Steps 6 and 7: space, safety snapshot, journal, apply, check.
fn apply_plan(
    opts: &RestoreOptions,
    mut selected: Vec<Selected>,
    destination: &Path,
    report: RestoreReport,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    // The plan is final: its steps hold what apply needs.
    let restore_bytes = bytes_to_restore(&selected);
    selected.iter_mut().for_each(Selected::forget_files);
    // Every folder the apply may write beneath exists before it is confined.
    let mut writable = Vec::new();
    if opts.into.is_none() {
        writable.push(destination.to_path_buf());
    }
    // (A skipped store has no steps: nothing of it is created.)
    for store in report.stores.iter().filter(|s| !s.steps.is_empty()) {
        crate::fsutil::create_dir_all(&store.root)?;
        writable.push(store.root.clone());
    }
    crate::sandbox::confined(&writable, |sandbox| {
        let mut report = report;
        report.sandbox = Some(sandbox);
        apply_confined(
            opts,
            &selected,
            restore_bytes,
            destination,
            report,
            progress,
        )
    })
}

/// [`apply_plan`] once confined.
fn apply_confined(
    opts: &RestoreOptions,
    selected: &[Selected],
    restore_bytes: u64,
    destination: &Path,
    mut report: RestoreReport,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let live = opts.into.is_none();
    // 6. Space, safety snapshot, journal.
    let take_snapshot = live && opts.safety_snapshot && !report.resumed;
    check_restore_space(destination, selected, restore_bytes, take_snapshot)?;
    if take_snapshot {
        snapshot::take(destination, selected, &mut report, progress)?;
    }
    // Registered before the journal exists and withdrawn once it is gone, so
    // an interruption in between always says how to finish.
    let under_way =
        live.then(|| crate::interrupt::restore(&opts.bundle, report.safety_snapshot.as_deref()));
    if live {
        write_journal(opts, destination, selected, &report)?;
    }
    // 7. Apply, then check; stores are independent, so they run in parallel.
    let total = report
        .stores
        .iter()
        .flat_map(|s| &s.steps)
        .map(Step::source_bytes)
        .sum();
    progress.start("restoring", Some(total));
    let outcomes = apply_and_check(
        &opts.bundle,
        &report.stores,
        &report.confirm_token,
        !live,
        progress,
    );
    progress.finish();
    let outcomes = settle_staging_failure(outcomes, live && !report.resumed, destination)?;
    let mut problems = Vec::new();
    for (store, (done, notes, found)) in report.stores.iter_mut().zip(outcomes?) {
        let planned = store.counts.conflicts;
        if done.conflicts > planned {
            store.left_out.push(format!(
                "{} bundle row(s) blocked by other unique keys live; the live rows were kept",
                done.conflicts - planned
            ));
        }
        store.counts = done;
        store.notes.extend(notes);
        for p in found {
            problems.push(format!("store \"{}\": {p}", store.name));
        }
    }
    if !problems.is_empty() {
        return Err(Error::CheckFailed {
            store: report
                .stores
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: format!(
                "the restored stores do not match the bundle: {}; the restore journal is kept",
                problems.join("; ")
            ),
        });
    }
    if live {
        run_store_checks(selected, &mut report)?;
        journal::remove(destination)?;
    }
    drop(under_way);
    report.ok = true;
    report.outcome = Outcome::Applied;
    Ok(judge_merge(report))
}

/// Runs each restored store's built-in kind check, then its own `check`
/// command; a failure stops the restore with its journal kept and says how
/// to undo.
fn run_store_checks(selected: &[Selected], report: &mut RestoreReport) -> Result<()> {
    for s in selected {
        let command = s.spec.check.as_deref();
        let left_out: Vec<PathBuf> = report
            .stores
            .iter()
            .filter(|r| r.name == s.spec.name)
            .flat_map(|r| &r.steps)
            .filter_map(|step| match step {
                Step::Conflict { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        let outcome = crate::store::recheck_restored(&s.record, &s.target_path, &left_out)
            .and_then(|()| match command {
                Some(command) => crate::hooks::run_store_check(command, &s.target_path),
                None => Ok(()),
            });
        if command.is_none() && outcome.is_ok() {
            continue;
        }
        if let Some(store) = report.stores.iter_mut().find(|r| r.name == s.spec.name) {
            store.check = Some(outcome.clone().map_or_else(|e| e, |()| "ok".into()));
        }
        if let Err(why) = outcome {
            let undo = match &report.safety_snapshot {
                Some(snapshot) => format!(
                    "undo it with `bundle restore {} --mode replace`",
                    snapshot.display()
                ),
                None => "there is no safety snapshot to undo it with".into(),
            };
            return Err(Error::CheckFailed {
                store: s.spec.name.clone(),
                reason: format!(
                    "restored, but {why}; the restore journal is kept: {undo}, or fix the cause and run the same restore again"
                ),
            });
        }
    }
    Ok(())
}

/// Writes the journal that lets an interrupted restore be finished or undone.
fn write_journal(
    opts: &RestoreOptions,
    destination: &Path,
    selected: &[Selected],
    report: &RestoreReport,
) -> Result<()> {
    journal::write(
        destination,
        &journal::Journal {
            bundle: opts.bundle.clone(),
            bundle_id: report.bundle_id.clone(),
            mode: opts.mode.as_str().into(),
            stores: sorted_names(selected),
            token: report.confirm_token.clone(),
            safety_snapshot: report.safety_snapshot.clone(),
            started_at: crate::bundle::id::rfc3339(jiff::Timestamp::now()),
        },
    )
}

/// Counts, notes and check problems of one applied store.
type Applied = (Counts, Vec<String>, Vec<String>);

/// A failure while staging changed nothing live: the journal this run
/// wrote (`own_journal`; not an earlier, interrupted run's) goes with it.
fn settle_staging_failure(
    outcomes: std::result::Result<Vec<Applied>, Failed>,
    own_journal: bool,
    destination: &Path,
) -> Result<std::result::Result<Vec<Applied>, Error>> {
    match outcomes {
        Err(Staging(e)) => {
            if own_journal {
                journal::remove(destination)?;
            }
            Err(e)
        }
        Err(Applying(e)) => Ok(Err(e)),
        Ok(o) => Ok(Ok(o)),
    }
}

/// Where a restore's writing failed: while staging (nothing live changed)
/// or while applying (the journal says how to finish).
enum Failed {
    Staging(Error),
    Applying(Error),
}
use Failed::{Applying, Staging};

/// Stages every store's bundle files (in parallel, each read once and
/// checked; `fresh`: into new folders, for `--into` or a drill); only when
/// all of them matched, applies every store's steps beneath its folder and
/// checks the result. A failure while staging removes every staged file
/// again.
fn apply_and_check(
    bundle: &Path,
    stores: &[StoreReport],
    token: &str,
    fresh: bool,
    progress: &dyn Progress,
) -> std::result::Result<Vec<Applied>, Failed> {
    let jobs = crate::parallel::default_jobs();
    // The stores are staged side by side, their files on one core each at most.
    let permits = crate::parallel::Permits::new(jobs);
    let staged = crate::parallel::map(stores, jobs, |store| {
        if store.steps.is_empty() {
            return Ok(Ok(None));
        }
        let root = match fresh {
            true => RootDir::open_fresh(&store.root, token),
            false => RootDir::open(&store.root, token),
        };
        Ok(root.and_then(|root| {
            let staged = apply::stage(bundle, &root, &store.steps, &permits, progress)?;
            Ok(Some((root, staged)))
        }))
    })
    .map_err(Staging)?;
    if let Some(first) = staged.iter().position(Result::is_err) {
        for (root, files) in staged.iter().flatten().flatten() {
            apply::discard(root, files);
        }
        let e = staged.into_iter().nth(first).and_then(Result::err);
        return Err(Staging(e.expect("the failed store's error")));
    }
    let staged: Vec<_> = staged.into_iter().flatten().collect();
    // Every staged file durable before the first rename.
    let durable = crate::parallel::map(&staged, jobs, |s| match s {
        Some((root, files)) => root.sync_staged(files.iter().flatten().map(|s| &**s)),
        None => Ok(()),
    });
    if let Err(e) = durable {
        for (root, files) in staged.iter().flatten() {
            apply::discard(root, files);
        }
        return Err(Staging(e));
    }
    let work: Vec<(&StoreReport, &Option<(RootDir, apply::StagedSteps)>)> =
        stores.iter().zip(&staged).collect();
    crate::parallel::map(&work, jobs, |(store, staged)| {
        let Some((root, files)) = staged else {
            return Ok((Counts::default(), Vec::new(), Vec::new()));
        };
        let (done, notes) = apply::apply(&store.name, root, &store.steps, files, progress)?;
        Ok((done, notes, apply::check(root, &store.steps, files)?))
    })
    .map_err(Applying)
}

/// Refuses (exit 4) when the safety snapshot and the restored bytes do not fit.
fn check_restore_space(
    destination: &Path,
    selected: &[Selected],
    restore_bytes: u64,
    snapshot: bool,
) -> Result<()> {
    let live_bytes = selected
        .iter()
        .fold(0u64, |t, s| t.saturating_add(tree_bytes(&s.target_path)));
    check_space(
        destination,
        if snapshot { live_bytes } else { 0 },
        selected.first().map(|s| s.target_path.as_path()),
        restore_bytes,
    )
}

/// The bytes of the bundle's files of the selected stores.
fn bytes_to_restore(selected: &[Selected]) -> u64 {
    selected.iter().fold(0u64, |t, s| {
        let streamed = s.streamed.as_ref().map_or(0, |r| r.streamed.bytes);
        t.saturating_add(s.record.total_bytes())
            .saturating_add(streamed)
    })
}

/// The selected store names, sorted (as the journal records them).
fn sorted_names(selected: &[Selected]) -> Vec<String> {
    let mut names: Vec<String> = selected.iter().map(|s| s.spec.name.clone()).collect();
    names.sort();
    names
}

/// Plans every selected store (see [`plan_store`]).
fn plan_stores(
    opts: &RestoreOptions,
    selected: &[Selected],
    tag: &str,
) -> Result<Vec<StoreReport>> {
    selected.iter().map(|s| plan_store(opts, s, tag)).collect()
}

/// Plans one selected store, reading only: its steps, counts and notes.
fn plan_store(opts: &RestoreOptions, s: &Selected, tag: &str) -> Result<StoreReport> {
    let live = s.open_root(tag)?;
    let target = Target {
        path: s.target_path.clone(),
        live: live.as_ref(),
        bundle_root: &opts.bundle,
        mode: opts.mode,
        key: s.spec.key.clone(),
    };
    let skip = !matches!(s.record.status, StoreStatus::Ok | StoreStatus::Damaged);
    let handler = crate::store::handler(s.record.kind);
    let steps = match (&s.streamed, skip) {
        (_, true) => Vec::new(),
        (Some(records), false) => {
            handler.plan_restore_streamed(&s.record, &mut records.clone(), &target)?
        }
        (None, false) => handler.plan_restore(&s.record, &target)?,
    };
    let mut counts = Counts::default();
    steps.iter().for_each(|st| counts.add(st));
    let notes = plan_notes(&steps, skip, s.record.status);
    let left_out = left_out_of(&steps);
    Ok(StoreReport {
        name: s.spec.name.clone(),
        kind: s.spec.kind,
        target: s.target_path.clone(),
        root: s.root(),
        action: if skip {
            "skip".into()
        } else {
            opts.mode.as_str().into()
        },
        counts,
        notes,
        left_out,
        check: None,
        steps,
    })
}

/// What a plan leaves out of the live store (merge never pretends).
fn left_out_of(steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Conflict { target, reason } => {
                out.push(format!("{}: {reason}", target.display()))
            }
            Step::SqliteMerge {
                target,
                missing_columns,
                left_out,
                ..
            } => {
                for column in missing_columns {
                    out.push(format!(
                        "{}: column {column}: the live table lacks it, so its values are not merged",
                        target.display()
                    ));
                }
                for vt in left_out {
                    out.push(format!("{}: {vt}", target.display()));
                }
            }
            _ => {}
        }
    }
    out
}

/// A merge that leaves something out is not ok: the outcome says so.
fn judge_merge(mut report: RestoreReport) -> RestoreReport {
    if report.mode == Mode::Merge && report.stores.iter().any(|s| !s.left_out.is_empty()) {
        report.ok = false;
        report.outcome = Outcome::Incomplete;
    }
    report
}

/// A dry run's note on each store another process is using.
fn note_in_use(selected: &[Selected], report: &mut RestoreReport) -> Result<()> {
    for (name, why) in in_use(selected)? {
        if let Some(store) = report.stores.iter_mut().find(|s| s.name == name) {
            store
                .notes
                .push(format!("{why}; a restore now would be refused"));
        }
    }
    Ok(())
}

/// Refuses when another process is using a store of the selection.
fn refuse_in_use(selected: &[Selected]) -> Result<()> {
    match in_use(selected)?.into_iter().next() {
        Some((name, why)) => Err(Error::Refused(format!(
            "store \"{name}\": {why}; stop the service using it (or stop it from a pre_restore hook) and try again"
        ))),
        None => Ok(()),
    }
}

/// The selected stores some other process is using, with who and what: any
/// process holding one of their files open or mapped, and any SQLite lock.
fn in_use(selected: &[Selected]) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for s in selected {
        let single = s.record.single_file.is_some() || s.record.kind == StoreKind::Sqlite;
        let mut watched = vec![s.target_path.clone()];
        if single {
            for suffix in crate::format::sqlite::SIDECARS {
                let mut p = s.target_path.clone().into_os_string();
                p.push(suffix);
                watched.push(PathBuf::from(p));
            }
        }
        if let Some(h) = crate::open_files::holders(&watched).into_iter().next() {
            found.push((
                s.spec.name.clone(),
                format!(
                    "{} is open in process {} ({})",
                    h.path.display(),
                    h.pid,
                    h.command
                ),
            ));
            continue;
        }
        for db in crate::store::handler(s.spec.kind).live_databases(&s.target_path)? {
            if crate::format::sqlite_replace::database_in_use(&db)? {
                found.push((
                    s.spec.name.clone(),
                    format!(
                        "{} is in use by another process (it holds a lock)",
                        db.display()
                    ),
                ));
                break;
            }
        }
    }
    Ok(found)
}

/// The places in `manifest.stores` of the stores `--store` selects (all of
/// them without it), each once.
fn selected_records(opts: &RestoreOptions, manifest: &Manifest) -> Result<Vec<usize>> {
    if opts.only.is_empty() {
        return Ok((0..manifest.stores.len()).collect());
    }
    let mut places: Vec<usize> = Vec::new();
    for name in &opts.only {
        let place = manifest
            .stores
            .iter()
            .position(|s| &s.name == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "bundle {} has no store \"{name}\" (it has: {})",
                    manifest.id,
                    manifest
                        .stores
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if !places.contains(&place) {
            places.push(place);
        }
    }
    Ok(places)
}

/// The record of a selected store, taken out of the manifest with its files
/// and symlinks (the manifest keeps the rest, without them), so that
/// they are held once and can go before the safety snapshot.
fn take_record(record: &mut StoreRecord) -> StoreRecord {
    let files = std::mem::take(&mut record.files);
    let symlinks = std::mem::take(&mut record.symlinks);
    StoreRecord {
        files,
        symlinks,
        ..record.clone()
    }
}

/// Resolves each selected bundle store to a live (or `--into`) target.
/// `records_of` says where the records of the store at a place in the
/// manifest are when they are streamed.
fn select_targets(
    opts: &RestoreOptions,
    manifest: &mut Manifest,
    records_of: &dyn Fn(usize) -> Option<records::ManifestRecords>,
) -> Result<Vec<Selected>> {
    let places = selected_records(opts, manifest)?;
    if let Some(into) = &opts.into {
        let records = places
            .into_iter()
            .map(|i| (take_record(&mut manifest.stores[i]), records_of(i)));
        let into = crate::config::absolute(into)?;
        return Ok(records
            .map(|(record, streamed)| {
                let root = into.join(&record.name);
                let target_path = match &record.single_file {
                    Some(name) => root.join(name),
                    None => root,
                };
                Selected {
                    spec: StoreSpec {
                        name: record.name.clone(),
                        kind: record.kind,
                        path: target_path.clone(),
                        key: None,
                        shrink_alarm: None,
                        exclude: Vec::new(),
                        check: None,
                    },
                    record,
                    streamed,
                    target_path,
                }
            })
            .collect());
    }
    if opts.only.is_empty() && !opts.force_topology_mismatch {
        let live = manifest::topology(opts.config.stores.iter().map(|s| (s.name.as_str(), s.kind)));
        if live != manifest.topology {
            return Err(Error::Refused(format!(
                "the bundle's stores ({}) differ from the config's ({}); restore matching stores with --store NAME, or pass --force-topology-mismatch",
                describe(manifest.stores.iter().map(|s| (s.name.as_str(), s.kind))),
                describe(opts.config.stores.iter().map(|s| (s.name.as_str(), s.kind)))
            )));
        }
    }
    let mut selected = Vec::new();
    for place in places {
        let record = &manifest.stores[place];
        let spec = opts.config.stores.iter().find(|s| s.name == record.name).ok_or_else(|| {
            Error::Refused(format!(
                "bundle store \"{}\" is not in the config, so it has no target; add it to bundle.toml (or name it with --{} {}=PATH), or restore it with --into DIR",
                record.name, record.kind, record.name
            ))
        })?;
        if spec.kind != record.kind {
            return Err(Error::Refused(format!(
                "store \"{}\" is a {} store in the bundle but a {} store in the config; not restoring across kinds",
                record.name, record.kind, spec.kind
            )));
        }
        selected.push(Selected {
            record: take_record(&mut manifest.stores[place]),
            streamed: records_of(place),
            spec: spec.clone(),
            target_path: spec.path.clone(),
        });
    }
    Ok(selected)
}

fn describe<'a>(stores: impl Iterator<Item = (&'a str, StoreKind)>) -> String {
    let list: Vec<String> = stores.map(|(n, k)| format!("{n}:{k}")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The short digest that approves exactly one plan: bundle id, manifest hash,
/// mode, and each store's name and resolved target.
fn confirm_token(
    manifest: &Manifest,
    manifest_sha: &str,
    mode: Mode,
    selected: &[Selected],
) -> String {
    let mut lines: Vec<String> = selected
        .iter()
        .map(|s| format!("{}\t{}", s.spec.name, s.target_path.display()))
        .collect();
    lines.sort();
    let text = format!(
        "{}\n{manifest_sha}\n{}\n{}",
        manifest.id,
        mode.as_str(),
        lines.join("\n")
    );
    crate::hash::sha256_hex(text.as_bytes())[..12].to_string()
}

fn plan_notes(steps: &[Step], skipped: bool, status: StoreStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if skipped {
        notes.push(format!(
            "the store was {} when the bundle was made; nothing to restore, live data left alone",
            match status {
                StoreStatus::Absent => "absent",
                StoreStatus::Failed => "not captured (it failed)",
                _ => "empty",
            }
        ));
    }
    if status == StoreStatus::Damaged {
        notes.push(
            "the bundle holds this store's raw bytes, taken when it could not be captured normally (a safety snapshot of a damaged store); they are put back exactly as they were, unchecked"
                .into(),
        );
    }
    // Conflicts and columns live lacks are listed once, in `left_out`.
    for step in steps {
        if let Step::SqliteMerge { target, facts, .. } = step {
            if !facts.virtual_tables.is_empty() {
                notes.push(format!(
                    "{}: virtual tables are not merged row by row (full-text indexes are rebuilt): {}",
                    target.display(),
                    facts.virtual_tables.join(", ")
                ));
            }
        }
    }
    notes
}

fn tree_bytes(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Refuses (exit 4) when the snapshot's and the restore's bytes do not fit.
fn check_space(
    destination: &Path,
    snapshot_bytes: u64,
    target: Option<&Path>,
    restore_bytes: u64,
) -> Result<()> {
    // Keep a margin for SQLite journals and temp files.
    let margin = |n: u64| n.saturating_add(n / 10).saturating_add(1 << 20);
    let (dest_free, dest_dev) = crate::fsutil::free_space(destination)?;
    let Some(target) = target else { return Ok(()) };
    let (target_free, target_dev) = crate::fsutil::free_space(target)?;
    if dest_dev == target_dev {
        let needed = margin(snapshot_bytes.saturating_add(restore_bytes));
        if needed > dest_free {
            return Err(Error::NoSpace {
                path: destination.to_path_buf(),
                needed,
                available: dest_free,
            });
        }
        return Ok(());
    }
    for (path, needed, free) in [
        (destination, margin(snapshot_bytes), dest_free),
        (target, margin(restore_bytes), target_free),
    ] {
        if needed > free {
            return Err(Error::NoSpace {
                path: path.to_path_buf(),
                needed,
                available: free,
            });
        }
    }
    Ok(())
}
