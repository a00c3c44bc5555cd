//! `bundle verify --remote`: is a remote bundle whole? Without
//! `--read-data`: its index is there, every object it lists is present
//! with its recorded size, no other object is in its folder, and its
//! manifest object matches the index and parses (a listing and a few small
//! reads; on an encrypted remote without a key, the small objects' stored
//! bytes against the index). With `--read-data`: every object is also
//! streamed, hashed against the index, decrypted, decompressed and hashed
//! against the manifest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::manifest::FileRecord;
use crate::progress::Progress;
use crate::remote::fetch::{read_object, small_object, stored_hash, Opening};
use crate::remote::layout::{self, file_object, INDEX, MANIFEST_OBJECT, SUM_OBJECT};
use crate::remote::{Remote, RemoteBundle};
use crate::verify::{Problem, VerifyReport};

/// Checks remote bundle `id`.
pub fn verify(
    remote: &Remote,
    id: &str,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::of(PathBuf::from(format!("{}:{id}", remote.spec.name)));
    let problem = |path: Option<&str>, text: String| Problem {
        store: None,
        path: path.map(str::to_string),
        problem: text,
    };
    let bundle = match remote.bundle(id)? {
        Ok(b) => b,
        Err(why) => {
            report.problems.push(problem(None, why));
            return Ok(report);
        }
    };
    report.id = Some(bundle.id.to_string());
    match &bundle.opened {
        Some(opened) => {
            report.suspicious = opened.manifest.suspicious;
            report.suspicious_reasons = opened.manifest.suspicious_reasons.clone();
        }
        None => report.suspicious = bundle.index.standing.as_deref() == Some("suspicious"),
    }
    if read_data {
        bundle.opened(remote)?;
    }
    report.problems.extend(check_objects(remote, id, &bundle)?);
    if read_data && report.problems.is_empty() {
        read_all(remote, id, &bundle, &mut report, progress)?;
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// The problems a listing and the small objects show: objects missing,
/// of the wrong size, unlisted, or a checksum object that does not match.
fn check_objects(remote: &Remote, id: &str, bundle: &RemoteBundle) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let mut add = |name: &str, text: String| {
        problems.push(Problem {
            store: None,
            path: Some(name.to_string()),
            problem: text,
        })
    };
    let listed: BTreeMap<String, u64> = remote
        .engine
        .list(id)?
        .into_iter()
        .map(|o| (o.name, o.bytes))
        .collect();
    let files = match &bundle.opened {
        Some(opened) => layout::files(&opened.manifest).count(),
        // Without the key, the index says how many files there are.
        None => bundle
            .index
            .objects
            .iter()
            .filter(|o| o.name.starts_with("f/"))
            .count(),
    };
    let mut expected: Vec<String> = vec![MANIFEST_OBJECT.into(), SUM_OBJECT.into()];
    expected.extend((0..files).map(file_object));
    for name in &expected {
        let Some(entry) = bundle.index.object(name) else {
            add(name, "not listed in the index".into());
            continue;
        };
        match listed.get(&bundle.index.path_of(name)) {
            None => add(name, "object is missing".into()),
            Some(&bytes) if bytes != entry.bytes => add(
                name,
                format!("object is {bytes} bytes, the index says {}", entry.bytes),
            ),
            Some(_) => {}
        }
    }
    let known: Vec<String> = expected
        .iter()
        .map(|n| bundle.index.path_of(n))
        .chain([format!("{id}/{INDEX}")])
        .collect();
    for name in listed.keys().filter(|n| !known.contains(n)) {
        let generation = name.strip_prefix(&format!("{id}/g")).is_some_and(|rest| {
            rest.split('/')
                .next()
                .is_some_and(|g| g.parse::<u32>().is_ok())
        });
        let why = match generation {
            true => "object the index does not list (left by an interrupted `push --reencrypt`; running it again removes it)",
            false => "object the index does not list",
        };
        add(name, why.into());
    }
    if bundle.opened.is_some() {
        if let Err(why) = small_object(remote, &bundle.index, SUM_OBJECT)? {
            add(SUM_OBJECT, why);
        }
        return Ok(problems);
    }
    // Without the key: the small objects' stored bytes against the index.
    for name in [MANIFEST_OBJECT, SUM_OBJECT] {
        let entry = bundle.index.object(name);
        let stored = stored_hash(remote, &bundle.index.path_of(name))?;
        if let (Some(entry), Some((bytes, sha))) = (entry, stored) {
            if entry.bytes != bytes || entry.sha256 != sha {
                add(
                    name,
                    "does not match its index (altered or truncated)".into(),
                );
            }
        }
    }
    Ok(problems)
}

/// Reads every file object back into `report` (`--read-data`).
fn read_all(
    remote: &Remote,
    id: &str,
    bundle: &RemoteBundle,
    report: &mut VerifyReport,
    progress: &dyn Progress,
) -> Result<()> {
    let files: Vec<&FileRecord> = layout::files(&bundle.opened(remote)?.manifest).collect();
    let at = Opening::of(&bundle.index);
    let total = files.iter().map(|f| f.bytes).sum();
    progress.start(
        &format!("reading {id} from {}", remote.spec.name),
        Some(total),
    );
    for (n, file) in files.iter().enumerate() {
        let name = file_object(n);
        let entry = bundle.index.object(&name);
        let outcome = read_object(remote, at, &bundle.index.path_of(&name), file, entry)?;
        progress.advance(file.bytes);
        match outcome {
            Ok(_) => {
                report.files_checked += 1;
                report.bytes_checked += file.bytes;
            }
            Err(why) => report.problems.push(Problem {
                store: file.path.split('/').next().map(str::to_string),
                path: Some(file.path.clone()),
                problem: format!("object {name}: {why}"),
            }),
        }
    }
    progress.finish();
    Ok(())
}
