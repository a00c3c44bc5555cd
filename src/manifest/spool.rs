//! File records spooled to disk while a create captures, and spliced into
//! the manifest as it is written.
//!
//! A create of a store of many files made a record per file and held them
//! all until the manifest was written (about 220 bytes a file, beside the
//! walk's units). Each record is instead written, as the compact JSON line
//! the manifest holds, to an unnamed temporary file in the bundle being
//! built (never visible by name, gone when closed or when the process
//! dies) the moment its file is captured; the create keeps only where it
//! is ([`Spooled`], 12 bytes). The manifest is then written from a skeleton
//! in which each spooled store's list holds one placeholder record, whose
//! line is replaced by the spooled lines in path order
//! ([`write_spliced`]): the bytes are exactly those of the whole manifest
//! written at once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::manifest::{FileRecord, Manifest, RECORD_DEPTH};

/// Where one record's JSON is in a [`RecordSpool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spooled {
    /// Its first byte's offset.
    offset: u64,
    /// Its length in bytes.
    len: u32,
}

/// An unnamed temporary file that records are appended to from every
/// capture thread.
#[derive(Debug)]
pub struct RecordSpool {
    /// The folder it is in (for messages).
    dir: PathBuf,
    /// The file behind a buffer, and how many bytes it holds.
    out: Mutex<(BufWriter<File>, u64)>,
}

/// How many bytes of a spool are written or read at once.
const SPOOL_BUF: usize = 256 * 1024;

