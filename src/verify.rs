//! `bundle verify`: prove a bundle is whole, collecting every problem found.
//!
//! Nothing a bundle says about itself is trusted: the manifest must match its
//! checksum file and parse with a
//! known version, every listed path must be safe and hold a regular file with
//! the recorded size and sha256, nothing unlisted may be present, and SQLite and
//! JSONL facts are recomputed from the bytes.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bundle::BundleId;
use crate::config::{validate_store_name, StoreKind};
use crate::error::{Error, Result};
use crate::format::jsonl::{each_line, LineScan};
use crate::format::{chroma, sqlite};
use crate::fsutil;
use crate::hash;
use crate::manifest::{self, FileRecord, Manifest, StoreStatus, MANIFEST_FILE, MANIFEST_SUM_FILE};
use crate::progress::Progress;

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The store concerned, if any.
    pub store: Option<String>,
    /// The bundle-relative path concerned, if any.
    pub path: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// The result of verifying a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Whether no problem was found.
    pub ok: bool,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// The bundle's folder.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub bundle: PathBuf,
    /// The manifest's id, when it could be read.
    pub id: Option<String>,
    /// Files whose bytes were read.
    pub files_checked: u64,
    /// Bytes read and hashed.
    pub bytes_checked: u64,
    /// Stores the bundle holds as raw bytes (`damaged`, from a safety
    /// snapshot of a store that could not be captured), with why: whole, but
    /// unchecked, so not proven to open.
    pub damaged: Vec<String>,
    /// Whether the manifest says a store was wiped or gutted when the bundle
    /// was made (the bytes may be whole; the data is not what it was).
    pub suspicious: bool,
    /// Why, as the manifest records it.
    pub suspicious_reasons: Vec<String>,
}

/// How thorough to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// `quick_check` instead of the full `integrity_check` on SQLite files.
    pub quick: bool,
    /// Check only the manifest, the layout and each file's presence and
    /// size, reading no file's content (a replace restore hashes what it
    /// uses while staging it, so the bundle is read once).
    pub skip_content: bool,
}

/// Verifies the bundle at `bundle`. Problems are findings, not errors: the
/// result is `Err` only when the folder itself cannot be read.
pub fn verify(bundle: &Path, opts: VerifyOptions, progress: &dyn Progress) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        ok: false,
        problems: Vec::new(),
        bundle: bundle.to_path_buf(),
        id: None,
        files_checked: 0,
        bytes_checked: 0,
        damaged: Vec::new(),
        suspicious: false,
        suspicious_reasons: Vec::new(),
    };
    let meta = std::fs::metadata(bundle).map_err(|e| Error::io("could not read", bundle, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a bundle folder",
            bundle.display()
        )));
    }
    let manifest = match Manifest::read_hashed(&bundle.join(MANIFEST_FILE)) {
        Ok((m, sha256)) => {
            if let Some(p) = check_manifest_sum(bundle, &sha256) {
                report
                    .problems
                    .push(problem(None, Some(MANIFEST_SUM_FILE), p));
            }
            m
        }
        Err(e) => {
            report.problems.push(problem(
                None,
                Some(MANIFEST_FILE),
                crate::bundle::locate::error_chain(&e),
            ));
            return Ok(report);
        }
    };
    report.id = Some(manifest.id.clone());
    report.suspicious = manifest.suspicious;
    report.suspicious_reasons = manifest.suspicious_reasons.clone();
    report.damaged = manifest
        .damaged_stores()
        .into_iter()
        .map(|(name, why)| format!("store \"{name}\": {why}"))
        .collect();
    let mut checker = Checker {
        root: bundle,
        opts,
        progress,
        report: &mut report,
        listed: HashSet::new(),
        real_folders: HashSet::new(),
        to_read: Vec::new(),
    };
    checker.check_header(&manifest);
    for store in &manifest.stores {
        checker.check_store(store);
    }
    if !opts.skip_content {
        checker.read_all();
    }
    checker.check_sets(&manifest);
    checker.check_unlisted();
    report.ok = report.problems.is_empty();
    Ok(report)
}

pub use crate::bundle::files_present;
use crate::bundle::in_store;

