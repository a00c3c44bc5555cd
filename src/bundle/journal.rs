//! The restore journal: written before a restore changes anything, removed
//! when it has finished and checked. Its presence means a restore was
//! interrupted; `create` and other restores refuse until it is finished or undone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;

/// File name of the journal inside a destination.
pub const JOURNAL_FILE: &str = ".restore-journal.json";

/// What an in-progress restore is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The bundle folder being restored.
    pub bundle: PathBuf,
    /// Its id.
    pub bundle_id: String,
    /// `merge` or `replace`.
    pub mode: String,
    /// The stores being restored, sorted.
    pub stores: Vec<String>,
    /// The confirm token of the plan (names bundle, mode, stores and targets).
    pub token: String,
    /// The safety snapshot taken before the first write, if any.
    pub safety_snapshot: Option<PathBuf>,
    /// When the restore started (RFC 3339).
    pub started_at: String,
}

impl Journal {
    /// Whether restoring the bundle of `manifest` undoes this restore: it is
    /// the safety snapshot this journal names.
    pub fn undone_by(&self, manifest: &crate::manifest::Manifest) -> bool {
        let named = self
            .safety_snapshot
            .as_deref()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str());
        named == Some(manifest.id.as_str())
            && manifest.reason.as_deref() == Some(crate::manifest::PRE_RESTORE)
            && manifest.restoring.as_deref() == Some(self.bundle_id.as_str())
    }

    /// The command that finishes this restore.
    pub fn finish_hint(&self) -> String {
        let stores: String = self
            .stores
            .iter()
            .map(|s| format!(" --store {s}"))
            .collect();
        let token = if self.mode == "replace" {
            format!(" --confirm-token {}", self.token)
        } else {
            String::new()
        };
        let undo = match &self.safety_snapshot {
            Some(s) => format!(
                "; or undo it: bundle restore {} --mode replace --dry-run (prints its confirm token), then again with --confirm-token TOKEN",
                s.display()
            ),
            None => String::new(),
        };
        format!(
            "finish it: bundle restore {} --mode {}{stores}{token}{undo}",
            self.bundle.display(),
            self.mode
        )
    }
}

/// Reads the journal of `destination`, if any.
pub fn read(destination: &Path) -> Result<Option<Journal>> {
    let path = destination.join(JOURNAL_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Refused(format!(
                "an interrupted restore left {} but it cannot be read ({e}); inspect the live stores, then delete that file",
                path.display()
            ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("could not read", &path, e)),
    }
}

/// Writes the journal atomically.
pub fn write(destination: &Path, journal: &Journal) -> Result<()> {
    fsutil::create_private_dir_all(destination)?;
    let bytes = serde_json::to_vec_pretty(journal).expect("journal serializes");
    fsutil::replace_file(&destination.join(JOURNAL_FILE), |f| {
        std::io::Write::write_all(f, &bytes)
    })
}

/// Removes the journal once the restore finished and checked.
pub fn remove(destination: &Path) -> Result<()> {
    let path = destination.join(JOURNAL_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => fsutil::fsync_path(destination),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("could not remove", &path, e)),
    }
}

/// Refuses (exit 3) when an interrupted restore is recorded in `destination`.
pub fn refuse_if_interrupted(destination: &Path) -> Result<()> {
    match read(destination)? {
        Some(j) => Err(Error::Refused(format!(
            "a restore of bundle {} (--mode {}) was interrupted and has not finished; {}",
            j.bundle_id,
            j.mode,
            j.finish_hint()
        ))),
        None => Ok(()),
    }
}
