//! A persisted HNSW index as Chroma's hnswlib fork writes it (persistence
//! version 1): `header.bin`, `data_level0.bin`, `length.bin`,
//! `link_lists.bin`, and Chroma's id map `index_metadata.pickle` beside them.
//! [`check_index`] checks that the five agree with each other; the layout is
//! in docs/format.md#chroma-stores.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Deserialize;

/// The id map Chroma keeps beside each index.
pub const ID_MAP: &str = "index_metadata.pickle";

/// Size of `header.bin` (persistence version 1 of Chroma's hnswlib).
const HEADER_BYTES: usize = 100;

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
pub fn check_index(folder: &Path, dimension: Option<u64>) -> Result<usize, String> {
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
        .map_err(|e| {
            format!(
                "{ID_MAP} cannot be read as chromadb 1.x writes it ({e}); older chromadb stores are not supported by kind \"chroma\": back them up as kind \"dir\" with the writer stopped"
            )
        })
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
