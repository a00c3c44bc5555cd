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
            let manifest = &bundle.manifest;
            let Ok(created_at) = manifest.created_at.parse() else {
                let why = format!("created_at \"{}\" is not a time", manifest.created_at);
                entries.push(Entry::Unparseable(folder, why));
                continue;
            };
            if let Some((store, why)) = manifest.failed_stores().first() {
                let problem = format!("store \"{store}\" failed when it was made: {why}");
                entries.push(Entry::Damaged(folder, problem));
                continue;
            }
            let listed: std::collections::HashMap<&str, u64> =
                objects.iter().map(|o| (o.name.as_str(), o.bytes)).collect();
            let missing =
                bundle.index.objects.iter().find(|o| {
                    listed.get(format!("{folder}/{}", o.name).as_str()) != Some(&o.bytes)
                });
            if let Some(o) = missing {
                let why = format!("object {} is missing or not its recorded size", o.name);
                entries.push(Entry::Damaged(folder, why));
                continue;
            }
            entries.push(Entry::Bundle {
                id: folder,
                created_at,
                safety: manifest.reason.as_deref() == Some(crate::manifest::PRE_RESTORE),
                healthy: manifest
                    .stores
                    .iter()
                    .filter(|s| crate::shrink::healthy_in(manifest, &s.name))
                    .map(|s| s.name.clone())
                    .collect(),
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
