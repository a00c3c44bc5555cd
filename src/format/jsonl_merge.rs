//! JSONL record identity for merge: the configured key field's value, else the
//! whole line. Identities are kept as 128-bit digests so memory stays small.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::jsonl::each_line;
use crate::rooted::{Ownership, RootDir};

/// The identity of one line (newline and trailing `\r` ignored).
pub fn identity(line: &[u8], key: Option<&str>) -> u128 {
    let line = trim_newline(line);
    let mut hasher = Sha256::new();
    let keyed = key.and_then(
        |k| match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => map.get(k).map(|v| v.to_string()),
            _ => None,
        },
    );
    match keyed {
        Some(value) => {
            hasher.update(b"key:");
            hasher.update(value.as_bytes());
        }
        None => {
            hasher.update(b"line:");
            hasher.update(line);
        }
    }
    let digest = hasher.finalize();
    u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"))
}

fn trim_newline(mut line: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = line.split_last() {
        if last == b'\n' || last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

/// Identities of every non-empty line of `file` (read from `path`), and
/// whether it ends with a newline.
fn identities(file: File, path: &Path, key: Option<&str>) -> Result<(HashSet<u128>, bool)> {
    let mut ids = HashSet::new();
    let mut ends_with_newline = true;
    each_line(file, |line| {
        ends_with_newline = line.ends_with(b"\n");
        if !trim_newline(line).is_empty() {
            ids.insert(identity(line, key));
        }
        Ok(())
    })
    .map_err(|e| Error::io("could not read", path, e))?;
    Ok((ids, ends_with_newline))
}

/// Walks the bundle file's lines, calling `f(line, already_present)` once per
/// record identity not seen earlier in the bundle.
fn each_bundle_record(
    bundle: &Path,
    key: Option<&str>,
    live: &mut HashSet<u128>,
    mut f: impl FnMut(&[u8], bool) -> std::io::Result<()>,
) -> Result<()> {
    let file = File::open(bundle).map_err(|e| Error::io("could not read", bundle, e))?;
    let mut seen = HashSet::new();
    each_line(file, |line| {
        if trim_newline(line).is_empty() {
            return Ok(());
        }
        let id = identity(line, key);
        if !seen.insert(id) {
            return Ok(());
        }
        let present = !live.insert(id);
        f(line, present)
    })
    .map_err(|e| Error::io("could not read", bundle, e))
}

/// (records of the bundle file missing from live file `rel` of `root`,
/// records already present). The live file is read without following links.
pub fn count_missing(
    root: &RootDir,
    rel: &Path,
    bundle: &Path,
    key: Option<&str>,
) -> Result<(u64, u64)> {
    let (mut ids, _) = identities(root.open_read(rel)?, &root.display(rel), key)?;
    let (mut missing, mut present) = (0, 0);
    each_bundle_record(bundle, key, &mut ids, |_, here| {
        if here {
            present += 1;
        } else {
            missing += 1;
        }
        Ok(())
    })?;
    Ok((missing, present))
}

/// Rewrites live file `rel` of `root` as itself plus the bundle's missing
/// records, in bundle order (temp file, fsync, rename; the file keeps its
/// owner and mode). Returns the number of lines appended.
pub fn append_missing(root: &RootDir, rel: &Path, bundle: &Path, key: Option<&str>) -> Result<u64> {
    let live = root.display(rel);
    let (mut ids, ends_with_newline) = identities(root.open_read(rel)?, &live, key)?;
    let mut input = root.open_read(rel)?;
    let mut appended = 0;
    root.write_file(rel, Ownership::default(), |out| {
        std::io::copy(&mut input, out)?;
        if !ends_with_newline {
            out.write_all(b"\n")?;
        }
        each_bundle_record(bundle, key, &mut ids, |line, present| {
            if !present {
                out.write_all(line)?;
                if !line.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
                appended += 1;
            }
            Ok(())
        })
        .map_err(|e| std::io::Error::other(e.to_string()))
    })?;
    Ok(appended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uses_the_key_when_present() {
        let a = identity(b"{\"id\":1,\"v\":\"x\"}\n", Some("id"));
        let b = identity(b"{\"v\":\"changed\",\"id\":1}\r\n", Some("id"));
        assert_eq!(a, b);
        assert_ne!(a, identity(b"{\"id\":2}", Some("id")));
        // Without a key, or without the field, the whole line is the identity.
        assert_ne!(
            identity(b"{\"id\":1,\"v\":\"x\"}", None),
            identity(b"{\"id\":1}", None)
        );
        assert_eq!(
            identity(b"not json\n", Some("id")),
            identity(b"not json", None)
        );
    }
}
