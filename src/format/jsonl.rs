//! JSONL files: streamed once — written, hashed, line-counted and parsed in
//! the same pass. A writer may be appending: only the prefix that existed
//! when the read started, up to its last newline, is captured.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::plain::WRITEBACK_EVERY;
use crate::hash::{Sha256Digest, BUF_SIZE};
use crate::manifest::JsonlFacts;
use crate::progress::Progress;

/// The warnings a captured JSONL file deserves.
pub fn warnings(store: &str, path: &str, facts: &JsonlFacts, torn_bytes: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    if facts.invalid_lines > 0 {
        warnings.push(format!(
            "store \"{store}\": {path} has {} line(s) that are not valid JSON (kept as they were)",
            facts.invalid_lines
        ));
    }
    if torn_bytes > 0 {
        warnings.push(format!(
            "store \"{store}\": {path} ends with an incomplete line ({torn_bytes} bytes, no newline); it was left out"
        ));
    }
    warnings
}

/// Outcome of streaming one JSONL file.
#[derive(Debug)]
pub struct JsonlCopy {
    /// Bytes written.
    pub bytes: u64,
    /// sha256 of what was written.
    pub sha256: crate::hash::Sha256Digest,
    /// Lines and invalid lines written.
    pub facts: JsonlFacts,
    /// Bytes of an incomplete trailing line that were left out.
    pub torn_bytes: u64,
}

/// Streams the prefix of `src` that exists now, up to its last newline, into a
/// new file `dest`; hashes, counts and parses every line on the way. The caller
/// fsyncs it.
pub fn copy_jsonl(src: &Path, dest: &Path, progress: &dyn Progress) -> Result<JsonlCopy> {
    let input = File::open(src).map_err(|e| Error::io("could not read", src, e))?;
    let limit = input
        .metadata()
        .map_err(|e| Error::io("could not stat", src, e))?
        .len();
    let output = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io("could not create", dest, e))?;
    let mut writer = BufWriter::with_capacity(BUF_SIZE, output);
    let mut hasher = Sha256::new();
    let mut scan = LineScan::default();
    let mut torn_bytes = 0;
    let mut bytes = 0u64;
    let mut read = 0u64;
    each_line(input.take(limit), |line| {
        read += line.len() as u64;
        progress.advance(line.len() as u64);
        if line.last() != Some(&b'\n') {
            torn_bytes = line.len() as u64;
            return Ok(());
        }
        scan.line(line);
        hasher.update(line);
        bytes += line.len() as u64;
        writer.write_all(line)?;
        if bytes % WRITEBACK_EVERY < line.len() as u64 {
            crate::fsutil::start_writeback(writer.get_ref());
        }
        Ok(())
    })
    .map_err(|e| Error::io("could not copy", src, e))?;
    let output = writer
        .into_inner()
        .map_err(|e| Error::io("could not write", dest, e.into_error()))?;
    crate::fsutil::end_of_copy_writeback(&output, bytes);
    drop(output);
    if read != limit {
        return Err(Error::io(
            "file shrank while being read",
            src,
            std::io::Error::other(format!(
                "expected {limit} bytes, read {read}; stop the writer and try again"
            )),
        ));
    }
    Ok(JsonlCopy {
        bytes,
        sha256: Sha256Digest::finish(hasher),
        facts: scan.facts(),
        torn_bytes,
    })
}

/// Calls `f` with each line of `reader`, newline included (the last may lack it).
pub fn each_line(
    reader: impl Read,
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(BUF_SIZE, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        f(&line)?;
    }
}

/// Counts lines and invalid JSON lines.
#[derive(Debug, Default)]
pub struct LineScan {
    lines: u64,
    invalid: u64,
}

impl LineScan {
    /// Accounts one line (with or without its newline).
    pub fn line(&mut self, line: &[u8]) {
        self.lines += 1;
        if serde_json::from_slice::<IgnoredAny>(line).is_err() {
            self.invalid += 1;
        }
    }

    /// The counts so far.
    pub fn facts(&self) -> JsonlFacts {
        JsonlFacts {
            lines: self.lines,
            invalid_lines: self.invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn torn_tail_is_left_out_and_invalid_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.jsonl");
        std::fs::write(
            &src,
            b"{\"id\":1}\nnot json\n\n{\"id\":2}\r\n{\"id\":3,\"half",
        )
        .unwrap();
        let dest = dir.path().join("b.jsonl");
        let copy = copy_jsonl(&src, &dest, &NoProgress).unwrap();
        let want = b"{\"id\":1}\nnot json\n\n{\"id\":2}\r\n";
        assert_eq!(std::fs::read(&dest).unwrap(), want);
        assert_eq!(copy.bytes, want.len() as u64);
        assert_eq!(
            copy.facts,
            JsonlFacts {
                lines: 4,
                invalid_lines: 2
            }
        );
        assert_eq!(copy.torn_bytes, 13);
        assert_eq!(copy.sha256, crate::hash::Sha256Digest::of(want));
    }
}
