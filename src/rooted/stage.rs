//! Staged files: written in full and fsynced under a temp name, checked,
//! and only then moved into place.
//!
//! A restore streams each bundle file once into a staged file, hashing it on
//! the way; nothing live changes until every staged file of every store
//! matched the manifest. Staged files sit in the root folder itself, not
//! beside their targets, so that staging creates no folder in a live store
//! and a link on the way to a target (which the restore removes first) does
//! not stop it; the move into place is one rename on the same file system.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{split, Ownership, RootDir};
use crate::error::{Error, Result};

/// A complete file waiting under a temp name in the root folder (made
/// durable by [`RootDir::sync_staged`]) to be renamed to `rel`
/// ([`RootDir::commit`]) or removed ([`RootDir::discard`]).
#[derive(Debug)]
pub struct Staged {
    temp: String,
    rel: PathBuf,
    dev: u64,
    ino: u64,
    bytes: u64,
}

impl Staged {
    /// Its size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where it goes, relative to the root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }
}

impl RootDir {
    /// Writes a file meant for `rel` under a temp name in the root folder:
    /// `fill` writes it; it gets the owner and mode of the file now at `rel`
    /// (or `new` when there is none). It is made durable by
    /// [`RootDir::sync_staged`] once every file is staged, so writeback
    /// overlaps the rest of the staging. Nothing at `rel`, and no folder on
    /// the way to it, is touched.
    pub fn stage_file(
        &self,
        rel: &Path,
        new: Ownership,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<Staged> {
        let (parts, name) = split(rel, &self.path)?;
        // A folder on the way that is missing (or a link the restore removes
        // first) means a new file.
        let existing = match self.walk(&parts, false) {
            Ok(parent) => self.file_to_replace(&parent, name, rel)?,
            Err(_) => None,
        };
        let temp = self.temp_name();
        let file = self.filled_temp(&self.fd, &temp, rel, existing.as_ref(), new, fill)?;
        match rustix::fs::fstat(&file) {
            Ok(st) => Ok(Staged {
                temp,
                rel: rel.to_path_buf(),
                dev: st.st_dev,
                ino: st.st_ino,
                bytes: st.st_size as u64,
            }),
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
                Err(Error::io("could not stat", &self.display(rel), e.into()))
            }
        }
    }

