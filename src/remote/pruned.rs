//! Which bundles a prune deleted from a remote, remembered by the local
//! destination (`.remote-<name>.pruned`, one id per line), so that a plain
//! `bundle push` does not send them back: with a longer local retention
//! (7 daily here, 12 monthly offsite) every push would otherwise re-upload
//! what the remote's prune had just removed. Naming a bundle still pushes it.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file of remote `name` in `destination`.
fn path(destination: &Path, name: &str) -> PathBuf {
    destination.join(format!(".remote-{name}.pruned"))
}

/// The ids pruned from remote `name`, as remembered in `destination`.
pub fn read(destination: &Path, name: &str) -> Result<HashSet<String>> {
    let path = path(destination, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(Error::io("could not read", &path, e)),
    }
}

/// Remembers that `ids` were pruned from remote `name` (when `destination`
/// exists; a host without one pushes nothing by default anyway).
pub fn remember(destination: &Path, name: &str, ids: &[String]) -> Result<()> {
    if ids.is_empty() || !destination.is_dir() {
        return Ok(());
    }
    let path = path(destination, name);
    let mut text = String::new();
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("could not open", &path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("could not write", &path, e))
}
