//! Plain files: copied and hashed in one pass (through the one
//! stream-and-hash loop, [`crate::hash::stream_hashed`]), with a check that
//! the source did not change while it was read.

use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::hash::{stream_hashed, StreamError};
use crate::progress::Progress;
use crate::sparse::SparseWriter;

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
    let input = File::open(src).map_err(|e| Error::io("could not read", src, e))?;
    let before = stamp(&input, src)?;
    let sparse = input.metadata().is_ok_and(|m| crate::sparse::has_holes(&m));
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io("could not create", dest, e))?;
    let mut written = 0u64;
    let mut writer = SparseWriter::new(&mut output, sparse);
    let streamed = stream_hashed(&input, |chunk| {
        writer.write(chunk)?;
        written += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
        if written % WRITEBACK_EVERY < chunk.len() as u64 {
            crate::fsutil::start_writeback(writer.file());
        }
        Ok(())
    });
    let (bytes, sha256) = streamed.map_err(|e| match e {
        StreamError::Read(e) => Error::io("could not read", src, e),
        StreamError::Write(e) => Error::io("could not write", dest, e),
    })?;
    writer
        .finish()
        .map_err(|e| Error::io("could not write", dest, e))?;
    crate::fsutil::end_of_copy_writeback(&output, bytes);
    let after = stamp(&input, src)?;
    Ok(CopiedFile {
        bytes,
        sha256,
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
