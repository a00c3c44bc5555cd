//! SQLite merge: insert the bundle's rows the live database lacks, in one
//! transaction, live rows winning every conflict.
//!
//! Tables are matched by name and columns by name. A table the live database
//! lacks is created from the bundle's `CREATE TABLE` with its indexes; triggers
//! and views in a bundle are never created or run. Virtual tables are not merged
//! row by row (their shadow tables are skipped); FTS indexes are rebuilt.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::format::sqlite::{harden, leave_as_found, quote_ident, uri_escape, wal_path};
use crate::manifest::SqliteFacts;

/// What a merge would do, computed read-only.
#[derive(Debug, Default)]
pub struct Estimate {
    /// Bundle rows absent live (to be inserted).
    pub missing: u64,
    /// Bundle rows already present live.
    pub present: u64,
    /// `table.column` of bundle columns the live table lacks (not merged).
    pub missing_columns: Vec<String>,
    /// Virtual tables whose bundle rows merge cannot bring back, and why
    /// (a sqlite-vec `vec0` table, a standalone FTS table missing rows).
    pub left_out: Vec<String>,
}

/// What a merge did.
#[derive(Debug, Default)]
pub struct Merged {
    /// Rows inserted.
    pub inserted: u64,
    /// Bundle rows still absent afterwards (blocked by another unique key; live won).
    pub conflicts: u64,
    /// FTS tables whose index was rebuilt.
    pub rebuilt: Vec<String>,
}

/// One bundle table and how it maps onto the live database.
struct TablePlan {
    name: String,
    create_sql: String,
    live_exists: bool,
    columns: Vec<String>,
    key: Vec<String>,
}

