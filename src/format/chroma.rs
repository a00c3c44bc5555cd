//! The Chroma persist directory format (`chromadb` 1.x, local persistent
//! client): `chroma.sqlite3` plus one folder per HNSW vector segment, named
//! by the segment's id, holding `header.bin`, `data_level0.bin`,
//! `length.bin`, `link_lists.bin` and `index_metadata.pickle`.
//!
//! The index files themselves are [`super::hnsw`]'s.
//! [`inspect`] reads a directory (a bundle's copy, never a live store) and
//! checks that its files agree with themselves and with each other, the way
//! the client needs them to; docs/format.md lists the facts relied on. It
//! returns what a bundle records per collection, so `verify` can compare.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use crate::manifest::{ChromaFacts, CollectionFacts};

/// The database at the root of a persist directory.
pub const DATABASE: &str = "chroma.sqlite3";

pub use super::hnsw::ID_MAP;

/// The segment type of a persisted HNSW index.
const HNSW_SEGMENT: &str = "urn:chroma:segment/vector/hnsw-local-persisted";

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
                let index = super::hnsw::check_index(&folder, c.dimension).map_err(in_folder)?;
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

/// Whether `id` is a UUID in its usual text form (so it names a folder
/// right under the store, whatever a forged database says).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `dir` looks like a Chroma persist directory.
pub fn looks_like(dir: &Path) -> bool {
    dir.join(DATABASE).is_file()
}

/// Re-reads the restored store at `dir` and compares it with what the
/// bundle records; the first problem found.
pub fn recheck(recorded: &ChromaFacts, dir: &Path) -> Result<(), String> {
    let found =
        inspect(dir).map_err(|e| format!("the restored Chroma store is not consistent: {e}"))?;
    match differences(recorded, &found).first() {
        Some(d) => Err(format!(
            "the restored Chroma store differs from the bundle: {d}"
        )),
        None => Ok(()),
    }
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
