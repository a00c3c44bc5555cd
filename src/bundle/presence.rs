//! The cheap check that a bundle's files are all there: each file its
//! manifest lists is present under its store's folder, a regular file of
//! its recorded size. `prune` relies on it to tell a damaged bundle, and a
//! create checks the bundle it reuses from with it.

use std::path::Path;

use super::in_store;
use crate::error::Result;
use crate::manifest::lines::RecordSink;
use crate::manifest::{FileRecord, Manifest, MANIFEST_FILE};

/// The cheap check `prune` relies on: every file the manifest lists is present
/// under the store's folder, is a regular file and has its recorded size.
/// Returns the first problem found (in manifest order), or `None` when the
/// bundle looks complete. The files are stat'ed on every core, in runs of
/// [`PRESENT_RUN`]: a create runs this on the bundle it reuses from before
/// anything else, and one thread took as long as all the links after it.
pub fn files_present(bundle: &Path, manifest: &Manifest) -> Option<String> {
    // Runs of each store's records, borrowed (a list of every record would
    // be 5 MB at 200,000 files).
    let runs: Vec<(&str, &[FileRecord])> = manifest
        .stores
        .iter()
        .flat_map(|s| {
            s.files
                .chunks(PRESENT_RUN)
                .map(move |run| (s.name.as_str(), run))
        })
        .collect();
    first_problem(&runs, |(store, run), folder| {
        run.iter()
            .find_map(|file| file_problem(bundle, store, file, folder))
    })
}

/// The first problem `check` finds in `runs` of records, in their order;
/// the runs are checked on every core, each with a folder kept open for
/// its files (the files of one folder are stat'ed by name beneath it).
fn first_problem<T: Sync>(
    runs: &[T],
    check: impl Fn(&T, &mut crate::fsutil::LastFolder) -> Option<String> + Sync,
) -> Option<String> {
    let found = crate::parallel::map(runs, crate::parallel::default_jobs(), |run| {
        Ok(check(run, &mut crate::fsutil::LastFolder::default()))
    });
    match found {
        Ok(problems) => problems.into_iter().flatten().next(),
        // Never taken (each run returns `Ok`); were it, the bundle is not
        // called complete.
        Err(e) => Some(e.to_string()),
    }
}

/// How many files one thread of [`files_present`] checks at a time.
const PRESENT_RUN: usize = 1024;

/// Why one listed file is not present as recorded, if it is not.
fn file_problem(
    bundle: &Path,
    store: &str,
    file: &FileRecord,
    folder: &mut crate::fsutil::LastFolder,
) -> Option<String> {
    use rustix::fs::{AtFlags, FileType};
    let path = match file.rel() {
        Ok(rel) if in_store(&rel, store) => bundle.join(rel),
        Ok(_) => return Some(format!("{}: path is outside the store's folder", file.path)),
        Err(e) => return Some(format!("{}: unsafe path: {e}", file.path)),
    };
    let stat = folder
        .of(&path)
        .and_then(|(at, name)| Ok(rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?));
    match stat {
        Ok(m) if FileType::from_raw_mode(m.st_mode) == FileType::RegularFile => {
            let bytes = m.st_size as u64;
            (bytes != file.bytes).then(|| {
                format!(
                    "{}: size is {bytes} bytes, manifest says {}",
                    file.path, file.bytes
                )
            })
        }
        Ok(_) => Some(format!("{}: not a regular file", file.path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("{}: file is missing", file.path))
        }
        Err(e) => Some(format!("{}: cannot stat: {e}", file.path)),
    }
}

/// Reads the manifest of the bundle at `bundle` and checks its files are
/// present as [`files_present`] does, holding none of its file records: a
/// manifest in this tool's layout is read a line at a time, each record
/// checked in runs as it comes (beneath the folder its path names first,
/// which must be, once the stores are known, its store's); any other is
/// parsed whole. Returns the manifest without its file records, and a
/// problem found (whether there is one is as [`files_present`] says; which
/// one, when there are several, may differ).
pub fn read_checking_presence(bundle: &Path) -> Result<(Manifest, Option<String>)> {
    read_checking_presence_with(bundle, &mut Nothing)
}

/// What else is done with each file record of a manifest
/// [`read_checking_presence_with`] reads.
pub trait Also {
    /// Takes a record (in no particular order), with the JSON text it was
    /// read from when it was read alone. An error stops the read.
    fn record(&mut self, record: &mut FileRecord, text: Option<&[u8]>) -> Result<()>;

    /// Forgets every record taken so far: the manifest turned out not to
    /// be in this tool's layout, and each record comes again from the
    /// whole parse.
    fn forget(&mut self) -> Result<()>;
}

/// Nothing else.
struct Nothing;

