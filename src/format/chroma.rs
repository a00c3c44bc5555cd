//! The Chroma persist directory format (`chromadb` 1.x, local persistent
//! client): `chroma.sqlite3` plus one folder per HNSW vector segment, named
//! by the segment's id, holding `header.bin`, `data_level0.bin`,
//! `length.bin`, `link_lists.bin` and `index_metadata.pickle`.
//!
//! [`inspect`] reads a directory (a bundle's copy, never a live store) and
//! checks that its files agree with themselves and with each other, the way
//! the client needs them to; docs/format.md lists the facts relied on. It
//! returns what a bundle records per collection, so `verify` can compare.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Deserialize;

pub use crate::manifest::{ChromaFacts, CollectionFacts};

/// The database at the root of a persist directory.
pub const DATABASE: &str = "chroma.sqlite3";

/// The id map Chroma keeps beside each index.
pub const ID_MAP: &str = "index_metadata.pickle";

/// The four files of a persisted HNSW index.
pub const INDEX_FILES: [&str; 4] = [
    "header.bin",
    "data_level0.bin",
    "length.bin",
    "link_lists.bin",
];

/// The segment type of a persisted HNSW index.
const HNSW_SEGMENT: &str = "urn:chroma:segment/vector/hnsw-local-persisted";

/// Size of `header.bin` (persistence version 1 of Chroma's hnswlib).
const HEADER_BYTES: usize = 100;

/// A collection row with its segments, from `chroma.sqlite3`.
struct Collection {
    name: String,
    id: String,
    dimension: Option<u64>,
    metadata_segment: Option<String>,
    vector_segment: Option<(String, String)>,
}

/// Reads and cross-checks the persist directory at `root`. The database is
/// opened read-only and immutable: only use this on a copy.
pub fn inspect(root: &Path) -> Result<ChromaFacts, String> {
    let db = root.join(DATABASE);
    let conn = super::sqlite::open_copy(&db).map_err(|e| format!("{DATABASE}: {e}"))?;
    let sq = |e: rusqlite::Error| format!("{DATABASE}: {e} (is this a Chroma 1.x store?)");
    let collections = read_collections(&conn).map_err(sq)?;
    let seq_ids = read_seq_ids(&conn).map_err(sq)?;
    let mut facts = Vec::new();
    for c in collections {
        let embeddings = match &c.metadata_segment {
            Some(segment) => {
                let applied = seq_ids.get(segment).copied().unwrap_or(0);
                count_after_log(&conn, &c.id, segment, applied).map_err(sq)?
            }
            None => 0,
        };
        let mut index_elements = 0;
        let mut index_seq_id = None;
        if let Some((segment, kind)) = &c.vector_segment {
            if !is_uuid(segment) {
                return Err(format!(
                    "collection \"{}\": segment id {segment:?} is not a UUID",
                    c.name
                ));
            }
            let folder = root.join(segment);
            index_seq_id = seq_ids.get(segment).copied();
            let in_folder = |e: String| format!("collection \"{}\": {segment}/{e}", c.name);
            if kind != HNSW_SEGMENT {
                return Err(format!(
                    "collection \"{}\": vector segment type {kind} is not one this version reads",
                    c.name
                ));
            }
            if std::fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
                let index = check_index(&folder, c.dimension).map_err(in_folder)?;
                index_elements = index as u64;
            } else if index_seq_id.is_some() {
                return Err(format!(
                    "collection \"{}\": {DATABASE} says its index was persisted, but folder {segment} is missing",
                    c.name
                ));
            }
        }
        facts.push(CollectionFacts {
            name: c.name,
            id: c.id,
            dimension: c.dimension,
            embeddings,
            index_elements,
            index_seq_id,
        });
    }
    facts.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(ChromaFacts { collections: facts })
}

