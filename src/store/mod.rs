//! Store kinds: how each kind of store is captured into a bundle.
//!
//! Each kind is one [`StoreHandler`]: it walks its source into a
//! [`CapturePlan`] of [`Unit`]s (one per file), which `create` runs in
//! parallel with [`unit::capture_unit`]. The per-file primitives (`sqlite`,
//! `plain`, `jsonl`) are shared: a `dir` store captures the SQLite files inside
//! it as a `sqlite` store does.

pub mod chroma;
pub mod dir;
pub mod exclude;
pub mod jsonl;
pub mod lancedb;
pub mod raw;
pub mod sqlite;
pub mod steps;
pub mod walk;

use std::path::{Path, PathBuf};

use crate::config::{StoreKind, StoreSpec};
use crate::error::{Error, Result};
use crate::fsutil::EncodedPath;
use crate::manifest::{FileRecord, SourceStat, StoreRecord, StoreStatus, SymlinkRecord};
use crate::plan::{Step, Target};

/// How one source file is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Through SQLite's backup API, with counts and checks.
    Sqlite,
    /// Streamed with line counting and parsing.
    Jsonl,
    /// Copied and hashed in one pass.
    Plain,
}

/// One source file to capture: the unit of parallel work.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its manifest path, `<store>/<rel>` (as text; see [`Unit::path_hex`]):
    /// it names the store ([`Unit::store`]) and, as a path, where it goes
    /// in the bundle ([`Unit::rel`]), so neither is held again per file.
    pub path: Box<str>,
    /// Its manifest path's exact bytes when they are not UTF-8.
    pub path_hex: Option<Box<str>>,
    /// Where the source file is ([`Unit::src`]).
    pub source: Source,
    /// How it is captured.
    pub kind: UnitKind,
    /// Bytes it is expected to take in the bundle (an estimate for space and scheduling).
    pub bytes: u64,
    /// The source's stat when the walk that found it took one: enough for
    /// the free-space estimate and for reusing an unchanged plain file's
    /// previous copy (anything else is stat'ed again right before its copy).
    /// Its size is [`Unit::bytes`]; see [`Unit::walked_stat`].
    pub walked: Option<WalkedStat>,
    /// Found by a folder walk that has not yet looked inside it: it is an
    /// SQLite database (captured through the backup API) if its header says
    /// so. [`plan_capture_knowing`] settles it before anyone sees the plan.
    pub may_be_sqlite: bool,
    /// Where its record is among the previous bundle's a create reuses
    /// from, once looked up (see `crate::reuse::Previous::match_units`).
    pub previous: PreviousRecord,
}

/// The identity a folder walk's `statx` found a file to have, but for its
/// size (the unit's [`Unit::bytes`]) and a `-wal` (a walk finds none): a
/// [`SourceStat`] in 32 bytes, and none in 32 either (no file has inode
/// 0), as there is one per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkedStat {
    dev: u64,
    ino: std::num::NonZeroU64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl WalkedStat {
    /// The walked identity of `stat` (whose size goes to the unit); `None`
    /// for an inode number of 0, which no file has (the file is then
    /// stat'ed again before its copy, as one the walk could not stat).
    pub fn of(stat: &SourceStat) -> Option<WalkedStat> {
        Some(WalkedStat {
            dev: stat.dev,
            ino: std::num::NonZeroU64::new(stat.ino)?,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
        })
    }
}

/// Where a [`Unit`]'s source file is (in 16 bytes, as there is one per
/// file: each path behind a thin pointer).
#[derive(Debug, Clone)]
pub enum Source {
    /// At this path.
    #[allow(clippy::box_collection)]
    At(Box<PathBuf>),
    /// At the unit's path within its store (its manifest path without the
    /// store's name) beneath this folder, which every unit a folder walk
    /// found shares: a walk of many files holds no path per file twice.
    Beneath(std::sync::Arc<PathBuf>),
}

/// Where a [`Unit`]'s record is in the previous bundle a create reuses
/// from: found once for all the units of a store, in one pass over both
/// in path order, rather than looked up by path for every question asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PreviousRecord {
    /// Not looked for yet.
    #[default]
    NotLooked,
    /// The previous bundle has no record of its path.
    Absent,
    /// The previous bundle's record of its path, by its place among the
    /// entries of the previous bundle (`crate::reuse::Previous`).
    At(u32),
    /// The same, and the record's source stat is the one the walk took
    /// ([`Unit::walked`]): found once, not digested again for every
    /// question asked with that stat.
    Walked(u32),
}

