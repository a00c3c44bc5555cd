//! `bundle push`: copies local bundles to a remote.
//!
//! Per bundle: the manifest object first (it claims the id), then every
//! file, then the index, last. A file whose plaintext a complete remote
//! bundle already holds is copied on the server instead of uploaded, so a
//! push of unchanged stores moves little more than the index. Every file
//! read is hashed on the way up and must match the local manifest, so a
//! damaged local bundle is never pushed as good. A push that stops part-way
//! leaves a folder without an index; the next push checks what it finds
//! there by reading it back and uploads only the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::ListedBundle;
use crate::error::{Error, Result};
use crate::manifest::{FileRecord, Manifest, MANIFEST_SUM_FILE};
use crate::progress::Progress;
use crate::remote::layout::{
    self, file_object, RemoteIndex, StoredObject, INDEX, INDEX_FORMAT, MANIFEST_OBJECT, SUM_OBJECT,
};
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

/// A remote object holding a given plaintext, found in a complete bundle.
#[derive(Debug, Clone)]
struct Known {
    /// Its name below the remote's prefix.
    object: String,
    /// Its index entry.
    stored: StoredObject,
}

/// Plaintext (sha256, size) → an object of a complete remote bundle holding it.
type KnownFiles = HashMap<(String, u64), Known>;

/// Which local bundles a plain `bundle push` sends: those that pass the
/// quick check and are not complete on the remote, oldest first.
pub fn pending<'a>(local: &'a [ListedBundle], remote: &[RemoteBundle]) -> Vec<&'a ListedBundle> {
    local
        .iter()
        .filter(|b| crate::bundle::files_present(&b.path, &b.manifest).is_none())
        .filter(|b| !remote.iter().any(|r| r.id == b.id))
        .collect()
}

/// Pushes each of `bundles` (folders) to `remote`, whose current content is
/// `listing`, `jobs` files at once; one report per bundle, in order. A
/// bundle that fails does not stop the others.
pub fn push(
    remote: &Remote,
    listing: &RemoteListing,
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
    let mut known = known_files(&listing.bundles);
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
        let done = match listing.bundles.iter().find(|b| b.manifest.id == manifest.id) {
            Some(there) if there.manifest_bytes == manifest_bytes => {
                report.outcome = "already".into();
                report.bytes_stored = there.index.objects.iter().map(|o| o.bytes).sum();
                Ok(None)
            }
            Some(_) => Err(Error::Refused(format!(
                "bundle {} is already on remote \"{}\" with a different manifest; nothing was pushed for it",
                manifest.id, remote.spec.name
            ))),
            None => push_one(remote, bundle, &manifest, &manifest_bytes, &known, jobs, progress, &mut report)
                .map(Some),
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
    }
    Ok(reports)
}

/// What complete remote bundles already hold, by plaintext.
fn known_files(bundles: &[RemoteBundle]) -> KnownFiles {
    let mut known = KnownFiles::new();
    for b in bundles {
        learn(&mut known, &b.manifest, &b.index);
    }
    known
}

/// Adds the files of a complete bundle to `known`.
fn learn(known: &mut KnownFiles, manifest: &Manifest, index: &RemoteIndex) {
    for (n, file) in layout::files(manifest).enumerate() {
        let name = file_object(n);
        if let Some(stored) = index.object(&name) {
            known.insert(
                (file.sha256.clone(), file.bytes),
                Known {
                    object: format!("{}/{name}", manifest.id),
                    stored: stored.clone(),
                },
            );
        }
    }
}

/// Pushes one bundle; its index once written.
#[allow(clippy::too_many_arguments)]
fn push_one(
    remote: &Remote,
    bundle: &Path,
    manifest: &Manifest,
    manifest_bytes: &[u8],
    known: &KnownFiles,
    jobs: usize,
    progress: &dyn Progress,
    report: &mut Pushed,
) -> Result<RemoteIndex> {
    let id = &manifest.id;
    let level = remote.spec.zstd_level();
    let present = remote.engine.list(id)?;
    if present
        .iter()
        .any(|o| o.name == format!("{id}/{}", crate::remote::destination::DELETING))
    {
        return Err(Error::Refused(format!(
            "bundle {id} is being deleted from remote \"{}\" by a prune that did not finish; run `bundle prune --remote {} --apply` first",
            remote.spec.name, remote.spec.name
        )));
    }
    let mut objects = Vec::new();
    let up = |name: &str, bytes: &[u8]| -> Result<StoredObject> {
        let stored = remote
            .engine
            .upload(&format!("{id}/{name}"), bytes, level, jobs, progress)?;
        Ok(StoredObject {
            name: name.into(),
            bytes: stored.stored_bytes,
            sha256: stored.stored_sha256,
        })
    };
    objects.push(claim_manifest(remote, id, manifest_bytes, &present, up)?);
    let sum = std::fs::read(bundle.join(MANIFEST_SUM_FILE))
        .map_err(|e| Error::io("could not read", &bundle.join(MANIFEST_SUM_FILE), e))?;
    objects.push(up(SUM_OBJECT, &sum)?);
    let files: Vec<(usize, &FileRecord)> = layout::files(manifest).enumerate().collect();
    let total: u64 = files.iter().map(|(_, f)| f.bytes).sum();
    progress.start(&format!("pushing {id}"), Some(total));
    let present: std::collections::HashSet<String> = present.into_iter().map(|o| o.name).collect();
    let stored = crate::parallel::map(&files, jobs, |(n, file)| {
        let target = Target {
            bundle,
            id,
            level,
            present: &present,
        };
        push_file(remote, &target, *n, file, known, progress)
    });
    progress.finish();
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
        created_at: manifest.created_at.clone(),
        compression: "zstd".into(),
        objects,
    };
    let mut bytes = serde_json::to_vec_pretty(&index).expect("an index serializes");
    bytes.push(b'\n');
    remote.engine.put(&format!("{id}/{INDEX}"), bytes)?;
    Ok(index)
}

