//! Reading a manifest one line at a time, in the layout this tool writes it
//! (`crate::json_layout`: each file record on a line of its own), so that
//! its bytes are never held whole: a manifest of 200,000 files is 58 MB,
//! more than the records parsed from it.
//!
//! The lines outside the file lists are put together into a skeleton, where
//! each multi-line file list is replaced by one placeholder record whose
//! path carries a number no manifest can guess; each record line is parsed
//! on its own. The skeleton parses as the manifest would (the same types,
//! the same refusals); a placeholder found where a store's file list
//! belongs, once and in order, is swapped for the records of its list.
//! Anything else (another layout, a record line that is not one JSON
//! object, a placeholder out of place) makes the caller parse the bytes
//! whole instead, so that the outcome is always that of the whole parse.

use std::io::BufRead;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{FileRecord, Manifest, MAX_MANIFEST_BYTES};

/// The line opening a store's multi-line file list, as the layout writes it.
const FILES_OPEN: &[u8] = b"      \"files\": [";
/// The indentation of a file record's line.
const RECORD_INDENT: &[u8] = b"        ";
/// The line closing a store's file list (followed by `,` when more keys follow).
const FILES_CLOSE: &[u8] = b"      ]";

/// What [`read`] does with each file record, parsed as an `R` (a
/// [`FileRecord`], or only the fields a caller needs: [`RecordBytes`]).
pub trait RecordSink<R> {
    /// Takes the record of file list `list` (the how-manieth multi-line
    /// file list of the manifest, from 0).
    fn take(&mut self, list: usize, record: R);

    /// [`RecordSink::take`], with the JSON text the record was parsed from
    /// (exactly one record, on one line). By default the text is not used.
    fn take_text(&mut self, list: usize, record: R, _text: &[u8]) {
        self.take(list, record);
    }
}

/// Only a file record's size: what a read that needs no more of each
/// record parses (the rest of the record is skipped, not checked).
#[derive(Debug, serde::Deserialize)]
pub struct RecordBytes {
    /// The record's `bytes`.
    pub bytes: u64,
}

/// The bytes of the records a read gives, totalled; the records dropped.
#[derive(Debug, Default)]
pub struct TotalBytes(pub u64);

impl RecordSink<FileRecord> for TotalBytes {
    fn take(&mut self, _list: usize, record: FileRecord) {
        self.0 = self.0.saturating_add(record.bytes);
    }
}

impl RecordSink<RecordBytes> for TotalBytes {
    fn take(&mut self, _list: usize, record: RecordBytes) {
        self.0 = self.0.saturating_add(record.bytes);
    }
}

/// A manifest read in its layout, with the sha256 of its bytes.
pub struct LinesRead {
    /// The manifest, with each multi-line file list empty: its records went
    /// to the sink, in order.
    pub manifest: Manifest,
    /// Which store holds the file list of each number given to the sink.
    pub list_stores: Vec<usize>,
    /// sha256 (hex) of every byte read.
    pub sha256: String,
}

/// Reads the manifest at `path` (already checked to be a regular file of at
/// most [`MAX_MANIFEST_BYTES`]) line by line; `Ok(None)` when it is not in
/// the layout (or does not parse so): parse it whole to learn why, or to
/// read a manifest another writer laid out.
pub fn read<R: serde::de::DeserializeOwned>(
    path: &Path,
    sink: &mut dyn RecordSink<R>,
) -> std::io::Result<Option<LinesRead>> {
    let file = std::fs::File::open(path)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let nonce = placeholder_nonce();
    let mut hasher = Sha256::new();
    let mut skeleton: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let mut lists = 0usize;
    // Inside a multi-line list: whether the last record line ended with a comma.
    let mut in_list: Option<Option<bool>> = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        hasher.update(&line);
        total += line.len() as u64;
        if total > MAX_MANIFEST_BYTES {
            // It grew while being read; the whole parse refuses it.
            return Ok(None);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match in_list {
            None if text == FILES_OPEN => {
                skeleton.extend_from_slice(FILES_OPEN);
                skeleton.extend_from_slice(placeholder(&nonce, lists).as_bytes());
                skeleton.push(b'\n');
                in_list = Some(None);
            }
            None => skeleton.extend_from_slice(&line),
            Some(last) if text.starts_with(RECORD_INDENT) && last != Some(false) => {
                let (record, comma) = match text.strip_suffix(b",") {
                    Some(record) => (record, true),
                    None => (text, false),
                };
                let text = &record[RECORD_INDENT.len()..];
                match serde_json::from_slice::<R>(text) {
                    Ok(record) => sink.take_text(lists, record, text),
                    // Not the layout: the rest is not read.
                    Err(_) => return Ok(None),
                }
                in_list = Some(Some(comma));
            }
            Some(last)
                if last != Some(true)
                    && (text == FILES_CLOSE || text.strip_suffix(b",") == Some(FILES_CLOSE)) =>
            {
                skeleton.extend_from_slice(&line);
                lists += 1;
                in_list = None;
            }
            Some(_) => return Ok(None),
        }
    }
    let sha256 = crate::hash::finish_hex(hasher);
    if in_list.is_some() {
        return Ok(None);
    }
    let Ok(mut manifest) = Manifest::parse(&skeleton) else {
        return Ok(None);
    };
    let Some(list_stores) = swap_placeholders(&mut manifest, &nonce, lists) else {
        return Ok(None);
    };
    Ok(Some(LinesRead {
        manifest,
        list_stores,
        sha256,
    }))
}

