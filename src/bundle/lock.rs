//! One writer per destination: an advisory lock on `<destination>/.bundle.lock`.
//!
//! The operating system releases the lock when the process dies, so a killed
//! create never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file inside a destination.
pub const LOCK_FILE: &str = ".bundle.lock";

/// A held destination lock; released on drop.
#[derive(Debug)]
pub struct DestinationLock {
    _file: File,
    path: PathBuf,
}

/// System folders no destination may be (those in [`SYSTEM_TREES`] nor lie inside).
const SYSTEM_FOLDERS: &[&str] = &[
    "/", "/var", "/home", "/root", "/tmp", "/opt", "/srv", "/mnt", "/media",
];

/// System trees no destination may lie in.
const SYSTEM_TREES: &[&str] = &[
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
    "/proc", "/sys", "/run", "/var/log",
];

/// Refuses (exit 3) a destination that is a system folder or lies in a
/// system tree (`/`, `/etc`, `/usr`, …): a lock file and bundles would be
/// written among the system's own files, often as root.
pub fn check_destination(destination: &Path) -> Result<()> {
    let real = crate::fsutil::canonical_lenient(destination);
    let is = |p: &&str| real == Path::new(p);
    let inside = |p: &&str| real.starts_with(p);
    if SYSTEM_FOLDERS.iter().any(is) || SYSTEM_TREES.iter().any(inside) {
        return Err(Error::Refused(format!(
            "destination {} is a system folder; choose a folder of its own for bundles (e.g. /var/backups/bundle or ~/backups)",
            destination.display()
        )));
    }
    Ok(())
}

impl DestinationLock {
    /// Takes the lock without waiting; refuses when another process holds it,
    /// or when the destination is a system folder ([`check_destination`]).
    pub fn acquire(destination: &Path) -> Result<DestinationLock> {
        Self::acquire_file(destination, LOCK_FILE)
    }

    /// Takes the push lock of remote `remote` in `destination`
    /// (`.push-<remote>.lock`): one push per remote at a time, so that a
    /// push never aborts the uploads of another one still running.
    pub fn acquire_push(destination: &Path, remote: &str) -> Result<DestinationLock> {
        Self::acquire_file(destination, &format!(".push-{remote}.lock"))
    }

    /// Takes the lock held by file `name` of `destination`.
    fn acquire_file(destination: &Path, name: &str) -> Result<DestinationLock> {
        check_destination(destination)?;
        let path = destination.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("could not open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DestinationLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(Error::Refused(format!(
                "another bundle operation is running on destination {} (it holds {}); wait for it to finish and try again",
                destination.display(),
                name
            ))),
            Err(TryLockError::Error(e)) => Err(Error::io("could not lock", &path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
