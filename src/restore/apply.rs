//! Executing a restore plan in two phases, then checking the live result.
//!
//! [`stage`] streams every bundle file a store's plan writes once into a
//! staged file in the store's folder (beside its target when it can),
//! hashing it on the way (and checking a
//! database copy in full); nothing live changes until every staged file of
//! every store matched the manifest. [`apply`] then moves the staged files
//! into place (one rename each; a database after its live sidecars were
//! settled and removed) and does the in-place merges. [`check`] confirms
//! each restored path is the very file that was staged, so nothing is read
//! a third time. Every write resolves beneath the store's folder without
//! following links ([`crate::rooted`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{jsonl_merge as identity, sqlite_merge, sqlite_replace};
use crate::manifest::SourceStat;
use crate::plan::{Counts, Step};
use crate::progress::Progress;
use crate::rooted::{Entry, Ownership, RootDir, Staged};

/// The staged file of each step of a store's plan (`None` for a step that
/// writes no bundle file), in step order: 8 bytes a step, as a plan of many
/// files left as they are has a step for each.
pub type StagedSteps = Vec<Option<Box<Staged>>>;

/// Phase one: stages the bundle file of every `Write` and `SqliteReplace`
/// step beneath `root`, each read once, hashed and (a database) checked, on
/// all cores (each file with one of `permits`, shared with the other stores
/// staged at the same time). A file that does not match is
/// [`Error::BundleInvalid`]; on any error every file staged so far is
/// removed again, and nothing live was changed.
pub fn stage(
    bundle: &Path,
    root: &RootDir,
    steps: &[Step],
    permits: &crate::parallel::Permits,
    progress: &dyn Progress,
) -> Result<StagedSteps> {
    let failed = AtomicBool::new(false);
    // Only the steps that stage a file are gone through, in step order.
    let writes: Vec<&Step> = steps.iter().filter(|s| stages_a_file(s)).collect();
    // The small files of one folder go to one thread at a time (their temp
    // files are made and named in that folder).
    let run =
        |i| crate::parallel::folder_run(&writes, i, |s| written_folder(s), |s| s.source_bytes());
    let jobs = crate::parallel::default_jobs();
    let results = crate::parallel::map_claiming(&writes, jobs, run, |step| {
        if failed.load(Ordering::Relaxed) {
            return Ok(Ok(None));
        }
        let result = {
            let _core = permits.acquire();
            stage_step(bundle, root, step)
        };
        match &result {
            Ok(Some(staged)) => progress.advance(staged.bytes()),
            Ok(None) => {}
            Err(_) => failed.store(true, Ordering::Relaxed),
        }
        // Both boxed: a result is held for each file until all are staged,
        // and an error is as big as many staged files.
        Ok(result.map(|s| s.map(Box::new)).map_err(Box::new))
    })?;
    drop(writes);
    let mut results = results.into_iter();
    let mut staged: StagedSteps = Vec::with_capacity(steps.len());
    let mut first_error = None;
    for step in steps {
        let result = match stages_a_file(step) {
            true => results.next().expect("a result for each step that stages"),
            false => Ok(None),
        };
        match result {
            Ok(s) => staged.push(s),
            Err(e) => {
                first_error.get_or_insert(*e);
                staged.push(None);
            }
        }
    }
    match first_error {
        Some(e) => {
            discard(root, &staged);
            Err(e)
        }
        None => Ok(staged),
    }
}

/// Whether a step stages a bundle file before anything live changes.
fn stages_a_file(step: &Step) -> bool {
    matches!(step, Step::Write { .. } | Step::SqliteReplace { .. })
}

/// The folder a step writes a file in, if it does.
fn written_folder(step: &Step) -> Option<&Path> {
    match step {
        Step::Write { paths, .. } => paths.folder(),
        _ => None,
    }
}

/// Removes staged files that will not be used (and, in a fresh root, the
/// folders staging made for them).
pub fn discard(root: &RootDir, staged: &[Option<Box<Staged>>]) {
    for s in staged.iter().flatten() {
        root.discard(s);
    }
    root.remove_staging_folders();
}

