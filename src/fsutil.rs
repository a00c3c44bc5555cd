//! File-system helpers: durable writes, fsync, safe relative paths, read-only trees.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Above this many new files, one `syncfs` of their file system replaces a
/// file-by-file fsync (one call instead of thousands, with the same
/// guarantee: every file's data and every entry durable).
pub const SYNCFS_ABOVE_FILES: usize = 256;

/// Makes everything written to the file system holding `path` durable (one
/// `syncfs`: data, inodes and folders, with writeback errors reported).
pub fn syncfs(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io("could not open for syncfs", path, e))?;
    rustix::fs::syncfs(&file)
        .map_err(|e| Error::io("could not sync the file system of", path, e.into()))
}

/// fsyncs a file or directory by path.
pub fn fsync_path(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io("could not open for fsync", path, e))?;
    file.sync_all()
        .map_err(|e| Error::io("could not fsync", path, e))
}

/// Asks the kernel to start writing `file`'s dirty pages back to disk now,
/// without waiting, so a later fsync finds little left to do. (Linux starts
/// writeback for `POSIX_FADV_DONTNEED`; clean pages are dropped from the cache.)
/// Only a hint: failures are ignored.
pub fn start_writeback(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// Files smaller than this are not sent to writeback one by one when their
/// copy ends: the one sync before a commit writes them back together.
pub const WRITEBACK_AT_LEAST: u64 = 1024 * 1024;

/// The end of a copy of `bytes` bytes into `file`: starts its writeback
/// ([`start_writeback`]) when it is at least [`WRITEBACK_AT_LEAST`]. For
/// many small files, one writeback request each costs more than the copy
/// (a request per 4 KiB file), and the sync that must follow anyway batches
/// them.
pub fn end_of_copy_writeback(file: &File, bytes: u64) {
    if bytes >= WRITEBACK_AT_LEAST {
        start_writeback(file);
    }
}

/// Writes `bytes` to a new file at `path` (which must not exist), and
/// fsyncs it when `sync` (else a later sync of its file system must).
pub fn write_new_file(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("could not create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
        .map_err(|e| Error::io("could not write", path, e))
}

/// Creates `dir` and its parents; fine if it exists.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("could not create folder", dir, e))
}

/// Replaces (or creates) `target` atomically: `fill` writes a temp file beside
/// it, which is fsynced and renamed over `target`; the folder is then fsynced.
/// A crash leaves either the old file or the new one, never a mix.
pub fn replace_file(
    target: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.bundle-tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = File::options().write(true).create_new(true).open(&temp)?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io("could not write", target, e));
    }
    fsync_path(dir)
}

/// Bytes available to this user on the file system holding `path` (or its
/// nearest existing ancestor), and that file system's device id.
pub fn free_space(path: &Path) -> Result<(u64, u64)> {
    let mut at = path.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    let stat = rustix::fs::statvfs(&at)
        .map_err(|e| Error::io("could not measure free space at", &at, e.into()))?;
    let dev = std::os::unix::fs::MetadataExt::dev(
        &std::fs::metadata(&at).map_err(|e| Error::io("could not stat", &at, e))?,
    );
    Ok((stat.f_bavail.saturating_mul(stat.f_frsize), dev))
}

/// Joins a manifest path (`a/b/c`) onto `root` after checking it is safe.
pub fn join_safe(root: &Path, rel: &str) -> std::result::Result<PathBuf, String> {
    check_relative(rel)?;
    Ok(rel
        .split('/')
        .fold(root.to_path_buf(), |p, part| p.join(part)))
}

