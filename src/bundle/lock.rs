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

impl DestinationLock {
    /// Takes the lock without waiting; refuses when another process holds it.
    pub fn acquire(destination: &Path) -> Result<DestinationLock> {
        let path = destination.join(LOCK_FILE);
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
                LOCK_FILE
            ))),
            Err(TryLockError::Error(e)) => Err(Error::io("could not lock", &path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
