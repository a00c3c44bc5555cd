//! LanceDB stores: a database folder holding one `<table>.lance` folder per
//! table. Each table is captured as its newest committed version when the
//! create starts: that version's manifest and the files it names (see
//! [`crate::format::lance`]), never versions written during the copy. Those
//! files are immutable, so a live writer cannot tear the copy.
//!
//! Replace makes each table exactly the bundle's version (newer live
//! versions are removed; the safety snapshot keeps them) and leaves
//! anything that is not a table alone. Merge adds the tables live lacks,
//! whole, and leaves out (exit 1) those present on both sides: two versions
//! of a table cannot be combined by copying files.

use std::path::{Path, PathBuf};

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::lance::{self, LanceFacts, TableFacts};
use crate::manifest::StoreRecord;
use crate::plan::{Mode, Step, Target};
use crate::store::dir::DirStore;
use crate::store::{manifest_path, CapturePlan, StoreHandler, Unit, UnitKind};

/// The `lancedb` store kind.
pub struct LancedbStore;

impl StoreHandler for LancedbStore {
    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan> {
        if !std::fs::metadata(&spec.path)
            .map_err(|e| Error::io("could not stat", &spec.path, e))?
            .is_dir()
        {
            return Err(Error::Usage(format!(
                "store \"{}\": {} is not a folder; a LanceDB database is the folder holding the *.lance tables",
                spec.name,
                spec.path.display()
            )));
        }
        let failed = |reason: String| {
            Ok(CapturePlan::failed(Error::CheckFailed {
                store: spec.name.clone(),
                reason,
            }))
        };
        let mut plan = CapturePlan::default();
        let mut tables = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&spec.path)
            .map_err(|e| Error::io("could not read", &spec.path, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let file_name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(name) = lance::table_name(&file_name).filter(|_| is_dir) else {
                plan.warnings.push(format!(
                    "store \"{}\": {} is not a LanceDB table folder (*.lance); not captured",
                    spec.name,
                    entry.path().display()
                ));
                continue;
            };
            match plan_table(spec, &entry.path(), &mut plan) {
                Ok(Some(version)) => tables.push(TableFacts {
                    name: name.to_string(),
                    version: version.version,
                    rows: version.rows,
                }),
                Ok(None) => plan.warnings.push(format!(
                    "store \"{}\": table {name} has no committed version yet; not captured",
                    spec.name
                )),
                Err(reason) => return failed(format!("table {name}: {reason}")),
            }
        }
        plan.lancedb = Some(LanceFacts { tables });
        Ok(plan)
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        let tables: Vec<&str> = record
            .lancedb
            .iter()
            .flat_map(|f| &f.tables)
            .map(|t| t.name.as_str())
            .collect();
        let mut steps = Vec::new();
        let mut record = record.clone();
        if target.mode == Mode::Merge {
            // A table present live is left out whole; the others are copied.
            let live_tables: Vec<&str> = tables
                .iter()
                .copied()
                .filter(|t| holds_anything(&target.path.join(format!("{t}.lance"))))
                .collect();
            for t in &live_tables {
                steps.push(Step::Conflict {
                    target: target.path.join(format!("{t}.lance")),
                    reason: "the table exists live; two versions of a table cannot be merged by copying files (restore it with --into and add its rows with the lancedb client, or use --mode replace)".into(),
                });
            }
            let prefixes: Vec<String> = live_tables
                .iter()
                .map(|t| format!("{}/{t}.lance/", record.name))
                .collect();
            record
                .files
                .retain(|f| !prefixes.iter().any(|p| f.path.starts_with(p.as_str())));
        }
        let mut planned = DirStore::plan(&record, target)?;
        // Only the tables are the store's: anything else live is left alone.
        let in_table = |path: &Path| {
            path.strip_prefix(&target.path)
                .ok()
                .and_then(|rel| rel.components().next())
                .and_then(|first| lance::table_name(first.as_os_str()))
                .is_some()
        };
        planned.retain(|s| !matches!(s, Step::Remove { target } if !in_table(target)));
        steps.extend(planned);
        Ok(steps)
    }
}

/// Whether `dir` exists and holds anything.
fn holds_anything(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Adds the newest committed version of the table at `table` to `plan`:
/// its manifest, the files it names and its index folders.
fn plan_table(
    spec: &StoreSpec,
    table: &Path,
    plan: &mut CapturePlan,
) -> std::result::Result<Option<lance::Version>, String> {
    let Some((manifest, _)) = lance::newest_manifest(table)? else {
        return Ok(None);
    };
    let version = lance::read_version(table, &manifest)?;
    let mut files: Vec<PathBuf> = vec![manifest.clone()];
    files.extend(version.files.iter().map(|(f, _)| f.clone()));
    for folder in &version.index_folders {
        for entry in walkdir::WalkDir::new(table.join(folder))
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| format!("{}: {e}", folder.display()))?;
            if entry.file_type().is_symlink() {
                return Err(format!("{} is a symlink", entry.path().display()));
            }
            if entry.file_type().is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(table)
                    .expect("walked under table");
                files.push(rel.to_path_buf());
            }
        }
    }
    let store_rel = table
        .strip_prefix(&spec.path)
        .expect("a table of the store");
    for rel in files {
        let src = table.join(&rel);
        let meta = std::fs::symlink_metadata(&src)
            .map_err(|e| format!("version {} needs {}: {e}", version.version, rel.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", rel.display()));
        }
        let in_store = store_rel.join(&rel);
        let at = manifest_path(&spec.name, &in_store).map_err(|e| e.to_string())?;
        for folder in at.1.ancestors().skip(1) {
            if folder.as_os_str().is_empty() || plan.folders.iter().any(|f| f == folder) {
                continue;
            }
            plan.folders.push(folder.to_path_buf());
        }
        plan.units
            .push(Unit::new(at.0, &src, UnitKind::Plain, meta.len()));
    }
    plan.folders.sort();
    Ok(Some(version))
}
