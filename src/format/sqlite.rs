//! SQLite database files: everything done to one — captured through the
//! online backup API (never a raw copy), checked, verified, probed, and the
//! helpers restore uses to write one.
//!
//! Row counts are taken inside the same read transaction the backup copies
//! pages from, so the counts recorded from the source must equal the counts in
//! the copy (row-count parity) even while another process writes. The copy is
//! switched to rollback-journal mode so it is self-contained.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::hash;
use crate::manifest::{SourceStat, SqliteFacts};
use crate::progress::Progress;

/// The 16-byte header every SQLite 3 database starts with.
pub const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Suffixes of the files SQLite keeps beside a database.
pub const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// How long a capture waits for locks before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Captures the database at `src` to `dest`; returns its size, sha256, facts,
/// and the source's identity taken just before the snapshot.
/// SQLite writes the copy, so this is the one place a copy is read back: it is
/// hashed on a second thread while the copy's checks run.
pub fn capture_file(
    store: &str,
    src: &Path,
    dest: &Path,
    full_check: bool,
    progress: &dyn Progress,
) -> Result<(u64, crate::hash::Sha256Digest, SqliteFacts, SourceStat)> {
    // The copy's bytes are final once it is in rollback mode: hash them
    // while the checks run on the open copy.
    let (snap, stat) = snapshot(store, src, dest)?;
    let hash_copy = || -> Result<(u64, crate::hash::Sha256Digest)> {
        let file = std::fs::File::open(dest).map_err(|e| Error::io("could not read", dest, e))?;
        hash::hash_reader(file, |n| progress.advance(n))
            .map_err(|e| Error::io("could not read", dest, e))
    };
    let (checked, hashed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(hash_copy);
        let checked = check_copy(store, src, dest, snap, full_check);
        (checked, hashing.join().expect("hashing does not panic"))
    });
    let facts = checked?;
    let (bytes, sha256) = hashed?;
    if let Ok(file) = std::fs::File::open(dest) {
        crate::fsutil::start_writeback(&file);
    }
    Ok((bytes, sha256, facts, stat))
}

/// Whether the file at `path` starts with the SQLite header.
pub fn is_sqlite_file(path: &Path) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("could not read", path, e))?;
    starts_with_header(file, path)
}

/// [`is_sqlite_file`], opening the file by name beneath its folder, kept
/// open in `folder` for the next file of the same folder.
pub fn is_sqlite_file_in(folder: &mut crate::fsutil::LastFolder, path: &Path) -> Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let file = folder
        .open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("could not read", path, e))?;
    starts_with_header(file, path)
}

/// Whether `file` (at `path`, for the error) starts with the SQLite header.
fn starts_with_header(mut file: std::fs::File, path: &Path) -> Result<bool> {
    let mut head = [0u8; 16];
    match file.read_exact(&mut head) {
        Ok(()) => Ok(&head == HEADER),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("could not read", path, e)),
    }
}

/// Copies `src` to a new database at `dest` in one backup step, with counts from
/// the same snapshot, then checks the copy's integrity and row-count parity.
pub fn capture_database(
    store: &str,
    src: &Path,
    dest: &Path,
    full_check: bool,
) -> Result<SqliteFacts> {
    let (snap, _) = snapshot(store, src, dest)?;
    check_copy(store, src, dest, snap, full_check)
}

/// A database copied in one read transaction, before its checks: the open
/// copy (already self-contained) and what the source said in that transaction.
struct Snapshot {
    copy: Connection,
    source_counts: BTreeMap<String, u64>,
    virtual_tables: Vec<String>,
    journal_mode: String,
}

/// Notes the source's identity, opens it so that it is left as found (see
/// [`leave_as_found`]), then in one read transaction counts its rows and copies
/// every page into `dest`, and makes the copy self-contained.
fn snapshot(store: &str, src: &Path, dest: &Path) -> Result<(Snapshot, SourceStat)> {
    let sq = |e| Error::sqlite(src, e);
    // Any write after this point changes the identity, so an unchanged
    // identity next time proves the snapshot below is still the content.
    let stat = SourceStat::read(src, true)?;
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq)?;
    harden(&source).map_err(sq)?;
    leave_as_found(&source, stat.wal.is_some()).map_err(sq)?;
    source.busy_timeout(LOCK_WAIT).map_err(sq)?;
    let journal_mode: String = source
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sq)?;

    source.execute_batch("BEGIN DEFERRED").map_err(sq)?;
    let result = (|| {
        let (source_counts, virtual_tables) = inspect(&source).map_err(sq)?;
        let mut copy = Connection::open(dest).map_err(|e| Error::sqlite(dest, e))?;
        // The copy is a new file in the staging folder: a crash discards it,
        // and create fsyncs the whole bundle before committing it, so SQLite
        // need not journal or sync it on its own.
        copy.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            .map_err(|e| Error::sqlite(dest, e))?;
        backup_all(&source, &mut copy).map_err(|e| Error::sqlite(dest, e))?;
        Ok((source_counts, virtual_tables, copy))
    })();
    // End the read transaction whatever happened; the snapshot is taken.
    let _ = source.execute_batch("COMMIT");
    drop(source);
    let (source_counts, virtual_tables, copy) = result?;
    let snap = Snapshot {
        copy: to_rollback_mode(store, src, dest, copy)?,
        source_counts,
        virtual_tables,
        journal_mode: journal_mode.to_ascii_lowercase(),
    };
    Ok((snap, stat))
}

