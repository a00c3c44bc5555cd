//! The restore plan's vocabulary: what each store's restore will do
//! ([`Step`]s, closed and serialisable: the `--json` plan contract), the
//! counts, where a store goes ([`Target`]) and how ([`Mode`]).
//!
//! Planning reads the bundle and the live stores and writes nothing; `apply`
//! only executes the steps.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

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
    /// Write the bundle's file at its target (temp + fsync + rename).
    Write {
        /// The bundle's file (`source`) and where it goes (`target`).
        #[serde(flatten)]
        paths: FilePaths,
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
    pub fn source(&self) -> Option<Cow<'_, Path>> {
        match self {
            Step::SqliteReplace { source, .. }
            | Step::SqliteMerge { source, .. }
            | Step::JsonlAppend { source, .. } => Some(Cow::Borrowed(source)),
            Step::Write { paths, .. } => Some(paths.source()),
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

/// The bundle's copy of a file a [`Step::Write`] writes, and its live
/// target. A folder store's file lies at the same path beneath the store's
/// folder in the bundle and the live one: that path is held once (and shared
/// with the staged file), the folders by every file, where a plan of many
/// files held two absolute paths for each.
#[derive(Debug, Clone)]
pub enum FilePaths {
    /// At `rel` beneath both folders.
    Beneath {
        /// The store's folder in the bundle.
        bundle_dir: Arc<Path>,
        /// The live folder.
        live_dir: Arc<Path>,
        /// The file's path beneath both.
        rel: Arc<Path>,
    },
    /// Each its own path (a single-file store's file, whose live name is
    /// the configured one): the source, then the target.
    Apart(Box<(PathBuf, PathBuf)>),
}

impl FilePaths {
    /// A folder store's file at `rel` beneath both folders.
    pub fn beneath(bundle_dir: &Arc<Path>, live_dir: &Arc<Path>, rel: &Path) -> FilePaths {
        FilePaths::Beneath {
            bundle_dir: Arc::clone(bundle_dir),
            live_dir: Arc::clone(live_dir),
            rel: rel.into(),
        }
    }

    /// A file read from `source` and written at `target`.
    pub fn apart(source: PathBuf, target: PathBuf) -> FilePaths {
        FilePaths::Apart(Box::new((source, target)))
    }

    /// The bundle's file.
    pub fn source(&self) -> Cow<'_, Path> {
        match self {
            FilePaths::Beneath {
                bundle_dir, rel, ..
            } => Cow::Owned(crate::fsutil::joined(bundle_dir, rel)),
            FilePaths::Apart(paths) => Cow::Borrowed(&paths.0),
        }
    }

    /// Where it goes.
    pub fn target(&self) -> Cow<'_, Path> {
        match self {
            FilePaths::Beneath { live_dir, rel, .. } => {
                Cow::Owned(crate::fsutil::joined(live_dir, rel))
            }
            FilePaths::Apart(paths) => Cow::Borrowed(&paths.1),
        }
    }

    /// The target's path relative to `root` (the one this plan holds, when
    /// `root` is the live folder the target lies beneath).
    pub fn target_in(&self, root: &RootDir) -> Result<Arc<Path>> {
        match self {
            FilePaths::Beneath { live_dir, rel, .. } if **live_dir == *root.path() => {
                Ok(Arc::clone(rel))
            }
            _ => Ok(root.relative(&self.target())?.into()),
        }
    }

    /// The folder the target goes in, to tell the files of one folder: as
    /// given (relative to the live folder, for a folder store's file).
    pub fn folder(&self) -> Option<&Path> {
        match self {
            FilePaths::Beneath { rel, .. } => rel.parent(),
            FilePaths::Apart(paths) => paths.1.parent(),
        }
    }
}

impl Serialize for FilePaths {
    /// As `source` and `target`, the paths the plan shows.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("source", &self.source().to_string_lossy())?;
        map.serialize_entry("target", &self.target().to_string_lossy())?;
        map.end()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_folder_store_file_is_held_once_beneath_both_folders_and_shown_whole() {
        let live = tempfile::tempdir().unwrap();
        let bundle_dir: Arc<Path> = Path::new("/b/2026/store").into();
        let live_dir: Arc<Path> = live.path().into();
        let rel = Path::new(OsStr::from_bytes(b"d/\xffname"));
        let paths = FilePaths::beneath(&bundle_dir, &live_dir, rel);
        assert_eq!(paths.source(), Path::new("/b/2026/store").join(rel));
        assert_eq!(paths.target(), live.path().join(rel));
        assert_eq!(paths.folder(), Some(Path::new("d")));
        // The live folder's root gets the very path the plan holds.
        let root = RootDir::open(live.path(), "t").unwrap();
        let FilePaths::Beneath { rel: held, .. } = &paths else {
            unreachable!("made beneath")
        };
        assert!(Arc::ptr_eq(&paths.target_in(&root).unwrap(), held));
        // A root above it gets the path relative to itself; one elsewhere a refusal.
        let parent = live.path().parent().unwrap();
        let above = RootDir::open(parent, "t").unwrap();
        let name = live.path().file_name().unwrap();
        assert_eq!(
            &*paths.target_in(&above).unwrap(),
            Path::new(name).join(rel)
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let other = RootDir::open(elsewhere.path(), "t").unwrap();
        assert!(matches!(paths.target_in(&other), Err(Error::Refused(_))));

        // The plan's JSON shows both paths whole (lossy where not UTF-8).
        let step = Step::Write {
            paths,
            sha256: crate::hash::Sha256Digest::of(b"x"),
            jsonl: None,
            sqlite: None,
            owner: Ownership::default(),
        };
        let json = serde_json::to_value(&step).unwrap();
        assert_eq!(json["step"], "write");
        assert_eq!(json["source"], "/b/2026/store/d/\u{fffd}name");
        let target = format!("{}/d/\u{fffd}name", live.path().display());
        assert_eq!(json["target"], target.as_str());
        assert_eq!(
            json["sha256"],
            crate::hash::Sha256Digest::of(b"x").to_string()
        );
    }

    #[test]
    fn a_file_apart_keeps_its_own_two_paths() {
        let paths = FilePaths::apart("/b/s/notes.jsonl".into(), "/live/app/log.jsonl".into());
        assert_eq!(paths.source(), Path::new("/b/s/notes.jsonl"));
        assert_eq!(paths.target(), Path::new("/live/app/log.jsonl"));
        assert_eq!(paths.folder(), Some(Path::new("/live/app")));
        let json = serde_json::to_value(&paths).unwrap();
        assert_eq!(json["source"], "/b/s/notes.jsonl");
        assert_eq!(json["target"], "/live/app/log.jsonl");
    }
}