/// Stores the manifest object, or accepts the one an interrupted push of
/// this same bundle left; refuses one of another bundle under this id.
fn claim_manifest(
    remote: &Remote,
    id: &str,
    manifest_bytes: &[u8],
    present: &[crate::remote::engine::Listed],
    up: impl Fn(&str, &[u8]) -> Result<StoredObject>,
) -> Result<StoredObject> {
    let name = format!("{id}/{MANIFEST_OBJECT}");
    if let Some(listed) = present.iter().find(|o| o.name == name) {
        let stored = remote.engine.get(&name)?.unwrap_or_default();
        let plain = zstd::stream::decode_all(stored.as_slice()).unwrap_or_default();
        if plain != manifest_bytes {
            return Err(Error::Refused(format!(
                "remote \"{}\" holds an unfinished bundle {id} with a different manifest; nothing was pushed for it",
                remote.spec.name
            )));
        }
        return Ok(StoredObject {
            name: MANIFEST_OBJECT.into(),
            bytes: listed.bytes,
            sha256: crate::hash::sha256_hex(&stored),
        });
    }
    up(MANIFEST_OBJECT, manifest_bytes)
}

/// How a file reached the remote.
enum How {
    /// Read and uploaded (its plaintext bytes).
    Uploaded(u64),
    /// Copied on the server.
    Copied,
    /// Already stored by an interrupted push, read back and checked.
    Resumed,
}

/// The bundle being pushed, as its files need it.
struct Target<'a> {
    /// Its local folder.
    bundle: &'a Path,
    /// Its id.
    id: &'a str,
    /// zstd level.
    level: i32,
    /// Objects already in its remote folder (an interrupted push).
    present: &'a std::collections::HashSet<String>,
}

/// Stores file `n` of the bundle: copied on the server when a complete
/// bundle holds the same plaintext, kept when an interrupted push stored it
/// intact, else uploaded (its hash checked against the manifest).
fn push_file(
    remote: &Remote,
    target: &Target<'_>,
    n: usize,
    file: &FileRecord,
    known: &KnownFiles,
    progress: &dyn Progress,
) -> Result<(StoredObject, How)> {
    let name = file_object(n);
    let object = format!("{}/{name}", target.id);
    if let Some(k) = known.get(&(file.sha256.clone(), file.bytes)) {
        remote.engine.copy(&k.object, &object)?;
        progress.advance(file.bytes);
        let stored = StoredObject {
            name,
            ..k.stored.clone()
        };
        return Ok((stored, How::Copied));
    }
    if target.present.contains(&object) {
        if let Some(stored) = crate::remote::check::read_back(remote, &object, file)? {
            progress.advance(file.bytes);
            return Ok((StoredObject { name, ..stored }, How::Resumed));
        }
    }
    let rel = file
        .rel()
        .map_err(|e| Error::Refused(format!("unsafe path {} in the bundle: {e}", file.path)))?;
    let path = target.bundle.join(rel);
    let source = std::fs::File::open(&path).map_err(|e| Error::io("could not read", &path, e))?;
    let up = remote
        .engine
        .upload(&object, source, target.level, 1, progress)?;
    if up.plain_sha256 != file.sha256 || up.plain_bytes != file.bytes {
        return Err(Error::CheckFailed {
            store: file.path.split('/').next().unwrap_or("").to_string(),
            reason: format!(
                "{} does not match the bundle's manifest; the bundle was not pushed (run `bundle verify` on it)",
                file.path
            ),
        });
    }
    Ok((
        StoredObject {
            name,
            bytes: up.stored_bytes,
            sha256: up.stored_sha256,
        },
        How::Uploaded(up.plain_bytes),
    ))
}
