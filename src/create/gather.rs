//! A create's capture of its stores' files on every core, and what it
//! gives, gathered in place as each file is done.
//!
//! A store of many small files has a result per file: where its record
//! went in the spool (see [`crate::manifest::spool`]), what it adds to its
//! store's tally, its warnings. Only the first is needed per file; it is
//! written straight into the list the manifest is written from (8 bytes a
//! file), and the rest is added up under a lock as each file is done,
//! instead of every result being held until all are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::CreateOptions;
use crate::capture::{self as unit, CaptureContext, UnitDone};
use crate::config::{StoreKind, StoreSpec};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::spool::{Spooled, SpooledList};
use crate::manifest::{self, FileRecord, StoreRecord};
use crate::parallel;
use crate::store::{CapturePlan, Unit};

/// What capturing the units gave: each store's captured files (spooled,
/// or held for a store captured as a set), their tally and warnings (by
/// store index, in plan order), and the first error of each store that
/// failed.
pub(super) struct Captured {
    /// The records of each store captured as a set, unsorted. A store that
    /// failed may hold some: they are dropped with it.
    pub files: Vec<Vec<FileRecord>>,
    /// Where the records of each store captured file by file are in the
    /// spool, in path order (the units' order).
    pub spooled: Vec<Option<SpooledList>>,
    /// What each store's captured files add up to.
    pub tallies: Vec<StoreTally>,
    /// The warnings of each store's captured files, in unit order.
    pub warnings: Vec<Vec<String>>,
    /// The first error of each store that failed, by name.
    pub failed: BTreeMap<String, Error>,
    /// Safety snapshots: the stores kept raw, by name.
    pub damaged: BTreeMap<String, StoreRecord>,
    /// The facts of each store captured as a set, by name.
    pub sets: BTreeMap<String, manifest::ChromaFacts>,
    /// The bundle paths of the files this capture copied (not linked), when
    /// they are few enough to be fsynced one by one (`None`: many).
    pub copied: Option<Vec<PathBuf>>,
}

impl Captured {
    /// Takes `done` (a captured file of store `store`, captured as a set) in.
    pub fn add(&mut self, store: usize, kind: StoreKind, done: UnitDone) {
        self.warnings[store].extend(done.warnings);
        self.tallies[store].add(kind, &done.file);
        self.files[store].push(done.file);
    }
}

/// What the captured files of one store of a new bundle add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTally {
    /// How many files it lists.
    pub files: usize,
    /// How many of them are hard links to the previous bundle's copies.
    pub reused: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Their size in the store kind's own measure ([`crate::shrink::file_measure`]).
    pub(super) measure: u64,
}

impl StoreTally {
    /// Counts a file of `bytes` bytes, `measure` in its store's measure.
    fn count(&mut self, bytes: u64, measure: u64, reused: bool) {
        self.files += 1;
        self.reused += usize::from(reused);
        self.bytes = self.bytes.saturating_add(bytes);
        self.measure = self.measure.saturating_add(measure);
    }

    /// Counts `file`, a file of a store of `kind`.
    fn add(&mut self, kind: StoreKind, file: &FileRecord) {
        let measure = crate::shrink::file_measure(kind, file);
        self.count(file.bytes, measure, file.reused);
    }

    /// The tally of the records `files` of a store of `kind`.
    pub(super) fn of(kind: StoreKind, files: &[FileRecord]) -> StoreTally {
        let mut tally = StoreTally::default();
        files.iter().for_each(|f| tally.add(kind, f));
        tally
    }
}

/// A unit's place: its store's index and its own in that store's plan.
type UnitAt = (u32, u32);