/// The staged file of one step, if it writes a bundle file.
fn stage_step(bundle: &Path, root: &RootDir, step: &Step) -> Result<Option<Staged>> {
    let (source, rel, sha256, sqlite, owner, database) = match step {
        Step::Write {
            paths,
            sha256,
            sqlite,
            owner,
            ..
        } => {
            let rel = paths.target_in(root)?;
            (paths.source(), rel, sha256, sqlite.as_ref(), *owner, false)
        }
        Step::SqliteReplace {
            source,
            target,
            sha256,
            facts,
            owner,
            ..
        } => {
            let rel = root.relative(target)?.into();
            (
                Cow::Borrowed(&**source),
                rel,
                sha256,
                Some(facts),
                *owner,
                true,
            )
        }
        _ => return Ok(None),
    };
    let file = BundleFile {
        bundle,
        source: &source,
        sha256: *sha256,
        owner,
    };
    match sqlite {
        None => stage_copy(&file, root, rel, None).map(Some),
        Some(facts) => stage_database(&file, root, rel, facts, database).map(Some),
    }
}

/// The bundle file a step stages, and what its copy must be.
struct BundleFile<'a> {
    /// The bundle's folder (for messages).
    bundle: &'a Path,
    /// The file.
    source: &'a Path,
    /// Its digest in the manifest.
    sha256: crate::hash::Sha256Digest,
    /// The owner its staged copy takes.
    owner: Ownership,
}

impl BundleFile<'_> {
    /// The bundle is invalid: `problems` of this file.
    fn invalid(&self, problems: impl IntoIterator<Item = String>) -> Error {
        let at = in_bundle(self.bundle, self.source);
        Error::BundleInvalid {
            bundle: self.bundle.to_path_buf(),
            problems: problems.into_iter().map(|p| format!("{at}: {p}")).collect(),
        }
    }
}

/// Stages a bundle database (a database store's, or one in a folder store)
/// while its full check runs beside, on the bundle's file itself: a copy
/// whose hash matches the manifest's holds the bytes that were checked, so
/// the copy and the check, each about as long, take two cores instead of
/// one after the other. The file the check opened by path must be the one
/// the copy read, as it was (device, inode, size, modification and change
/// times of the open file, and of the path when both are done); else the
/// staged copy is checked after it is written. A database store's copy
/// then takes the journal mode its source had. The check takes no permit
/// of its own: while it runs, a restore has one thread more at work than
/// it has permits.
fn stage_database(
    file: &BundleFile<'_>,
    root: &RootDir,
    rel: Arc<Path>,
    facts: &crate::manifest::SqliteFacts,
    database: bool,
) -> Result<Staged> {
    let input = std::fs::File::open(file.source)
        .map_err(|e| Error::io("could not read", file.source, e))?;
    let identity = |m: std::io::Result<std::fs::Metadata>| m.ok().map(|m| SourceStat::of(&m));
    let before = identity(input.metadata());
    let full_check = |path: &Path| crate::format::sqlite::verify_copy(path, facts, true);
    let (staged, checked) = std::thread::scope(|scope| {
        // Without a thread for it, the copy is checked once it is made.
        let check = std::thread::Builder::new()
            .spawn_scoped(scope, || full_check(file.source))
            .ok();
        let staged = stage_copy(file, root, rel, Some(&input));
        (staged, check.and_then(|c| c.join().ok()))
    });
    let staged = staged?;
    let after = [
        identity(input.metadata()),
        identity(std::fs::symlink_metadata(file.source)),
    ];
    let problems = problems_of_staged(checked, before, after, || {
        full_check(&root.staged_path(&staged))
    });
    let ready = match problems.is_empty() {
        true if database => sqlite_replace::ready_staged(&root.staged_path(&staged), facts),
        true => Ok(()),
        false => Err(file.invalid(problems)),
    };
    match ready {
        Ok(()) => Ok(staged),
        Err(e) => {
            root.discard(&staged);
            Err(e)
        }
    }
}

/// The problems of a staged database: those the check `beside` it found
/// on the bundle's file, when that file was the one copied and stayed as it
/// was from `before` to `after` (the open file's identity, then its
/// path's), else those of `check_staged`, a check of the staged copy.
fn problems_of_staged(
    beside: Option<Vec<String>>,
    before: Option<SourceStat>,
    after: [Option<SourceStat>; 2],
    check_staged: impl FnOnce() -> Vec<String>,
) -> Vec<String> {
    match beside {
        Some(problems) if before.is_some() && after.iter().all(|a| *a == before) => problems,
        _ => check_staged(),
    }
}

