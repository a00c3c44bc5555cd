//! Finding bundles: listing a destination and resolving a `<BUNDLE>` argument
//! (a path, an id in the destination, or `latest`).

use std::path::{Path, PathBuf};

use crate::bundle::BundleId;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, MANIFEST_FILE};

/// A bundle found in a destination.
#[derive(Debug, Clone)]
pub struct ListedBundle {
    /// Its id (the folder name).
    pub id: BundleId,
    /// Its folder.
    pub path: PathBuf,
    /// Its parsed manifest (from [`list_summaries`]: without file records).
    pub manifest: Manifest,
    /// The total size of its files, as its manifest records them.
    pub bytes: u64,
}

/// Everything found in a destination.
#[derive(Debug, Default)]
pub struct BundleListing {
    /// Bundles whose manifest parses, oldest first.
    pub bundles: Vec<ListedBundle>,
    /// Folders named like bundles whose manifest is missing or unreadable, with why.
    pub unreadable: Vec<(String, String)>,
}

/// The folders of `destination` named like bundle ids, with their ids and
/// names, in no order. A missing destination has none.
fn bundle_folders(destination: &Path) -> Result<Vec<(BundleId, String, PathBuf)>> {
    let entries = match std::fs::read_dir(destination) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("could not read destination", destination, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("could not read destination", destination, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = BundleId::parse(&name) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push((id, name, entry.path()));
        }
    }
    Ok(found)
}

/// The manifest of the bundle folder `path` named `name`: why not, when it
/// cannot be read or names another id.
fn read_listed(path: &Path, name: &str) -> std::result::Result<Manifest, String> {
    check_listed(Manifest::read(&path.join(MANIFEST_FILE)), name)
}

/// [`read_listed`] without the file records, with the bytes they total.
fn read_listed_summary(path: &Path, name: &str) -> std::result::Result<(Manifest, u64), String> {
    let read = Manifest::read_summary(&path.join(MANIFEST_FILE));
    let bytes = read.as_ref().map_or(0, |(_, bytes)| *bytes);
    check_listed(read.map(|(manifest, _)| manifest), name).map(|m| (m, bytes))
}

/// A manifest read for the bundle folder `name`: why not, when it could
/// not be read or names another id.
fn check_listed(read: Result<Manifest>, name: &str) -> std::result::Result<Manifest, String> {
    match read {
        Ok(manifest) if manifest.id == name => Ok(manifest),
        Ok(manifest) => Err(format!(
            "manifest id \"{}\" differs from the folder name",
            manifest.id
        )),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Lists the bundles in `destination`, oldest first. Hidden folders (staging) and
/// anything not named like a bundle id are ignored. A missing destination is empty.
pub fn list(destination: &Path) -> Result<BundleListing> {
    list_keeping(destination, true)
}

/// [`list`] for callers that need each bundle's summary, not its file
/// records: each manifest is still read and checked in full (an unreadable
/// one is reported as such), its bytes totalled, then its file records are
/// dropped before the next is read, so memory is that of one manifest
/// however many bundles there are.
pub fn list_summaries(destination: &Path) -> Result<BundleListing> {
    list_keeping(destination, false)
}

/// [`list`], keeping each manifest's file records or not.
fn list_keeping(destination: &Path, files: bool) -> Result<BundleListing> {
    let mut listing = BundleListing::default();
    for (id, name, path) in bundle_folders(destination)? {
        let read = if files {
            read_listed(&path, &name).map(|m| {
                let bytes = m.total_bytes();
                (m, bytes)
            })
        } else {
            read_listed_summary(&path, &name)
        };
        match read {
            Ok((manifest, bytes)) => listing.bundles.push(ListedBundle {
                id,
                path,
                manifest,
                bytes,
            }),
            Err(why) => listing.unreadable.push((name, why)),
        }
    }
    listing.bundles.sort_by(|a, b| a.id.cmp(&b.id));
    listing.unreadable.sort();
    Ok(listing)
}

/// The folders in `destination` named like bundles, newest first: each
/// one's id, name and path (a create reads the newest few manifests, one
/// at a time, not every one).
pub fn newest_first(destination: &Path) -> Result<Vec<(BundleId, String, PathBuf)>> {
    let mut folders = bundle_folders(destination)?;
    folders.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(folders)
}

/// Resolves a `<BUNDLE>` argument to a bundle folder.
///
/// An existing folder is taken as a path; otherwise `latest` or an id is looked
/// up in `destination`.
pub fn resolve(arg: &str, destination: Option<&Path>) -> Result<PathBuf> {
    let as_path = Path::new(arg);
    // A folder given as a path is taken as is: verify reports a missing
    // manifest as a problem (exit 1), and restore's preflight refuses it.
    if arg != "latest" && as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    let is_id = BundleId::parse(arg).is_some();
    if arg != "latest" && !is_id {
        return Err(Error::Usage(format!(
            "no bundle at \"{arg}\": give a bundle folder, a bundle id, or `latest`"
        )));
    }
    let destination = destination.ok_or_else(|| {
        Error::Usage(format!(
            "cannot look up \"{arg}\" without a destination: set `destination` in bundle.toml, pass --config, or give --dest DIR"
        ))
    })?;
    if is_id {
        let path = destination.join(arg);
        return match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::Refused(format!(
                "{} is a symlink, not a bundle folder; bundles named by id are never followed through links",
                path.display()
            ))),
            Ok(m) if m.is_dir() => Ok(path),
            _ => Err(Error::Usage(format!(
                "no bundle \"{arg}\" in {}",
                destination.display()
            ))),
        };
    }
    list(destination)?
        .bundles
        .pop()
        .map(|b| b.path)
        .ok_or_else(|| Error::Usage(format!("no bundles in {}", destination.display())))
}

/// Joins an error and its sources into one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