impl Also for Nothing {
    fn record(&mut self, _: &mut FileRecord, _: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    fn forget(&mut self) -> Result<()> {
        Ok(())
    }
}

/// [`read_checking_presence`], handing each file record to `also` as it is
/// read; the first error `also` returns is returned once the manifest is
/// read.
pub fn read_checking_presence_with(
    bundle: &Path,
    also: &mut dyn Also,
) -> Result<(Manifest, Option<String>)> {
    let path = bundle.join(MANIFEST_FILE);
    let mut sink = Presence {
        bundle,
        pending: Vec::new(),
        checking: None,
        problem: None,
        lists: Vec::new(),
        also,
        also_failed: None,
    };
    let read = Manifest::read_lines::<FileRecord>(&path, &mut sink);
    // The last records are checked once all are read (not when the read
    // failed, or the manifest is checked whole below).
    if matches!(read, Ok(Some(_))) {
        sink.check_pending();
    }
    sink.end_check();
    let Some(read) = read? else {
        let mut manifest = Manifest::read_with_bytes(&path)?.0;
        let problem = files_present(bundle, &manifest);
        sink.also.forget()?;
        for file in manifest.stores.iter_mut().flat_map(|s| &mut s.files) {
            sink.also.record(file, None)?;
        }
        manifest.drop_file_records();
        return Ok((manifest, problem));
    };
    if let Some(e) = sink.also_failed.take() {
        return Err(e);
    }
    let mut manifest = read.manifest;
    // Records of lists written on one line came with the stores.
    let mut problem = files_present(bundle, &manifest).or(sink.problem);
    for (list, found) in sink.lists.iter().enumerate() {
        let store = manifest.stores[read.list_stores[list]].name.as_str();
        match found {
            Some(List {
                folder,
                stray: None,
            }) if folder == store => {}
            Some(List { stray, .. }) => {
                let path = stray.as_deref().unwrap_or("a file");
                problem.get_or_insert(format!("{path}: path is outside the store's folder"));
            }
            None => {}
        }
    }
    for file in manifest.stores.iter_mut().flat_map(|s| &mut s.files) {
        sink.also.record(file, None)?;
    }
    manifest.drop_file_records();
    Ok((manifest, problem))
}

/// The folder the records of one multi-line list lie in.
struct List {
    /// The first component of its first record's path.
    folder: String,
    /// The first record of the list not in that folder, if any.
    stray: Option<String>,
}

/// Checks the records of a line-by-line read in runs, until a problem is
/// found, and hands each to `also`.
struct Presence<'a> {
    bundle: &'a Path,
    /// Records waiting to be checked, with the folder they lie in.
    pending: Vec<(String, FileRecord)>,
    /// The check of the records taken before, under way while more are
    /// read: its first problem, if any.
    checking: Option<std::thread::JoinHandle<Option<String>>>,
    /// The first problem found.
    problem: Option<String>,
    /// The folder of each list's records, by list.
    lists: Vec<Option<List>>,
    /// What else is done with each record.
    also: &'a mut dyn Also,
    /// The first error of `also`.
    also_failed: Option<crate::error::Error>,
}

impl Presence<'_> {
    /// Starts the check of the records waiting, on every core, once the
    /// check of those before is done: the records after them are read
    /// meanwhile (without a thread to start, they are checked here).
    fn check_pending(&mut self) {
        self.end_check();
        let pending = std::mem::take(&mut self.pending);
        if self.problem.is_some() || pending.is_empty() {
            return;
        }
        // Shared, so that records a thread could not be started for are
        // still here to check.
        let pending = std::sync::Arc::new(pending);
        let (bundle, records) = (self.bundle.to_path_buf(), pending.clone());
        let started =
            std::thread::Builder::new().spawn(move || first_problem_of(&bundle, &records));
        match started {
            Ok(checking) => self.checking = Some(checking),
            Err(_) => self.problem = first_problem_of(self.bundle, &pending),
        }
    }

    /// Waits for the check under way, if any, and keeps its problem.
    fn end_check(&mut self) {
        if let Some(checking) = self.checking.take() {
            let found = checking
                .join()
                .unwrap_or_else(|_| Some("the check that files are present failed".into()));
            self.problem = self.problem.take().or(found);
        }
    }
}

/// The first problem of `pending` records of a bundle at `bundle`, checked
/// on every core in runs of [`PRESENT_RUN`].
fn first_problem_of(bundle: &Path, pending: &[(String, FileRecord)]) -> Option<String> {
    let runs: Vec<&[(String, FileRecord)]> = pending.chunks(PRESENT_RUN).collect();
    first_problem(&runs, |run, folder| {
        run.iter()
            .find_map(|(store, file)| file_problem(bundle, store, file, folder))
    })
}

impl RecordSink<FileRecord> for Presence<'_> {
    fn take(&mut self, list: usize, record: FileRecord) {
        self.take_record(list, record, None);
    }

    fn take_text(&mut self, list: usize, record: FileRecord, text: &[u8]) {
        self.take_record(list, record, Some(text));
    }
}

