//! Directory stores (a vector index, say): the tree with relative paths.
//!
//! Paths matching the store's `exclude` patterns are neither captured nor,
//! on replace, removed (see [`crate::store::exclude`]).
//! SQLite files inside (found by their header) go through the backup API and
//! their `-wal`/`-shm`/`-journal` sidecars are skipped; symlinks are recorded,
//! never followed; a file that changes while copied is copied again, a few
//! times, before the create gives up (see [`crate::capture`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::sqlite;
use crate::fsutil;
use crate::manifest::StoreRecord;
use crate::plan::LivePaths;
use crate::plan::{FilePaths, Mode, Step, Target};
use crate::store::exclude::Exclude;
use crate::store::steps as plan;
use crate::store::walk::walk;
use crate::store::{decoded, live_path, plan_removals, within_store};
use crate::store::{CapturePlan, HeldRecords, RecordStream, StoreHandler};

/// The `dir` store kind.
pub struct DirStore;

impl StoreHandler for DirStore {
    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan> {
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
        let mut plan = walk(spec)?;
        plan.warnings.extend(looks_like_a_vector_store(spec));
        Ok(plan)
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        DirStore::plan(record, target)
    }

    fn plan_restore_streamed(
        &self,
        record: &StoreRecord,
        files: &mut dyn RecordStream,
        target: &Target<'_>,
    ) -> Result<Vec<Step>> {
        DirStore::plan_from(record, files, target)
    }

    fn live_databases(&self, target: &Path) -> Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(target)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            if entry.file_type().is_file() && sqlite::is_sqlite_file(entry.path())? {
                out.push(entry.into_path());
            }
        }
        Ok(out)
    }
}

/// Adds the folders above `path` to `folders`, stopping at the first one
/// already there (its own are then there too): one allocation per new
/// folder, not one per file and level.
fn add_folders(folders: &mut BTreeSet<std::path::PathBuf>, path: &Path) {
    // The files of one folder follow each other, in order: their folder is
    // then the greatest in the set, found without a search by component
    // (and a folder in the set has its own folders there too).
    if path
        .parent()
        .is_some_and(|p| folders.last().is_some_and(|l| l == p))
    {
        return;
    }
    for folder in path.ancestors().skip(1) {
        if folders.contains(folder) {
            break;
        }
        folders.insert(folder.to_path_buf());
    }
}

impl DirStore {
    /// Plans a dir store: for replace, first the removal of everything the
    /// bundle lacks (live symlinks included, so nothing is written through
    /// one); then files (SQLite ones through the SQLite path); symlinks last,
    /// each only when it resolves inside the store.
    pub fn plan(record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        DirStore::plan_from(record, &mut HeldRecords(&record.files), target)
    }

    /// [`DirStore::plan`], the store's file records given one at a time by
    /// `records` (and each let go once its step is made).
    pub fn plan_from(
        record: &StoreRecord,
        records: &mut dyn RecordStream,
        target: &Target<'_>,
    ) -> Result<Vec<Step>> {
        let mut files = Vec::with_capacity(records.count());
        // Hashed: every live file is looked up in them (a component-ordered
        // set of many paths costs more than the rest of the plan).
        let mut wanted = LivePaths::with_capacity(records.count() + record.symlinks.len());
        let mut databases = HashSet::new();
        let mut folders = BTreeSet::new();
        // A file's path within the store is held once by its step, beneath
        // these two folders (see `FilePaths`).
        let bundle_dir: Arc<Path> =
            fsutil::joined(target.bundle_root, Path::new(&record.name)).into();
        let live_dir: Arc<Path> = target.path.as_path().into();
        records.each(&mut |file| {
            let bundle_rel = decoded(file.rel())?;
            let rel = within_store(record, &bundle_rel)?;
            let live = fsutil::joined(&target.path, rel);
            wanted.insert(&live);
            add_folders(&mut folders, &live);
            let paths = FilePaths::beneath(&bundle_dir, &live_dir, rel);
            files.push(match &file.sqlite {
                // Databases go through the SQLite path: replaced whole, or
                // merged row by row (their bytes differ from any live copy
                // even when their rows do not).
                Some(facts) => {
                    if target.mode == Mode::Replace {
                        databases.insert(live.clone());
                    }
                    let source = paths.source().into_owned();
                    plan::sqlite_file(source, file, facts, live, target)?
                }
                None => plan::plain_file(paths, file, target)?,
            });
            Ok(())
        })?;
        let links = plan_links(record, target, &mut wanted, &mut folders)?;
        // The file steps' list becomes the plan, grown once to its size (a
        // plan of many files is tens of MB: never held twice).
        let mut steps = files;
        if target.mode == Mode::Replace {
            let removals = removals(record, target, &wanted, &databases)?;
            steps.reserve_exact(removals.len() + 1 + links.len());
            steps.splice(0..0, removals);
            steps.push(Step::PruneFolders {
                root: target.path.clone(),
                keep: folders,
            });
        }
        steps.reserve_exact(links.len());
        steps.extend(links);
        Ok(steps)
    }
}

