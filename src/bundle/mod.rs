//! A bundle on disk: its id, the destination lock, staging, and finding bundles.

pub mod id;
pub mod locate;
pub mod lock;
pub mod staging;

pub use id::BundleId;
pub use locate::{list, resolve, BundleListing, ListedBundle};
