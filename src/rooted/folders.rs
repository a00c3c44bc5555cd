//! The folders a [`RootDir`] already resolved without links, kept open so
//! that the many files of one folder cost one open of it (see the module
//! above for why a kept handle never leads outside the root).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::RootDir;

/// How many resolved folders a root keeps open.
pub(super) const CACHED_FOLDERS: usize = 48;

/// How many every root of the process keeps open together (file
/// descriptors are limited, 1,024 by default, and a restore holds a root
/// per store): past it, a root only replaces its own oldest handle.
const KEPT_IN_ALL: usize = 256;

/// Handles kept open by every root of the process.
static KEPT: AtomicUsize = AtomicUsize::new(0);

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
        } else if KEPT.fetch_add(1, Ordering::Relaxed) >= KEPT_IN_ALL {
            KEPT.fetch_sub(1, Ordering::Relaxed);
            if folders.is_empty() {
                return;
            }
            folders.remove(0);
        }
        folders.push((parts.iter().collect(), Arc::clone(fd)));
    }

    /// Drops every resolved folder (after a folder was removed, and when the
    /// root is dropped).
    pub(super) fn forget_folders(&self) {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        KEPT.fetch_sub(folders.len(), Ordering::Relaxed);
        folders.clear();
    }
}

impl Drop for RootDir {
    fn drop(&mut self) {
        self.forget_folders();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooted::Ownership;
    use std::path::Path;

    #[test]
    fn every_root_together_keeps_no_more_than_the_budget_open() {
        let dir = tempfile::tempdir().unwrap();
        let roots: Vec<RootDir> = (0..8)
            .map(|r| {
                let store = dir.path().join(format!("s{r}"));
                std::fs::create_dir(&store).unwrap();
                RootDir::open(&store, "t").unwrap()
            })
            .collect();
        for root in &roots {
            for f in 0..CACHED_FOLDERS {
                let rel = format!("d{f}/x");
                root.write_file(Path::new(&rel), Ownership::default(), |w| {
                    std::io::Write::write_all(w, b"x")
                })
                .unwrap();
                assert!(KEPT.load(Ordering::Relaxed) <= KEPT_IN_ALL);
            }
        }
        // Past the budget, walks still resolved (without keeping handles).
        for r in 0..roots.len() {
            let store = dir.path().join(format!("s{r}"));
            assert_eq!(std::fs::read_dir(&store).unwrap().count(), CACHED_FOLDERS);
            assert_eq!(std::fs::read(store.join("d0/x")).unwrap(), b"x");
        }
        let kept: usize = roots.iter().map(|r| r.folders.lock().unwrap().len()).sum();
        assert!(kept <= KEPT_IN_ALL, "{kept}");
        drop(roots);
    }
}
