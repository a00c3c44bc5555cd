//! Planning the restore of one file, shared by the store kinds: which
//! [`Step`] a bundle file, database or symlink becomes, given what is live.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{jsonl_merge, sqlite_merge};
use crate::manifest::{FileRecord, SqliteFacts};
use crate::plan::{FilePaths, Mode, Step, Target};
use crate::rooted::{Entry, RootDir};

/// The conflict for a live path merge will not write through or over.
fn not_followed(target: PathBuf, entry: Entry) -> Step {
    let what = match entry {
        Entry::Symlink => "is a symlink in the live store",
        Entry::ThroughLink => "lies under a symlink (or a file) in the live store",
        Entry::Dir => "is a folder in the live store",
        _ => "is not a regular file in the live store",
    };
    Step::Conflict {
        target,
        reason: format!("{what}; not followed or replaced by merge (use --mode replace)"),
    }
}

/// Plans one SQLite database file.
pub fn sqlite_file(
    source: PathBuf,
    file: &FileRecord,
    facts: &SqliteFacts,
    target: PathBuf,
    t: &Target<'_>,
) -> Result<Step> {
    let entry = t.entry(&target)?;
    let exists = matches!(entry, Entry::File(_));
    if t.mode == Mode::Replace || entry == Entry::Missing {
        if entry == Entry::Dir {
            return Err(Error::Refused(format!(
                "{} is a folder where the bundle has a database; move it away first",
                target.display()
            )));
        }
        return Ok(Step::SqliteReplace {
            source,
            target,
            facts: Box::new(facts.clone()),
            sha256: file.sha256,
            exists,
            owner: file.ownership(),
        });
    }
    if !exists {
        return Ok(not_followed(target, entry));
    }
    let estimate = sqlite_merge::estimate(&target, &source, facts)?;
    Ok(Step::SqliteMerge {
        source,
        target,
        rows: estimate.missing,
        present: estimate.present,
        facts: Box::new(facts.clone()),
        missing_columns: estimate.missing_columns,
        left_out: estimate.left_out,
    })
}

/// Plans one plain file (read from `paths`' source, for its target):
/// written when missing (or different, for replace).
pub fn plain_file(paths: FilePaths, file: &FileRecord, t: &Target<'_>) -> Result<Step> {
    let target = paths.target().into_owned();
    let write = || Step::Write {
        paths,
        sha256: file.sha256,
        jsonl: file.jsonl.clone(),
        sqlite: file.sqlite.clone(),
        owner: file.ownership(),
    };
    let entry = t.entry(&target)?;
    match entry {
        Entry::Missing => return Ok(write()),
        Entry::File(len) if len == file.bytes => {
            let root = t.live_root()?;
            let rel = root.relative(&target)?;
            if unchanged_since_captured(root, rel, file)? || same_hash(root, rel, file.sha256)? {
                return Ok(Step::Keep { target });
            }
        }
        _ => {}
    }
    Ok(match t.mode {
        Mode::Replace if entry == Entry::Dir => {
            return Err(Error::Refused(format!(
                "{} is a folder where the bundle has a file; move it away first",
                target.display()
            )))
        }
        // A link (or what lies under one) is removed first, never written through.
        Mode::Replace => write(),
        Mode::Merge if matches!(entry, Entry::File(_)) => Step::Conflict {
            target,
            reason: "differs from the bundle's copy; the live file is kept".into(),
        },
        Mode::Merge => not_followed(target, entry),
    })
}

/// Plans one JSONL file: merge appends missing records, replace writes it.
pub fn jsonl_file(
    source: PathBuf,
    file: &FileRecord,
    target: PathBuf,
    t: &Target<'_>,
    key: Option<&str>,
) -> Result<Step> {
    let entry = t.entry(&target)?;
    if t.mode == Mode::Replace || entry == Entry::Missing {
        return plain_file(FilePaths::apart(source, target), file, t);
    }
    if !matches!(entry, Entry::File(_)) {
        return Ok(not_followed(target, entry));
    }
    let root = t.live_root()?;
    let (lines, present) = jsonl_merge::count_missing(root, root.relative(&target)?, &source, key)?;
    if lines == 0 {
        return Ok(Step::Keep { target });
    }
    Ok(Step::JsonlAppend {
        source,
        target,
        key: key.map(str::to_string),
        lines,
        present,
    })
}

