//! A remote as a [`Destination`], so `bundle prune --remote` runs the same
//! retention engine and rules as a local prune.
//!
//! Deleting a bundle first stores a `deleting` marker object, then deletes
//! the index (from then on the bundle is invisible), then every other
//! object, the marker last. A prune stopped part-way leaves a folder with
//! the marker, which the next `prune --apply` removes and `push` refuses to
//! finish. Complete but damaged bundles, and unfinished pushes, are never
//! counted as kept nor deleted: they are reported.

use crate::bundle::destination::{Destination, Entry};
use crate::bundle::BundleId;
use crate::error::Result;
use crate::remote::layout::INDEX;
use crate::remote::Remote;

/// The marker of a bundle a prune is deleting.
pub const DELETING: &str = "deleting";

/// A remote, as prune sees it.
pub struct RemoteDestination<'a> {
    /// The open remote.
    pub remote: &'a Remote,
}

impl Destination for RemoteDestination<'_> {
    fn lock_for_deleting(&self) -> Result<Box<dyn std::any::Any>> {
        // Object storage has no lock; see docs/remotes.md (one pruning host).
        Ok(Box::new(()))
    }

    fn scan(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for folder in self.remote.engine.folders()? {
            if BundleId::parse(&folder).is_none() {
                entries.push(Entry::Unparseable(
                    folder,
                    "the folder name is not a bundle id".into(),
                ));
                continue;
            }
            let objects = self.remote.engine.list(&folder)?;
            if objects
                .iter()
                .any(|o| o.name == format!("{folder}/{DELETING}"))
            {
                entries.push(Entry::Leftover(folder));
                continue;
            }
            let bundle = match self.remote.bundle(&folder)? {
                Ok(b) => b,
                Err(why) => {
                    entries.push(Entry::Damaged(folder, why));
                    continue;
                }
            };
            let Ok(created_at) = bundle.index.created_at.parse() else {
                let why = format!("created_at \"{}\" is not a time", bundle.index.created_at);
                entries.push(Entry::Unparseable(folder, why));
                continue;
            };
            let standing = match &bundle.opened {
                Some(opened) => Standing::of(&opened.manifest),
                None => Standing::from_index(&bundle.index),
            };
            if let Standing::Failed(problem) = standing {
                entries.push(Entry::Damaged(folder, problem));
                continue;
            }
            let listed: std::collections::HashMap<&str, u64> =
                objects.iter().map(|o| (o.name.as_str(), o.bytes)).collect();
            let missing = bundle
                .index
                .objects
                .iter()
                .find(|o| listed.get(bundle.index.path_of(&o.name).as_str()) != Some(&o.bytes));
            if let Some(o) = missing {
                let why = format!("object {} is missing or not its recorded size", o.name);
                entries.push(Entry::Damaged(folder, why));
                continue;
            }
            entries.push(Entry::Bundle {
                id: folder,
                created_at,
                safety: matches!(standing, Standing::SafetySnapshot),
                healthy: match standing {
                    Standing::Good(healthy) => healthy,
                    _ => Vec::new(),
                },
            });
        }
        Ok(entries)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let engine = &self.remote.engine;
        engine.put(&format!("{id}/{DELETING}"), Vec::new())?;
        engine.delete(&format!("{id}/{INDEX}"))?;
        self.remove_leftover(id)
    }

    fn remove_leftover(&self, name: &str) -> Result<()> {
        let engine = &self.remote.engine;
        let marker = format!("{name}/{DELETING}");
        for object in engine.list(name)? {
            if object.name != marker {
                engine.delete(&object.name)?;
            }
        }
        engine.delete(&marker)
    }
}

/// How a prune counts a remote bundle.
enum Standing {
    /// Counts as a good bundle, in which these stores were healthy.
    Good(Vec<String>),
    /// create flagged it suspicious: kept as evidence, never counted as good.
    Suspicious,
    /// Taken before a restore.
    SafetySnapshot,
    /// A store failed when it was made.
    Failed(String),
}

/// What a prune calls the stores of a bundle it cannot read (encrypted,
/// no key): one name for all, so that the newest good bundle is kept as
/// the last in which they were healthy.
pub const SEALED_STORES: &str = "(encrypted stores)";

impl Standing {
    /// From the manifest (every rule, per store).
    fn of(manifest: &crate::manifest::Manifest) -> Standing {
        if let Some((store, why)) = manifest.failed_stores().first() {
            return Standing::Failed(format!("store \"{store}\" failed when it was made: {why}"));
        }
        if manifest.reason.as_deref() == Some(crate::manifest::PRE_RESTORE) {
            return Standing::SafetySnapshot;
        }
        let healthy: Vec<String> = manifest
            .stores
            .iter()
            .filter(|s| crate::shrink::healthy_in(manifest, &s.name))
            .map(|s| s.name.clone())
            .collect();
        match manifest.suspicious {
            true => Standing::Suspicious,
            false => Standing::Good(healthy),
        }
    }

    /// From the index alone (an encrypted bundle read without a key).
    fn from_index(index: &crate::remote::layout::RemoteIndex) -> Standing {
        match index.standing.as_deref() {
            Some("safety-snapshot") => Standing::SafetySnapshot,
            Some("failed") => Standing::Failed("a store failed when it was made".into()),
            Some("good") => Standing::Good(vec![SEALED_STORES.into()]),
            // Unknown or absent: never counted as good.
            _ => Standing::Suspicious,
        }
    }
}