/// What capturing a store will do, found by walking it without copying.
#[derive(Debug, Default)]
pub struct CapturePlan {
    /// What was found (`None`: ok).
    pub status: Option<StoreStatus>,
    /// For single-file stores, the file's name.
    pub single_file: Option<String>,
    /// Files to capture.
    pub units: Vec<Unit>,
    /// Folders to create in the bundle (relative to its root).
    pub folders: Vec<PathBuf>,
    /// Symlinks recorded (dir stores).
    pub symlinks: Vec<SymlinkRecord>,
    /// Things the user should know (skipped files, ...).
    pub warnings: Vec<String>,
    /// Why the store cannot be captured (its status is then `failed`).
    pub failure: Option<Box<Error>>,
    /// Whether its files only make sense together, so they are captured and
    /// re-checked as one set ([`crate::settle`]) instead of one by one.
    pub as_set: bool,
    /// For a LanceDB store: the versions the plan captures.
    pub lancedb: Option<crate::manifest::LanceFacts>,
}

impl CapturePlan {
    /// The plan of a store that cannot be captured.
    pub fn failed(reason: Error) -> CapturePlan {
        CapturePlan {
            status: Some(StoreStatus::Failed),
            failure: Some(Box::new(reason)),
            ..CapturePlan::default()
        }
    }
}

/// One kind of store.
pub trait StoreHandler: Sync {
    /// Walks an existing source into a [`CapturePlan`], reading no file contents
    /// beyond SQLite headers.
    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan>;

    /// Plans restoring a bundle store onto `target`, reading only.
    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>>;

    /// [`StoreHandler::plan_restore`] of a record whose file records are
    /// not in it but given one at a time by `files`. By default they are
    /// gathered into a copy of the record first; a folder store plans each
    /// as it comes, so that its records and its steps are not both held.
    fn plan_restore_streamed(
        &self,
        record: &StoreRecord,
        files: &mut dyn RecordStream,
        target: &Target<'_>,
    ) -> Result<Vec<Step>> {
        let mut whole = record.clone();
        whole.files.reserve_exact(files.count());
        files.each(&mut |f| {
            whole.files.push(f.clone());
            Ok(())
        })?;
        self.plan_restore(&whole, target)
    }

    /// The SQLite databases a live store at `target` holds (restore refuses
    /// while another process has one open). None by default.
    fn live_databases(&self, _target: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// A store's file records, given one at a time (by a restore that reads
/// them again from the manifest each time it plans, instead of holding them).
pub trait RecordStream {
    /// How many records there are.
    fn count(&self) -> usize;

    /// Hands every record, in the manifest's order, to `take`; the first
    /// error (of the stream or of `take`) is the outcome.
    fn each(&mut self, take: &mut dyn FnMut(&FileRecord) -> Result<()>) -> Result<()>;
}

/// Records held in a list, as a [`RecordStream`].
pub struct HeldRecords<'a>(pub &'a [FileRecord]);

impl RecordStream for HeldRecords<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn each(&mut self, take: &mut dyn FnMut(&FileRecord) -> Result<()>) -> Result<()> {
        self.0.iter().try_for_each(take)
    }
}

/// The live path of a bundle path `<store>/<rel>` (a record's decoded path,
/// or why it cannot be decoded) under a store's target folder.
pub fn live_path(
    record: &StoreRecord,
    root: &Path,
    bundle_rel: std::result::Result<PathBuf, String>,
) -> Result<PathBuf> {
    let bundle_rel = decoded(bundle_rel)?;
    Ok(crate::fsutil::joined(
        root,
        within_store(record, &bundle_rel)?,
    ))
}

/// A record's decoded bundle path, or the refusal of a path that is not safe.
pub fn decoded(bundle_rel: std::result::Result<PathBuf, String>) -> Result<PathBuf> {
    bundle_rel.map_err(|reason| Error::Refused(format!("unsafe path in the bundle: {reason}")))
}

/// A bundle path's part within its store (never empty), refused when the
/// path is not beneath the store's folder in the bundle.
pub fn within_store<'p>(record: &StoreRecord, bundle_rel: &'p Path) -> Result<&'p Path> {
    match bundle_rel.strip_prefix(&record.name) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel),
        _ => Err(Error::Refused(format!(
            "bundle path {} is outside store \"{}\"",
            bundle_rel.display(),
            record.name
        ))),
    }
}

/// Replace-mode removals: live files under `root` accepted by `consider` that
/// the bundle does not have (`wanted` says which it has; SQLite sidecars of
/// bundle databases are left). Each live file is looked up in the sets.
pub fn plan_removals(
    root: &Path,
    wanted: impl Fn(&Path) -> bool,
    databases: &std::collections::HashSet<PathBuf>,
    consider: impl Fn(&walkdir::DirEntry) -> bool,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if !root.is_dir() {
        return Ok(steps);
    }
    for entry in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| Error::io("could not walk", root, e.into()))?;
        if entry.file_type().is_dir() || !consider(&entry) || wanted(entry.path()) {
            continue;
        }
        let is_sidecar = crate::format::sqlite::SIDECARS.iter().any(|suffix| {
            let name = entry.path().as_os_str().to_string_lossy();
            name.strip_suffix(suffix)
                .is_some_and(|base| databases.contains(Path::new(base)))
        });
        if !is_sidecar {
            steps.push(Step::Remove {
                target: entry.into_path(),
            });
        }
    }
    Ok(steps)
}

