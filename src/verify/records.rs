//! The checks on a manifest's file records, made as the records come (a
//! line-by-line read of a manifest of many files, or the lists of one
//! parsed whole), never holding them all: what each record says is checked
//! against what came before it (paths listed twice, records beneath
//! records or symlinks), then its file on disk, in batches on every core.
//! What needs every record of a store is tallied and judged at the end.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{is_single_file, on_disk, single_file_is_plain, Checker};
use crate::bundle::in_store;
use crate::config::StoreKind;
use crate::format::chroma;
use crate::manifest::lines::RecordSink;
use crate::manifest::{FileRecord, StoreStatus};

/// How many listed files are checked on disk at a time.
const BATCH: usize = 4096;

/// Keyed 128-bit digests of bundle-relative paths: the sets of paths a
/// verify keeps hold 16 bytes a file, and the keys, drawn at random for
/// each verify, leave a forged manifest no way to choose paths that
/// collide.
pub(super) struct PathKeys(crate::hash::Keyed128);

impl PathKeys {
    /// Fresh random keys.
    pub(super) fn new() -> Self {
        PathKeys(crate::hash::Keyed128::new())
    }

    /// The digest of `path`.
    pub(super) fn of(&self, path: &Path) -> u128 {
        use std::os::unix::ffi::OsStrExt;
        self.0.of(&path.as_os_str().as_bytes())
    }
}

/// What one store's records add up to, for the rules on the store as a whole.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    /// Files listed.
    files: u64,
    /// A chroma store lists its database, as a database.
    chroma_database: bool,
    /// A single-file store lists a file other than its own.
    foreign: bool,
}

/// A listed file whose record passed the checks, to be looked at on disk.
pub(super) struct OnDisk {
    /// The store's index in the manifest.
    store: usize,
    /// Where it is.
    path: PathBuf,
    /// Its record.
    file: FileRecord,
}

impl<'a> Checker<'a> {
    /// Records every store's symlinks (a symlink listed twice, one beneath
    /// another), before any file record: a file recorded at or beneath a
    /// symlink is then found as it comes.
    pub(super) fn check_symlinks(&mut self) {
        let stores = self.stores;
        for store in stores {
            for link in &store.symlinks {
                let Ok(rel) = link.rel() else { continue };
                match self.links.entry(self.keys.of(&rel)) {
                    Entry::Occupied(_) => {
                        self.add(Some(&store.name), Some(&link.path), "symlink listed twice")
                    }
                    Entry::Vacant(v) => {
                        v.insert(link.path.clone());
                    }
                }
            }
        }
        for store in stores {
            for link in &store.symlinks {
                let Ok(rel) = link.rel() else { continue };
                self.check_beneath(&store.name, &link.path, &rel);
            }
        }
    }

    /// Checks one file record, and its file on disk with the next batch.
    pub(super) fn take_record(&mut self, store: usize, file: FileRecord) {
        if let Some(on_disk) = self.check_record(store, file) {
            self.pending.push(on_disk);
            if self.pending.len() >= BATCH {
                self.check_pending();
            }
        }
    }

    /// Checks the files of the records taken so far on disk.
    pub(super) fn check_pending(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        let (stores, opts, progress) = (self.stores, self.opts, self.progress);
        let checked = crate::parallel::map_claiming_with(
            &batch,
            crate::parallel::default_jobs(),
            |i| {
                crate::parallel::folder_run(
                    &batch,
                    i,
                    |item| item.path.parent(),
                    |item| item.file.bytes,
                )
            },
            crate::fsutil::LastFolder::default,
            |folder, item| {
                let store = stores[item.store].name.as_str();
                Ok(on_disk::check(
                    store, &item.path, &item.file, folder, opts, progress,
                ))
            },
        )
        .expect("checks on disk report problems, never errors");
        for (bytes, problems) in checked {
            if let Some(bytes) = bytes {
                self.report.files_checked += 1;
                self.report.bytes_checked += bytes;
            }
            self.report.problems.extend(problems);
        }
    }

    /// The rules on each store that need all its records, once all came.
    pub(super) fn judge_tallies(&mut self) {
        let stores = self.stores;
        for (store, tally) in stores.iter().zip(std::mem::take(&mut self.tallies)) {
            let name = Some(store.name.as_str());
            let holds_files = matches!(store.status, StoreStatus::Ok | StoreStatus::Damaged);
            let lists_any = tally.files > 0 || !store.symlinks.is_empty();
            if !holds_files && lists_any {
                let text = format!("status {:?} but files are listed", store.status);
                self.add(name, None, text);
            }
            if store.status == StoreStatus::Ok && !lists_any {
                self.add(name, None, "status ok but no files are listed");
            }
            if tally.foreign {
                let text = "a single-file store lists a file other than its own";
                self.add(name, None, text);
            }
            if store.status == StoreStatus::Damaged {
                continue;
            }
            if store.kind == StoreKind::Sqlite && tally.files > 1 {
                self.add(name, None, "an sqlite store holds one database");
            }
            if store.kind == StoreKind::Chroma
                && store.status == StoreStatus::Ok
                && !tally.chroma_database
            {
                let database = format!("{}/{}", store.name, chroma::DATABASE);
                let text = format!("a chroma store must hold {database} as a database");
                self.add(name, None, text);
            }
        }
    }

