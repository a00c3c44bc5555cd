//! Public-key encryption of remote objects with age (X25519 recipients,
//! the `age` crate, streaming). The pushing host needs only public keys;
//! reading needs an identity file (the secret key), which may itself be
//! protected by a passphrase (`age -p`). Identities are never logged,
//! copied or written anywhere by this crate, except by [`new_identity`].

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The secret keys of an identity file, ready to decrypt.
pub struct Identity {
    /// Where they were read from (for messages).
    pub path: PathBuf,
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.path.display())
    }
}

/// Whether an identity file's permissions let others read it, as a warning.
pub fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "identity file {} can be read by other users (mode {:o}); `chmod 600` it",
            path.display(),
            mode & 0o777
        )
    })
}

impl Identity {
    /// Reads the identity file at `path`. A passphrase-protected one (made
    /// with `age -p`, armored or not) is opened with what `passphrase`
    /// returns; `None` from it means none could be asked for.
    pub fn load(path: &Path, passphrase: &dyn Fn() -> Option<String>) -> Result<Identity> {
        let fail =
            |reason: String| Error::Usage(format!("identity file {}: {reason}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| Error::io("could not read", path, e))?;
        let text = if is_age_file(&bytes) {
            let reader = age::armor::ArmoredReader::new(bytes.as_slice());
            let decryptor = age::Decryptor::new(reader)
                .map_err(|e| fail(format!("not a readable age file: {e}")))?;
            if !decryptor.is_scrypt() {
                return Err(fail("it is encrypted, but not with a passphrase".into()));
            }
            let Some(secret) = passphrase() else {
                return Err(fail("it is protected by a passphrase: set BUNDLE_IDENTITY_PASSPHRASE or run on a terminal".into()));
            };
            let key = age::scrypt::Identity::new(SecretString::from(secret));
            let mut plain = Vec::new();
            decryptor
                .decrypt(std::iter::once(&key as &dyn age::Identity))
                .map_err(|_| fail("wrong passphrase".into()))?
                .read_to_end(&mut plain)
                .map_err(|e| fail(format!("cannot decrypt: {e}")))?;
            plain
        } else {
            bytes
        };
        let keys = age::IdentityFile::from_buffer(text.as_slice())
            .map_err(|e| fail(e.to_string()))?
            .into_identities()
            .map_err(|e| fail(e.to_string()))?;
        if keys.is_empty() {
            return Err(fail("it holds no identity (AGE-SECRET-KEY-1…)".into()));
        }
        Ok(Identity {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// Decrypts the age stream `input`; why not when it cannot.
    pub fn decrypt<R: Read>(
        &self,
        input: R,
    ) -> std::result::Result<age::stream::StreamReader<R>, Undecrypted> {
        let decryptor = age::Decryptor::new(input)
            .map_err(|e| Undecrypted::Damaged(format!("not a readable age file ({e})")))?;
        decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Undecrypted::WrongKey(format!(
                    "encrypted to other keys: {} cannot open it",
                    self.path.display()
                )),
                other => Undecrypted::Damaged(other.to_string()),
            })
    }
}

/// Why an object could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecrypted {
    /// None of the identity's keys opens it.
    WrongKey(String),
    /// It is not an intact age file.
    Damaged(String),
}

/// Whether `bytes` start like an age file (binary or armored).
fn is_age_file(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/")
        || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// Wraps `output` so that what is written to it is encrypted to `recipients`.
pub fn encrypt_to<W: Write>(
    recipients: &[age::x25519::Recipient],
    output: W,
) -> std::io::Result<age::stream::StreamWriter<W>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    encryptor.wrap_output(output)
}

/// A short, stable name for a set of recipients (kept locally only, to tell
/// which objects were encrypted to which keys).
pub fn fingerprint(recipients: &[age::x25519::Recipient]) -> String {
    let mut keys: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
    keys.sort();
    keys.dedup();
    let digest = Sha256::digest(keys.join("\n").as_bytes());
    hex::encode(&digest[..16])
}

/// Writes a new identity to `out` (mode 0600, refusing to overwrite); its
/// public key.
pub fn new_identity(out: &Path) -> Result<String> {
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let text = format!(
        "# created by bundle key new\n# public key: {public}\n{}\n",
        identity.to_string().expose_secret()
    );
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Refused(format!(
                "{} already exists; an identity is never overwritten (choose another --out)",
                out.display()
            )),
            _ => Error::io("could not create", out, e),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("could not write", out, e))?;
    Ok(public)
}
