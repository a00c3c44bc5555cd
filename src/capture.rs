//! Capturing one source file (a [`Unit`]): reuse the previous bundle's copy
//! when the source is provably unchanged, else copy it the way its format
//! needs. A safety snapshot's damaged store is captured raw
//! ([`capture_raw`]).
//!
//! Reuse: a copy is reused only when the source's device, inode, size, mtime
//! and ctime (and for a database, its `-wal`'s) equal what the previous
//! bundle recorded, that record was trustworthy when taken, and the copy is
//! still there with its recorded size. Bundle files are read-only, so sharing
//! them is safe; `verify` still reads every byte of every bundle it checks.
//!
//! Units run in parallel, so they only advance progress, never start phases.
//! Each records the source's [`SourceStat`] taken before it was read, unless
//! the source was modified within [`FRESH`] of being read (a change in the same
//! timestamp tick could then go unnoticed next time) or changed while read.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::{jsonl, plain, sqlite};
use crate::manifest::spool::RecordSpool;
use crate::manifest::{FileRecord, SourceStat, StoreRecord};
use crate::progress::Progress;
pub use crate::reuse::{Entry, Previous};
use crate::store::{Unit, UnitKind};

/// What a capture needs besides the store itself.
pub struct CaptureContext<'a> {
    /// Root of the bundle being built (the staging folder).
    pub bundle_root: &'a Path,
    /// Run the full `integrity_check` on SQLite copies instead of `quick_check`.
    pub full_check: bool,
    /// Where progress goes (units only advance it; they run in parallel).
    pub progress: &'a dyn Progress,
    /// The previous good bundle, whose copies of unchanged files are reused.
    pub previous: Option<&'a Previous>,
    /// Where records go: the previous bundle's reusable ones are there
    /// already.
    pub spool: &'a RecordSpool,
}

impl CaptureContext<'_> {
    /// The file-system path of a bundle-relative path in the bundle being built.
    pub fn target(&self, rel: &Path) -> PathBuf {
        self.bundle_root.join(rel)
    }
}

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

/// A captured unit: copied, or its previous copy hard-linked.
#[derive(Debug)]
pub enum Capture<'p> {
    /// Copied: its new record and warnings.
    Copied(UnitDone),
    /// Its previous copy hard-linked: what the previous bundle recorded of
    /// it (its record, as the new bundle lists it, is in the spool), and
    /// the warnings its record gives again.
    Reused(&'p Entry, Vec<String>),
}

/// The folders a capture thread keeps open (see
/// [`crate::fsutil::LastFolder`]): its last source's, and the previous and
/// the new bundle's. The files of one folder are each opened, created or
/// linked by name beneath them, not by whole paths.
#[derive(Debug, Default)]
pub struct KeptFolders {
    source: crate::fsutil::LastFolder,
    from: crate::fsutil::LastFolder,
    to: crate::fsutil::LastFolder,
}

