//! Chroma stores: a Chroma persist directory, walked like a `dir` store but
//! captured as one set (see [`crate::settle`]) and checked as Chroma reads
//! it (see [`crate::format::chroma`]). Replace restores it whole; merge is
//! refused, because vector indexes cannot be combined by copying files.

use std::path::{Path, PathBuf};

use crate::config::StoreSpec;
use crate::error::{Error, Result};
use crate::format::chroma::DATABASE;
use crate::manifest::StoreRecord;
use crate::plan::{Mode, Step, Target};
use crate::store::dir::DirStore;
use crate::store::walk::walk;
use crate::store::{CapturePlan, StoreHandler};

/// The `chroma` store kind.
pub struct ChromaStore;

impl StoreHandler for ChromaStore {
    fn plan_capture(&self, spec: &StoreSpec) -> Result<CapturePlan> {
        if !spec.path.join(DATABASE).is_file() {
            return Ok(CapturePlan::failed(Error::Usage(format!(
                "store \"{}\": {} has no {DATABASE}; is it a Chroma persist directory? (use kind \"dir\" for other folders)",
                spec.name,
                spec.path.display()
            ))));
        }
        let mut plan = walk(spec)?;
        if let Some(link) = plan.symlinks.first() {
            return Ok(CapturePlan::failed(Error::Usage(format!(
                "store \"{}\": Chroma does not create symlinks, but {} is one; use kind \"dir\" to back this folder up as it is",
                spec.name, link.path
            ))));
        }
        plan.as_set = true;
        Ok(plan)
    }

    fn plan_restore(&self, record: &StoreRecord, target: &Target<'_>) -> Result<Vec<Step>> {
        // Into a folder that does not exist or is empty, a merge is a copy.
        let holds_anything = target.live.is_some()
            && std::fs::read_dir(&target.path).is_ok_and(|mut d| d.next().is_some());
        if target.mode == Mode::Merge && holds_anything {
            return Err(Error::Refused(format!(
                "store \"{}\" is a Chroma store: its vector indexes cannot be merged by copying files, so nothing was written. Restore it beside the live one with `--into DIR --mode replace`, then re-add what you need with the chroma client (collection.get / collection.add)",
                record.name
            )));
        }
        DirStore::plan(record, target)
    }

    fn live_databases(&self, target: &Path) -> Result<Vec<PathBuf>> {
        let db = target.join(DATABASE);
        Ok(if db.is_file() { vec![db] } else { Vec::new() })
    }
}