/// Captures every unit, biggest first, `opts.jobs` at once, each record
/// spooled as it is made. A file that cannot be captured fails its own
/// store; a failure to write the bundle itself (a full disk, or the
/// spool) stops the whole create. The units of the stores captured file
/// by file are let go once done with.
pub(super) fn capture_all(
    opts: &CreateOptions,
    stores: &[StoreSpec],
    plans: &mut [CapturePlan],
    ctx: &CaptureContext<'_>,
) -> Result<Captured> {
    let gathering = Gathering::new(stores.len(), plans);
    let copied = {
        let plans: &[CapturePlan] = plans;
        let unit_at =
            |(store, unit): UnitAt| -> &Unit { &plans[store as usize].units[unit as usize] };
        let order = capture_order(plans);
        let total: u64 = order.iter().map(|&at| unit_at(at).bytes).sum();
        ctx.progress
            .start(&format!("capturing {} stores", stores.len()), Some(total));
        // (The text path's folder: a lossy one only groups its files less well.)
        let run = |i: usize| {
            let folder = |at: &UnitAt| -> Option<&Path> { Path::new(&*unit_at(*at).path).parent() };
            parallel::folder_run(&order, i, folder, |at| unit_at(*at).bytes)
        };
        let kept = unit::KeptFolders::default;
        let done =
            parallel::try_for_each_claiming_with(&order, opts.jobs, run, kept, |kept, &at| {
                let u = unit_at(at);
                match unit::capture_unit_in(u, ctx, kept) {
                    Ok(taken) => gathering.taken(at, stores[at.0 as usize].kind, taken, ctx),
                    Err(e) if writes_the_bundle(&e, ctx.bundle_root) => Err(Error::Snapshot {
                        store: u.store().to_string(),
                        source: Box::new(e),
                    }),
                    Err(e) => {
                        gathering.failed(at, e);
                        Ok(())
                    }
                }
            });
        ctx.progress.finish();
        done?;
        gathering.copied().map(|copied| {
            (copied.into_iter())
                .map(|at| unit_at(at).rel().into_owned())
                .collect()
        })
    };
    // The units are done with: their memory goes before the manifest is
    // written.
    for plan in plans.iter_mut().filter(|p| !p.as_set) {
        plan.units = Vec::new();
    }
    let mut captured = gathering.finish(stores);
    captured.copied = copied;
    Ok(captured)
}

/// The units of the stores captured file by file, in the order they are
/// taken: big files first, biggest first; then the small ones in walk
/// order (a stable sort), so that each folder's are together.
fn capture_order(plans: &[CapturePlan]) -> Vec<UnitAt> {
    let mut order: Vec<(UnitAt, &Unit)> = (plans.iter().enumerate())
        .filter(|(_, p)| !p.as_set)
        .flat_map(|(i, p)| {
            (p.units.iter().enumerate()).map(move |(j, u)| ((i as u32, j as u32), u))
        })
        .collect();
    order.sort_by_key(|(_, u)| match u.bytes < parallel::SMALL_FILE {
        true => (1, std::cmp::Reverse(0)),
        false => (0, std::cmp::Reverse(u.bytes)),
    });
    // Without the units: 8 bytes a file, not 16, while they are captured.
    order.into_iter().map(|(at, _)| at).collect()
}

/// The results of a capture on several threads, written as each unit is
/// done: its record's place in its store's list, the rest added up.
struct Gathering {
    /// Each store's units' spooled places ([`Spooled::to_bits`]), in plan
    /// order: the list the manifest is written from, filled in place.
    places: Vec<Vec<AtomicU64>>,
    /// What is added up or rare.
    rest: Mutex<Gathered>,
}

/// What a capture's units add up to, and what few of them have.
struct Gathered {
    tallies: Vec<StoreTally>,
    /// Warnings with their unit, in the order they came.
    warnings: Vec<(UnitAt, Vec<String>)>,
    /// Each store's failure of its lowest-numbered unit that failed.
    failed: Vec<Option<(u32, Error)>>,
    /// The units copied (not linked), while they are few enough to be
    /// fsynced one by one (`None`: more).
    copied: Option<Vec<UnitAt>>,
}