/// The `-wal` file beside a database.
pub fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Makes a connection that only reads leave the database's files as it found
/// them when it closes. When a `-wal` existed before it opened (`had_wal`), it
/// must not checkpoint on close: that would rewrite the main file and delete
/// the `-wal`. When none existed, SQLite's normal close removes the empty
/// `-wal` and `-shm` that opening created.
pub fn leave_as_found(conn: &Connection, had_wal: bool) -> rusqlite::Result<()> {
    if had_wal {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    }
    Ok(())
}

/// Makes the copy self-contained: rollback-journal mode, no `-wal` needed.
fn to_rollback_mode(store: &str, src: &Path, dest: &Path, copy: Connection) -> Result<Connection> {
    let dq = |e| Error::sqlite(dest, e);
    harden(&copy).map_err(dq)?;
    let mode: String = copy
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(dq)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::CheckFailed {
            store: store.into(),
            reason: format!("copy of {} stayed in journal mode {mode}", src.display()),
        });
    }
    Ok(copy)
}

/// Runs the integrity check and the row-count parity check on the copy, closes
/// it (create fsyncs the whole bundle later), and returns the manifest's facts.
fn check_copy(
    store: &str,
    src: &Path,
    dest: &Path,
    snap: Snapshot,
    full_check: bool,
) -> Result<SqliteFacts> {
    let Snapshot {
        copy,
        source_counts,
        virtual_tables,
        journal_mode,
    } = snap;
    let dq = |e| Error::sqlite(dest, e);
    let check = if full_check {
        "integrity_check"
    } else {
        "quick_check"
    };
    let integrity = run_check(&copy, check).map_err(dq)?;
    if integrity != "ok" {
        return Err(Error::CheckFailed {
            store: store.into(),
            reason: format!("the copy of {} failed {check}: {integrity}", src.display()),
        });
    }
    let (copy_counts, _) = inspect(&copy).map_err(dq)?;
    if copy_counts != source_counts {
        return Err(Error::CheckFailed {
            store: store.into(),
            reason: format!(
                "row counts of the copy of {} differ from the source snapshot",
                src.display()
            ),
        });
    }
    let page_size: u32 = copy
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(dq)?;
    let foreign_key_violations = foreign_key_violations(&copy).map_err(dq)?;
    copy.close().map_err(|(_, e)| dq(e))?;
    Ok(SqliteFacts {
        tables: source_counts,
        virtual_tables,
        page_size,
        integrity,
        check: check.to_string(),
        source_journal_mode: journal_mode,
        foreign_key_violations: Some(foreign_key_violations),
    })
}

/// Copies every page of `source` into `dest` as a single `step(-1)`, retrying
/// only while busy or locked, and never longer than [`LOCK_WAIT`]. Used both to
/// capture a database and to restore one.
pub fn backup_all(source: &Connection, dest: &mut Connection) -> rusqlite::Result<()> {
    let backup = Backup::new(source, dest)?;
    let started = Instant::now();
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked
                if started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(
                        "the database stayed locked; stop the application using it and try again"
                            .into(),
                    ),
                ))
            }
        }
    }
}

/// Settings for connections that read untrusted or foreign databases: never
/// run code from the schema, refuse writes that could corrupt it.
pub fn harden(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    Ok(())
}

/// Row counts of ordinary tables (shadow tables of virtual ones included)
/// and the names of virtual tables, as SQLite itself classifies them
/// (`PRAGMA table_list`), never by reading their SQL text.
pub fn inspect(conn: &Connection) -> rusqlite::Result<(BTreeMap<String, u64>, Vec<String>)> {
    let mut stmt = conn.prepare(
        "SELECT name, type FROM pragma_table_list WHERE schema = 'main' \
         AND type IN ('table', 'shadow', 'virtual') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut counts = BTreeMap::new();
    let mut virtual_tables = Vec::new();
    for (name, kind) in rows {
        if kind == "virtual" {
            virtual_tables.push(name);
            continue;
        }
        let count: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {}", quote_ident(&name)),
            [],
            |r| r.get(0),
        )?;
        counts.insert(name, count.max(0) as u64);
    }
    Ok((counts, virtual_tables))
}

