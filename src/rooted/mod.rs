//! Writes beneath a root folder that never follow a symlink.
//!
//! Restore and drill write into live stores, often as root, from bundles that
//! may be forged, into trees that may hold symlinks. Every such write goes
//! through a [`RootDir`]: a handle on the store's folder from which each
//! relative path is resolved one component at a time, each folder opened with
//! `O_NOFOLLOW | O_DIRECTORY` relative to the one before. No symlink — one
//! present before the restore or one the restore itself just created — can
//! redirect a write outside the root: a path through a link is an error
//! ([`Error::ThroughLink`]), and links themselves are only ever removed or
//! replaced, never written through.
//!
//! A root keeps the folders it resolved open (a few dozen, most recent
//! first), so that the many files of one folder cost one open of that
//! folder, not one per component per file. A cached handle is a folder
//! that was reached without links; it stays that folder (the same inode)
//! even if something renames it, exactly as an open handle does during an
//! uncached walk. The cache is emptied whenever the root removes a folder,
//! so a folder the restore removed and made again is never written through
//! a handle on the removed one.
//!
//! Temp files are named `.bundle-tmp-<tag>-<pid>-<n>` (short whatever the target's
//! name, so they always fit the 255-byte limit); a restore tags them with its
//! confirm token, which the journal records, so a resumed or undone restore
//! finds and removes every temp file an interrupted one left.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

mod folders;
mod stage;
use folders::CACHED_FOLDERS;
pub use stage::Staged;

/// Prefix of every temp file a [`RootDir`] writes.
pub const TEMP_PREFIX: &str = ".bundle-tmp-";

/// Numbers temp files within a process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number no other temp name of this process has.
fn next_temp_number() -> u64 {
    TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Owner and permission bits recorded for a file in the bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits (only `0o777` is ever applied).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Group gid.
    pub gid: Option<u32>,
}

impl Ownership {
    /// The owner, group and permission bits (`0o7777` at most) `meta` gives.
    pub fn of(meta: &std::fs::Metadata) -> Ownership {
        use std::os::unix::fs::MetadataExt;
        Ownership {
            mode: Some(meta.mode() & 0o7777),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
        }
    }

    /// The same as [`Ownership::of`], from a `statx`.
    pub fn of_statx(stat: &rustix::fs::Statx) -> Ownership {
        Ownership {
            mode: Some(u32::from(stat.stx_mode) & 0o7777),
            uid: Some(stat.stx_uid),
            gid: Some(stat.stx_gid),
        }
    }
}

/// What is at a path beneath the root (never following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing.
    Missing,
    /// A regular file of this many bytes.
    File(u64),
    /// A folder.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Something else (fifo, socket, device).
    Other,
    /// A folder on the way is a symlink or not a folder.
    ThroughLink,
}

/// What identifies a regular file's content without reading it: device,
/// inode, size, and modification and status-change times (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time.
    pub mtime_ns: i64,
    /// Status-change time (set by the kernel on every change, never by a user).
    pub ctime_ns: i64,
}

/// A handle on a folder beneath which every path is resolved without links.
#[derive(Debug)]
pub struct RootDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    tag: String,
    pid: u32,
    /// The root's device: a file staged beside its target on another file
    /// system (a mount inside the store) is made durable on its own.
    dev: u64,
    /// Whether the root is a new folder a restore fills (`--into`, a drill):
    /// staging then makes the folders on the way to each file.
    fresh: bool,
    /// Folders beneath the root already resolved without links, by their
    /// path relative to the root.
    folders: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>>,
}

