//! Plain files: copied and hashed in one pass, with a check that the source did
//! not change while it was read.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hash::{finish_hex, BUF_SIZE};
use crate::progress::Progress;

/// How often (in bytes written) a copy asks the kernel to start writeback.
pub const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

/// Outcome of copying one file.
#[derive(Debug)]
pub struct CopiedFile {
    /// Bytes written.
    pub bytes: u64,
    /// sha256 of what was written.
    pub sha256: String,
    /// Whether the source's size or mtime changed during the copy.
    pub changed: bool,
}

/// Copies `src` to a new file `dest`, hashing the same buffers. The caller
/// fsyncs it (create fsyncs the whole bundle before committing it).
pub fn copy_hashed(src: &Path, dest: &Path, progress: &dyn Progress) -> Result<CopiedFile> {
    let mut input = File::open(src).map_err(|e| Error::io("could not read", src, e))?;
    let before = stamp(&input, src)?;
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io("could not create", dest, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut bytes = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("could not read", src, e)),
        };
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| Error::io("could not write", dest, e))?;
        bytes += n as u64;
        progress.advance(n as u64);
        if bytes % WRITEBACK_EVERY < n as u64 {
            crate::fsutil::start_writeback(&output);
        }
    }
    crate::fsutil::start_writeback(&output);
    let after = stamp(&input, src)?;
    Ok(CopiedFile {
        bytes,
        sha256: finish_hex(hasher),
        changed: before != after || before.0 != bytes,
    })
}

/// (size, mtime) of an open file.
fn stamp(file: &File, path: &Path) -> Result<(u64, Option<SystemTime>)> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io("could not stat", path, e))?;
    Ok((meta.len(), meta.modified().ok()))
}