/// Quotes an SQL identifier with double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `quick_check` or `integrity_check`; joins the messages (`ok` when clean).
pub fn run_check(conn: &Connection, check: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(&format!("PRAGMA {check}"))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lines.join("; "))
}

/// Opens a bundle's database copy strictly read-only, touching nothing beside it.
pub fn open_copy(path: &Path) -> rusqlite::Result<Connection> {
    let uri = format!("file:{}?immutable=1", uri_escape(path));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    harden(&conn)?;
    Ok(conn)
}

/// Checks a database copy against its recorded facts; returns the problems found.
pub fn verify_copy(path: &Path, facts: &SqliteFacts, full: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let conn = match open_copy(path) {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot open as SQLite: {e}")],
    };
    let check = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    match run_check(&conn, check) {
        Ok(r) if r == "ok" => {}
        Ok(r) => problems.push(format!("{check} failed: {r}")),
        Err(e) => {
            problems.push(format!("{check} could not run: {e}"));
            return problems;
        }
    }
    match inspect(&conn) {
        Ok((counts, virtual_tables)) => {
            if counts != facts.tables {
                problems.push(format!(
                    "table row counts differ from the manifest: recorded {}, found {}",
                    describe_counts(&facts.tables),
                    describe_counts(&counts)
                ));
            }
            if virtual_tables != facts.virtual_tables {
                problems.push(format!(
                    "virtual tables differ from the manifest: recorded {:?}, found {:?}",
                    facts.virtual_tables, virtual_tables
                ));
            }
        }
        Err(e) => problems.push(format!("cannot count rows: {e}")),
    }
    match conn.query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0)) {
        Ok(p) if p == facts.page_size => {}
        Ok(p) => problems.push(format!(
            "page size {p} differs from the recorded {}",
            facts.page_size
        )),
        Err(e) => problems.push(format!("cannot read page size: {e}")),
    }
    match check_constraint_problems(path) {
        Ok(found) => problems.extend(found),
        Err(e) => problems.push(format!("cannot check CHECK constraints: {e}")),
    }
    if let Some(want) = facts.foreign_key_violations {
        match foreign_key_violations(&conn) {
            Ok(n) if n == want => {}
            Ok(n) => problems.push(format!(
                "{n} row(s) violate foreign keys, the manifest says {want}"
            )),
            Err(e) => problems.push(format!("cannot check foreign keys: {e}")),
        }
    }
    problems
}

