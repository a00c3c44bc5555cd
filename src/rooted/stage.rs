//! Staged files: written in full and fsynced under a temp name, checked,
//! and only then moved into place.
//!
//! A restore streams each bundle file once into a staged file, hashing it on
//! the way; nothing live changes until every staged file of every store
//! matched the manifest. A staged file sits beside its target when the
//! target's folder already exists (reached without links): the move into
//! place is then a rename within one folder, which the file system does for
//! many files at once (a rename between folders takes its rename lock, one
//! at a time), and no folder holds every temp file. Otherwise, and for a
//! database (SQLite opens it by path), it sits in the root folder itself, so
//! that staging creates no folder in a live store and a link on the way to a
//! target (which the restore removes first) does not stop it. In a fresh
//! root (`--into`, a drill) staging makes the folders on the way. Either way
//! the move into place is one rename on the same file system, and a temp
//! file an interrupted restore left is found by its tag anywhere beneath the
//! root ([`RootDir::remove_temps`]).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{split, Ownership, RootDir};
use crate::error::{Error, Result};

/// A complete file waiting under a temp name, beside its target or in the
/// root folder (made durable by [`RootDir::sync_staged`]), to be renamed to
/// `rel` ([`RootDir::commit`]) or removed ([`RootDir::discard`]).
#[derive(Debug)]
pub struct Staged {
    /// The number of its temp name ([`RootDir::temp_name_of`]): a restore
    /// of many files holds one `Staged` each.
    temp: u64,
    /// Its path relative to the root (shared with the plan's step).
    rel: Arc<Path>,
    /// Whether it sits in the folder of `rel` (else in the root folder).
    beside: bool,
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
    /// Writes a file meant for `rel` under a temp name, beside it when its
    /// folder exists (in a fresh root: is made), else in the root folder:
    /// `fill` writes it; it gets the owner and mode of the file now at `rel`
    /// (or `new` when there is none). It is made durable by
    /// [`RootDir::sync_staged`] once every file is staged, so writeback
    /// overlaps the rest of the staging. Nothing at `rel` is touched.
    pub fn stage_file(
        &self,
        rel: impl Into<Arc<Path>>,
        new: Ownership,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<Staged> {
        self.stage(rel.into(), new, true, fill)
    }

    /// [`RootDir::stage_file`] always in the root folder, for a file opened
    /// by path before it is moved (a database SQLite checks): no folder,
    /// and so no link, lies between the root and it.
    pub fn stage_file_in_root(
        &self,
        rel: impl Into<Arc<Path>>,
        new: Ownership,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<Staged> {
        self.stage(rel.into(), new, false, fill)
    }

    fn stage(
        &self,
        rel: Arc<Path>,
        new: Ownership,
        may_sit_beside: bool,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<Staged> {
        let (parts, name) = split(&rel, &self.path)?;
        // A folder on the way that is missing (or a link the restore removes
        // first) means a new file, staged in the root folder. In a fresh
        // root nothing is there to take the owner and mode of.
        let (folder, existing) = match self.walk(&parts, self.fresh) {
            Ok(parent) => {
                let existing = match self.fresh {
                    true => None,
                    false => self.file_to_replace(&parent, name, &rel)?,
                };
                (Some(parent).filter(|_| may_sit_beside), existing)
            }
            Err(_) => (None, None),
        };
        let number = super::next_temp_number();
        let temp = self.temp_name_of(number);
        let dir = folder.as_deref().unwrap_or(&self.fd);
        let file = self.filled_temp(dir, &temp, &rel, existing.as_ref(), new, fill)?;
        match rustix::fs::fstat(&file) {
            Ok(st) => Ok(Staged {
                temp: number,
                rel: Arc::clone(&rel),
                beside: folder.is_some(),
                dev: st.st_dev,
                ino: st.st_ino,
                bytes: st.st_size as u64,
            }),
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
                Err(Error::io("could not stat", &self.display(&rel), e.into()))
            }
        }
    }

    /// The folder a staged file sits in.
    fn folder_of(&self, staged: &Staged) -> Result<Arc<OwnedFd>> {
        if !staged.beside {
            return Ok(Arc::clone(&self.fd));
        }
        let (parts, _) = split(&staged.rel, &self.path)?;
        self.walk_or_err(&parts, false, &staged.rel)
    }

    /// Makes staged files durable before they are moved into place: each
    /// fsynced, or, for many, one `syncfs` of the root's file system (and
    /// each one staged on another file system fsynced).
    pub fn sync_staged<'a>(&self, staged: impl IntoIterator<Item = &'a Staged>) -> Result<()> {
        let staged: Vec<&Staged> = staged.into_iter().collect();
        let many = staged.len() > crate::fsutil::SYNCFS_ABOVE_FILES;
        if many {
            self.sync_file_system()?;
        }
        for s in staged.into_iter().filter(|s| !many || s.dev != self.dev) {
            let fd = rustix::fs::openat(
                self.folder_of(s)?,
                self.temp_name_of(s.temp).as_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.err("could not open the staged file for", &s.rel, e))?;
            rustix::fs::fsync(&fd)
                .map_err(|e| self.err("could not fsync the staged file for", &s.rel, e))?;
        }
        Ok(())
    }

    /// The path of a file staged by [`RootDir::stage_file_in_root`], for
    /// SQLite, which opens by path (the root folder itself: no link lies
    /// between it and the file).
    pub fn staged_path(&self, staged: &Staged) -> PathBuf {
        debug_assert!(
            !staged.beside,
            "only a file staged in the root is opened by path"
        );
        self.path.join(self.temp_name_of(staged.temp))
    }

    /// Moves a staged file to its place (creating the folders on the way,
    /// never through a link; a symlink there is replaced itself, a folder
    /// there is refused). The move
    /// is made durable by [`RootDir::sync_committed`] once a store's files
    /// are all in place (one fsync per folder, not per file).
    pub fn commit(&self, staged: &Staged) -> Result<()> {
        let rel = &*staged.rel;
        let (parts, name) = split(rel, &self.path)?;
        let parent = self.walk_or_err(&parts, true, rel)?;
        // Beside its target, the walk leads to the folder it was staged in
        // (else it is not found there, and the move fails).
        let from = if staged.beside { &parent } else { &self.fd };
        match rustix::fs::renameat(from, self.temp_name_of(staged.temp).as_str(), &parent, name) {
            Ok(()) => {}
            // A folder where the bundle has a file (a file never replaces one).
            Err(Errno::ISDIR) => {
                self.file_to_replace(&parent, name, rel)?;
                return Err(self.err("could not move into place", rel, Errno::ISDIR));
            }
            // A mount point inside the store: copy across, then drop the temp.
            Err(Errno::XDEV) if !staged.beside => return self.commit_by_copy(staged),
            Err(e) => return Err(self.err("could not move into place", rel, e)),
        }
        Ok(())
    }

    /// Makes the moves of committed files durable: each folder they went to
    /// fsynced once, then the root folder (or, for many files, one `syncfs`,
    /// and the folders on another file system fsynced).
    pub fn sync_committed<'a>(&self, staged: impl IntoIterator<Item = &'a Staged>) -> Result<()> {
        let staged: Vec<&Staged> = staged.into_iter().collect();
        let many = staged.len() > crate::fsutil::SYNCFS_ABOVE_FILES;
        if many {
            self.sync_file_system()?;
        }
        let mut folders: Vec<&Path> = staged
            .into_iter()
            .filter(|s| !many || s.dev != self.dev)
            .map(|s| &*s.rel)
            .collect();
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
        if let Ok(folder) = self.folder_of(staged) {
            let temp = self.temp_name_of(staged.temp);
            let _ = rustix::fs::unlinkat(&folder, temp.as_str(), AtFlags::empty());
        }
    }

