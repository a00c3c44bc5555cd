//! How an object's bytes are made from a bundle file's: compressed with
//! zstd, and hashed before (checked against the manifest) and after (for
//! the remote index), handed out in parts for multipart uploads.

use std::io::Write;

use sha2::{Digest, Sha256};

/// Stored bytes at or above this go up in parts of this size.
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Plaintext bytes read.
    pub plain_bytes: u64,
    /// sha256 of the plaintext.
    pub plain_sha256: String,
    /// Bytes stored (compressed).
    pub stored_bytes: u64,
    /// sha256 of the stored bytes.
    pub stored_sha256: String,
}

/// Compresses a stream and hashes it before and after: parts come out as
/// soon as [`PART_BYTES`] of compressed bytes are ready.
pub struct Packer {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    plain: Sha256,
    stored: Sha256,
    plain_bytes: u64,
    stored_bytes: u64,
}

impl Packer {
    /// A packer compressing at zstd `level`.
    pub fn new(level: i32) -> std::io::Result<Packer> {
        Ok(Packer {
            encoder: zstd::stream::write::Encoder::new(Vec::new(), level)?,
            plain: Sha256::new(),
            stored: Sha256::new(),
            plain_bytes: 0,
            stored_bytes: 0,
        })
    }

    /// Takes plaintext; a part when one is ready.
    pub fn feed(&mut self, chunk: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        self.plain.update(chunk);
        self.plain_bytes += chunk.len() as u64;
        self.encoder.write_all(chunk)?;
        if self.encoder.get_ref().len() < PART_BYTES {
            return Ok(None);
        }
        let part = std::mem::take(self.encoder.get_mut());
        self.stored.update(&part);
        self.stored_bytes += part.len() as u64;
        Ok(Some(part))
    }

    /// The last compressed bytes, and what was stored in all.
    pub fn finish(mut self) -> std::io::Result<(Vec<u8>, Uploaded)> {
        let rest = std::mem::take(self.encoder.get_mut());
        let rest = [rest, self.encoder.finish()?].concat();
        self.stored.update(&rest);
        self.stored_bytes += rest.len() as u64;
        let uploaded = Uploaded {
            plain_bytes: self.plain_bytes,
            plain_sha256: hex::encode(self.plain.finalize()),
            stored_bytes: self.stored_bytes,
            stored_sha256: hex::encode(self.stored.finalize()),
        };
        Ok((rest, uploaded))
    }
}
