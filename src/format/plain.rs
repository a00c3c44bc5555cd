//! Plain files: copied and hashed in one pass (through the one
//! stream-and-hash loop, [`crate::hash::stream_hashed`]), with a check that
//! the source did not change while it was read.

use std::fs::File;
use std::path::Path;

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
    pub sha256: crate::hash::Sha256Digest,
    /// Whether the source changed during the copy (see [`copy_open`]).
    pub changed: bool,
}

/// Copies the open source `input` (at `src`) into the open, empty `output`
/// (at `dest`), hashing the same buffers; the caller makes it durable
/// (create syncs the whole bundle before committing it). Also returns the
/// source's `statx`, taken on the open file before it was read: the
/// identity, size and owner of exactly what was read, so the caller need
/// not look at the path again. The copy is `changed` when the file's
/// identity (device, inode, size, mtime, ctime) after the read differs
/// from it, or the bytes read from its size.
pub fn copy_open(
    input: &File,
    src: &Path,
    output: &mut File,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(CopiedFile, rustix::fs::Statx)> {
    let before = stat_open(input, src)?;
    let sparse = crate::sparse::holes(before.stx_blocks, before.stx_size);
    let mut written = 0u64;
    let mut writer = SparseWriter::new(output, sparse);
    let streamed = stream_hashed(input, |chunk| {
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
    crate::fsutil::end_of_copy_writeback(output, bytes);
    let after = stat_open(input, src)?;
    let identity = crate::manifest::SourceStat::of_statx;
    let changed = identity(&before) != identity(&after) || before.stx_size != bytes;
    Ok((
        CopiedFile {
            bytes,
            sha256,
            changed,
        },
        before,
    ))
}

/// The `statx` of an open file (at `path`, for the error).
fn stat_open(file: &File, path: &Path) -> Result<rustix::fs::Statx> {
    use rustix::fs::{AtFlags, StatxFlags};
    rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
        .map_err(|e| Error::io("could not stat", path, e.into()))
}
