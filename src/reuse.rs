//! The previous good bundle a create reuses copies from: what it recorded
//! of each file that carries a source stat, looked up by path, and whether
//! a file about to be captured is unchanged since (see [`crate::capture`]
//! for what makes a copy reusable).
//!
//! A manifest may list hundreds of thousands of files, and a create held
//! every record of the bundle it reused from (about 220 bytes a file) while
//! it captured. Its records are instead read a line at a time
//! ([`crate::bundle::presence::read_checking_presence_with`]); each one that
//! could be reused is written, as the new bundle would list it (`reused`),
//! to the create's record spool ([`crate::manifest::spool`]), and only an
//! [`Entry`] is kept: keyed digests of its path and source stat, where its
//! line is, its size and kind (56 bytes); the rows or lines of its few
//! databases and JSONL files are kept beside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::StoreKind;
use crate::error::Result;
use crate::hash::Keyed128;
use crate::manifest::spool::{RecordSpool, Spooled};
use crate::manifest::{FileRecord, JsonlFacts, SourceStat};
use crate::store::{PreviousRecord, Unit, UnitKind};

/// What a create knows of one file of the previous bundle.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The digest of its manifest path (text and exact bytes).
    path: Digest,
    /// The digest of its recorded source stat.
    stat: Digest,
    /// Its record, as the new bundle lists it, in the spool.
    spooled: Spooled,
    /// Its size.
    pub bytes: u64,
    /// [`Entry::SQLITE`], [`Entry::INTEGRITY`], [`Entry::JSONL`].
    flags: u8,
}

/// A keyed 128-bit digest ([`Keyed128`]) as two halves, high first (so
/// they order as the number does): 8-byte aligned, where a `u128` would
/// pad an entry to 64 bytes.
type Digest = [u64; 2];

/// The halves of a digest.
fn halves(digest: u128) -> Digest {
    [(digest >> 64) as u64, digest as u64]
}

impl Entry {
    /// It is a database copy.
    const SQLITE: u8 = 1;
    /// A database copy checked with the full `integrity_check`.
    const INTEGRITY: u8 = 2;
    /// A JSONL file's copy.
    const JSONL: u8 = 4;

    /// Where its record is in the spool.
    pub fn spooled(&self) -> Spooled {
        self.spooled
    }
}

/// The previous good bundle's files that carry a source stat and a full
/// owner (see [`Previous::add`]), by the digest of their path.
#[derive(Debug)]
pub struct Previous {
    /// Its folder.
    pub bundle: PathBuf,
    /// The keys of the digests.
    keys: Keyed128,
    /// Sorted by path digest.
    entries: Vec<Entry>,
    /// The facts of its JSONL files (few), by path digest: a reused JSONL
    /// copy warns again of what its record says.
    jsonl: BTreeMap<Digest, Box<JsonlFacts>>,
    /// The rows (a database) or lines (a JSONL file) of its files that have
    /// them (few), by path digest: their size in their kind's measure (see
    /// [`crate::shrink::file_measure`]).
    facts: BTreeMap<Digest, u64>,
}

impl Previous {
    /// An empty index of the bundle at `bundle`, to [`Previous::add`] its
    /// records to.
    pub fn of(bundle: &Path) -> Previous {
        Previous {
            bundle: bundle.to_path_buf(),
            keys: Keyed128::new(),
            entries: Vec::new(),
            jsonl: BTreeMap::new(),
            facts: BTreeMap::new(),
        }
    }