impl TablePlan {
    fn cols(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| format!("{alias}{}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// SELECT of the bundle rows absent live.
    fn missing_rows_sql(&self) -> String {
        let t = quote_ident(&self.name);
        if !self.live_exists {
            return format!("SELECT {} FROM bundle.{t}", self.cols(""));
        }
        if self.key.is_empty() {
            return format!(
                "SELECT {cols} FROM bundle.{t} EXCEPT SELECT {cols} FROM main.{t}",
                cols = self.cols("")
            );
        }
        let cond = self
            .key
            .iter()
            .map(|k| format!("l.{k} IS b.{k}", k = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "SELECT {} FROM bundle.{t} AS b WHERE NOT EXISTS (SELECT 1 FROM main.{t} AS l WHERE {cond})",
            self.cols("b.")
        )
    }
}

fn open_attached(
    target: &Path,
    bundle_copy: &Path,
    read_only: bool,
) -> rusqlite::Result<Connection> {
    let mode = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let had_wal = wal_path(target).exists();
    let conn = Connection::open_with_flags(
        target,
        // Never through a final symlink (the folders above were checked by the caller).
        mode | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )?;
    harden(&conn)?;
    if read_only {
        // Planning only looks: leave the live files exactly as they were.
        leave_as_found(&conn, had_wal)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let uri = format!("file:{}?immutable=1&mode=ro", uri_escape(bundle_copy));
    conn.execute("ATTACH DATABASE ?1 AS bundle", [uri])?;
    Ok(conn)
}

fn columns(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(&format!(
        "PRAGMA {schema}.table_info({})",
        quote_ident(table)
    ))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))?
        .collect();
    rows
}

/// The bundle's ordinary tables (not shadow tables of virtual tables) mapped onto live.
fn table_plans(
    conn: &Connection,
    facts: &SqliteFacts,
    notes: &mut Vec<String>,
) -> rusqlite::Result<Vec<TablePlan>> {
    let mut plans = Vec::new();
    for name in facts.tables.keys() {
        if facts
            .virtual_tables
            .iter()
            .any(|v| name.starts_with(&format!("{v}_")))
        {
            continue;
        }
        let create_sql: String = conn.query_row(
            "SELECT sql FROM bundle.sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        let live: Vec<(String, i64)> = columns(conn, "main", name)?;
        let bundle_cols = columns(conn, "bundle", name)?;
        let live_exists = !live.is_empty();
        let mut cols = Vec::new();
        for (col, _) in &bundle_cols {
            if !live_exists || live.iter().any(|(l, _)| l.eq_ignore_ascii_case(col)) {
                cols.push(col.clone());
            } else {
                notes.push(format!("{name}.{col}"));
            }
        }
        let mut key: Vec<(String, i64)> = if live_exists {
            live.iter().filter(|(_, pk)| *pk > 0).cloned().collect()
        } else {
            Vec::new()
        };
        key.sort_by_key(|(_, pk)| *pk);
        let key: Vec<String> = key.into_iter().map(|(c, _)| c).collect();
        let key_usable = key
            .iter()
            .all(|k| cols.iter().any(|c| c.eq_ignore_ascii_case(k)));
        plans.push(TablePlan {
            name: name.clone(),
            create_sql,
            live_exists,
            columns: cols,
            key: if key_usable { key } else { Vec::new() },
        });
    }
    Ok(plans)
}

/// Counts, read-only, what merging `bundle_copy` into `target` would insert.
pub fn estimate(target: &Path, bundle_copy: &Path, facts: &SqliteFacts) -> Result<Estimate> {
    let sq = |e| Error::sqlite(target, e);
    let conn = open_attached(target, bundle_copy, true).map_err(sq)?;
    let mut est = Estimate::default();
    for plan in table_plans(&conn, facts, &mut est.missing_columns).map_err(sq)? {
        let missing = count_missing(&conn, &plan).map_err(sq)?;
        let total = facts.tables.get(&plan.name).copied().unwrap_or(0);
        est.missing += missing;
        est.present += total.saturating_sub(missing);
    }
    est.left_out = virtual_left_out(&conn, facts);
    Ok(est)
}

/// The bundle's virtual tables whose rows live lacks and merge cannot copy
/// (virtual tables are not merged row by row). An FTS table over external
/// content is rebuilt from its merged content table, so nothing is lost;
/// for any other, the bundle rowids missing live are counted (through the
/// table, or its `_rowids` shadow table when the module is not built in,
/// as for sqlite-vec); one that cannot be compared counts as left out.
fn virtual_left_out(conn: &Connection, facts: &SqliteFacts) -> Vec<String> {
    let mut out = Vec::new();
    for vt in &facts.virtual_tables {
        let sql: String = conn
            .query_row(
                "SELECT coalesce(sql, '') FROM bundle.sqlite_schema WHERE name = ?1",
                [vt],
                |r| r.get(0),
            )
            .unwrap_or_default();
        let lower = sql.to_ascii_lowercase().replace(' ', "");
        let external = lower.contains("content=") && !lower.contains("content=''");
        if (lower.contains("fts5") || lower.contains("fts4")) && external {
            continue;
        }
        let module = lower
            .split("using")
            .nth(1)
            .map(|m| m.split('(').next().unwrap_or("").to_string())
            .unwrap_or_default();
        let q = quote_ident(vt);
        let rowids = quote_ident(&format!("{vt}_rowids"));
        let missing = [
            format!("SELECT count(*) FROM bundle.{q} WHERE rowid NOT IN (SELECT rowid FROM main.{q})"),
            format!("SELECT count(*) FROM bundle.{rowids} WHERE rowid NOT IN (SELECT rowid FROM main.{rowids})"),
        ]
        .iter()
        .find_map(|query| conn.query_row(query, [], |r| r.get::<_, i64>(0)).ok());
        match missing {
            Some(0) => {}
            Some(n) => out.push(format!(
                "{vt} ({module}): {n} bundle row(s) live lacks; virtual tables are not merged row by row"
            )),
            None => out.push(format!(
                "{vt} ({module}): its rows cannot be compared or merged here (the module is not available, or live lacks the table)"
            )),
        }
    }
    out
}

fn count_missing(conn: &Connection, plan: &TablePlan) -> rusqlite::Result<u64> {
    if plan.columns.is_empty() {
        return Ok(0);
    }
    let n: i64 = conn.query_row(
        &format!("SELECT count(*) FROM ({})", plan.missing_rows_sql()),
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Merges in one transaction, refusing rows that add foreign-key violations; rebuilds FTS
/// indexes; then counts bundle rows still absent (conflicts the live side won).
pub fn merge(
    store: &str,
    target: &Path,
    bundle_copy: &Path,
    facts: &SqliteFacts,
) -> Result<Merged> {
    let sq = |e| Error::sqlite(target, e);
    let mut conn = open_attached(target, bundle_copy, false).map_err(sq)?;
    // Foreign keys are checked once, before commit, against the violations
    // that already existed: the merge may not add any. (Enforcing them row by
    // row would fail on schemas with dangling references, which exist.)
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(sq)?;
    let mut merged = Merged::default();
    let mut ignored = Vec::new();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sq)?;
    let plans = table_plans(&tx, facts, &mut ignored).map_err(sq)?;
    for plan in &plans {
        if !plan.live_exists {
            create_table(&tx, plan).map_err(sq)?;
        }
        if plan.columns.is_empty() {
            continue;
        }
        let before = fk_violations(&tx, &plan.name).map_err(sq)?;
        let sql = format!(
            "INSERT OR IGNORE INTO main.{} ({}) {}",
            quote_ident(&plan.name),
            plan.cols(""),
            plan.missing_rows_sql()
        );
        let inserted = tx.execute(&sql, []).map_err(sq)? as u64;
        merged.inserted += inserted;
        if inserted > 0 {
            let after = fk_violations(&tx, &plan.name).map_err(sq)?;
            if after > before {
                return Err(Error::CheckFailed {
                    store: store.to_string(),
                    reason: format!(
                        "{}: merging table {} would add {} row(s) whose foreign keys point nowhere; nothing was changed",
                        target.display(),
                        plan.name,
                        after - before
                    ),
                });
            }
        }
    }
    merged.rebuilt = rebuild_fts(&tx, facts).map_err(sq)?;
    tx.commit().map_err(|e| Error::CheckFailed {
        store: store.to_string(),
        reason: format!(
            "{}: the merge could not commit (nothing was changed): {e}",
            target.display()
        ),
    })?;
    let mut unused = Vec::new();
    for plan in table_plans(&conn, facts, &mut unused).map_err(sq)? {
        merged.conflicts += count_missing(&conn, &plan).map_err(sq)?;
    }
    Ok(merged)
}

/// Rebuilds the live full-text indexes among the bundle's virtual tables
/// (their content tables may have grown); returns their names.
fn rebuild_fts(tx: &Connection, facts: &SqliteFacts) -> rusqlite::Result<Vec<String>> {
    let mut rebuilt = Vec::new();
    for vt in &facts.virtual_tables {
        let sql: Option<String> = tx
            .query_row(
                "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
                [vt],
                |r| r.get(0),
            )
            .ok();
        let is_fts = sql.is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            s.contains("fts5") || s.contains("fts4")
        });
        if is_fts {
            let q = quote_ident(vt);
            tx.execute(&format!("INSERT INTO main.{q}({q}) VALUES ('rebuild')"), [])?;
            rebuilt.push(vt.clone());
        }
    }
    Ok(rebuilt)
}

/// Rows of `table` whose foreign keys have no parent row (or parent table).
fn fk_violations(conn: &Connection, table: &str) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare(&format!(
        "PRAGMA main.foreign_key_check({})",
        quote_ident(table)
    ))?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while rows.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Creates a table the live database lacks, with its indexes (never triggers or views).
fn create_table(conn: &Connection, plan: &TablePlan) -> rusqlite::Result<()> {
    let upper = plan.create_sql.trim_start().to_ascii_uppercase();
    if !upper.starts_with("CREATE TABLE") {
        return Err(rusqlite::Error::InvalidQuery);
    }
    conn.execute(&plan.create_sql, [])?;
    let mut stmt = conn.prepare(
        "SELECT sql FROM bundle.sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
    )?;
    let indexes = stmt
        .query_map([&plan.name], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for sql in indexes {
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("CREATE INDEX") || upper.starts_with("CREATE UNIQUE INDEX") {
            conn.execute(&sql, [])?;
        }
    }
    Ok(())
}