/// Re-reads a restored store at `path` as its client would and compares it
/// with what the bundle records (chroma and lancedb stores; `Ok` for the
/// others, whose files restore already checked one by one). `left_out`:
/// the live paths a merge left as they were (a LanceDB table present on
/// both sides), which are not compared.
pub fn recheck_restored(
    record: &StoreRecord,
    path: &Path,
    left_out: &[PathBuf],
) -> std::result::Result<(), String> {
    if let Some(recorded) = &record.chroma {
        crate::format::chroma::recheck(recorded, path)?;
    }
    if let Some(recorded) = &record.lancedb {
        let mut restored = recorded.clone();
        restored
            .tables
            .retain(|t| !left_out.contains(&path.join(format!("{}.lance", t.name))));
        let exact = left_out.is_empty();
        crate::format::lance::recheck(&restored, path, exact)
            .map_err(|e| format!("the restored LanceDB database differs from the bundle: {e}"))?;
    }
    Ok(())
}

/// The handler for a kind.
pub fn handler(kind: StoreKind) -> &'static dyn StoreHandler {
    match kind {
        StoreKind::Sqlite => &sqlite::SqliteStore,
        StoreKind::Jsonl => &jsonl::JsonlStore,
        StoreKind::Dir => &dir::DirStore,
        StoreKind::Chroma => &chroma::ChromaStore,
        StoreKind::Lancedb => &lancedb::LancedbStore,
    }
}

/// Plans capturing a store; an absent source is recorded as such, not an
/// error, and one with nothing in it as empty, with a warning.
pub fn plan_capture(spec: &StoreSpec) -> Result<CapturePlan> {
    plan_capture_knowing(spec, &|_| false)
}

/// [`plan_capture`], where `known_plain` may say that a file a folder walk
/// found is known not to be a database (unchanged since a bundle recorded
/// it as a plain file): its header is then not read. Every other such file
/// is opened and its header decides.
pub fn plan_capture_knowing(
    spec: &StoreSpec,
    known_plain: &(dyn Fn(&Unit) -> bool + Sync),
) -> Result<CapturePlan> {
    settle_databases(plan_walked(spec)?, known_plain)
}

/// The second half of [`plan_capture_knowing`]: which of the files a folder
/// walk found (`plan`, from [`plan_walked`]) are databases. Apart, so that
/// a create can walk its stores while it reads its history, and settle
/// this once it knows which bundle it reuses from.
pub fn settle_databases(
    mut plan: CapturePlan,
    known_plain: &(dyn Fn(&Unit) -> bool + Sync),
) -> Result<CapturePlan> {
    // The headers are read on every core, in runs of neighbouring files,
    // each opened by name beneath its kept-open folder.
    let databases = crate::parallel::map_claiming_with(
        &plan.units,
        crate::parallel::default_jobs(),
        |_| HEADER_RUN,
        crate::fsutil::LastFolder::default,
        |folder, unit| {
            Ok(unit.may_be_sqlite
                && !known_plain(unit)
                && crate::format::sqlite::is_sqlite_file_in(folder, &unit.src())?)
        },
    )?;
    for (unit, database) in plan.units.iter_mut().zip(databases) {
        unit.may_be_sqlite = false;
        if database {
            let encoded = crate::fsutil::EncodedPath {
                text: unit.path.to_string(),
                hex: unit.path_hex.as_deref().map(str::to_string),
            };
            // Its place among the previous bundle's records stays its own.
            let previous = unit.previous;
            *unit = sqlite::unit(&unit.src(), encoded);
            unit.previous = previous;
        }
    }
    // A list grown while walking holds up to twice its units' room.
    plan.units.shrink_to_fit();
    Ok(plan)
}

/// How many files' headers one thread of [`settle_databases`] reads at a time.
const HEADER_RUN: usize = 64;

/// The plan as the store's handler makes it, before its databases are
/// settled ([`settle_databases`]); an absent source is recorded as such,
/// and one with nothing in it as empty.
pub fn plan_walked(spec: &StoreSpec) -> Result<CapturePlan> {
    match std::fs::symlink_metadata(&spec.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CapturePlan {
                status: Some(StoreStatus::Absent),
                warnings: vec![format!(
                    "store \"{}\": {} does not exist; recorded as absent",
                    spec.name,
                    spec.path.display()
                )],
                ..CapturePlan::default()
            })
        }
        Err(e) => return Err(Error::io("could not stat", &spec.path, e)),
        Ok(_) => {}
    }
    let mut plan = handler(spec.kind).plan_capture(spec)?;
    plan.folders.insert(0, PathBuf::from(&spec.name));
    if plan.units.is_empty() && plan.symlinks.is_empty() {
        plan.status = Some(StoreStatus::Empty);
        plan.warnings.push(format!(
            "store \"{}\": {} exists but holds nothing to back up; is this the right path?",
            spec.name,
            spec.path.display()
        ));
    }
    Ok(plan)
}

