//! `bundle prune`: delete the bundles a retention policy no longer keeps.
//!
//! Dry run by default. What is never deleted, whatever the policy: the newest
//! bundle that passes the quick check, young pre-restore safety bundles,
//! damaged bundles (reported, and they fill no keep slot), folders whose name
//! or manifest cannot be parsed, and anything that is not a bundle folder.
//!
//! A bundle is deleted by first renaming it to a hidden `.deleting-<id>`
//! folder (the commit point) and then removing that; a crash in between leaves
//! only a hidden folder, never a half bundle that looks whole. Such folders,
//! and staging folders of crashed creates older than an hour, are removed by
//! the next `prune --apply`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::bundle::destination::{Destination, Entry, LocalFolder};
use crate::error::{Error, Result};
use crate::retention::{self, Candidate, Policy, Reason};

pub use crate::bundle::staging::DELETING_PREFIX;

pub use crate::bundle::destination::STAGING_MIN_AGE;

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Folder holding the bundles.
    pub destination: PathBuf,
    /// The retention policy (must set at least one rule).
    pub policy: Policy,
    /// The time the policy is evaluated at.
    pub now: Timestamp,
    /// Delete; otherwise only report.
    pub apply: bool,
}

/// A bundle that is kept, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeptBundle {
    /// The bundle id.
    pub id: String,
    /// Every rule that keeps it.
    pub reasons: Vec<Reason>,
    /// The stores whose last healthy bundle it is (reason `last-healthy`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_healthy: Vec<String>,
}

/// What prune found and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// True when nothing was deleted because `--apply` was not given.
    pub dry_run: bool,
    /// Bundles kept, newest first.
    pub kept: Vec<KeptBundle>,
    /// Bundles deleted (or, in a dry run, that would be), newest first.
    pub deleted: Vec<String>,
    /// Bundles failing the quick check: left in place, keeping no slot.
    pub damaged: Vec<String>,
    /// Folders whose name or manifest cannot be parsed: left in place.
    pub unparseable: Vec<String>,
    /// Hidden leftovers of crashed creates and deletes removed (or that would be).
    pub leftovers: Vec<String>,
    /// Why each damaged or unparseable folder is so.
    pub problems: BTreeMap<String, String>,
}

/// Applies (or, by default, reports) the retention policy in a destination.
pub fn prune(opts: &PruneOptions) -> Result<PruneReport> {
    if opts.policy.has_no_rules() {
        return Err(Error::Usage(
            "no retention policy: pass --keep-last N, --keep-within DURATION, --keep-daily N, --keep-weekly N or --keep-monthly N, or add a [retention] table to bundle.toml"
                .into(),
        ));
    }
    prune_in(&LocalFolder::open(&opts.destination)?, opts)
}

/// [`prune`] on any destination.
pub fn prune_in(destination: &dyn Destination, opts: &PruneOptions) -> Result<PruneReport> {
    // Deleting needs the destination to itself: no create or restore running.
    let _lock = match opts.apply {
        true => Some(destination.lock_for_deleting()?),
        false => None,
    };
    let mut report = PruneReport {
        dry_run: !opts.apply,
        kept: Vec::new(),
        deleted: Vec::new(),
        damaged: Vec::new(),
        unparseable: Vec::new(),
        leftovers: Vec::new(),
        problems: BTreeMap::new(),
    };
    let mut candidates = Vec::new();
    for entry in destination.scan()? {
        match entry {
            Entry::Bundle {
                id,
                created_at,
                safety,
                healthy,
            } => candidates.push(Candidate {
                id,
                created_at,
                safety,
                healthy,
            }),
            Entry::Damaged(id, why) => {
                report.problems.insert(id.clone(), why);
                report.damaged.push(id);
            }
            Entry::Unparseable(name, why) => {
                report.problems.insert(name.clone(), why);
                report.unparseable.push(name);
            }
            Entry::Leftover(name) => report.leftovers.push(name),
        }
    }
    report.damaged.sort();
    report.unparseable.sort();
    report.leftovers.sort();
    for decision in retention::decide(&candidates, &opts.policy, opts.now) {
        if decision.keep() {
            report.kept.push(KeptBundle {
                id: decision.id,
                reasons: decision.reasons,
                last_healthy: decision.last_healthy,
            });
        } else {
            report.deleted.push(decision.id);
        }
    }
    if opts.apply {
        for name in &report.leftovers {
            destination.remove_leftover(name)?;
        }
        for id in &report.deleted {
            destination.delete(id)?;
        }
    }
    Ok(report)
}
