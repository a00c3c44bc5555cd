//! Restoring SQLite databases in place: the backup API into a live
//! database, the atomic replace where SQLite cannot, stale sidecars, the
//! checks of a restored or merged database, and the in-use probe. Every
//! live database is reached through a [`RootDir`] walk first (a regular
//! file beneath real folders) and opened with `SQLITE_OPEN_NOFOLLOW`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::format::sqlite::{
    backup_all, inspect, leave_as_found, open_copy, run_check, wal_path, SIDECARS,
};
use crate::manifest::SqliteFacts;
use crate::rooted::{Ownership, RootDir};

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
pub fn replace_database(
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
