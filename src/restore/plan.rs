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

/// One thing apply will do to one live path.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Put the bundle's database in place of (or at) `target`.
    SqliteReplace {
        /// The bundle's copy.
        source: PathBuf,
        /// The live database.
        target: PathBuf,
        /// What the restored database must hold.
        facts: SqliteFacts,
        /// Whether `target` exists now.
        exists: bool,
    },
    /// Insert the bundle's rows that the live database lacks.
    SqliteMerge {
        /// The bundle's copy.
        source: PathBuf,
        /// The live database.
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
        source: PathBuf,
        /// Where it goes.
        target: PathBuf,
        /// Its expected sha256.
        sha256: String,
        /// Its JSONL line counts, when a JSONL file.
        jsonl: Option<JsonlFacts>,
    },
    /// Append the bundle's JSONL records missing from the live file.
    JsonlAppend {
        /// The bundle's file.
        source: PathBuf,
        /// The live file.
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
        target: PathBuf,
        /// What it points to.
        points_to: String,
    },
    /// Remove a live file the bundle lacks (the safety snapshot keeps it).
    Remove {
        /// The file or symlink.
        target: PathBuf,
    },
    /// Remove folders under `root` left empty that the bundle does not need.
    PruneFolders {
        /// The store's folder (kept itself).
        root: PathBuf,
        /// Folders the bundle's files live in.
        keep: BTreeSet<PathBuf>,
    },
    /// Leave an identical live file alone.
    Keep {
        /// The live path.
        target: PathBuf,
    },
    /// A live file differs from the bundle's; merge keeps the live one.
    Conflict {
        /// The live path.
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
        crate::fsutil::join_safe(self.bundle_root, &file.path).map_err(|reason| {
            Error::Refused(format!("unsafe path {} in the bundle: {reason}", file.path))
        })
    }
}

/// Plans one SQLite database file.
pub fn sqlite_file(
    source: PathBuf,
    facts: &SqliteFacts,
    target: PathBuf,
    mode: Mode,
) -> Result<Step> {
    let exists = target.exists();
    if mode == Mode::Replace || !exists {
        return Ok(Step::SqliteReplace {
            source,
            target,
            facts: facts.clone(),
            exists,
        });
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
pub fn plain_file(source: PathBuf, file: &FileRecord, target: PathBuf, mode: Mode) -> Result<Step> {
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Step::Write {
                source,
                target,
                sha256: file.sha256.clone(),
                jsonl: file.jsonl,
            })
        }
        Err(e) => return Err(Error::io("could not stat", &target, e)),
    };
    if meta.is_file() && meta.len() == file.bytes && same_hash(&target, &file.sha256)? {
        return Ok(Step::Keep { target });
    }
    Ok(match mode {
        Mode::Replace if meta.is_dir() => {
            return Err(Error::Refused(format!(
                "{} is a folder where the bundle has a file; move it away first",
                target.display()
            )))
        }
        Mode::Replace => Step::Write {
            source,
            target,
            sha256: file.sha256.clone(),
            jsonl: file.jsonl,
        },
        Mode::Merge => Step::Conflict {
            target,
            reason: "differs from the bundle's copy; the live file is kept".into(),
        },
    })
}

/// Plans one JSONL file: merge appends missing records, replace writes it.
pub fn jsonl_file(
    source: PathBuf,
    file: &FileRecord,
    target: PathBuf,
    mode: Mode,
    key: Option<&str>,
) -> Result<Step> {
    if mode == Mode::Replace || !target.exists() {
        return plain_file(source, file, target, Mode::Replace);
    }
    let (lines, present) = identity::count_missing(&target, &source, key)?;
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

/// Plans a recorded symlink; unsafe targets (absolute, escaping) are conflicts.
pub fn symlink(target: PathBuf, points_to: &str, mode: Mode) -> Result<Step> {
    if !link_stays_inside(points_to) {
        return Ok(Step::Conflict {
            target,
            reason: format!("symlink to \"{points_to}\" leaves the store; not restored"),
        });
    }
    match std::fs::symlink_metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Step::Symlink {
            target,
            points_to: points_to.into(),
        }),
        Err(e) => Err(Error::io("could not stat", &target, e)),
        Ok(m)
            if m.file_type().is_symlink()
                && std::fs::read_link(&target).ok().as_deref() == Some(Path::new(points_to)) =>
        {
            Ok(Step::Keep { target })
        }
        Ok(m) if mode == Mode::Replace && !m.is_dir() => Ok(Step::Symlink {
            target,
            points_to: points_to.into(),
        }),
        Ok(_) => Ok(Step::Conflict {
            target,
            reason: format!("differs from the bundle's symlink to \"{points_to}\"; kept"),
        }),
    }
}

/// Whether a link target is relative and, resolved lexically, never climbs
/// above the link's own folder (so it cannot leave the store).
fn link_stays_inside(points_to: &str) -> bool {
    if points_to.starts_with('/') {
        return false;
    }
    let mut depth: i64 = 0;
    for part in points_to.split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Whether the file at `path` hashes to `sha256`.
pub fn same_hash(path: &Path, sha256: &str) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("could not read", path, e))?;
    let (_, sha) =
        crate::hash::hash_reader(file, |_| {}).map_err(|e| Error::io("could not read", path, e))?;
    Ok(sha == sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_links_that_stay_inside_are_restored() {
        assert!(link_stays_inside("b/c"));
        assert!(link_stays_inside("b/../c"));
        assert!(!link_stays_inside("../c"));
        assert!(!link_stays_inside("/etc/passwd"));
        assert!(!link_stays_inside("b/../../c"));
    }
}
