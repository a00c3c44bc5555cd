//! The bundle manifest, `bundle-meta.json`: what a bundle holds and claims.
//!
//! The format is a specification (`docs/format.md`, `schema/bundle-meta.schema.json`);
//! these types are its only reader and writer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::StoreKind;
use crate::error::{Error, Result};
use crate::hash;

pub mod lines;
pub mod spool;

/// File name of the manifest at a bundle's root.
pub const MANIFEST_FILE: &str = "bundle-meta.json";

/// File beside the manifest holding its sha256, in `sha256sum` format, so a
/// damaged manifest (a changed label or host, say) is caught too.
pub const MANIFEST_SUM_FILE: &str = "bundle-meta.json.sha256";

/// The text of [`MANIFEST_SUM_FILE`] for manifest bytes `bytes`.
pub fn manifest_sum(bytes: &[u8]) -> String {
    sum_line(&hash::sha256_hex(bytes))
}

/// The text of [`MANIFEST_SUM_FILE`] for a manifest whose sha256 is `sha256`.
pub fn sum_line(sha256: &str) -> String {
    format!("{sha256}  {MANIFEST_FILE}\n")
}

/// `reason` of a safety bundle taken before a restore.
pub const PRE_RESTORE: &str = "pre-restore";

/// The only manifest format this version reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Manifests larger than this are refused unread, so that a forged one
/// cannot exhaust memory. A real one takes about 480 bytes per file: this
/// allows about a million files (create refuses to write a larger one).
pub const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format of this file; only [`FORMAT_VERSION`] is understood.
    pub format_version: u32,
    /// The bundle id, equal to its folder name.
    pub id: String,
    /// When the bundle was created (RFC 3339, UTC, whole seconds).
    pub created_at: String,
    /// Free text given with `--label`.
    pub label: Option<String>,
    /// Why the bundle exists when not a plain create (e.g. `pre-restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a `pre-restore` safety bundle: the id of the bundle being restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<String>,
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// Host name of the machine that wrote it.
    pub host: String,
    /// Commit of the git repository holding the config, if any.
    pub git: Option<GitInfo>,
    /// sha256 of the sorted `name:kind` lines of the stores (see [`topology`]).
    pub topology: String,
    /// One entry per captured store, sorted by name.
    pub stores: Vec<StoreRecord>,
    /// Whether a store that had data is now absent, empty or lost more than
    /// its shrink alarm since it was last healthy (see [`crate::shrink`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspicious: bool,
    /// Why the bundle is suspicious, one line per store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspicious_reasons: Vec<String>,
    /// Shrinks the creator acknowledged (`--accept-shrink` or a label): the
    /// bundle is not suspicious, and these say what was accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_shrink: Vec<String>,
}

/// Name and version of the writing tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    /// Always `bundle`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

/// Git provenance of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    /// HEAD commit, hex; `null` on an unborn branch.
    pub sha: Option<String>,
    /// Whether tracked or untracked (not ignored) files differ from HEAD.
    pub dirty: bool,
}

/// What was found at a store's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreStatus {
    /// Captured.
    Ok,
    /// The source path does not exist (a fresh install): nothing captured.
    Absent,
    /// The source exists but holds nothing.
    Empty,
    /// The store could not be captured (see [`StoreRecord::error`]); the
    /// other stores of the bundle were.
    Failed,
    /// Only in a safety snapshot: the live store could not be captured
    /// normally (a corrupt database, say), so its files are exact raw
    /// copies, unchecked (see [`StoreRecord::error`] for why).
    Damaged,
}

/// One store in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRecord {
    /// The store's name and folder inside the bundle.
    pub name: String,
    /// The store's kind.
    pub kind: StoreKind,
    /// Absolute source path at capture time (informational: restore never uses it).
    pub source: String,
    /// What was found at the source.
    pub status: StoreStatus,
    /// For a single-file store: the source file name inside `source`'s folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_file: Option<String>,
    /// Regular files captured, sorted by path.
    pub files: Vec<FileRecord>,
    /// Symbolic links found in a `dir` store, recorded, never followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<SymlinkRecord>,
    /// The `exclude` patterns the store was captured with: paths they match
    /// are not in the bundle, and replace leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// For a `failed` store: why it could not be captured; for a `damaged`
    /// one, why its raw bytes were kept instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a captured `chroma` store: its collections as the copy holds them
    /// (see `format::chroma`), re-checked by verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chroma: Option<ChromaFacts>,
    /// For a captured `lancedb` store: each table's version and rows
    /// (see `format::lance`), re-checked by verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lancedb: Option<LanceFacts>,
}