/// Checks that a manifest path is relative, `/`-separated and stays inside its root.
///
/// Rejects empty paths and segments, `.` and `..`, absolute paths and NUL
/// bytes. (A backslash is an ordinary character in a Unix file name.)
pub fn check_relative(rel: &str) -> std::result::Result<(), String> {
    if rel.is_empty() {
        return Err("empty path".into());
    }
    if rel.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if rel.starts_with('/') {
        return Err("path is absolute".into());
    }
    for part in rel.split('/') {
        match part {
            "" => return Err("path has an empty segment".into()),
            "." | ".." => return Err(format!("path has a \"{part}\" segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether symlink `link` (a `/`-separated path inside a store) pointing to
/// `points_to`, resolved the way the kernel would against a store whose
/// symlinks are given by `lookup` (path inside the store → its target), stays
/// inside the store. Absolute targets, chains that climb above the store at
/// any step, and chains longer than 40 links do not.
pub fn link_stays_inside(
    link: &[u8],
    points_to: &[u8],
    lookup: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> bool {
    let split =
        |b: &[u8]| -> Vec<Vec<u8>> { b.split(|&c| c == b'/').map(<[u8]>::to_vec).collect() };
    let mut stack = split(link);
    stack.pop();
    if points_to.starts_with(b"/") {
        return false;
    }
    let mut queue: std::collections::VecDeque<Vec<u8>> = split(points_to).into();
    let mut hops = 0;
    while let Some(part) = queue.pop_front() {
        match part.as_slice() {
            b"" | b"." => {}
            b".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            _ => {
                stack.push(part);
                if let Some(next) = lookup(&stack.join(&b'/')) {
                    hops += 1;
                    if hops > 40 || next.starts_with(b"/") {
                        return false;
                    }
                    stack.pop();
                    for p in split(&next).into_iter().rev() {
                        queue.push_front(p);
                    }
                }
            }
        }
    }
    true
}

/// How a relative path is written in a manifest: `text` is the `/`-joined
/// path, and when the path is not valid UTF-8, `hex` holds its exact bytes
/// (lowercase hex) while `text` shows it with each invalid sequence replaced
/// by U+FFFD, for people to read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncodedPath {
    /// The path as text.
    pub text: String,
    /// Its exact bytes, only when they are not UTF-8.
    pub hex: Option<String>,
}

/// The open folder of the last path it was asked about: the files of one
/// folder are then reached by name beneath it (an `*at` call) instead of
/// each walking its whole path from the root again, which cost as much as
/// the work on the file itself for many small files. The folder is opened
/// as its path resolves (as a call on the whole path would); it is kept
/// open until a path in another folder is asked about, or this is dropped.
#[derive(Debug, Default)]
pub struct LastFolder {
    open: Option<(PathBuf, rustix::fd::OwnedFd)>,
}

impl LastFolder {
    /// The open folder of `path` and the name of `path` in it.
    pub fn of<'p>(
        &mut self,
        path: &'p Path,
    ) -> std::io::Result<(rustix::fd::BorrowedFd<'_>, &'p std::ffi::OsStr)> {
        use rustix::fd::AsFd;
        use rustix::fs::{Mode, OFlags};
        let (Some(folder), Some(name)) = folder_and_name(path) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} names no file in a folder", path.display()),
            ));
        };
        let folder = match folder.as_os_str().is_empty() {
            true => Path::new("."),
            false => folder,
        };
        let kept = self
            .open
            .take()
            .filter(|(at, _)| at.as_os_str() == folder.as_os_str());
        let (at, fd) = match kept {
            Some(open) => open,
            None => {
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                (
                    folder.to_path_buf(),
                    rustix::fs::open(folder, flags, Mode::empty())?,
                )
            }
        };
        let kept = self.open.insert((at, fd));
        Ok((kept.1.as_fd(), name))
    }

    /// Opens `path` with `flags` (and `mode`, when it creates it) by name
    /// beneath its folder, kept open for the next file of the same folder.
    pub fn open(
        &mut self,
        path: &Path,
        flags: rustix::fs::OFlags,
        mode: rustix::fs::Mode,
    ) -> std::io::Result<File> {
        let (at, name) = self.of(path)?;
        Ok(File::from(rustix::fs::openat(at, name, flags, mode)?))
    }
}

/// `path`'s folder and name, as [`Path::parent`] and [`Path::file_name`]
/// give them. A path whose last slash is single and followed by a plain
/// name (every path a walk or a bundle makes) is cut at that slash rather
/// than parsed component by component from its end, twice per file.
fn folder_and_name(path: &Path) -> (Option<&Path>, Option<&std::ffi::OsStr>) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if let Some(slash) = bytes.iter().rposition(|&b| b == b'/') {
        let (folder, name) = (&bytes[..slash], &bytes[slash + 1..]);
        let plain = !matches!(name, b"" | b"." | b"..");
        if plain && slash > 0 && folder.last() != Some(&b'/') {
            return (
                Some(Path::new(OsStr::from_bytes(folder))),
                Some(OsStr::from_bytes(name)),
            );
        }
    }
    (path.parent(), path.file_name())
}

