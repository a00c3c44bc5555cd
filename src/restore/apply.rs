//! Executing a restore plan, then checking the live result against the bundle.
//!
//! Every file write is temp + fsync + rename; SQLite databases are written
//! through the backup API (transactional) or, where SQLite cannot, replaced
//! atomically after checkpointing, with stale sidecars removed first.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::hash::{finish_hex, BUF_SIZE};
use crate::manifest::SqliteFacts;
use crate::restore::plan::{Counts, Step};
use crate::restore::{identity, sqlite_merge};
use crate::store::sqlite::{
    backup_all, inspect, leave_as_found, open_copy, run_check, wal_path, SIDECARS,
};

/// Executes store `store`'s steps; returns what was actually done.
pub fn apply(store: &str, steps: &[Step]) -> Result<(Counts, Vec<String>)> {
    let mut done = Counts::default();
    let mut notes = Vec::new();
    for step in steps {
        match step {
            Step::SqliteReplace {
                source,
                target,
                facts,
                exists,
            } => {
                replace_database(source, target, facts, *exists)?;
                done.written += 1;
            }
            Step::SqliteMerge {
                source,
                target,
                facts,
                present,
                ..
            } => {
                let merged = sqlite_merge::merge(store, target, source, facts)?;
                done.inserted += merged.inserted;
                done.kept += present;
                done.conflicts += merged.conflicts;
                if merged.conflicts > 0 {
                    notes.push(format!(
                        "{}: {} bundle row(s) conflict with other unique keys; live rows kept",
                        target.display(),
                        merged.conflicts
                    ));
                }
                for vt in merged.rebuilt {
                    notes.push(format!(
                        "{}: rebuilt full-text index {vt}",
                        target.display()
                    ));
                }
            }
            Step::Write {
                source,
                target,
                sha256,
                ..
            } => {
                write_file(source, target, sha256)?;
                done.written += 1;
            }
            Step::JsonlAppend {
                source,
                target,
                key,
                present,
                ..
            } => {
                done.appended += identity::append_missing(target, source, key.as_deref())?;
                done.kept += present;
            }
            Step::Symlink { target, points_to } => {
                if let Some(parent) = target.parent() {
                    fsutil::create_dir_all(parent)?;
                }
                remove_if_present(target)?;
                std::os::unix::fs::symlink(points_to, target)
                    .map_err(|e| Error::io("could not create symlink", target, e))?;
                done.written += 1;
            }
            Step::Remove { target } => {
                remove_if_present(target)?;
                done.removed += 1;
            }
            Step::PruneFolders { root, keep } => prune_folders(root, keep)?,
            Step::Keep { .. } => done.kept += 1,
            Step::Conflict { .. } => done.conflicts += 1,
        }
    }
    Ok((done, notes))
}