impl RootDir {
    /// Opens the existing folder `path` (the root itself may be reached
    /// through links: it is the configured store path). Temp files carry `tag`.
    pub fn open(path: &Path, tag: &str) -> Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("could not open folder", path, e.into()))?;
        let dev = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io("could not stat", path, e.into()))?
            .st_dev;
        Ok(RootDir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
            tag: tag.to_string(),
            pid: std::process::id(),
            dev,
            fresh: false,
            folders: Mutex::new(Vec::with_capacity(CACHED_FOLDERS)),
        })
    }

    /// Opens the new, empty folder `path` that a restore fills (`--into`, a
    /// drill): nothing in it is live, so staging may make the folders on
    /// the way to each file and stage the file beside its target.
    pub fn open_fresh(path: &Path, tag: &str) -> Result<RootDir> {
        let mut root = Self::open(path, tag)?;
        root.fresh = true;
        Ok(root)
    }

    /// The root's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of `rel` (for messages and reports only: never opened).
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// The relative path of an absolute `target` inside this root.
    pub fn relative<'p>(&self, target: &'p Path) -> Result<&'p Path> {
        target.strip_prefix(&self.path).map_err(|_| {
            Error::Refused(format!(
                "{} is outside the store folder {}",
                target.display(),
                self.path.display()
            ))
        })
    }

    /// What is at `rel`, without following any link.
    pub fn entry(&self, rel: &Path) -> Result<Entry> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = match self.walk(&parts, false) {
            Ok(fd) => fd,
            Err(Walk::Missing) => return Ok(Entry::Missing),
            Err(Walk::ThroughLink) => return Ok(Entry::ThroughLink),
            Err(Walk::Io(e)) => return Err(Error::io("could not open", &self.display(rel), e)),
        };
        match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Entry::File(st.st_size as u64),
                FileType::Directory => Entry::Dir,
                FileType::Symlink => Entry::Symlink,
                _ => Entry::Other,
            }),
            Err(Errno::NOENT) => Ok(Entry::Missing),
            Err(Errno::NOTDIR) => Ok(Entry::ThroughLink),
            Err(e) => Err(Error::io("could not stat", &self.display(rel), e.into())),
        }
    }

    /// The identity of the regular file at `rel` (`None`: not a regular file
    /// reached through real folders), never following a link; compared with
    /// a bundle's record of its source to tell a file is unchanged unread.
    pub fn identity(&self, rel: &Path) -> Result<Option<FileIdentity>> {
        let (parts, name) = split(rel, &self.path)?;
        let Ok(parent) = self.walk(&parts, false) else {
            return Ok(None);
        };
        match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                Ok(Some(FileIdentity {
                    dev: st.st_dev,
                    ino: st.st_ino,
                    bytes: st.st_size as u64,
                    mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
                    ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
                }))
            }
            Ok(_) | Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(Error::io("could not stat", &self.display(rel), e.into())),
        }
    }

    /// Fails unless `rel` is a regular file reached through real folders only;
    /// used before SQLite, which opens by path, is given a live database.
    pub fn require_file(&self, rel: &Path) -> Result<()> {
        match self.entry(rel)? {
            Entry::File(_) => Ok(()),
            Entry::ThroughLink | Entry::Symlink => Err(Error::ThroughLink {
                path: self.display(rel),
            }),
            other => Err(Error::io(
                "not a regular file:",
                &self.display(rel),
                std::io::Error::other(format!("found {other:?}")),
            )),
        }
    }

    /// Opens the regular file `rel` for reading, never through a link.
    pub fn open_read(&self, rel: &Path) -> Result<File> {
        self.open_file(rel, OFlags::RDONLY)
    }

    /// Opens the regular file `rel` for appending, never through a link.
    pub fn open_append(&self, rel: &Path) -> Result<File> {
        self.open_file(rel, OFlags::WRONLY | OFlags::APPEND)
    }

    fn open_file(&self, rel: &Path, flags: OFlags) -> Result<File> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = self.walk_or_err(&parts, false, rel)?;
        let fd = rustix::fs::openat(
            &parent,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| self.err("could not open", rel, e))?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::io("could not stat", &self.display(rel), e))?;
        if !meta.is_file() {
            return Err(Error::io(
                "not a regular file:",
                &self.display(rel),
                std::io::Error::other("not a regular file"),
            ));
        }
        Ok(file)
    }

    /// The target of the symlink at `rel`, if it is one.
    pub fn read_link(&self, rel: &Path) -> Result<Option<OsString>> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = match self.walk(&parts, false) {
            Ok(fd) => fd,
            Err(_) => return Ok(None),
        };
        match rustix::fs::readlinkat(&parent, name, Vec::new()) {
            Ok(target) => Ok(Some(OsStr::from_bytes(target.as_bytes()).to_os_string())),
            Err(Errno::INVAL | Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(self.err("could not read link", rel, e)),
        }
    }

    /// Creates folder `rel` and the folders above it, each with its parent's
    /// permission bits (and owner, when running as root).
    pub fn create_dirs(&self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let parts = components(rel, &self.path)?;
        self.walk_or_err(&parts, true, rel).map(drop)
    }

    /// Atomically puts a new file at `rel`: `fill` writes a temp file beside
    /// it, which gets the replaced file's owner and mode (a new file: `new`),
    /// is fsynced and renamed over `rel`; the folder is then fsynced. A
    /// symlink at `rel` is replaced itself, never written through.
    pub fn write_file(
        &self,
        rel: &Path,
        new: Ownership,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = self.walk_or_err(&parts, true, rel)?;
        let existing = self.file_to_replace(&parent, name, rel)?;
        let temp = self.temp_name();
        let file = self.filled_temp(&parent, &temp, rel, existing.as_ref(), new, fill)?;
        let moved = file.sync_all().and_then(|()| {
            rustix::fs::renameat(&parent, temp.as_str(), &parent, name).map_err(Into::into)
        });
        if let Err(e) = moved {
            let _ = rustix::fs::unlinkat(&parent, temp.as_str(), AtFlags::empty());
            return Err(Error::io("could not write", &self.display(rel), e));
        }
        rustix::fs::fsync(&parent).map_err(|e| self.err("could not fsync the folder of", rel, e))
    }

    /// What is at `name` in `dir` (`rel`), where a file is about to be put:
    /// a regular file's stat (the new file takes its owner and mode), nothing
    /// for anything else (a link is replaced itself); a folder is refused.
    fn file_to_replace(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
    ) -> Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Err(Error::Refused(format!(
                    "{} is a folder where the bundle has a file; move it away first",
                    self.display(rel).display()
                )))
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => Ok(Some(st)),
            _ => Ok(None),
        }
    }

    /// Creates the temp file `temp` in `dir`, lets `fill` write it (the
    /// content meant for `rel`) and gives it the owner and mode of the file
    /// it replaces, `existing` (a new file: `new`); removed again on failure.
    fn filled_temp(
        &self,
        dir: &OwnedFd,
        temp: &str,
        rel: &Path,
        existing: Option<&rustix::fs::Stat>,
        new: Ownership,
        fill: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<File> {
        let created = rustix::fs::openat(
            dir,
            temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err("could not create a temp file for", rel, e))?;
        let mut file = File::from(created);
        let filled = fill(&mut file).and_then(|()| match existing {
            Some(st) => apply_owner(&file, Some(st.st_uid), Some(st.st_gid), st.st_mode),
            None => apply_owner(
                &file,
                new.uid,
                new.gid,
                new.mode.unwrap_or(0o644 & !current_umask()),
            ),
        });
        match filled {
            Ok(()) => Ok(file),
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
                Err(Error::io("could not write", &self.display(rel), e))
            }
        }
    }

    /// Removes the file or symlink at `rel` (a link itself, never its target);
    /// fine when nothing is there.
    pub fn remove_file(&self, rel: &Path) -> Result<()> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = match self.walk(&parts, false) {
            Ok(fd) => fd,
            Err(Walk::Missing) => return Ok(()),
            Err(Walk::ThroughLink) => {
                return Err(Error::ThroughLink {
                    path: self.display(rel),
                })
            }
            Err(Walk::Io(e)) => return Err(Error::io("could not open", &self.display(rel), e)),
        };
        match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err("could not remove", rel, e)),
        }
    }

    /// Removes folder `rel` when it is empty; returns whether it was removed.
    pub fn remove_empty_dir(&self, rel: &Path) -> Result<bool> {
        let (parts, name) = split(rel, &self.path)?;
        let Ok(parent) = self.walk(&parts, false) else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
            Ok(()) => {
                self.forget_folders();
                Ok(true)
            }
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(self.err("could not remove folder", rel, e)),
        }
    }

    /// Creates a symlink at `rel` pointing to `points_to`, replacing a file or
    /// link already there.
    pub fn symlink(&self, rel: &Path, points_to: &OsStr) -> Result<()> {
        let (parts, name) = split(rel, &self.path)?;
        let parent = self.walk_or_err(&parts, true, rel)?;
        match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.err("could not remove", rel, e)),
        }
        rustix::fs::symlinkat(points_to, &parent, name)
            .map_err(|e| self.err("could not create symlink", rel, e))
    }

    /// Removes every temp file tagged `tag` anywhere beneath the root (left by
    /// an interrupted run); returns how many were removed.
    pub fn remove_temps(&self, tag: &str) -> Result<u64> {
        let prefix = format!("{TEMP_PREFIX}{tag}-");
        let mut removed = 0;
        let found: Vec<PathBuf> = walkdir::WalkDir::new(&self.path)
            .min_depth(1)
            .follow_links(false)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_type().is_dir())
            .filter(|e| e.file_name().as_bytes().starts_with(prefix.as_bytes()))
            .filter_map(|e| {
                e.path()
                    .strip_prefix(&self.path)
                    .ok()
                    .map(Path::to_path_buf)
            })
            .collect();
        for rel in found {
            self.remove_file(&rel)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// A fresh temp name: short, whatever the target's name, and never one
    /// an earlier (interrupted) process used (it carries the process id).
    fn temp_name(&self) -> String {
        self.temp_name_of(next_temp_number())
    }

    /// The temp name numbered `n` (see [`next_temp_number`]) of this run.
    fn temp_name_of(&self, n: u64) -> String {
        format!("{TEMP_PREFIX}{}-{}-{n}", self.tag, self.pid)
    }

    fn err(&self, action: &'static str, rel: &Path, e: Errno) -> Error {
        if e == Errno::LOOP {
            return Error::ThroughLink {
                path: self.display(rel),
            };
        }
        Error::io(action, &self.display(rel), e.into())
    }

    fn walk_or_err(&self, parts: &[&OsStr], create: bool, rel: &Path) -> Result<Arc<OwnedFd>> {
        self.walk(parts, create).map_err(|w| match w {
            Walk::ThroughLink => Error::ThroughLink {
                path: self.display(rel),
            },
            Walk::Missing => Error::io(
                "could not open",
                &self.display(rel),
                std::io::ErrorKind::NotFound.into(),
            ),
            Walk::Io(e) => Error::io("could not open", &self.display(rel), e),
        })
    }

    /// Opens the folder `parts` beneath the root, one component at a time,
    /// never following a link, from the deepest folder on the way already
    /// resolved; with `create`, missing folders are made.
    fn walk(&self, parts: &[&OsStr], create: bool) -> std::result::Result<Arc<OwnedFd>, Walk> {
        let (mut done, mut cur) = self.deepest_cached(parts);
        while done < parts.len() {
            let part = parts[done];
            cur = Arc::new(self.open_folder(&cur, part, create)?);
            done += 1;
            self.remember_folder(&parts[..done], &cur);
        }
        Ok(cur)
    }

    /// Opens the folder `part` in `dir`, never through a link; with
    /// `create`, makes it when missing, no more open than `dir`.
    fn open_folder(
        &self,
        dir: &OwnedFd,
        part: &OsStr,
        create: bool,
    ) -> std::result::Result<OwnedFd, Walk> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(dir, part, flags, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) if create => {
                let st = rustix::fs::fstat(dir).map_err(Walk::io)?;
                match rustix::fs::mkdirat(dir, part, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Walk::io(e)),
                }
                let fd = rustix::fs::openat(dir, part, flags, Mode::empty())
                    .map_err(Walk::from_errno)?;
                // A new folder is no more open than the one it is made in.
                apply_owner(&fd, Some(st.st_uid), Some(st.st_gid), st.st_mode).map_err(Walk::Io)?;
                Ok(fd)
            }
            Err(e) => Err(Walk::from_errno(e)),
        }
    }
}

