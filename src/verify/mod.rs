//! `bundle verify`: prove a bundle is whole, collecting every problem found.
//!
//! Nothing a bundle says about itself is trusted: the manifest must match its
//! checksum file and parse with a
//! known version, every listed path must be safe and hold a regular file with
//! the recorded size and sha256, nothing unlisted may be present, and SQLite and
//! JSONL facts are recomputed from the bytes.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::BundleId;
use crate::config::{validate_store_name, StoreKind};
use crate::error::{Error, Result};
use crate::format::{chroma, sqlite};
use crate::fsutil;
use crate::hash;
use crate::manifest::{self, FileRecord, Manifest, StoreStatus, MANIFEST_FILE, MANIFEST_SUM_FILE};

mod on_disk;
mod records;
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

impl VerifyReport {
    /// The report on `bundle` before anything is checked.
    pub fn of(bundle: PathBuf) -> VerifyReport {
        VerifyReport {
            ok: false,
            problems: Vec::new(),
            bundle,
            id: None,
            files_checked: 0,
            bytes_checked: 0,
            damaged: Vec::new(),
            suspicious: false,
            suspicious_reasons: Vec::new(),
        }
    }

    /// What the manifest says of the bundle as a whole: its id, whether it
    /// is suspicious and why, its damaged stores.
    fn note_manifest(&mut self, manifest: &Manifest) {
        self.id = Some(manifest.id.clone());
        self.suspicious = manifest.suspicious;
        self.suspicious_reasons = manifest.suspicious_reasons.clone();
        self.damaged = manifest
            .damaged_stores()
            .into_iter()
            .map(|(name, why)| format!("store \"{name}\": {why}"))
            .collect();
    }
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
    let meta = std::fs::metadata(bundle).map_err(|e| Error::io("could not read", bundle, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a bundle folder",
            bundle.display()
        )));
    }
    match check(bundle, opts, progress, false) {
        Some(report) => Ok(report),
        // The manifest's records stopped fitting its layout on the second
        // read: it is checked again, parsed whole.
        None => Ok(check(bundle, opts, progress, true).expect("a whole parse is checked whole")),
    }
}

/// A manifest opened for checking: its stores (with the file records of
/// any list written on one line), its sha256, and the stores of its
/// multi-line file lists, read again line by line to be checked.
struct Opened {
    manifest: Manifest,
    sha256: String,
    /// `None`: parsed whole, every record is in `manifest`.
    list_stores: Option<Vec<usize>>,
    /// Bytes of every listed file.
    total_bytes: u64,
}

/// Opens the manifest at `path`: in this tool's layout a line at a time
/// (unless `whole`), so that its records are never all held; else parsed whole.
fn open_manifest(path: &Path, whole: bool) -> Result<Opened> {
    if !whole {
        // Records parsed for their size only: the second read parses them in full.
        let mut sizes = manifest::lines::TotalBytes::default();
        if let Some(read) = Manifest::read_lines::<manifest::lines::RecordBytes>(path, &mut sizes)?
        {
            return Ok(Opened {
                total_bytes: read.manifest.total_bytes().saturating_add(sizes.0),
                manifest: read.manifest,
                sha256: read.sha256,
                list_stores: Some(read.list_stores),
            });
        }
    }
    let (manifest, bytes) = Manifest::read_with_bytes(path)?;
    Ok(Opened {
        total_bytes: manifest.total_bytes(),
        manifest,
        sha256: hash::sha256_hex(&bytes),
        list_stores: None,
    })
}