/// One captured file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Path relative to the bundle root, `/`-separated (see [`FileRecord::path_hex`]).
    pub path: String,
    /// Only when the path is not valid UTF-8: its exact bytes in hex; `path`
    /// then shows it with U+FFFD for each invalid sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<Box<str>>,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the content (lowercase hex in the file).
    pub sha256: crate::hash::Sha256Digest,
    /// Facts about an SQLite database file (boxed: most records are of
    /// plain files, and a manifest may hold hundreds of thousands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<Box<SqliteFacts>>,
    /// Facts about a JSONL file (boxed, as `sqlite` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<Box<JsonlFacts>>,
    /// The source file's identity when it was read, so the next create can
    /// tell it is unchanged; absent when it was too fresh to be trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_stat: Option<SourceStat>,
    /// Whether this file was taken over (hard-linked) from the previous bundle
    /// instead of copied, because its source was unchanged.
    #[serde(default)]
    pub reused: bool,
    /// The source file's permission bits (`0o7777` at most) when captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The source file's owner uid when captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The source file's group gid when captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl FileRecord {
    /// The record of a file at `path` (`path_hex`: its exact bytes when not
    /// UTF-8) of `bytes` bytes and content `sha256`, without any other fact.
    pub fn new(
        path: String,
        path_hex: Option<Box<str>>,
        bytes: u64,
        sha256: crate::hash::Sha256Digest,
    ) -> FileRecord {
        FileRecord {
            path,
            path_hex,
            bytes,
            sha256,
            sqlite: None,
            jsonl: None,
            source_stat: None,
            reused: false,
            mode: None,
            uid: None,
            gid: None,
        }
    }

    /// The file's path relative to the bundle root, checked safe.
    pub fn rel(&self) -> std::result::Result<std::path::PathBuf, String> {
        crate::fsutil::decode_path(&self.path, self.path_hex.as_deref())
    }

    /// The owner and mode a restore gives this file when it creates it anew.
    pub fn ownership(&self) -> crate::rooted::Ownership {
        crate::rooted::Ownership {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// What identifies an unchanged source file: device, inode, size, mtime and
/// ctime (nanoseconds). For an SQLite database, also its `-wal` file's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceStat {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// For an SQLite database: its `-wal` file when one existed (`None`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<Box<SourceStat>>,
}

impl SourceStat {
    /// The identity of `path` now (and of its `-wal` for a database).
    pub fn read(path: &Path, with_wal: bool) -> Result<SourceStat> {
        Ok(Self::read_with_metadata(path, with_wal)?.0)
    }

    /// The identity `meta` (of a file without a `-wal`) gives.
    pub fn of(meta: &std::fs::Metadata) -> SourceStat {
        stat_of(meta, None)
    }

    /// The identity a `statx` (of a file without a `-wal`) gives: the same
    /// as [`SourceStat::of`] the metadata of the same file (its device
    /// number made as the C library makes it), so that a record made one
    /// way is matched by a stat taken the other.
    pub fn of_statx(stat: &rustix::fs::Statx) -> SourceStat {
        let ns = |t: &rustix::fs::StatxTimestamp| t.tv_sec * 1_000_000_000 + i64::from(t.tv_nsec);
        SourceStat {
            dev: rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor),
            ino: stat.stx_ino,
            bytes: stat.stx_size,
            mtime_ns: ns(&stat.stx_mtime),
            ctime_ns: ns(&stat.stx_ctime),
            wal: None,
        }
    }

    /// [`SourceStat::read`], with the metadata of `path` it was made from
    /// (one `stat` for both).
    pub fn read_with_metadata(
        path: &Path,
        with_wal: bool,
    ) -> Result<(SourceStat, std::fs::Metadata)> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("could not stat", path, e))?;
        let wal = if with_wal {
            let wal = {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                std::path::PathBuf::from(wal)
            };
            match std::fs::metadata(&wal) {
                // SQLite itself changes the `-wal`'s ctime when it opens it (it
                // re-asserts the owner), so only its other fields are compared.
                Ok(m) => Some(Box::new(SourceStat {
                    ctime_ns: 0,
                    ..stat_of(&m, None)
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("could not stat", &wal, e)),
            }
        } else {
            None
        };
        Ok((stat_of(&meta, wal), meta))
    }
}

