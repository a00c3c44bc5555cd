//! Sparse files keep their holes: a copy of a file whose blocks are mostly
//! unallocated (a 5 GiB preallocated index, a VM image) skips its zero
//! blocks instead of writing gigabytes of zeros.
//!
//! Only a source that is sparse itself (fewer allocated blocks than its
//! size needs) is copied this way, so an ordinary file stays ordinary. The
//! bytes read back are identical either way; hashes never change.

use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

/// The granularity at which zeros become holes (a file-system block).
const BLOCK: u64 = 4096;

/// Whether `meta` describes a file with holes.
pub fn has_holes(meta: &Metadata) -> bool {
    meta.is_file() && holes(meta.blocks(), meta.len())
}

/// Whether a regular file of `len` bytes with `blocks` 512-byte blocks
/// allocated has holes.
pub fn holes(blocks: u64, len: u64) -> bool {
    blocks.saturating_mul(512) < len
}

/// Writes a stream into `file`, turning all-zero blocks into holes when
/// `sparse`; [`SparseWriter::finish`] sets the final length.
pub struct SparseWriter<'a> {
    file: &'a mut File,
    sparse: bool,
    /// Bytes of the stream so far (the file's logical position).
    position: u64,
}

impl<'a> SparseWriter<'a> {
    /// A writer at the start of the (empty) `file`.
    pub fn new(file: &'a mut File, sparse: bool) -> Self {
        SparseWriter {
            file,
            sparse,
            position: 0,
        }
    }

    /// Writes the next chunk of the stream.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if !self.sparse {
            self.position += chunk.len() as u64;
            return self.file.write_all(chunk);
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            // Up to the next block boundary of the file, so holes align.
            let to_boundary = (BLOCK - self.position % BLOCK) as usize;
            let (block, tail) = rest.split_at(to_boundary.min(rest.len()));
            if block.iter().all(|&b| b == 0) {
                self.file.seek(SeekFrom::Current(block.len() as i64))?;
            } else {
                self.file.write_all(block)?;
            }
            self.position += block.len() as u64;
            rest = tail;
        }
        Ok(())
    }

    /// The file written to.
    pub fn file(&self) -> &File {
        self.file
    }

    /// Sets the file's length to the stream's (a trailing hole writes nothing).
    pub fn finish(self) -> std::io::Result<()> {
        if self.sparse {
            self.file.set_len(self.position)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_the_bytes_stay_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut data = vec![0u8; 8 << 20];
        data[5000] = 7;
        data[(8 << 20) - 1] = 0;
        let mut file = File::create(&path).unwrap();
        let mut w = SparseWriter::new(&mut file, true);
        for chunk in data.chunks(300_001) {
            w.write(chunk).unwrap();
        }
        w.finish().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        assert!(has_holes(&meta));
    }
}
