//! A bundle on disk: its id, the destination lock, staging, and finding bundles.

pub mod destination;
pub mod id;
pub mod journal;
pub mod locate;
pub mod lock;
pub mod staging;

pub use id::BundleId;
pub use locate::{
    list, list_summaries, newest_until, resolve, BundleListing, ListedBundle, Wanted,
};

use std::path::Path;

use crate::manifest::Manifest;

/// The cheap check `prune` relies on: every file the manifest lists is present
/// under the store's folder, is a regular file and has its recorded size.
/// Returns the first problem found, or `None` when the bundle looks complete.
pub fn files_present(bundle: &Path, manifest: &Manifest) -> Option<String> {
    for store in &manifest.stores {
        for file in &store.files {
            let path = match file.rel() {
                Ok(rel) if in_store(&rel, &store.name) => bundle.join(rel),
                Ok(_) => return Some(format!("{}: path is outside the store's folder", file.path)),
                Err(e) => return Some(format!("{}: unsafe path: {e}", file.path)),
            };
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() && m.len() == file.bytes => {}
                Ok(m) if m.is_file() => {
                    return Some(format!(
                        "{}: size is {} bytes, manifest says {}",
                        file.path,
                        m.len(),
                        file.bytes
                    ))
                }
                Ok(_) => return Some(format!("{}: not a regular file", file.path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Some(format!("{}: file is missing", file.path))
                }
                Err(e) => return Some(format!("{}: cannot stat: {e}", file.path)),
            }
        }
    }
    None
}

/// Whether a bundle-relative path lies inside store `name`'s folder.
pub fn in_store(rel: &Path, name: &str) -> bool {
    rel.starts_with(name) && rel != Path::new(name)
}
