//! Typed errors of the library and the exit code each one maps to.
//!
//! Every variant names what it was working on (a store, a path) so the binary
//! can print one clear message; [`Error::exit_code`] is the documented contract
//! between failures and the process exit status.

use std::path::{Path, PathBuf};

/// Documented process exit codes (see `docs/exit-codes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything worked.
    Success = 0,
    /// Verification failed, or an operation failed its own checks.
    CheckFailed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Refused by a safety check.
    Refused = 3,
    /// I/O or other runtime error.
    Runtime = 4,
}

/// Any failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or the config file is wrong.
    #[error("{0}")]
    Usage(String),

    /// The config file could not be read or parsed.
    #[error("invalid config {}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A safety check refused the operation.
    #[error("{0}")]
    Refused(String),

    /// An operation's own check of its result failed (integrity, parity).
    #[error("store \"{store}\": {reason}")]
    CheckFailed {
        /// The store being worked on.
        store: String,
        /// What did not hold.
        reason: String,
    },

    /// A file system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (e.g. "could not read").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// SQLite reported an error.
    /// Talking to a remote failed (unreachable, a missing bucket, refused
    /// credentials); never carries a secret.
    #[error("remote \"{remote}\": {reason}")]
    Remote {
        /// The remote's name.
        remote: String,
        /// What failed.
        reason: String,
    },
    /// The identity given cannot decrypt a bundle of an encrypted remote.
    #[error("bundle {bundle} on remote \"{remote}\" cannot be decrypted: {reason}; nothing was written (give the identity whose public key is among the remote's recipients)")]
    WrongKey {
        /// The remote's name.
        remote: String,
        /// The bundle.
        bundle: String,
        /// What the decryption said.
        reason: String,
    },
    #[error("sqlite error on {}", path.display())]
    Sqlite {
        /// The database file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// A bundle's manifest could not be read or is not one we understand.
    #[error("bad manifest {}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A bundle failed its preflight verification; nothing was touched.
    #[error("bundle {} failed verification ({} problem(s)): {}; nothing was changed", bundle.display(), problems.len(), problems.first().map(String::as_str).unwrap_or(""))]
    BundleInvalid {
        /// The bundle folder.
        bundle: PathBuf,
        /// What verify found, one line each.
        problems: Vec<String>,
    },

    /// Not enough free space for what is about to be written.
    #[error("not enough free space on the file system of {}: {} needed, {} available ({needed} and {available} bytes); free some space or choose another destination", path.display(), indicatif::HumanBytes(*needed), indicatif::HumanBytes(*available))]
    NoSpace {
        /// A path on the file system concerned.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },

    /// A hook command failed, timed out or could not start.
    #[error("the {hook} hook failed: {reason}")]
    Hook {
        /// Which hook (`pre_create`, `post_restore`, …).
        hook: &'static str,
        /// What went wrong, and what state the operation was left in.
        reason: String,
    },

    /// The operation failed, and the post hook run afterwards failed too.
    #[error("{operation}; the {hook} hook run afterwards failed as well: {reason}")]
    PostHookAlsoFailed {
        /// The operation's own failure (decides the exit code).
        operation: Box<Error>,
        /// Which post hook.
        hook: &'static str,
        /// How it failed.
        reason: String,
    },

    /// A failure with what had already happened (e.g. "bundle X was created").
    #[error("{context}")]
    Context {
        /// What had happened, and what failed.
        context: String,
        /// The failure (decides the exit code).
        #[source]
        source: Box<Error>,
    },

    /// A write beneath a store's folder would have gone through a symlink (or
    /// a file where a folder should be); nothing was written there.
    #[error("{} goes through a symlink or a non-folder; restore never writes through links (move the link away, or restore with --mode replace, which replaces it)", path.display())]
    ThroughLink {
        /// The path that was to be written.
        path: PathBuf,
    },

    /// A bundle was published, but some of its stores could not be captured
    /// (they are recorded as `failed` in it).
    #[error("bundle {id} was published without {}; the other stores are in it; fix the cause and run create again", failures.iter().map(|(s, why)| format!("store \"{s}\" ({why})")).collect::<Vec<_>>().join(", "))]
    StoresFailed {
        /// The bundle's id.
        id: String,
        /// Its folder.
        path: PathBuf,
        /// Each failed store and why.
        failures: Vec<(String, String)>,
    },

    /// A store could not be captured, with the store's name for context.
    #[error("could not snapshot store \"{store}\"")]
    Snapshot {
        /// The store's name.
        store: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The exit code this error maps to.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Config { .. } => ExitCode::Usage,
            Error::Refused(_) | Error::ThroughLink { .. } => ExitCode::Refused,
            Error::CheckFailed { .. }
            | Error::BundleInvalid { .. }
            | Error::StoresFailed { .. } => ExitCode::CheckFailed,
            Error::NoSpace { .. } => ExitCode::Runtime,
            Error::Io { .. } | Error::Sqlite { .. } | Error::Manifest { .. } => ExitCode::Runtime,
            Error::Remote { .. } => ExitCode::Runtime,
            Error::WrongKey { .. } => ExitCode::CheckFailed,
            Error::Hook { .. } => ExitCode::CheckFailed,
            Error::PostHookAlsoFailed { operation, .. } => operation.exit_code(),
            Error::Snapshot { source, .. } | Error::Context { source, .. } => source.exit_code(),
        }
    }

    /// A stable, machine-readable name for what went wrong (the `kind` of
    /// `--json` error documents, see docs/cli.md). A wrapped error (context,
    /// a store's snapshot, a post hook that failed afterwards) has the kind
    /// of the failure that decides its exit code.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Config { .. } => "config",
            Error::Refused(_) => "refused",
            Error::ThroughLink { .. } => "through_link",
            Error::CheckFailed { .. } => "check_failed",
            Error::BundleInvalid { .. } => "bundle_invalid",
            Error::StoresFailed { .. } => "stores_failed",
            Error::NoSpace { .. } => "no_space",
            Error::Io { .. } => "io",
            Error::Remote { .. } => "remote",
            Error::WrongKey { .. } => "wrong_identity",
            Error::Sqlite { .. } => "sqlite",
            Error::Manifest { .. } => "manifest",
            Error::Hook { .. } => "hook",
            Error::PostHookAlsoFailed { operation, .. } => operation.kind(),
            Error::Snapshot { source, .. } | Error::Context { source, .. } => source.kind(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds an [`Error::Sqlite`] for `path`.
    pub fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