impl KeptFolders {
    /// Hard-links `from` as `to` (neither final name followed if a link).
    fn link(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        let (from_folder, from_name) = self.from.of(from)?;
        let (to_folder, to_name) = self.to.of(to)?;
        rustix::fs::linkat(
            from_folder,
            from_name,
            to_folder,
            to_name,
            rustix::fs::AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Opens `unit`'s source to read (a file a folder walk found to be a
    /// regular file is not followed if it has become a link since) and
    /// creates its copy `dest`, new and its owner's alone until its mode is
    /// set.
    fn open_copy(&mut self, unit: &Unit, src: &Path, dest: &Path) -> Result<(File, File)> {
        use rustix::fs::{Mode, OFlags};
        let mut read = OFlags::RDONLY | OFlags::CLOEXEC;
        if unit.walked.is_some() {
            read |= OFlags::NOFOLLOW;
        }
        let input = self
            .source
            .open(src, read, Mode::empty())
            .map_err(|e| Error::io("could not read", src, e))?;
        let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let output = self
            .to
            .open(dest, create, Mode::from_raw_mode(0o600))
            .map_err(|e| Error::io("could not create", dest, e))?;
        Ok((input, output))
    }
}

/// Captures `unit` into the bundle being built, its record in hand (a
/// reused one read back from the spool: for stores captured apart, with
/// few files).
pub fn capture_unit(unit: &Unit, ctx: &CaptureContext<'_>) -> Result<UnitDone> {
    match capture_unit_in(unit, ctx, &mut KeptFolders::default())? {
        Capture::Copied(done) => Ok(done),
        Capture::Reused(entry, warnings) => Ok(UnitDone {
            file: ctx.spool.read(entry.spooled())?,
            warnings,
        }),
    }
}

/// [`capture_unit`], opening, creating and linking files beneath the
/// folders `kept` keeps open (a capture thread keeps one for all its units).
pub fn capture_unit_in<'c>(
    unit: &Unit,
    ctx: &CaptureContext<'c>,
    kept: &mut KeptFolders,
) -> Result<Capture<'c>> {
    let dest = ctx.target(&unit.rel());
    let src = unit.src();
    // A plain file unchanged since the walk's stat (which carries no `-wal`,
    // so never a database's) is reused on that stat: the bundle then holds
    // the file as it was at the walk, and says so. Else it is copied, and
    // its record takes the identity and owner of the open file it read.
    if unit.kind == UnitKind::Plain {
        if let Some(stat) = unit.walked_stat() {
            if let Some(reused) = try_reuse(unit, &stat, &dest, ctx, kept) {
                return Ok(reused);
            }
            return copy_plain(unit, &src, &dest, ctx, kept).map(Capture::Copied);
        }
    }
    let (before, meta) = SourceStat::read_with_metadata(&src, unit.kind == UnitKind::Sqlite)?;
    if let Some(reused) = try_reuse(unit, &before, &dest, ctx, kept) {
        return Ok(reused);
    }
    let mut warnings = Vec::new();
    let record = |bytes, sha256| new_record(unit, bytes, sha256);
    let (mut file, stat) = match unit.kind {
        UnitKind::Sqlite => {
            // The identity that counts is the one taken right before the snapshot.
            let (bytes, sha, facts, stat) =
                sqlite::capture_file(unit.store(), &src, &dest, ctx.full_check, ctx.progress)?;
            let mut file = record(bytes, sha);
            file.sqlite = Some(Box::new(facts));
            (file, Some(stat))
        }
        UnitKind::Jsonl => {
            let copy = jsonl::copy_jsonl(&src, &dest, ctx.progress)?;
            warnings = jsonl::warnings(unit.store(), &unit.path, &copy.facts, copy.torn_bytes);
            let mut file = record(copy.bytes, copy.sha256);
            file.jsonl = Some(Box::new(copy.facts));
            // A torn tail is left out: the source is not what the bundle holds.
            (file, (copy.torn_bytes == 0).then_some(before))
        }
        UnitKind::Plain => return copy_plain(unit, &src, &dest, ctx, kept).map(Capture::Copied),
    };
    file.source_stat = stat.filter(|s| trustworthy(s) && still(s, &src, unit.kind));
    record_ownership(&mut file, &meta);
    crate::fsutil::set_mode(&dest, bundle_mode(meta.mode()))?;
    Ok(Capture::Copied(UnitDone { file, warnings }))
}