impl RecordSpool {
    /// A new spool in folder `dir` (the bundle being built: the same file
    /// system, and as private).
    pub fn new_in(dir: &Path) -> Result<RecordSpool> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io("could not create a temporary file in", dir, e))?;
        Ok(RecordSpool {
            dir: dir.to_path_buf(),
            out: Mutex::new((BufWriter::with_capacity(SPOOL_BUF, file), 0)),
        })
    }

    /// Appends `record` (serialized before the lock is taken).
    pub fn put(&self, record: &FileRecord) -> Result<Spooled> {
        let line = serde_json::to_vec(record).expect("a file record serializes");
        self.put_text(&line)
    }

    /// Appends a record's JSON text as it is (one record, parsed from it,
    /// on one line).
    pub fn put_text(&self, line: &[u8]) -> Result<Spooled> {
        let len = u32::try_from(line.len()).map_err(|_| {
            Error::io(
                "could not write a temporary file in",
                &self.dir,
                std::io::ErrorKind::FileTooLarge.into(),
            )
        })?;
        let mut out = self.out.lock().expect("no thread panics holding the spool");
        let offset = out.1;
        out.0
            .write_all(line)
            .map_err(|e| Error::io("could not write a temporary file in", &self.dir, e))?;
        out.1 += u64::from(len);
        Ok(Spooled { offset, len })
    }

    /// A reader of the records spooled so far.
    pub fn reader(&self) -> Result<SpoolReader> {
        let mut out = self.out.lock().expect("no thread panics holding the spool");
        let file = (out.0.flush())
            .and_then(|()| out.0.get_ref().try_clone())
            .map_err(|e| Error::io("could not read a temporary file in", &self.dir, e))?;
        Ok(SpoolReader {
            file,
            window: Vec::new(),
            start: 0,
        })
    }

    /// Empties the spool once nothing more is read from it: its pages,
    /// written to the file system's cache, are dropped, not written back by
    /// the sync that makes the bundle durable.
    pub fn discard(&self) -> Result<()> {
        let out = self.out.lock().expect("no thread panics holding the spool");
        out.0
            .get_ref()
            .set_len(0)
            .map_err(|e| Error::io("could not empty a temporary file in", &self.dir, e))
    }

    /// The record spooled at `at` (a few are read back; see
    /// [`SpoolReader`] for many).
    pub fn read(&self, at: Spooled) -> Result<FileRecord> {
        let mut reader = self.reader()?;
        let line = reader
            .get(at)
            .map_err(|e| Error::io("could not read a temporary file in", &self.dir, e))?;
        serde_json::from_slice(line).map_err(|e| {
            Error::io(
                "could not read a temporary file in",
                &self.dir,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }
}

/// Reads records back from a spool through a window of its bytes: records
/// asked for in about the order they were spooled are read a window at a
/// time.
#[derive(Debug)]
pub struct SpoolReader {
    file: File,
    /// The bytes of the spool from `start` on.
    window: Vec<u8>,
    start: u64,
}

impl SpoolReader {
    /// The JSON of the record at `at`.
    pub fn get(&mut self, at: Spooled) -> std::io::Result<&[u8]> {
        let len = at.len as usize;
        let inside = at.offset >= self.start
            && at.offset + at.len as u64 <= self.start + self.window.len() as u64;
        if !inside {
            self.window.resize(SPOOL_BUF.max(len), 0);
            let mut filled = 0;
            while filled < len {
                let n = self
                    .file
                    .read_at(&mut self.window[filled..], at.offset + filled as u64)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            self.window.truncate(filled);
            self.start = at.offset;
        }
        let from = (at.offset - self.start) as usize;
        Ok(&self.window[from..from + len])
    }
}

/// The records of one store of a manifest that are in a spool, in the
/// order the manifest lists them.
#[derive(Debug, Default)]
pub struct SpooledList {
    /// Where each is.
    pub records: Vec<Spooled>,
}

/// Writes `manifest` to `out` as [`Manifest::write_to`] would if each store
/// `i` with `lists[i]` held in its `files` (empty here) the records of that
/// list, read from `spool`.
pub fn write_spliced(
    manifest: &Manifest,
    lists: &[Option<SpooledList>],
    spool: &mut SpoolReader,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let nonce = crate::manifest::lines::placeholder_nonce();
    let mut skeleton = manifest.clone();
    let mut spliced = Vec::new();
    for (i, (store, list)) in skeleton.stores.iter_mut().zip(lists).enumerate() {
        let Some(list) = list.as_ref().filter(|l| !l.records.is_empty()) else {
            continue;
        };
        debug_assert!(store.files.is_empty(), "a spooled store holds no records");
        let placeholder = FileRecord {
            path: format!("{nonce}/{i}"),
            path_hex: None,
            bytes: 0,
            sha256: crate::hash::Sha256Digest::of(b""),
            sqlite: None,
            jsonl: None,
            source_stat: None,
            reused: false,
            mode: None,
            uid: None,
            gid: None,
        };
        let text = serde_json::to_vec(&placeholder).expect("a file record serializes");
        store.files = vec![placeholder];
        spliced.push((text, list));
    }
    let mut text = Vec::new();
    crate::json_layout::write_outlined(&mut text, &skeleton, RECORD_DEPTH)?;
    text.push(b'\n');
    let mut rest = &text[..];
    for (placeholder, list) in spliced {
        let at = find(rest, &placeholder).expect("each placeholder is in the skeleton");
        let line_start = rest[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let indent = &rest[line_start..at];
        out.write_all(&rest[..at])?;
        for (n, &record) in list.records.iter().enumerate() {
            if n > 0 {
                out.write_all(b",\n")?;
                out.write_all(indent)?;
            }
            out.write_all(spool.get(record)?)?;
        }
        rest = &rest[at + placeholder.len()..];
    }
    out.write_all(rest)
}

/// Where `needle` first is in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::StoreRecord;

    /// A record of `path` with a few facts set.
    fn record(path: &str, bytes: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            path_hex: None,
            bytes,
            sha256: crate::hash::Sha256Digest::of(b""),
            sqlite: None,
            jsonl: None,
            source_stat: None,
            reused: bytes.is_multiple_of(2),
            mode: Some(0o644),
            uid: None,
            gid: None,
        }
    }

    /// A manifest of three stores (the middle one empty) from a sample.
    fn manifest(stores: Vec<Vec<FileRecord>>) -> Manifest {
        let sample: Manifest = serde_json::from_str(
            r#"{"format_version":1,"id":"20261207T120000Z","created_at":"2026-12-07T12:00:00Z","label":"x","tool":{"name":"bundle","version":"0.1.0"},"host":"h","git":null,"topology":"t","stores":[]}"#,
        )
        .unwrap();
        let store = |i: usize, files| StoreRecord {
            name: format!("s{i}"),
            kind: crate::config::StoreKind::Dir,
            source: "/src".into(),
            status: crate::manifest::StoreStatus::Ok,
            single_file: None,
            files,
            symlinks: Vec::new(),
            exclude: Vec::new(),
            error: None,
            chroma: None,
            lancedb: None,
        };
        Manifest {
            stores: stores
                .into_iter()
                .enumerate()
                .map(|(i, f)| store(i, f))
                .collect(),
            ..sample
        }
    }

    #[test]
    fn spliced_records_give_the_bytes_of_the_whole_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<FileRecord> = (0..3000)
            .map(|n| record(&format!("s0/f{n:05}"), n))
            .collect();
        let third = vec![record("s2/\"quoted\"\n", 7)];
        let whole = manifest(vec![first.clone(), Vec::new(), third.clone()]);
        let mut expected = Vec::new();
        whole.write_to(&mut expected).unwrap();

        // Spooled out of order, as capture threads finish.
        let spool = RecordSpool::new_in(dir.path()).unwrap();
        let mut at = vec![None; first.len()];
        for n in (0..first.len())
            .rev()
            .step_by(2)
            .chain((0..first.len()).step_by(2))
        {
            at[n].get_or_insert_with(|| spool.put(&first[n]).unwrap());
        }
        let third_at = spool.put(&third[0]).unwrap();
        let mut reader = spool.reader().unwrap();
        let lists = vec![
            Some(SpooledList {
                records: at.into_iter().map(Option::unwrap).collect(),
            }),
            Some(SpooledList::default()),
            Some(SpooledList {
                records: vec![third_at],
            }),
        ];
        let mut written = Vec::new();
        let skeleton = manifest(vec![Vec::new(), Vec::new(), Vec::new()]);
        write_spliced(&skeleton, &lists, &mut reader, &mut written).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        // Nothing of the spool is visible in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Emptied once the manifest is written: nothing is left to read.
        spool.discard().unwrap();
        assert!(spool.reader().unwrap().get(third_at).is_err());
    }
}