    /// The checks on one record; its file, when they pass.
    fn check_record(&mut self, at: usize, file: FileRecord) -> Option<OnDisk> {
        let stores = self.stores;
        let store = &stores[at];
        let name = store.name.as_str();
        self.tally(at, &file);
        let rel = match file.rel() {
            Err(e) => {
                self.add(Some(name), Some(&file.path), format!("unsafe path: {e}"));
                return None;
            }
            Ok(rel) if !in_store(&rel, name) => {
                let text = "path is outside the store's folder";
                self.add(Some(name), Some(&file.path), text);
                return None;
            }
            Ok(rel) => rel,
        };
        let key = self.keys.of(&rel);
        if !self.listed.insert(key) {
            self.add(Some(name), Some(&file.path), "path listed twice");
            return None;
        }
        if let Some(link) = self.links.get(&key).cloned() {
            let text = "recorded both as a file and as a symlink";
            self.add(Some(name), Some(&link), text);
        }
        if let Some(under) = self.beneath.get(&key).cloned() {
            let text = format!("lies under the recorded file {}", rel.display());
            self.add(Some(name), Some(&under), text);
        }
        self.check_beneath(name, &file.path, &rel);
        if let Err(e) = self.check_no_symlinks(&rel) {
            self.add(Some(name), Some(&file.path), e);
            return None;
        }
        Some(OnDisk {
            store: at,
            path: self.root.join(&rel),
            file,
        })
    }

    /// Whether the record at `rel` (`path` as recorded) lies beneath a
    /// recorded symlink or file; notes the folders it lies in, with it, so
    /// that a file recorded later at one of them is found too. A folder
    /// already noted was checked with its own folders when it was.
    fn check_beneath(&mut self, store: &str, path: &str, rel: &Path) {
        for folder in rel.ancestors().skip(1) {
            if folder.as_os_str().is_empty() {
                break;
            }
            let key = self.keys.of(folder);
            if self.links.contains_key(&key) {
                let text = format!("lies under the recorded symlink {}", folder.display());
                self.add(Some(store), Some(path), text);
            } else if self.listed.contains(&key) {
                let text = format!("lies under the recorded file {}", folder.display());
                self.add(Some(store), Some(path), text);
            }
            match self.beneath.entry(key) {
                Entry::Occupied(_) => break,
                Entry::Vacant(v) => {
                    v.insert(path.to_string());
                }
            }
        }
    }

    /// Counts a store's record, and checks it against the store's kind.
    fn tally(&mut self, at: usize, file: &FileRecord) {
        let stores = self.stores;
        let store = &stores[at];
        let tally = &mut self.tallies[at];
        tally.files += 1;
        if let Some(single) = store.single_file.as_deref() {
            tally.foreign |= single_file_is_plain(single) && !is_single_file(store, file, single);
        }
        if store.status == StoreStatus::Damaged {
            // Raw bytes, sidecars included: nothing kind-specific to hold.
            return;
        }
        let missing = match store.kind {
            StoreKind::Sqlite if file.sqlite.is_none() => {
                Some("file of an sqlite store has no SQLite facts")
            }
            StoreKind::Jsonl if file.jsonl.is_none() => {
                Some("file of a jsonl store has no JSONL facts")
            }
            StoreKind::Chroma => {
                let database = format!("{}/{}", store.name, chroma::DATABASE);
                tally.chroma_database |= file.path == database && file.sqlite.is_some();
                None
            }
            _ => None,
        };
        if let Some(text) = missing {
            self.add(Some(&store.name), Some(&file.path), text);
        }
    }

    /// Every folder on the way to `rel` must be a real folder, not a symlink.
    fn check_no_symlinks(&mut self, rel: &Path) -> std::result::Result<(), String> {
        let mut at = self.root.to_path_buf();
        let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at.push(part);
            // Each folder is looked at once, not once for every file in it.
            if self.real_folders.contains(&at) {
                continue;
            }
            // Named within the bundle, as every other problem's path is.
            let named = at.strip_prefix(self.root).unwrap_or(&at).display();
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!("path goes through a symlink at {named}"))
                }
                Ok(m) if !m.is_dir() => return Err(format!("{named} is not a folder")),
                Ok(_) => {
                    self.real_folders.insert(at.clone());
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }
}

/// The records of a second, line-by-line read of the manifest, each taken
/// by the checker for the store the first read found its list in.
pub(super) struct Streamed<'c, 'a> {
    /// The checker.
    pub(super) checker: &'c mut Checker<'a>,
    /// The store of each multi-line file list, by the first read.
    pub(super) list_stores: &'c [usize],
}

impl RecordSink<FileRecord> for Streamed<'_, '_> {
    fn take(&mut self, list: usize, record: FileRecord) {
        // A list the first read did not have: the manifest changed in
        // between, which the two reads' digests tell.
        if let Some(&store) = self.list_stores.get(list) {
            self.checker.take_record(store, record);
        }
    }
}

/// The `HashMap` a checker keeps of symlinks and of folders records lie in.
pub(super) type PathMap = HashMap<u128, String>;
