//! Staging folders: a bundle is built in a hidden folder and renamed into place.
//!
//! Nothing that starts with `.` is ever taken for a bundle, so a crash part-way
//! leaves only a staging folder, which the next create removes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Prefix of staging folder names inside a destination.
pub const STAGING_PREFIX: &str = ".staging-";

/// Path of a fresh staging folder for bundle `id`.
pub fn staging_path(destination: &Path, id: &str) -> PathBuf {
    destination.join(format!("{STAGING_PREFIX}{id}-{}", std::process::id()))
}

/// Removes staging folders left by crashed runs; call only while holding the
/// destination lock. Returns the names removed.
pub fn remove_leftovers(destination: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries =
        std::fs::read_dir(destination).map_err(|e| Error::io("could not read", destination, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("could not read", destination, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && name.starts_with(STAGING_PREFIX) {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io("could not remove leftover staging folder", &path, e))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}
