//! The Lance table format (a LanceDB table is one `<name>.lance` folder):
//! which files one committed version of a table needs, read from its
//! manifest, and the row count the manifest records.
//!
//! A version is the manifest `_versions/<n>.manifest` (or, in the newer
//! naming, `u64::MAX - n` zero-padded to 20 digits). Every file it names is
//! immutable once written: the data files under `data/`, the deletion files
//! under `_deletions/` and the index folders under `_indices/`. So a copy of
//! those files and of that one manifest is that version, whatever a writer
//! adds meanwhile. The layout relied on is in docs/format.md#lancedb-stores.

use std::io::Read;
use std::path::{Path, PathBuf};

use prost::Message;

pub use crate::manifest::{LanceFacts, TableFacts};

/// The folder of a table's manifests.
pub const VERSIONS: &str = "_versions";

/// The last bytes of a manifest file.
const MAGIC: &[u8; 4] = b"LANC";

/// Manifests larger than this are refused unread.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// The parts of `lance.table.Manifest` this module reads (tags from
/// lance's `protos/table.proto`; other fields are skipped).
#[derive(Clone, PartialEq, Message)]
struct ManifestProto {
    #[prost(message, repeated, tag = "2")]
    fragments: Vec<FragmentProto>,
    #[prost(uint64, tag = "3")]
    version: u64,
    #[prost(uint64, optional, tag = "6")]
    index_section: Option<u64>,
    #[prost(message, repeated, tag = "18")]
    base_paths: Vec<BasePathProto>,
}

/// `lance.table.BasePath`: only its presence matters.
#[derive(Clone, PartialEq, Message)]
struct BasePathProto {
    #[prost(string, tag = "4")]
    path: String,
}

/// `lance.table.DataFragment`.
#[derive(Clone, PartialEq, Message)]
struct FragmentProto {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "2")]
    files: Vec<DataFileProto>,
    #[prost(message, optional, tag = "3")]
    deletion_file: Option<DeletionFileProto>,
    #[prost(uint64, tag = "4")]
    physical_rows: u64,
    #[prost(message, optional, tag = "6")]
    external_row_ids: Option<ExternalFileProto>,
}

/// `lance.table.DataFile`.
#[derive(Clone, PartialEq, Message)]
struct DataFileProto {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(uint64, tag = "6")]
    file_size_bytes: u64,
    #[prost(uint32, optional, tag = "7")]
    base_id: Option<u32>,
}

/// `lance.table.DeletionFile`.
#[derive(Clone, PartialEq, Message)]
struct DeletionFileProto {
    #[prost(int32, tag = "1")]
    file_type: i32,
    #[prost(uint64, tag = "2")]
    read_version: u64,
    #[prost(uint64, tag = "3")]
    id: u64,
    #[prost(uint64, tag = "4")]
    num_deleted_rows: u64,
    #[prost(uint32, optional, tag = "7")]
    base_id: Option<u32>,
}

/// `lance.table.ExternalFile`: only its presence matters.
#[derive(Clone, PartialEq, Message)]
struct ExternalFileProto {
    #[prost(string, tag = "1")]
    path: String,
}

/// `lance.table.IndexSection`.
#[derive(Clone, PartialEq, Message)]
struct IndexSectionProto {
    #[prost(message, repeated, tag = "1")]
    indices: Vec<IndexProto>,
}

/// `lance.table.IndexMetadata`.
#[derive(Clone, PartialEq, Message)]
struct IndexProto {
    #[prost(message, optional, tag = "1")]
    uuid: Option<UuidProto>,
    #[prost(uint32, optional, tag = "9")]
    base_id: Option<u32>,
}

/// `lance.table.UUID`.
#[derive(Clone, PartialEq, Message)]
struct UuidProto {
    #[prost(bytes = "vec", tag = "1")]
    uuid: Vec<u8>,
}

/// One committed version of a table: what it holds and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Its number.
    pub version: u64,
    /// Rows: each fragment's physical rows less its deleted ones.
    pub rows: u64,
    /// Its manifest, relative to the table folder.
    pub manifest: PathBuf,
    /// Files it needs, relative to the table folder, with their recorded
    /// size when the manifest has one.
    pub files: Vec<(PathBuf, Option<u64>)>,
    /// Index folders it needs (every file inside), relative to the table folder.
    pub index_folders: Vec<PathBuf>,
}

/// The version number a manifest file name stands for, in either naming.
fn version_of_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".manifest")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    // The newer naming stores `u64::MAX - version` in 20 digits, so that
    // names sort newest first.
    Some(if digits.len() == 20 { u64::MAX - n } else { n })
}

