//! What a push knows about what the remote already holds, and how it
//! tells its own objects there from anyone else's.
//!
//! On a plaintext remote it reads: the manifests of complete bundles say
//! which object holds which plaintext, and an interrupted push's objects
//! are read back and compared. On an encrypted remote the pushing host has
//! no key; the destination's [`Ledger`] of what it pushed, checked against
//! the stored bytes' hashes in the index (or by hashing what is stored),
//! stands in, and only objects encrypted to the current recipients count.

use std::collections::HashMap;

use crate::error::Result;
use crate::manifest::{FileRecord, Manifest};
use crate::remote::fetch::{read_object, stored_hash, Opening};
use crate::remote::layout::{self, file_object, RemoteIndex, StoredObject};
use crate::remote::ledger::Ledger;
use crate::remote::{Remote, RemoteBundle, RemoteListing};

/// A remote object holding a given plaintext, found in a complete bundle.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its name below the remote's prefix.
    pub object: String,
    /// Its index entry.
    pub stored: StoredObject,
}

/// Plaintext (sha256, size) → an object of a complete remote bundle holding it.
pub type KnownFiles = HashMap<(String, u64), Known>;

/// What the pusher can rely on about a remote.
pub struct Recall<'a> {
    /// The remote.
    pub remote: &'a Remote,
    /// Its ledger in this destination (encrypted remotes only).
    pub ledger: Option<&'a Ledger>,
    /// Fingerprint of the current recipients.
    pub fingerprint: String,
}

impl Recall<'_> {
    /// What complete remote bundles hold that a push may copy on the server.
    pub fn known_files(&self, listing: &RemoteListing) -> KnownFiles {
        let mut known = KnownFiles::new();
        let Some(ledger) = self.ledger else {
            for b in &listing.bundles {
                if let Some(opened) = &b.opened {
                    learn(&mut known, &opened.manifest, &b.index);
                }
            }
            return known;
        };
        let complete: HashMap<String, &RemoteBundle> = listing
            .bundles
            .iter()
            .map(|b| (b.id.to_string(), b))
            .collect();
        for pushed in ledger.all() {
            let Some(there) = complete.get(&pushed.bundle) else {
                continue;
            };
            let Some(stored) = there.index.object(&pushed.object) else {
                continue;
            };
            let intact =
                stored.sha256 == pushed.stored_sha256 && stored.bytes == pushed.stored_bytes;
            if intact && pushed.recipients == self.fingerprint && pushed.object.starts_with("f/") {
                known.insert(
                    (pushed.plain_sha256.clone(), pushed.plain_bytes),
                    Known {
                        object: there.index.path_of(&pushed.object),
                        stored: stored.clone(),
                    },
                );
            }
        }
        known
    }

    /// Whether complete remote bundle `there` is the local bundle whose
    /// manifest is `manifest_bytes`: compared when readable, else by the ledger.
    pub fn is_same_bundle(&self, there: &RemoteBundle, manifest_bytes: &[u8]) -> bool {
        if let Some(opened) = &there.opened {
            return opened.bytes == manifest_bytes;
        }
        let id = there.id.to_string();
        let entry = there.index.object(layout::MANIFEST_OBJECT);
        self.recorded(&id, layout::MANIFEST_OBJECT, manifest_bytes)
            .zip(entry)
            .is_some_and(|(sha, e)| e.sha256 == sha)
    }

    /// The stored hash the ledger records for `object` of `id` when its
    /// plaintext was exactly `plain`.
    fn recorded(&self, id: &str, object: &str, plain: &[u8]) -> Option<String> {
        let pushed = self.ledger?.get(id, object)?;
        let same = pushed.plain_bytes == plain.len() as u64
            && pushed.plain_sha256 == crate::hash::sha256_hex(plain);
        same.then(|| pushed.stored_sha256.clone())
    }

    /// The entry of `object`, stored by an interrupted push of bundle `id`,
    /// when it holds exactly `plain` (the manifest); `None` when it does not
    /// or cannot be told.
    pub fn resumed_small(
        &self,
        id: &str,
        name: &str,
        plain: &[u8],
    ) -> Result<Option<StoredObject>> {
        let object = format!("{id}/{name}");
        let Some((bytes, sha)) = stored_hash(self.remote, &object)? else {
            return Ok(None);
        };
        let ours = match self.ledger {
            Some(_) => self.recorded(id, name, plain).is_some_and(|s| s == sha),
            None => {
                let stored = self.remote.engine.get(&object)?.unwrap_or_default();
                zstd::stream::decode_all(stored.as_slice()).is_ok_and(|p| p == plain)
            }
        };
        Ok(ours.then(|| StoredObject {
            name: name.into(),
            bytes,
            sha256: sha,
        }))
    }

    /// The entry of file object `name` an interrupted push of bundle `id`
    /// stored, when it holds exactly `file` (encrypted to the current
    /// recipients); `None` to upload it again.
    pub fn resumed_file(
        &self,
        id: &str,
        name: &str,
        file: &FileRecord,
    ) -> Result<Option<StoredObject>> {
        let object = format!("{id}/{name}");
        let Some(ledger) = self.ledger else {
            let at = Opening {
                bundle: id,
                encrypted: false,
            };
            return Ok(read_object(self.remote, at, &object, file, None)?.ok());
        };
        let Some(pushed) = ledger.get(id, name) else {
            return Ok(None);
        };
        if pushed.plain_sha256 != file.sha256.to_string()
            || pushed.plain_bytes != file.bytes
            || pushed.recipients != self.fingerprint
        {
            return Ok(None);
        }
        Ok(stored_hash(self.remote, &object)?
            .filter(|(bytes, sha)| *bytes == pushed.stored_bytes && *sha == pushed.stored_sha256)
            .map(|(bytes, sha256)| StoredObject {
                name: name.into(),
                bytes,
                sha256,
            }))
    }
}

/// Adds the files of a complete bundle to `known`.
pub fn learn(known: &mut KnownFiles, manifest: &Manifest, index: &RemoteIndex) {
    for (n, file) in layout::files(manifest).enumerate() {
        let name = file_object(n);
        if let Some(stored) = index.object(&name) {
            known.insert(
                (file.sha256.to_string(), file.bytes),
                Known {
                    object: index.path_of(&name),
                    stored: stored.clone(),
                },
            );
        }
    }
}
