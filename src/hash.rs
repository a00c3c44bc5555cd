//! sha256 hashing of byte slices and streams, as lowercase hex.

use std::io::Read;

use sha2::{Digest, Sha256};

/// Size of the buffers used to stream files (hash, copy).
pub const BUF_SIZE: usize = 1 << 20;

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Finishes a hasher into lowercase hex.
pub fn finish_hex(hasher: Sha256) -> String {
    hex::encode(hasher.finalize())
}

/// Streams `reader` to its end; returns (bytes read, sha256 hex).
///
/// `on_bytes` is called after each chunk so callers can report progress.
pub fn hash_reader(
    mut reader: impl Read,
    mut on_bytes: impl FnMut(u64),
) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        on_bytes(n as u64);
    }
    Ok((total, finish_hex(hasher)))
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
    }
}
