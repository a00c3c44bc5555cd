//! A bundle on disk: its id, the destination lock, staging, and finding bundles.

pub mod destination;
pub mod id;
pub mod journal;
pub mod locate;
pub mod lock;
pub mod presence;
pub mod staging;

pub use id::BundleId;
pub use locate::{list, list_summaries, newest_first, resolve, BundleListing, ListedBundle};
pub use presence::{files_present, read_checking_presence};

use std::path::Path;

/// Whether a bundle-relative path lies inside store `name`'s folder.
pub fn in_store(rel: &Path, name: &str) -> bool {
    rel.starts_with(name) && rel != Path::new(name)
}
