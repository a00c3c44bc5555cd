//! Remotes: bundles kept offsite in object storage (S3 and compatible
//! servers, or a folder), pushed from and pulled into a local destination.
//! See docs/remotes.md for setup and failure modes, docs/format.md for the
//! layout.
//!
//! A remote bundle is complete once its index is written (it is written
//! last); one without it is invisible to `list`, `pull`, `restore` and
//! `prune`, and the next push finishes it.

pub mod check;
pub mod credentials;
pub mod crypt;
pub mod destination;
pub mod engine;
pub mod fetch;
pub mod known;
pub mod layout;
pub mod ledger;
pub mod pack;
pub mod pruned;
pub mod pull;
pub mod push;
pub mod reencrypt;
pub mod spec;
pub mod upload;

use crate::bundle::BundleId;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use engine::Engine;
use layout::{RemoteIndex, INDEX, MANIFEST_OBJECT};
use spec::RemoteSpec;

/// An open remote.
pub struct Remote {
    /// The engine that talks to it.
    pub engine: Engine,
    /// How it is configured.
    pub spec: RemoteSpec,
    /// The public keys new objects are encrypted to (none: plaintext).
    pub recipients: Vec<age::x25519::Recipient>,
    /// The secret keys that read encrypted bundles, when given.
    pub identity: Option<crypt::Identity>,
}

/// A bundle's manifest, read (and decrypted) from the remote.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The manifest.
    pub manifest: Manifest,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
}

/// A complete bundle on a remote.
#[derive(Debug, Clone)]
pub struct RemoteBundle {
    /// Its id.
    pub id: BundleId,
    /// Its index.
    pub index: RemoteIndex,
    /// Its manifest; `None` when the bundle is encrypted and the remote
    /// was opened without an identity, or with one that does not open it
    /// (the index alone is readable).
    pub opened: Option<Opened>,
    /// Why the identity given does not open it, when it does not.
    pub wrong_key: Option<String>,
}

impl RemoteBundle {
    /// Its manifest, or an error saying an identity is needed to read it.
    pub fn opened(&self, remote: &Remote) -> Result<&Opened> {
        if let Some(o) = &self.opened {
            return Ok(o);
        }
        if let Some(reason) = &self.wrong_key {
            return Err(Error::WrongKey {
                remote: remote.spec.name.clone(),
                bundle: self.id.to_string(),
                reason: reason.clone(),
            });
        }
        remote.identity(&self.id.to_string())?;
        Err(remote.error(format!("bundle {} could not be opened", self.id)))
    }
}

/// What a remote holds: complete bundles oldest first, and bundle folders
/// without an index (an unfinished push) or whose index or manifest cannot
/// be read, with why.
#[derive(Debug, Default)]
pub struct RemoteListing {
    /// Complete bundles, oldest first.
    pub bundles: Vec<RemoteBundle>,
    /// Other bundle-named folders, with why they are not bundles.
    pub incomplete: Vec<(String, String)>,
}

impl Remote {
    /// Opens remote `spec`, with `identity` to read encrypted bundles.
    pub fn open(spec: &RemoteSpec, identity: Option<crypt::Identity>) -> Result<Remote> {
        let recipients = match spec.encryption().map_err(Error::Usage)? {
            spec::Encryption::None => Vec::new(),
            spec::Encryption::Age(r) => r,
        };
        Ok(Remote {
            engine: Engine::open(spec)?,
            spec: spec.clone(),
            recipients,
            identity,
        })
    }

