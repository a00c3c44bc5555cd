//! The previous good bundle a create reuses copies from: its records that
//! carry a source stat, looked up by path, and whether a file about to be
//! captured is unchanged since one of them (see [`crate::capture`] for
//! what makes a copy reusable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::bundle::ListedBundle;
use crate::manifest::{FileRecord, SourceStat};
use crate::store::{Unit, UnitKind};

/// The previous good bundle's files that carry a source stat, borrowed from
/// its manifest (a manifest may list hundreds of thousands of files: they
/// are looked up, never copied).
#[derive(Debug)]
pub struct Previous<'m> {
    /// Its folder.
    pub bundle: &'m Path,
    files: HashMap<(&'m str, Option<&'m str>), &'m FileRecord>,
}

impl<'m> Previous<'m> {
    /// Reuse from `good`, a bundle that was just found to pass the quick
    /// check ([`crate::bundle::files_present`]).
    pub fn of_checked(good: &'m ListedBundle) -> Previous<'m> {
        let files = good
            .manifest
            .stores
            .iter()
            .flat_map(|s| &s.files)
            .filter(|f| f.source_stat.is_some())
            .map(|f| ((f.path.as_str(), f.path_hex.as_deref()), f))
            .collect();
        Previous {
            bundle: &good.path,
            files,
        }
    }

    /// The previous copy of `unit` and its record, when the source is unchanged.
    pub fn candidate(
        &self,
        unit: &Unit,
        stat: &SourceStat,
        full_check: bool,
    ) -> Option<(PathBuf, &'m FileRecord)> {
        let record = self.record_for(unit, stat, full_check)?;
        // Every file of this bundle was found a regular file of its
        // recorded size when it was chosen ([`Previous::of_checked`]), and
        // nothing else changes it while this create holds the destination lock.
        let path = self.bundle.join(record.rel().ok()?);
        Some((path, record))
    }

    /// The previous bundle's record of `unit` when the source is unchanged
    /// and was captured the same way (what [`Previous::candidate`] links,
    /// without the copy's path: the walk and the space estimate only ask
    /// whether there is one).
    pub fn record_for(
        &self,
        unit: &Unit,
        stat: &SourceStat,
        full_check: bool,
    ) -> Option<&'m FileRecord> {
        let record = *self
            .files
            .get(&(unit.path.as_str(), unit.path_hex.as_deref()))?;
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
        same_kind.then_some(record)
    }
}
