//! Executing a restore plan, then checking the live result against the bundle.
//!
//! Every write resolves beneath the store's folder without following links
//! ([`crate::rooted`]). Every file write is temp + fsync + rename; SQLite databases are written
//! through the backup API (transactional) or, where SQLite cannot, replaced
//! atomically after checkpointing, with stale sidecars removed first.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{jsonl_merge as identity, sqlite_merge, sqlite_replace};
use crate::plan::{Counts, Step};
use crate::progress::Progress;
use crate::rooted::{Entry, Ownership, RootDir};

/// Executes store `store`'s steps beneath `root` (the store's folder, or the
/// folder of a single-file store); returns what was actually done. Every
/// write resolves beneath `root` without following links.
pub fn apply(
    store: &str,
    root: &RootDir,
    steps: &[Step],
    progress: &dyn Progress,
) -> Result<(Counts, Vec<String>)> {
    let mut done = Counts::default();
    let mut notes = Vec::new();
    for step in steps {
        let bytes = step.source_bytes();
        match step {
            Step::SqliteReplace {
                source,
                target,
                facts,
                exists,
                owner,
            } => {
                sqlite_replace::replace_database(root, source, target, facts, *exists, *owner)?;
                done.written += 1;
            }
            Step::SqliteMerge {
                source,
                target,
                facts,
                present,
                ..
            } => {
                root.require_file(root.relative(target)?)?;
                let merged = sqlite_merge::merge(store, target, source, facts)?;
                done.inserted += merged.inserted;
                done.kept += present;
                done.conflicts += merged.conflicts;
                notes.extend(merge_notes(target, &merged));
            }
            Step::Write {
                source,
                target,
                sha256,
                owner,
                ..
            } => {
                write_file(root, source, root.relative(target)?, sha256, *owner)?;
                done.written += 1;
            }
            Step::JsonlAppend {
                source,
                target,
                key,
                present,
                ..
            } => {
                let rel = root.relative(target)?;
                done.appended += identity::append_missing(root, rel, source, key.as_deref())?;
                done.kept += present;
            }
            Step::Symlink {
                target,
                points_to_bytes,
                ..
            } => {
                root.symlink(root.relative(target)?, OsStr::from_bytes(points_to_bytes))?;
                done.written += 1;
            }
            Step::Remove { target } => {
                root.remove_file(root.relative(target)?)?;
                done.removed += 1;
            }
            Step::PruneFolders { root: folder, keep } => prune_folders(root, folder, keep)?,
            Step::Keep { .. } => done.kept += 1,
            Step::Conflict { .. } => done.conflicts += 1,
        }
        progress.advance(bytes);
    }
    Ok((done, notes))
}

/// What a database merge reports: conflicts kept live, indexes rebuilt.
fn merge_notes(target: &Path, merged: &sqlite_merge::Merged) -> Vec<String> {
    let mut notes = Vec::new();
    if merged.conflicts > 0 {
        notes.push(format!(
            "{}: {} bundle row(s) conflict with other unique keys; live rows kept",
            target.display(),
            merged.conflicts
        ));
    }
    for vt in &merged.rebuilt {
        notes.push(format!(
            "{}: rebuilt full-text index {vt}",
            target.display()
        ));
    }
    notes
}

/// Checks that the live result holds what the bundle has; returns problems.
/// Like apply, it reads beneath `root` without following links.
pub fn check(root: &RootDir, steps: &[Step]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // A removed link (or file) on the way to a bundle path is a folder now.
    let written: Vec<&Path> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write { target, .. }
            | Step::SqliteReplace { target, .. }
            | Step::Symlink { target, .. } => Some(target.as_path()),
            _ => None,
        })
        .collect();
    for step in steps {
        match step {
            Step::SqliteReplace { target, facts, .. } => {
                root.require_file(root.relative(target)?)?;
                problems.extend(sqlite_replace::check_database(target, facts)?);
            }
            Step::SqliteMerge { target, .. } => {
                root.require_file(root.relative(target)?)?;
                problems.extend(sqlite_replace::check_merged_database(target)?);
            }
            Step::Write { target, sha256, .. } => {
                if !crate::store::steps::same_hash(root, root.relative(target)?, sha256)? {
                    problems.push(format!(
                        "{} does not match the bundle's sha256",
                        target.display()
                    ));
                }
            }
            Step::JsonlAppend {
                source,
                target,
                key,
                ..
            } => {
                let rel = root.relative(target)?;
                let (missing, _) = identity::count_missing(root, rel, source, key.as_deref())?;
                if missing > 0 {
                    problems.push(format!(
                        "{}: {missing} bundle record(s) are not present",
                        target.display()
                    ));
                }
            }
            Step::Symlink {
                target,
                points_to_bytes,
                ..
            } => {
                if root.read_link(root.relative(target)?)?.as_deref()
                    != Some(OsStr::from_bytes(points_to_bytes))
                {
                    problems.push(format!("{} is not the bundle's symlink", target.display()));
                }
            }
            Step::Remove { target } if written.iter().any(|w| w.starts_with(target)) => {
                if root.entry(root.relative(target)?)? == Entry::Symlink {
                    problems.push(format!("{} is still a symlink", target.display()));
                }
            }
            Step::Remove { target } => {
                if root.entry(root.relative(target)?)? != Entry::Missing {
                    problems.push(format!("{} was not removed", target.display()));
                }
            }
            Step::Keep { .. } | Step::Conflict { .. } | Step::PruneFolders { .. } => {}
        }
    }
    Ok(problems)
}

/// Copies a bundle file to `rel` atomically, checking its hash on the way.
fn write_file(
    root: &RootDir,
    source: &Path,
    rel: &Path,
    sha256: &str,
    owner: Ownership,
) -> Result<()> {
    root.write_file(rel, owner, |out| {
        let input = std::fs::File::open(source)?;
        let sparse = crate::sparse::has_holes(&input.metadata()?);
        let mut writer = crate::sparse::SparseWriter::new(out, sparse);
        let (_, actual) = crate::hash::stream_hashed(input, |chunk| writer.write(chunk))?;
        writer.finish()?;
        if actual != sha256 {
            return Err(std::io::Error::other(
                "the bundle's file changed since it was verified",
            ));
        }
        Ok(())
    })
}

/// Removes empty folders under `folder` (deepest first) that the bundle does
/// not need, each beneath `root` without following links.
fn prune_folders(
    root: &RootDir,
    folder: &Path,
    keep: &std::collections::BTreeSet<PathBuf>,
) -> Result<()> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        if !keep.contains(&dir) {
            root.remove_empty_dir(root.relative(&dir)?)?;
        }
    }
    Ok(())
}
