//! The restore plan's vocabulary: what each store's restore will do
//! ([`Step`]s, closed and serialisable: the `--json` plan contract), the
//! counts, where a store goes ([`Target`]) and how ([`Mode`]).
//!
//! Planning reads the bundle and the live stores and writes nothing; `apply`
//! only executes the steps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{FileRecord, JsonlFacts, SqliteFacts};
use crate::rooted::{Entry, Ownership, RootDir};

/// How a restore treats live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keep live data; add what the bundle has that live lacks.
    Merge,
    /// Make the live stores exactly the bundle's.
    Replace,
}

impl Mode {
    /// `merge` or `replace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Merge => "merge",
            Mode::Replace => "replace",
        }
    }
}

/// One thing apply will do to one live path.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Put the bundle's database in place of (or at) `target`.
    SqliteReplace {
        /// The bundle's copy.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        source: PathBuf,
        /// The live database.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// What the restored database must hold.
        facts: Box<SqliteFacts>,
        /// The copy's expected sha256.
        #[serde(skip)]
        sha256: crate::hash::Sha256Digest,
        /// Whether `target` exists now.
        exists: bool,
        /// Owner and mode for a new file (a replaced one keeps its own).
        #[serde(skip)]
        owner: Ownership,
    },
    /// Insert the bundle's rows that the live database lacks.
    SqliteMerge {
        /// The bundle's copy.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        source: PathBuf,
        /// The live database.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// Rows that will be inserted.
        rows: u64,
        /// Rows already present live.
        present: u64,
        /// The bundle's facts: which tables to merge, which are virtual.
        facts: Box<SqliteFacts>,
        /// Bundle columns the live tables lack (`table.column`).
        missing_columns: Vec<String>,
        /// Virtual tables whose missing rows merge cannot bring back.
        left_out: Vec<String>,
    },
    /// Write the bundle's file at `target` (temp + fsync + rename).
    Write {
        /// The bundle's file.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        source: PathBuf,
        /// Where it goes.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// Its expected sha256.
        sha256: crate::hash::Sha256Digest,
        /// Its JSONL line counts, when a JSONL file.
        jsonl: Option<Box<JsonlFacts>>,
        /// Its SQLite facts, when a database inside a folder store (checked
        /// on the staged copy before anything live changes).
        #[serde(skip)]
        sqlite: Option<Box<SqliteFacts>>,
        /// Owner and mode for a new file (a replaced one keeps its own).
        #[serde(skip)]
        owner: Ownership,
    },
    /// Append the bundle's JSONL records missing from the live file.
    JsonlAppend {
        /// The bundle's file.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        source: PathBuf,
        /// The live file.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// The identifying field, else whole lines.
        key: Option<String>,
        /// Lines that will be appended.
        lines: u64,
        /// Bundle lines already present.
        present: u64,
    },
    /// Create a symlink.
    Symlink {
        /// The link's path.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// What it points to (as text).
        points_to: String,
        /// What it points to, exactly.
        #[serde(skip)]
        points_to_bytes: Vec<u8>,
    },
    /// Remove a live file the bundle lacks (the safety snapshot keeps it).
    Remove {
        /// The file or symlink.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
    },
    /// Remove folders under `root` left empty that the bundle does not need.
    PruneFolders {
        /// The store's folder (kept itself).
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        root: PathBuf,
        /// Folders the bundle's files live in.
        #[serde(serialize_with = "crate::fsutil::lossy::set")]
        keep: BTreeSet<PathBuf>,
    },
    /// Leave an identical live file alone.
    Keep {
        /// The live path.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
    },
    /// A live file differs from the bundle's; merge keeps the live one.
    Conflict {
        /// The live path.
        #[serde(serialize_with = "crate::fsutil::lossy::path")]
        target: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Step {
    /// The bundle file this step reads, if any.
    pub fn source(&self) -> Option<&Path> {
        match self {
            Step::SqliteReplace { source, .. }
            | Step::SqliteMerge { source, .. }
            | Step::Write { source, .. }
            | Step::JsonlAppend { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Bytes of the bundle this step reads (the measure of restore progress).
    pub fn source_bytes(&self) -> u64 {
        self.source()
            .and_then(|s| std::fs::symlink_metadata(s).ok())
            .map_or(0, |m| m.len())
    }
}

/// What a store's restore will change, by category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// SQLite rows inserted by merge.
    pub inserted: u64,
    /// JSONL lines appended by merge.
    pub appended: u64,
    /// Files (and databases, symlinks) written.
    pub written: u64,
    /// Live files removed.
    pub removed: u64,
    /// Files, rows or lines already as the bundle has them.
    pub kept: u64,
    /// Live files or rows that differ and were kept live.
    pub conflicts: u64,
}

impl Counts {
    /// Adds what `step` will do.
    pub fn add(&mut self, step: &Step) {
        match step {
            Step::SqliteReplace { .. } | Step::Write { .. } | Step::Symlink { .. } => {
                self.written += 1
            }
            Step::SqliteMerge { rows, present, .. } => {
                self.inserted += rows;
                self.kept += present;
            }
            Step::JsonlAppend { lines, present, .. } => {
                self.appended += lines;
                self.kept += present;
            }
            Step::Remove { .. } => self.removed += 1,
            Step::Keep { .. } => self.kept += 1,
            Step::Conflict { .. } => self.conflicts += 1,
            Step::PruneFolders { .. } => {}
        }
    }
}

/// Where a bundle store goes.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The live path: the file for single-file stores, else the folder.
    pub path: PathBuf,
    /// The live folder every path is resolved beneath (`None`: it does not
    /// exist yet, so nothing is live).
    pub live: Option<&'a RootDir>,
    /// The bundle folder.
    pub bundle_root: &'a Path,
    /// Merge or replace.
    pub mode: Mode,
    /// JSONL identity field.
    pub key: Option<String>,
}

impl Target<'_> {
    /// The bundle's copy of a file record.
    pub fn source(&self, file: &FileRecord) -> Result<PathBuf> {
        let rel = file.rel().map_err(|reason| {
            Error::Refused(format!("unsafe path {} in the bundle: {reason}", file.path))
        })?;
        Ok(crate::fsutil::joined(self.bundle_root, &rel))
    }

    /// What is live at `target`, never following a link.
    pub fn entry(&self, target: &Path) -> Result<Entry> {
        match self.live {
            Some(root) => root.entry(root.relative(target)?),
            None => Ok(Entry::Missing),
        }
    }

    /// The live folder, for reads of a path [`Target::entry`] found to be a file.
    pub fn live_root(&self) -> Result<&RootDir> {
        self.live
            .ok_or_else(|| Error::Refused("the store folder does not exist".into()))
    }
}

/// The live paths a restore plan writes or keeps, as keyed digests (16
/// bytes a path, where a set of the paths held each twice: a plan of many
/// files held tens of MB of them). Equal paths, as `Path` compares them,
/// have equal digests; the keys are drawn for each set.
#[derive(Debug)]
pub struct LivePaths {
    keys: crate::hash::Keyed128,
    digests: std::collections::HashSet<u128>,
}

impl LivePaths {
    /// An empty set with room for `n` paths.
    pub fn with_capacity(n: usize) -> LivePaths {
        LivePaths {
            keys: crate::hash::Keyed128::new(),
            digests: std::collections::HashSet::with_capacity(n),
        }
    }

    /// Adds `path`.
    pub fn insert(&mut self, path: &Path) {
        self.digests.insert(self.keys.of(path));
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &Path) -> bool {
        self.digests.contains(&self.keys.of(path))
    }
}
