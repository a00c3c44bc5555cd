//! The bundles a create is judged against and reuses from, read newest
//! first until it has what it needs: each store's shrink baseline (the
//! newest bundle in which it was healthy, see [`crate::shrink`]) and, with
//! reuse, the newest bundle that passes the quick check
//! ([`crate::bundle::presence`]), whose unchanged copies it hard-links.
//!
//! No bundle's file records are held: the one reused from is indexed as
//! its manifest is read a line at a time ([`crate::reuse`]), and the
//! others are sized on the way and dropped.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bundle::presence::{read_checking_presence_with, Also};
use crate::config::StoreSpec;
use crate::error::Result;
use crate::manifest::lines::RecordSink;
use crate::manifest::spool::RecordSpool;
use crate::manifest::{FileRecord, Manifest, MANIFEST_FILE};
use crate::reuse::Previous;
use crate::shrink::{Baseline, FileSums};

/// What a create is judged against and reuses from.
#[derive(Debug, Default)]
pub struct History {
    /// The shrink baseline of each store that has one (see [`crate::shrink`]).
    pub baselines: Vec<Baseline>,
    /// The bundle reused from, and the spool its reusable records are in
    /// (the create spools its new records there too).
    pub previous: Option<Reusable>,
}

/// Reads the history of a create of `stores` into `destination` (where the
/// spool of a bundle to reuse from is made); `reuse` asks for a bundle to
/// reuse from. A bundle that cannot be read is passed over.
pub fn read(destination: &Path, stores: &[StoreSpec], reuse: bool) -> History {
    let mut missing: std::collections::BTreeSet<&str> =
        stores.iter().map(|s| s.name.as_str()).collect();
    let mut history = History::default();
    let folders = crate::bundle::newest_first(destination).unwrap_or_default();
    for (_, name, path) in folders {
        let wanted = reuse && history.previous.is_none();
        let read = match wanted {
            true => read_candidate(&path, destination),
            false => read_counted(&path).map(|(m, sums)| (m, sums, None)),
        };
        let Ok((manifest, sums, previous)) = read else {
            continue;
        };
        if manifest.id != name {
            continue;
        }
        if previous.is_some() {
            history.previous = previous;
        }
        let before = missing.len();
        missing.retain(|name| !crate::shrink::healthy_in(&manifest, name));
        if missing.len() < before {
            let counted =
                |s: &crate::manifest::StoreRecord| sums.get(&s.name).copied().unwrap_or_default();
            history
                .baselines
                .push(Baseline::of_counted(&manifest, counted));
        }
        if missing.is_empty() && (!reuse || history.previous.is_some()) {
            break;
        }
    }
    history
}

/// What each store folder's records (each by the folder its path names
/// first) add up to.
type Sums = BTreeMap<String, FileSums>;

/// A bundle to reuse from: its index, and the spool its records are in.
type Reusable = (Previous, RecordSpool);

/// Counts `record` in `sums`.
fn count(sums: &mut Sums, record: &FileRecord) {
    let folder = record.path.split('/').next().unwrap_or_default();
    match sums.get_mut(folder) {
        Some(s) => s.add(record),
        None => sums.entry(folder.to_string()).or_default().add(record),
    }
}

/// Reads the bundle at `path` as one to reuse from: its manifest without
/// records, what its stores add up to, and, when its files are all
/// present, its index and the spool (in `destination`) of its records.
fn read_candidate(path: &Path, destination: &Path) -> Result<(Manifest, Sums, Option<Reusable>)> {
    let mut candidate = Candidate {
        bundle: path,
        destination,
        sums: Sums::new(),
        previous: Previous::of(path),
        spool: RecordSpool::new_in(destination)?,
    };
    let (manifest, problem) = read_checking_presence_with(path, &mut candidate)?;
    let reusable = problem
        .is_none()
        .then(|| (candidate.previous.finish(), candidate.spool));
    Ok((manifest, candidate.sums, reusable))
}

/// A bundle to reuse from, as its records are read.
struct Candidate<'a> {
    bundle: &'a Path,
    destination: &'a Path,
    sums: Sums,
    previous: Previous,
    spool: RecordSpool,
}

impl Also for Candidate<'_> {
    fn record(&mut self, record: &mut FileRecord, text: Option<&[u8]>) -> Result<()> {
        count(&mut self.sums, record);
        self.previous.add(record, text, &self.spool)
    }

    fn forget(&mut self) -> Result<()> {
        self.sums = Sums::new();
        self.previous = Previous::of(self.bundle);
        self.spool = RecordSpool::new_in(self.destination)?;
        Ok(())
    }
}