/// One verify of the bundle; `None` when the manifest was opened a line
/// at a time and its second read no longer fit the layout.
fn check(
    bundle: &Path,
    opts: VerifyOptions,
    progress: &dyn Progress,
    whole: bool,
) -> Option<VerifyReport> {
    let mut report = VerifyReport::of(bundle.to_path_buf());
    let path = bundle.join(MANIFEST_FILE);
    let mut opened = match open_manifest(&path, whole) {
        Ok(opened) => opened,
        Err(e) => {
            let why = crate::bundle::locate::error_chain(&e);
            report
                .problems
                .push(problem(None, Some(MANIFEST_FILE), why));
            return Some(report);
        }
    };
    if let Some(p) = check_manifest_sum(bundle, &opened.sha256) {
        report
            .problems
            .push(problem(None, Some(MANIFEST_SUM_FILE), p));
    }
    report.note_manifest(&opened.manifest);
    // The records already parsed are checked as they go, as streamed ones are.
    let held: Vec<Vec<FileRecord>> = opened
        .manifest
        .stores
        .iter_mut()
        .map(|s| std::mem::take(&mut s.files))
        .collect();
    let manifest = &opened.manifest;
    let mut checker = Checker {
        root: bundle,
        opts,
        progress,
        report: &mut report,
        stores: &manifest.stores,
        keys: records::PathKeys::new(),
        listed: HashSet::new(),
        real_folders: HashSet::new(),
        links: records::PathMap::new(),
        beneath: records::PathMap::new(),
        tallies: vec![Default::default(); manifest.stores.len()],
        pending: Vec::new(),
    };
    checker.check_header(manifest);
    for store in &manifest.stores {
        checker.check_store(store);
    }
    checker.check_symlinks();
    if !opts.skip_content {
        progress.start("verifying", Some(opened.total_bytes));
    }
    for (at, files) in held.into_iter().enumerate() {
        for file in files {
            checker.take_record(at, file);
        }
    }
    let streamed = match &opened.list_stores {
        Some(list_stores) => checker.check_streamed(&path, list_stores, &opened.sha256),
        None => true,
    };
    checker.check_pending();
    if !opts.skip_content {
        progress.finish();
    }
    if !streamed {
        return None;
    }
    checker.judge_tallies();
    checker.check_sets(manifest);
    checker.check_unlisted();
    report.ok = report.problems.is_empty();
    Some(report)
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
    /// The manifest's stores (their file records are taken one by one).
    stores: &'a [manifest::StoreRecord],
    /// The keys of the path digests below.
    keys: records::PathKeys,
    /// Digests of every listed file's bundle-relative path.
    listed: HashSet<u128>,
    /// Folders of the bundle already found to be real folders (not links).
    real_folders: HashSet<PathBuf>,
    /// Digest of each recorded symlink's path, and that path as recorded.
    links: records::PathMap,
    /// Digest of each folder a record lies in, and the first such record.
    beneath: records::PathMap,
    /// What each store's records add up to, by store.
    tallies: Vec<records::Tally>,
    /// Files whose records passed, to be checked on disk together.
    pending: Vec<records::OnDisk>,
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

    /// The checks on a store that need none of its file records; those
    /// that need them all are made once they came (`judge_tallies`).
    fn check_store(&mut self, store: &manifest::StoreRecord) {
        let name = store.name.as_str();
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
            if link.target.is_empty() || link.target.contains('\0') {
                self.add(
                    Some(name),
                    Some(&link.path),
                    "symlink target is empty or has a NUL byte",
                );
            }
        }
        if let Some(single) = &store.single_file {
            if !single_file_is_plain(single) {
                self.add(
                    Some(name),
                    None,
                    format!("single_file \"{single}\" is not a plain file name"),
                );
            }
        }
        self.check_kind_rules(store);
    }

    /// What each store kind's record must look like (its files' records:
    /// as they come, `records::Checker::tally`).
    fn check_kind_rules(&mut self, store: &manifest::StoreRecord) {
        let name = Some(store.name.as_str());
        if store.kind != StoreKind::Dir && !store.symlinks.is_empty() {
            self.add(name, None, "only dir stores record symlinks");
        }
        if store.status == StoreStatus::Damaged {
            // Raw bytes, sidecars included: nothing kind-specific to hold.
            return;
        }
        let ok = store.status == StoreStatus::Ok;
        let single = store.single_file.is_some();
        match store.kind {
            StoreKind::Sqlite if ok && !single => {
                self.add(name, None, "an sqlite store must name its single file")
            }
            StoreKind::Dir if single => self.add(name, None, "a dir store cannot be a single file"),
            StoreKind::Chroma => {
                if single {
                    self.add(name, None, "a chroma store cannot be a single file");
                }
                if ok && store.chroma.is_none() {
                    self.add(name, None, "a chroma store records no collection facts");
                }
            }
            StoreKind::Lancedb => {
                if single {
                    self.add(name, None, "a lancedb store cannot be a single file");
                }
                if ok && store.lancedb.is_none() {
                    self.add(name, None, "a lancedb store records no table facts");
                }
            }
            _ => {}
        }
    }

    /// Reads the manifest at `path` again, line by line, checking each of
    /// its multi-line lists' records as it comes; `false` when it no longer
    /// fits the layout (it is then checked whole). Read otherwise than the
    /// first time, it is a problem.
    fn check_streamed(&mut self, path: &Path, list_stores: &[usize], sha256: &str) -> bool {
        let mut sink = records::Streamed {
            checker: self,
            list_stores,
        };
        let again = Manifest::read_lines(path, &mut sink);
        let changed = match again {
            Ok(None) => return false,
            Ok(Some(again)) => again.sha256 != sha256 || again.list_stores != list_stores,
            Err(_) => true,
        };
        if changed {
            self.add(
                None,
                Some(MANIFEST_FILE),
                "changed while it was being verified; verify again",
            );
        }
        true
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
                && !path
                    .strip_prefix(self.root)
                    .is_ok_and(|rel| self.listed.contains(&self.keys.of(rel)))
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

/// Whether a single-file store's `single_file` is a plain file name.
fn single_file_is_plain(single: &str) -> bool {
    fsutil::check_relative(single).is_ok() && !single.contains('/')
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle of one dir store holding `d/a` ("abc"), its manifest in
    /// this tool's layout.
    const MANIFEST: &str = r#"{"format_version":1,"id":"20261207T120000Z","created_at":"2026-12-07T12:00:00Z","label":null,"tool":{"name":"bundle","version":"0.1.0"},"host":"h","git":null,"topology":"t","stores":[{"name":"d","kind":"dir","source":"/x","status":"ok","files":[{"path":"d/a","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}]}]}"#;

    /// The manifest, with its topology.
    fn sample() -> Manifest {
        let mut manifest = Manifest::parse(MANIFEST.as_bytes()).unwrap();
        manifest.topology = manifest::topology([("d", StoreKind::Dir)]);
        manifest
    }

    /// Writes the bundle; returns its folder and manifest path.
    fn bundle() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a"), "abc").unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        std::fs::write(&path, sample().to_bytes()).unwrap();
        (dir, path)
    }

    /// Opens the manifest at `path` a line at a time, then lets `between`
    /// change it before the second read; whether that read still fit the
    /// layout, the problems found and the files read.
    fn second_read(path: &Path, between: impl FnOnce()) -> (bool, Vec<String>, u64) {
        let opened = open_manifest(path, false).unwrap();
        let list_stores = opened.list_stores.clone().expect("read a line at a time");
        between();
        let root = path.parent().unwrap();
        let mut report = VerifyReport::of(root.to_path_buf());
        let mut checker = Checker {
            root,
            opts: VerifyOptions::default(),
            progress: &crate::progress::NoProgress,
            report: &mut report,
            stores: &opened.manifest.stores,
            keys: records::PathKeys::new(),
            listed: HashSet::new(),
            real_folders: HashSet::new(),
            links: records::PathMap::new(),
            beneath: records::PathMap::new(),
            tallies: vec![Default::default(); opened.manifest.stores.len()],
            pending: Vec::new(),
        };
        let fits = checker.check_streamed(path, &list_stores, &opened.sha256);
        checker.check_pending();
        let problems = report.problems.iter().map(|p| p.problem.clone()).collect();
        (fits, problems, report.files_checked)
    }

    #[test]
    fn a_manifest_read_twice_alike_is_checked_once() {
        let (_dir, path) = bundle();
        let (fits, problems, read) = second_read(&path, || {});
        assert!(fits);
        assert_eq!((problems, read), (Vec::<String>::new(), 1));
    }

    #[test]
    fn a_manifest_changed_between_its_two_reads_is_a_problem() {
        let (_dir, path) = bundle();
        let (fits, problems, _) = second_read(&path, || {
            let mut changed = sample();
            changed.host = "another host".into();
            std::fs::write(&path, changed.to_bytes()).unwrap();
        });
        assert!(fits);
        assert_eq!(
            problems,
            vec!["changed while it was being verified; verify again".to_string()]
        );
    }

    #[test]
    fn a_manifest_out_of_the_layout_on_its_second_read_is_checked_whole() {
        let (dir, path) = bundle();
        let (fits, _, _) = second_read(&path, || {
            std::fs::write(&path, serde_json::to_vec_pretty(&sample()).unwrap()).unwrap();
        });
        assert!(!fits);
        // The whole verify then parses it whole; only its checksum file,
        // never written here, is missing.
        let report = verify(
            dir.path(),
            VerifyOptions::default(),
            &crate::progress::NoProgress,
        );
        let problems: Vec<String> = report
            .unwrap()
            .problems
            .into_iter()
            .map(|p| p.problem)
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("is missing"), "{problems:?}");
    }
}
