//! The `jsonl` store kind: one `.jsonl` file or a folder of them, each
//! captured and merged as [`crate::format::jsonl`] does.

use std::path::{Path, PathBuf};

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::manifest::StoreRecord;
use crate::plan::{Mode, Step, Target};
use crate::store::steps as plan;
use crate::store::{file_name_of, manifest_path, CapturePlan, StoreHandler, Unit, UnitKind};
use crate::store::{live_path, plan_removals};
use std::collections::HashSet;

/// The `jsonl` store kind: one `.jsonl` file or a folder of them (recursive).
pub struct JsonlStore;

impl StoreHandler for JsonlStore {
    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan> {
        let mut plan = CapturePlan::default();
        let meta = std::fs::metadata(&spec.path)
            .map_err(|e| Error::io("could not stat", &spec.path, e))?;
        let sources: Vec<(PathBuf, PathBuf)> = if meta.is_file() {
            let name = file_name_of(spec)?;
            plan.single_file = Some(name.clone());
            if meta.len() == 0 {
                return Ok(plan);
            }
            vec![(spec.path.clone(), PathBuf::from(name))]
        } else {
            jsonl_files(&spec.path)?
        };
        for (src, rel) in sources {
            let at = manifest_path(&spec.name, &rel)?;
            if let Some(folder) = at.1.parent() {
                plan.folders.push(folder.to_path_buf());
            }
            let bytes = file_len(&src)?;
            plan.units
                .push(Unit::new(at.0, &src, UnitKind::Jsonl, bytes));
        }
        plan.folders.dedup();
        Ok(plan)
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        let key = target.key.as_deref();
        if record.single_file.is_some() {
            let mut steps = Vec::new();
            for file in &record.files {
                steps.push(plan::jsonl_file(
                    target.source(file)?,
                    file,
                    target.path.clone(),
                    target,
                    key,
                )?);
            }
            return Ok(steps);
        }
        let mut steps = Vec::new();
        let mut wanted = HashSet::new();
        for file in &record.files {
            let live = live_path(record, &target.path, file.rel())?;
            wanted.insert(live.clone());
            steps.push(plan::jsonl_file(
                target.source(file)?,
                file,
                live,
                target,
                key,
            )?);
        }
        if target.mode == Mode::Replace {
            // Removals first: a live symlink on the way to a bundle file
            // (whatever its name) is removed before anything is written.
            let removable = |e: &walkdir::DirEntry| {
                e.file_type().is_symlink() || e.path().extension().is_some_and(|x| x == "jsonl")
            };
            let is_wanted = |p: &Path| wanted.contains(p);
            let mut removals = plan_removals(&target.path, is_wanted, &HashSet::new(), removable)?;
            removals.retain(|r| match r {
                Step::Remove { target: t } => {
                    t.extension().is_some_and(|x| x == "jsonl")
                        || wanted.iter().any(|w| w.starts_with(t))
                }
                _ => true,
            });
            removals.extend(steps);
            steps = removals;
        }
        Ok(steps)
    }
}

/// The `*.jsonl` regular files under `root`, sorted, as (absolute, relative) paths.
fn jsonl_files(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io("could not walk", &path, e.into())
        })?;
        let is_jsonl = entry.path().extension().is_some_and(|e| e == "jsonl");
        if entry.file_type().is_file() && is_jsonl {
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("walked under root")
                .to_path_buf();
            files.push((entry.path().to_path_buf(), rel));
        }
    }
    Ok(files)
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("could not stat", path, e))?
        .len())
}