/// Captures one store as its raw bytes into a fresh folder of the bundle.
pub fn capture_raw(
    spec: &StoreSpec,
    reason: &str,
    ctx: &CaptureContext<'_>,
    jobs: usize,
) -> Result<StoreRecord> {
    let folder = ctx.target(Path::new(&spec.name));
    remove_store_folder(&folder)?;
    let plan = crate::store::raw::plan_raw_capture(spec)?;
    for f in &plan.folders {
        crate::fsutil::create_dir_all(&ctx.target(f))?;
    }
    let units: Vec<&Unit> = plan.units.iter().collect();
    let done = crate::parallel::map(&units, jobs, |u| capture_unit(u, ctx))?;
    let mut files: Vec<FileRecord> = done.into_iter().map(|d| d.file).collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(StoreRecord {
        name: spec.name.clone(),
        kind: spec.kind,
        source: spec.path.to_string_lossy().into_owned(),
        status: crate::manifest::StoreStatus::Damaged,
        single_file: plan.single_file,
        files,
        symlinks: plan.symlinks,
        exclude: spec.exclude.clone(),
        error: Some(reason.to_string()),
        chroma: None,
        lancedb: None,
    })
}

/// Removes a store's folder from the bundle being built, if it is there.
pub fn remove_store_folder(folder: &Path) -> Result<()> {
    match std::fs::remove_dir_all(folder) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("could not remove", folder, e))
        }
        _ => Ok(()),
    }
}

/// The mode of a bundle copy: the source's permission bits without write
/// (never more readable than the source), readable by its owner so that
/// verify and restore can read it.
pub fn bundle_mode(source_mode: u32) -> u32 {
    (source_mode & 0o555) | 0o400
}

/// Records the source's permission bits, owner and group in `file`.
fn record_ownership(file: &mut FileRecord, meta: &std::fs::Metadata) {
    set_ownership(file, crate::rooted::Ownership::of(meta));
}

/// Records `owner` as the file's source owner, group and mode.
fn set_ownership(file: &mut FileRecord, owner: crate::rooted::Ownership) {
    file.mode = owner.mode;
    file.uid = owner.uid;
    file.gid = owner.gid;
}

/// A fresh record for a copied unit; kind facts and the source stat are added by the caller.
fn new_record(unit: &Unit, bytes: u64, sha256: crate::hash::Sha256Digest) -> FileRecord {
    FileRecord::new(unit.path.to_string(), unit.path_hex.clone(), bytes, sha256)
}

/// Copies a plain file, again while it changes under us, up to
/// [`ATTEMPTS`] times. The copy gets its read-only mode before it is
/// closed; its record, the identity and owner of the open file that was
/// read (no other look at the path: a file that changed while read is
/// copied again, one replaced after it was opened is not what the record
/// describes, and the next create sees the difference).
fn copy_plain(
    unit: &Unit,
    src: &Path,
    dest: &Path,
    ctx: &CaptureContext<'_>,
    kept: &mut KeptFolders,
) -> Result<UnitDone> {
    for _ in 0..ATTEMPTS {
        let (input, mut output) = kept.open_copy(unit, src, dest)?;
        let (copy, before) = plain::copy_open(&input, src, &mut output, dest, ctx.progress)?;
        drop(input);
        if !copy.changed {
            let owner = crate::rooted::Ownership::of_statx(&before);
            let mode = bundle_mode(owner.mode.unwrap_or(0));
            rustix::fs::fchmod(&output, rustix::fs::Mode::from_raw_mode(mode))
                .map_err(|e| Error::io("could not set the mode of", dest, e.into()))?;
            let mut file = new_record(unit, copy.bytes, copy.sha256);
            let stat = SourceStat::of_statx(&before);
            file.source_stat = trustworthy(&stat).then_some(stat);
            set_ownership(&mut file, owner);
            return Ok(UnitDone {
                file,
                warnings: Vec::new(),
            });
        }
        drop(output);
        std::fs::remove_file(dest).map_err(|e| Error::io("could not remove", dest, e))?;
    }
    Err(Error::CheckFailed {
        store: unit.store().to_string(),
        reason: format!(
            "{} kept changing while being copied ({ATTEMPTS} tries); stop the application writing to {} (or stop it from a pre_create hook) and try again",
            unit.path,
            src.display()
        ),
    })
}

