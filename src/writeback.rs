//! Writeback while a create copies many small files.
//!
//! Small copies are not sent to writeback one by one (a request per 4 KiB
//! file costs more than the copy; see [`crate::fsutil::end_of_copy_writeback`]),
//! and a create of many new files makes them durable with one `syncfs`
//! before its commit. Alone, that `syncfs` starts all the writeback at the
//! end: 50,000 files of 4 KiB were copied in 0.9 s, then waited 0.8 s for
//! the disk. A helper thread syncs the bundle's file system every
//! [`SYNC_EVERY`] while the copies run, so the disk works while the copies
//! go on and the last `syncfs` finds little left.
//!
//! A writeback error a helper's `syncfs` reports is kept and returned: the
//! kernel reports such an error once, so the last `syncfs` might not see it
//! again, and a bundle whose bytes may not be on disk is never committed.

use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::Result;

/// How often the helper syncs while the copies run.
pub const SYNC_EVERY: Duration = Duration::from_millis(150);

/// Runs `work` (which writes beneath `root`); when `during` is set, a
/// helper thread syncs `root`'s file system every [`SYNC_EVERY`] until
/// `work` is done. Returns what `work` returned, or the first writeback
/// error a helper's sync reported.
pub fn syncing_while<R>(root: &Path, during: bool, work: impl FnOnce() -> R) -> Result<R> {
    if !during {
        return Ok(work());
    }
    let done = Mutex::new(false);
    let wake = Condvar::new();
    let (out, failure) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            let mut finished = done.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                finished = match wake.wait_timeout(finished, SYNC_EVERY) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
                if *finished {
                    return None;
                }
                // Synced without holding the flag, so `work` may finish meanwhile.
                drop(finished);
                if let Err(e) = crate::fsutil::syncfs(root) {
                    return Some(e);
                }
                finished = done.lock().unwrap_or_else(|e| e.into_inner());
            }
        });
        // Stops the helper when `work` returns or panics (the scope waits
        // for the helper before it passes a panic on).
        let stop = Stop {
            done: &done,
            wake: &wake,
        };
        let out = work();
        drop(stop);
        (out, helper.join().expect("the sync helper does not panic"))
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Tells the helper of [`syncing_while`] to stop, when dropped.
struct Stop<'a> {
    done: &'a Mutex<bool>,
    wake: &'a Condvar,
}

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        // A poisoned flag still stops the helper.
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// Whether a create's copies are worth syncing during: more new files than
/// one `syncfs` replaces file-by-file fsyncs for.
pub fn worth_it(new_files: usize) -> bool {
    new_files > crate::fsutil::SYNCFS_ABOVE_FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_once_with_or_without_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        for during in [false, true] {
            let mut runs = 0;
            let out = syncing_while(dir.path(), during, || {
                runs += 1;
                std::fs::write(dir.path().join("f"), b"x").unwrap();
                // Long enough for the helper to sync at least once.
                std::thread::sleep(SYNC_EVERY * 2);
                7
            })
            .unwrap();
            assert_eq!((out, runs), (7, 1));
        }
    }

    #[test]
    fn a_panic_in_the_work_stops_the_helper_and_is_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let caught = std::panic::catch_unwind(|| {
            syncing_while(dir.path(), true, || -> () { panic!("work failed") })
        });
        assert!(caught.is_err());
    }

    #[test]
    fn a_sync_that_fails_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = syncing_while(&gone, true, || std::thread::sleep(SYNC_EVERY * 2)).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
