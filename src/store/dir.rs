//! Directory stores (a vector index, say): the tree with relative paths.
//!
//! SQLite files inside (found by their header) go through the backup API and
//! their `-wal`/`-shm`/`-journal` sidecars are skipped; symlinks are recorded,
//! never followed; a file that changes while copied makes the whole store be
//! captured again, a few times, before giving up.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::manifest::{FileRecord, StoreRecord, SymlinkRecord};
use crate::restore::plan::{self, Step, Target};
use crate::restore::Mode;
use crate::store::{live_path, plan_removals};
use crate::store::{manifest_path, plain, sqlite, CaptureContext, Captured, StoreHandler};

/// How many times a store whose files keep changing is captured before failing.
const ATTEMPTS: usize = 3;

/// The `dir` store kind.
pub struct DirStore;

impl StoreHandler for DirStore {
    fn capture(&self, spec: &StoreSpec, ctx: &CaptureContext<'_>) -> Result<Captured> {
        if !std::fs::metadata(&spec.path)
            .map_err(|e| Error::io("could not stat", &spec.path, e))?
            .is_dir()
        {
            return Err(Error::Usage(format!(
                "store \"{}\": {} is not a folder; use kind \"sqlite\" or \"jsonl\" for a file",
                spec.name,
                spec.path.display()
            )));
        }
        let store_root = ctx.bundle_root.join(&spec.name);
        let mut changed = Vec::new();
        for _ in 0..ATTEMPTS {
            let (captured, changed_now) = capture_tree(spec, ctx)?;
            if changed_now.is_empty() {
                return Ok(captured);
            }
            changed = changed_now;
            std::fs::remove_dir_all(&store_root)
                .and_then(|()| std::fs::create_dir(&store_root))
                .map_err(|e| Error::io("could not reset", &store_root, e))?;
        }
        Err(Error::CheckFailed {
            store: spec.name.clone(),
            reason: format!(
                "files kept changing while being copied ({} tries): {}; stop the application writing to {} (or stop it from a pre-create hook) and try again",
                ATTEMPTS,
                changed.join(", "),
                spec.path.display()
            ),
        })
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        DirStore::plan(record, target)
    }
}

impl DirStore {
    /// Plans a dir store: files (SQLite ones through the SQLite path), symlinks,
    /// and for replace the removal of everything else.
    fn plan(record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        let mut wanted = BTreeSet::new();
        let mut databases = BTreeSet::new();
        let mut folders = BTreeSet::new();
        for file in &record.files {
            let live = live_path(record, &target.path, &file.path)?;
            wanted.insert(live.clone());
            folders.extend(live.ancestors().skip(1).map(Path::to_path_buf));
            let source = target.source(file)?;
            steps.push(match &file.sqlite {
                // Merge treats every file alike: missing ones are copied,
                // differing ones are conflicts left live.
                Some(facts) if target.mode == Mode::Replace => {
                    databases.insert(live.clone());
                    plan::sqlite_file(source, facts, live, target.mode)?
                }
                _ => plan::plain_file(source, file, live, target.mode)?,
            });
        }
        for link in &record.symlinks {
            let live = live_path(record, &target.path, &link.path)?;
            wanted.insert(live.clone());
            folders.extend(live.ancestors().skip(1).map(Path::to_path_buf));
            steps.push(plan::symlink(live, &link.target, target.mode)?);
        }
        if target.mode == Mode::Replace {
            steps.extend(plan_removals(&target.path, &wanted, &databases, |_| true)?);
            steps.push(Step::PruneFolders {
                root: target.path.clone(),
                keep: folders,
            });
        }
        Ok(steps)
    }
}

/// One pass over the tree; returns what was captured and the paths that changed.
fn capture_tree(spec: &StoreSpec, ctx: &CaptureContext<'_>) -> Result<(Captured, Vec<String>)> {
    let root = &spec.path;
    let mut captured = Captured::default();
    let mut changed = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io("could not walk", &path, e.into())
        })?;
        let src = entry.path();
        let rel = manifest_path(
            &spec.name,
            src.strip_prefix(root).expect("walked under root"),
        )?;
        let kind = entry.file_type();
        if kind.is_dir() {
            crate::fsutil::create_dir_all(&ctx.target(&rel))?;
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(src).map_err(|e| Error::io("could not read link", src, e))?;
            captured.symlinks.push(SymlinkRecord {
                path: rel,
                target: target.to_string_lossy().into_owned(),
            });
        } else if !kind.is_file() {
            captured.warnings.push(format!(
                "store \"{}\": skipped {rel}: not a regular file, folder or symlink",
                spec.name
            ));
        } else if is_sidecar(src)? {
            continue;
        } else if sqlite::is_sqlite_file(src)? {
            captured
                .files
                .push(sqlite::capture_file(&spec.name, src, &rel, ctx)?);
        } else {
            let dest = ctx.target(&rel);
            ctx.progress
                .start(&format!("{}: {rel}", spec.name), Some(entry_len(&entry)));
            let copy = plain::copy_hashed(src, &dest, ctx.progress)?;
            ctx.progress.finish();
            if copy.changed {
                changed.push(rel.clone());
            }
            captured.files.push(FileRecord {
                path: rel,
                bytes: copy.bytes,
                sha256: copy.sha256,
                sqlite: None,
                jsonl: None,
            });
        }
    }
    Ok((captured, changed))
}

fn entry_len(entry: &walkdir::DirEntry) -> u64 {
    entry.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Whether `path` is a `-wal`/`-shm`/`-journal` file beside an SQLite database.
fn is_sidecar(path: &Path) -> Result<bool> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(false);
    };
    for suffix in sqlite::SIDECARS {
        if let Some(base) = name.strip_suffix(suffix) {
            let db = path.with_file_name(base);
            if db.is_file() && sqlite::is_sqlite_file(&db)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
