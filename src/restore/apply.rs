//! Executing a restore plan, then checking the live result against the bundle.
//!
//! Every write resolves beneath the store's folder without following links
//! ([`crate::rooted`]). Every file write is temp + fsync + rename; SQLite databases are written
//! through the backup API (transactional) or, where SQLite cannot, replaced
//! atomically after checkpointing, with stale sidecars removed first.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::format::sqlite::{
    backup_all, inspect, leave_as_found, open_copy, run_check, wal_path, SIDECARS,
};
use crate::format::{jsonl_merge as identity, sqlite_merge};
use crate::manifest::SqliteFacts;
use crate::plan::{Counts, Step};
use crate::rooted::{Entry, Ownership, RootDir};

/// Executes store `store`'s steps beneath `root` (the store's folder, or the
/// folder of a single-file store); returns what was actually done. Every
/// write resolves beneath `root` without following links.
pub fn apply(store: &str, root: &RootDir, steps: &[Step]) -> Result<(Counts, Vec<String>)> {
    let mut done = Counts::default();
    let mut notes = Vec::new();
    for step in steps {
        match step {
            Step::SqliteReplace {
                source,
                target,
                facts,
                exists,
                owner,
            } => {
                replace_database(root, source, target, facts, *exists, *owner)?;
                done.written += 1;
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
            Step::Write {
                source,
                target,
                sha256,
                owner,
                ..
            } => {
                write_file(root, source, root.relative(target)?, sha256, *owner)?;
                done.written += 1;
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
    }
    Ok((done, notes))
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
/// Like apply, it reads beneath `root` without following links.
pub fn check(root: &RootDir, steps: &[Step]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // A removed link (or file) on the way to a bundle path is a folder now.
    let written: Vec<&Path> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write { target, .. }
            | Step::SqliteReplace { target, .. }
            | Step::Symlink { target, .. } => Some(target.as_path()),
            _ => None,
        })
        .collect();
    for step in steps {
        match step {
            Step::SqliteReplace { target, facts, .. } => {
                root.require_file(root.relative(target)?)?;
                problems.extend(check_database(target, facts)?);
            }
            Step::SqliteMerge { target, .. } => {
                root.require_file(root.relative(target)?)?;
                problems.extend(check_merged_database(target)?);
            }
            Step::Write { target, sha256, .. } => {
                if !crate::store::steps::same_hash(root, root.relative(target)?, sha256)? {
                    problems.push(format!(
                        "{} does not match the bundle's sha256",
                        target.display()
                    ));
                }
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
            Step::Remove { target } if written.iter().any(|w| w.starts_with(target)) => {
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

/// Flags for reading a live database: read-only, and never through a final symlink.
fn live_read_only() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW
}

/// Flags for writing a live database: never through a final symlink.
fn live_read_write() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
}

/// The integrity check of a database after a merge (rows still absent after
/// it were counted as conflicts by apply).
fn check_merged_database(target: &Path) -> Result<Option<String>> {
    let conn = Connection::open_with_flags(target, live_read_only())
        .map_err(|e| Error::sqlite(target, e))?;
    let result = run_check(&conn, "integrity_check").map_err(|e| Error::sqlite(target, e))?;
    Ok((result != "ok").then(|| {
        format!(
            "{} failed integrity_check after merge: {result}",
            target.display()
        )
    }))
}

/// Full integrity check and table counts of a restored database.
pub fn check_database(target: &Path, facts: &SqliteFacts) -> Result<Vec<String>> {
    let sq = |e| Error::sqlite(target, e);
    let conn = Connection::open_with_flags(target, live_read_only()).map_err(sq)?;
    let mut problems = Vec::new();
    let result = run_check(&conn, "integrity_check").map_err(sq)?;
    if result != "ok" {
        problems.push(format!(
            "{} failed integrity_check: {result}",
            target.display()
        ));
    }
    let (counts, _) = inspect(&conn).map_err(sq)?;
    if counts != facts.tables {
        problems.push(format!(
            "{} does not hold the bundle's row counts",
            target.display()
        ));
    }
    Ok(problems)
}

/// Puts the bundle's database at `target`: through the backup API into an
/// existing database, else (new file, or SQLite refuses) an atomic file replace.
fn replace_database(
    root: &RootDir,
    source: &Path,
    target: &Path,
    facts: &SqliteFacts,
    exists: bool,
    owner: Ownership,
) -> Result<()> {
    let rel = root.relative(target)?;
    if exists {
        root.require_file(rel)?;
        match backup_into(source, target) {
            Ok(()) => return remove_stale_sidecars(root, rel),
            Err(BackupFailure::Unsupported) => {}
            Err(BackupFailure::Sqlite(e)) => return Err(Error::sqlite(target, e)),
        }
        checkpoint_and_leave_wal(target)?;
    }
    // A stale WAL must never be replayed onto the new file: remove sidecars
    // (their content was checkpointed above) before the new file appears.
    for suffix in SIDECARS {
        root.remove_file(&sidecar(rel, suffix))?;
    }
    root.write_file(rel, owner, |out| {
        let mut input = std::fs::File::open(source)?;
        std::io::copy(&mut input, out)?;
        Ok(())
    })?;
    if facts.source_journal_mode == "wal" {
        root.require_file(rel)?;
        let conn = Connection::open_with_flags(target, live_read_write())
            .map_err(|e| Error::sqlite(target, e))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(|e| Error::sqlite(target, e))?;
    }
    Ok(())
}

enum BackupFailure {
    /// SQLite cannot do it in place (e.g. WAL target with another page size).
    Unsupported,
    Sqlite(rusqlite::Error),
}

/// Copies the bundle database into the live one through the backup API.
fn backup_into(source: &Path, target: &Path) -> std::result::Result<(), BackupFailure> {
    let src = open_copy(source).map_err(BackupFailure::Sqlite)?;
    let mut dst =
        Connection::open_with_flags(target, live_read_write()).map_err(BackupFailure::Sqlite)?;
    dst.busy_timeout(Duration::from_secs(5))
        .map_err(BackupFailure::Sqlite)?;
    match backup_all(&src, &mut dst) {
        Ok(()) => {}
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ReadOnly => {
            return Err(BackupFailure::Unsupported)
        }
        Err(e) => return Err(BackupFailure::Sqlite(e)),
    }
    dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(BackupFailure::Sqlite)?;
    Ok(())
}

/// Checkpoints a live WAL database fully and switches it to rollback mode so
/// no `-wal` content remains to be replayed.
fn checkpoint_and_leave_wal(target: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(target, live_read_write())
        .map_err(|e| Error::sqlite(target, e))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| Error::sqlite(target, e))?;
    conn.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))
        .map_err(|e| Error::sqlite(target, e))?;
    Ok(())
}

/// After an in-place restore: a database not in WAL mode has no use for a
/// `-wal`/`-shm`; remove any stale ones so they can never be replayed later.
fn remove_stale_sidecars(root: &RootDir, rel: &Path) -> Result<()> {
    let mut header = [0u8; 20];
    let path = root.display(rel);
    root.open_read(rel)?
        .read_exact(&mut header)
        .map_err(|e| Error::io("could not read", &path, e))?;
    if header[18] != 2 {
        root.remove_file(&sidecar(rel, "-wal"))?;
        root.remove_file(&sidecar(rel, "-shm"))?;
    }
    Ok(())
}

fn sidecar(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies a bundle file to `rel` atomically, checking its hash on the way.
fn write_file(
    root: &RootDir,
    source: &Path,
    rel: &Path,
    sha256: &str,
    owner: Ownership,
) -> Result<()> {
    root.write_file(rel, owner, |out| {
        let input = std::fs::File::open(source)?;
        let (_, actual) =
            crate::hash::stream_hashed(input, |chunk| std::io::Write::write_all(out, chunk))?;
        if actual != sha256 {
            return Err(std::io::Error::other(
                "the bundle's file changed since it was verified",
            ));
        }
        Ok(())
    })
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

/// Whether another process holds the database open for writing: a short,
/// non-blocking attempt at an exclusive lock.
pub fn database_in_use(path: &Path) -> Result<bool> {
    let had_wal = wal_path(path).exists();
    let conn =
        Connection::open_with_flags(path, live_read_write()).map_err(|e| Error::sqlite(path, e))?;
    // A probe must not change what it probes.
    leave_as_found(&conn, had_wal).map_err(|e| Error::sqlite(path, e))?;
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(|e| Error::sqlite(path, e))?;
    match conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
        Ok(()) => Ok(false),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(Error::sqlite(path, e)),
    }
}
