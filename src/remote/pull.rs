//! `bundle pull`: brings a complete remote bundle into the local
//! destination through a staging folder and a rename, as create does, so a
//! failed or interrupted pull (a full disk, an altered object) leaves no
//! partial bundle. Every object is checked against the index and every file
//! against the manifest on the way in; the result is an ordinary local
//! bundle that passes `bundle verify`.

use std::path::{Path, PathBuf};

use crate::bundle::lock::DestinationLock;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::{FileRecord, MANIFEST_FILE, MANIFEST_SUM_FILE};
use crate::progress::Progress;
use crate::remote::fetch::{read_into, small_object, Opening};
use crate::remote::layout::{self, file_object, SUM_OBJECT};
use crate::remote::{Remote, RemoteBundle};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The local bundle folder.
    pub path: PathBuf,
    /// Whether it was already there (with the same manifest) and nothing was read.
    pub already: bool,
}

/// The complete remote bundle `id`, or why it cannot be pulled.
pub fn find(remote: &Remote, id: &str) -> Result<RemoteBundle> {
    match remote.bundle(id)? {
        Ok(b) => Ok(b),
        Err(why) => Err(Error::Refused(format!(
            "bundle {id} on remote \"{}\" cannot be used: {why}; nothing was changed",
            remote.spec.name
        ))),
    }
}

/// Pulls remote bundle `id` into `destination` (locked meanwhile).
pub fn pull(
    remote: &Remote,
    id: &str,
    destination: &Path,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let bundle = find(remote, id)?;
    let opened = bundle.opened(remote)?;
    fsutil::create_private_dir_all(destination)?;
    let _lock = DestinationLock::acquire(destination)?;
    let path = destination.join(id);
    if path.exists() {
        let local = std::fs::read(path.join(MANIFEST_FILE)).unwrap_or_default();
        if local == opened.bytes {
            return Ok(Pulled {
                path,
                already: true,
            });
        }
        return Err(Error::Refused(format!(
            "{} already exists and is not the remote's bundle {id}; nothing was changed",
            path.display()
        )));
    }
    let staging = crate::bundle::staging::staging_path(destination, id);
    let guard = crate::interrupt::scratch(&staging, "the pull's staging folder");
    if let Err(e) = write_bundle(remote, &bundle, &staging, jobs, progress) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let renamed = crate::interrupt::publish(guard, || std::fs::rename(&staging, &path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(Error::io(
            "could not move the pulled bundle into place at",
            &path,
            e,
        ));
    }
    fsutil::fsync_path(destination)?;
    fsutil::make_files_read_only(&path)?;
    Ok(Pulled {
        path,
        already: false,
    })
}

/// Writes remote `bundle` as a complete local bundle into the new folder
/// `into`, checked file by file, fsynced.
pub fn write_bundle(
    remote: &Remote,
    bundle: &RemoteBundle,
    into: &Path,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<()> {
    let id = bundle.id.to_string();
    let opened = bundle.opened(remote)?;
    fsutil::create_private_dir(into)?;
    let files: Vec<(usize, &FileRecord)> = layout::files(&opened.manifest).enumerate().collect();
    let total: u64 = files.iter().map(|(_, f)| f.bytes).sum();
    // Refuse up front what cannot fit, rather than fail part-way.
    let needed = total
        .saturating_add(opened.bytes.len() as u64)
        .saturating_add(1 << 20);
    let (available, _) = fsutil::free_space(into)?;
    if needed > available {
        return Err(Error::NoSpace {
            path: into.parent().unwrap_or(into).to_path_buf(),
            needed,
            available,
        });
    }
    progress.start(
        &format!("pulling {id} from {}", remote.spec.name),
        Some(total),
    );
    let written = crate::parallel::map(&files, jobs, |(n, file)| {
        pull_file(remote, bundle, into, *n, file, progress)
    });
    progress.finish();
    let written = written?;
    let sum = match small_object(remote, &bundle.index, SUM_OBJECT)? {
        Ok(s) => s,
        Err(why) => return Err(refused(remote, &id, &why)),
    };
    fsutil::write_new_file(&into.join(MANIFEST_SUM_FILE), &sum, true)?;
    fsutil::write_new_file(&into.join(MANIFEST_FILE), &opened.bytes, true)?;
    for path in written {
        fsutil::fsync_path(&path)?;
    }
    for entry in walkdir::WalkDir::new(into).follow_links(false) {
        let entry = entry.map_err(|e| Error::io("could not walk", into, e.into()))?;
        if entry.file_type().is_dir() {
            fsutil::fsync_path(entry.path())?;
        }
    }
    Ok(())
}

/// The refusal for a remote bundle that turned out altered.
fn refused(remote: &Remote, id: &str, why: &str) -> Error {
    Error::Refused(format!(
        "bundle {id} on remote \"{}\" is not intact: {why}; nothing was changed",
        remote.spec.name
    ))
}

/// Streams file `n` into `into`, checked; its path.
fn pull_file(
    remote: &Remote,
    bundle: &RemoteBundle,
    into: &Path,
    n: usize,
    file: &FileRecord,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let id = bundle.id.to_string();
    let name = file_object(n);
    let entry = bundle
        .index
        .object(&name)
        .ok_or_else(|| refused(remote, &id, &format!("the index lists no object {name}")))?;
    let rel = file.rel().map_err(|e| {
        refused(
            remote,
            &id,
            &format!("unsafe path {} in its manifest: {e}", file.path),
        )
    })?;
    let dest = into.join(rel);
    if let Some(parent) = dest.parent() {
        fsutil::create_dir_all(parent)?;
    }
    let mut out = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&dest)
        .map_err(|e| Error::io("could not create", &dest, e))?;
    let at = Opening::of(&bundle.index);
    let read = read_into(
        remote,
        at,
        &bundle.index.path_of(&name),
        file,
        Some(entry),
        &mut out,
    )
    .map_err(|e| match e {
        Error::Io { action, source, .. } => Error::io(action, &dest, source),
        other => other,
    })?;
    progress.advance(file.bytes);
    if let Err(why) = read {
        return Err(refused(
            remote,
            &id,
            &format!("object {name} ({}): {why}", file.path),
        ));
    }
    let mode = crate::capture::bundle_mode(file.mode.unwrap_or(0o400));
    fsutil::set_mode(&dest, mode)?;
    Ok(dest)
}

/// Pulls remote bundle `id` into a temporary folder inside `destination`
/// (so on the restore target's file system, and removed with the returned
/// guard), for a restore to use like any local bundle: its path and the guard.
pub fn stage_for_restore(
    remote: &Remote,
    id: &str,
    destination: &Path,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<(PathBuf, tempfile::TempDir)> {
    let bundle = find(remote, id)?;
    fsutil::create_private_dir_all(destination)?;
    let temp = tempfile::Builder::new()
        .prefix(".remote-restore-")
        .tempdir_in(destination)
        .map_err(|e| Error::io("could not create a temporary folder in", destination, e))?;
    let path = temp.path().join(id);
    write_bundle(remote, &bundle, &path, jobs, progress)?;
    Ok((path, temp))
}
