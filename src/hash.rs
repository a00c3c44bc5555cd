//! sha256 hashing of byte slices and streams, as lowercase hex.

use std::io::Read;

use sha2::{Digest, Sha256};

/// Size of the buffers used to stream files (hash, copy).
pub const BUF_SIZE: usize = 1 << 20;

/// Size of a stream's first buffer: a small file (most files of a store of
/// many) never pays for zeroing a [`BUF_SIZE`] buffer; a larger one grows
/// it to [`BUF_SIZE`] after its first full read.
const FIRST_BUF_SIZE: usize = 16 << 10;

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Finishes a hasher into lowercase hex.
pub fn finish_hex(hasher: Sha256) -> String {
    hex::encode(hasher.finalize())
}

/// A writer that hashes and counts what passes through it to `inner`, so a
/// file can be written and its sha256 known without holding it in memory.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer, the byte count and the sha256 (hex) of everything written.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, finish_hex(self.hasher))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Which side of a [`stream_hashed`] failed.
#[derive(Debug)]
pub enum StreamError {
    /// Reading the input.
    Read(std::io::Error),
    /// The sink (writing the copy).
    Write(std::io::Error),
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Read(e) | StreamError::Write(e) => e,
        }
    }
}

/// The one stream-and-hash loop: reads `reader` to its end in
/// [`BUF_SIZE`] chunks (a small first one; retrying interrupted reads),
/// hashes every chunk and hands it to `sink` (which writes a copy, reports
/// progress, or both).
/// Returns (bytes read, sha256 hex).
pub fn stream_hashed(
    mut reader: impl Read,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(u64, String), StreamError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; FIRST_BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        sink(&buf[..n]).map_err(StreamError::Write)?;
        if n == buf.len() && n < BUF_SIZE {
            buf.resize(BUF_SIZE, 0);
        }
    }
    Ok((total, finish_hex(hasher)))
}

/// Streams `reader` to its end; returns (bytes read, sha256 hex).
///
/// `on_bytes` is called after each chunk so callers can report progress.
pub fn hash_reader(
    reader: impl Read,
    mut on_bytes: impl FnMut(u64),
) -> std::io::Result<(u64, String)> {
    Ok(stream_hashed(reader, |chunk| {
        on_bytes(chunk.len() as u64);
        Ok(())
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (n, h) = hash_reader(&b"abc"[..], |_| {}).unwrap();
        assert_eq!((n, h.as_str()), (3, sha256_hex(b"abc").as_str()));
        // Across the first, small buffer and the grown one.
        let big: Vec<u8> = (0..3 * BUF_SIZE + 5).map(|i| (i % 251) as u8).collect();
        let mut copy = Vec::new();
        let (n, h) = stream_hashed(&big[..], |c| {
            copy.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!((n as usize, h), (big.len(), sha256_hex(&big)));
        assert_eq!(copy, big);
    }
}