/// Checks that the live result holds what the bundle has; returns problems.
pub fn check(steps: &[Step]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for step in steps {
        match step {
            Step::SqliteReplace { target, facts, .. } => {
                problems.extend(check_database(target, facts)?);
            }
            Step::SqliteMerge { target, .. } => {
                // Rows still absent after the merge were counted as conflicts by apply.
                let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(|e| Error::sqlite(target, e))?;
                let result =
                    run_check(&conn, "integrity_check").map_err(|e| Error::sqlite(target, e))?;
                if result != "ok" {
                    problems.push(format!(
                        "{} failed integrity_check after merge: {result}",
                        target.display()
                    ));
                }
            }
            Step::Write { target, sha256, .. } => {
                if !crate::restore::plan::same_hash(target, sha256)? {
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
                let (missing, _) = identity::count_missing(target, source, key.as_deref())?;
                if missing > 0 {
                    problems.push(format!(
                        "{}: {missing} bundle record(s) are not present",
                        target.display()
                    ));
                }
            }
            Step::Symlink { target, points_to } => {
                if std::fs::read_link(target).ok().as_deref() != Some(Path::new(points_to)) {
                    problems.push(format!("{} is not the bundle's symlink", target.display()));
                }
            }
            Step::Remove { target } => {
                if std::fs::symlink_metadata(target).is_ok() {
                    problems.push(format!("{} was not removed", target.display()));
                }
            }
            Step::Keep { .. } | Step::Conflict { .. } | Step::PruneFolders { .. } => {}
        }
    }
    Ok(problems)
}

/// Full integrity check and table counts of a restored database.
pub fn check_database(target: &Path, facts: &SqliteFacts) -> Result<Vec<String>> {
    let sq = |e| Error::sqlite(target, e);
    let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sq)?;
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
fn replace_database(source: &Path, target: &Path, facts: &SqliteFacts, exists: bool) -> Result<()> {
    if exists {
        match backup_into(source, target) {
            Ok(()) => return remove_stale_sidecars(target),
            Err(BackupFailure::Unsupported) => {}
            Err(BackupFailure::Sqlite(e)) => return Err(Error::sqlite(target, e)),
        }
        checkpoint_and_leave_wal(target)?;
    }
    if let Some(parent) = target.parent() {
        fsutil::create_dir_all(parent)?;
    }
    // A stale WAL must never be replayed onto the new file: remove sidecars
    // (their content was checkpointed above) before the new file appears.
    for suffix in SIDECARS {
        remove_if_present(&sidecar(target, suffix))?;
    }
    fsutil::replace_file(target, |out| {
        let mut input = std::fs::File::open(source)?;
        std::io::copy(&mut input, out)?;
        Ok(())
    })?;
    if facts.source_journal_mode == "wal" {
        let conn = Connection::open(target).map_err(|e| Error::sqlite(target, e))?;
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
    let mut dst = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(BackupFailure::Sqlite)?;
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
    let conn = Connection::open(target).map_err(|e| Error::sqlite(target, e))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| Error::sqlite(target, e))?;
    conn.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))
        .map_err(|e| Error::sqlite(target, e))?;
    Ok(())
}

/// After an in-place restore: a database not in WAL mode has no use for a
/// `-wal`/`-shm`; remove any stale ones so they can never be replayed later.
fn remove_stale_sidecars(target: &Path) -> Result<()> {
    let mut header = [0u8; 20];
    let mut file =
        std::fs::File::open(target).map_err(|e| Error::io("could not read", target, e))?;
    file.read_exact(&mut header)
        .map_err(|e| Error::io("could not read", target, e))?;
    if header[18] != 2 {
        remove_if_present(&sidecar(target, "-wal"))?;
        remove_if_present(&sidecar(target, "-shm"))?;
    }
    Ok(())
}

fn sidecar(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies a bundle file to `target` atomically, checking its hash on the way.
fn write_file(source: &Path, target: &Path, sha256: &str) -> Result<()> {
    if let Some(parent) = target.parent() {
        fsutil::create_dir_all(parent)?;
    }
    if std::fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
        remove_if_present(target)?;
    }
    let mut actual = String::new();
    fsutil::replace_file(target, |out| {
        let mut input = std::fs::File::open(source)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(out, &buf[..n])?;
        }
        actual = finish_hex(hasher);
        if actual != sha256 {
            return Err(std::io::Error::other(
                "the bundle's file changed since it was verified",
            ));
        }
        Ok(())
    })
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("could not remove", path, e)),
    }
}

/// Removes empty folders under `root` (deepest first) that the bundle does not need.
fn prune_folders(root: &Path, keep: &std::collections::BTreeSet<PathBuf>) -> Result<()> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        if keep.contains(&dir) {
            continue;
        }
        let empty = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty {
            std::fs::remove_dir(&dir).map_err(|e| Error::io("could not remove folder", &dir, e))?;
        }
    }
    Ok(())
}

/// Whether another process holds the database open for writing: a short,
/// non-blocking attempt at an exclusive lock.
pub fn database_in_use(path: &Path) -> Result<bool> {
    let had_wal = wal_path(path).exists();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(path, e))?;
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