/// The steps of a store's recorded symlinks, each only when it resolves
/// inside the store; their live paths join `wanted` and their folders
/// `folders`.
fn plan_links(
    record: &StoreRecord,
    target: &Target<'_>,
    wanted: &mut LivePaths,
    folders: &mut BTreeSet<std::path::PathBuf>,
) -> Result<Vec<Step>> {
    // Links as store-relative bytes → target bytes.
    let mut in_order = Vec::new();
    for l in &record.symlinks {
        let rel = l
            .rel()
            .map_err(|r| Error::Refused(format!("unsafe symlink in the bundle: {r}")))?;
        let in_store = rel.strip_prefix(&record.name).unwrap_or(&rel);
        let points_to = l.target_bytes().map_err(Error::Refused)?;
        in_order.push((in_store.as_os_str().as_bytes().to_vec(), points_to));
    }
    let recorded: BTreeMap<Vec<u8>, Vec<u8>> = in_order.iter().cloned().collect();
    // What the store will hold: the bundle's links, and for merge the live ones.
    let lookup = |rel: &[u8]| -> Option<Vec<u8>> {
        if let Some(t) = recorded.get(rel) {
            return Some(t.clone());
        }
        if target.mode == Mode::Merge {
            let root = target.live?;
            let link = root.read_link(Path::new(OsStr::from_bytes(rel))).ok()??;
            return Some(link.as_bytes().to_vec());
        }
        None
    };
    let mut links = Vec::new();
    for (link, (rel, points_to)) in record.symlinks.iter().zip(&in_order) {
        let live = live_path(record, &target.path, link.rel())?;
        wanted.insert(&live);
        add_folders(folders, &live);
        let inside = fsutil::link_stays_inside(rel, points_to, lookup);
        links.push(plan::symlink(
            live,
            &link.target,
            points_to,
            inside,
            target,
        )?);
    }
    Ok(links)
}

/// For a replace: removing what the live store holds that the bundle lacks
/// (`wanted`, with its replaced `databases`). What the store was captured
/// without (its `exclude` patterns) is not the bundle's to remove.
fn removals(
    record: &StoreRecord,
    target: &Target<'_>,
    wanted: &LivePaths,
    databases: &HashSet<std::path::PathBuf>,
) -> Result<Vec<Step>> {
    let exclude = Exclude::new(&record.exclude)
        .map_err(|e| Error::Refused(format!("store \"{}\": {e}", record.name)))?;
    plan_removals(
        &target.path,
        |p| wanted.contains(p),
        databases,
        |e| {
            let rel = e.path().strip_prefix(&target.path).unwrap_or(e.path());
            !exclude.covers(rel, e.file_type().is_dir())
        },
    )
}

/// A warning when a dir store is a Chroma or LanceDB store: their files only
/// make sense together, and a copy under a live writer can tear them.
fn looks_like_a_vector_store(spec: &StoreSpec) -> Option<String> {
    let (what, kind) = if crate::format::chroma::looks_like(&spec.path) {
        ("a Chroma persist directory", "chroma")
    } else if crate::format::lance::looks_like(&spec.path) {
        ("a LanceDB database", "lancedb")
    } else {
        return None;
    };
    Some(format!(
        "store \"{}\" looks like {what}: a dir capture under a live writer can tear it across files; use kind \"{kind}\" (--{kind}), which captures it consistently and checks it",
        spec.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folders_above_files_in_any_order_are_each_added_once() {
        let mut folders = BTreeSet::new();
        for path in [
            "/s/a/b/1", "/s/a/b/2", "/s/a/c/3", "/s/a-b/4", "/s/a/b/5", "/s/6",
        ] {
            add_folders(&mut folders, Path::new(path));
        }
        let want = ["/", "/s", "/s/a", "/s/a/b", "/s/a/c", "/s/a-b"];
        let mut want: Vec<std::path::PathBuf> = want.iter().map(Into::into).collect();
        want.sort();
        assert_eq!(folders.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_live_path_is_wanted_however_it_is_spelled_as_a_path_compares() {
        use std::os::unix::ffi::OsStrExt;
        let mut wanted = LivePaths::with_capacity(2);
        wanted.insert(Path::new("/live/s/a/b.txt"));
        wanted.insert(Path::new(std::ffi::OsStr::from_bytes(b"/live/s/\xff")));
        assert!(wanted.contains(Path::new("/live/s/a/b.txt")));
        assert!(wanted.contains(Path::new("/live//s/./a/b.txt/")));
        assert!(wanted.contains(Path::new(std::ffi::OsStr::from_bytes(b"/live/s/\xff"))));
        assert!(!wanted.contains(Path::new("/live/s/a")));
        assert!(!wanted.contains(Path::new("/live/s/a/b.txt2")));
        assert!(!wanted.contains(Path::new("/live/s/A/b.txt")));
    }
}
