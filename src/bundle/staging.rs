//! Staging folders: a bundle is built in a hidden folder and renamed into place.
//!
//! Nothing that starts with `.` is ever taken for a bundle, so a crash part-way
//! leaves only a staging folder, which the next create removes. Only folders
//! whose full name is one this tool makes (`.staging-<id>-<pid>`,
//! `.deleting-<id>`) and whose content looks like a bundle's are ever
//! removed as leftovers: a user's folder that merely starts the same way is
//! left alone.

use std::path::{Path, PathBuf};

use crate::bundle::BundleId;
use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_FILE, MANIFEST_SUM_FILE};

/// Prefix of staging folder names inside a destination.
pub const STAGING_PREFIX: &str = ".staging-";

/// Path of a fresh staging folder for bundle `id`.
pub fn staging_path(destination: &Path, id: &str) -> PathBuf {
    destination.join(format!("{STAGING_PREFIX}{id}-{}", std::process::id()))
}

/// Prefix of a bundle folder being deleted by prune.
pub const DELETING_PREFIX: &str = ".deleting-";

/// Which kind of leftover a destination entry name is, if it is exactly one
/// of the names create and prune make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// `.staging-<id>-<pid>`: a create that did not finish.
    Staging,
    /// `.deleting-<id>`: a prune that did not finish.
    Deleting,
}

/// Classifies `name` as a leftover by its full name.
pub fn leftover_name(name: &str) -> Option<Leftover> {
    if let Some(rest) = name.strip_prefix(STAGING_PREFIX) {
        let (id, pid) = rest.rsplit_once('-')?;
        let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
        return (digits && BundleId::parse(id).is_some()).then_some(Leftover::Staging);
    }
    let id = name.strip_prefix(DELETING_PREFIX)?;
    BundleId::parse(id).map(|_| Leftover::Deleting)
}

/// Whether the folder at `path` holds only what a bundle holds: the manifest
/// files and store folders at the top, and nothing but folders and regular
/// files beneath (never a symlink or special file).
pub fn looks_like_a_bundle(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else { return false };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            return false;
        };
        let ok = if kind.is_dir() {
            crate::config::validate_store_name(&name).is_ok()
        } else {
            kind.is_file() && (name == MANIFEST_FILE || name == MANIFEST_SUM_FILE)
        };
        if !ok {
            return false;
        }
    }
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .all(|e| e.is_ok_and(|e| e.file_type().is_dir() || e.file_type().is_file()))
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
        let path = entry.path();
        if is_dir && leftover_name(&name) == Some(Leftover::Staging) && looks_like_a_bundle(&path) {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io("could not remove leftover staging folder", &path, e))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}