/// Compares the manifest's sha256 with the checksum file beside it.
fn check_manifest_sum(bundle: &Path, sha256: &str) -> Option<String> {
    let path = bundle.join(MANIFEST_SUM_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.is_file() => return Some("not a regular file".into()),
        Ok(m) if m.len() > 1024 => return Some("too large for a checksum file".into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("is missing, so {MANIFEST_FILE} cannot be checked"))
        }
        Err(e) => return Some(format!("cannot stat: {e}")),
    }
    match std::fs::read(&path) {
        Ok(text) if text == manifest::sum_line(sha256).as_bytes() => None,
        Ok(_) => Some(format!(
            "{MANIFEST_FILE} does not match its recorded sha256 (the manifest or this file is damaged)"
        )),
        Err(e) => Some(format!("cannot read: {e}")),
    }
}

fn problem(store: Option<&str>, path: Option<&str>, text: impl Into<String>) -> Problem {
    Problem {
        store: store.map(str::to_string),
        path: path.map(str::to_string),
        problem: text.into(),
    }
}

struct Checker<'a> {
    root: &'a Path,
    opts: VerifyOptions,
    progress: &'a dyn Progress,
    report: &'a mut VerifyReport,
    /// Every listed file's path in the bundle (hashed: a set of paths
    /// ordered by component costs a quarter of a verify of many files).
    listed: HashSet<PathBuf>,
    /// Folders of the bundle already found to be real folders (not links).
    real_folders: HashSet<PathBuf>,
    /// Files that passed the structural checks, to be read: (store, path,
    /// record), borrowed from the manifest (never a second copy of it).
    to_read: Vec<(&'a str, PathBuf, &'a FileRecord)>,
}

impl<'a> Checker<'a> {
    fn add(&mut self, store: Option<&str>, path: Option<&str>, text: impl Into<String>) {
        self.report.problems.push(problem(store, path, text));
    }

    fn check_header(&mut self, m: &Manifest) {
        let safety = m.reason.as_deref() == Some(manifest::PRE_RESTORE);
        for s in m.stores.iter().filter(|s| s.status == StoreStatus::Damaged) {
            if !safety {
                self.add(
                    Some(&s.name),
                    None,
                    "status damaged outside a safety snapshot (only a pre-restore snapshot keeps raw bytes)",
                );
            }
        }
        if BundleId::parse(&m.id).is_none() {
            self.add(
                None,
                Some(MANIFEST_FILE),
                format!("id \"{}\" is not a bundle id", m.id),
            );
        }
        if m.created_at.parse::<jiff::Timestamp>().is_err() {
            self.add(
                None,
                Some(MANIFEST_FILE),
                format!("created_at \"{}\" is not a time", m.created_at),
            );
        }
        let mut names = BTreeSet::new();
        for s in &m.stores {
            if let Err(e) = validate_store_name(&s.name) {
                self.add(Some(&s.name), None, e);
            }
            if !names.insert(s.name.as_str()) {
                self.add(Some(&s.name), None, "store listed twice");
            }
        }
        let topology = manifest::topology(m.stores.iter().map(|s| (s.name.as_str(), s.kind)));
        if topology != m.topology {
            self.add(
                None,
                Some(MANIFEST_FILE),
                "topology does not match the stores listed",
            );
        }
    }

    fn check_store(&mut self, store: &'a manifest::StoreRecord) {
        let name = store.name.as_str();
        let holds_files = matches!(store.status, StoreStatus::Ok | StoreStatus::Damaged);
        let lists_any = !store.files.is_empty() || !store.symlinks.is_empty();
        if !holds_files && lists_any {
            self.add(
                Some(name),
                None,
                format!("status {:?} but files are listed", store.status),
            );
        }
        if store.status == StoreStatus::Ok && store.files.is_empty() && store.symlinks.is_empty() {
            self.add(Some(name), None, "status ok but no files are listed");
        }
        self.check_layout(store);
        for link in &store.symlinks {
            match link.rel() {
                Err(e) => self.add(
                    Some(name),
                    Some(&link.path),
                    format!("unsafe symlink path: {e}"),
                ),
                Ok(rel) if !in_store(&rel, name) => self.add(
                    Some(name),
                    Some(&link.path),
                    "symlink path is outside the store's folder",
                ),
                Ok(_) => {}
            }
            if let Err(e) = link.target_bytes() {
                self.add(Some(name), Some(&link.path), e);
            }
        }
        for file in &store.files {
            match file.rel() {
                Err(e) => self.add(Some(name), Some(&file.path), format!("unsafe path: {e}")),
                Ok(rel) if !in_store(&rel, name) => self.add(
                    Some(name),
                    Some(&file.path),
                    "path is outside the store's folder",
                ),
                Ok(rel) => self.check_file(name, file, &rel),
            }
        }
    }