/// The newest committed manifest of the table at `table`, if any.
pub fn newest_manifest(table: &Path) -> Result<Option<(PathBuf, u64)>, String> {
    let dir = table.join(VERSIONS);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{VERSIONS}: {e}"))?;
    let mut newest: Option<(PathBuf, u64)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{VERSIONS}: {e}"))?;
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(version_of_name) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if newest.as_ref().is_none_or(|(_, v)| version > *v) {
            newest = Some((Path::new(VERSIONS).join(&name), version));
        }
    }
    Ok(newest)
}

/// Reads the manifest `rel` of the table at `table`: the version it is and
/// the files it needs, after checking it names only plain relative paths.
pub fn read_version(table: &Path, rel: &Path) -> Result<Version, String> {
    let show = rel.display().to_string();
    let bytes = read_small(&table.join(rel)).map_err(|e| format!("{show}: {e}"))?;
    let manifest: ManifestProto = decode_at_footer(&bytes).map_err(|e| format!("{show}: {e}"))?;
    if !manifest.base_paths.is_empty() {
        return Err(format!(
            "{show}: the table keeps files under other base paths, which this version does not capture"
        ));
    }
    let mut files = Vec::new();
    let mut rows = 0u64;
    for fragment in &manifest.fragments {
        if fragment.external_row_ids.is_some() {
            return Err(format!(
                "{show}: fragment {} keeps its row ids in an external file, which this version does not capture",
                fragment.id
            ));
        }
        for file in &fragment.files {
            if file.base_id.is_some() {
                return Err(format!("{show}: a data file lives under another base path"));
            }
            let path = plain_relative(&file.path).map_err(|e| format!("{show}: {e}"))?;
            let size = (file.file_size_bytes > 0).then_some(file.file_size_bytes);
            files.push((Path::new("data").join(path), size));
        }
        let deleted = match &fragment.deletion_file {
            Some(d) => {
                if d.base_id.is_some() {
                    return Err(format!(
                        "{show}: a deletion file lives under another base path"
                    ));
                }
                let suffix = if d.file_type == 1 { "bin" } else { "arrow" };
                let name = format!("{}-{}-{}.{suffix}", fragment.id, d.read_version, d.id);
                files.push((Path::new("_deletions").join(name), None));
                d.num_deleted_rows
            }
            None => 0,
        };
        rows += fragment.physical_rows.saturating_sub(deleted);
    }
    let index_folders = match manifest.index_section {
        Some(at) => index_folders(&bytes, at).map_err(|e| format!("{show}: {e}"))?,
        None => Vec::new(),
    };
    Ok(Version {
        version: manifest.version,
        rows,
        manifest: rel.to_path_buf(),
        files,
        index_folders,
    })
}

/// The folders of the indexes in the index section at `at`.
fn index_folders(bytes: &[u8], at: u64) -> Result<Vec<PathBuf>, String> {
    let section: IndexSectionProto = decode_length_prefixed(bytes, at)?;
    let mut out = Vec::new();
    for index in section.indices {
        if index.base_id.is_some() {
            return Err("an index lives under another base path".into());
        }
        let uuid = index.uuid.map(|u| u.uuid).unwrap_or_default();
        if uuid.len() != 16 {
            return Err("an index has no 16-byte uuid".into());
        }
        let hex = hex::encode(&uuid);
        let name = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        out.push(Path::new("_indices").join(name));
    }
    Ok(out)
}

/// Decodes the message a manifest file's footer points at: the file ends
/// with the message's position (`i64`), two `u16` version numbers and
/// `LANC`; at the position, a `u32` length and the message.
fn decode_at_footer<M: Message + Default>(bytes: &[u8]) -> Result<M, String> {
    if bytes.len() < 16 || !bytes.ends_with(MAGIC) {
        return Err("not a Lance manifest (no LANC footer)".into());
    }
    let footer = bytes.len() - 16;
    let at = i64::from_le_bytes(bytes[footer..footer + 8].try_into().expect("8 bytes"));
    let at = u64::try_from(at).map_err(|_| "negative manifest position".to_string())?;
    let message: M = decode_length_prefixed(&bytes[..footer], at)?;
    let len = u32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().expect("4"));
    if at as usize + 4 + len as usize != footer {
        return Err("the manifest does not end where its footer starts (truncated?)".into());
    }
    Ok(message)
}

/// Decodes the `u32`-length-prefixed message at `at` in `bytes`.
fn decode_length_prefixed<M: Message + Default>(bytes: &[u8], at: u64) -> Result<M, String> {
    let at = usize::try_from(at).map_err(|_| "position out of range".to_string())?;
    let len_bytes = bytes
        .get(at..at.saturating_add(4))
        .ok_or("a position points past the end of the file")?;
    let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
    let body = bytes
        .get(at + 4..(at + 4).saturating_add(len))
        .ok_or("a message runs past the end of the file")?;
    M::decode(body).map_err(|e| format!("cannot decode: {e}"))
}

