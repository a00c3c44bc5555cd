//! A listed file on disk: present where its record says, a regular file
//! of its recorded size, and (unless skipped) its bytes hash to its
//! recorded sha256, with its recorded JSONL and SQLite facts.

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{problem, Problem, VerifyOptions};
use crate::format::jsonl::{each_line, LineScan};
use crate::format::sqlite;
use crate::hash;
use crate::manifest::FileRecord;
use crate::progress::Progress;

/// A listed file's problems on disk (present, a regular file, its size;
/// then, unless skipped, its content), and the bytes read (`None`: not read).
pub(super) fn check(
    store: &str,
    path: &Path,
    file: &FileRecord,
    folder: &mut crate::fsutil::LastFolder,
    opts: VerifyOptions,
    progress: &dyn Progress,
) -> (Option<u64>, Vec<Problem>) {
    use rustix::fs::{AtFlags, FileType};
    let (store, rel) = (Some(store), Some(file.path.as_str()));
    let stat = folder
        .of(path)
        .and_then(|(at, name)| Ok(rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?));
    let mut problems = Vec::new();
    match stat {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (None, vec![problem(store, rel, "file is missing")]);
        }
        Err(e) => return (None, vec![problem(store, rel, format!("cannot stat: {e}"))]),
        Ok(m) if FileType::from_raw_mode(m.st_mode) != FileType::RegularFile => {
            return (None, vec![problem(store, rel, "not a regular file")]);
        }
        Ok(m) if m.st_size as u64 != file.bytes => problems.push(problem(
            store,
            rel,
            format!("size is {} bytes, manifest says {}", m.st_size, file.bytes),
        )),
        Ok(_) => {}
    }
    if opts.skip_content {
        return (None, problems);
    }
    let (bytes, sha, lines) = match read_file(path, file, progress) {
        Ok(v) => v,
        Err(e) => {
            problems.push(problem(store, rel, format!("cannot read: {e}")));
            return (None, problems);
        }
    };
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
        for p in sqlite::verify_copy(path, facts, !opts.quick) {
            problems.push(problem(store, rel, p));
        }
    }
    (Some(bytes), problems)
}

/// Hashes a file in one pass, counting JSONL lines on the way when relevant.
fn read_file(
    path: &Path,
    file: &FileRecord,
    progress: &dyn Progress,
) -> std::io::Result<(u64, hash::Sha256Digest, Option<crate::manifest::JsonlFacts>)> {
    let input = File::open(path)?;
    let result = if file.jsonl.is_some() {
        let mut hasher = Sha256::new();
        let mut scan = LineScan::default();
        let mut bytes = 0u64;
        each_line(input, |line| {
            hasher.update(line);
            bytes += line.len() as u64;
            progress.advance(line.len() as u64);
            scan.line(line);
            Ok(())
        })?;
        (
            bytes,
            hash::Sha256Digest::finish(hasher),
            Some(scan.facts()),
        )
    } else {
        let (bytes, sha) = hash::hash_reader(input, |n| progress.advance(n))?;
        (bytes, sha, None)
    };
    Ok(result)
}