/// Rows that violate a foreign key (`PRAGMA foreign_key_check`); only
/// databases whose schema declares a foreign key are scanned.
pub fn foreign_key_violations(conn: &Connection) -> rusqlite::Result<u64> {
    let declares: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%references%'",
        [],
        |r| r.get(0),
    )?;
    if !declares {
        return Ok(0);
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while rows.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Rows batched per step of [`check_constraint_problems`].
const CHECK_BATCH: i64 = 10_000;

/// The tables of the database at `path` whose rows violate their own CHECK
/// constraints. SQLite does not parse CHECK constraints on a read-only
/// connection, so `integrity_check` there skips them; instead each table
/// that declares one is recreated in a private in-memory database (its
/// `CREATE TABLE` statement only: no trigger, no other statement runs) and
/// the bundle's rows are inserted into it in batches, which enforces them.
pub fn check_constraint_problems(path: &Path) -> rusqlite::Result<Vec<String>> {
    let mem = Connection::open_in_memory()?;
    harden(&mem)?;
    // Only CHECK constraints are the question here; foreign keys are counted
    // apart (the referenced tables are not recreated).
    mem.execute_batch("PRAGMA foreign_keys = OFF")?;
    let uri = format!("file:{}?immutable=1&mode=ro", uri_escape(path));
    mem.execute("ATTACH DATABASE ?1 AS bundle", [uri])?;
    let tables: Vec<(String, String)> = {
        let mut stmt = mem.prepare(
            "SELECT name, sql FROM bundle.sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql LIKE '%check%' \
             AND name IN (SELECT name FROM pragma_table_list \
                          WHERE schema = 'bundle' AND type = 'table')",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut problems = Vec::new();
    for (name, sql) in tables {
        if !sql
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("create table")
        {
            continue;
        }
        // `execute` refuses more than one statement.
        if let Err(e) = mem.execute(&sql, []) {
            problems.push(format!("table {name}: its schema cannot be re-read: {e}"));
            continue;
        }
        if let Some(p) = check_table(&mem, &name)? {
            problems.push(p);
        }
        mem.execute(&format!("DROP TABLE main.{}", quote_ident(&name)), [])?;
    }
    Ok(problems)
}

/// Inserts table `name`'s bundle rows into its empty in-memory twin, a batch
/// at a time; the first CHECK failure is the problem.
fn check_table(mem: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    let t = quote_ident(name);
    let cols: Vec<String> = {
        let mut stmt = mem.prepare(&format!("PRAGMA bundle.table_xinfo({t})"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(6)?)))?;
        rows.filter_map(|r| r.ok())
            .filter(|(_, hidden)| *hidden == 0)
            .map(|(c, _)| quote_ident(&c))
            .collect()
    };
    let cols = cols.join(", ");
    let has_rowid = mem
        .prepare(&format!("SELECT rowid FROM bundle.{t} LIMIT 0"))
        .is_ok();
    let fail = |e: rusqlite::Error| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK =>
        {
            Ok(Some(format!(
                "rows of table {name} violate its CHECK constraints"
            )))
        }
        _ => Err(e),
    };
    if !has_rowid {
        let insert = format!("INSERT INTO main.{t}({cols}) SELECT {cols} FROM bundle.{t}");
        return match mem.execute(&insert, []) {
            Ok(_) => Ok(None),
            Err(e) => fail(e),
        };
    }
    let insert = format!(
        "INSERT INTO main.{t}({cols}) SELECT {cols} FROM bundle.{t} WHERE rowid > ?1 ORDER BY rowid LIMIT {CHECK_BATCH}"
    );
    let last = format!(
        "SELECT max(r) FROM (SELECT rowid AS r FROM bundle.{t} WHERE rowid > ?1 ORDER BY rowid LIMIT {CHECK_BATCH})"
    );
    let mut after = i64::MIN;
    loop {
        let Some(next) = mem.query_row(&last, [after], |r| r.get::<_, Option<i64>>(0))? else {
            return Ok(None);
        };
        if let Err(e) = mem.execute(&insert, [after]) {
            return fail(e);
        }
        mem.execute(&format!("DELETE FROM main.{t}"), [])?;
        after = next;
    }
}

fn describe_counts(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Bytes a `file:` URI path keeps as they are: RFC 3986 unreserved and `/`.
const URI_PATH_KEEPS: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path (any bytes) for an SQLite `file:` URI.
pub fn uri_escape(path: &Path) -> String {
    percent_encoding::percent_encode(path.as_os_str().as_encoded_bytes(), URI_PATH_KEEPS)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_tables_are_told_apart_by_sqlite_itself() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE VIRTUAL TABLE notes_fts USING fts5(body);
             CREATE TABLE \"CREATE VIRTUAL TABLE x\"(v);
             CREATE TABLE virtual_things(x);
             INSERT INTO virtual_things VALUES (1), (2);",
        )
        .unwrap();
        let (counts, virtual_tables) = inspect(&conn).unwrap();
        assert_eq!(virtual_tables, ["notes_fts"]);
        assert_eq!(counts["virtual_things"], 2);
        assert_eq!(counts["CREATE VIRTUAL TABLE x"], 0);
        assert!(
            counts.contains_key("notes_fts_data"),
            "shadow tables are counted"
        );
    }

    #[test]
    fn uri_escaping_keeps_paths_unambiguous() {
        assert_eq!(
            uri_escape(Path::new("/a b/c?d#e%.db")),
            "/a%20b/c%3Fd%23e%25.db"
        );
    }

    #[test]
    fn wal_rows_and_counts_are_captured_into_a_self_contained_copy() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let writer = Connection::open(&src).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                 CREATE VIRTUAL TABLE f USING fts5(v);
                 INSERT INTO t(v) VALUES ('a'), ('b'), ('c');
                 INSERT INTO f(v) VALUES ('hello');",
            )
            .unwrap();
        assert!(dir.path().join("src.db-wal").metadata().unwrap().len() > 0);
        let dest = dir.path().join("copy.db");
        let facts = capture_database("s", &src, &dest, true).unwrap();
        assert_eq!(facts.tables["t"], 3);
        assert_eq!(facts.virtual_tables, vec!["f".to_string()]);
        assert!(facts.tables.contains_key("f_data"));
        assert_eq!(facts.source_journal_mode, "wal");
        assert_eq!(facts.check, "integrity_check");
        assert!(!dir.path().join("copy.db-wal").exists());
        let mut header = [0u8; 20];
        std::fs::File::open(&dest)
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        assert_eq!(
            &header[18..20],
            &[1, 1],
            "copy must be in rollback-journal mode"
        );
        assert!(verify_copy(&dest, &facts, true).is_empty());
        // The writer's connection still works and sees its rows.
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }
}