    /// Takes in `record`, a record of the bundle, as it is read: one that
    /// could be reused is written to `spool` as the new bundle would list
    /// it. A record without a source stat, or without the owner, group
    /// and mode of its source, is never reused (the owner of a reused copy
    /// is the one recorded: equal stats, ctime among them, mean no `chmod`
    /// or `chown` since, and an older record that lacks them is copied
    /// once more).
    ///
    /// `text` is the JSON the record was read from, if it was read alone: a
    /// record that says it was reused already is spooled as that text (an
    /// unchanged file of a nightly create is not serialized again).
    pub fn add(
        &mut self,
        record: &mut FileRecord,
        text: Option<&[u8]>,
        spool: &RecordSpool,
    ) -> Result<()> {
        let Some(stat) = &record.source_stat else {
            return Ok(());
        };
        if record.mode.is_none() || record.uid.is_none() || record.gid.is_none() {
            return Ok(());
        }
        let stat = halves(self.keys.of(stat));
        let path = self.path_key(&record.path, record.path_hex.as_deref());
        let one_object = |t: &&[u8]| t.first() == Some(&b'{') && t.last() == Some(&b'}');
        let spooled = match text.filter(one_object) {
            Some(text) if record.reused => spool.put_text(text),
            _ => {
                let was = std::mem::replace(&mut record.reused, true);
                let spooled = spool.put(record);
                record.reused = was;
                spooled
            }
        };
        let mut flags = 0;
        if let Some(sqlite) = &record.sqlite {
            flags |= Entry::SQLITE;
            if sqlite.check == "integrity_check" {
                flags |= Entry::INTEGRITY;
            }
        }
        if let Some(jsonl) = &record.jsonl {
            flags |= Entry::JSONL;
            self.jsonl.insert(path, jsonl.clone());
        }
        // A record has facts of one kind at most: the other measure is 0.
        let facts = crate::shrink::file_measure(StoreKind::Sqlite, record)
            .saturating_add(crate::shrink::file_measure(StoreKind::Jsonl, record));
        if flags & (Entry::SQLITE | Entry::JSONL) != 0 {
            self.facts.insert(path, facts);
        }
        self.entries.push(Entry {
            path,
            stat,
            spooled: spooled?,
            bytes: record.bytes,
            flags,
        });
        Ok(())
    }

    /// Done adding: the entries sorted for lookups. A path listed twice (a
    /// forged manifest) is reused from neither record.
    pub fn finish(mut self) -> Previous {
        self.entries.sort_unstable_by_key(|e| e.path);
        let mut twice = Vec::new();
        for pair in self.entries.windows(2) {
            if pair[0].path == pair[1].path {
                twice.push(pair[0].path);
            }
        }
        self.entries
            .retain(|e| twice.binary_search(&e.path).is_err());
        self.entries.shrink_to_fit();
        self
    }

    /// The digest of a manifest path (text and exact bytes).
    fn path_key(&self, path: &str, hex: Option<&str>) -> Digest {
        halves(self.keys.of(&(path, hex)))
    }

    /// Where `unit`'s path is among the entries.
    fn find(&self, unit: &Unit) -> Option<usize> {
        let key = self.path_key(&unit.path, unit.path_hex.as_deref());
        self.entries.binary_search_by_key(&key, |e| e.path).ok()
    }

    /// Finds the entry of every unit in `units` once, for every question
    /// asked of it later.
    pub fn match_units(&self, units: &mut [Unit]) {
        for unit in units {
            unit.previous = match self.find(unit) {
                Some(at) => match unit.walked_stat() {
                    Some(stat) if self.entries[at].stat == halves(self.keys.of(&stat)) => {
                        PreviousRecord::Walked(at as u32)
                    }
                    _ => PreviousRecord::At(at as u32),
                },
                None => PreviousRecord::Absent,
            };
        }
    }

    /// The previous copy of `unit` and its entry, when the source is unchanged.
    pub fn candidate(
        &self,
        unit: &Unit,
        stat: &SourceStat,
        full_check: bool,
    ) -> Option<(PathBuf, &Entry)> {
        let entry = self.entry_for(unit, stat, full_check)?;
        // Every file of this bundle was found a regular file of its
        // recorded size when it was chosen (the presence check), and
        // nothing else changes it while this create holds the destination
        // lock; the unit's path is the record's.
        Some((self.bundle.join(unit.rel()), entry))
    }

    /// The entry `unit` may reuse when its source has identity `stat` now:
    /// one of its path with the same stat and a copy of the same kind (with
    /// `full_check`, a database copy checked in full). A unit matched by
    /// [`Previous::match_units`] (of this index) is not looked up again.
    pub fn entry_for(&self, unit: &Unit, stat: &SourceStat, full_check: bool) -> Option<&Entry> {
        let (at, walked) = match unit.previous {
            PreviousRecord::Walked(at) => {
                (Some(at as usize), unit.walked_stat().as_ref() == Some(stat))
            }
            PreviousRecord::At(at) => (Some(at as usize), false),
            PreviousRecord::Absent => (None, false),
            PreviousRecord::NotLooked => (self.find(unit), false),
        };
        let entry = self.entries.get(at?)?;
        if !walked && entry.stat != halves(self.keys.of(stat)) {
            return None;
        }
        let same_kind = match unit.kind {
            UnitKind::Sqlite => {
                entry.flags & Entry::SQLITE != 0
                    && (!full_check || entry.flags & Entry::INTEGRITY != 0)
            }
            UnitKind::Jsonl => entry.flags & Entry::JSONL != 0,
            UnitKind::Plain => entry.flags & (Entry::SQLITE | Entry::JSONL) == 0,
        };
        same_kind.then_some(entry)
    }

