//! What an interrupted process (Ctrl-C, SIGTERM) cleans up, and what it says
//! it left.
//!
//! The library registers what it is building while it builds it: a staging
//! folder, a drill's scratch folder, a restore under way. The binary, on a
//! signal, calls [`clean_up`] and prints the one line it returns, then exits
//! (130 or 143). Publishing a staging folder (its rename into place) and the
//! clean-up exclude each other, so a bundle is either whole and published or
//! removed, never half of each. The destination lock is an advisory lock the
//! kernel releases with the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Something under way that an interruption must clean up or mention.
#[derive(Debug, Clone)]
enum Work {
    /// A folder this process made and nobody else needs: removed.
    Scratch { path: PathBuf, what: &'static str },
    /// A restore that has started writing: left as it is, with its journal.
    Restore {
        bundle: PathBuf,
        snapshot: Option<PathBuf>,
    },
    /// A hook's command, in its own process group: killed.
    ProcessGroup { pid: u32 },
}

/// Everything under way, by registration number.
static UNDER_WAY: Mutex<Vec<(u64, Work)>> = Mutex::new(Vec::new());
/// The next registration number.
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A registration, withdrawn on drop (the work finished or failed normally).
#[must_use = "the registration is withdrawn when the guard is dropped"]
#[derive(Debug)]
pub struct Guard(u64);

fn register(work: Work) -> Guard {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock().push((n, work));
    Guard(n)
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Work)>> {
    UNDER_WAY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock().retain(|(n, _)| *n != self.0);
    }
}

/// Registers a folder being built (`what`: "the unfinished bundle", say)
/// that an interruption removes.
pub fn scratch(path: &Path, what: &'static str) -> Guard {
    register(Work::Scratch {
        path: path.to_path_buf(),
        what,
    })
}

/// Registers a restore of `bundle` that has written its journal.
pub fn restore(bundle: &Path, snapshot: Option<&Path>) -> Guard {
    register(Work::Restore {
        bundle: bundle.to_path_buf(),
        snapshot: snapshot.map(Path::to_path_buf),
    })
}

/// Registers a running hook (the leader of its own process group), which an
/// interruption kills with its children.
pub fn process_group(pid: u32) -> Guard {
    register(Work::ProcessGroup { pid })
}

/// Runs `publish` (the rename of a registered staging folder into place)
/// so that an interruption cannot remove the folder while it moves; the
/// registration is withdrawn with it.
pub fn publish<T>(guard: Guard, publish: impl FnOnce() -> T) -> T {
    let mut under_way = lock();
    let out = publish();
    under_way.retain(|(n, _)| *n != guard.0);
    drop(under_way);
    std::mem::forget(guard);
    out
}

/// Removes every registered scratch folder and says, in one line, what was
/// removed and what was left as it was. Meant to be called once, right
/// before the process exits: it keeps the registry locked, so nothing is
/// published after it.
pub fn clean_up() -> String {
    let under_way = lock();
    let said = clean(&under_way);
    std::mem::forget(under_way);
    said
}

/// Cleans up `under_way`; the line saying what happened.
fn clean(under_way: &[(u64, Work)]) -> String {
    let mut said = Vec::new();
    let mut fences = Vec::new();
    for (_, work) in under_way {
        match work {
            Work::Scratch { path, what } => {
                let removed = remove_and_fence(path);
                if removed.is_ok() {
                    fences.push(path);
                }
                said.push(match removed {
                    Ok(()) => format!("removed {what} {}", path.display()),
                    Err(e) => format!("could not remove {what} {} ({e})", path.display()),
                });
            }
            Work::ProcessGroup { pid } => {
                let group = i32::try_from(*pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw);
                if let Some(group) = group {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                said.push(format!("stopped the running hook (process group {pid})"));
            }
            Work::Restore { bundle, snapshot } => {
                let undo = match snapshot {
                    Some(s) => format!(
                        ", or undo it with `bundle restore {} --mode replace`",
                        s.display()
                    ),
                    None => String::new(),
                };
                said.push(format!(
                    "the restore of {} was left part-way with its journal; run the same restore again to finish it{undo}",
                    bundle.display()
                ));
            }
        }
    }
    if !fences.is_empty() {
        // Let threads caught mid-copy run into the fences and give up first.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for fence in fences {
        let _ = std::fs::remove_file(fence);
    }
    if said.is_empty() {
        return "nothing was being written; everything was left as it was".into();
    }
    said.join("; ")
}

/// Removes a folder other threads may still be adding to, and leaves an
/// empty file in its place (removed again right before the exit): threads
/// still copying cannot build the folder again, their writes fail. A thread
/// may recreate the folder between the removal and the fence, so both are
/// repeated until the fence stands.
fn remove_and_fence(path: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..50 {
        last = match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if last.is_ok() {
            match std::fs::File::create_new(path) {
                Ok(_) => return Ok(()),
                Err(e) => last = Err(e),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_removes_what_is_registered_and_not_what_was_published() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join(".staging-x");
        let published = dir.path().join("published");
        std::fs::create_dir_all(staged.join("a/b")).unwrap();
        std::fs::write(staged.join("a/b/f"), b"x").unwrap();
        std::fs::create_dir(&published).unwrap();
        let kept = scratch(&staged, "the unfinished bundle");
        let gone = scratch(&published, "another bundle");
        publish(gone, || ());
        let mine: Vec<(u64, Work)> = lock()
            .iter()
            .filter(|(n, _)| *n == kept.0)
            .cloned()
            .collect();
        assert!(
            !lock().iter().any(|(n, _)| *n == kept.0 + 1),
            "published is withdrawn"
        );
        let line = clean(&mine);
        assert!(line.starts_with("removed the unfinished bundle"), "{line}");
        assert!(!staged.exists());
        assert!(published.exists());
        drop(kept);
        assert!(!lock().iter().any(|(n, _)| *n == mine[0].0));
    }

    #[test]
    fn an_interrupted_restore_says_how_to_finish_or_undo() {
        let work = Work::Restore {
            bundle: PathBuf::from("/b/20260101T000000Z"),
            snapshot: Some(PathBuf::from("/b/20260102T000000Z")),
        };
        let line = clean(&[(0, work)]);
        assert!(line.contains("run the same restore again"), "{line}");
        assert!(
            line.contains("bundle restore /b/20260102T000000Z --mode replace"),
            "{line}"
        );
    }
}
