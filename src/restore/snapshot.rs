//! The safety snapshot a restore takes of the live stores before it
//! writes, while the plan's `keep` steps are parked.
//!
//! A plan of a store of many files is tens of MB of steps, most of them
//! `keep` (a file left as it is), and the snapshot is a create of as many
//! files: the two are not held at once. While the snapshot is taken, each
//! `keep` step is parked as its path within the store's folder, packed
//! into one buffer and front-coded (some 10 bytes a file instead of some
//! 200), and the
//! plan is put back as it was, step for step, once the snapshot is done:
//! the plan applied is the one made before the snapshot, as without this.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{RestoreReport, Selected, StoreReport};
use crate::create::safety_snapshot;
use crate::error::{Error, Result};
use crate::plan::Step;
use crate::progress::Progress;

/// Takes the safety snapshot of the `selected` stores into `destination`,
/// their plans' `keep` steps parked meanwhile; `report` gets the
/// snapshot's path and a note for each store that could not be captured
/// normally (kept raw).
pub(super) fn take(
    destination: &Path,
    selected: &[Selected],
    report: &mut RestoreReport,
    progress: &dyn Progress,
) -> Result<()> {
    let parked: Vec<ParkedKeeps> = report.stores.iter_mut().map(ParkedKeeps::park).collect();
    let taken = snapshot(destination, selected, report, progress);
    for (store, parked) in report.stores.iter_mut().zip(parked) {
        parked.put_back(store);
    }
    taken
}

/// A store's plan with its `keep` steps parked: the other steps as they
/// are, and the paths of the `keep` ones packed, each as how many bytes
/// it shares with the one before (the files of a folder follow each
/// other) and the bytes that follow.
#[derive(Debug, Default)]
struct ParkedKeeps {
    /// For each step, in order, whether it is a parked `keep`.
    is_kept: Vec<bool>,
    /// The steps not parked, in order.
    others: Vec<Step>,
    /// The parked steps' paths within the store's folder, one after
    /// another, each as two `u16` (little-endian: the bytes it shares with
    /// the path before, then how many follow) and the bytes that follow.
    paths: Vec<u8>,
}

impl ParkedKeeps {
    /// Takes `store`'s steps, its `keep` steps parked.
    fn park(store: &mut StoreReport) -> ParkedKeeps {
        let steps = std::mem::take(&mut store.steps);
        let mut parked = ParkedKeeps {
            is_kept: Vec::with_capacity(steps.len()),
            ..ParkedKeeps::default()
        };
        let mut last: Vec<u8> = Vec::new();
        for step in steps {
            let within = match &step {
                Step::Keep { target } => target.strip_prefix(&store.root).ok(),
                _ => None,
            };
            let rel = within.map(|rel| rel.as_os_str().as_bytes());
            match rel.filter(|rel| !rel.is_empty() && rel.len() <= usize::from(u16::MAX)) {
                Some(rel) => {
                    let shared = rel.iter().zip(&last).take_while(|(a, b)| a == b).count();
                    // Both fit: a path of at most u16::MAX bytes.
                    parked
                        .paths
                        .extend_from_slice(&(shared as u16).to_le_bytes());
                    parked
                        .paths
                        .extend_from_slice(&((rel.len() - shared) as u16).to_le_bytes());
                    parked.paths.extend_from_slice(&rel[shared..]);
                    last.clear();
                    last.extend_from_slice(rel);
                    parked.is_kept.push(true);
                }
                None => {
                    parked.others.push(step);
                    parked.is_kept.push(false);
                }
            }
        }
        parked.others.shrink_to_fit();
        parked.paths.shrink_to_fit();
        parked
    }