    /// What the file at `entry` adds to the size of a store of `kind`
    /// ([`crate::shrink::file_measure`] of its record).
    pub fn measure(&self, entry: &Entry, kind: StoreKind) -> u64 {
        let facts = || self.facts.get(&entry.path).copied().unwrap_or(0);
        match kind {
            StoreKind::Sqlite if entry.flags & Entry::SQLITE != 0 => facts(),
            StoreKind::Jsonl if entry.flags & Entry::JSONL != 0 => facts(),
            StoreKind::Dir => entry.bytes,
            _ => 0,
        }
    }

    /// The JSONL facts of the file at `entry`, if it is one.
    pub fn jsonl_facts(&self, entry: &Entry) -> Option<&JsonlFacts> {
        self.jsonl.get(&entry.path).map(|f| &**f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fsutil::EncodedPath;

    /// A stat that differs per `n`.
    pub(crate) fn stat(n: u64) -> SourceStat {
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
        let sha256 = crate::hash::Sha256Digest::of(path.as_bytes());
        FileRecord {
            source_stat: Some(stat(n)),
            mode: Some(0o644),
            uid: Some(1),
            gid: Some(1),
            ..FileRecord::new(path.into(), hex.map(Box::from), n, sha256)
        }
    }

    /// A plain unit at `path`.
    pub(crate) fn unit(path: &str, hex: Option<&str>) -> Unit {
        let encoded = EncodedPath {
            text: path.into(),
            hex: hex.map(str::to_string),
        };
        Unit::new(encoded, Path::new("/nowhere"), UnitKind::Plain, 0)
    }

    #[test]
    fn a_reused_file_measures_as_its_record_does() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RecordSpool::new_in(dir.path()).unwrap();
        let mut previous = Previous::of(dir.path());
        let mut db = record("s/app.db", None, 1);
        db.sqlite = Some(Box::new(crate::manifest::SqliteFacts {
            tables: [("a".to_string(), 7), ("b".to_string(), 5)].into(),
            virtual_tables: Vec::new(),
            page_size: 4096,
            integrity: "ok".into(),
            check: "quick_check".into(),
            source_journal_mode: "wal".into(),
            foreign_key_violations: None,
        }));
        let mut log = record("s/log.jsonl", None, 2);
        log.jsonl = Some(Box::new(JsonlFacts {
            lines: 9,
            invalid_lines: 0,
        }));
        let mut plain = record("s/plain.bin", None, 3);
        for r in [&mut db, &mut log, &mut plain] {
            previous.add(r, None, &spool).unwrap();
        }
        let previous = previous.finish();
        let measure = |path: &str, n: u64, kind: StoreKind| {
            let entry = previous.entry_for(&unit(path, None), &stat(n), false);
            // (A database's unit is not plain: look its entry up directly.)
            let entry = entry.or_else(|| {
                let at = previous.find(&unit(path, None))?;
                previous.entries.get(at)
            });
            previous.measure(entry.expect("an entry"), kind)
        };
        assert_eq!(measure("s/app.db", 1, StoreKind::Sqlite), 12);
        assert_eq!(measure("s/app.db", 1, StoreKind::Jsonl), 0);
        assert_eq!(measure("s/log.jsonl", 2, StoreKind::Jsonl), 9);
        assert_eq!(measure("s/plain.bin", 3, StoreKind::Dir), 3);
        assert_eq!(measure("s/plain.bin", 3, StoreKind::Sqlite), 0);
    }

    #[test]
    fn units_are_matched_to_the_records_of_their_paths_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RecordSpool::new_in(dir.path()).unwrap();
        let mut records = vec![
            record("s/a.txt", None, 1),
            record("s/a/b.txt", None, 2),
            record("s/c\u{fffd}", Some("732f63ff"), 3),
            record("s/d.txt", None, 4),
            // Never reused: no stat, no owner, or listed twice.
            FileRecord {
                source_stat: None,
                ..record("s/e.txt", None, 5)
            },
            FileRecord {
                mode: None,
                ..record("s/f.txt", None, 6)
            },
            record("s/g.txt", None, 7),
            record("s/g.txt", None, 7),
        ];
        let mut previous = Previous::of(Path::new("/bundle"));
        for r in &mut records {
            previous.add(r, None, &spool).unwrap();
        }
        let previous = previous.finish();
        // One path the previous bundle lacks, and one whose bytes differ
        // from a record of the same text.
        let mut units: Vec<Unit> = [
            ("s/a/b.txt", None),
            ("s/a.txt", None),
            ("s/b.txt", None),
            ("s/c\u{fffd}", Some("732f63fe")),
            ("s/c\u{fffd}", Some("732f63ff")),
            ("s/d.txt", None),
            ("s/e.txt", None),
            ("s/f.txt", None),
            ("s/g.txt", None),
        ]
        .into_iter()
        .map(|(p, h)| unit(p, h))
        .collect();
        let stats = [2, 1, 9, 3, 3, 4, 5, 6, 7];
        // One walked with the stat it is asked with, one with another.
        for (at, n) in [(1, 1), (5, 8)] {
            units[at].walked = crate::store::WalkedStat::of(&stat(n));
            units[at].bytes = n;
        }
        let reusable = |previous: &Previous, units: &[Unit]| -> Vec<Option<u64>> {
            units
                .iter()
                .zip(stats)
                .map(|(u, n)| previous.entry_for(u, &stat(n), false).map(|e| e.bytes))
                .collect()
        };
        let searched = reusable(&previous, &units);
        previous.match_units(&mut units);
        let matched = reusable(&previous, &units);
        assert_eq!(matched, searched);
        assert!(matches!(units[1].previous, PreviousRecord::Walked(_)));
        assert!(matches!(units[5].previous, PreviousRecord::At(_)));
        assert_eq!(
            matched,
            [
                Some(2),
                Some(1),
                None,
                None,
                Some(3),
                Some(4),
                None,
                None,
                None
            ]
        );
        // Another stat, or another kind of copy, reuses nothing.
        assert!(previous.entry_for(&units[0], &stat(7), false).is_none());
        let mut database = unit("s/a.txt", None);
        database.kind = UnitKind::Sqlite;
        assert!(previous.entry_for(&database, &stat(1), false).is_none());
        // The spooled record is the one the new bundle lists: reused.
        let entry = previous.entry_for(&units[1], &stat(1), false).unwrap();
        let back = spool.read(entry.spooled()).unwrap();
        assert_eq!(
            back,
            FileRecord {
                reused: true,
                ..records[0].clone()
            }
        );
        assert!(!records[0].reused, "the record read is left as it was");
    }