/// Plans a recorded symlink to `points_to` (`bytes` exactly); `inside` says
/// whether its target, resolved against what the store will hold, stays
/// inside the store. Links that leave it are conflicts, never created.
pub fn symlink(
    target: PathBuf,
    points_to: &str,
    bytes: &[u8],
    inside: bool,
    t: &Target<'_>,
) -> Result<Step> {
    let create = |target| Step::Symlink {
        target,
        points_to: points_to.into(),
        points_to_bytes: bytes.to_vec(),
    };
    if !inside {
        return Ok(Step::Conflict {
            target,
            reason: format!("symlink to \"{points_to}\" leaves the store; not restored"),
        });
    }
    let entry = t.entry(&target)?;
    match entry {
        Entry::Missing => Ok(create(target)),
        Entry::Symlink => {
            let root = t.live_root()?;
            let live = root.read_link(root.relative(&target)?)?;
            if live.as_deref().map(std::os::unix::ffi::OsStrExt::as_bytes) == Some(bytes) {
                Ok(Step::Keep { target })
            } else if t.mode == Mode::Replace {
                Ok(create(target))
            } else {
                Ok(Step::Conflict {
                    target,
                    reason: format!("differs from the bundle's symlink to \"{points_to}\"; kept"),
                })
            }
        }
        Entry::Dir => Ok(Step::Conflict {
            target,
            reason: format!("is a folder where the bundle has a symlink to \"{points_to}\"; kept"),
        }),
        _ if t.mode == Mode::Replace => Ok(create(target)),
        _ => Ok(Step::Conflict {
            target,
            reason: format!("differs from the bundle's symlink to \"{points_to}\"; kept"),
        }),
    }
}

/// Whether the live file at `rel` is the very file this record's copy was
/// made from, unchanged since: same device, inode, size, mtime and ctime as
/// the source identity the create trusted (taken before the copy, confirmed
/// after it, and old enough that a later write must show). The same test
/// lets a create reuse a copy unread; only plain copies, whose bytes are the
/// source's, qualify (a database copy is a snapshot, not the file's bytes).
fn unchanged_since_captured(root: &RootDir, rel: &Path, file: &FileRecord) -> Result<bool> {
    let Some(stat) = file.source_stat.as_ref() else {
        return Ok(false);
    };
    if file.sqlite.is_some() || stat.wal.is_some() || stat.bytes != file.bytes {
        return Ok(false);
    }
    Ok(root.identity(rel)?.is_some_and(|now| {
        (now.dev, now.ino, now.bytes, now.mtime_ns, now.ctime_ns)
            == (stat.dev, stat.ino, stat.bytes, stat.mtime_ns, stat.ctime_ns)
    }))
}

/// Whether file `rel` beneath `root` hashes to `sha256` (read without following links).
pub fn same_hash(root: &RootDir, rel: &Path, sha256: crate::hash::Sha256Digest) -> Result<bool> {
    let file = root.open_read(rel)?;
    let path = root.display(rel);
    let (_, sha) = crate::hash::hash_reader(file, |_| {})
        .map_err(|e| Error::io("could not read", &path, e))?;
    Ok(sha == sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SourceStat;

    /// A record of `path` as a create would write it, with `sha256`.
    fn record(path: &Path, sha256: &str) -> FileRecord {
        let meta = std::fs::metadata(path).unwrap();
        FileRecord {
            path: "a/f.bin".into(),
            path_hex: None,
            bytes: meta.len(),
            sha256: sha256.parse().unwrap(),
            sqlite: None,
            jsonl: None,
            source_stat: Some(SourceStat::of(&meta)),
            reused: false,
            mode: None,
            uid: None,
            gid: None,
        }
    }

    fn plan(root: &RootDir, dir: &Path, file: &FileRecord) -> Step {
        let t = Target {
            path: dir.to_path_buf(),
            live: Some(root),
            bundle_root: dir,
            mode: Mode::Replace,
            key: None,
        };
        plain_file(
            FilePaths::apart(dir.join("copy"), dir.join("a/f.bin")),
            file,
            &t,
        )
        .unwrap()
    }

    #[test]
    fn the_very_file_the_record_was_made_from_is_kept_unread_and_any_change_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let live = dir.path().join("a/f.bin");
        std::fs::write(&live, b"sixteen bytes!!!").unwrap();
        let root = RootDir::open(dir.path(), "t").unwrap();
        // A sha256 no content has: only a plan that never read the file keeps it.
        let unread = record(&live, &"0".repeat(64));
        assert!(matches!(
            plan(&root, dir.path(), &unread),
            Step::Keep { .. }
        ));

        // Changed in place with its size and mtime put back: ctime moved, so
        // the file is read, and it differs.
        let mtime = std::fs::metadata(&live).unwrap().modified().unwrap();
        std::fs::write(&live, b"sixteen bytes???").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&live)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(matches!(
            plan(&root, dir.path(), &unread),
            Step::Write { .. }
        ));

        // Same bytes in a new inode (as after a restore): read, found equal, kept.
        let sha = crate::hash::hash_reader(std::fs::File::open(&live).unwrap(), |_| {})
            .unwrap()
            .1;
        let copy = dir.path().join("copy");
        std::fs::copy(&live, &copy).unwrap();
        let stale = record(&copy, &sha.to_string());
        assert!(matches!(plan(&root, dir.path(), &stale), Step::Keep { .. }));
        let forged = record(&copy, &"0".repeat(64));
        assert!(matches!(
            plan(&root, dir.path(), &forged),
            Step::Write { .. }
        ));
    }
}
