//! A restore's reading of the bundle's manifest without holding its file
//! records: the records of each multi-line file list are counted and
//! dropped on the first read, then read again, a line at a time, each time
//! their store is planned (see [`crate::manifest::lines`]), so that a
//! store of many files is never held both as records and as steps. A
//! manifest in another layout is parsed whole and its records held.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::lines::RecordSink;
use crate::manifest::{FileRecord, Manifest, MANIFEST_FILE};
use crate::store::RecordStream;

/// The bundle's manifest, without the records of its multi-line file lists.
pub(super) struct ReadManifest {
    /// The manifest; a store whose records are streamed has none.
    pub manifest: Manifest,
    /// Where the records not in it are.
    pub streams: Streams,
}

/// Where the records of a manifest's stores are when they are streamed.
pub(super) struct Streams {
    /// The manifest file.
    path: PathBuf,
    /// sha256 (hex) of the manifest's bytes.
    pub sha256: String,
    /// For each store (in the manifest's order), where its records are
    /// when they are streamed (`None`: held in its record, if any).
    streamed: Vec<Option<Streamed>>,
}

impl Streams {
    /// The records of the store at `place` in the manifest, if streamed.
    pub fn of(&self, place: usize) -> Option<ManifestRecords> {
        let streamed = (*self.streamed.get(place)?)?;
        Some(ManifestRecords {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            streamed,
        })
    }
}

/// Where a store's file records are in the manifest, and what they add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Streamed {
    /// The how-manieth multi-line file list of the manifest.
    pub list: usize,
    /// How many records it holds.
    pub files: usize,
    /// The bytes they add up to.
    pub bytes: u64,
}

/// Reads the manifest of the bundle at `bundle`, its file records counted
/// and dropped when it is in this tool's layout (else held).
pub(super) fn read(bundle: &Path) -> Result<ReadManifest> {
    let path = bundle.join(MANIFEST_FILE);
    let mut counted = Counted::default();
    match Manifest::read_lines::<FileRecord>(&path, &mut counted)? {
        Some(read) => {
            let mut streamed = vec![None; read.manifest.stores.len()];
            for (list, &store) in read.list_stores.iter().enumerate() {
                let (files, bytes) = counted.lists.get(list).copied().unwrap_or_default();
                streamed[store] = Some(Streamed { list, files, bytes });
            }
            Ok(ReadManifest {
                manifest: read.manifest,
                streams: Streams {
                    path,
                    sha256: read.sha256,
                    streamed,
                },
            })
        }
        None => {
            let (manifest, bytes) = Manifest::read_with_bytes(&path)?;
            Ok(ReadManifest {
                streams: Streams {
                    path,
                    sha256: crate::hash::sha256_hex(&bytes),
                    streamed: vec![None; manifest.stores.len()],
                },
                manifest,
            })
        }
    }
}

/// Each list's record count and bytes; the records dropped.
#[derive(Default)]
struct Counted {
    lists: Vec<(usize, u64)>,
}

impl RecordSink<FileRecord> for Counted {
    fn take(&mut self, list: usize, record: FileRecord) {
        if self.lists.len() <= list {
            self.lists.resize(list + 1, (0, 0));
        }
        let (files, bytes) = &mut self.lists[list];
        *files += 1;
        *bytes = bytes.saturating_add(record.bytes);
    }
}

/// The records of one store, read again from the manifest each time they
/// are asked for: it must still be the manifest first read (the same
/// sha256), else the restore stops before anything is written.
#[derive(Debug, Clone)]
pub(super) struct ManifestRecords {
    /// The manifest file.
    pub path: PathBuf,
    /// Its sha256 when first read.
    pub sha256: String,
    /// Where the records are.
    pub streamed: Streamed,
}

impl RecordStream for ManifestRecords {
    fn count(&self) -> usize {
        self.streamed.files
    }