/// `base.join(rel)`, without room to spare: a restore plan holds one or
/// two such paths for each file (a join leaves up to half its length free).
pub fn joined(base: &Path, rel: &Path) -> PathBuf {
    let mut path = PathBuf::with_capacity(base.as_os_str().len() + 1 + rel.as_os_str().len());
    path.push(base);
    path.push(rel);
    path
}

/// Encodes a relative file-system path for a manifest; refuses anything but
/// plain components.
pub fn encode_path(rel: &Path) -> std::result::Result<EncodedPath, String> {
    use std::os::unix::ffi::OsStrExt;
    // Plain names joined by single slashes already are their components
    // (a walk of many files gives nothing else): taken as they are, not
    // parsed component by component.
    let raw = rel.as_os_str().as_bytes();
    let bytes = match check_relative_bytes(raw) {
        Ok(()) => raw.to_vec(),
        Err(_) => {
            let bytes = normal_components(rel)?;
            check_relative_bytes(&bytes)?;
            bytes
        }
    };
    Ok(match String::from_utf8(bytes) {
        Ok(text) => EncodedPath { text, hex: None },
        Err(e) => EncodedPath {
            text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            hex: Some(hex::encode(e.as_bytes())),
        },
    })
}

/// `rel`'s components joined by single slashes; anything but a plain name
/// (a root, `.` or `..`) is refused.
fn normal_components(rel: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(s) => {
                if !bytes.is_empty() {
                    bytes.push(b'/');
                }
                bytes.extend_from_slice(s.as_bytes());
            }
            _ => return Err(format!("unexpected path component in {}", rel.display())),
        }
    }
    Ok(bytes)
}

/// Decodes a manifest path (`text`, and `hex` when given) into a relative
/// file-system path, checking it is safe and that both forms agree.
pub fn decode_path(text: &str, hex: Option<&str>) -> std::result::Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = match hex {
        None => text.as_bytes().to_vec(),
        Some(h) => {
            let bytes = hex::decode(h).map_err(|e| format!("path_hex is not hex: {e}"))?;
            if std::str::from_utf8(&bytes).is_ok() {
                return Err("path_hex is given for a path that is valid UTF-8".into());
            }
            if String::from_utf8_lossy(&bytes) != text {
                return Err("path_hex does not match path".into());
            }
            bytes
        }
    };
    check_relative_bytes(&bytes)?;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
}

/// [`decode_path`] joined onto `root`.
pub fn join_decoded(
    root: &Path,
    text: &str,
    hex: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    decode_path(text, hex).map(|rel| root.join(rel))
}

/// [`check_relative`] for raw bytes.
fn check_relative_bytes(rel: &[u8]) -> std::result::Result<(), String> {
    match std::str::from_utf8(rel) {
        Ok(text) => check_relative(text),
        Err(_) => check_relative(&String::from_utf8_lossy(rel)),
    }
}

/// Sets the permission bits of `path` (skipped when they already are `mode`).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("could not stat", path, e))?;
    if meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("could not set the mode of", path, e))
}

/// Creates folder `dir` (its parent must exist) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("could not create", dir, e))
}

/// Creates `dir` and its missing parents, each readable by its owner only;
/// existing folders are left as they are.
pub fn create_private_dir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(|e| Error::io("could not create folder", dir, e))
}

/// Removes the write bits of every regular file under `root` that has any
/// (directories are left writable so that a deliberate delete can still
/// remove the bundle); read bits are never added.
pub fn make_files_read_only(root: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io("could not walk", &path, e.into())
        })?;
        if entry.file_type().is_file() {
            let meta = entry
                .metadata()
                .map_err(|e| Error::io("could not stat", entry.path(), e.into()))?;
            remove_write_bits(entry.path(), &meta)?;
        }
    }
    Ok(())
}

/// [`make_files_read_only`] for the files at `paths` only (each a regular
/// file, never followed if a link).
pub fn make_read_only<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    for path in paths {
        let meta =
            std::fs::symlink_metadata(path).map_err(|e| Error::io("could not stat", path, e))?;
        if meta.is_file() {
            remove_write_bits(path, &meta)?;
        }
    }
    Ok(())
}