/// The collections and their segments.
fn read_collections(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Collection>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare("SELECT id, name, dimension FROM collections ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok(Collection {
            id: r.get(0)?,
            name: r.get(1)?,
            dimension: r.get::<_, Option<i64>>(2)?.map(|d| d as u64),
            metadata_segment: None,
            vector_segment: None,
        })
    })?;
    for row in rows {
        out.push(row?);
    }
    let mut stmt = conn.prepare("SELECT id, type, scope, collection FROM segments")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (id, kind, scope, collection) = row?;
        if let Some(c) = out.iter_mut().find(|c| c.id == collection) {
            match scope.as_str() {
                "METADATA" => c.metadata_segment = Some(id),
                "VECTOR" => c.vector_segment = Some((id, kind)),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// What the client's `count()` says once it has applied its log: the
/// metadata segment's embeddings, plus the ids the log adds after the
/// segment's position (last operation add or upsert) and minus those it
/// deletes (last operation delete).
fn count_after_log(
    conn: &rusqlite::Connection,
    collection: &str,
    segment: &str,
    applied: u64,
) -> rusqlite::Result<u64> {
    let base: i64 = conn.query_row(
        "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?1",
        [segment],
        |r| r.get(0),
    )?;
    // A bare column beside MAX() comes from the row holding the maximum.
    let change: Option<i64> = conn.query_row(
        "SELECT SUM(CASE WHEN p.op IN (0, 2) AND e.embedding_id IS NULL THEN 1 \
                         WHEN p.op = 3 AND e.embedding_id IS NOT NULL THEN -1 ELSE 0 END) \
         FROM (SELECT id, operation AS op, MAX(seq_id) FROM embeddings_queue \
               WHERE topic LIKE ?1 AND seq_id > ?2 AND operation IN (0, 2, 3) GROUP BY id) p \
         LEFT JOIN embeddings e ON e.segment_id = ?3 AND e.embedding_id = p.id",
        rusqlite::params![format!("%/{collection}"), applied as i64, segment],
        |r| r.get(0),
    )?;
    Ok((base + change.unwrap_or(0)).max(0) as u64)
}

/// Persisted log positions by segment id.
fn read_seq_ids(conn: &rusqlite::Connection) -> rusqlite::Result<HashMap<String, u64>> {
    let mut stmt = conn.prepare("SELECT segment_id, seq_id FROM max_seq_id")?;
    let rows = stmt.query_map([], |r| {
        // Older stores wrote the position as big-endian bytes.
        let seq = match r.get_ref(1)? {
            rusqlite::types::ValueRef::Integer(i) => i as u64,
            rusqlite::types::ValueRef::Blob(b) if b.len() <= 8 => b
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)),
            _ => 0,
        };
        Ok((r.get::<_, String>(0)?, seq))
    })?;
    rows.collect()
}

/// The parsed `header.bin`.
#[derive(Debug)]
struct Header {
    max_elements: u64,
    elements: u64,
    size_per_element: u64,
    label_offset: u64,
    offset_data: u64,
    max_level: i32,
    max_m: u64,
    max_m0: u64,
}

/// Parses `header.bin`: persistence version, then little-endian fields in
/// hnswlib's order (see docs/format.md).
fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() != HEADER_BYTES {
        return Err(format!(
            "header.bin is {} bytes, not {HEADER_BYTES}",
            bytes.len()
        ));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(0) != 1 {
        return Err(format!(
            "header.bin has persistence version {}, this version reads 1",
            u32_at(0)
        ));
    }
    if u64_at(4) != 0 {
        return Err("header.bin: level-0 offset is not 0".into());
    }
    Ok(Header {
        max_elements: u64_at(12),
        elements: u64_at(20),
        size_per_element: u64_at(28),
        label_offset: u64_at(36),
        offset_data: u64_at(44),
        max_level: u32_at(52) as i32,
        max_m: u64_at(60),
        max_m0: u64_at(68),
    })
}

impl Header {
    /// Checks the header's sizes against each other and the collection's dimension.
    fn check(&self, dimension: Option<u64>) -> Result<(), String> {
        let bad = |what: &str| Err(format!("header.bin: {what}"));
        if self.elements > self.max_elements {
            return bad("more elements than capacity");
        }
        if self.max_m0 == 0 || self.max_m0 > u64::from(u16::MAX) || self.max_m == 0 {
            return bad("link counts out of range");
        }
        if self.offset_data != self.max_m0 * 4 + 4 {
            return bad("vector offset does not follow the level-0 links");
        }
        let vector_bytes = self.label_offset.checked_sub(self.offset_data);
        if vector_bytes.is_none_or(|b| b == 0 || b % 4 != 0) {
            return bad("vector size is not a whole number of floats");
        }
        if self.size_per_element != self.label_offset + 8 {
            return bad("element size does not end with its label");
        }
        if !(0..64).contains(&self.max_level) {
            return bad("level out of range");
        }
        let dim = vector_bytes.unwrap_or(0) / 4;
        match dimension {
            Some(d) if d != dim => Err(format!(
                "header.bin: index vectors have dimension {dim}, the collection says {d}"
            )),
            _ => Ok(()),
        }
    }
}