    /// Gives `store` its steps back, as they were.
    fn put_back(self, store: &mut StoreReport) {
        let mut others = self.others.into_iter();
        let mut at = 0;
        let mut rel: Vec<u8> = Vec::new();
        store.steps = Vec::with_capacity(self.is_kept.len());
        for is_kept in self.is_kept {
            let step = match is_kept {
                true => {
                    let number = |at: usize| {
                        usize::from(u16::from_le_bytes([self.paths[at], self.paths[at + 1]]))
                    };
                    let (shared, more) = (number(at), number(at + 2));
                    rel.truncate(shared);
                    rel.extend_from_slice(&self.paths[at + 4..at + 4 + more]);
                    at += 4 + more;
                    Step::Keep {
                        target: crate::fsutil::joined(
                            &store.root,
                            Path::new(OsStr::from_bytes(&rel)),
                        ),
                    }
                }
                false => others.next().expect("each step not parked"),
            };
            store.steps.push(step);
        }
    }
}

/// Snapshots the live stores into the destination; a store that cannot be
/// captured normally is kept raw, and its report says so.
fn snapshot(
    destination: &Path,
    selected: &[Selected],
    report: &mut RestoreReport,
    progress: &dyn Progress,
) -> Result<()> {
    let stores = selected.iter().map(|s| s.spec.clone()).collect();
    let outcome = safety_snapshot(destination, stores, &report.bundle_id, progress)
        .map_err(|e| snapshot_failed(e, destination))?;
    for (name, why) in outcome.manifest.damaged_stores() {
        if let Some(store) = report.stores.iter_mut().find(|s| s.name == name) {
            store.notes.push(format!(
                "the live store could not be captured normally ({why}); the safety snapshot keeps its exact bytes, recorded as damaged"
            ));
        }
    }
    report.safety_snapshot = Some(outcome.path);
    Ok(())
}

/// A safety snapshot that failed stops the restore before any write; the
/// error says so and how to go on.
fn snapshot_failed(e: Error, destination: &Path) -> Error {
    Error::Context {
        context: format!(
            "could not take the safety snapshot in {} ({}); nothing was restored; fix the cause, or restore with --no-safety-snapshot to go on without one",
            destination.display(),
            crate::bundle::locate::error_chain(&e)
        ),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn parked_keep_steps_are_put_back_as_they_were() {
        let root = PathBuf::from("/live/store");
        let odd = PathBuf::from(OsStr::from_bytes(b"/live/store/d/\xffname"));
        let steps = vec![
            Step::Remove {
                target: root.join("gone"),
            },
            Step::Keep {
                target: root.join("a/b.txt"),
            },
            Step::Keep { target: odd },
            Step::Write {
                paths: crate::plan::FilePaths::apart("/bundle/s/c".into(), root.join("c")),
                sha256: crate::hash::Sha256Digest::of(b"c"),
                jsonl: None,
                sqlite: None,
                owner: Default::default(),
            },
            // Not beneath the root, or the root itself: kept as it is.
            Step::Keep {
                target: PathBuf::from("/elsewhere/x"),
            },
            Step::Keep {
                target: root.clone(),
            },
            Step::Keep {
                target: root.join("z"),
            },
            Step::Keep {
                target: root.join("z2"),
            },
        ];
        let mut store = StoreReport {
            name: "s".into(),
            kind: crate::config::StoreKind::Dir,
            target: root.clone(),
            root: root.clone(),
            action: "replace".into(),
            counts: Default::default(),
            notes: Vec::new(),
            left_out: Vec::new(),
            check: None,
            steps: steps.clone(),
        };
        let parked = ParkedKeeps::park(&mut store);
        assert!(store.steps.is_empty());
        assert_eq!(parked.others.len(), 4);
        // Packed: each path as what it shares with the one before, and the rest.
        assert_eq!(
            parked.paths,
            b"\0\0\x07\0a/b.txt\0\0\x07\0d/\xffname\0\0\x01\0z\x01\0\x01\x002".to_vec()
        );
        parked.put_back(&mut store);
        let json = |s: &[Step]| format!("{s:?}");
        assert_eq!(json(&store.steps), json(&steps));
    }
}