/// A [`SourceStat`] from metadata.
fn stat_of(meta: &std::fs::Metadata, wal: Option<Box<SourceStat>>) -> SourceStat {
    SourceStat {
        dev: std::os::unix::fs::MetadataExt::dev(meta),
        ino: std::os::unix::fs::MetadataExt::ino(meta),
        bytes: meta.len(),
        mtime_ns: std::os::unix::fs::MetadataExt::mtime(meta) * 1_000_000_000
            + std::os::unix::fs::MetadataExt::mtime_nsec(meta),
        ctime_ns: std::os::unix::fs::MetadataExt::ctime(meta) * 1_000_000_000
            + std::os::unix::fs::MetadataExt::ctime_nsec(meta),
        wal,
    }
}

/// A symbolic link inside a `dir` store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkRecord {
    /// Path of the link relative to the bundle root.
    pub path: String,
    /// Only when the path is not valid UTF-8: its exact bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// The link's target, as read.
    pub target: String,
    /// Only when the target is not valid UTF-8: its exact bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

impl SymlinkRecord {
    /// The link's path relative to the bundle root, checked safe.
    pub fn rel(&self) -> std::result::Result<std::path::PathBuf, String> {
        crate::fsutil::decode_path(&self.path, self.path_hex.as_deref())
    }

    /// The link's target as bytes (`target_hex` when given and consistent).
    pub fn target_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        match &self.target_hex {
            None => Ok(self.target.as_bytes().to_vec()),
            Some(h) => {
                let bytes = hex::decode(h).map_err(|e| format!("target_hex is not hex: {e}"))?;
                if String::from_utf8_lossy(&bytes) != self.target
                    || std::str::from_utf8(&bytes).is_ok()
                {
                    return Err("target_hex does not match target".into());
                }
                Ok(bytes)
            }
        }
    }
}

/// Facts recorded about an SQLite copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteFacts {
    /// Row count per ordinary table (shadow tables of virtual tables included).
    pub tables: BTreeMap<String, u64>,
    /// Virtual tables: listed, not counted.
    pub virtual_tables: Vec<String>,
    /// Page size of the database.
    pub page_size: u32,
    /// Result of the integrity check; always `ok` in a good bundle.
    pub integrity: String,
    /// Which check produced `integrity`: `quick_check` or `integrity_check`.
    pub check: String,
    /// Journal mode of the source (`wal`, `delete`, ...); the copy is always rollback mode.
    pub source_journal_mode: String,
    /// Rows violating a foreign key (`PRAGMA foreign_key_check`) in the copy
    /// when it was made; absent in bundles made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_key_violations: Option<u64>,
}

/// What a bundle records about one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionFacts {
    /// The collection's name.
    pub name: String,
    /// Its id (a UUID).
    pub id: String,
    /// Vector dimension; absent while nothing was ever added.
    pub dimension: Option<u64>,
    /// Embeddings the client's `count()` reports: its metadata segment, with
    /// what its log adds or deletes beyond that segment's position applied.
    pub embeddings: u64,
    /// Ids in its persisted vector index (0 when none is persisted yet; the
    /// client adds what the index lacks from its log when it opens).
    pub index_elements: u64,
    /// Log position up to which the persisted index is complete.
    pub index_seq_id: Option<u64>,
}

/// A persist directory's facts: its collections, sorted by name then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChromaFacts {
    /// One entry per collection.
    pub collections: Vec<CollectionFacts>,
}

/// What a bundle records about a LanceDB store: each table's captured version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanceFacts {
    /// One entry per table, sorted by name.
    pub tables: Vec<TableFacts>,
}

/// One LanceDB table as captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFacts {
    /// The table's name (its folder is `<name>.lance`).
    pub name: String,
    /// The committed version captured: the newest when the capture started.
    pub version: u64,
    /// Its rows, read from its manifest (physical rows less deleted ones).
    pub rows: u64,
}

