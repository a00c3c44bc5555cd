//! Defence in depth for restore and drill: the thread that applies a plan
//! first confines itself with Landlock, so that even a path bug could write
//! only beneath the folders it was asked to restore into (the stores'
//! folders, the destination, the scratch folder). Reads stay allowed
//! everywhere.
//!
//! Landlock confines the calling thread and the threads it starts, not the
//! process: the apply runs on a thread of its own, so the hooks that run
//! before and after it (on the main thread) are not confined. A kernel
//! without Landlock leaves the restore unconfined; the report says which.

use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};
use serde::Serialize;

/// Whether the applying thread was confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// Every requested restriction is in force.
    Enforced,
    /// The kernel supports only part of the restrictions (an older Landlock).
    Partial,
    /// No restriction is in force (no Landlock in this kernel, or it is off).
    Unavailable,
}

impl Sandbox {
    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Sandbox::Enforced => "landlock enforced: writes confined to the targets",
            Sandbox::Partial => {
                "landlock partly enforced (older kernel): writes confined to the targets"
            }
            Sandbox::Unavailable => {
                "not available (no Landlock in this kernel): writes not confined by the kernel"
            }
        }
    }
}

/// The Landlock version whose rights are asked for (best effort below it).
const WANTED: ABI = ABI::V5;

/// Runs `f` on a new thread confined to writing beneath `writable` (each
/// must exist), passing it whether the confinement is in force.
pub fn confined<T: Send>(writable: &[PathBuf], f: impl FnOnce(Sandbox) -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| f(confine_this_thread(writable)))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What confinement this kernel gives (probed on a throwaway thread).
pub fn probe() -> Sandbox {
    confined(&[], |s| s)
}

/// Confines the calling thread; never fails (a missing sandbox is reported).
fn confine_this_thread(writable: &[PathBuf]) -> Sandbox {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(WANTED))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(WANTED))))
        .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(WANTED))))
        .and_then(|r| r.restrict_self());
    match status.map(|s| s.ruleset) {
        Ok(RulesetStatus::FullyEnforced) => Sandbox::Enforced,
        Ok(RulesetStatus::PartiallyEnforced) => Sandbox::Partial,
        _ => Sandbox::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_thread_writes_only_beneath_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let (sandbox, wrote_inside, wrote_outside) = confined(std::slice::from_ref(&inside), |s| {
            (
                s,
                std::fs::write(inside.join("a"), "x").is_ok(),
                std::fs::write(outside.join("b"), "x").is_ok(),
            )
        });
        assert!(wrote_inside);
        if sandbox == Sandbox::Unavailable {
            eprintln!("\n!!!!!!!! SKIPPED: no Landlock in this kernel; confinement not exercised !!!!!!!!\n");
            return;
        }
        assert!(!wrote_outside, "{sandbox:?}");
        // The calling thread itself is not confined.
        std::fs::write(outside.join("c"), "x").unwrap();
    }
}
