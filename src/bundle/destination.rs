//! Where bundles live, as the operations prune needs: list and classify
//! what is there, delete a bundle so that a crash never leaves a half bundle
//! that looks whole, remove the leftovers of crashed runs. Today the only
//! destination is a local folder ([`LocalFolder`]); an object store is one
//! more implementation beside it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;

use crate::bundle::lock::DestinationLock;
use crate::bundle::staging::{leftover_name, looks_like_a_bundle, Leftover, DELETING_PREFIX};
use crate::bundle::BundleId;
use crate::error::{Error, Result};
use crate::fsutil;

/// Staging folders younger than this may belong to a running create.
pub const STAGING_MIN_AGE: Duration = Duration::from_secs(3600);

/// A folder of the destination, classified.
pub enum Entry {
    /// A bundle whose files are all present.
    Bundle {
        /// Its id.
        id: String,
        /// When it was made.
        created_at: Timestamp,
        /// Whether it is a pre-restore safety snapshot.
        safety: bool,
        /// The stores healthy in it (see [`crate::shrink::healthy_in`]).
        healthy: Vec<String>,
    },
    /// A bundle with files missing (or a store that failed), and why.
    Damaged(String, String),
    /// A folder whose name or manifest cannot be parsed, and why.
    Unparseable(String, String),
    /// A leftover of a crashed create or delete.
    Leftover(String),
}

/// A place bundles live, as prune sees it.
pub trait Destination {
    /// Takes the destination for deleting: no create, restore or other
    /// prune meanwhile, and no interrupted restore; dropped when done.
    fn lock_for_deleting(&self) -> Result<Box<dyn std::any::Any>>;
    /// Classifies everything there.
    fn scan(&self) -> Result<Vec<Entry>>;
    /// Deletes bundle `id`.
    fn delete(&self, id: &str) -> Result<()>;
    /// Removes the leftover `name`.
    fn remove_leftover(&self, name: &str) -> Result<()>;
}

/// A local folder of bundles.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    path: PathBuf,
}

impl LocalFolder {
    /// The existing folder `path`.
    pub fn open(path: &Path) -> Result<LocalFolder> {
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "destination {} does not exist or is not a folder",
                path.display()
            )));
        }
        Ok(LocalFolder {
            path: path.to_path_buf(),
        })
    }
}

impl Destination for LocalFolder {
    fn lock_for_deleting(&self) -> Result<Box<dyn std::any::Any>> {
        let lock = DestinationLock::acquire(&self.path)?;
        crate::bundle::journal::refuse_if_interrupted(&self.path)?;
        Ok(Box::new(lock))
    }

    fn scan(&self) -> Result<Vec<Entry>> {
        scan(&self.path)
    }

    fn delete(&self, id: &str) -> Result<()> {
        delete_bundle(&self.path, id)
    }

    fn remove_leftover(&self, name: &str) -> Result<()> {
        remove_tree(&self.path.join(name))?;
        fsutil::fsync_path(&self.path)
    }
}

/// Classifies every folder of the destination; files and symlinks are ignored.
fn scan(destination: &Path) -> Result<Vec<Entry>> {
    let read_error = |e| Error::io("could not read destination", destination, e);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(destination).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let leftover = leftover_name(&name).filter(|_| looks_like_a_bundle(&entry.path()));
        if leftover == Some(Leftover::Deleting) {
            entries.push(Entry::Leftover(name));
        } else if leftover == Some(Leftover::Staging) {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age >= STAGING_MIN_AGE {
                entries.push(Entry::Leftover(name));
            }
        } else if !name.starts_with('.') {
            entries.push(classify(&entry.path(), name));
        }
    }
    Ok(entries)
}

/// Classifies one visible folder: a good bundle, a damaged one, or unparseable.
fn classify(path: &Path, name: String) -> Entry {
    if BundleId::parse(&name).is_none() {
        return Entry::Unparseable(name, "the folder name is not a bundle id".into());
    }
    // Read with its files checked present, its records never all held.
    let (manifest, missing) = match crate::bundle::read_checking_presence(path) {
        Ok(read) => read,
        Err(e) => {
            let why = crate::bundle::locate::error_chain(&e);
            return Entry::Unparseable(name, why);
        }
    };
    if manifest.id != name {
        let why = format!(
            "manifest id \"{}\" differs from the folder name",
            manifest.id
        );
        return Entry::Unparseable(name, why);
    }
    let Ok(created_at) = manifest.created_at.parse::<Timestamp>() else {
        let why = format!("created_at \"{}\" is not a time", manifest.created_at);
        return Entry::Unparseable(name, why);
    };
    if let Some(problem) = missing {
        return Entry::Damaged(name, problem);
    }
    // A bundle missing a store is evidence, not a backup that fills a slot.
    if let Some((store, why)) = manifest.failed_stores().first() {
        let problem = format!("store \"{store}\" failed when it was made: {why}");
        return Entry::Damaged(name, problem);
    }
    Entry::Bundle {
        id: name,
        created_at,
        safety: manifest.reason.as_deref() == Some(crate::manifest::PRE_RESTORE),
        healthy: manifest
            .stores
            .iter()
            .filter(|s| crate::shrink::healthy_in(&manifest, &s.name))
            .map(|s| s.name.clone())
            .collect(),
    }
}

/// Deletes a bundle: rename to `.deleting-<id>` (atomic), then remove that.
fn delete_bundle(destination: &Path, id: &str) -> Result<()> {
    let from = destination.join(id);
    let hidden = destination.join(format!("{DELETING_PREFIX}{id}"));
    // A crashed delete of an earlier bundle with the same id may have left
    // this name behind; it is a leftover, and we hold the lock.
    if std::fs::symlink_metadata(&hidden).is_ok() {
        remove_tree(&hidden)?;
    }
    std::fs::rename(&from, &hidden)
        .map_err(|e| Error::io("could not move aside for deletion", &from, e))?;
    fsutil::fsync_path(destination)?;
    let _deleting = crate::interrupt::scratch(
        &hidden,
        "the rest of the bundle being deleted (what is left of it, the next prune or create removes)",
    );
    remove_tree(&hidden)
}

/// Removes a folder tree. Bundle files are read-only, but unlinking needs only
/// write permission on their folders, which are made writable first; file
/// modes are left alone since a file may be shared (hard-linked) with another
/// bundle.
fn remove_tree(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            if let Ok(meta) = entry.metadata() {
                let mode = meta.permissions().mode();
                if mode & 0o700 != 0o700 {
                    let _ = std::fs::set_permissions(
                        entry.path(),
                        std::fs::Permissions::from_mode(mode | 0o700),
                    );
                }
            }
        }
    }
    match std::fs::remove_dir_all(root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("could not delete", root, e))
        }
        _ => Ok(()),
    }
}