/// Facts recorded about a JSONL copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlFacts {
    /// Complete lines (each ends with a newline).
    pub lines: u64,
    /// Lines that are not valid JSON (kept as they were).
    pub invalid_lines: u64,
}

impl Manifest {
    /// The stores that could not be captured, with why.
    pub fn failed_stores(&self) -> Vec<(&str, &str)> {
        self.stores
            .iter()
            .filter(|s| s.status == StoreStatus::Failed)
            .map(|s| {
                (
                    s.name.as_str(),
                    s.error.as_deref().unwrap_or("unknown error"),
                )
            })
            .collect()
    }

    /// The stores kept as raw bytes because they could not be captured, with why.
    pub fn damaged_stores(&self) -> Vec<(&str, &str)> {
        self.stores
            .iter()
            .filter(|s| s.status == StoreStatus::Damaged)
            .map(|s| {
                (
                    s.name.as_str(),
                    s.error.as_deref().unwrap_or("unknown error"),
                )
            })
            .collect()
    }

    /// Reads and parses a manifest, refusing unknown format versions.
    pub fn read(path: &Path) -> Result<Manifest> {
        Self::read_hashed(path).map(|(m, _)| m)
    }

    /// Like [`Manifest::read`], also returning the sha256 of its bytes. A
    /// manifest in the layout this tool writes is read a line at a time
    /// ([`lines`]), never held whole; any other is read and parsed whole.
    pub fn read_hashed(path: &Path) -> Result<(Manifest, String)> {
        let mut kept = KeptRecords::default();
        if let Some(read) = Self::read_lines(path, &mut kept)? {
            let mut manifest = read.manifest;
            for (list, mut files) in kept.lists.into_iter().enumerate() {
                files.shrink_to_fit();
                manifest.stores[read.list_stores[list]].files = files;
            }
            return Ok((manifest, read.sha256));
        }
        let (manifest, bytes) = Self::read_with_bytes(path)?;
        Ok((manifest, hash::sha256_hex(&bytes)))
    }

    /// Like [`Manifest::read`], but without any file records: each store's
    /// `files` is empty, and the bytes they total are returned (for a
    /// listing of bundles, which needs no record).
    pub fn read_summary(path: &Path) -> Result<(Manifest, u64)> {
        let mut streamed = lines::TotalBytes::default();
        let (mut manifest, bytes) = match Self::read_lines::<FileRecord>(path, &mut streamed)? {
            Some(read) => (read.manifest, streamed.0),
            None => (Self::read_with_bytes(path)?.0, 0),
        };
        // Records of lists not read line by line are in the manifest.
        let bytes = manifest.total_bytes().saturating_add(bytes);
        manifest.drop_file_records();
        Ok((manifest, bytes))
    }

    /// [`lines::read`] of the manifest at `path`, once it is found to be a
    /// regular file of a manifest's size.
    pub fn read_lines<R: serde::de::DeserializeOwned>(
        path: &Path,
        sink: &mut dyn lines::RecordSink<R>,
    ) -> Result<Option<lines::LinesRead>> {
        check_file(path)?;
        lines::read(path, sink).map_err(|e| Error::io("could not read", path, e))
    }

    /// Like [`Manifest::read`], also returning the bytes it parsed.
    pub fn read_with_bytes(path: &Path) -> Result<(Manifest, Vec<u8>)> {
        check_file(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io("could not read", path, e))?;
        let manifest = Self::parse(&bytes).map_err(|reason| Error::Manifest {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok((manifest, bytes))
    }

    /// Parses manifest bytes, refusing any format version but
    /// [`FORMAT_VERSION`]. A manifest of this version is parsed once,
    /// straight into the structs (no tree of values in between: a manifest
    /// of many files is tens of MB); only bytes that do not parse are read
    /// a second time, for the version, so that a newer bundle is refused
    /// for its version rather than for a field this tool does not know.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        match serde_json::from_slice::<Manifest>(bytes) {
            Ok(mut manifest) => {
                check_version(Some(u64::from(manifest.format_version)))?;
                // A list grown while parsing holds up to twice its records' room.
                for store in &mut manifest.stores {
                    store.files.shrink_to_fit();
                }
                Ok(manifest)
            }
            Err(e) => {
                /// Only the version (the rest is skipped, not built).
                #[derive(Deserialize)]
                struct Version {
                    format_version: Option<serde_json::Value>,
                }
                let version: Version =
                    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
                check_version(
                    version
                        .format_version
                        .as_ref()
                        .and_then(serde_json::Value::as_u64),
                )?;
                Err(format!("does not match format 1: {e}"))
            }
        }
    }