    fn each(&mut self, take: &mut dyn FnMut(&FileRecord) -> Result<()>) -> Result<()> {
        let mut sink = OneList {
            list: self.streamed.list,
            take,
            failed: None,
        };
        let read = Manifest::read_lines::<FileRecord>(&self.path, &mut sink)?;
        // A manifest that changed is the first thing wrong, whatever the
        // records read from it made of the plan.
        if read.is_none_or(|r| r.sha256 != self.sha256) {
            return Err(Error::Refused(format!(
                "the bundle's manifest {} changed while it was being restored; nothing was written by this step: verify the bundle and run the restore again",
                self.path.display()
            )));
        }
        sink.failed.map_or(Ok(()), Err)
    }
}

/// Hands the records of list `list` to `take` until it fails.
struct OneList<'t> {
    list: usize,
    take: &'t mut dyn FnMut(&FileRecord) -> Result<()>,
    failed: Option<Error>,
}

impl RecordSink<FileRecord> for OneList<'_> {
    fn take(&mut self, list: usize, record: FileRecord) {
        if list == self.list && self.failed.is_none() {
            if let Err(e) = (self.take)(&record) {
                self.failed = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle folder holding only a manifest of two stores (one of them
    /// with two files), written as this tool lays manifests out.
    fn bundle_with_manifest() -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest: Manifest = serde_json::from_str(crate::manifest::tests::SAMPLE).unwrap();
        let mut second = manifest.stores[0].clone();
        second.name = "docs".into();
        second.kind = crate::config::StoreKind::Dir;
        second.files = ["docs/a", "docs/b"]
            .iter()
            .zip([3u64, 4])
            .map(|(p, bytes)| {
                let mut f = manifest.stores[0].files[0].clone();
                f.path = p.to_string();
                f.bytes = bytes;
                f.jsonl = None;
                f
            })
            .collect();
        manifest.stores.push(second);
        let mut bytes = Vec::new();
        manifest.write_to(&mut bytes).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
        (dir, manifest)
    }

    #[test]
    fn records_are_counted_then_streamed_again_from_the_same_manifest() {
        let (dir, whole) = bundle_with_manifest();
        let read = read(dir.path()).unwrap();
        assert!(read.manifest.stores.iter().all(|s| s.files.is_empty()));
        assert!(read.streams.of(0).is_some() && read.streams.of(2).is_none());
        let mut records = read
            .streams
            .of(1)
            .expect("the docs store's records are streamed");
        let docs = records.streamed;
        assert_eq!((docs.files, docs.bytes), (2, 7));
        assert_eq!(records.path, dir.path().join(MANIFEST_FILE));
        assert_eq!(records.count(), 2);
        let mut paths = Vec::new();
        records
            .each(&mut |f| {
                paths.push(f.path.clone());
                Ok(())
            })
            .unwrap();
        let expected: Vec<String> = whole.stores[1]
            .files
            .iter()
            .map(|f| f.path.clone())
            .collect();
        assert_eq!(paths, expected);

        // The first error of the one taking them is the outcome.
        let mut calls = 0;
        let failed = records.each(&mut |_| {
            calls += 1;
            Err(Error::Refused("no".into()))
        });
        assert!(matches!(failed, Err(Error::Refused(m)) if m == "no"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_manifest_changed_since_it_was_first_read_is_refused() {
        let (dir, _) = bundle_with_manifest();
        let read = read(dir.path()).unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("docs/b", "docs/c")).unwrap();
        let mut records = read.streams.of(1).unwrap();
        let refused = records.each(&mut |_| Ok(()));
        assert!(
            matches!(&refused, Err(Error::Refused(m)) if m.contains("changed while it was being restored")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_manifest_in_another_layout_keeps_its_records() {
        let (dir, whole) = bundle_with_manifest();
        let pretty = serde_json::to_vec_pretty(&whole).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), &pretty).unwrap();
        let read = read(dir.path()).unwrap();
        assert!(read.streams.of(0).is_none() && read.streams.of(1).is_none());
        assert_eq!(read.manifest.stores[1].files.len(), 2);
        assert_eq!(read.streams.sha256, crate::hash::sha256_hex(&pretty));
    }
}
