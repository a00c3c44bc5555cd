//! Reading objects back: the stored bytes are hashed (against the index),
//! decrypted when the bundle is encrypted (with the remote's identity),
//! decompressed, and the plaintext hashed (against the manifest), in one
//! streaming pass. A damaged object is told apart from a remote that fails,
//! from a local write that fails, and from a key that does not fit.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::remote::crypt::Undecrypted;
use crate::remote::engine::ObjectReader;
use crate::remote::layout::{RemoteIndex, StoredObject};
use crate::remote::Remote;

/// How an object's bytes are to be opened.
#[derive(Clone, Copy)]
pub struct Opening<'a> {
    /// Its bundle's id.
    pub bundle: &'a str,
    /// Whether the bundle's objects are encrypted (its index says).
    pub encrypted: bool,
}

impl<'a> Opening<'a> {
    /// The objects of the bundle `index` describes.
    pub fn of(index: &'a RemoteIndex) -> Opening<'a> {
        Opening {
            bundle: &index.bundle_id,
            encrypted: index.encrypted(),
        }
    }
}

/// Why an object could not be opened.
enum Unopened {
    /// Its bytes are damaged (or it is not what it claims).
    Damaged(String),
    /// None of the identity's keys opens it.
    WrongKey(String),
}

/// A reader that hashes and counts the stored bytes passing through it.
struct Stored<'a> {
    inner: ObjectReader<'a>,
    hasher: Sha256,
    bytes: u64,
}

impl Read for Stored<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it, and keeps the
/// error of a failed write (told apart from a corrupt object).
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
    failed: Option<std::io::Error>,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.inner.write(buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                return Err(std::io::Error::from(kind));
            }
        };
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What reading an object found: its stored bytes' size and hash, and the
/// plaintext's, or why it could not be opened.
struct ReadBack {
    stored_bytes: u64,
    stored_sha256: String,
    plain_bytes: u64,
    plain_sha256: String,
    unopened: Option<Unopened>,
}

/// Streams object `object` of bundle `at` through decryption and
/// decompression into `sink`. Errors are the remote's or the sink's.
fn read_through(
    remote: &Remote,
    at: Opening<'_>,
    object: &str,
    sink: &mut dyn Write,
) -> Result<Option<ReadBack>> {
    if at.encrypted {
        remote.identity(at.bundle)?;
    }
    let Some(reader) = remote.engine.reader(object)? else {
        return Ok(None);
    };
    let mut stored = Stored {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut plain = Hashing {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let unopened = open_into(remote, at, &mut stored, &mut plain).err();
    if unopened.is_some() {
        // Read what is left, so that the stored bytes can be compared.
        let _ = std::io::copy(&mut stored, &mut std::io::sink());
    }
    if let Some(e) = stored.inner.failure() {
        return Err(e);
    }
    if let Some(e) = plain.failed.take() {
        // Writing here failed (a full disk, say): the caller knows where.
        return Err(Error::io(
            "could not write",
            std::path::Path::new(object),
            e,
        ));
    }
    Ok(Some(ReadBack {
        stored_bytes: stored.bytes,
        stored_sha256: hex::encode(stored.hasher.finalize()),
        plain_bytes: plain.bytes,
        plain_sha256: hex::encode(plain.hasher.finalize()),
        unopened,
    }))
}

/// Decrypts (when encrypted) and decompresses `stored` into `plain`.
fn open_into(
    remote: &Remote,
    at: Opening<'_>,
    stored: &mut dyn Read,
    plain: &mut dyn Write,
) -> std::result::Result<(), Unopened> {
    let damaged =
        |e: std::io::Error| Unopened::Damaged(format!("does not decrypt or decompress ({e})"));
    if at.encrypted {
        let identity = remote
            .identity(at.bundle)
            .map_err(|e| Unopened::WrongKey(e.to_string()))?;
        let decrypted = identity.decrypt(stored).map_err(|e| match e {
            Undecrypted::WrongKey(why) => Unopened::WrongKey(why),
            Undecrypted::Damaged(why) => Unopened::Damaged(format!("does not decrypt ({why})")),
        })?;
        let mut decoder = zstd::stream::read::Decoder::new(decrypted).map_err(damaged)?;
        std::io::copy(&mut decoder, plain).map_err(damaged)?;
    } else {
        let mut decoder = zstd::stream::read::Decoder::new(stored).map_err(damaged)?;
        std::io::copy(&mut decoder, plain).map_err(damaged)?;
    }
    Ok(())
}

/// Reads `object` back into `sink`: its stored entry when its stored bytes
/// match `entry` (if given) and its plaintext matches `file`; `Ok(Err(why))`
/// when not. A key that does not open it is an error naming the bundle.
pub fn read_into(
    remote: &Remote,
    at: Opening<'_>,
    object: &str,
    file: &FileRecord,
    entry: Option<&StoredObject>,
    sink: &mut dyn Write,
) -> Result<std::result::Result<StoredObject, String>> {
    let Some(read) = read_through(remote, at, object, sink)? else {
        return Ok(Err("object is missing".into()));
    };
    if let Some(entry) = entry {
        if entry.bytes != read.stored_bytes || entry.sha256 != read.stored_sha256 {
            return Ok(Err(
                "does not match its index entry (altered or truncated)".into()
            ));
        }
    }
    match read.unopened {
        Some(Unopened::WrongKey(why)) => return Err(wrong_key(remote, at.bundle, &why)),
        Some(Unopened::Damaged(why)) => return Ok(Err(why)),
        None => {}
    }
    if read.plain_bytes != file.bytes || read.plain_sha256 != file.sha256.to_string() {
        return Ok(Err(format!(
            "does not hold {} as the manifest records it",
            file.path
        )));
    }
    Ok(Ok(StoredObject {
        // `<bundle>/<name>`, where the name may have a `/` itself (`f/3`).
        name: object
            .split_once('/')
            .map_or(object, |(_, n)| n)
            .to_string(),
        bytes: read.stored_bytes,
        sha256: read.stored_sha256,
    }))
}

/// [`read_into`] discarding the plaintext.
pub fn read_object(
    remote: &Remote,
    at: Opening<'_>,
    object: &str,
    file: &FileRecord,
    entry: Option<&StoredObject>,
) -> Result<std::result::Result<StoredObject, String>> {
    read_into(remote, at, object, file, entry, &mut std::io::sink())
}

/// The plaintext of small object `name` of bundle `at`, checked against
/// its index entry; `Ok(Err(why))` when it is missing or damaged.
pub fn small_object(
    remote: &Remote,
    index: &RemoteIndex,
    name: &str,
) -> Result<std::result::Result<Vec<u8>, String>> {
    let at = Opening::of(index);
    let Some(entry) = index.object(name) else {
        return Ok(Err(format!("the index lists no object {name}")));
    };
    let mut plain = Vec::new();
    let object = index.path_of(name);
    let Some(read) = read_through(remote, at, &object, &mut plain)? else {
        return Ok(Err(format!("object {name} is missing")));
    };
    if read.stored_bytes != entry.bytes || read.stored_sha256 != entry.sha256 {
        return Ok(Err(format!(
            "object {name} does not match its index (altered or truncated)"
        )));
    }
    match read.unopened {
        Some(Unopened::WrongKey(why)) => Err(wrong_key(remote, at.bundle, &why)),
        Some(Unopened::Damaged(why)) => Ok(Err(format!("object {name} {why}"))),
        None => Ok(Ok(plain)),
    }
}

/// A reader that fails at once (an object whose age header is damaged).
struct Failing(String);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other(self.0.clone()))
    }
}