/// Why a walk stopped.
enum Walk {
    Missing,
    ThroughLink,
    Io(std::io::Error),
}

impl Walk {
    fn io(e: Errno) -> Walk {
        Walk::Io(e.into())
    }

    fn from_errno(e: Errno) -> Walk {
        match e {
            Errno::NOENT => Walk::Missing,
            Errno::LOOP | Errno::NOTDIR => Walk::ThroughLink,
            e => Walk::io(e),
        }
    }
}

/// Gives `fd` an owner (as root; otherwise only a group we may set) and the
/// permission bits of `mode` (setuid, setgid and sticky bits are dropped).
fn apply_owner(
    fd: impl AsFd,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
) -> std::io::Result<()> {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let root = *ROOT.get_or_init(|| rustix::process::geteuid().is_root());
    let owner = uid.filter(|_| root).map(rustix::fs::Uid::from_raw);
    let group = gid.map(rustix::fs::Gid::from_raw);
    match rustix::fs::fchown(&fd, owner, group) {
        Ok(()) => {}
        // Not root and not a member of that group: keep ours.
        Err(Errno::PERM) if !root => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777))?;
    Ok(())
}

/// The process umask, read from `/proc/self/status` (setting and restoring
/// it would race with other threads creating files); `0o022` when unknown.
fn current_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