/// Reads a file of at most [`MAX_MANIFEST_BYTES`], never through a link.
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(format!("{} bytes is too large for a manifest", meta.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A path a manifest names: relative, with no `..`, root or empty part.
fn plain_relative(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain {
        Ok(p)
    } else {
        Err(format!(
            "data file path {path:?} is not a plain relative path"
        ))
    }
}

/// Whether `dir` looks like a LanceDB database (a `*.lance` table folder
/// with `_versions` at its top).
pub fn looks_like(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| table_name(&e.file_name()).is_some() && e.path().join(VERSIONS).is_dir())
    })
}

/// The table name of a `<name>.lance` folder name.
pub fn table_name(file_name: &std::ffi::OsStr) -> Option<&str> {
    file_name
        .to_str()?
        .strip_suffix(".lance")
        .filter(|n| !n.is_empty())
}

/// Reads every table of the database at `root` (a bundle's copy or a
/// restored store): its newest version and row count, checking that every
/// file that version needs is there.
pub fn inspect(root: &Path) -> Result<LanceFacts, String> {
    let mut tables = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let Some(name) = table_name(&entry.file_name()).map(str::to_string) else {
            continue;
        };
        let table = entry.path();
        let Some((manifest, _)) = newest_manifest(&table).map_err(|e| format!("{name}: {e}"))?
        else {
            return Err(format!("table {name} has no committed version"));
        };
        let version = read_version(&table, &manifest).map_err(|e| format!("{name}: {e}"))?;
        for (file, size) in &version.files {
            let meta = std::fs::symlink_metadata(table.join(file));
            match meta {
                Ok(m) if m.is_file() && size.is_none_or(|s| s == m.len()) => {}
                Ok(m) if m.is_file() => {
                    return Err(format!(
                        "{name}: {} is {} bytes, its manifest says {}",
                        file.display(),
                        m.len(),
                        size.unwrap_or(0)
                    ))
                }
                _ => {
                    return Err(format!(
                        "{name}: version {} needs {}, which is missing",
                        version.version,
                        file.display()
                    ))
                }
            }
        }
        for folder in &version.index_folders {
            if !std::fs::symlink_metadata(table.join(folder)).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "{name}: version {} needs index folder {}, which is missing",
                    version.version,
                    folder.display()
                ));
            }
        }
        tables.push(TableFacts {
            name,
            version: version.version,
            rows: version.rows,
        });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(LanceFacts { tables })
}

/// Re-reads the database at `dir` and compares it with what the bundle
/// records; the first difference found. Tables `dir` holds beyond the
/// record are a difference only when `exact` (a bundle's copy; a merged
/// live store keeps its own).
pub fn recheck(recorded: &LanceFacts, dir: &Path, exact: bool) -> Result<(), String> {
    let found = inspect(dir).map_err(|e| format!("not a consistent LanceDB database: {e}"))?;
    if &found == recorded {
        return Ok(());
    }
    for r in &recorded.tables {
        match found.tables.iter().find(|f| f.name == r.name) {
            None => return Err(format!("table {} is recorded but not in the copy", r.name)),
            Some(f) if f != r => {
                return Err(format!(
                    "table {}: recorded version {} with {} rows, the copy holds version {} with {} rows",
                    r.name, r.version, r.rows, f.version, f.rows
                ))
            }
            Some(_) => {}
        }
    }
    match exact {
        true => Err("the copy holds tables that are not recorded".into()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_manifest_namings_give_the_version() {
        assert_eq!(version_of_name("3.manifest"), Some(3));
        assert_eq!(version_of_name("18446744073709551612.manifest"), Some(3));
        assert_eq!(version_of_name("latest_version_hint.json"), None);
        assert_eq!(version_of_name("-1.manifest"), None);
        assert_eq!(version_of_name(".manifest"), None);
    }

    #[test]
    fn manifest_paths_must_be_plain() {
        assert!(plain_relative("abc.lance").is_ok());
        assert!(plain_relative("../x.lance").is_err());
        assert!(plain_relative("/etc/passwd").is_err());
        assert!(plain_relative("").is_err());
        assert!(plain_relative("a/./b").is_ok());
    }

    #[test]
    fn truncated_or_foreign_manifests_are_refused() {
        assert!(decode_at_footer::<ManifestProto>(b"short").is_err());
        let mut bytes = vec![0u8; 32];
        bytes[16..24].copy_from_slice(&1000i64.to_le_bytes());
        bytes[28..32].copy_from_slice(MAGIC);
        assert!(decode_at_footer::<ManifestProto>(&bytes).is_err());
    }
}