/// A bundle file's path relative to the bundle (for messages).
fn in_bundle(bundle: &Path, source: &Path) -> String {
    source
        .strip_prefix(bundle)
        .unwrap_or(source)
        .display()
        .to_string()
}

/// Streams a bundle file (`input`, when it is open already) once into a
/// staged file for `rel`, hashing it on the way; a hash that differs from
/// the manifest's removes it again. Its writeback is started at once: a
/// database is checked on the bundle's file, not read back from this one.
fn stage_copy(
    file: &BundleFile<'_>,
    root: &RootDir,
    rel: Arc<Path>,
    input: Option<&std::fs::File>,
) -> Result<Staged> {
    let mut actual = None;
    let fill = |out: &mut std::fs::File| {
        let opened;
        let input = match input {
            Some(input) => input,
            None => {
                opened = std::fs::File::open(file.source)?;
                &opened
            }
        };
        let sparse = crate::sparse::has_holes(&input.metadata()?);
        let mut writer = crate::sparse::SparseWriter::new(out, sparse);
        let (bytes, sha) = crate::hash::stream_hashed(input, |chunk| writer.write(chunk))?;
        writer.finish()?;
        crate::fsutil::end_of_copy_writeback(out, bytes);
        actual = Some(sha);
        Ok(())
    };
    // A database (opened already) may be checked by path before it is
    // moved: it stays in the root.
    let staged = match input {
        None => root.stage_file(rel, file.owner, fill)?,
        Some(_) => root.stage_file_in_root(rel, file.owner, fill)?,
    };
    if actual != Some(file.sha256) {
        root.discard(&staged);
        return Err(file.invalid(["sha256 does not match the manifest".to_string()]));
    }
    Ok(staged)
}

/// Phase two: executes store `store`'s steps beneath `root` (the store's
/// folder, or the folder of a single-file store), in step order, moving
/// each staged file into place (those of consecutive `Write` steps, which go
/// to paths of their own, on every core); returns what was actually done.
/// Every write resolves beneath `root` without following links.
pub fn apply(
    store: &str,
    root: &RootDir,
    steps: &[Step],
    staged: &[Option<Box<Staged>>],
    progress: &dyn Progress,
) -> Result<(Counts, Vec<String>)> {
    let mut done = Counts::default();
    let mut notes = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let moves = staged_writes(&steps[i..], &staged[i..]);
        if !moves.is_empty() {
            move_into_place(root, &moves)?;
            done.written += moves.len() as u64;
            i += moves.len();
            continue;
        }
        let (step, staged_file) = (&steps[i], &staged[i]);
        i += 1;
        if let Some(staged) = staged_file {
            sqlite_replace::swap_in(root, staged.rel(), staged)?;
            done.written += 1;
            continue;
        }
        let bytes = step.source_bytes();
        match step {
            Step::SqliteReplace { .. } | Step::Write { .. } => {
                unreachable!("a step that writes a bundle file is staged first")
            }
            Step::SqliteMerge {
                source,
                target,
                facts,
                present,
                ..
            } => {
                root.require_file(root.relative(target)?)?;
                let merged = sqlite_merge::merge(store, target, source, facts)?;
                done.inserted += merged.inserted;
                done.kept += present;
                done.conflicts += merged.conflicts;
                notes.extend(merge_notes(target, &merged));
            }
            Step::JsonlAppend {
                source,
                target,
                key,
                present,
                ..
            } => {
                let rel = root.relative(target)?;
                done.appended += identity::append_missing(root, rel, source, key.as_deref())?;
                done.kept += present;
            }
            Step::Symlink {
                target,
                points_to_bytes,
                ..
            } => {
                root.symlink(root.relative(target)?, OsStr::from_bytes(points_to_bytes))?;
                done.written += 1;
            }
            Step::Remove { target } => {
                root.remove_file(root.relative(target)?)?;
                done.removed += 1;
            }
            Step::PruneFolders { root: folder, keep } => prune_folders(root, folder, keep)?,
            Step::Keep { .. } => done.kept += 1,
            Step::Conflict { .. } => done.conflicts += 1,
        }
        progress.advance(bytes);
    }
    root.sync_committed(staged.iter().flatten().map(|s| &**s))?;
    Ok((done, notes))
}