/// Chroma's id map (`index_metadata.pickle`, as chromadb 1.x writes it).
#[derive(Debug, Deserialize)]
struct IdMap {
    #[serde(default)]
    dimensionality: Option<u64>,
    #[serde(default)]
    label_to_id: BTreeMap<u64, String>,
    #[serde(default)]
    id_to_label: BTreeMap<String, u64>,
}

/// Elements larger than this are refused unread (a dimension of about 250,000).
const MAX_ELEMENT_BYTES: u64 = 1 << 20;

/// Checks one persisted index folder; returns the ids it holds. Reads each
/// file once, streaming, so memory stays flat on big indexes.
fn check_index(folder: &Path, dimension: Option<u64>) -> Result<usize, String> {
    let mut header_bytes = Vec::new();
    open(folder, "header.bin")?
        .0
        .take(HEADER_BYTES as u64 + 1)
        .read_to_end(&mut header_bytes)
        .map_err(|e| format!("header.bin: cannot read: {e}"))?;
    let header = parse_header(&header_bytes)?;
    header.check(dimension)?;
    let size = header.size_per_element;
    if size > MAX_ELEMENT_BYTES {
        return Err(format!(
            "header.bin: elements of {size} bytes are not plausible"
        ));
    }
    let fits = |len: u64, each: u64| {
        header
            .elements
            .checked_mul(each)
            .is_some_and(|need| len >= need)
            && header
                .max_elements
                .checked_mul(each)
                .is_some_and(|cap| len <= cap)
    };
    let level0_len = open(folder, "data_level0.bin")?.1;
    if level0_len % size != 0 || !fits(level0_len, size) {
        return Err(format!(
            "data_level0.bin is {level0_len} bytes; the header's {} elements of {size} bytes (capacity {}) do not fit it",
            header.elements, header.max_elements
        ));
    }
    let lengths = open(folder, "length.bin")?.1;
    if !fits(lengths, 4) {
        return Err(format!(
            "length.bin is {lengths} bytes, not one float per element ({} elements)",
            header.elements
        ));
    }
    check_link_lists(folder, &header)?;
    let labels = live_labels(folder, &header)?;
    let mut id_map_bytes = Vec::new();
    open(folder, ID_MAP)?
        .0
        .read_to_end(&mut id_map_bytes)
        .map_err(|e| format!("{ID_MAP}: cannot read: {e}"))?;
    let id_map = read_id_map(&id_map_bytes)?;
    if let (Some(d), Some(hd)) = (id_map.dimensionality, dimension) {
        if d != hd {
            return Err(format!(
                "{ID_MAP} says dimension {d}, the collection says {hd}"
            ));
        }
    }
    if id_map.label_to_id.len() != id_map.id_to_label.len()
        || id_map
            .id_to_label
            .iter()
            .any(|(id, label)| id_map.label_to_id.get(label) != Some(id))
    {
        return Err(format!("{ID_MAP}: its two id maps disagree"));
    }
    let mapped: BTreeSet<u64> = id_map.label_to_id.keys().copied().collect();
    if let Some(label) = labels.difference(&mapped).next() {
        return Err(format!(
            "the index holds label {label}, which {ID_MAP} does not map to an id (torn across files: queries fail with \"Error finding id\")"
        ));
    }
    if let Some(label) = mapped.difference(&labels).next() {
        return Err(format!(
            "{ID_MAP} maps label {label}, which the index does not hold (torn across files)"
        ));
    }
    Ok(mapped.len())
}

/// Whether `id` is a UUID in its usual text form (so it names a folder
/// right under the store, whatever a forged database says).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A buffered reader of a file of the index, and its length; never through a link.
fn open(folder: &Path, name: &str) -> Result<(BufReader<File>, u64), String> {
    let path = folder.join(name);
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(format!("{name} is missing or not a regular file"));
    }
    let file = File::open(folder.join(name)).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    Ok((BufReader::with_capacity(1 << 16, file), len))
}

