//! The previous good bundle a create reuses copies from: its records that
//! carry a source stat, looked up by path, and whether a file about to be
//! captured is unchanged since one of them (see [`crate::capture`] for
//! what makes a copy reusable).

use std::path::{Path, PathBuf};

use crate::bundle::ListedBundle;
use crate::manifest::{FileRecord, SourceStat};
use crate::store::{PreviousRecord, Unit, UnitKind};

/// The previous good bundle's files that carry a source stat, borrowed from
/// its manifest (a manifest may list hundreds of thousands of files: they
/// are looked up, never copied), in path order: a store's units are
/// matched to them in one pass ([`Previous::match_units`]), with no table
/// of every path to build and hash into.
#[derive(Debug)]
pub struct Previous<'m> {
    /// Its folder.
    pub bundle: &'m Path,
    files: Vec<&'m FileRecord>,
}

/// The key a unit and a record are matched on: the manifest path, text and
/// exact bytes.
type PathKey<'a> = (&'a str, Option<&'a str>);

/// A record's [`PathKey`].
fn record_key(record: &FileRecord) -> PathKey<'_> {
    (record.path.as_str(), record.path_hex.as_deref())
}

/// A unit's [`PathKey`].
fn unit_key(unit: &Unit) -> PathKey<'_> {
    (unit.path.as_str(), unit.path_hex.as_deref())
}

impl<'m> Previous<'m> {
    /// Reuse from `good`, a bundle that was just found to pass the quick
    /// check ([`crate::bundle::files_present`]).
    pub fn of_checked(good: &'m ListedBundle) -> Previous<'m> {
        let mut files: Vec<&FileRecord> = good
            .manifest
            .stores
            .iter()
            .flat_map(|s| &s.files)
            .filter(|f| f.source_stat.is_some())
            .collect();
        // A manifest lists each store's files in path order already: this
        // finds them sorted in one pass.
        files.sort_by(|a, b| record_key(a).cmp(&record_key(b)));
        Previous {
            bundle: &good.path,
            files,
        }
    }

    /// Finds the previous record of every unit in `units`, walking both in
    /// path order at once.
    pub fn match_units(&self, units: &mut [Unit]) {
        let mut order: Vec<usize> = (0..units.len()).collect();
        // A walk finds a store's files in name order: nearly sorted already.
        order.sort_by(|&a, &b| unit_key(&units[a]).cmp(&unit_key(&units[b])));
        let mut next = 0;
        for i in order {
            let key = unit_key(&units[i]);
            while next < self.files.len() && record_key(self.files[next]) < key {
                next += 1;
            }
            units[i].previous = match self.files.get(next) {
                Some(&record) if record_key(record) == key => PreviousRecord::At(next as u32),
                _ => PreviousRecord::Absent,
            };
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
    /// whether there is one). A unit not matched by
    /// [`Previous::match_units`] is looked up by a search in path order.
    pub fn record_for(
        &self,
        unit: &Unit,
        stat: &SourceStat,
        full_check: bool,
    ) -> Option<&'m FileRecord> {
        let at = match unit.previous {
            PreviousRecord::At(at) => Some(at as usize),
            PreviousRecord::Absent => None,
            PreviousRecord::NotLooked => self
                .files
                .binary_search_by(|f| record_key(f).cmp(&unit_key(unit)))
                .ok(),
        };
        let record = *self.files.get(at?)?;
        // The place found for this unit is its path's, or nothing is reused.
        if record_key(record) != unit_key(unit) || record.source_stat.as_ref() != Some(stat) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::EncodedPath;

    /// A stat that differs per `n`.
    fn stat(n: u64) -> SourceStat {
        SourceStat {
            dev: 1,
            ino: n,
            bytes: n,
            mtime_ns: 1,
            ctime_ns: 1,
            wal: None,
        }
    }

    /// A plain file's record at `path` (`hex`: its exact bytes) with stat `n`.
    fn record(path: &str, hex: Option<&str>, n: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            path_hex: hex.map(Box::from),
            bytes: n,
            sha256: crate::hash::Sha256Digest::of(path.as_bytes()),
            sqlite: None,
            jsonl: None,
            source_stat: Some(stat(n)),
            reused: false,
            mode: None,
            uid: None,
            gid: None,
        }
    }

    /// A plain unit at `path`.
    fn unit(path: &str, hex: Option<&str>) -> Unit {
        let encoded = EncodedPath {
            text: path.into(),
            hex: hex.map(str::to_string),
        };
        Unit::new(encoded, Path::new("/nowhere"), UnitKind::Plain, 0)
    }

    #[test]
    fn units_are_matched_in_one_pass_to_the_records_of_their_paths() {
        let records = [
            record("s/a.txt", None, 1),
            record("s/a/b.txt", None, 2),
            record("s/c\u{fffd}", Some("732f63ff"), 3),
            record("s/d.txt", None, 4),
        ];
        let previous = Previous {
            bundle: Path::new("/bundle"),
            files: records.iter().collect(),
        };
        // In walk order (a folder's files before a later name), one path
        // the previous bundle lacks, and one whose bytes differ from a
        // record of the same text.
        let mut units = vec![
            unit("s/a/b.txt", None),
            unit("s/a.txt", None),
            unit("s/b.txt", None),
            unit("s/c\u{fffd}", Some("732f63fe")),
            unit("s/d.txt", None),
        ];
        let searched: Vec<Option<&FileRecord>> = units
            .iter()
            .zip([2, 1, 9, 3, 4])
            .map(|(u, n)| previous.record_for(u, &stat(n), false))
            .collect();
        previous.match_units(&mut units);
        let places: Vec<PreviousRecord> = units.iter().map(|u| u.previous).collect();
        use PreviousRecord::{Absent, At};
        assert_eq!(places, [At(1), At(0), Absent, Absent, At(3)]);
        let matched: Vec<Option<&FileRecord>> = units
            .iter()
            .zip([2, 1, 9, 3, 4])
            .map(|(u, n)| previous.record_for(u, &stat(n), false))
            .collect();
        // Matched or searched for, the same records; none for another stat.
        assert_eq!(matched, searched);
        assert_eq!(
            matched,
            [
                Some(&records[1]),
                Some(&records[0]),
                None,
                None,
                Some(&records[3])
            ]
        );
        assert_eq!(previous.record_for(&units[0], &stat(7), false), None);
        // A place that is not the unit's path's (a stale match) reuses nothing.
        let mut stale = unit("s/a.txt", None);
        stale.previous = At(3);
        assert_eq!(previous.record_for(&stale, &stat(1), false), None);
    }
}