/// Hard-links the previous bundle's copy when the source is unchanged (the
/// record it is listed with is the previous one's, owner included: an
/// unchanged stat, ctime among it, means no `chmod` or `chown` since).
fn try_reuse<'c>(
    unit: &Unit,
    stat: &SourceStat,
    dest: &Path,
    ctx: &CaptureContext<'c>,
    kept: &mut KeptFolders,
) -> Option<Capture<'c>> {
    let previous = ctx.previous?;
    let (from, entry) = previous.candidate(unit, stat, ctx.full_check)?;
    // Another file system, a link limit, or no hard links here: copy instead.
    kept.link(&from, dest).ok()?;
    ctx.progress.advance(entry.bytes);
    let warnings = match previous.jsonl_facts(entry) {
        Some(facts) => jsonl::warnings(unit.store(), &unit.path, facts, 0),
        None => Vec::new(),
    };
    Some(Capture::Reused(entry, warnings))
}

/// The identity of `path` (and of its `-wal` for a database).
pub fn source_stat(path: &Path, with_wal: bool) -> Result<SourceStat> {
    SourceStat::read(path, with_wal)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A dir store of one file, walked, and an empty bundle being built.
    fn walked_file(root: &Path) -> (Unit, PathBuf) {
        let spec = StoreSpec {
            name: "s".into(),
            kind: crate::config::StoreKind::Dir,
            path: root.join("store"),
            key: None,
            shrink_alarm: None,
            exclude: Vec::new(),
            check: None,
        };
        std::fs::create_dir_all(&spec.path).unwrap();
        std::fs::write(spec.path.join("notes.txt"), b"mine").unwrap();
        let mut plan = crate::store::plan_capture(&spec).unwrap();
        let bundle = root.join("bundle");
        std::fs::create_dir_all(bundle.join("s")).unwrap();
        (plan.units.remove(0), bundle)
    }

    /// Capturing into `bundle`, with nothing to reuse.
    fn context<'a>(bundle: &'a Path, spool: &'a RecordSpool) -> CaptureContext<'a> {
        CaptureContext {
            bundle_root: bundle,
            full_check: false,
            progress: &crate::progress::NoProgress,
            previous: None,
            spool,
        }
    }

    #[test]
    fn a_copy_records_the_file_it_read_and_takes_its_read_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (unit, bundle) = walked_file(dir.path());
        let spool = RecordSpool::new_in(&bundle).unwrap();
        let ctx = context(&bundle, &spool);
        let done = capture_unit(&unit, &ctx).unwrap();
        let copy = bundle.join("s/notes.txt");
        assert_eq!(std::fs::read(&copy).unwrap(), b"mine");
        assert_eq!(done.file.bytes, 4);
        assert_eq!(done.file.sha256, crate::hash::Sha256Digest::of(b"mine"));
        let source = std::fs::metadata(unit.src()).unwrap();
        assert_eq!(done.file.mode, Some(source.mode() & 0o7777));
        let copied = std::fs::metadata(&copy).unwrap();
        assert_eq!(copied.mode() & 0o7777, bundle_mode(source.mode()));
        assert_eq!(copied.mode() & 0o222, 0, "a copy has no write bit");
        // Written just now: too fresh for the next create to trust.
        assert_eq!(done.file.source_stat, None);
    }

    #[test]
    fn a_walked_file_that_became_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (unit, bundle) = walked_file(dir.path());
        std::fs::write(dir.path().join("secret"), b"not the store's").unwrap();
        std::fs::remove_file(unit.src()).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), unit.src()).unwrap();
        let spool = RecordSpool::new_in(&bundle).unwrap();
        let ctx = context(&bundle, &spool);
        let err = capture_unit(&unit, &ctx).unwrap_err();
        assert!(err.to_string().contains("could not read"), "{err}");
        assert!(!bundle.join("s/notes.txt").exists());
    }
}