impl Gathering {
    /// Room for the results of `plans`' units (of `stores` stores).
    fn new(stores: usize, plans: &[CapturePlan]) -> Gathering {
        let places = (plans.iter())
            .map(|p| match p.as_set {
                true => Vec::new(),
                false => (0..p.units.len()).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        Gathering {
            places,
            rest: Mutex::new(Gathered {
                tallies: vec![StoreTally::default(); stores],
                warnings: Vec::new(),
                failed: std::iter::repeat_with(|| None).take(stores).collect(),
                copied: Some(Vec::new()),
            }),
        }
    }

    /// Takes in the unit at `at` (of a store of `kind`), captured: a copy's
    /// record is spooled (an error then is the bundle's: it stops all).
    fn taken(
        &self,
        at: UnitAt,
        kind: StoreKind,
        taken: unit::Capture<'_>,
        ctx: &CaptureContext<'_>,
    ) -> Result<()> {
        let (place, bytes, measure, reused, warnings) = match taken {
            unit::Capture::Copied(d) => {
                let place = ctx.spool.put(&d.file)?;
                let measure = crate::shrink::file_measure(kind, &d.file);
                (place, d.file.bytes, measure, false, d.warnings)
            }
            unit::Capture::Reused(entry, warnings) => {
                let measure = ctx.previous.map_or(0, |p| p.measure(entry, kind));
                (entry.spooled(), entry.bytes, measure, true, warnings)
            }
        };
        self.places[at.0 as usize][at.1 as usize].store(place.to_bits(), Ordering::Relaxed);
        let mut rest = self
            .rest
            .lock()
            .expect("no capture thread panics holding it");
        rest.tallies[at.0 as usize].count(bytes, measure, reused);
        if !warnings.is_empty() {
            rest.warnings.push((at, warnings));
        }
        if !reused {
            if let Some(copied) = &mut rest.copied {
                copied.push(at);
                if copied.len() > fsutil::SYNCFS_ABOVE_FILES {
                    rest.copied = None;
                }
            }
        }
        Ok(())
    }

    /// Notes that the unit at `at` could not be captured, for `e`: its
    /// store fails with its first unit's error.
    fn failed(&self, at: UnitAt, e: Error) {
        let mut rest = self
            .rest
            .lock()
            .expect("no capture thread panics holding it");
        let first = &mut rest.failed[at.0 as usize];
        if first.as_ref().is_none_or(|(unit, _)| at.1 < *unit) {
            *first = Some((at.1, e));
        }
    }

    /// The units copied, in plan order, if few enough to fsync one by one.
    fn copied(&self) -> Option<Vec<UnitAt>> {
        let rest = self
            .rest
            .lock()
            .expect("no capture thread panics holding it");
        let mut copied = rest.copied.clone()?;
        copied.sort_unstable();
        Some(copied)
    }

    /// What the capture gave, by store (of `stores`).
    fn finish(self, stores: &[StoreSpec]) -> Captured {
        let rest = self.rest.into_inner().expect("capture threads finished");
        let mut warnings = vec![Vec::new(); stores.len()];
        let mut unit_warnings = rest.warnings;
        unit_warnings.sort_unstable_by_key(|(at, _)| *at);
        for ((store, _), w) in unit_warnings {
            warnings[store as usize].extend(w);
        }
        let mut failed = BTreeMap::new();
        let spooled = (self.places.into_iter().zip(rest.failed).zip(stores))
            .map(|((places, failure), spec)| {
                if let Some((_, e)) = failure {
                    failed.insert(spec.name.clone(), e);
                    return None;
                }
                // Collected in place: the places' memory holds the list.
                (!places.is_empty()).then(|| {
                    (places.into_iter())
                        .map(|p| Spooled::from_bits(p.into_inner()))
                        .collect()
                })
            })
            .collect();
        Captured {
            files: vec![Vec::new(); stores.len()],
            spooled,
            tallies: rest.tallies,
            warnings,
            failed,
            damaged: BTreeMap::new(),
            sets: BTreeMap::new(),
            copied: None,
        }
    }
}

/// Whether a capture error is about writing the bundle (under `staging`)
/// rather than reading a source: such errors stop the whole create.
pub(super) fn writes_the_bundle(e: &Error, staging: &Path) -> bool {
    match e {
        Error::NoSpace { .. } => true,
        Error::Io { path, .. } => path.starts_with(staging),
        // A damaged source can make SQLite fail on the copy too; only the
        // copy's own disk trouble stops everything.
        Error::Sqlite {
            path,
            source: rusqlite::Error::SqliteFailure(f, _),
        } => {
            use rusqlite::ErrorCode as C;
            path.starts_with(staging)
                && matches!(
                    f.code,
                    C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::CannotOpen
                )
        }
        Error::Snapshot { source, .. } | Error::Context { source, .. } => {
            writes_the_bundle(source, staging)
        }
        _ => false,
    }
}
