//! What a bundle looks like on a remote (docs/format.md#remote-layout):
//! `<prefix>/<bundle-id>/` holds one zstd-compressed object per bundle file
//! and, written last, `index.json`. Objects are named by position, never by
//! path: `m` (the manifest), `s` (its checksum file), `f/<n>` (the n-th file
//! of the manifest, stores in order, files in order). The index lists each
//! object's stored size and the sha256 of its stored bytes: enough to list,
//! prune and check presence without reading (or, later, decrypting) any
//! object, and nothing that names a store or a path.

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

impl RemoteIndex {
    /// Parses an index, refusing anything else.
    pub fn parse(bytes: &[u8]) -> Result<RemoteIndex, String> {
        let index: RemoteIndex =
            serde_json::from_slice(bytes).map_err(|e| format!("index.json: {e}"))?;
        if index.format != INDEX_FORMAT || index.version != 1 {
            return Err(format!(
                "index.json is {} version {}, not {INDEX_FORMAT} version 1",
                index.format, index.version
            ));
        }
        Ok(index)
    }

    /// The entry of object `name`.
    pub fn object(&self, name: &str) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.name == name)
    }
}
