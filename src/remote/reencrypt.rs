//! `bundle push --reencrypt`: rewrites a remote's bundles to its current
//! recipients (after a key was added, replaced or revoked; or to encrypt
//! bundles pushed in plaintext before).
//!
//! A bundle is current when the destination's ledger records each of its
//! objects as encrypted to the current recipients, with the stored hash its
//! index gives. Any other is rewritten: every object is read (its stored
//! bytes checked against the index, decrypted with the identity,
//! decompressed), and its plaintext is checked against the manifest and
//! packed anew into the next generation folder `<id>/g<N>/`. Then the new
//! index replaces the old one in one write, and only then is the old
//! generation deleted. A kill before the index is written leaves the old
//! bundle whole (the next run removes the half-written generation); after
//! it, the new one (the next run removes the old objects).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::progress::Progress;
use crate::remote::fetch::with_plaintext;
use crate::remote::layout::{self, RemoteIndex, StoredObject, ENCRYPTION_AGE, INDEX};
use crate::remote::ledger::{self, Ledger};
use crate::remote::push::Pushed;
use crate::remote::{Remote, RemoteBundle};

/// Whether `bundle` is recorded as encrypted to the recipients of `fingerprint`.
pub fn is_current(bundle: &RemoteBundle, ledger: &Ledger, fingerprint: &str) -> bool {
    let id = bundle.id.to_string();
    bundle.index.encrypted()
        && bundle.index.objects.iter().all(|o| {
            ledger.get(&id, &o.name).is_some_and(|p| {
                p.recipients == fingerprint
                    && p.stored_sha256 == o.sha256
                    && p.stored_bytes == o.bytes
            })
        })
}

/// Rewrites `bundle` to the remote's current recipients; its report.
pub fn reencrypt(
    remote: &Remote,
    bundle: &RemoteBundle,
    ledger: &Ledger,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let id = bundle.id.to_string();
    let opened = bundle.opened(remote)?;
    let old = &bundle.index;
    let generation = old.generation.map_or(1, |g| g + 1);
    let new_index = RemoteIndex {
        encryption: ENCRYPTION_AGE.into(),
        generation: Some(generation),
        objects: Vec::new(),
        ..old.clone()
    };
    let folder = format!("{id}/g{generation}");
    // What an interrupted rewrite to this generation left.
    for stray in remote.engine.list(&folder)? {
        remote.engine.delete(&stray.name)?;
    }
    let files: Vec<&FileRecord> = layout::files(&opened.manifest).collect();
    progress.start(
        &format!("re-encrypting {id}"),
        Some(files.iter().map(|f| f.bytes).sum()),
    );
    let rewritten = crate::parallel::map(&old.objects, jobs, |entry| {
        rewrite_object(
            remote,
            old,
            &new_index,
            entry,
            expected_plaintext(opened, &files, &entry.name),
            progress,
        )
    });
    progress.finish();
    let objects = match rewritten {
        Ok(objects) => objects,
        Err(e) => {
            for stray in remote.engine.list(&folder)? {
                remote.engine.delete(&stray.name)?;
            }
            return Err(e);
        }
    };
    let index = RemoteIndex {
        objects: objects.iter().map(|(o, _)| o.clone()).collect(),
        ..new_index
    };
    let mut bytes = serde_json::to_vec_pretty(&index).expect("an index serializes");
    bytes.push(b'\n');
    remote.engine.put(&format!("{id}/{INDEX}"), bytes)?;
    record(
        ledger,
        &id,
        &objects,
        &crate::remote::crypt::fingerprint(&remote.recipients),
    )?;
    remove_old_generations(remote, &index)?;
    Ok(Pushed {
        id,
        outcome: "reencrypted".into(),
        uploaded: objects.len() as u64,
        copied: 0,
        resumed: 0,
        bytes_uploaded: objects.iter().map(|(_, p)| p.1).sum(),
        bytes_stored: index.objects.iter().map(|o| o.bytes).sum(),
        error: None,
    })
}

/// The plaintext (sha256, size) object `name` must hold, when the manifest says.
fn expected_plaintext(
    opened: &crate::remote::Opened,
    files: &[&FileRecord],
    name: &str,
) -> Option<(String, u64)> {
    match name {
        layout::MANIFEST_OBJECT => Some((
            crate::hash::sha256_hex(&opened.bytes),
            opened.bytes.len() as u64,
        )),
        _ => name
            .strip_prefix("f/")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| files.get(n))
            .map(|f| (f.sha256.to_string(), f.bytes)),
    }
}

