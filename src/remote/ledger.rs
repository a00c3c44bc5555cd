//! What a destination pushed to an encrypted remote, kept beside its
//! bundles in `.remote-<name>.ledger` (mode 0600, one JSON line per object).
//!
//! A host that holds only public keys cannot read back what it stored.
//! This record is how it still recognizes its own bundles there (to resume
//! an interrupted push, or to see a bundle is already pushed) and which
//! stored objects hold which plaintext (to copy unchanged files on the
//! server), without any key. Each line names the recipients the object was
//! encrypted to (by fingerprint): objects are only ever reused for the same
//! recipients, so no equality leaks between remotes or key sets. Lines of
//! bundles no longer on the remote are dropped at the next push.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One object as pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// Its bundle.
    pub bundle: String,
    /// Its name in the bundle's folder (`m`, `s`, `f/<n>`).
    pub object: String,
    /// sha256 of the plaintext.
    pub plain_sha256: String,
    /// Plaintext size.
    pub plain_bytes: u64,
    /// sha256 of the stored bytes.
    pub stored_sha256: String,
    /// Stored size.
    pub stored_bytes: u64,
    /// Fingerprint of the recipients it was encrypted to.
    pub recipients: String,
}

/// The ledger of one remote in one destination.
pub struct Ledger {
    path: PathBuf,
    by_object: HashMap<(String, String), Pushed>,
    appends: Mutex<Option<std::fs::File>>,
}

impl Ledger {
    /// Reads the ledger of remote `name` in `destination`, keeping only the
    /// lines of bundles in `on_remote` (rewriting the file when some go).
    pub fn open(destination: &Path, name: &str, on_remote: &HashSet<String>) -> Result<Ledger> {
        let path = destination.join(format!(".remote-{name}.ledger"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("could not read", &path, e)),
        };
        let lines: Vec<Pushed> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let kept: Vec<&Pushed> = lines
            .iter()
            .filter(|p| on_remote.contains(&p.bundle))
            .collect();
        if kept.len() != lines.len() {
            rewrite(&path, &kept)?;
        }
        let by_object = kept
            .into_iter()
            .map(|p| ((p.bundle.clone(), p.object.clone()), p.clone()))
            .collect();
        Ok(Ledger {
            path,
            by_object,
            appends: Mutex::new(None),
        })
    }

    /// The ledger of encrypted `remote` in `destination`, keeping the lines
    /// of the bundles `listing` shows (complete or not).
    pub fn for_listing(
        remote: &crate::remote::Remote,
        listing: &crate::remote::RemoteListing,
        destination: &Path,
    ) -> Result<Ledger> {
        let on_remote: HashSet<String> = listing
            .bundles
            .iter()
            .map(|b| b.id.to_string())
            .chain(listing.incomplete.iter().map(|(id, _)| id.clone()))
            .collect();
        Ledger::open(destination, &remote.spec.name, &on_remote)
    }

    /// What was pushed as object `object` of `bundle`.
    pub fn get(&self, bundle: &str, object: &str) -> Option<&Pushed> {
        self.by_object
            .get(&(bundle.to_string(), object.to_string()))
    }

    /// Every object recorded.
    pub fn all(&self) -> impl Iterator<Item = &Pushed> {
        self.by_object.values()
    }

    /// Appends `pushed` (made durable by [`Ledger::sync`]).
    pub fn record(&self, pushed: &Pushed) -> Result<()> {
        let mut line = serde_json::to_vec(pushed).expect("a ledger line serializes");
        line.push(b'\n');
        let mut file = self.appends.lock().expect("ledger lock");
        if file.is_none() {
            *file = Some(open_append(&self.path)?);
        }
        file.as_mut()
            .expect("opened above")
            .write_all(&line)
            .map_err(|e| Error::io("could not write", &self.path, e))
    }

    /// Flushes what was recorded to disk.
    pub fn sync(&self) -> Result<()> {
        match self.appends.lock().expect("ledger lock").as_ref() {
            Some(file) => file
                .sync_all()
                .map_err(|e| Error::io("could not sync", &self.path, e)),
            None => Ok(()),
        }
    }
}

/// Opens the ledger for appending, creating it private.
fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("could not open", path, e))
}

/// Replaces the ledger with `lines` (written beside it, then renamed).
fn rewrite(path: &Path, lines: &[&Pushed]) -> Result<()> {
    let temp = path.with_extension("ledger.new");
    let mut text = Vec::new();
    for line in lines {
        text.extend(serde_json::to_vec(line).expect("a ledger line serializes"));
        text.push(b'\n');
    }
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| Error::io("could not create", &temp, e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("could not write", &temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| Error::io("could not replace", path, e))
}
