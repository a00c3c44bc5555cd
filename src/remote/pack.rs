//! How an object's bytes are made from a bundle file's: compressed with
//! zstd, encrypted with age when the remote asks for it, and hashed before
//! (checked against the manifest) and after (for the remote index), handed
//! out in parts for multipart uploads. Memory stays bounded by a part.

use std::io::Write;
use std::sync::{Arc, Mutex};

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
    /// Bytes stored (compressed, and encrypted when the remote says so).
    pub stored_bytes: u64,
    /// sha256 of the stored bytes.
    pub stored_sha256: String,
}

/// Where the stored bytes collect until a part is taken.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn len(&self) -> usize {
        self.0.lock().expect("spool lock").len()
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("spool lock"))
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("spool lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The stage after compression: the spool itself, or age encryption into it.
enum Seal {
    Plain(Spool),
    Age(age::stream::StreamWriter<Spool>),
}

impl Write for Seal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Seal::Plain(s) => s.write(buf),
            Seal::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Seal::Plain(s) => s.flush(),
            Seal::Age(w) => w.flush(),
        }
    }
}

impl Seal {
    fn finish(self) -> std::io::Result<()> {
        match self {
            Seal::Plain(_) => Ok(()),
            Seal::Age(w) => w.finish().map(|_| ()),
        }
    }
}

/// Compresses (and maybe encrypts) a stream and hashes it before and
/// after: parts come out as soon as [`PART_BYTES`] of stored bytes are ready.
pub struct Packer {
    encoder: zstd::stream::write::Encoder<'static, Seal>,
    spool: Spool,
    plain: Sha256,
    stored: Sha256,
    plain_bytes: u64,
    stored_bytes: u64,
}

impl Packer {
    /// A packer compressing at zstd `level`, then encrypting to
    /// `recipients` when there are any.
    pub fn new(level: i32, recipients: &[age::x25519::Recipient]) -> std::io::Result<Packer> {
        let spool = Spool::default();
        let seal = match recipients {
            [] => Seal::Plain(spool.clone()),
            some => Seal::Age(crate::remote::crypt::encrypt_to(some, spool.clone())?),
        };
        Ok(Packer {
            encoder: zstd::stream::write::Encoder::new(seal, level)?,
            spool,
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
        if self.spool.len() < PART_BYTES {
            return Ok(None);
        }
        Ok(Some(self.stored(self.spool.take())))
    }

    /// Counts and hashes bytes leaving as stored bytes.
    fn stored(&mut self, part: Vec<u8>) -> Vec<u8> {
        self.stored.update(&part);
        self.stored_bytes += part.len() as u64;
        part
    }

    /// The last stored bytes, and what was stored in all.
    pub fn finish(self) -> std::io::Result<(Vec<u8>, Uploaded)> {
        let Packer {
            encoder,
            spool,
            plain,
            mut stored,
            plain_bytes,
            stored_bytes,
        } = self;
        encoder.finish()?.finish()?;
        let rest = spool.take();
        stored.update(&rest);
        let uploaded = Uploaded {
            plain_bytes,
            plain_sha256: hex::encode(plain.finalize()),
            stored_bytes: stored_bytes + rest.len() as u64,
            stored_sha256: hex::encode(stored.finalize()),
        };
        Ok((rest, uploaded))
    }
}
