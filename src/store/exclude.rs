//! `exclude` patterns of dir stores: what create leaves out and what
//! restore leaves alone.
//!
//! A pattern is a glob (`globset`) matched against a path relative to the
//! store's folder. One without a `/` (`*.tmp`) matches a name at any depth;
//! one with a `/` (`index/*.lock`) matches the whole relative path; a
//! trailing `/` (`cache/`) matches folders only, and everything beneath them.

use std::ffi::OsStr;
use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};

/// Compiled `exclude` patterns.
#[derive(Debug, Clone)]
pub struct Exclude {
    /// Patterns matched against the name (no `/` in them).
    names: GlobSet,
    /// Patterns matched against the relative path.
    paths: GlobSet,
    /// The same, for patterns that match folders only.
    dir_names: GlobSet,
    dir_paths: GlobSet,
}

impl Exclude {
    /// Compiles `patterns`; the error names the bad one.
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        let mut sets = [
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
            GlobSetBuilder::new(),
        ];
        for pattern in patterns {
            let dir_only = pattern.ends_with('/');
            let core = pattern.trim_end_matches('/');
            if core.is_empty() {
                return Err(format!("exclude pattern \"{pattern}\" matches nothing"));
            }
            let glob = globset::GlobBuilder::new(core)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("exclude pattern \"{pattern}\": {e}"))?;
            let whole_path = core.contains('/');
            let index = usize::from(whole_path) + 2 * usize::from(dir_only);
            sets[index].add(glob);
        }
        let [names, paths, dir_names, dir_paths] =
            sets.map(|b| b.build().unwrap_or_else(|_| GlobSet::empty()));
        Ok(Exclude {
            names,
            paths,
            dir_names,
            dir_paths,
        })
    }

    /// Whether there are no patterns (nothing is excluded; a walk of many
    /// files need not match each against four empty sets).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.paths.is_empty()
            && self.dir_names.is_empty()
            && self.dir_paths.is_empty()
    }

    /// Whether the entry at `rel` (relative to the store) is excluded itself.
    pub fn matches(&self, rel: &Path, is_dir: bool) -> bool {
        let name = rel.file_name().unwrap_or(OsStr::new(""));
        let name = Path::new(name);
        self.names.is_match(name)
            || self.paths.is_match(rel)
            || (is_dir && (self.dir_names.is_match(name) || self.dir_paths.is_match(rel)))
    }

    /// Whether `rel` is excluded or lies in an excluded folder.
    pub fn covers(&self, rel: &Path, is_dir: bool) -> bool {
        if self.matches(rel, is_dir) {
            return true;
        }
        rel.ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.matches(a, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclude {
        Exclude::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_paths_and_folders_match_as_documented() {
        let e = ex(&["*.tmp", "cache/", "index/*.lock"]);
        assert!(e.matches(Path::new("a.tmp"), false));
        assert!(e.matches(Path::new("deep/down/a.tmp"), false));
        assert!(!e.matches(Path::new("a.tmpx"), false));
        assert!(e.matches(Path::new("x/cache"), true));
        assert!(
            !e.matches(Path::new("x/cache"), false),
            "a file named cache stays"
        );
        assert!(e.covers(Path::new("x/cache/blob.bin"), false));
        assert!(e.matches(Path::new("index/w.lock"), false));
        assert!(!e.matches(Path::new("other/index/w.lock"), false));
        assert!(!e.covers(Path::new("data/seg.bin"), false));
        assert!(Exclude::new(&["[".to_string()]).is_err());
        assert!(Exclude::new(&["/".to_string()]).is_err());
    }
}