    /// Makes staged files durable before they are moved into place: each
    /// fsynced, or, for many, one `syncfs` of the root's file system.
    pub fn sync_staged<'a>(&self, staged: impl IntoIterator<Item = &'a Staged>) -> Result<()> {
        let staged: Vec<&Staged> = staged.into_iter().collect();
        if staged.len() > crate::fsutil::SYNCFS_ABOVE_FILES {
            return self.sync_file_system();
        }
        for s in staged {
            let fd = rustix::fs::openat(
                &self.fd,
                s.temp.as_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.err("could not open the staged file for", &s.rel, e))?;
            rustix::fs::fsync(&fd)
                .map_err(|e| self.err("could not fsync the staged file for", &s.rel, e))?;
        }
        Ok(())
    }

    /// The staged file's path, for SQLite, which opens by path (the root
    /// folder itself: no link lies between it and the file).
    pub fn staged_path(&self, staged: &Staged) -> PathBuf {
        self.path.join(&staged.temp)
    }

    /// Moves a staged file to its place (creating the folders on the way,
    /// never through a link; a symlink there is replaced itself). The move
    /// is made durable by [`RootDir::sync_committed`] once a store's files
    /// are all in place (one fsync per folder, not per file).
    pub fn commit(&self, staged: &Staged) -> Result<()> {
        let rel = staged.rel.as_path();
        let (parts, name) = split(rel, &self.path)?;
        let parent = self.walk_or_err(&parts, true, rel)?;
        self.file_to_replace(&parent, name, rel)?;
        match rustix::fs::renameat(&self.fd, staged.temp.as_str(), &parent, name) {
            Ok(()) => {}
            // A mount point inside the store: copy across, then drop the temp.
            Err(Errno::XDEV) => return self.commit_by_copy(staged),
            Err(e) => return Err(self.err("could not move into place", rel, e)),
        }
        Ok(())
    }

    /// Makes the moves of committed files durable: each folder they went to
    /// fsynced once, then the root folder (or, for many files, one `syncfs`).
    pub fn sync_committed<'a>(&self, staged: impl IntoIterator<Item = &'a Staged>) -> Result<()> {
        let mut folders: Vec<&Path> = Vec::new();
        let mut count = 0usize;
        for s in staged {
            count += 1;
            folders.push(&s.rel);
        }
        if count > crate::fsutil::SYNCFS_ABOVE_FILES {
            return self.sync_file_system();
        }
        folders.sort_by_key(|rel| Path::parent(rel));
        folders.dedup_by_key(|rel| Path::parent(rel));
        for rel in folders {
            self.sync_folder_of(rel)?;
        }
        self.sync()
    }

    /// [`RootDir::commit`] when the target is on another file system.
    fn commit_by_copy(&self, staged: &Staged) -> Result<()> {
        let path = self.staged_path(staged);
        let mut input = File::open(&path).map_err(|e| Error::io("could not open", &path, e))?;
        let st =
            rustix::fs::fstat(&input).map_err(|e| Error::io("could not stat", &path, e.into()))?;
        let owner = Ownership {
            mode: Some(st.st_mode & 0o777),
            uid: Some(st.st_uid),
            gid: Some(st.st_gid),
        };
        self.write_file(&staged.rel, owner, |out| {
            std::io::copy(&mut input, out).map(drop)
        })?;
        self.discard(staged);
        Ok(())
    }

    /// Removes a staged file that will not be used.
    pub fn discard(&self, staged: &Staged) {
        let _ = rustix::fs::unlinkat(&self.fd, staged.temp.as_str(), AtFlags::empty());
    }

    /// Whether `rel` is now the very file that was staged (same inode), so a
    /// restored file need not be read again to know it holds what was checked.
    pub fn holds_staged(&self, staged: &Staged) -> Result<bool> {
        let (parts, name) = split(&staged.rel, &self.path)?;
        let Ok(parent) = self.walk(&parts, false) else {
            return Ok(false);
        };
        Ok(
            match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st.st_dev == staged.dev && st.st_ino == staged.ino,
                Err(_) => false,
            },
        )
    }

    /// Fsyncs the folder holding `rel` (after removals that must be durable
    /// before what follows them); fine when that folder does not exist.
    pub fn sync_folder_of(&self, rel: &Path) -> Result<()> {
        let (parts, _) = split(rel, &self.path)?;
        match self.walk(&parts, false) {
            Ok(parent) => rustix::fs::fsync(&parent)
                .map_err(|e| self.err("could not fsync the folder of", rel, e)),
            Err(_) => Ok(()),
        }
    }

    /// One `syncfs` of the root's file system: everything written to it durable.
    fn sync_file_system(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd)
            .map_err(|e| Error::io("could not sync the file system of", &self.path, e.into()))
    }

    /// Fsyncs the root folder itself (the staged names leaving it).
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::io("could not fsync", &self.path, e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn staging_touches_nothing_at_the_target_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"live").unwrap();
        let root = RootDir::open(dir.path(), "tok").unwrap();
        let staged = root
            .stage_file(Path::new("a/b/new"), Ownership::default(), |f| {
                f.write_all(b"bundle")
            })
            .unwrap();
        // No folder made yet, the staged bytes in the root folder.
        assert!(!dir.path().join("a").exists());
        assert_eq!(std::fs::read(root.staged_path(&staged)).unwrap(), b"bundle");
        assert!(!root.holds_staged(&staged).unwrap());
        root.sync_staged([&staged]).unwrap();
        root.commit(&staged).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a/b/new")).unwrap(),
            b"bundle"
        );
        assert!(root.holds_staged(&staged).unwrap());
        assert!(!root.staged_path(&staged).exists());

        let unused = root
            .stage_file(Path::new("old"), Ownership::default(), |f| {
                f.write_all(b"x")
            })
            .unwrap();
        root.discard(&unused);
        assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"live");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(super::super::TEMP_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_commit_never_goes_through_a_link_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        let root = RootDir::open(dir.path(), "tok").unwrap();
        let staged = root
            .stage_file(Path::new("sub/f"), Ownership::default(), |f| {
                f.write_all(b"x")
            })
            .unwrap();
        assert!(matches!(
            root.commit(&staged),
            Err(Error::ThroughLink { .. })
        ));
        assert!(!outside.path().join("f").exists());
        root.discard(&staged);
    }
}
