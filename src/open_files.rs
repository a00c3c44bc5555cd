//! Which processes hold a store's files open: a restore must not write
//! under a running application, whatever the store's kind.
//!
//! On Linux every process's open files are links in `/proc/<pid>/fd`, and
//! its mapped files are listed in `/proc/<pid>/maps`. Processes this user
//! may not inspect (another user's, unless run as root) are not seen; for
//! SQLite databases the lock probe still sees them.

use std::path::{Path, PathBuf};

/// A process holding a file beneath a store open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: String,
    /// The file it holds.
    pub path: PathBuf,
}

/// The other processes holding open (or mapping) one of `targets` or, for
/// a folder, anything beneath it; empty where `/proc` is not there. One
/// pass over `/proc` whatever the number of targets.
pub fn holders(targets: &[PathBuf]) -> Vec<Holder> {
    let targets: Vec<PathBuf> = targets
        .iter()
        .filter_map(|t| std::fs::canonicalize(t).ok())
        .collect();
    if targets.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        if let Some(path) = open_under(&dir, &targets) {
            let command = std::fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "?".into());
            found.push(Holder { pid, command, path });
        }
    }
    found.sort_by_key(|h| h.pid);
    found
}

/// The first file at or beneath one of `targets` that the process at
/// `/proc/<pid>` has open or mapped.
fn open_under(proc_dir: &Path, targets: &[PathBuf]) -> Option<PathBuf> {
    let inside = |p: &Path| targets.iter().any(|t| p.starts_with(t));
    if let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) {
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inside(&link) {
                    return Some(link);
                }
            }
        }
    }
    let maps = std::fs::read_to_string(proc_dir.join("maps")).ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|p| inside(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_holding_a_file_is_found_by_pid_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("held.bin");
        std::fs::write(&file, b"x").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&file).unwrap())
            .spawn()
            .unwrap();
        // The child may not have exec'd yet; its fd is there from the fork.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = holders(&[dir.path().to_path_buf()]);
            if found.iter().any(|h| h.command == "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let holder = found.iter().find(|h| h.pid == child.id()).expect("found");
        assert_eq!(holder.command, "sleep");
        assert_eq!(holder.path, std::fs::canonicalize(&file).unwrap());
        assert!(holders(&[dir.path().join("missing")]).is_empty());
    }
}