/// Parses the id map, refusing an empty or truncated one.
fn read_id_map(bytes: &[u8]) -> Result<IdMap, String> {
    if bytes.is_empty() {
        return Err(format!(
            "{ID_MAP} is empty (torn: the client fails with \"EOF while parsing\")"
        ));
    }
    serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new())
        .map_err(|e| format!("{ID_MAP} cannot be read: {e}"))
}

/// Walks `link_lists.bin`: one length-prefixed list of upper-level links per
/// element, each a whole number of levels, all inside the file.
fn check_link_lists(folder: &Path, header: &Header) -> Result<(), String> {
    let name = "link_lists.bin";
    let (mut reader, total) = open(folder, name)?;
    let per_level = header.max_m * 4 + 4;
    let mut at = 0u64;
    for element in 0..header.elements {
        let mut size = [0u8; 4];
        if reader.read_exact(&mut size).is_err() {
            return Err(format!(
                "{name} ends before element {element} of {}",
                header.elements
            ));
        }
        let size = u64::from(u32::from_le_bytes(size));
        if size % per_level != 0 || size / per_level > header.max_level as u64 {
            return Err(format!(
                "{name}: element {element} has a link list of {size} bytes, not up to {} levels of {per_level}",
                header.max_level
            ));
        }
        at += 4 + size;
        if at > total {
            return Err(format!("{name} ends inside element {element}'s link list"));
        }
        reader
            .seek_relative(size as i64)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// The labels of the elements not marked deleted, after checking each
/// element's level-0 links point at elements that exist.
fn live_labels(folder: &Path, header: &Header) -> Result<BTreeSet<u64>, String> {
    let name = "data_level0.bin";
    let (mut reader, _) = open(folder, name)?;
    let mut element_bytes = vec![0u8; header.size_per_element as usize];
    let mut labels = BTreeSet::new();
    for element in 0..header.elements {
        reader
            .read_exact(&mut element_bytes)
            .map_err(|e| format!("{name}: element {element}: {e}"))?;
        let links = &element_bytes[..header.offset_data as usize];
        let count = u64::from(u16::from_le_bytes([links[0], links[1]]));
        if count > header.max_m0 {
            return Err(format!(
                "{name}: element {element} claims {count} links, more than {}",
                header.max_m0
            ));
        }
        for neighbour in links[4..4 + count as usize * 4].chunks_exact(4) {
            let neighbour = u32::from_le_bytes(neighbour.try_into().expect("4 bytes"));
            if u64::from(neighbour) >= header.elements {
                return Err(format!(
                    "{name}: element {element} links to element {neighbour}, past the {} the header counts",
                    header.elements
                ));
            }
        }
        let deleted = links[2] & 0x01 != 0;
        let at = header.label_offset as usize;
        let label = u64::from_le_bytes(element_bytes[at..at + 8].try_into().expect("8 bytes"));
        if !deleted && !labels.insert(label) {
            return Err(format!("{name}: label {label} is held twice"));
        }
    }
    Ok(labels)
}

/// Whether `dir` looks like a Chroma persist directory.
pub fn looks_like(dir: &Path) -> bool {
    dir.join(DATABASE).is_file()
}

/// How facts differ: one line per difference, or none.
pub fn differences(recorded: &ChromaFacts, found: &ChromaFacts) -> Vec<String> {
    let mut out = Vec::new();
    let key = |c: &CollectionFacts| (c.name.clone(), c.id.clone());
    let found_by: BTreeMap<_, _> = found.collections.iter().map(|c| (key(c), c)).collect();
    let recorded_by: BTreeMap<_, _> = recorded.collections.iter().map(|c| (key(c), c)).collect();
    for (k, r) in &recorded_by {
        match found_by.get(k) {
            None => out.push(format!("collection \"{}\" is recorded but not in the copy", k.0)),
            Some(f) if f != r => out.push(format!(
                "collection \"{}\": recorded {} embeddings / {} indexed (dimension {}), the copy holds {} / {} (dimension {})",
                k.0,
                r.embeddings,
                r.index_elements,
                show(r.dimension),
                f.embeddings,
                f.index_elements,
                show(f.dimension)
            )),
            Some(_) => {}
        }
    }
    for k in found_by.keys().filter(|k| !recorded_by.contains_key(*k)) {
        out.push(format!(
            "collection \"{}\" is in the copy but not recorded",
            k.0
        ));
    }
    out
}

/// A dimension for messages.
fn show(d: Option<u64>) -> String {
    d.map_or_else(|| "none".to_string(), |d| d.to_string())
}