    #[test]
    fn an_entry_takes_56_bytes() {
        assert!(std::mem::size_of::<Entry>() <= 56);
    }

    #[test]
    fn a_record_reused_already_is_spooled_as_the_text_it_was_read_from() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RecordSpool::new_in(dir.path()).unwrap();
        let mut previous = Previous::of(Path::new("/bundle"));
        let mut reused = FileRecord {
            reused: true,
            ..record("s/a.txt", None, 1)
        };
        // The text as read (here with the path escaped as this tool would
        // not): spooled as it is.
        let text = serde_json::to_string(&reused)
            .unwrap()
            .replace("s/a.txt", r"s\/a.txt");
        previous
            .add(&mut reused, Some(text.as_bytes()), &spool)
            .unwrap();
        // Not reused before: spooled as the new bundle lists it, whatever
        // the text.
        let mut copied = record("s/b.txt", None, 2);
        previous.add(&mut copied, Some(b"{}"), &spool).unwrap();
        let previous = previous.finish();
        let mut units = vec![unit("s/a.txt", None), unit("s/b.txt", None)];
        previous.match_units(&mut units);
        let mut reader = spool.reader().unwrap();
        let a = previous.entry_for(&units[0], &stat(1), false).unwrap();
        assert_eq!(reader.get(a.spooled()).unwrap(), text.as_bytes());
        let b = previous.entry_for(&units[1], &stat(2), false).unwrap();
        let listed: FileRecord = serde_json::from_slice(reader.get(b.spooled()).unwrap()).unwrap();
        assert_eq!(
            listed,
            FileRecord {
                reused: true,
                ..copied
            }
        );
    }
}
