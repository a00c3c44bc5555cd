//! `bundle`: back up an application's SQLite, JSONL and directory stores
//! together into one timestamped, self-describing bundle folder, and prove it whole.
//!
//! The library does all the work and never prints; the `bundle` binary parses
//! arguments, draws progress through [`progress::Progress`] and maps
//! [`Error`]s to the exit codes of [`ExitCode`].

pub mod bundle;
pub mod capture;
pub mod config;
pub mod create;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod hash;
pub mod history;
pub mod hooks;
pub mod interrupt;
pub mod json_layout;
pub mod manifest;
pub mod open_files;
pub mod parallel;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod retention;
pub mod reuse;
pub mod rooted;
pub mod sandbox;
pub mod schedule;
pub mod settle;
pub mod shrink;
pub mod sparse;
pub mod store;
pub mod vcs;
pub mod verify;
pub mod writeback;

pub use error::{Error, ExitCode, Result};
