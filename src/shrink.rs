//! Suspicious bundles: a store that had data and is now absent, empty, or
//! much smaller than when it was last healthy.
//!
//! A nightly create of a wiped store would otherwise be a "good" bundle, and
//! a week of them would rotate every bundle that still had the data out of
//! retention. So create compares each store with the newest bundle in which
//! it was last healthy and records why the new bundle looks wrong; prune
//! never deletes a store's last healthy bundle.
//!
//! A store is *healthy* in a bundle when it was captured (`ok`, or found
//! `absent` or `empty`) in a bundle that is not suspicious (a shrink accepted
//! with `--accept-shrink` is the new baseline) and is not a pre-restore
//! safety snapshot (those capture whatever is live, unchecked). Size is the kind's own measure: rows for
//! sqlite (a `VACUUM` shrinks bytes, not rows), lines for jsonl, bytes for dir, embeddings for chroma, rows for lancedb.

use crate::bundle::BundleId;
use crate::config::StoreKind;
use crate::manifest::{FileRecord, Manifest, StoreRecord, StoreStatus};

/// The size of a store in its kind's own measure, and that measure's name.
pub fn size(record: &StoreRecord) -> (u64, &'static str) {
    let files = record
        .files
        .iter()
        .fold(0u64, |t, f| t.saturating_add(file_measure(record.kind, f)));
    size_with(record, files)
}

/// What a store's files add up to in every kind's measure, counted as its
/// records are read (so that a manifest's records need not be held to
/// size its stores).
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSums {
    bytes: u64,
    rows: u64,
    lines: u64,
}

impl FileSums {
    /// Counts `file`.
    pub fn add(&mut self, file: &FileRecord) {
        self.bytes = self.bytes.saturating_add(file.bytes);
        self.rows = self
            .rows
            .saturating_add(file_measure(StoreKind::Sqlite, file));
        self.lines = self
            .lines
            .saturating_add(file_measure(StoreKind::Jsonl, file));
    }

    /// The sum in the measure of a store of `kind` ([`file_measure`]).
    pub fn measure(&self, kind: StoreKind) -> u64 {
        match kind {
            StoreKind::Sqlite => self.rows,
            StoreKind::Jsonl => self.lines,
            StoreKind::Dir => self.bytes,
            StoreKind::Chroma | StoreKind::Lancedb => 0,
        }
    }
}

/// What one file adds to the size of a store of `kind` (nothing where the
/// measure is the store's own facts: chroma's embeddings, LanceDB's rows).
pub fn file_measure(kind: StoreKind, file: &FileRecord) -> u64 {
    match kind {
        StoreKind::Sqlite => file
            .sqlite
            .as_ref()
            .map_or(0, |facts| facts.tables.values().sum()),
        StoreKind::Jsonl => file.jsonl.as_ref().map_or(0, |facts| facts.lines),
        StoreKind::Dir => file.bytes,
        StoreKind::Chroma | StoreKind::Lancedb => 0,
    }
}

/// [`size`], where the store's files add up to `files` ([`file_measure`]
/// summed over them: a create that does not hold them counts as it goes).
pub fn size_with(record: &StoreRecord, files: u64) -> (u64, &'static str) {
    match record.kind {
        StoreKind::Sqlite => (files, "rows"),
        StoreKind::Jsonl => (files, "lines"),
        StoreKind::Dir => (files, "bytes"),
        StoreKind::Chroma => (
            record
                .chroma
                .iter()
                .flat_map(|facts| &facts.collections)
                .map(|c| c.embeddings)
                .sum(),
            "embeddings",
        ),
        StoreKind::Lancedb => (
            record
                .lancedb
                .iter()
                .flat_map(|facts| &facts.tables)
                .map(|t| t.rows)
                .sum(),
            "rows",
        ),
    }
}

/// Whether store `name` is healthy in `manifest` (see the module docs).
pub fn healthy_in(manifest: &Manifest, name: &str) -> bool {
    !manifest.suspicious
        && manifest.reason.is_none()
        && manifest.stores.iter().any(|s| {
            s.name == name
                && matches!(
                    s.status,
                    StoreStatus::Ok | StoreStatus::Absent | StoreStatus::Empty
                )
        })
}

/// What the shrink alarm needs of a bundle: its id, when it was made and
/// the size of each store healthy in it (not its file records: a create
/// after a restore reads through the safety snapshot to an older bundle,
/// and would otherwise hold two manifests' records).
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The bundle's id.
    pub id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Each store healthy in it: its name, size and the size's measure.
    pub healthy: Vec<(String, u64, &'static str)>,
}

impl Baseline {
    /// The baseline `manifest` gives, whose stores hold some or none of
    /// their records: `counted(store)` is what the others add up to.
    pub fn of_counted(manifest: &Manifest, counted: impl Fn(&StoreRecord) -> FileSums) -> Baseline {
        Baseline {
            id: manifest.id.clone(),
            created_at: manifest.created_at.clone(),
            healthy: manifest
                .stores
                .iter()
                .filter(|s| healthy_in(manifest, &s.name))
                .map(|s| {
                    let (held, _) = size(s);
                    let more = counted(s).measure(s.kind);
                    let (size, unit) = size_with(s, held.saturating_add(more));
                    (s.name.clone(), size, unit)
                })
                .collect(),
        }
    }

    /// Store `name`'s size and measure, when it is healthy here.
    fn healthy(&self, name: &str) -> Option<(u64, &'static str)> {
        self.healthy
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, size, unit)| (size, unit))
    }
}

/// Why the stores of a new bundle look wiped or gutted: each store is
/// compared with the newest of `history` (any order) in which it was healthy;
/// `size_of(i, store)` is the size of `stores[i]` now ([`size`], unless its
/// records are not held), `alarm(name)` the fraction of loss that counts
/// as suspicious.
pub fn reasons(
    stores: &[StoreRecord],
    size_of: impl Fn(usize, &StoreRecord) -> (u64, &'static str),
    history: &[Baseline],
    alarm: impl Fn(&str) -> f64,
) -> Vec<String> {
    let mut newest_first: Vec<&Baseline> = history.iter().collect();
    // Bundles of the same second order by their id's suffix (`-2` < `-10`).
    newest_first
        .sort_by_cached_key(|m| std::cmp::Reverse((m.created_at.clone(), BundleId::parse(&m.id))));
    let mut out = Vec::new();
    for (at, store) in stores.iter().enumerate() {
        let Some((base, (before, unit))) = newest_first
            .iter()
            .find_map(|m| m.healthy(&store.name).map(|size| (m, size)))
        else {
            continue;
        };
        if before == 0 {
            continue;
        }
        let since = format!("since bundle {}", base.id);
        let now = match store.status {
            StoreStatus::Absent => "is now absent",
            StoreStatus::Empty => "is now empty",
            StoreStatus::Ok => "",
            // A failed store already fails the create; damaged ones only
            // occur in safety snapshots.
            StoreStatus::Failed | StoreStatus::Damaged => continue,
        };
        if !now.is_empty() {
            out.push(format!(
                "store \"{}\" had {before} {unit} in bundle {} and {now}",
                store.name, base.id
            ));
            continue;
        }
        let (after, _) = size_of(at, store);
        let lost = before.saturating_sub(after);
        let fraction = alarm(&store.name);
        if lost > 0 && lost as f64 > fraction * before as f64 {
            out.push(format!(
                "store \"{}\" lost {:.0}% of its {unit} ({before} -> {after}) {since}, more than shrink_alarm = {fraction}",
                store.name,
                lost as f64 * 100.0 / before as f64
            ));
        }
    }
    out
}