/// The staged plain files of the `Write` steps `steps` starts with: each
/// goes to a path of its own, so they may be moved in any order.
fn staged_writes<'s>(
    steps: &'s [Step],
    staged: &'s [Option<Box<Staged>>],
) -> Vec<(&'s Step, &'s Staged)> {
    steps
        .iter()
        .zip(staged)
        .map_while(|(step, staged)| match (step, staged) {
            (Step::Write { .. }, Some(staged)) => Some((step, &**staged)),
            _ => None,
        })
        .collect()
}

/// Moves staged files into place on every core, the small files of one
/// folder by one thread at a time (a rename takes its folder's lock).
fn move_into_place(root: &RootDir, moves: &[(&Step, &Staged)]) -> Result<()> {
    let run = |i| folder_run_of_moves(moves, i);
    crate::parallel::try_for_each_claiming(moves, crate::parallel::default_jobs(), run, |(_, s)| {
        root.commit(s)
    })
}

/// The small files of one folder that follow `moves[i]` (see
/// [`crate::parallel::folder_run`]), by their staged sizes (the bundle's
/// files are not stat'ed again).
fn folder_run_of_moves(moves: &[(&Step, &Staged)], i: usize) -> usize {
    crate::parallel::folder_run(
        moves,
        i,
        |(s, _)| written_folder(s),
        |(_, staged)| staged.bytes(),
    )
}

/// What a database merge reports: conflicts kept live, indexes rebuilt.
fn merge_notes(target: &Path, merged: &sqlite_merge::Merged) -> Vec<String> {
    let mut notes = Vec::new();
    if merged.conflicts > 0 {
        notes.push(format!(
            "{}: {} bundle row(s) conflict with other unique keys; live rows kept",
            target.display(),
            merged.conflicts
        ));
    }
    for vt in &merged.rebuilt {
        notes.push(format!(
            "{}: rebuilt full-text index {vt}",
            target.display()
        ));
    }
    notes
}

/// Checks that the live result holds what the bundle has; returns problems.
/// A staged file found in place is what was hashed and checked, so it is
/// not read again. Like apply, it reads beneath `root` without following links.
pub fn check(
    root: &RootDir,
    steps: &[Step],
    staged: &[Option<Box<Staged>>],
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let written = written_and_above(steps);
    let mut i = 0;
    while i < steps.len() {
        let moves = staged_writes(&steps[i..], &staged[i..]);
        if !moves.is_empty() {
            problems.extend(check_moved(root, &moves)?);
            i += moves.len();
            continue;
        }
        let (step, staged) = (&steps[i], &staged[i]);
        i += 1;
        if let Some(staged) = staged {
            let in_place = root.holds_staged(staged)?;
            problems.extend(check_staged(root, step, in_place)?);
            continue;
        }
        match step {
            Step::SqliteReplace { target, .. } => {
                problems.push(format!("{} was not restored", target.display()));
            }
            Step::SqliteMerge { target, .. } => {
                root.require_file(root.relative(target)?)?;
                problems.extend(sqlite_replace::check_merged_database(target)?);
            }
            Step::Write { paths, .. } => {
                problems.push(format!("{} was not restored", paths.target().display()));
            }
            Step::JsonlAppend {
                source,
                target,
                key,
                ..
            } => {
                let rel = root.relative(target)?;
                let (missing, _) = identity::count_missing(root, rel, source, key.as_deref())?;
                if missing > 0 {
                    problems.push(format!(
                        "{}: {missing} bundle record(s) are not present",
                        target.display()
                    ));
                }
            }
            Step::Symlink {
                target,
                points_to_bytes,
                ..
            } => {
                if root.read_link(root.relative(target)?)?.as_deref()
                    != Some(OsStr::from_bytes(points_to_bytes))
                {
                    problems.push(format!("{} is not the bundle's symlink", target.display()));
                }
            }
            Step::Remove { target } if written.contains(target) => {
                if root.entry(root.relative(target)?)? == Entry::Symlink {
                    problems.push(format!("{} is still a symlink", target.display()));
                }
            }
            Step::Remove { target } => {
                if root.entry(root.relative(target)?)? != Entry::Missing {
                    problems.push(format!("{} was not removed", target.display()));
                }
            }
            Step::Keep { .. } | Step::Conflict { .. } | Step::PruneFolders { .. } => {}
        }
    }
    Ok(problems)
}