impl Presence<'_> {
    /// Hands `record` (read from `text`) to `also`, then queues it to be checked.
    fn take_record(&mut self, list: usize, mut record: FileRecord, text: Option<&[u8]>) {
        if self.problem.is_some() || self.also_failed.is_some() {
            return;
        }
        if let Err(e) = self.also.record(&mut record, text) {
            self.also_failed = Some(e);
            return;
        }
        // The folder its path names first stands for its store until the
        // stores are known; a list's records all lie in one.
        let folder = record
            .path
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if self.lists.len() <= list {
            self.lists.resize_with(list + 1, || None);
        }
        let seen = self.lists[list].get_or_insert_with(|| List {
            folder: folder.clone(),
            stray: None,
        });
        if seen.folder != folder && seen.stray.is_none() {
            seen.stray = Some(record.path.clone());
        }
        self.pending.push((folder, record));
        if self.pending.len() >= PRESENT_RUN * 8 {
            self.check_pending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest of one dir store listing `d/a` (3 bytes) and `d/b` (0 bytes).
    const MANIFEST: &str = r#"{"format_version":1,"id":"20261207T120000Z","created_at":"2026-12-07T12:00:00Z","label":null,"tool":{"name":"bundle","version":"0.1.0"},"host":"h","git":null,"topology":"t","stores":[{"name":"d","kind":"dir","source":"/x","status":"ok","files":[{"path":"d/a","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},{"path":"d/b","bytes":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}]}"#;

    #[test]
    fn a_manifest_read_line_by_line_finds_what_the_check_of_a_whole_one_finds() {
        for pretty in [false, true] {
            for damage in ["none", "missing", "longer", "stray"] {
                let text = match damage {
                    "stray" => MANIFEST.replace("\"d/b\"", "\"e/b\""),
                    _ => MANIFEST.to_string(),
                };
                let manifest = Manifest::parse(text.as_bytes()).unwrap();
                let dir = tempfile::tempdir().unwrap();
                for folder in ["d", "e"] {
                    std::fs::create_dir(dir.path().join(folder)).unwrap();
                    std::fs::write(dir.path().join(folder).join("a"), "abc").unwrap();
                    if damage != "missing" {
                        let b = if damage == "longer" { "x" } else { "" };
                        std::fs::write(dir.path().join(folder).join("b"), b).unwrap();
                    }
                }
                let bytes = if pretty {
                    serde_json::to_vec_pretty(&manifest).unwrap()
                } else {
                    manifest.to_bytes()
                };
                std::fs::write(dir.path().join(MANIFEST_FILE), bytes).unwrap();
                let (read, problem) = read_checking_presence(dir.path()).unwrap();
                let whole = files_present(dir.path(), &manifest);
                let expected = match damage {
                    "missing" => Some("d/b: file is missing"),
                    "longer" => Some("d/b: size is 1 bytes, manifest says 0"),
                    "stray" => Some("e/b: path is outside the store's folder"),
                    _ => None,
                };
                assert_eq!(whole.as_deref(), expected, "{damage}");
                assert_eq!(problem, whole, "{damage}, pretty: {pretty}");
                assert_eq!(read.id, manifest.id);
                assert!(read.stores[0].files.is_empty());
            }
        }
    }

    #[test]
    fn a_problem_in_a_batch_checked_while_the_next_is_read_is_found() {
        // More records than one batch, so the first is checked while the
        // rest are read; one file of the first is missing, one of the last
        // too long.
        let dir = tempfile::tempdir().unwrap();
        let count = PRESENT_RUN * 8 + 100;
        let empty = crate::hash::Sha256Digest::of(b"");
        let mut manifest = Manifest::parse(MANIFEST.as_bytes()).unwrap();
        manifest.stores[0].files = (0..count)
            .map(|i| FileRecord::new(format!("d/{}/{i}", i / 100), None, 0, empty))
            .collect();
        for (i, file) in manifest.stores[0].files.iter().enumerate() {
            let path = dir.path().join(&file.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let body: &[u8] = if i == count - 1 { b"x" } else { b"" };
            if i != 10 {
                std::fs::write(path, body).unwrap();
            }
        }
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest.to_bytes()).unwrap();
        let (_, problem) = read_checking_presence(dir.path()).unwrap();
        assert_eq!(problem.as_deref(), Some("d/0/10: file is missing"));
        std::fs::write(dir.path().join("d/0/10"), b"").unwrap();
        let (_, problem) = read_checking_presence(dir.path()).unwrap();
        let last = format!(
            "d/{}/{}: size is 1 bytes, manifest says 0",
            (count - 1) / 100,
            count - 1
        );
        assert_eq!(problem, Some(last));
    }
}
