//! The folders a [`RootDir`] already resolved without links, kept open so
//! that the many files of one folder cost one open of it (see the module
//! above for why a kept handle never leads outside the root).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::RootDir;

/// How many resolved folders a root keeps open (file descriptors are
/// limited: 1,024 by default for the whole process).
pub(super) const CACHED_FOLDERS: usize = 48;

impl RootDir {
    /// How many of `parts` lead to an already resolved folder, and it (the
    /// root itself when none).
    pub(super) fn deepest_cached(&self, parts: &[&OsStr]) -> (usize, Arc<OwnedFd>) {
        if !parts.is_empty() {
            let folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
            for depth in (1..=parts.len()).rev() {
                let key = &parts[..depth];
                let hit = folders
                    .iter()
                    .rev()
                    .find(|(rel, _)| rel.iter().eq(key.iter().copied()));
                if let Some((_, fd)) = hit {
                    return (depth, Arc::clone(fd));
                }
            }
        }
        (0, Arc::clone(&self.fd))
    }

    /// Keeps `fd`, the folder `parts`, for later walks (the oldest dropped
    /// when the cache is full).
    pub(super) fn remember_folder(&self, parts: &[&OsStr], fd: &Arc<OwnedFd>) {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        if folders.len() >= CACHED_FOLDERS {
            folders.remove(0);
        }
        folders.push((parts.iter().collect(), Arc::clone(fd)));
    }

    /// Drops every resolved folder (after a folder was removed).
    pub(super) fn forget_folders(&self) {
        self.folders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