/// Empties each store's file list that is exactly the next placeholder, and
/// says which store held each; `None` when a placeholder is anywhere else,
/// or missing.
fn swap_placeholders(manifest: &mut Manifest, nonce: &str, lists: usize) -> Option<Vec<usize>> {
    let mut list_stores = Vec::with_capacity(lists);
    for (at, store) in manifest.stores.iter_mut().enumerate() {
        let next = placeholder_path(nonce, list_stores.len());
        if store.files.len() == 1 && store.files[0].path == next {
            store.files = Vec::new();
            list_stores.push(at);
        } else if store.files.iter().any(|f| f.path.starts_with(nonce)) {
            return None;
        }
    }
    (list_stores.len() == lists).then_some(list_stores)
}

/// A number for this read's placeholders that a manifest cannot contain but
/// by chance (128 random bits).
pub(crate) fn placeholder_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("\u{0}{:016x}{:016x}", random(), random())
}

/// The path of the placeholder of list `list`.
fn placeholder_path(nonce: &str, list: usize) -> String {
    format!("{nonce}/{list}")
}

/// The placeholder record of list `list`, as JSON.
fn placeholder(nonce: &str, list: usize) -> String {
    let path = serde_json::to_string(&placeholder_path(nonce, list)).expect("a string serializes");
    format!(
        "{{\"path\":{path},\"bytes\":0,\"sha256\":\"{}\"}}",
        "0".repeat(64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A manifest of three stores: two files and a symlink, none, one file.
    const SAMPLE: &str = r#"{"format_version":1,"id":"20261123T173000Z","created_at":"2026-11-23T17:30:00Z","label":null,"tool":{"name":"bundle","version":"0.1.0"},"host":"h","git":null,"topology":"t","stores":[
      {"name":"a","kind":"dir","source":"/x","status":"ok","files":[
        {"path":"a/one","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","source_stat":{"dev":1,"ino":2,"bytes":3,"mtime_ns":4,"ctime_ns":5},"reused":true,"mode":420},
        {"path":"a/t\ufffd","path_hex":"612f74ff","bytes":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}],
       "symlinks":[{"path":"a/l","target":"one"}]},
      {"name":"b","kind":"dir","source":"/y","status":"empty","files":[]},
      {"name":"c","kind":"jsonl","source":"/z","status":"ok","single_file":"c.jsonl","files":[
        {"path":"c/c.jsonl","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","jsonl":{"lines":1,"invalid_lines":0}}]}]}"#;

    /// Collects records as [`Manifest::read_hashed`] does.
    #[derive(Default)]
    struct Collect(Vec<(usize, String)>);

    impl RecordSink<FileRecord> for Collect {
        fn take(&mut self, list: usize, record: FileRecord) {
            self.0.push((list, record.path));
        }
    }

    /// The manifest `SAMPLE` parses to, in the layout this tool writes.
    fn laid_out() -> Vec<u8> {
        Manifest::parse(SAMPLE.as_bytes()).unwrap().to_bytes()
    }

    /// Writes `bytes` as a manifest file and reads it line by line.
    fn read_bytes(bytes: &[u8]) -> (Option<LinesRead>, Collect) {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("m.json");
        std::fs::write(&at, bytes).unwrap();
        let mut sink = Collect::default();
        let read = read(&at, &mut sink).unwrap();
        (read, sink)
    }

    /// What [`Manifest::read_hashed`] gives for `bytes`: the manifest and
    /// sha256, or the reason it is refused.
    fn read_hashed(bytes: &[u8]) -> std::result::Result<(Manifest, String), String> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("m.json");
        std::fs::write(&at, bytes).unwrap();
        Manifest::read_hashed(&at).map_err(|e| match e {
            Error::Manifest { reason, .. } => reason,
            other => panic!("{other}"),
        })
    }

    #[test]
    fn the_layout_is_read_line_by_line_into_the_manifest_the_whole_parse_gives() {
        let bytes = laid_out();
        let (read, sink) = read_bytes(&bytes);
        let read = read.expect("the layout this tool writes is read line by line");
        assert_eq!(read.sha256, crate::hash::sha256_hex(&bytes));
        // Two multi-line lists, of stores a and c; b's empty list is inline.
        assert_eq!(read.list_stores, vec![0, 2]);
        assert!(read.manifest.stores.iter().all(|s| s.files.is_empty()));
        assert_eq!(read.manifest.stores[0].symlinks.len(), 1);
        let paths: Vec<(usize, &str)> = sink.0.iter().map(|(l, p)| (*l, p.as_str())).collect();
        assert_eq!(
            paths,
            vec![(0, "a/one"), (0, "a/t\u{fffd}"), (1, "c/c.jsonl")]
        );
        let whole = Manifest::parse(&bytes).unwrap();
        assert_eq!(read_hashed(&bytes), Ok((whole, read.sha256)));
    }

    #[test]
    fn a_manifest_in_another_layout_is_parsed_whole() {
        // Indented in full, each record spans lines: not the layout.
        let pretty =
            serde_json::to_vec_pretty(&Manifest::parse(SAMPLE.as_bytes()).unwrap()).unwrap();
        assert!(read_bytes(&pretty).0.is_none());
        // On lines of its own making, no list is multi-line: all is skeleton.
        let (read, sink) = read_bytes(SAMPLE.as_bytes());
        assert!(read.unwrap().list_stores.is_empty() && sink.0.is_empty());
        for bytes in [SAMPLE.as_bytes().to_vec(), pretty] {
            let expected = Manifest::parse(&bytes).unwrap();
            let sha256 = crate::hash::sha256_hex(&bytes);
            assert_eq!(read_hashed(&bytes), Ok((expected, sha256)));
        }
    }

    #[test]
    fn lines_off_the_layout_fall_back_to_the_whole_parse_and_its_outcome() {
        let text = String::from_utf8(laid_out()).unwrap();
        let first = text.lines().find(|l| l.contains("\"a/one\"")).unwrap();
        let second = text.lines().find(|l| l.contains("path_hex")).unwrap();
        let forged = |from: &str, to: &str| text.replacen(from, to, 1).into_bytes();
        let cases = [
            // Two records on one line: valid JSON, not the layout.
            forged(
                &format!("{first}\n{second}"),
                &format!("{first} {}", second.trim_start()),
            ),
            // A trailing comma before the list's end; a comma missing.
            forged(second, &format!("{second},")),
            forged(first, first.trim_end_matches(',')),
            // A record line that is not a record; a list never closed.
            forged(first, "        {\"path\":1},"),
            text.as_bytes()[..text.find("\"symlinks\"").unwrap()].to_vec(),
            // A key the store does not have beside the list.
            forged("\"source\": \"/y\"", "\"files\": [], \"source\": \"/y\""),
        ];
        for bytes in cases {
            assert!(
                read_bytes(&bytes).0.is_none(),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            let whole = Manifest::parse(&bytes).map(|m| (m, crate::hash::sha256_hex(&bytes)));
            assert_eq!(read_hashed(&bytes), whole);
        }
    }

    #[test]
    fn a_record_that_looks_like_a_placeholder_is_only_a_record() {
        // Without this read's random number, a path of the placeholders'
        // shape is an ordinary record's path.
        let text = String::from_utf8(laid_out()).unwrap();
        let bytes = text
            .replacen("\"files\": []", "\"files\": [{\"path\":\"\\u0000/0\",\"bytes\":0,\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]", 1)
            .into_bytes();
        let (read, _) = read_bytes(&bytes);
        assert_eq!(read.unwrap().manifest.stores[1].files[0].path, "\u{0}/0");
        let whole = Manifest::parse(&bytes).unwrap();
        assert_eq!(read_hashed(&bytes).unwrap().0, whole);
    }

    proptest::proptest! {
        /// Whatever bytes of a laid-out manifest are changed, reading it
        /// line by line ends as the whole parse does: the same manifest,
        /// or the same refusal.
        #[test]
        fn a_damaged_manifest_reads_as_the_whole_parse_says(edits in proptest::collection::vec((0usize..1200, proptest::num::u8::ANY), 1..4)) {
            let mut bytes = laid_out();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            let whole = Manifest::parse(&bytes).map(|m| (m, crate::hash::sha256_hex(&bytes)));
            proptest::prop_assert_eq!(read_hashed(&bytes), whole);
        }
    }
}