/// Every path the steps write and each folder above it, when they remove
/// anything (else empty): a removed link (or file) on the way to a bundle
/// path is a folder now (a set, so that many removals do not each look
/// through every written path).
fn written_and_above(steps: &[Step]) -> HashSet<PathBuf> {
    let mut written = HashSet::new();
    if !steps.iter().any(|s| matches!(s, Step::Remove { .. })) {
        return written;
    }
    for step in steps {
        let target = match step {
            Step::Write { paths, .. } => paths.target(),
            Step::SqliteReplace { target, .. } | Step::Symlink { target, .. } => {
                Cow::Borrowed(target.as_path())
            }
            _ => continue,
        };
        for at in target.ancestors() {
            if !written.insert(at.to_path_buf()) {
                break;
            }
        }
    }
    written
}

/// [`check`] of files [`move_into_place`] moved, on every core: what is
/// wrong, in their order.
fn check_moved(root: &RootDir, moves: &[(&Step, &Staged)]) -> Result<Vec<String>> {
    let found = std::sync::Mutex::new(Vec::new());
    crate::parallel::try_for_each_claiming(
        moves,
        crate::parallel::default_jobs(),
        |i| folder_run_of_moves(moves, i),
        |&(step, staged)| {
            if let Some(problem) = check_staged(root, step, root.holds_staged(staged)?)? {
                let at = moves.iter().position(|(s, _)| std::ptr::eq(*s, step));
                found
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((at, problem));
            }
            Ok(())
        },
    )?;
    let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.sort();
    Ok(found.into_iter().map(|(_, problem)| problem).collect())
}

/// The problem with a step's staged file after apply, if any (`in_place`:
/// the very file that was staged is there, checked as it was staged): a
/// database must open; a file not found in place (moved by copy across a
/// mount point) must hash to the bundle's sha256.
fn check_staged(root: &RootDir, step: &Step, in_place: bool) -> Result<Option<String>> {
    let (target, sha256) = match step {
        Step::SqliteReplace { target, .. } if in_place => {
            return Ok(sqlite_replace::check_swapped(target))
        }
        Step::Write { .. } if in_place => return Ok(None),
        Step::SqliteReplace { target, sha256, .. } => (Cow::Borrowed(&**target), sha256),
        Step::Write { paths, sha256, .. } => (paths.target(), sha256),
        _ => return Ok(None),
    };
    let rel = root.relative(&target)?;
    let same = matches!(root.entry(rel)?, Entry::File(_))
        && crate::store::steps::same_hash(root, rel, *sha256)?;
    Ok((!same).then(|| format!("{} does not match the bundle's sha256", target.display())))
}

/// Removes empty folders under `folder` (deepest first) that the bundle does
/// not need, each beneath `root` without following links.
fn prune_folders(
    root: &RootDir,
    folder: &Path,
    keep: &std::collections::BTreeSet<PathBuf>,
) -> Result<()> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        if !keep.contains(&dir) {
            root.remove_empty_dir(root.relative(&dir)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_changed_while_staged_is_checked_again_on_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.db");
        std::fs::write(&path, b"one").unwrap();
        let stat = || Some(SourceStat::of(&std::fs::symlink_metadata(&path).unwrap()));
        let before = stat();
        let beside = || Some(vec!["found beside".to_string()]);
        let staged = || vec!["found on the copy".to_string()];
        let found = |after| problems_of_staged(beside(), before.clone(), after, staged);
        assert_eq!(found([stat(), stat()]), ["found beside"]);
        // The same size, written in place: its change time moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        assert_ne!(stat(), before);
        assert_eq!(found([before.clone(), stat()]), ["found on the copy"]);
        assert_eq!(found([stat(), before.clone()]), ["found on the copy"]);
        // Another file renamed over the path.
        std::fs::write(dir.path().join("other.db"), b"one").unwrap();
        std::fs::rename(dir.path().join("other.db"), &path).unwrap();
        assert_eq!(found([before.clone(), stat()]), ["found on the copy"]);
        // No identity to compare, or no result beside (its thread failed).
        assert_eq!(
            problems_of_staged(beside(), None, [None, None], staged),
            ["found on the copy"]
        );
        let same = [before.clone(), before.clone()];
        assert_eq!(
            problems_of_staged(None, before.clone(), same, staged),
            ["found on the copy"]
        );
    }
}
