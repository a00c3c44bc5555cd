//! `bundle prune`: delete the bundles a retention policy no longer keeps.
//!
//! Dry run by default. What is never deleted, whatever the policy: the newest
//! bundle that passes the quick check, young pre-restore safety bundles,
//! damaged bundles (reported, and they fill no keep slot), folders whose name
//! or manifest cannot be parsed, and anything that is not a bundle folder.
//!
//! A bundle is deleted by first renaming it to a hidden `.deleting-<id>`
//! folder (the commit point) and then removing that; a crash in between leaves
//! only a hidden folder, never a half bundle that looks whole. Such folders,
//! and staging folders of crashed creates older than an hour, are removed by
//! the next `prune --apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use serde::Serialize;

use crate::bundle::lock::DestinationLock;
use crate::bundle::staging::{leftover_name, looks_like_a_bundle, Leftover};
use crate::bundle::BundleId;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::retention::{self, Candidate, Policy, Reason};

pub use crate::bundle::staging::DELETING_PREFIX;

/// Staging folders younger than this may belong to a running create.
pub const STAGING_MIN_AGE: Duration = Duration::from_secs(3600);

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Folder holding the bundles.
    pub destination: PathBuf,
    /// The retention policy (must set at least one rule).
    pub policy: Policy,
    /// The time the policy is evaluated at.
    pub now: Timestamp,
    /// Delete; otherwise only report.
    pub apply: bool,
}

/// A bundle that is kept, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeptBundle {
    /// The bundle id.
    pub id: String,
    /// Every rule that keeps it.
    pub reasons: Vec<Reason>,
}

/// What prune found and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// True when nothing was deleted because `--apply` was not given.
    pub dry_run: bool,
    /// Bundles kept, newest first.
    pub kept: Vec<KeptBundle>,
    /// Bundles deleted (or, in a dry run, that would be), newest first.
    pub deleted: Vec<String>,
    /// Bundles failing the quick check: left in place, keeping no slot.
    pub damaged: Vec<String>,
    /// Folders whose name or manifest cannot be parsed: left in place.
    pub unparseable: Vec<String>,
    /// Hidden leftovers of crashed creates and deletes removed (or that would be).
    pub leftovers: Vec<String>,
    /// Why each damaged or unparseable folder is so.
    pub problems: BTreeMap<String, String>,
}

/// A folder of the destination, classified.
enum Entry {
    Bundle {
        id: String,
        created_at: Timestamp,
        safety: bool,
    },
    Damaged(String, String),
    Unparseable(String, String),
    Leftover(String),
}

/// Applies (or, by default, reports) the retention policy in a destination.
pub fn prune(opts: &PruneOptions) -> Result<PruneReport> {
    if opts.policy.has_no_rules() {
        return Err(Error::Usage(
            "no retention policy: pass --keep-last N, --keep-within DURATION, --keep-daily N, --keep-weekly N or --keep-monthly N, or add a [retention] table to bundle.toml"
                .into(),
        ));
    }
    if !opts.destination.is_dir() {
        return Err(Error::Usage(format!(
            "destination {} does not exist or is not a folder",
            opts.destination.display()
        )));
    }
    // Deleting needs the destination to itself: no create or restore running.
    let _lock = if opts.apply {
        let lock = DestinationLock::acquire(&opts.destination)?;
        crate::bundle::journal::refuse_if_interrupted(&opts.destination)?;
        Some(lock)
    } else {
        None
    };
    let mut report = PruneReport {
        dry_run: !opts.apply,
        kept: Vec::new(),
        deleted: Vec::new(),
        damaged: Vec::new(),
        unparseable: Vec::new(),
        leftovers: Vec::new(),
        problems: BTreeMap::new(),
    };
    let mut candidates = Vec::new();
    for entry in scan(&opts.destination)? {
        match entry {
            Entry::Bundle {
                id,
                created_at,
                safety,
            } => candidates.push(Candidate {
                id,
                created_at,
                safety,
            }),
            Entry::Damaged(id, why) => {
                report.problems.insert(id.clone(), why);
                report.damaged.push(id);
            }
            Entry::Unparseable(name, why) => {
                report.problems.insert(name.clone(), why);
                report.unparseable.push(name);
            }
            Entry::Leftover(name) => report.leftovers.push(name),
        }
    }
    report.damaged.sort();
    report.unparseable.sort();
    report.leftovers.sort();
    for decision in retention::decide(&candidates, &opts.policy, opts.now) {
        if decision.keep() {
            report.kept.push(KeptBundle {
                id: decision.id,
                reasons: decision.reasons,
            });
        } else {
            report.deleted.push(decision.id);
        }
    }
    if opts.apply {
        for name in &report.leftovers {
            remove_tree(&opts.destination.join(name))?;
        }
        for id in &report.deleted {
            delete_bundle(&opts.destination, id)?;
        }
        fsutil::fsync_path(&opts.destination)?;
    }
    Ok(report)
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
    let manifest = match Manifest::read(&path.join(MANIFEST_FILE)) {
        Ok(m) => m,
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
    if let Some(problem) = crate::bundle::files_present(path, &manifest) {
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