/// The normal components of a relative path; anything else is refused.
fn components<'a>(rel: &'a Path, root: &Path) -> Result<Vec<&'a OsStr>> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            _ => {
                return Err(Error::Refused(format!(
                    "unsafe path {} under {}",
                    rel.display(),
                    root.display()
                )))
            }
        }
    }
    Ok(parts)
}

/// The folders and the final name of `rel`.
fn split<'a>(rel: &'a Path, root: &Path) -> Result<(Vec<&'a OsStr>, &'a OsStr)> {
    let mut parts = components(rel, root)?;
    let name = parts
        .pop()
        .ok_or_else(|| Error::Refused(format!("empty path under {}", root.display())))?;
    Ok((parts, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_never_go_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, store.join("sub")).unwrap();
        std::os::unix::fs::symlink("..", store.join("up")).unwrap();
        let root = RootDir::open(&store, "t").unwrap();
        for rel in ["sub/x", "up/outside/x", "up/x"] {
            let err = root
                .write_file(Path::new(rel), Ownership::default(), |f| {
                    std::io::Write::write_all(f, b"x")
                })
                .unwrap_err();
            assert!(matches!(err, Error::ThroughLink { .. }), "{rel}: {err}");
            assert_eq!(root.entry(Path::new(rel)).unwrap(), Entry::ThroughLink);
        }
        assert!(matches!(
            root.create_dirs(Path::new("sub/deeper")),
            Err(Error::ThroughLink { .. })
        ));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A link itself is replaced, never written through.
        std::os::unix::fs::symlink(outside.join("t"), store.join("f")).unwrap();
        root.write_file(Path::new("f"), Ownership::default(), |f| {
            std::io::Write::write_all(f, b"new")
        })
        .unwrap();
        assert_eq!(std::fs::read(store.join("f")).unwrap(), b"new");
        assert!(!outside.join("t").exists());
        assert!(root.open_read(Path::new("sub/x")).is_err());
    }

    #[test]
    fn a_resolved_folder_is_never_a_way_out_nor_a_removed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        let root = RootDir::open(&store, "t").unwrap();
        let put = |rel: &str| {
            root.write_file(Path::new(rel), Ownership::default(), |f| {
                std::io::Write::write_all(f, rel.as_bytes())
            })
        };
        put("a/b/x").unwrap();
        // The root removes the folder it resolved and makes it again: the
        // new file is in the new folder, not in the removed one.
        root.remove_file(Path::new("a/b/x")).unwrap();
        assert!(root.remove_empty_dir(Path::new("a/b")).unwrap());
        put("a/b/y").unwrap();
        assert_eq!(std::fs::read(store.join("a/b/y")).unwrap(), b"a/b/y");
        // Something else moves the resolved folder away and puts a link to
        // the outside in its place: the write stays in the folder that was
        // resolved (now a2), never through the link.
        std::fs::rename(store.join("a"), store.join("a2")).unwrap();
        std::os::unix::fs::symlink(&outside, store.join("a")).unwrap();
        match put("a/b/z") {
            Ok(()) => assert_eq!(std::fs::read(store.join("a2/b/z")).unwrap(), b"a/b/z"),
            // The handles all roots keep at once are capped process-wide:
            // with other tests' roots holding them, this one resolved again
            // and refused the link.
            Err(e) => assert!(matches!(e, Error::ThroughLink { .. }), "{e}"),
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A fresh root resolves again and refuses the link.
        let fresh = RootDir::open(&store, "t").unwrap();
        assert_eq!(fresh.entry(Path::new("a/b/z")).unwrap(), Entry::ThroughLink);
    }

    #[test]
    fn temp_names_fit_and_are_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path(), "abc123").unwrap();
        let long = "n".repeat(255);
        root.write_file(Path::new(&long), Ownership::default(), |f| {
            std::io::Write::write_all(f, b"x")
        })
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), b"x");
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/.bundle-tmp-abc123-7"), b"partial").unwrap();
        std::fs::write(dir.path().join("a/.bundle-tmp-other-7"), b"not ours").unwrap();
        assert_eq!(root.remove_temps("abc123").unwrap(), 1);
        assert!(dir.path().join("a/.bundle-tmp-other-7").exists());
    }

    #[test]
    fn replaced_files_keep_their_mode_and_new_ones_take_the_recorded_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path(), "t").unwrap();
        let live = dir.path().join("secret");
        std::fs::write(&live, b"old").unwrap();
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o600)).unwrap();
        let recorded = Ownership {
            mode: Some(0o4755),
            ..Ownership::default()
        };
        root.write_file(Path::new("secret"), recorded, |f| {
            std::io::Write::write_all(f, b"new")
        })
        .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&live), 0o600);
        root.write_file(Path::new("fresh"), recorded, |f| {
            std::io::Write::write_all(f, b"new")
        })
        .unwrap();
        assert_eq!(mode(&dir.path().join("fresh")), 0o755);
    }
}
