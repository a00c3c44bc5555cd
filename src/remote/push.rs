//! `bundle push`: copies local bundles to a remote.
//!
//! Per bundle: the manifest object first (it claims the id), then every
//! file, then the index, last. A file whose plaintext a complete remote
//! bundle already holds is copied on the server instead of uploaded, so a
//! push of unchanged stores moves little more than the index. Every file
//! read is hashed on the way up and must match the local manifest, so a
//! damaged local bundle is never pushed as good. A push that stops part-way
//! leaves a folder without an index; the next push checks what it finds
//! there and uploads only the rest. On an encrypted remote every object is
//! encrypted to the remote's recipients, and what the push knows of the
//! remote comes from the destination's ledger ([`crate::remote::known`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::ListedBundle;
use crate::error::{Error, Result};
use crate::manifest::{FileRecord, Manifest, MANIFEST_SUM_FILE};
use crate::progress::Progress;
use crate::remote::known::{learn, KnownFiles, Recall};
use crate::remote::layout::{
    self, file_object, RemoteIndex, StoredObject, ENCRYPTION_AGE, ENCRYPTION_NONE, INDEX,
    INDEX_FORMAT, MANIFEST_OBJECT, SUM_OBJECT,
};
use crate::remote::ledger::{self, Ledger};
use crate::remote::pack::Uploaded;
use crate::remote::{Remote, RemoteBundle, RemoteListing};

/// What pushing one bundle did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The bundle id.
    pub id: String,
    /// `pushed`, `already` (complete on the remote with the same manifest)
    /// or `failed`.
    pub outcome: String,
    /// Files uploaded.
    pub uploaded: u64,
    /// Files copied on the server from a bundle already there.
    pub copied: u64,
    /// Files an earlier, interrupted push had already stored.
    pub resumed: u64,
    /// Plaintext bytes read and uploaded.
    pub bytes_uploaded: u64,
    /// Bytes the remote now stores for this bundle.
    pub bytes_stored: u64,
    /// Why it failed (`outcome` `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which local bundles a plain `bundle push` sends: those that pass the
/// quick check, are not complete on the remote, and were not `pruned` from
/// it, oldest first.
pub fn pending<'a>(
    local: &'a [ListedBundle],
    remote: &[RemoteBundle],
    pruned: &HashSet<String>,
) -> Vec<&'a ListedBundle> {
    local
        .iter()
        .filter(|b| crate::bundle::files_present(&b.path, &b.manifest).is_none())
        .filter(|b| !remote.iter().any(|r| r.id == b.id))
        .filter(|b| !pruned.contains(&b.id.to_string()))
        .collect()
}

/// Pushes each of `bundles` (folders) to `remote`, whose current content is
/// `listing`, `jobs` files at once; one report per bundle, in order. A
/// bundle that fails does not stop the others. An encrypted remote's
/// ledger lives in `destination`.
pub fn push(
    remote: &Remote,
    listing: &RemoteListing,
    destination: &Path,
    bundles: &[PathBuf],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Pushed>> {
    // What a killed push left would otherwise sit on the server, billed.
    let unfinished: Vec<String> = listing
        .incomplete
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    remote.engine.abort_abandoned_uploads(&unfinished)?;
    let ledger = match remote.recipients.is_empty() {
        true => None,
        false => Some(Ledger::for_listing(remote, listing, destination)?),
    };
    let pusher = Pusher {
        recall: Recall {
            remote,
            ledger: ledger.as_ref(),
            fingerprint: crate::remote::crypt::fingerprint(&remote.recipients),
        },
        jobs,
        progress,
    };
    let mut known = pusher.recall.known_files(listing);
    let mut reports = Vec::new();
    for bundle in bundles {
        let (manifest, manifest_bytes) =
            Manifest::read_with_bytes(&bundle.join(crate::manifest::MANIFEST_FILE))?;
        let mut report = Pushed {
            id: manifest.id.clone(),
            outcome: "pushed".into(),
            uploaded: 0,
            copied: 0,
            resumed: 0,
            bytes_uploaded: 0,
            bytes_stored: 0,
            error: None,
        };
        let there = listing
            .bundles
            .iter()
            .find(|b| b.id.to_string() == manifest.id);
        let done = match there {
            Some(there) => pusher.already(there, &manifest_bytes, &mut report),
            None => {
                let local = Local {
                    folder: bundle,
                    manifest: &manifest,
                    manifest_bytes: &manifest_bytes,
                };
                pusher.push_one(&local, &known, &mut report).map(Some)
            }
        };
        match done {
            Ok(Some(index)) => learn(&mut known, &manifest, &index),
            Ok(None) => {}
            // The remote itself failing stops the push; a bad bundle does not.
            Err(e @ Error::Remote { .. }) => return Err(e),
            Err(e) => {
                report.outcome = "failed".into();
                report.error = Some(crate::bundle::locate::error_chain(&e));
            }
        }
        reports.push(report);
        if let Some(ledger) = &ledger {
            ledger.sync()?;
        }
    }
    Ok(reports)
}

/// One push's settings and knowledge.
struct Pusher<'a> {
    recall: Recall<'a>,
    jobs: usize,
    progress: &'a dyn Progress,
}

