//! Git provenance: the commit and dirty flag of the repository holding the config.
//!
//! Never fails a backup: anything unexpected yields `None`.

use std::path::Path;

use crate::manifest::GitInfo;

/// Looks for a git repository at or above `dir` and describes its state.
pub fn provenance(dir: &Path) -> Option<GitInfo> {
    let repo = git2::Repository::discover(dir).ok()?;
    let sha = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string());
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let dirty = repo
        .statuses(Some(&mut opts))
        .map(|s| !s.is_empty())
        .unwrap_or(true);
    Some(GitInfo { sha, dirty })
}