    /// The identity to read encrypted bundle `id` with, or an error saying
    /// how to give one.
    pub fn identity(&self, id: &str) -> Result<&crypt::Identity> {
        self.identity.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "bundle {id} on remote \"{}\" is encrypted: reading it needs the secret key, given with --identity FILE or BUNDLE_IDENTITY_FILE",
                self.spec.name
            ))
        })
    }

    /// An error about this remote.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Remote {
            remote: self.spec.name.clone(),
            reason: reason.into(),
        }
    }

    /// Lists the remote's bundles.
    pub fn list(&self) -> Result<RemoteListing> {
        let mut listing = RemoteListing::default();
        let mut ids: Vec<BundleId> = self
            .engine
            .folders()?
            .iter()
            .filter_map(|f| BundleId::parse(f))
            .collect();
        ids.sort();
        for id in ids {
            match self.bundle(&id.to_string())? {
                Ok(b) => listing.bundles.push(b),
                Err(why) => listing.incomplete.push((id.to_string(), why)),
            }
        }
        Ok(listing)
    }

    /// Bundle `id` when it is complete; `Ok(Err(why))` when it is not.
    pub fn bundle(&self, id: &str) -> Result<std::result::Result<RemoteBundle, String>> {
        let Some(id_parsed) = BundleId::parse(id) else {
            return Ok(Err(format!("{id:?} is not a bundle id")));
        };
        let Some(bytes) = self.engine.get(&format!("{id}/{INDEX}"))? else {
            return Ok(Err(
                "no index: an unfinished push (the next push finishes it)".into(),
            ));
        };
        let index = match RemoteIndex::parse(&bytes) {
            Ok(i) => i,
            Err(why) => return Ok(Err(why)),
        };
        if index.bundle_id != id {
            return Ok(Err(format!("its index names bundle {}", index.bundle_id)));
        }
        if index.encrypted() && self.identity.is_none() {
            return Ok(Ok(RemoteBundle {
                id: id_parsed,
                index,
                opened: None,
                wrong_key: None,
            }));
        }
        let bytes = match fetch::small_object(self, &index, MANIFEST_OBJECT) {
            Ok(Ok(b)) => b,
            Ok(Err(why)) => return Ok(Err(why)),
            // Encrypted to other keys: listed from its index alone.
            Err(Error::WrongKey { reason, .. }) => {
                return Ok(Ok(RemoteBundle {
                    id: id_parsed,
                    index,
                    opened: None,
                    wrong_key: Some(reason),
                }))
            }
            Err(e) => return Err(e),
        };
        let manifest = match Manifest::parse(&bytes) {
            Ok(m) if m.id == id => m,
            Ok(m) => return Ok(Err(format!("its manifest names bundle {}", m.id))),
            Err(why) => return Ok(Err(format!("manifest: {why}"))),
        };
        Ok(Ok(RemoteBundle {
            id: id_parsed,
            index,
            opened: Some(Opened { manifest, bytes }),
            wrong_key: None,
        }))
    }
}

/// The remote `name` of `config`, or its only remote when no name is given.
pub fn choose<'a>(config: &'a crate::config::Config, name: Option<&str>) -> Result<&'a RemoteSpec> {
    match name {
        Some(name) => config.remote(name),
        None => match config.remotes.as_slice() {
            [only] => Ok(only),
            [] => Err(Error::Usage(
                "no remote configured: add a [[remotes]] entry to bundle.toml (docs/remotes.md)"
                    .into(),
            )),
            many => Err(Error::Usage(format!(
                "several remotes are configured ({}); say which with --remote NAME",
                many.iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// A `<BUNDLE>` argument on a remote: an id, or `latest` (the newest complete bundle).
pub fn resolve_id(remote: &Remote, arg: &str) -> Result<String> {
    if arg != "latest" {
        return match BundleId::parse(arg) {
            Some(_) => Ok(arg.to_string()),
            None => Err(Error::Usage(format!(
                "{arg:?} is not a bundle id (on a remote, give an id or `latest`)"
            ))),
        };
    }
    remote
        .list()?
        .bundles
        .last()
        .map(|b| b.id.to_string())
        .ok_or_else(|| {
            Error::Usage(format!(
                "remote \"{}\" holds no complete bundle",
                remote.spec.name
            ))
        })
}

/// `bundle prune --remote`: the retention policy applied to `remote` (a dry
/// run unless `apply`), by the same engine as a local prune. What it
/// deletes is remembered in `destination` ([`pruned`]).
pub fn prune(
    remote: &Remote,
    policy: &crate::retention::Policy,
    now: jiff::Timestamp,
    apply: bool,
    destination: Option<&std::path::Path>,
) -> Result<crate::prune::PruneReport> {
    if policy.has_no_rules() {
        return Err(Error::Usage(format!(
            "no retention policy for remote \"{}\": pass --keep-... flags, or add [remotes.retention] or [retention] to bundle.toml",
            remote.spec.name
        )));
    }
    let opts = crate::prune::PruneOptions {
        destination: std::path::PathBuf::new(),
        policy: policy.clone(),
        now,
        apply,
    };
    let report = crate::prune::prune_in(&destination::RemoteDestination { remote }, &opts)?;
    if let (true, Some(destination)) = (apply, destination) {
        // A leftover is a bundle an earlier prune was deleting.
        let gone: Vec<String> = report
            .deleted
            .iter()
            .chain(&report.leftovers)
            .filter(|id| BundleId::parse(id).is_some())
            .cloned()
            .collect();
        pruned::remember(destination, &remote.spec.name, &gone)?;
    }
    Ok(report)
}
