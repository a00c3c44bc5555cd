//! File formats: one module per format, each owning everything done to a
//! file of that format — capture, check, verify, merge — whatever store kind
//! it sits in. Below `store/` (which only says how a kind's source splits
//! into files) and above the bottom layer (`fsutil`, `rooted`, `manifest`).

pub mod chroma;
pub mod hnsw;
pub mod jsonl;
pub mod jsonl_merge;
pub mod lance;
pub mod plain;
pub mod sqlite;
pub mod sqlite_merge;
pub mod sqlite_replace;