    /// What restore and drill rely on beyond each file being intact: the
    /// records fit the store's kind, no path lies under a recorded symlink or
    /// file, no path is recorded both as a file and as a symlink, and a
    /// single-file store names one plain file.
    fn check_layout(&mut self, store: &manifest::StoreRecord) {
        let name = store.name.as_str();
        let files: HashSet<PathBuf> = store.files.iter().filter_map(|f| f.rel().ok()).collect();
        let mut links = HashSet::new();
        for link in &store.symlinks {
            let Ok(rel) = link.rel() else { continue };
            if files.contains(&rel) {
                self.add(
                    Some(name),
                    Some(&link.path),
                    "recorded both as a file and as a symlink",
                );
            }
            if !links.insert(rel) {
                self.add(Some(name), Some(&link.path), "symlink listed twice");
            }
            if link.target.is_empty() || link.target.contains('\0') {
                self.add(
                    Some(name),
                    Some(&link.path),
                    "symlink target is empty or has a NUL byte",
                );
            }
        }
        let paths = store
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.rel()))
            .chain(store.symlinks.iter().map(|l| (l.path.as_str(), l.rel())));
        let mut found = Vec::new();
        for (text, rel) in paths {
            let Ok(rel) = rel else { continue };
            for ancestor in rel.ancestors().skip(1) {
                if links.contains(ancestor) {
                    found.push((
                        text,
                        format!("lies under the recorded symlink {}", ancestor.display()),
                    ));
                } else if files.contains(ancestor) {
                    found.push((
                        text,
                        format!("lies under the recorded file {}", ancestor.display()),
                    ));
                }
            }
        }
        for (path, text) in found {
            self.add(Some(name), Some(path), text);
        }
        if let Some(single) = &store.single_file {
            let safe = fsutil::check_relative(single).is_ok() && !single.contains('/');
            if !safe {
                self.add(
                    Some(name),
                    None,
                    format!("single_file \"{single}\" is not a plain file name"),
                );
            } else if store
                .files
                .iter()
                .any(|f| !is_single_file(store, f, single))
            {
                self.add(
                    Some(name),
                    None,
                    "a single-file store lists a file other than its own",
                );
            }
        }
        self.check_kind_rules(store);
    }

    /// What each store kind's records must look like.
    fn check_kind_rules(&mut self, store: &manifest::StoreRecord) {
        let name = store.name.as_str();
        if store.status == StoreStatus::Damaged {
            // Raw bytes, sidecars included: nothing kind-specific to hold.
            return self.check_symlinks_kind(store);
        }
        match store.kind {
            StoreKind::Sqlite => {
                if store.status == StoreStatus::Ok && store.single_file.is_none() {
                    self.add(
                        Some(name),
                        None,
                        "an sqlite store must name its single file",
                    );
                }
                if store.files.len() > 1 {
                    self.add(Some(name), None, "an sqlite store holds one database");
                }
                for f in store.files.iter().filter(|f| f.sqlite.is_none()) {
                    self.add(
                        Some(name),
                        Some(&f.path),
                        "file of an sqlite store has no SQLite facts",
                    );
                }
            }
            StoreKind::Jsonl => {
                for f in store.files.iter().filter(|f| f.jsonl.is_none()) {
                    self.add(
                        Some(name),
                        Some(&f.path),
                        "file of a jsonl store has no JSONL facts",
                    );
                }
            }
            StoreKind::Dir => {
                if store.single_file.is_some() {
                    self.add(Some(name), None, "a dir store cannot be a single file");
                }
            }
            StoreKind::Chroma => self.check_chroma_rules(store),
            StoreKind::Lancedb => {
                if store.single_file.is_some() {
                    self.add(Some(name), None, "a lancedb store cannot be a single file");
                }
                if store.status == StoreStatus::Ok && store.lancedb.is_none() {
                    self.add(Some(name), None, "a lancedb store records no table facts");
                }
            }
        }
        self.check_symlinks_kind(store);
    }

    /// A captured chroma store is a folder with its database and its facts.
    fn check_chroma_rules(&mut self, store: &manifest::StoreRecord) {
        let name = store.name.as_str();
        if store.single_file.is_some() {
            self.add(Some(name), None, "a chroma store cannot be a single file");
        }
        if store.status != StoreStatus::Ok {
            return;
        }
        let database = format!("{name}/{}", chroma::DATABASE);
        if !store
            .files
            .iter()
            .any(|f| f.path == database && f.sqlite.is_some())
        {
            self.add(
                Some(name),
                None,
                format!("a chroma store must hold {database} as a database"),
            );
        }
        if store.chroma.is_none() {
            self.add(
                Some(name),
                None,
                "a chroma store records no collection facts",
            );
        }
    }

    /// Re-reads each intact chroma and lancedb store as its client would
    /// (see [`chroma::inspect`], [`crate::format::lance::inspect`]) and
    /// compares it with what the manifest records.
    fn check_sets(&mut self, manifest: &Manifest) {
        for store in &manifest.stores {
            let name = store.name.as_str();
            let troubled = self
                .report
                .problems
                .iter()
                .any(|p| p.store.as_deref() == Some(name));
            if store.status != StoreStatus::Ok || troubled {
                continue;
            }
            let copy = self.root.join(name);
            if let Some(recorded) = &store.chroma {
                match chroma::inspect(&copy) {
                    Err(e) => self.add(
                        Some(name),
                        None,
                        format!("not a consistent Chroma store: {e}"),
                    ),
                    Ok(found) => {
                        for d in chroma::differences(recorded, &found) {
                            self.add(Some(name), None, d);
                        }
                    }
                }
            }
            if let Some(recorded) = &store.lancedb {
                if let Err(e) = crate::format::lance::recheck(recorded, &copy, true) {
                    self.add(Some(name), None, e);
                }
            }
        }
    }

    /// Only dir stores record symlinks.
    fn check_symlinks_kind(&mut self, store: &manifest::StoreRecord) {
        if store.kind != StoreKind::Dir && !store.symlinks.is_empty() {
            self.add(Some(&store.name), None, "only dir stores record symlinks");
        }
    }

    fn check_file(&mut self, store: &'a str, file: &'a FileRecord, decoded: &Path) {
        let rel = file.path.as_str();
        let path = self.root.join(decoded);
        if !self.listed.insert(path.clone()) {
            return self.add(Some(store), Some(rel), "path listed twice");
        }
        if let Err(e) = self.check_no_symlinks(decoded) {
            return self.add(Some(store), Some(rel), e);
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.add(Some(store), Some(rel), "file is missing")
            }
            Err(e) => return self.add(Some(store), Some(rel), format!("cannot stat: {e}")),
        };
        if !meta.is_file() {
            return self.add(Some(store), Some(rel), "not a regular file");
        }
        if meta.len() != file.bytes {
            self.add(
                Some(store),
                Some(rel),
                format!("size is {} bytes, manifest says {}", meta.len(), file.bytes),
            );
        }
        self.to_read.push((store, path, file));
    }

    /// Reads every listed file that exists, in parallel: hash, JSONL counts,
    /// SQLite checks. Problems keep the manifest's file order.
    fn read_all(&mut self) {
        let total = self
            .to_read
            .iter()
            .fold(0u64, |t, (_, _, f)| t.saturating_add(f.bytes));
        self.progress.start("verifying", Some(total));
        let checked =
            crate::parallel::map(&self.to_read, crate::parallel::default_jobs(), |item| {
                Ok(self.check_content(item))
            })
            .expect("content checks report problems, never errors");
        self.progress.finish();
        for (bytes, problems) in checked {
            if let Some(bytes) = bytes {
                self.report.files_checked += 1;
                self.report.bytes_checked += bytes;
            }
            self.report.problems.extend(problems);
        }
    }

    /// The content problems of one file, and the bytes read (`None`: unreadable).
    fn check_content(
        &self,
        &(store, ref path, file): &(&str, PathBuf, &FileRecord),
    ) -> (Option<u64>, Vec<Problem>) {
        let (store, rel) = (Some(store), Some(file.path.as_str()));
        let (bytes, sha, lines) = match self.read_file(path, file) {
            Ok(v) => v,
            Err(e) => return (None, vec![problem(store, rel, format!("cannot read: {e}"))]),
        };
        let mut problems = Vec::new();
        if sha != file.sha256 {
            problems.push(problem(store, rel, "sha256 does not match the manifest"));
        }
        if let (Some(want), Some(got)) = (file.jsonl.as_deref(), lines) {
            if *want != got {
                problems.push(problem(
                    store,
                    rel,
                    format!(
                        "has {} lines ({} invalid), manifest says {} ({} invalid)",
                        got.lines, got.invalid_lines, want.lines, want.invalid_lines
                    ),
                ));
            }
        }
        if let Some(facts) = &file.sqlite {
            for p in sqlite::verify_copy(path, facts, !self.opts.quick) {
                problems.push(problem(store, rel, p));
            }
        }
        (Some(bytes), problems)
    }

    /// Hashes a file in one pass, counting JSONL lines on the way when relevant.
    fn read_file(
        &self,
        path: &Path,
        file: &FileRecord,
    ) -> std::io::Result<(u64, hash::Sha256Digest, Option<manifest::JsonlFacts>)> {
        let input = File::open(path)?;
        let result = if file.jsonl.is_some() {
            let mut hasher = Sha256::new();
            let mut scan = LineScan::default();
            let mut bytes = 0u64;
            each_line(input, |line| {
                hasher.update(line);
                bytes += line.len() as u64;
                self.progress.advance(line.len() as u64);
                scan.line(line);
                Ok(())
            })?;
            (
                bytes,
                hash::Sha256Digest::finish(hasher),
                Some(scan.facts()),
            )
        } else {
            let (bytes, sha) = hash::hash_reader(input, |n| self.progress.advance(n))?;
            (bytes, sha, None)
        };
        Ok(result)
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
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!("path goes through a symlink at {}", at.display()))
                }
                Ok(m) if !m.is_dir() => return Err(format!("{} is not a folder", at.display())),
                Ok(_) => {
                    self.real_folders.insert(at.clone());
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Anything in the bundle folder that the manifest does not list is a problem.
    fn check_unlisted(&mut self) {
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(self.root)
            .min_depth(1)
            .follow_links(false)
        {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    found.push((None, format!("cannot walk the bundle: {e}")));
                    continue;
                }
            };
            let path = entry.path();
            let rel = path
                .strip_prefix(self.root)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let kind = entry.file_type();
            if kind.is_dir() {
                continue;
            }
            if kind.is_symlink() {
                found.push((Some(rel), "symlink inside the bundle".into()));
            } else if !kind.is_file() {
                found.push((Some(rel), "special file inside the bundle".into()));
            } else if rel != MANIFEST_FILE
                && rel != MANIFEST_SUM_FILE
                && !self.listed.contains(path)
            {
                found.push((Some(rel), "file is not listed in the manifest".into()));
            }
        }
        for (rel, text) in found {
            let store = rel
                .as_deref()
                .and_then(|r| r.split('/').next())
                .map(str::to_string);
            let store = store.filter(|s| rel.as_deref() != Some(s.as_str()));
            self.add(store.as_deref(), rel.as_deref(), text);
        }
    }
}

/// Whether `file` is a single-file store's own file (or, in a `damaged`
/// store's raw copy, one of its SQLite sidecars).
fn is_single_file(store: &manifest::StoreRecord, file: &FileRecord, single: &str) -> bool {
    let own = format!("{}/{single}", store.name);
    file.path == own
        || (store.status == StoreStatus::Damaged
            && sqlite::SIDECARS
                .iter()
                .any(|suffix| file.path == format!("{own}{suffix}")))
}
