//! Restore plans: what each store's restore will do, computed by reading only.
//!
//! A plan is a list of [`Step`]s per store. Planning reads the bundle and the
//! live stores and writes nothing; `apply` only executes the steps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{FileRecord, JsonlFacts, SqliteFacts};
use crate::restore::{identity, sqlite_merge, Mode};
use crate::rooted::{Entry, Ownership, RootDir};

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
        facts: SqliteFacts,
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
        facts: SqliteFacts,
        /// Bundle columns the live tables lack (`table.column`).
        missing_columns: Vec<String>,
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
        sha256: String,
        /// Its JSONL line counts, when a JSONL file.
        jsonl: Option<JsonlFacts>,
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
        Ok(self.bundle_root.join(rel))
    }

    /// What is live at `target`, never following a link.
    pub fn entry(&self, target: &Path) -> Result<Entry> {
        match self.live {
            Some(root) => root.entry(root.relative(target)?),
            None => Ok(Entry::Missing),
        }
    }

    /// The live folder, for reads of a path [`Target::entry`] found to be a file.
    fn root(&self) -> Result<&RootDir> {
        self.live
            .ok_or_else(|| Error::Refused("the store folder does not exist".into()))
    }
}

/// The conflict for a live path merge will not write through or over.
fn not_followed(target: PathBuf, entry: Entry) -> Step {
    let what = match entry {
        Entry::Symlink => "is a symlink in the live store",
        Entry::ThroughLink => "lies under a symlink (or a file) in the live store",
        Entry::Dir => "is a folder in the live store",
        _ => "is not a regular file in the live store",
    };
    Step::Conflict {
        target,
        reason: format!("{what}; not followed or replaced by merge (use --mode replace)"),
    }
}

/// Plans one SQLite database file.
pub fn sqlite_file(
    source: PathBuf,
    file: &FileRecord,
    facts: &SqliteFacts,
    target: PathBuf,
    t: &Target<'_>,
) -> Result<Step> {
    let entry = t.entry(&target)?;
    let exists = matches!(entry, Entry::File(_));
    if t.mode == Mode::Replace || entry == Entry::Missing {
        if entry == Entry::Dir {
            return Err(Error::Refused(format!(
                "{} is a folder where the bundle has a database; move it away first",
                target.display()
            )));
        }
        return Ok(Step::SqliteReplace {
            source,
            target,
            facts: facts.clone(),
            exists,
            owner: file.ownership(),
        });
    }
    if !exists {
        return Ok(not_followed(target, entry));
    }
    let estimate = sqlite_merge::estimate(&target, &source, facts)?;
    Ok(Step::SqliteMerge {
        source,
        target,
        rows: estimate.missing,
        present: estimate.present,
        facts: facts.clone(),
        missing_columns: estimate.missing_columns,
    })
}

/// Plans one plain file: written when missing (or different, for replace).
pub fn plain_file(
    source: PathBuf,
    file: &FileRecord,
    target: PathBuf,
    t: &Target<'_>,
) -> Result<Step> {
    let write = |target| Step::Write {
        source,
        target,
        sha256: file.sha256.clone(),
        jsonl: file.jsonl,
        owner: file.ownership(),
    };
    let entry = t.entry(&target)?;
    match entry {
        Entry::Missing => return Ok(write(target)),
        Entry::File(len) if len == file.bytes => {
            let root = t.root()?;
            if same_hash(root, root.relative(&target)?, &file.sha256)? {
                return Ok(Step::Keep { target });
            }
        }
        _ => {}
    }
    Ok(match t.mode {
        Mode::Replace if entry == Entry::Dir => {
            return Err(Error::Refused(format!(
                "{} is a folder where the bundle has a file; move it away first",
                target.display()
            )))
        }
        // A link (or what lies under one) is removed first, never written through.
        Mode::Replace => write(target),
        Mode::Merge if matches!(entry, Entry::File(_)) => Step::Conflict {
            target,
            reason: "differs from the bundle's copy; the live file is kept".into(),
        },
        Mode::Merge => not_followed(target, entry),
    })
}

/// Plans one JSONL file: merge appends missing records, replace writes it.
pub fn jsonl_file(
    source: PathBuf,
    file: &FileRecord,
    target: PathBuf,
    t: &Target<'_>,
    key: Option<&str>,
) -> Result<Step> {
    let entry = t.entry(&target)?;
    if t.mode == Mode::Replace || entry == Entry::Missing {
        return plain_file(source, file, target, t);
    }
    if !matches!(entry, Entry::File(_)) {
        return Ok(not_followed(target, entry));
    }
    let root = t.root()?;
    let (lines, present) = identity::count_missing(root, root.relative(&target)?, &source, key)?;
    if lines == 0 {
        return Ok(Step::Keep { target });
    }
    Ok(Step::JsonlAppend {
        source,
        target,
        key: key.map(str::to_string),
        lines,
        present,
    })
}

/// Plans a recorded symlink to `points_to` (`bytes` exactly); `inside` says
/// whether its target, resolved against what the store will hold, stays
/// inside the store. Links that leave it are conflicts, never created.
pub fn symlink(
    target: PathBuf,
    points_to: &str,
    bytes: &[u8],
    inside: bool,
    t: &Target<'_>,
) -> Result<Step> {
    let create = |target| Step::Symlink {
        target,
        points_to: points_to.into(),
        points_to_bytes: bytes.to_vec(),
    };
    if !inside {
        return Ok(Step::Conflict {
            target,
            reason: format!("symlink to \"{points_to}\" leaves the store; not restored"),
        });
    }
    let entry = t.entry(&target)?;
    match entry {
        Entry::Missing => Ok(create(target)),
        Entry::Symlink => {
            let root = t.root()?;
            let live = root.read_link(root.relative(&target)?)?;
            if live.as_deref().map(std::os::unix::ffi::OsStrExt::as_bytes) == Some(bytes) {
                Ok(Step::Keep { target })
            } else if t.mode == Mode::Replace {
                Ok(create(target))
            } else {
                Ok(Step::Conflict {
                    target,
                    reason: format!("differs from the bundle's symlink to \"{points_to}\"; kept"),
                })
            }
        }
        Entry::Dir => Ok(Step::Conflict {
            target,
            reason: format!("is a folder where the bundle has a symlink to \"{points_to}\"; kept"),
        }),
        _ if t.mode == Mode::Replace => Ok(create(target)),
        _ => Ok(Step::Conflict {
            target,
            reason: format!("differs from the bundle's symlink to \"{points_to}\"; kept"),
        }),
    }
}

/// Whether file `rel` beneath `root` hashes to `sha256` (read without following links).
pub fn same_hash(root: &RootDir, rel: &Path, sha256: &str) -> Result<bool> {
    let file = root.open_read(rel)?;
    let path = root.display(rel);
    let (_, sha) = crate::hash::hash_reader(file, |_| {})
        .map_err(|e| Error::io("could not read", &path, e))?;
    Ok(sha == sha256)
}