/// Records the rewritten `objects` of bundle `id` in the ledger.
fn record(
    ledger: &Ledger,
    id: &str,
    objects: &[(StoredObject, (String, u64))],
    fingerprint: &str,
) -> Result<()> {
    for (object, plain) in objects {
        ledger.record(&ledger::Pushed {
            bundle: id.to_string(),
            object: object.name.clone(),
            plain_sha256: plain.0.clone(),
            plain_bytes: plain.1,
            stored_sha256: object.sha256.clone(),
            stored_bytes: object.bytes,
            recipients: fingerprint.to_string(),
        })?;
    }
    ledger.sync()
}

/// Object `entry` of bundle `old`, packed anew at its place in `new`
/// (checked against its plaintext `expected` when known); its entry and
/// plaintext (sha256, size).
fn rewrite_object(
    remote: &Remote,
    old: &RemoteIndex,
    new: &RemoteIndex,
    entry: &StoredObject,
    expected: Option<(String, u64)>,
    progress: &dyn Progress,
) -> Result<(StoredObject, (String, u64))> {
    let target = new.path_of(&entry.name);
    let uploaded = with_plaintext(remote, old, &entry.name, |plain| {
        remote.engine.upload(
            &target,
            plain,
            remote.spec.zstd_level(),
            1,
            &remote.recipients,
            progress,
        )
    })?;
    let refused = |why: String| {
        Error::Refused(format!(
            "bundle {} on remote \"{}\" was not re-encrypted: {why}; it is unchanged",
            old.bundle_id, remote.spec.name
        ))
    };
    let up = uploaded.map_err(refused)?;
    if let Some((sha, bytes)) = expected {
        if up.plain_sha256 != sha || up.plain_bytes != bytes {
            return Err(refused(format!(
                "object {} does not hold what the manifest records",
                entry.name
            )));
        }
    }
    Ok((
        StoredObject {
            name: entry.name.clone(),
            bytes: up.stored_bytes,
            sha256: up.stored_sha256,
        },
        (up.plain_sha256, up.plain_bytes),
    ))
}

/// Deletes the objects of bundle `index` that its index no longer names.
pub fn remove_old_generations(remote: &Remote, index: &RemoteIndex) -> Result<()> {
    let id = &index.bundle_id;
    let keep: HashSet<String> = index
        .objects
        .iter()
        .map(|o| index.path_of(&o.name))
        .chain([format!("{id}/{INDEX}")])
        .collect();
    for object in remote.engine.list(id)? {
        if !keep.contains(&object.name) {
            remote.engine.delete(&object.name)?;
        }
    }
    Ok(())
}

/// Refuses a `--reencrypt` that cannot work: no recipients, or no identity.
pub fn ready(remote: &Remote) -> Result<()> {
    if remote.recipients.is_empty() {
        return Err(Error::Usage(format!(
            "remote \"{}\" has encryption = \"none\": --reencrypt needs encryption = \"age\" and recipients",
            remote.spec.name
        )));
    }
    if remote.identity.is_none() {
        return Err(Error::Usage(format!(
            "--reencrypt reads the bundles of remote \"{}\" back: give the identity that can read them with --identity FILE or BUNDLE_IDENTITY_FILE",
            remote.spec.name
        )));
    }
    Ok(())
}

/// Rewrites every complete bundle of `listing` that is not current; one
/// report per rewritten bundle. Needs `encryption = "age"` and an identity.
pub fn reencrypt_all(
    remote: &Remote,
    listing: &crate::remote::RemoteListing,
    destination: &std::path::Path,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Pushed>> {
    ready(remote)?;
    let ledger = Ledger::for_listing(remote, listing, destination)?;
    let fingerprint = crate::remote::crypt::fingerprint(&remote.recipients);
    let mut reports = Vec::new();
    for bundle in &listing.bundles {
        if is_current(bundle, &ledger, &fingerprint) {
            if bundle.index.generation.is_some() {
                remove_old_generations(remote, &bundle.index)?;
            }
            continue;
        }
        match reencrypt(remote, bundle, &ledger, jobs, progress) {
            Ok(report) => reports.push(report),
            Err(e @ Error::Remote { .. }) => return Err(e),
            Err(e) => reports.push(Pushed {
                id: bundle.id.to_string(),
                outcome: "failed".into(),
                uploaded: 0,
                copied: 0,
                resumed: 0,
                bytes_uploaded: 0,
                bytes_stored: 0,
                error: Some(crate::bundle::locate::error_chain(&e)),
            }),
        }
    }
    Ok(reports)
}