/// A reader that keeps the first error it met (a decryption or
/// decompression failure, told apart from its consumer's own).
struct Watched<R> {
    inner: R,
    failed: Option<String>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failed.get_or_insert_with(|| e.to_string());
        })
    }
}

/// Hands object `name` of the bundle `index` describes to `consume` as a
/// plaintext reader (decrypted, decompressed), then checks its stored
/// bytes against the index: `Ok(Err(why))` when it is missing, damaged or
/// does not open.
pub fn with_plaintext<T>(
    remote: &Remote,
    index: &RemoteIndex,
    name: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<std::result::Result<T, String>> {
    let at = Opening::of(index);
    let entry = index.object(name);
    let Some(reader) = remote.engine.reader(&index.path_of(name))? else {
        return Ok(Err(format!("object {name} is missing")));
    };
    let mut stored = Stored {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let consumed = {
        let plain: Box<dyn Read + '_> = match at.encrypted {
            true => match remote.identity(at.bundle)?.decrypt(&mut stored) {
                Ok(r) => Box::new(r),
                Err(Undecrypted::WrongKey(why)) => return Err(wrong_key(remote, at.bundle, &why)),
                Err(Undecrypted::Damaged(why)) => Box::new(Failing(why)),
            },
            false => Box::new(&mut stored),
        };
        let decoder = zstd::stream::read::Decoder::new(plain)
            .map_err(|e| remote.error(format!("zstd: {e}")))?;
        let mut watched = Watched {
            inner: decoder,
            failed: None,
        };
        let consumed = consume(&mut watched);
        match (consumed, watched.failed) {
            (Ok(t), _) => Ok(t),
            (Err(_), Some(why)) => Err(Ok(why)),
            (Err(e), None) => Err(Err(e)),
        }
    };
    let _ = std::io::copy(&mut stored, &mut std::io::sink());
    if let Some(e) = stored.inner.failure() {
        return Err(e);
    }
    let sha = hex::encode(stored.hasher.finalize());
    if entry.is_none_or(|e| e.bytes != stored.bytes || e.sha256 != sha) {
        return Ok(Err(format!(
            "object {name} does not match its index (altered or truncated)"
        )));
    }
    match consumed {
        Ok(t) => Ok(Ok(t)),
        Err(Ok(why)) => Ok(Err(format!(
            "object {name} does not decrypt or decompress ({why})"
        ))),
        Err(Err(e)) => Err(e),
    }
}

/// The stored size and sha256 of `object` (no key needed); `None` when missing.
pub fn stored_hash(remote: &Remote, object: &str) -> Result<Option<(u64, String)>> {
    let Some(reader) = remote.engine.reader(object)? else {
        return Ok(None);
    };
    let mut stored = Stored {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let copied = std::io::copy(&mut stored, &mut std::io::sink());
    if let Some(e) = stored.inner.failure() {
        return Err(e);
    }
    copied.map_err(|e| remote.error(format!("could not read {object}: {e}")))?;
    Ok(Some((stored.bytes, hex::encode(stored.hasher.finalize()))))
}

/// The error for an identity that does not open bundle `id`.
fn wrong_key(remote: &Remote, id: &str, why: &str) -> Error {
    Error::WrongKey {
        remote: remote.spec.name.clone(),
        bundle: id.to_string(),
        reason: why.to_string(),
    }
}
