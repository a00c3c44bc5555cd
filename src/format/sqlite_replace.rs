//! Restoring SQLite databases: readying a staged copy, swapping it in for
//! the live database with its sidecars settled first, the checks of a
//! restored or merged database, and the in-use probe. Every
//! live database is reached through a [`RootDir`] walk first (a regular
//! file beneath real folders) and opened with `SQLITE_OPEN_NOFOLLOW`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::format::sqlite::{leave_as_found, run_check, wal_path, SIDECARS};
use crate::manifest::SqliteFacts;
use crate::rooted::{Entry, RootDir, Staged};

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
pub fn check_merged_database(target: &Path) -> Result<Option<String>> {
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

/// Readies a staged copy of a bundle database, checked already (see
/// [`crate::format::sqlite::verify_copy`]), before anything live changes:
/// the journal mode the source had.
pub fn ready_staged(path: &Path, facts: &SqliteFacts) -> Result<()> {
    if facts.source_journal_mode != "wal" {
        return Ok(());
    }
    let sq = |e| Error::sqlite(path, e);
    let conn = Connection::open_with_flags(path, live_read_write()).map_err(sq)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(sq)?;
    // Closing the last connection checkpoints and removes the copy's `-wal`
    // (the copy is fsynced with every staged file before the swap).
    conn.close().map_err(|(_, e)| sq(e))?;
    Ok(())
}

/// Puts a staged database in place of `rel` so that a crash at any instant
/// leaves the old database or the new one: whatever the live database's
/// sidecars hold is folded into it first (WAL checkpointed, hot journal
/// rolled back), the sidecars are removed and that made durable, and only
/// then is the staged file renamed over it, so a stale WAL can never be
/// replayed onto the new file.
pub fn swap_in(root: &RootDir, rel: &Path, staged: &Staged) -> Result<()> {
    let sidecars: Vec<PathBuf> = SIDECARS.iter().map(|s| sidecar(rel, s)).collect();
    let mut any_sidecar = false;
    for s in &sidecars {
        any_sidecar |= root.entry(s)? != Entry::Missing;
    }
    if any_sidecar && matches!(root.entry(rel)?, Entry::File(_)) {
        root.require_file(rel)?;
        settle(&root.display(rel))?;
    }
    for s in &sidecars {
        root.remove_file(s)?;
    }
    root.sync_folder_of(rel)?;
    root.commit(staged)
}

/// Folds a live database's sidecars into it so removing them loses
/// nothing. A live file SQLite cannot read as a database is left as it is
/// (the safety snapshot keeps its raw bytes, sidecars included).
fn settle(target: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(target, live_read_write())
        .map_err(|e| Error::sqlite(target, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| Error::sqlite(target, e))?;
    let settled = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())));
    match settled {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::sqlite(target, e)),
    }
}

/// Whether a database put in place by [`swap_in`] opens and reads (its
/// content was checked in full while staged); the problem, if not.
pub fn check_swapped(target: &Path) -> Option<String> {
    let opened = Connection::open_with_flags(target, live_read_only())
        .and_then(|c| c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())));
    opened
        .err()
        .map(|e| format!("{} does not open as a database: {e}", target.display()))
}

fn sidecar(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
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
