//! The `sqlite` store kind: one database file, captured and restored as
//! [`crate::format::sqlite`] does.

use std::path::Path;

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::sqlite::{is_sqlite_file, wal_path, SIDECARS};
use crate::fsutil::EncodedPath;
use crate::manifest::{StoreRecord, StoreStatus};
use crate::plan::{Step, Target};
use crate::store::steps;
use crate::store::{file_name_of, manifest_path, CapturePlan, StoreHandler};
use crate::store::{Unit, UnitKind};

/// The `sqlite` store kind: one database file.
pub struct SqliteStore;

impl StoreHandler for SqliteStore {
    fn live_databases(&self, target: &Path) -> Result<Vec<std::path::PathBuf>> {
        let is_file = std::fs::symlink_metadata(target).is_ok_and(|m| m.is_file());
        Ok(match is_file && is_sqlite_file(target)? {
            true => vec![target.to_path_buf()],
            false => Vec::new(),
        })
    }

    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan> {
        let meta = std::fs::metadata(&spec.path)
            .map_err(|e| Error::io("could not stat", &spec.path, e))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "store \"{}\": {} is not a file; use kind \"dir\" for a folder",
                spec.name,
                spec.path.display()
            )));
        }
        let name = file_name_of(spec)?;
        let mut plan = CapturePlan {
            single_file: Some(name.clone()),
            ..CapturePlan::default()
        };
        if meta.len() == 0 {
            return Ok(plan);
        }
        if !is_sqlite_file(&spec.path)? {
            return Err(Error::Usage(format!(
                "store \"{}\": {} is not an SQLite database (no SQLite header)",
                spec.name,
                spec.path.display()
            )));
        }
        plan.units.push(unit(
            &spec.path,
            manifest_path(&spec.name, Path::new(&name))?.0,
        ));
        Ok(plan)
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        if record.status == StoreStatus::Damaged {
            return plan_raw(record, target);
        }
        let mut steps = Vec::new();
        for file in &record.files {
            let facts = file.sqlite.as_ref().ok_or_else(|| {
                Error::Refused(format!(
                    "bundle file {} of sqlite store \"{}\" has no SQLite facts",
                    file.path, record.name
                ))
            })?;
            steps.push(steps::sqlite_file(
                target.source(file)?,
                file,
                facts,
                target.path.clone(),
                target,
            )?);
        }
        Ok(steps)
    }
}

/// The capture unit of the database at `src`; its size estimate includes the `-wal`.
pub fn unit(src: &Path, at: EncodedPath) -> Unit {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Unit::new(at, src, UnitKind::Sqlite, len(src) + len(&wal_path(src)))
}

/// Plans putting back a `damaged` store's raw bytes: the database file and
/// the sidecars it had, byte for byte; for replace, live sidecars the bundle
/// lacks are removed (a stale `-wal` must not be replayed over other bytes).
fn plan_raw(record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
    let own = match &record.single_file {
        Some(name) => format!("{}/{name}", record.name),
        None => {
            return Err(Error::Refused(format!(
                "sqlite store \"{}\" names no single file",
                record.name
            )))
        }
    };
    let mut steps = Vec::new();
    let mut kept = Vec::new();
    for file in &record.files {
        let suffix = file.path.strip_prefix(&own).unwrap_or_default();
        if !(suffix.is_empty() || SIDECARS.contains(&suffix)) || file.path_hex.is_some() {
            return Err(Error::Refused(format!(
                "bundle file {} is not sqlite store \"{}\"'s database or one of its sidecars",
                file.path, record.name
            )));
        }
        let mut live = target.path.clone().into_os_string();
        live.push(suffix);
        let live = std::path::PathBuf::from(live);
        kept.push(live.clone());
        let paths = crate::plan::FilePaths::apart(target.source(file)?, live);
        steps.push(steps::plain_file(paths, file, target)?);
    }
    if target.mode == crate::plan::Mode::Replace {
        for suffix in SIDECARS {
            let mut live = target.path.clone().into_os_string();
            live.push(suffix);
            let live = std::path::PathBuf::from(live);
            let present = target.entry(&live)? != crate::rooted::Entry::Missing;
            if present && !kept.contains(&live) {
                steps.insert(0, Step::Remove { target: live });
            }
        }
    }
    Ok(steps)
}