/// Clears the write bits of the file at `path` (whose metadata is `meta`), if it has any.
fn remove_write_bits(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o222 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7555))
        .map_err(|e| Error::io("could not make read-only", path, e))
}

/// Serializes paths as text even when they are not UTF-8 (each invalid
/// sequence becomes U+FFFD), for reports: serde refuses such paths outright.
pub mod lossy {
    use std::path::{Path, PathBuf};

    use serde::Serializer;

    /// A path.
    pub fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    /// An optional path.
    pub fn option<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }

    /// A set of paths.
    pub fn set<S: Serializer>(
        set: &std::collections::BTreeSet<PathBuf>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|p| p.to_string_lossy()))
    }
}

/// Whether `inner` is `outer` or lies inside it (both should be canonical).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Canonicalizes a path that may not exist yet: the longest existing ancestor is
/// canonicalized (resolving symlinks) and the rest appended.
pub fn canonical_lenient(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return rest.iter().rev().fold(c, |p: PathBuf, part| p.join(part));
        }
        match (
            existing.file_name().map(|s| s.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_is_join_without_room_to_spare() {
        for (base, rel) in [
            ("/a/b", "c/d.txt"),
            ("/a/b/", "c"),
            ("/a", "/abs"),
            ("rel", "x"),
        ] {
            let (base, rel) = (Path::new(base), Path::new(rel));
            let path = joined(base, rel);
            assert_eq!(path, base.join(rel));
            assert!(path.capacity() <= base.as_os_str().len() + 1 + rel.as_os_str().len());
        }
    }

    #[test]
    fn the_last_folder_stays_open_for_its_files_and_follows_the_paths_asked() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, file) in [("a", "x"), ("b", "y")] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
            std::fs::write(dir.path().join(folder).join(file), folder).unwrap();
        }
        let mut last = LastFolder::default();
        let size = |last: &mut LastFolder, rel: &str| {
            let path = dir.path().join(rel);
            let (at, name) = last.of(&path)?;
            let stat = rustix::fs::statat(at, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            std::io::Result::Ok(stat.st_size)
        };
        assert_eq!(size(&mut last, "a/x").unwrap(), 1);
        // Kept open: the folder's name now leads elsewhere, the handle does not.
        std::fs::rename(dir.path().join("a"), dir.path().join("a2")).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        assert_eq!(size(&mut last, "a/x").unwrap(), 1);
        // Another folder is opened afresh, and so is the first one after it.
        assert_eq!(size(&mut last, "b/y").unwrap(), 1);
        assert_eq!(
            size(&mut last, "a/x").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            size(&mut last, "gone/x").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            last.of(Path::new("/")).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn unsafe_relative_paths_are_rejected() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a/",
            "a\0b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a",
            "a/b.db",
            "kb/2026/a.jsonl",
            "x/..y/z",
            "a\\b",
            "a\\..\\b",
        ] {
            assert!(check_relative(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            join_safe(Path::new("/r"), "a/b").unwrap(),
            PathBuf::from("/r/a/b")
        );
    }

    #[test]
    fn chained_links_are_resolved_before_they_are_trusted() {
        let links = |pairs: &'static [(&'static str, &'static str)]| {
            move |p: &[u8]| {
                pairs
                    .iter()
                    .find(|(l, _)| l.as_bytes() == p)
                    .map(|(_, t)| t.as_bytes().to_vec())
            }
        };
        let chain: &[(&str, &str)] = &[("u", "."), ("p", "u/..")];
        assert!(link_stays_inside(b"u", b".", links(chain)));
        // `p -> u/..` looks inside, but `u` is the store itself: it climbs out.
        assert!(!link_stays_inside(b"p", b"u/..", links(chain)));
        assert!(link_stays_inside(b"a/b", b"../c", links(&[])));
        assert!(!link_stays_inside(b"a/b", b"../../c", links(&[])));
        assert!(!link_stays_inside(b"a", b"/etc", links(&[])));
        let deep: &[(&str, &str)] = &[("d", "a/b/c"), ("a/b/c", "../../..")];
        assert!(!link_stays_inside(b"x", b"d/..", links(deep)));
        let looped: &[(&str, &str)] = &[("l", "m"), ("m", "l")];
        assert!(!link_stays_inside(b"k", b"l", links(looped)));
    }

    #[test]
    fn paths_that_are_not_utf8_round_trip_through_the_manifest() {
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"kb/caf\xe9/n\xffme"));
        let enc = encode_path(odd).unwrap();
        assert_eq!(enc.text, "kb/caf\u{fffd}/n\u{fffd}me");
        assert_eq!(enc.hex.as_deref(), Some("6b622f636166e92f6eff6d65"));
        assert_eq!(decode_path(&enc.text, enc.hex.as_deref()).unwrap(), odd);
        let plain = encode_path(Path::new("kb/a b\\c")).unwrap();
        assert_eq!((plain.text.as_str(), plain.hex), ("kb/a b\\c", None));
        // Forms that disagree, or hex that hides an unsafe path, are refused.
        assert!(decode_path("kb/x", Some("6b622f2e2e")).is_err());
        assert!(decode_path("kb/\u{fffd}", Some("6b622f2e2eff")).is_err());
        assert!(decode_path("../\u{fffd}", Some("2e2e2fff")).is_err());
        assert!(decode_path("kb/x", Some("6b622f78")).is_err());
    }

    #[test]
    fn a_path_is_cut_into_folder_and_name_as_its_components_say() {
        for path in [
            "a/b/c.txt",
            "/a/b",
            "/a",
            "a",
            "a/",
            "a/b/",
            "a//b",
            "a/./b",
            "a/b/.",
            "a/..",
            "./a",
            "/",
            "",
            "..",
            "a/b/..",
            "//a",
        ] {
            let p = Path::new(path);
            assert_eq!(folder_and_name(p), (p.parent(), p.file_name()), "{path:?}");
        }
    }

    #[test]
    fn a_path_is_encoded_as_its_components_however_it_is_spelled() {
        for (given, encoded) in [
            ("kb/a.txt", Some("kb/a.txt")),
            ("kb//a.txt", Some("kb/a.txt")),
            ("kb/./a.txt", Some("kb/a.txt")),
            ("kb/a.txt/", Some("kb/a.txt")),
            ("./kb/a.txt", None),
            ("kb/../a.txt", None),
            ("/kb/a.txt", None),
            ("", None),
        ] {
            let got = encode_path(Path::new(given)).ok().map(|e| e.text);
            assert_eq!(got.as_deref(), encoded, "{given:?}");
            // What the components give, taken one by one.
            let by_components = normal_components(Path::new(given))
                .ok()
                .filter(|b| check_relative_bytes(b).is_ok());
            assert_eq!(
                by_components.as_deref(),
                encoded.map(str::as_bytes),
                "{given:?}"
            );
        }
    }

    #[test]
    fn lenient_canonicalization_keeps_missing_tail() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(canonical_lenient(&dir.path().join("x/y")), real.join("x/y"));
        assert!(is_within(&real.join("x"), &real));
        assert!(!is_within(&real, &real.join("x")));
    }

    // Fuzzing the path checks (PROPTEST_CASES sets the number of cases; the
    // long suite runs many more, see docs/reliability.md).
    proptest::proptest! {
        #[test]
        fn accepted_paths_never_leave_the_root(rel in "\\PC{0,40}") {
            check_join(&rel)?;
        }

        #[test]
        fn path_like_strings_never_leave_the_root(parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(".."), proptest::strategy::Just("."),
                proptest::strategy::Just(""), proptest::strategy::Just("a"),
                proptest::strategy::Just("b/c"), proptest::strategy::Just("/"),
                proptest::strategy::Just("\\"), proptest::strategy::Just("\u{0}"),
                proptest::strategy::Just("..."), proptest::strategy::Just(".a"),
            ],
            0..8,
        )) {
            check_join(&parts.join("/"))?;
        }
    }

    fn check_join(rel: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let root = Path::new("/srv/bundle");
        if let Ok(joined) = join_safe(root, rel) {
            proptest::prop_assert!(joined.starts_with(root), "{rel:?} -> {joined:?}");
            proptest::prop_assert!(joined != root);
            proptest::prop_assert!(
                joined
                    .components()
                    .skip(3)
                    .all(|c| matches!(c, Component::Normal(_))),
                "{rel:?} -> {joined:?}"
            );
            proptest::prop_assert!(!rel.contains('\0') && !rel.split('/').any(|s| s == ".."));
        }
        Ok(())
    }
}