/// The local bundle being pushed.
struct Local<'a> {
    folder: &'a Path,
    manifest: &'a Manifest,
    manifest_bytes: &'a [u8],
}

impl Pusher<'_> {
    /// The remote.
    fn remote(&self) -> &Remote {
        self.recall.remote
    }

    /// A bundle whose id the remote already holds complete: `already` when
    /// it is this bundle, else refused.
    fn already(
        &self,
        there: &RemoteBundle,
        manifest_bytes: &[u8],
        report: &mut Pushed,
    ) -> Result<Option<RemoteIndex>> {
        if self.recall.is_same_bundle(there, manifest_bytes) {
            report.outcome = "already".into();
            report.bytes_stored = there.index.objects.iter().map(|o| o.bytes).sum();
            return Ok(None);
        }
        let how = match there.opened {
            Some(_) => "with a different manifest",
            None => "and this destination has no record of pushing it (it is encrypted, so it cannot be compared without a key)",
        };
        Err(Error::Refused(format!(
            "bundle {} is already on remote \"{}\" {how}; nothing was pushed for it",
            there.id,
            self.remote().spec.name
        )))
    }

    /// Records an object of this push in the ledger (encrypted remotes).
    fn record(
        &self,
        id: &str,
        name: &str,
        plain: (&str, u64),
        stored: &StoredObject,
    ) -> Result<()> {
        let Some(ledger) = self.recall.ledger else {
            return Ok(());
        };
        ledger.record(&ledger::Pushed {
            bundle: id.into(),
            object: name.into(),
            plain_sha256: plain.0.into(),
            plain_bytes: plain.1,
            stored_sha256: stored.sha256.clone(),
            stored_bytes: stored.bytes,
            recipients: self.recall.fingerprint.clone(),
        })
    }

    /// Uploads `source` as object `name` of bundle `id`.
    fn upload(
        &self,
        id: &str,
        name: &str,
        source: impl std::io::Read,
    ) -> Result<(StoredObject, Uploaded)> {
        let remote = self.remote();
        let up = remote.engine.upload(
            &format!("{id}/{name}"),
            source,
            remote.spec.zstd_level(),
            1,
            &remote.recipients,
            self.progress,
        )?;
        let stored = StoredObject {
            name: name.into(),
            bytes: up.stored_bytes,
            sha256: up.stored_sha256.clone(),
        };
        self.record(id, name, (&up.plain_sha256, up.plain_bytes), &stored)?;
        Ok((stored, up))
    }

    /// A small object (`m`, `s`): kept when an interrupted push of this
    /// bundle stored exactly it, else uploaded.
    fn small(
        &self,
        id: &str,
        name: &str,
        plain: &[u8],
        present: &HashSet<String>,
    ) -> Result<Option<StoredObject>> {
        if present.contains(&format!("{id}/{name}")) {
            return self.recall.resumed_small(id, name, plain);
        }
        Ok(Some(self.upload(id, name, plain)?.0))
    }

    /// Pushes one bundle; its index once written.
    fn push_one(
        &self,
        local: &Local<'_>,
        known: &KnownFiles,
        report: &mut Pushed,
    ) -> Result<RemoteIndex> {
        let remote = self.remote();
        let id = &local.manifest.id;
        let present: HashSet<String> = remote
            .engine
            .list(id)?
            .into_iter()
            .map(|o| o.name)
            .collect();
        if present.contains(&format!("{id}/{}", crate::remote::destination::DELETING)) {
            return Err(Error::Refused(format!(
                "bundle {id} is being deleted from remote \"{}\" by a prune that did not finish; run `bundle prune --remote {} --apply` first",
                remote.spec.name, remote.spec.name
            )));
        }
        let mut objects = Vec::new();
        // The manifest claims the id: one of another bundle is refused.
        let Some(claimed) = self.small(id, MANIFEST_OBJECT, local.manifest_bytes, &present)? else {
            return Err(Error::Refused(format!(
                "remote \"{}\" holds an unfinished bundle {id} with a different manifest (or, encrypted, one this destination has no record of pushing); nothing was pushed for it",
                remote.spec.name
            )));
        };
        objects.push(claimed);
        let sum_path = local.folder.join(MANIFEST_SUM_FILE);
        let sum =
            std::fs::read(&sum_path).map_err(|e| Error::io("could not read", &sum_path, e))?;
        let stored_sum = match self.small(id, SUM_OBJECT, &sum, &present)? {
            Some(s) => s,
            None => self.upload(id, SUM_OBJECT, sum.as_slice())?.0,
        };
        objects.push(stored_sum);
        let files: Vec<(usize, &FileRecord)> = layout::files(local.manifest).enumerate().collect();
        let total: u64 = files.iter().map(|(_, f)| f.bytes).sum();
        self.progress.start(&format!("pushing {id}"), Some(total));
        let stored = crate::parallel::map(&files, self.jobs, |(n, file)| {
            self.push_file(local, *n, file, known, &present)
        });
        self.progress.finish();
        for (object, how) in stored? {
            match how {
                How::Uploaded(bytes) => {
                    report.uploaded += 1;
                    report.bytes_uploaded += bytes;
                }
                How::Copied => report.copied += 1,
                How::Resumed => report.resumed += 1,
            }
            objects.push(object);
        }
        report.bytes_stored = objects.iter().map(|o| o.bytes).sum();
        let index = RemoteIndex {
            format: INDEX_FORMAT.into(),
            version: 1,
            bundle_id: id.clone(),
            created_at: local.manifest.created_at.clone(),
            compression: "zstd".into(),
            encryption: match remote.recipients.is_empty() {
                true => ENCRYPTION_NONE.into(),
                false => ENCRYPTION_AGE.into(),
            },
            standing: Some(layout::standing(local.manifest).into()),
            generation: None,
            objects,
        };
        let mut bytes = serde_json::to_vec_pretty(&index).expect("an index serializes");
        bytes.push(b'\n');
        remote.engine.put(&format!("{id}/{INDEX}"), bytes)?;
        Ok(index)
    }

    /// Stores file `n` of the bundle: copied on the server when a complete
    /// bundle holds the same plaintext, kept when an interrupted push stored
    /// it intact, else uploaded (its hash checked against the manifest).
    fn push_file(
        &self,
        local: &Local<'_>,
        n: usize,
        file: &FileRecord,
        known: &KnownFiles,
        present: &HashSet<String>,
    ) -> Result<(StoredObject, How)> {
        let id = &local.manifest.id;
        let name = file_object(n);
        let object = format!("{id}/{name}");
        let sha256 = file.sha256.to_string();
        if let Some(k) = known.get(&(sha256.clone(), file.bytes)) {
            self.remote().engine.copy(&k.object, &object)?;
            self.progress.advance(file.bytes);
            let stored = StoredObject {
                name: name.clone(),
                ..k.stored.clone()
            };
            self.record(id, &name, (&sha256, file.bytes), &stored)?;
            return Ok((stored, How::Copied));
        }
        if present.contains(&object) {
            if let Some(stored) = self.recall.resumed_file(id, &name, file)? {
                self.progress.advance(file.bytes);
                return Ok((stored, How::Resumed));
            }
        }
        let rel = file
            .rel()
            .map_err(|e| Error::Refused(format!("unsafe path {} in the bundle: {e}", file.path)))?;
        let path = local.folder.join(rel);
        let source =
            std::fs::File::open(&path).map_err(|e| Error::io("could not read", &path, e))?;
        let (stored, up) = self.upload(id, &name, source)?;
        if up.plain_sha256 != sha256 || up.plain_bytes != file.bytes {
            return Err(Error::CheckFailed {
                store: file.path.split('/').next().unwrap_or("").to_string(),
                reason: format!(
                    "{} does not match the bundle's manifest; the bundle was not pushed (run `bundle verify` on it)",
                    file.path
                ),
            });
        }
        Ok((stored, How::Uploaded(up.plain_bytes)))
    }
}

/// How a file reached the remote.
enum How {
    /// Read and uploaded (its plaintext bytes).
    Uploaded(u64),
    /// Copied on the server.
    Copied,
    /// Already stored by an interrupted push, checked.
    Resumed,
}