/// The bundle path `<store>/<rel>` of a file at `rel` inside a store: its
/// manifest form and its path relative to the bundle root.
pub fn manifest_path(store: &str, rel: &Path) -> Result<(EncodedPath, PathBuf)> {
    let bundle_rel = Path::new(store).join(rel);
    let encoded = crate::fsutil::encode_path(&bundle_rel).map_err(|reason| Error::CheckFailed {
        store: store.to_string(),
        reason,
    })?;
    Ok((encoded, bundle_rel))
}

impl Unit {
    /// A unit for the source `src` at the manifest path `encoded` (which
    /// starts with its store's name).
    pub fn new(encoded: EncodedPath, src: &Path, kind: UnitKind, bytes: u64) -> Unit {
        Unit::from(
            encoded,
            Source::At(Box::new(src.to_path_buf())),
            kind,
            bytes,
        )
    }

    /// A unit at the manifest path `encoded` whose source is `source`.
    pub fn from(encoded: EncodedPath, source: Source, kind: UnitKind, bytes: u64) -> Unit {
        Unit {
            path: encoded.text.into_boxed_str(),
            path_hex: encoded.hex.map(String::into_boxed_str),
            source,
            kind,
            walked: None,
            may_be_sqlite: false,
            bytes,
            previous: PreviousRecord::NotLooked,
        }
    }

    /// The source's identity the walk found ([`Unit::walked`]), whole.
    pub fn walked_stat(&self) -> Option<SourceStat> {
        self.walked.map(|w| SourceStat {
            dev: w.dev,
            ino: w.ino.get(),
            bytes: self.bytes,
            mtime_ns: w.mtime_ns,
            ctime_ns: w.ctime_ns,
            wal: None,
        })
    }

    /// Its source file.
    pub fn src(&self) -> std::borrow::Cow<'_, Path> {
        match &self.source {
            Source::At(path) => std::borrow::Cow::Borrowed(path),
            Source::Beneath(root) => {
                let rel = self.rel();
                let in_store = rel.strip_prefix(self.store()).unwrap_or(&rel);
                std::borrow::Cow::Owned(root.join(in_store))
            }
        }
    }

    /// The store it belongs to: its manifest path's first name (a store's
    /// name is plain ASCII, so it reads the same in a lossy text path).
    pub fn store(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }

    /// Its path relative to the bundle root: the manifest path, or, when
    /// that is not UTF-8, its exact bytes.
    pub fn rel(&self) -> std::borrow::Cow<'_, Path> {
        match &self.path_hex {
            None => std::borrow::Cow::Borrowed(Path::new(&*self.path)),
            // Made by `encode_path` from the walked name: it decodes.
            Some(hex) => std::borrow::Cow::Owned(
                crate::fsutil::decode_path(&self.path, Some(hex))
                    .unwrap_or_else(|_| PathBuf::from(&*self.path)),
            ),
        }
    }
}

/// The file name of a single-file store's source.
fn file_name_of(spec: &StoreSpec) -> Result<String> {
    spec.path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Usage(format!(
                "store \"{}\": {} has no usable file name",
                spec.name,
                spec.path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walked_stat_is_the_source_stat_it_was_made_from() {
        let stat = SourceStat {
            dev: 1,
            ino: 2,
            bytes: 3,
            mtime_ns: -4,
            ctime_ns: 5,
            wal: None,
        };
        let mut unit = Unit::new(
            crate::fsutil::encode_path(Path::new("s/a")).unwrap(),
            Path::new("/a"),
            UnitKind::Plain,
            3,
        );
        assert_eq!(unit.walked_stat(), None);
        unit.walked = WalkedStat::of(&stat);
        assert_eq!(unit.walked_stat(), Some(stat.clone()));
        // No file has inode 0: such a stat is not kept (taken again later).
        assert_eq!(WalkedStat::of(&SourceStat { ino: 0, ..stat }), None);
    }

    #[test]
    fn a_unit_stays_small_as_there_is_one_per_file() {
        // A walk of 200,000 files holds 200,000 units until they are captured.
        assert_eq!(std::mem::size_of::<Source>(), 16);
        assert_eq!(std::mem::size_of::<Option<WalkedStat>>(), 32);
        assert!(
            std::mem::size_of::<Unit>() <= 104,
            "a unit is {} bytes",
            std::mem::size_of::<Unit>()
        );
    }
}
