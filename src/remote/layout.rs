//! What a bundle looks like on a remote (docs/format.md#remote-layout):
//! `<prefix>/<bundle-id>/` holds one zstd-compressed object per bundle file
//! and, written last, `index.json`. Objects are named by position, never by
//! path: `m` (the manifest), `s` (its checksum file), `f/<n>` (the n-th file
//! of the manifest, stores in order, files in order). The index lists each
//! object's stored size and the sha256 of its stored bytes: enough to list,
//! prune and check presence without reading or decrypting any object, and
//! nothing that names a store or a path or hashes a plaintext.

use serde::{Deserialize, Serialize};

use crate::manifest::{FileRecord, Manifest};

/// The index object's name inside a bundle's folder.
pub const INDEX: &str = "index.json";

/// The manifest object's name.
pub const MANIFEST_OBJECT: &str = "m";

/// The manifest checksum file's object name.
pub const SUM_OBJECT: &str = "s";

/// `format` of every remote index.
pub const INDEX_FORMAT: &str = "bundle-remote-index";

/// The object name of the `n`-th file of a manifest.
pub fn file_object(n: usize) -> String {
    format!("f/{n}")
}

/// The files of a manifest in object order.
pub fn files(manifest: &Manifest) -> impl Iterator<Item = &FileRecord> {
    manifest.stores.iter().flat_map(|s| &s.files)
}

/// A remote bundle's index, written after every other object of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteIndex {
    /// Always [`INDEX_FORMAT`].
    pub format: String,
    /// Version of this layout; 1.
    pub version: u32,
    /// The bundle's id (its folder name).
    pub bundle_id: String,
    /// When the bundle was created (its manifest's `created_at`).
    pub created_at: String,
    /// zstd, for every object.
    pub compression: String,
    /// `none`, or `age`: every object is compressed, then encrypted to the
    /// remote's recipients (absent in indexes of older pushes: `none`).
    #[serde(default = "plaintext")]
    pub encryption: String,
    /// How a prune counts the bundle without reading its manifest (so with
    /// no key): `good`, `suspicious` (create flagged it), `failed` (a store
    /// failed) or `safety-snapshot` (taken before a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<String>,
    /// Set once `push --reencrypt` rewrote the bundle: its objects then live
    /// in `<id>/g<generation>/` (a rewrite writes a new generation, then
    /// this index, then deletes the old one, so a kill leaves one whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Every object of the bundle.
    pub objects: Vec<StoredObject>,
}

/// One object as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredObject {
    /// Its name inside the bundle's folder.
    pub name: String,
    /// Bytes stored.
    pub bytes: u64,
    /// sha256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// The `encryption` of an index that does not say.
fn plaintext() -> String {
    ENCRYPTION_NONE.into()
}

/// `encryption` of an index whose objects are plaintext (compressed).
pub const ENCRYPTION_NONE: &str = "none";

/// `encryption` of an index whose objects are age-encrypted.
pub const ENCRYPTION_AGE: &str = "age";

/// How a prune counts a bundle, from its manifest (see [`RemoteIndex::standing`]).
pub fn standing(manifest: &Manifest) -> &'static str {
    if !manifest.failed_stores().is_empty() {
        "failed"
    } else if manifest.reason.as_deref() == Some(crate::manifest::PRE_RESTORE) {
        "safety-snapshot"
    } else if manifest.suspicious || manifest.reason.is_some() {
        "suspicious"
    } else {
        "good"
    }
}

impl RemoteIndex {
    /// Parses an index, refusing anything else.
    pub fn parse(bytes: &[u8]) -> Result<RemoteIndex, String> {
        let index: RemoteIndex =
            serde_json::from_slice(bytes).map_err(|e| format!("index.json: {e}"))?;
        if index.encryption != ENCRYPTION_NONE && index.encryption != ENCRYPTION_AGE {
            return Err(format!(
                "index.json says encryption {:?}, which this version cannot read",
                index.encryption
            ));
        }
        if index.format != INDEX_FORMAT || index.version != 1 {
            return Err(format!(
                "index.json is {} version {}, not {INDEX_FORMAT} version 1",
                index.format, index.version
            ));
        }
        Ok(index)
    }

    /// Where object `name` of this bundle is, below the remote's prefix.
    pub fn path_of(&self, name: &str) -> String {
        match self.generation {
            None => format!("{}/{name}", self.bundle_id),
            Some(g) => format!("{}/g{g}/{name}", self.bundle_id),
        }
    }

    /// Whether its objects are encrypted.
    pub fn encrypted(&self) -> bool {
        self.encryption == ENCRYPTION_AGE
    }

    /// The entry of object `name` (found by position first: a push writes
    /// `m`, `s`, `f/0`, `f/1`, … in that order).
    pub fn object(&self, name: &str) -> Option<&StoredObject> {
        let position = match name {
            MANIFEST_OBJECT => Some(0),
            SUM_OBJECT => Some(1),
            _ => name
                .strip_prefix("f/")
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| n + 2),
        };
        position
            .and_then(|p| self.objects.get(p))
            .filter(|o| o.name == name)
            .or_else(|| self.objects.iter().find(|o| o.name == name))
    }
}
