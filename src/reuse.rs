//! Reuse of unchanged files: the previous good bundle in the destination, and
//! which of its copies a new bundle may share by hard link.
//!
//! A copy is reused only when the source's device, inode, size, mtime and
//! ctime (and for a database, its `-wal`'s) equal what the previous bundle
//! recorded, that record was trustworthy when taken, and the copy is still
//! there with its recorded size. Bundle files are read-only, so sharing them
//! is safe; `verify` still reads every byte of every bundle it checks.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::bundle::list;
use crate::manifest::{FileRecord, SourceStat};
use crate::store::{Unit, UnitKind};

/// The previous good bundle's files that carry a source stat.
#[derive(Debug)]
pub struct Previous {
    /// Its folder.
    pub bundle: PathBuf,
    files: HashMap<String, FileRecord>,
}

/// A lookup key for a manifest path (its text is not unique on its own
/// when paths are not UTF-8).
fn key(text: &str, hex: Option<&str>) -> String {
    format!("{text}\0{}", hex.unwrap_or(""))
}

impl Previous {
    /// The newest bundle in `destination` that passes the quick check, if any.
    pub fn find(destination: &std::path::Path) -> Option<Previous> {
        let listing = list(destination).ok()?;
        let good = listing
            .bundles
            .into_iter()
            .rev()
            .find(|b| crate::verify::files_present(&b.path, &b.manifest).is_none())?;
        let files = good
            .manifest
            .stores
            .into_iter()
            .flat_map(|s| s.files)
            .filter(|f| f.source_stat.is_some())
            .map(|f| (key(&f.path, f.path_hex.as_deref()), f))
            .collect();
        Some(Previous {
            bundle: good.path,
            files,
        })
    }

    /// The previous copy of `unit` and its record, when the source is unchanged.
    pub fn candidate(
        &self,
        unit: &Unit,
        stat: &SourceStat,
        full_check: bool,
    ) -> Option<(PathBuf, &FileRecord)> {
        let record = self.files.get(&key(&unit.path, unit.path_hex.as_deref()))?;
        if record.source_stat.as_ref() != Some(stat) {
            return None;
        }
        let same_kind = match unit.kind {
            UnitKind::Sqlite => record
                .sqlite
                .as_ref()
                .is_some_and(|f| !full_check || f.check == "integrity_check"),
            UnitKind::Jsonl => record.jsonl.is_some(),
            UnitKind::Plain => record.sqlite.is_none() && record.jsonl.is_none(),
        };
        if !same_kind {
            return None;
        }
        let path = self.bundle.join(record.rel().ok()?);
        let on_disk = std::fs::symlink_metadata(&path).ok()?;
        (on_disk.is_file() && on_disk.len() == record.bytes).then_some((path, record))
    }
}