/// Reads the manifest of the bundle at `path` (a line at a time when it can)
/// for its stores' sizes: the manifest, which holds the records that were
/// not read line by line, and what the others add up to.
fn read_counted(path: &Path) -> Result<(Manifest, Sums)> {
    /// Counts the records read line by line.
    struct Counting(Sums);
    impl RecordSink<FileRecord> for Counting {
        fn take(&mut self, _list: usize, record: FileRecord) {
            count(&mut self.0, &record);
        }
    }
    let path = path.join(MANIFEST_FILE);
    let mut sink = Counting(Sums::new());
    let manifest = match Manifest::read_lines::<FileRecord>(&path, &mut sink)? {
        Some(read) => read.manifest,
        None => {
            // Not the layout after all: every record is in the whole parse,
            // those counted already among them.
            sink.0.clear();
            Manifest::read_with_bytes(&path)?.0
        }
    };
    Ok((manifest, sink.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StoreKind, StoreSpec};
    use crate::reuse::tests::{stat, unit};

    /// How a test manifest is laid out.
    #[derive(Clone, Copy)]
    enum Layout {
        /// This tool's.
        Tool,
        /// Indented throughout.
        Pretty,
        /// This tool's until the second record, which is on two lines: the
        /// first was taken before the layout is found not to fit.
        Split,
    }

    /// A bundle `id` in `destination` of one dir store `s` whose two files
    /// are present, its manifest laid out as `layout`; the second file's
    /// record says it was reused.
    fn bundle(destination: &Path, id: &str, layout: Layout) {
        let folder = destination.join(id);
        std::fs::create_dir_all(folder.join("s")).unwrap();
        std::fs::write(folder.join("s/a"), b"abc").unwrap();
        std::fs::write(folder.join("s/b"), b"").unwrap();
        let stat = |n| format!(r#"{{"dev":1,"ino":{n},"bytes":{n},"mtime_ns":1,"ctime_ns":1}}"#);
        let text = format!(
            r#"{{"format_version":1,"id":"{id}","created_at":"2026-12-07T12:00:00Z","label":null,"tool":{{"name":"bundle","version":"0.1.0"}},"host":"h","git":null,"topology":"t","stores":[{{"name":"s","kind":"dir","source":"/x","status":"ok","files":[{{"path":"s/a","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","source_stat":{},"reused":false,"mode":420,"uid":1,"gid":1}},{{"path":"s/b","bytes":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","source_stat":{},"reused":true,"mode":420,"uid":1,"gid":1}}]}}]}}"#,
            stat(3),
            stat(0)
        );
        let manifest: Manifest = serde_json::from_str(&text).unwrap();
        let mut bytes = Vec::new();
        match layout {
            Layout::Pretty => serde_json::to_writer_pretty(&mut bytes, &manifest).unwrap(),
            Layout::Tool | Layout::Split => manifest.write_to(&mut bytes).unwrap(),
        }
        if let Layout::Split = layout {
            let text = String::from_utf8(bytes).unwrap();
            let split = text.replace(r#"{"path":"s/b""#, "{\n\"path\":\"s/b\"");
            assert_ne!(split, text);
            bytes = split.into_bytes();
        }
        std::fs::write(folder.join(MANIFEST_FILE), bytes).unwrap();
    }

    #[test]
    fn a_bundle_is_sized_and_the_one_reused_from_indexed_in_any_layout() {
        for layout in [Layout::Tool, Layout::Pretty, Layout::Split] {
            let dir = tempfile::tempdir().unwrap();
            bundle(dir.path(), "20261207T120000Z", layout);
            let spec = StoreSpec {
                name: "s".into(),
                kind: StoreKind::Dir,
                path: "/x".into(),
                key: None,
                shrink_alarm: None,
                exclude: Vec::new(),
                check: None,
            };
            // Without reuse, the bundle is only sized.
            let sized = read(dir.path(), std::slice::from_ref(&spec), false);
            assert_eq!(sized.baselines.len(), 1);
            assert_eq!(sized.baselines[0].healthy, [("s".into(), 3, "bytes")]);
            assert!(sized.previous.is_none());
            let history = read(dir.path(), &[spec], true);
            assert_eq!(history.baselines.len(), 1);
            assert_eq!(history.baselines[0].healthy, [("s".into(), 3, "bytes")]);
            let (previous, spool) = history.previous.expect("reused from");
            let mut units = vec![unit("s/a", None), unit("s/b", None)];
            previous.match_units(&mut units);
            for (unit, n) in units.iter().zip([3, 0]) {
                let entry = previous.entry_for(unit, &stat(n), false).expect("reusable");
                let record = spool.read(entry.spooled()).unwrap();
                assert_eq!((record.path.as_str(), record.reused), (&*unit.path, true));
            }
            // Nothing of the spool shows in the destination.
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
    }
}
