//! `bundle drill`: restore a bundle into a scratch folder, check it against
//! its manifest and with each store's own `check` command, then remove it.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, StoreSpec};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::restore::{restore, Mode, RestoreOptions, StoreReport};

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// Whether the bundle restored cleanly and every check passed.
    pub ok: bool,
    /// The bundle folder.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub bundle: std::path::PathBuf,
    /// The bundle id.
    pub bundle_id: String,
    /// Whether the drill's writes were confined by the kernel.
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Per store, what was restored (and what its `check` said).
    pub stores: Vec<StoreReport>,
}

/// Restores every store of the bundle into a temp folder, checks the result
/// against the manifest, runs the `check` command `stores` configures for
/// each store on its restored copy, and removes the folder.
pub fn drill(
    bundle: &Path,
    scratch_parent: Option<&Path>,
    stores: &[StoreSpec],
    progress: &dyn Progress,
) -> Result<DrillReport> {
    let scratch = match scratch_parent {
        Some(p) => tempfile::Builder::new()
            .prefix("bundle-drill-")
            .tempdir_in(p),
        None => tempfile::Builder::new().prefix("bundle-drill-").tempdir(),
    }
    .map_err(|e| {
        Error::io(
            "could not create a scratch folder in",
            scratch_parent.unwrap_or(Path::new("/tmp")),
            e,
        )
    })?;
    let _scratch = crate::interrupt::scratch(scratch.path(), "the drill's scratch folder");
    let report = restore(
        &RestoreOptions {
            bundle: bundle.to_path_buf(),
            mode: Mode::Replace,
            only: Vec::new(),
            config: Config::default(),
            into: Some(scratch.path().to_path_buf()),
            dry_run: false,
            confirm_token: None,
            safety_snapshot: false,
            force_topology_mismatch: true,
        },
        progress,
    )?;
    let mut report = DrillReport {
        ok: report.ok,
        bundle: report.bundle,
        bundle_id: report.bundle_id,
        sandbox: report.sandbox,
        stores: report.stores,
    };
    let manifest = crate::manifest::Manifest::read(&bundle.join(crate::manifest::MANIFEST_FILE))?;
    for store in &mut report.stores {
        let command = stores
            .iter()
            .find(|s| s.name == store.name)
            .and_then(|s| s.check.as_deref());
        let record = manifest.stores.iter().find(|s| s.name == store.name);
        let rechecked = record.is_some_and(|r| r.chroma.is_some() || r.lancedb.is_some());
        if command.is_none() && !rechecked {
            continue;
        }
        let kind_check = match record {
            Some(record) => crate::store::recheck_restored(record, &store.target, &[]),
            None => Ok(()),
        };
        let outcome = kind_check.and_then(|()| match command {
            Some(command) => crate::hooks::run_store_check(command, &store.target),
            None => Ok(()),
        });
        if outcome.is_err() {
            report.ok = false;
        }
        store.check = Some(outcome.map_or_else(|e| e, |()| "ok".into()));
    }
    Ok(report)
}