    /// In a fresh root, removes the folders staging made that are left
    /// empty once its files were discarded (a refused `--into` leaves no
    /// tree of empty folders); elsewhere nothing.
    pub fn remove_staging_folders(&self) {
        if !self.fresh {
            return;
        }
        let folders = walkdir::WalkDir::new(&self.path)
            .min_depth(1)
            .contents_first(true)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_dir());
        for folder in folders {
            if let Ok(rel) = folder.path().strip_prefix(&self.path) {
                let _ = self.remove_empty_dir(rel);
            }
        }
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
        let staged = stage(&root, "a/b/new", b"bundle");
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

        let unused = stage(&root, "old", b"x");
        root.discard(&unused);
        assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"live");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(super::super::TEMP_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Stages `bytes` for `rel` beside its target where it can.
    fn stage(root: &RootDir, rel: &str, bytes: &[u8]) -> Staged {
        let fill = |f: &mut File| f.write_all(bytes);
        root.stage_file(Path::new(rel), Ownership::default(), fill)
            .unwrap()
    }

    /// The temp files directly in `dir`.
    fn temps_in(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(super::super::TEMP_PREFIX)
            })
            .count()
    }

    #[test]
    fn a_file_is_staged_beside_its_target_when_its_folder_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = RootDir::open(dir.path(), "tok").unwrap();
        let beside = stage(&root, "a/f", b"1");
        let new_folder = stage(&root, "b/g", b"2");
        let database = root
            .stage_file_in_root(Path::new("a/db"), Ownership::default(), |f| {
                f.write_all(b"3")
            })
            .unwrap();
        // Beside its target in `a`; in the root for a missing folder (none
        // made in a live store) and for a file opened by path.
        assert_eq!(temps_in(&dir.path().join("a")), 1);
        assert_eq!(temps_in(dir.path()), 2);
        assert!(!dir.path().join("b").exists());
        assert!(!dir.path().join("a/f").exists());
        assert_eq!(std::fs::read(root.staged_path(&database)).unwrap(), b"3");
        let all = [&beside, &new_folder, &database];
        root.sync_staged(all).unwrap();
        for s in all {
            root.commit(s).unwrap();
        }
        root.sync_committed(all).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.path().join("b/g")).unwrap(), b"2");
        assert_eq!(std::fs::read(dir.path().join("a/db")).unwrap(), b"3");
        assert!(all.iter().all(|s| root.holds_staged(s).unwrap()));
        assert_eq!(temps_in(&dir.path().join("a")) + temps_in(dir.path()), 0);
    }

    #[test]
    fn a_folder_put_where_a_staged_file_goes_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = RootDir::open(dir.path(), "tok").unwrap();
        let staged = stage(&root, "a/f", b"1");
        std::fs::create_dir(dir.path().join("a/f")).unwrap();
        std::fs::write(dir.path().join("a/f/kept"), b"mine").unwrap();
        assert!(matches!(root.commit(&staged), Err(Error::Refused(_))));
        assert_eq!(std::fs::read(dir.path().join("a/f/kept")).unwrap(), b"mine");
        root.discard(&staged);
        assert_eq!(temps_in(&dir.path().join("a")), 0);
    }

    #[test]
    fn a_fresh_root_makes_folders_while_staging_and_drops_them_when_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open_fresh(dir.path(), "tok").unwrap();
        let staged = stage(&root, "x/y/f", b"1");
        assert_eq!(temps_in(&dir.path().join("x/y")), 1);
        assert!(!dir.path().join("x/y/f").exists());
        root.discard(&staged);
        root.remove_staging_folders();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A live root keeps its folders, empty or not.
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        RootDir::open(dir.path(), "tok")
            .unwrap()
            .remove_staging_folders();
        assert!(dir.path().join("empty").is_dir());
    }

    #[test]
    fn a_commit_never_goes_through_a_link_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        let root = RootDir::open(dir.path(), "tok").unwrap();
        let staged = stage(&root, "sub/f", b"x");
        assert!(matches!(
            root.commit(&staged),
            Err(Error::ThroughLink { .. })
        ));
        assert!(!outside.path().join("f").exists());
        root.discard(&staged);
    }
}
