//! Raw plans: a store's exact bytes, for a safety snapshot of a live store
//! that cannot be captured the normal way (a corrupt database, say).
//!
//! Before a restore overwrites a store, its safety snapshot must keep what is
//! there, however damaged. A raw plan copies every regular file of the store
//! as plain bytes (SQLite files and their `-wal`/`-shm`/`-journal` sidecars
//! alike), checking nothing; the store is then recorded as `damaged`.

use std::path::Path;

use crate::config::{StoreKind, StoreSpec};
use crate::error::{Error, Result};
use crate::format::sqlite::SIDECARS;
use crate::store::{file_name_of, manifest_path, plan_capture, CapturePlan, Unit, UnitKind};

/// Plans copying `spec`'s files byte for byte, sidecars included.
pub fn plan_raw_capture(spec: &StoreSpec) -> Result<CapturePlan> {
    let mut plan = match spec.kind {
        // The normal walk reads the header, which may be what is damaged.
        StoreKind::Sqlite => single_file(spec)?,
        StoreKind::Jsonl | StoreKind::Dir | StoreKind::Chroma | StoreKind::Lancedb => {
            plan_capture(spec)?
        }
    };
    let mut sidecars = Vec::new();
    for unit in &mut plan.units {
        unit.kind = UnitKind::Plain;
        for suffix in SIDECARS {
            let mut src = unit.src().into_owned().into_os_string();
            src.push(suffix);
            let src = std::path::PathBuf::from(src);
            let Ok(meta) = std::fs::symlink_metadata(&src) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let bundle_rel = unit.rel();
            let rel = bundle_rel.strip_prefix(&spec.name).unwrap_or(&bundle_rel);
            let mut rel = rel.as_os_str().to_os_string();
            rel.push(suffix);
            let at = manifest_path(&spec.name, Path::new(&rel))?;
            sidecars.push(Unit::new(at.0, &src, UnitKind::Plain, meta.len()));
        }
    }
    plan.units.extend(sidecars);
    plan.status = None;
    Ok(plan)
}

/// The raw plan of a single-file store: the file, whatever it holds.
fn single_file(spec: &StoreSpec) -> Result<CapturePlan> {
    let meta = std::fs::symlink_metadata(&spec.path)
        .map_err(|e| Error::io("could not stat", &spec.path, e))?;
    if !meta.is_file() {
        return Err(Error::Refused(format!(
            "store \"{}\": {} is not a regular file",
            spec.name,
            spec.path.display()
        )));
    }
    let name = file_name_of(spec)?;
    let at = manifest_path(&spec.name, Path::new(&name))?;
    Ok(CapturePlan {
        single_file: Some(name),
        folders: vec![std::path::PathBuf::from(&spec.name)],
        units: vec![Unit::new(at.0, &spec.path, UnitKind::Plain, meta.len())],
        ..CapturePlan::default()
    })
}