    /// Serializes the manifest as JSON with a trailing newline: indented,
    /// with each file and symlink record on a line of its own
    /// ([`RECORD_DEPTH`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("manifest serializes");
        out
    }

    /// Writes the bytes of [`Manifest::to_bytes`] to `out` as they are made
    /// (a manifest of many files is tens of MB: it is never held whole).
    pub fn write_to(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        crate::json_layout::write_outlined(&mut out, self, RECORD_DEPTH)?;
        out.write_all(b"\n")
    }

    /// Total bytes of all files listed.
    pub fn total_bytes(&self) -> u64 {
        self.stores
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.total_bytes()))
    }

    /// Empties every store's list of file records (what a caller that
    /// needs none of them keeps of a manifest of many files).
    pub fn drop_file_records(&mut self) {
        for store in &mut self.stores {
            store.files = Vec::new();
        }
    }
}

impl StoreRecord {
    /// Total bytes of the files this store lists.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |t, f| t.saturating_add(f.bytes))
    }
}

/// Refuses a manifest path that is not a regular file (a link is not
/// followed) or is too large to be one.
fn check_file(path: &Path) -> Result<()> {
    let bad = |reason: String| Error::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("could not read", path, e))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(bad(format!(
            "{} bytes is too large for a manifest",
            meta.len()
        )));
    }
    Ok(())
}

/// The records of each multi-line file list, kept.
#[derive(Default)]
struct KeptRecords {
    lists: Vec<Vec<FileRecord>>,
}

impl lines::RecordSink<FileRecord> for KeptRecords {
    fn take(&mut self, list: usize, record: FileRecord) {
        if self.lists.len() <= list {
            self.lists.resize_with(list + 1, Vec::new);
        }
        self.lists[list].push(record);
    }
}

/// How deep a file record sits in a manifest (the manifest, `stores`, a
/// store, `files`): records and anything deeper are written on one line.
pub const RECORD_DEPTH: usize = 4;

/// Refuses a manifest whose `format_version` is missing or not a number
/// (`None`), or not [`FORMAT_VERSION`].
fn check_version(version: Option<u64>) -> std::result::Result<(), String> {
    match version {
        Some(v) if v == u64::from(FORMAT_VERSION) => Ok(()),
        Some(v) => Err(format!(
            "format_version {v} is not supported (this bundle tool reads {FORMAT_VERSION})"
        )),
        None => Err("format_version is missing".into()),
    }
}

