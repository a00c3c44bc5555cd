//! A bundle on disk: its id, the destination lock, staging, and finding bundles.

pub mod destination;
pub mod id;
pub mod journal;
pub mod locate;
pub mod lock;
pub mod staging;

pub use id::BundleId;
pub use locate::{
    list, list_summaries, newest_until, resolve, BundleListing, ListedBundle, Wanted,
};

use std::path::Path;

use crate::manifest::{FileRecord, Manifest};

/// The cheap check `prune` relies on: every file the manifest lists is present
/// under the store's folder, is a regular file and has its recorded size.
/// Returns the first problem found (in manifest order), or `None` when the
/// bundle looks complete. The files are stat'ed on every core, in runs of
/// [`PRESENT_RUN`]: a create runs this on the bundle it reuses from before
/// anything else, and one thread took as long as all the links after it.
pub fn files_present(bundle: &Path, manifest: &Manifest) -> Option<String> {
    // Runs of each store's records, borrowed (a list of every record would
    // be 5 MB at 200,000 files).
    let runs: Vec<(&str, &[FileRecord])> = manifest
        .stores
        .iter()
        .flat_map(|s| {
            s.files
                .chunks(PRESENT_RUN)
                .map(move |run| (s.name.as_str(), run))
        })
        .collect();
    let found = crate::parallel::map(&runs, crate::parallel::default_jobs(), |(store, run)| {
        // The files of one folder are stat'ed by name beneath it.
        let mut folder = crate::fsutil::LastFolder::default();
        Ok(run
            .iter()
            .find_map(|file| file_problem(bundle, store, file, &mut folder)))
    });
    match found {
        Ok(problems) => problems.into_iter().flatten().next(),
        // Never taken (each run returns `Ok`); were it, the bundle is not
        // called complete.
        Err(e) => Some(e.to_string()),
    }
}

/// How many files one thread of [`files_present`] checks at a time.
const PRESENT_RUN: usize = 1024;

/// Why one listed file is not present as recorded, if it is not.
fn file_problem(
    bundle: &Path,
    store: &str,
    file: &FileRecord,
    folder: &mut crate::fsutil::LastFolder,
) -> Option<String> {
    use rustix::fs::{AtFlags, FileType};
    let path = match file.rel() {
        Ok(rel) if in_store(&rel, store) => bundle.join(rel),
        Ok(_) => return Some(format!("{}: path is outside the store's folder", file.path)),
        Err(e) => return Some(format!("{}: unsafe path: {e}", file.path)),
    };
    let stat = folder
        .of(&path)
        .and_then(|(at, name)| Ok(rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?));
    match stat {
        Ok(m) if FileType::from_raw_mode(m.st_mode) == FileType::RegularFile => {
            let bytes = m.st_size as u64;
            (bytes != file.bytes).then(|| {
                format!(
                    "{}: size is {bytes} bytes, manifest says {}",
                    file.path, file.bytes
                )
            })
        }
        Ok(_) => Some(format!("{}: not a regular file", file.path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("{}: file is missing", file.path))
        }
        Err(e) => Some(format!("{}: cannot stat: {e}", file.path)),
    }
}

/// Whether a bundle-relative path lies inside store `name`'s folder.
pub fn in_store(rel: &Path, name: &str) -> bool {
    rel.starts_with(name) && rel != Path::new(name)
}
