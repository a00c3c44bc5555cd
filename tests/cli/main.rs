//! Integration tests: drive the real `bundle` binary over real stores built in
//! temp dirs from SQL and JSONL text.

mod support;

mod bad_day;
mod chroma;
mod chroma_kind;
mod create;
mod encrypted;
mod escape;
mod faults;
mod forged;
mod hooks;
mod hostile;
mod lancedb;
mod list;
mod permissions;
mod prune;
mod remote;
mod remote_faults;
mod resources;
mod restore;
mod reuse;
mod schedule;
mod schema;
mod scripting;
mod signals;
mod snapshots;
mod sqlite_vec;
mod verify;
mod writers;
