//! `bundle verify --remote`: is a remote bundle whole? Without
//! `--read-data`: its index is there, every object it lists is present
//! with its recorded size, no other object is in its folder, and its
//! manifest object matches the index and parses (a listing and a few small
//! reads). With `--read-data`: every object is also streamed, hashed against
//! the index, decompressed and hashed against the manifest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::manifest::FileRecord;
use crate::progress::Progress;
use crate::remote::layout::{self, file_object, StoredObject, INDEX, MANIFEST_OBJECT, SUM_OBJECT};
use crate::remote::{Remote, RemoteBundle};
use crate::verify::{Problem, VerifyReport};

/// Checks remote bundle `id`.
pub fn verify(
    remote: &Remote,
    id: &str,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        ok: false,
        problems: Vec::new(),
        bundle: PathBuf::from(format!("{}:{id}", remote.spec.name)),
        id: None,
        files_checked: 0,
        bytes_checked: 0,
        damaged: Vec::new(),
        suspicious: false,
        suspicious_reasons: Vec::new(),
    };
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
    report.id = Some(bundle.manifest.id.clone());
    report.suspicious = bundle.manifest.suspicious;
    report.suspicious_reasons = bundle.manifest.suspicious_reasons.clone();
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
    let files = layout::files(&bundle.manifest).count();
    let mut expected: Vec<String> = vec![MANIFEST_OBJECT.into(), SUM_OBJECT.into()];
    expected.extend((0..files).map(file_object));
    for name in &expected {
        let Some(entry) = bundle.index.object(name) else {
            add(name, "not listed in the index".into());
            continue;
        };
        match listed.get(&format!("{id}/{name}")) {
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
        .map(|n| format!("{id}/{n}"))
        .chain([format!("{id}/{INDEX}")])
        .collect();
    for name in listed.keys().filter(|n| !known.contains(n)) {
        add(name, "object the index does not list".into());
    }
    if let Err(why) = remote.fetch_object(id, &bundle.index, SUM_OBJECT)? {
        add(SUM_OBJECT, why);
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
    let files: Vec<&FileRecord> = layout::files(&bundle.manifest).collect();
    let total = files.iter().map(|f| f.bytes).sum();
    progress.start(
        &format!("reading {id} from {}", remote.spec.name),
        Some(total),
    );
    for (n, file) in files.iter().enumerate() {
        let name = file_object(n);
        let entry = bundle.index.object(&name);
        let outcome = read_object(remote, &format!("{id}/{name}"), file, entry)?;
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

/// Reads `object` back, decompressing it into `sink`: its stored entry
/// when its stored bytes match `entry` (if given) and its plaintext matches
/// `file`; `Ok(Err(why))` when not.
pub fn read_into(
    remote: &Remote,
    object: &str,
    file: &FileRecord,
    entry: Option<&StoredObject>,
    sink: &mut dyn Write,
) -> Result<std::result::Result<StoredObject, String>> {
    let mut stored = Sha256::new();
    let mut plain = Hashing {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let mut decoder = zstd::stream::write::Decoder::new(&mut plain)
        .map_err(|e| remote.error(format!("zstd: {e}")))?;
    let mut corrupt = None;
    let stored_bytes = remote.engine.stream(object, |chunk| {
        stored.update(chunk);
        if corrupt.is_none() {
            if let Err(e) = decoder.write_all(chunk) {
                corrupt = Some(e.to_string());
            }
        }
        Ok(())
    })?;
    if corrupt.is_none() {
        if let Err(e) = decoder.flush() {
            corrupt = Some(e.to_string());
        }
    }
    drop(decoder);
    if let Some(e) = plain.failed.take() {
        // Writing here failed (a full disk, say): not the remote's fault.
        // The caller knows where it was writing and may say so.
        return Err(crate::error::Error::io(
            "could not write",
            std::path::Path::new(&file.path),
            e,
        ));
    }
    let stored_sha = hex::encode(stored.finalize());
    if let Some(entry) = entry {
        if entry.bytes != stored_bytes || entry.sha256 != stored_sha {
            return Ok(Err(
                "does not match its index entry (altered or truncated)".into()
            ));
        }
    }
    if let Some(e) = corrupt {
        return Ok(Err(format!("does not decompress ({e})")));
    }
    let plain_sha = hex::encode(plain.hasher.finalize());
    if plain.bytes != file.bytes || plain_sha != file.sha256 {
        return Ok(Err(format!(
            "does not hold {} as the manifest records it",
            file.path
        )));
    }
    Ok(Ok(StoredObject {
        name: object
            .rsplit_once('/')
            .map_or(object, |(_, n)| n)
            .to_string(),
        bytes: stored_bytes,
        sha256: stored_sha,
    }))
}

/// [`read_into`] discarding the plaintext.
fn read_object(
    remote: &Remote,
    object: &str,
    file: &FileRecord,
    entry: Option<&StoredObject>,
) -> Result<std::result::Result<StoredObject, String>> {
    read_into(remote, object, file, entry, &mut std::io::sink())
}

/// An object an interrupted push stored for `file`: its entry when it holds
/// exactly the file, else `None` (upload it again).
pub fn read_back(remote: &Remote, object: &str, file: &FileRecord) -> Result<Option<StoredObject>> {
    Ok(read_object(remote, object, file, None)?.ok())
}

/// A writer that hashes and counts what passes through it, and keeps the
/// error of a failed write (told apart from a corrupt object).
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
    failed: Option<std::io::Error>,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.inner.write(buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                return Err(std::io::Error::from(kind));
            }
        };
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