/// The topology digest: sha256 hex of the sorted `name:kind` lines, newline-joined.
pub fn topology<'a>(stores: impl IntoIterator<Item = (&'a str, StoreKind)>) -> String {
    let mut lines: Vec<String> = stores
        .into_iter()
        .map(|(name, kind)| format!("{name}:{kind}"))
        .collect();
    lines.sort();
    hash::sha256_hex(lines.join("\n").as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn topology_ignores_order() {
        let a = topology([("b", StoreKind::Dir), ("a", StoreKind::Sqlite)]);
        let b = topology([("a", StoreKind::Sqlite), ("b", StoreKind::Dir)]);
        assert_eq!(a, b);
        assert_eq!(a, hash::sha256_hex(b"a:sqlite\nb:dir"));
        assert_ne!(
            a,
            topology([("a", StoreKind::Jsonl), ("b", StoreKind::Dir)])
        );
    }

    #[test]
    fn a_statx_gives_the_identity_and_owner_the_metadata_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"twelve bytes").unwrap();
        let stat = rustix::fs::statx(
            rustix::fs::CWD,
            &path,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::BASIC_STATS,
        )
        .unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(SourceStat::of_statx(&stat), SourceStat::of(&meta));
        assert_eq!(SourceStat::of_statx(&stat).bytes, 12);
        assert_eq!(
            crate::rooted::Ownership::of_statx(&stat),
            crate::rooted::Ownership::of(&meta)
        );
        // Big device numbers are put together as the C library does.
        assert_eq!(rustix::fs::makedev(0x1234, 0x56789), 0x1000_5672_3489);
    }

    #[test]
    fn a_file_record_stays_small() {
        // A manifest of 200,000 files holds as many records: the rare facts
        // (a database's, a JSONL file's, a path that is not UTF-8) are boxed.
        assert!(std::mem::size_of::<FileRecord>() <= 184);
    }

    #[test]
    fn unknown_versions_and_shapes_are_rejected() {
        assert!(Manifest::parse(b"{\"format_version\": 2}")
            .unwrap_err()
            .contains("format_version 2 is not supported"));
        assert!(Manifest::parse(b"{}").unwrap_err().contains("missing"));
        assert!(Manifest::parse(b"[1,2]").is_err());
        assert!(Manifest::parse(b"{\"format_version\": 1, \"id\": 5}").is_err());
    }

    // Fuzzing the manifest parser: arbitrary bytes, and valid manifests with
    // bytes changed, never panic; whatever parses serializes back and parses again.
    pub(crate) const SAMPLE: &str = r#"{"format_version":1,"id":"20261123T173000Z","created_at":"2026-11-23T17:30:00Z","label":null,"tool":{"name":"bundle","version":"0.1.0"},"host":"h","git":null,"topology":"t","stores":[{"name":"kb","kind":"jsonl","source":"/x","status":"ok","files":[{"path":"kb/a.jsonl","bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","jsonl":{"lines":1,"invalid_lines":0},"source_stat":{"dev":1,"ino":2,"bytes":3,"mtime_ns":4,"ctime_ns":5,"wal":{"dev":1,"ino":3,"bytes":0,"mtime_ns":0,"ctime_ns":0}},"reused":false}]}]}"#;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let _ = Manifest::parse(&bytes);
        }

        #[test]
        fn damaged_manifests_never_panic(edits in proptest::collection::vec((0usize..SAMPLE.len(), proptest::num::u8::ANY), 1..6)) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            for (at, b) in edits {
                bytes[at] = b;
            }
            if let Ok(m) = Manifest::parse(&bytes) {
                let again = Manifest::parse(&m.to_bytes());
                proptest::prop_assert_eq!(again, Ok(m));
            }
        }
    }

    #[test]
    fn the_fuzz_sample_is_a_valid_manifest() {
        assert!(Manifest::parse(SAMPLE.as_bytes()).is_ok());
    }

    #[test]
    fn a_streamed_manifest_has_the_bytes_and_sum_of_the_whole_one() {
        let manifest = Manifest::parse(SAMPLE.as_bytes()).unwrap();
        let mut out = hash::HashingWriter::new(Vec::new());
        manifest.write_to(&mut out).unwrap();
        let (bytes, len, sha256) = out.finish();
        assert_eq!(bytes, manifest.to_bytes());
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(sum_line(&sha256), manifest_sum(&bytes));
        assert!(bytes.ends_with(b"}\n"));
    }

    #[test]
    fn a_manifest_read_from_disk_is_the_one_parsed_and_refused_alike() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join(MANIFEST_FILE);
        let bytes = Manifest::parse(SAMPLE.as_bytes()).unwrap().to_bytes();
        std::fs::write(&at, &bytes).unwrap();
        let (manifest, sha256) = Manifest::read_hashed(&at).unwrap();
        assert_eq!(sha256, hash::sha256_hex(&bytes));
        assert_eq!(Some(manifest), Manifest::parse(&bytes).ok());
        // A bad manifest on disk gets the reason parsing its bytes gives.
        let reason = |text: &[u8]| {
            std::fs::write(&at, text).unwrap();
            match Manifest::read_hashed(&at).unwrap_err() {
                Error::Manifest { reason, .. } => reason,
                other => panic!("{other}"),
            }
        };
        for text in [
            &b"{\"format_version\": 2, \"id\": 5}"[..],
            b"{\"id\": \"x\"}",
            b"{\"format_version\": 1, \"id\": 5}",
            b"{\"format_version\": 1,",
            &bytes[..bytes.len() / 2],
        ] {
            assert_eq!(reason(text), Manifest::parse(text).unwrap_err());
        }
        assert!(reason(b"{\"format_version\": 2}").contains("format_version 2 is not supported"));
    }
}
