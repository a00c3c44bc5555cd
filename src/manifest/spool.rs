//! File records spooled to disk while a create captures, and spliced into
//! the manifest as it is written.
//!
//! A create of a store of many files made a record per file and held them
//! all until the manifest was written (about 220 bytes a file, beside the
//! walk's units). Each record is instead written, as the compact JSON line
//! the manifest holds, to an unnamed temporary file in the destination
//! (never visible by name, gone when closed or when the process dies) the
//! moment its file is captured; the create keeps only where it is
//! ([`Spooled`], 8 bytes). The manifest is then written from a skeleton
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
use crate::manifest::{FileRecord, Manifest};

/// Where one record's JSON is in a [`RecordSpool`]: its first byte's offset
/// (the low 40 bits: a spool of up to 1 TiB) and its length (the high 24:
/// a record of up to 16 MiB), in 8 bytes, as there is one per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spooled(u64);

/// The bits of a [`Spooled`] that hold the offset.
const OFFSET_BITS: u32 = 40;

impl Spooled {
    /// The record of `len` bytes at `offset`, if they fit.
    fn new(offset: u64, len: usize) -> Option<Spooled> {
        let len = u64::try_from(len).ok()?;
        (offset < 1 << OFFSET_BITS && len < 1 << (64 - OFFSET_BITS))
            .then_some(Spooled(offset | len << OFFSET_BITS))
    }

    /// Its eight bytes, for a place kept where a `Spooled` cannot be (an
    /// atomic that any capture thread may write).
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// The place whose [`Spooled::to_bits`] are `bits`.
    pub fn from_bits(bits: u64) -> Spooled {
        Spooled(bits)
    }

    /// Its first byte's offset.
    fn offset(self) -> u64 {
        self.0 & ((1 << OFFSET_BITS) - 1)
    }

    /// Its length in bytes.
    fn len(self) -> usize {
        (self.0 >> OFFSET_BITS) as usize
    }
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
    /// A new spool in folder `dir` (the destination: the same file system
    /// as the bundle, and as private).
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
        let mut out = self.out.lock().expect("no thread panics holding the spool");
        let offset = out.1;
        let at = Spooled::new(offset, line.len()).ok_or_else(|| {
            self.failed(
                "could not write a temporary file in",
                std::io::ErrorKind::FileTooLarge.into(),
            )
        })?;
        out.0
            .write_all(line)
            .map_err(|e| self.failed("could not write a temporary file in", e))?;
        out.1 += line.len() as u64;
        Ok(at)
    }

    /// The error of a spool that could not do `action` ("could not write
    /// a temporary file in", say).
    fn failed(&self, action: &'static str, e: std::io::Error) -> Error {
        Error::io(action, &self.dir, e)
    }

    /// A reader of the records spooled so far.
    pub fn reader(&self) -> Result<SpoolReader> {
        let mut out = self.out.lock().expect("no thread panics holding the spool");
        let file = (out.0.flush())
            .and_then(|()| out.0.get_ref().try_clone())
            .map_err(|e| self.failed("could not read a temporary file in", e))?;
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
            .map_err(|e| self.failed("could not empty a temporary file in", e))
    }

    /// The record spooled at `at` (a few are read back; see
    /// [`SpoolReader`] for many).
    pub fn read(&self, at: Spooled) -> Result<FileRecord> {
        let mut reader = self.reader()?;
        let line = reader
            .get(at)
            .map_err(|e| self.failed("could not read a temporary file in", e))?;
        serde_json::from_slice(line)
            .map_err(|e| self.failed("could not read a temporary file in", e.into()))
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
        let (offset, len) = (at.offset(), at.len());
        let inside =
            offset >= self.start && offset + len as u64 <= self.start + self.window.len() as u64;
        if !inside {
            self.window.resize(SPOOL_BUF.max(len), 0);
            let mut filled = 0;
            while filled < len {
                let n = self
                    .file
                    .read_at(&mut self.window[filled..], offset + filled as u64)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            self.window.truncate(filled);
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.window[from..from + len])
    }
}

/// Where the records of one store of a manifest are in a spool, in the
/// order the manifest lists them.
pub type SpooledList = Vec<Spooled>;

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
        let Some(list) = list.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        debug_assert!(store.files.is_empty(), "a spooled store holds no records");
        let placeholder = FileRecord::new(
            format!("{nonce}/{i}"),
            None,
            0,
            crate::hash::Sha256Digest::of(b""),
        );
        let text = serde_json::to_vec(&placeholder).expect("a file record serializes");
        store.files = vec![placeholder];
        spliced.push((text, list));
    }
    let mut text = Vec::new();
    skeleton.write_to(&mut text)?;
    let mut rest = &text[..];
    for (placeholder, list) in spliced {
        let at = find(rest, &placeholder).expect("each placeholder is in the skeleton");
        let line_start = rest[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let indent = &rest[line_start..at];
        out.write_all(&rest[..at])?;
        for (n, &record) in list.iter().enumerate() {
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
            reused: bytes.is_multiple_of(2),
            mode: Some(0o644),
            ..FileRecord::new(path.into(), None, bytes, crate::hash::Sha256Digest::of(b""))
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
            Some(at.into_iter().map(Option::unwrap).collect()),
            Some(SpooledList::new()),
            Some(vec![third_at]),
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

    #[test]
    fn a_place_in_a_spool_takes_8_bytes_and_holds_what_fits() {
        assert_eq!(std::mem::size_of::<Spooled>(), 8);
        let at = Spooled::new((1 << OFFSET_BITS) - 1, (1 << 24) - 1).unwrap();
        assert_eq!(
            (at.offset(), at.len()),
            ((1 << OFFSET_BITS) - 1, (1 << 24) - 1)
        );
        assert_eq!(Spooled::new(1 << OFFSET_BITS, 1), None);
        assert_eq!(Spooled::new(0, 1 << 24), None);
    }
}
