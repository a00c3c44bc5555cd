//! sha256 hashing of byte slices and streams: as lowercase hex, or as a
//! [`Sha256Digest`] that a manifest record holds.

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

/// A sha256 digest, held as its 32 bytes (a manifest of many files holds
/// one per file, so no string is allocated for it) and written, read and
/// shown as 64 lowercase hex digits: any other text is refused when read.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Finishes a hasher.
    pub fn finish(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// The 64 hex digits, on the stack.
    fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }
}

/// Each byte's value as a lowercase hex digit, or `0xff` (a table: a
/// manifest of many files has a digest to read per file).
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why a text is not a [`Sha256Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a sha256: 64 lowercase hex digits")]
pub struct NotASha256;

impl std::str::FromStr for Sha256Digest {
    type Err = NotASha256;

    fn from_str(text: &str) -> Result<Self, NotASha256> {
        if text.len() != 64 {
            return Err(NotASha256);
        }
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let (high, low) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            invalid |= high | low;
            *byte = (high << 4) | (low & 0x0f);
        }
        match invalid & 0xf0 {
            0 => Ok(Self(out)),
            _ => Err(NotASha256),
        }
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the hex text in place (no string is allocated for it).
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Sha256Digest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sha256 of 64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Sha256Digest, E> {
                text.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
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
/// Returns (bytes read, sha256).
pub fn stream_hashed(
    mut reader: impl Read,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(u64, Sha256Digest), StreamError> {
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
    Ok((total, Sha256Digest::finish(hasher)))
}

/// Streams `reader` to its end; returns (bytes read, sha256).
///
/// `on_bytes` is called after each chunk so callers can report progress.
pub fn hash_reader(
    reader: impl Read,
    mut on_bytes: impl FnMut(u64),
) -> std::io::Result<(u64, Sha256Digest)> {
    Ok(stream_hashed(reader, |chunk| {
        on_bytes(chunk.len() as u64);
        Ok(())
    })?)
}

/// Keyed 128-bit digests (two SipHash keys drawn at random for each
/// instance): a set of many paths or identities held as 16 bytes each,
/// whose members nobody can choose to collide without knowing the keys.
pub struct Keyed128(std::hash::RandomState, std::hash::RandomState);

impl std::fmt::Debug for Keyed128 {
    /// Shown without its keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed128")
    }
}

impl Keyed128 {
    /// Fresh random keys.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Keyed128(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    /// The digest of `value`.
    pub fn of<T: std::hash::Hash + ?Sized>(&self, value: &T) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(value)) << 64) | u128::from(self.1.hash_one(value))
    }
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
        assert_eq!((n, h.to_string()), (3, sha256_hex(b"abc")));
        assert_eq!(h, Sha256Digest::of(b"abc"));
        // Across the first, small buffer and the grown one.
        let big: Vec<u8> = (0..3 * BUF_SIZE + 5).map(|i| (i % 251) as u8).collect();
        let mut copy = Vec::new();
        let (n, h) = stream_hashed(&big[..], |c| {
            copy.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!((n as usize, h.to_string()), (big.len(), sha256_hex(&big)));
        assert_eq!(copy, big);
    }

    #[test]
    fn a_digest_reads_back_only_from_its_own_64_lowercase_digits() {
        let digest = Sha256Digest::of(b"abc");
        let text = sha256_hex(b"abc");
        assert_eq!(text.parse::<Sha256Digest>(), Ok(digest));
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), digest);
        for bad in [
            "00".to_string(),
            text.to_uppercase(),
            format!("{text}0"),
            format!("{}g", &text[..63]),
            format!(" {}", &text[..63]),
            "é".repeat(32),
        ] {
            assert_eq!(bad.parse::<Sha256Digest>(), Err(NotASha256), "{bad}");
            let quoted = serde_json::to_string(&bad).unwrap();
            assert!(
                serde_json::from_str::<Sha256Digest>(&quoted).is_err(),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<Sha256Digest>("7").is_err());
        // Every byte value is written and read back as `hex` does.
        for byte in 0..=255u8 {
            let digest = Sha256Digest([byte; 32]);
            assert_eq!(digest.to_string(), hex::encode([byte; 32]));
            assert_eq!(digest.to_string().parse::<Sha256Digest>(), Ok(digest));
        }
    }
}
