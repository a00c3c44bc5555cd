//! Set capture: a store whose files only make sense together (a Chroma
//! persist directory) is copied as one set that held still while it was
//! copied, or not at all.
//!
//! A per-file "changed while copied" check cannot see a state torn *across*
//! files: an index written between the copies of two of its files. So each
//! attempt (1) stats every file of the vector segments, (2) reads which log
//! position each persisted index is complete up to, (3) copies the index
//! files and stats them again, then (4) copies the database through the
//! backup API and reads the positions from the copy. Chroma writes an
//! index's files first and its position last, so equal stats and equal
//! positions mean the copy holds one persisted state, and the database's
//! log holds everything after it (the client replays it when it opens the
//! store); the copy must then pass
//! [`crate::format::chroma::inspect`]. An attempt that fails any of this is
//! thrown away and taken again after a short pause, up to [`SET_ATTEMPTS`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::capture::{capture_unit, remove_store_folder, CaptureContext, UnitDone};
use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::chroma::{self, ChromaFacts};
use crate::manifest::SourceStat;
use crate::store::{CapturePlan, Unit, UnitKind};

/// How many times a set is taken before the store fails.
pub const SET_ATTEMPTS: usize = 8;

/// A store captured as one set.
#[derive(Debug)]
pub struct SetCaptured {
    /// The walk of the attempt that held (its units are the files captured).
    pub plan: CapturePlan,
    /// Each file captured.
    pub done: Vec<UnitDone>,
    /// What the copy holds.
    pub facts: ChromaFacts,
}

/// Captures the Chroma store `spec` as one consistent set into its folder of
/// the bundle being built, `jobs` files at once.
pub fn capture_chroma(
    spec: &StoreSpec,
    ctx: &CaptureContext<'_>,
    jobs: usize,
) -> Result<SetCaptured> {
    let folder = ctx.target(Path::new(&spec.name));
    let mut last = String::new();
    for attempt in 1..=SET_ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(Duration::from_millis(50 * attempt as u64));
        }
        let plan = crate::store::plan_capture(spec)?;
        if let Some(e) = plan.failure {
            return Err(*e);
        }
        let before = file_stats(&plan)?;
        let positions = live_positions(&spec.path.join(chroma::DATABASE))
            .map_err(|e| Error::sqlite(&spec.path.join(chroma::DATABASE), e))?;
        remove_store_folder(&folder)?;
        for f in &plan.folders {
            crate::fsutil::create_dir_all(&ctx.target(f))?;
        }
        // The index files first, then their stats again, then the database:
        // a persist that starts after the second stats is only in the copy
        // if its position is (and then the positions differ).
        let (files, database): (Vec<_>, Vec<_>) =
            plan.units.iter().partition(|u| u.kind != UnitKind::Sqlite);
        let mut done = match capture_units(&files, ctx, jobs)? {
            Ok(done) => done,
            Err(reason) => {
                last = reason;
                continue;
            }
        };
        if before != file_stats(&crate::store::plan_capture(spec)?)? {
            last = "index files changed while they were copied".into();
            continue;
        }
        match capture_units(&database, ctx, jobs)? {
            Ok(db) => done.extend(db),
            Err(reason) => {
                last = reason;
                continue;
            }
        }
        let copied = folder.join(chroma::DATABASE);
        let copied_positions = copy_positions(&copied).map_err(|e| Error::sqlite(&copied, e))?;
        if positions != copied_positions {
            last = "an index was persisted while the store was copied".into();
            continue;
        }
        match chroma::inspect(&folder) {
            Ok(facts) => return Ok(SetCaptured { plan, done, facts }),
            Err(reason) => last = reason,
        }
    }
    Err(Error::CheckFailed {
        store: spec.name.clone(),
        reason: format!(
            "the Chroma store did not hold still long enough to be copied as one consistent set ({SET_ATTEMPTS} tries; last: {last}); pause the application writing to {} around create (pre_create and post_create hooks) and try again",
            spec.path.display()
        ),
    })
}

/// Captures `units`; `Ok(Err(why))` when one of them could not be captured
/// consistently (it kept changing), so the set is taken again.
fn capture_units(
    units: &[&Unit],
    ctx: &CaptureContext<'_>,
    jobs: usize,
) -> Result<std::result::Result<Vec<UnitDone>, String>> {
    let done = crate::parallel::map(units, jobs, |u| match capture_unit(u, ctx) {
        Ok(d) => Ok(Ok(d)),
        Err(Error::CheckFailed { reason, .. }) => Ok(Err(reason)),
        Err(e) => Err(e),
    })?;
    Ok(done.into_iter().collect())
}

/// The identity of every file of the set except the database, which the
/// backup API copies as one transaction.
fn file_stats(plan: &CapturePlan) -> Result<BTreeMap<String, SourceStat>> {
    plan.units
        .iter()
        .filter(|u| u.kind != UnitKind::Sqlite)
        .map(|u| Ok((u.path.to_string(), SourceStat::read(&u.src(), false)?)))
        .collect()
}

/// The persisted positions of the vector segments, read from the live database.
fn live_positions(db: &Path) -> rusqlite::Result<BTreeMap<String, Vec<u8>>> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    positions(&conn)
}

/// The persisted positions of the vector segments, read from the bundle's copy.
fn copy_positions(db: &Path) -> rusqlite::Result<BTreeMap<String, Vec<u8>>> {
    positions(&crate::format::sqlite::open_copy(db)?)
}

/// Vector segment id → its persisted position, as stored.
fn positions(conn: &rusqlite::Connection) -> rusqlite::Result<BTreeMap<String, Vec<u8>>> {
    let mut stmt = conn.prepare(
        "SELECT m.segment_id, CAST(m.seq_id AS BLOB) FROM max_seq_id m \
         JOIN segments s ON s.id = m.segment_id WHERE s.scope = 'VECTOR'",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
