//! Capturing one source file (a [`Unit`]): reuse the previous bundle's copy
//! when the source is provably unchanged, else copy it the way its kind needs.
//!
//! Units run in parallel, so they only advance progress, never start phases.
//! Each records the source's [`SourceStat`] taken before it was read, unless
//! the source was modified within [`FRESH`] of being read (a change in the same
//! timestamp tick could then go unnoticed next time) or changed while read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::manifest::{FileRecord, SourceStat};
use crate::store::{jsonl, plain, sqlite, CaptureContext, Unit, UnitKind};

/// Sources modified more recently than this before they are read are not
/// trusted as "unchanged" by the next create.
pub const FRESH: Duration = Duration::from_secs(2);

/// How many times a plain file that changes while copied is copied before failing.
pub const ATTEMPTS: usize = 3;

/// A captured unit: its manifest record and anything the user should know.
#[derive(Debug)]
pub struct UnitDone {
    /// The record for the manifest.
    pub file: FileRecord,
    /// Warnings (invalid JSONL lines, a torn tail, ...).
    pub warnings: Vec<String>,
}

/// Captures `unit` into the bundle being built.
pub fn capture_unit(unit: &Unit, ctx: &CaptureContext<'_>) -> Result<UnitDone> {
    let dest = ctx.target(&unit.rel);
    let meta =
        std::fs::metadata(&unit.src).map_err(|e| Error::io("could not stat", &unit.src, e))?;
    let before = source_stat(&unit.src, unit.kind == UnitKind::Sqlite)?;
    if let Some(mut done) = try_reuse(unit, &before, &dest, ctx) {
        record_ownership(&mut done.file, &meta);
        return Ok(done);
    }
    let mut warnings = Vec::new();
    let record = |bytes, sha256| new_record(unit, bytes, sha256);
    let (mut file, stat) = match unit.kind {
        UnitKind::Sqlite => {
            // The identity that counts is the one taken right before the snapshot.
            let (bytes, sha, facts, stat) =
                sqlite::capture_file(&unit.store, &unit.src, &dest, ctx)?;
            let mut file = record(bytes, sha);
            file.sqlite = Some(facts);
            (file, Some(stat))
        }
        UnitKind::Jsonl => {
            let copy = jsonl::copy_jsonl(&unit.src, &dest, ctx.progress)?;
            warnings = jsonl::warnings(&unit.store, &unit.path, &copy.facts, copy.torn_bytes);
            let mut file = record(copy.bytes, copy.sha256);
            file.jsonl = Some(copy.facts);
            // A torn tail is left out: the source is not what the bundle holds.
            (file, (copy.torn_bytes == 0).then_some(before))
        }
        UnitKind::Plain => copy_plain(unit, &dest, ctx, before)?,
    };
    file.source_stat = stat.filter(|s| trustworthy(s) && still(s, &unit.src, unit.kind));
    record_ownership(&mut file, &meta);
    crate::fsutil::set_mode(&dest, bundle_mode(meta.mode()))?;
    Ok(UnitDone { file, warnings })
}

/// The mode of a bundle copy: the source's permission bits without write
/// (never more readable than the source), readable by its owner so that
/// verify and restore can read it.
pub fn bundle_mode(source_mode: u32) -> u32 {
    (source_mode & 0o555) | 0o400
}

/// Records the source's permission bits, owner and group in `file`.
fn record_ownership(file: &mut FileRecord, meta: &std::fs::Metadata) {
    file.mode = Some(meta.mode() & 0o7777);
    file.uid = Some(meta.uid());
    file.gid = Some(meta.gid());
}

/// A fresh record for a copied unit; kind facts and the source stat are added by the caller.
fn new_record(unit: &Unit, bytes: u64, sha256: String) -> FileRecord {
    FileRecord {
        path: unit.path.clone(),
        path_hex: unit.path_hex.clone(),
        bytes,
        sha256,
        sqlite: None,
        jsonl: None,
        source_stat: None,
        reused: false,
        mode: None,
        uid: None,
        gid: None,
    }
}

/// Copies a plain file, again while it changes under us, up to [`ATTEMPTS`] times.
fn copy_plain(
    unit: &Unit,
    dest: &Path,
    ctx: &CaptureContext<'_>,
    mut before: SourceStat,
) -> Result<(FileRecord, Option<SourceStat>)> {
    for attempt in 1..=ATTEMPTS {
        let copy = plain::copy_hashed(&unit.src, dest, ctx.progress)?;
        if !copy.changed {
            return Ok((new_record(unit, copy.bytes, copy.sha256), Some(before)));
        }
        std::fs::remove_file(dest).map_err(|e| Error::io("could not remove", dest, e))?;
        if attempt < ATTEMPTS {
            before = source_stat(&unit.src, false)?;
        }
    }
    Err(Error::CheckFailed {
        store: unit.store.clone(),
        reason: format!(
            "{} kept changing while being copied ({ATTEMPTS} tries); stop the application writing to {} (or stop it from a pre_create hook) and try again",
            unit.path,
            unit.src.display()
        ),
    })
}

/// Hard-links the previous bundle's copy when the source is unchanged.
fn try_reuse(
    unit: &Unit,
    stat: &SourceStat,
    dest: &Path,
    ctx: &CaptureContext<'_>,
) -> Option<UnitDone> {
    let (from, previous) = ctx.previous?.candidate(unit, stat, ctx.full_check)?;
    // Another file system, a link limit, or no hard links here: copy instead.
    std::fs::hard_link(&from, dest).ok()?;
    ctx.progress.advance(previous.bytes);
    let mut file = previous.clone();
    file.reused = true;
    file.source_stat = Some(stat.clone());
    let warnings = match &file.jsonl {
        Some(facts) => jsonl::warnings(&unit.store, &unit.path, facts, 0),
        None => Vec::new(),
    };
    Some(UnitDone { file, warnings })
}

/// The identity of `path` (and of its `-wal` for a database).
pub fn source_stat(path: &Path, with_wal: bool) -> Result<SourceStat> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("could not stat", path, e))?;
    let wal = if with_wal {
        let wal = sqlite::wal_path(path);
        match std::fs::metadata(&wal) {
            // SQLite itself changes the `-wal`'s ctime when it opens it (it
            // re-asserts the owner), so only its other fields are compared.
            Ok(m) => Some(Box::new(SourceStat {
                ctime_ns: 0,
                ..stat_of(&m, None)
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("could not stat", &wal, e)),
        }
    } else {
        None
    };
    Ok(stat_of(&meta, wal))
}

fn stat_of(meta: &std::fs::Metadata, wal: Option<Box<SourceStat>>) -> SourceStat {
    SourceStat {
        dev: meta.dev(),
        ino: meta.ino(),
        bytes: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        wal,
    }
}

/// Whether a stat is old enough that a later change must show in it.
fn trustworthy(stat: &SourceStat) -> bool {
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let fresh_ns = FRESH.as_nanos() as i64;
    let old = |s: &SourceStat| s.mtime_ns < now_ns - fresh_ns && s.ctime_ns < now_ns - fresh_ns;
    // An empty `-wal` (such as the one opening a WAL database creates) cannot
    // change unseen: a write grows it, and only a checkpoint, which rewrites
    // the (old, trusted) main file, can empty it again.
    old(stat) && stat.wal.as_deref().is_none_or(|w| w.bytes == 0 || old(w))
}

/// Whether the source still has the identity recorded before it was read.
fn still(stat: &SourceStat, path: &Path, kind: UnitKind) -> bool {
    source_stat(path, kind == UnitKind::Sqlite).is_ok_and(|now| &now == stat)
}
