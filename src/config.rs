//! The `bundle.toml` configuration: where bundles go and which stores they hold.
//!
//! Relative paths resolve against the folder of the config file; ad-hoc stores
//! given on the command line resolve against the working directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::SpanRelativeTo;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::remote::spec::RemoteSpec;
use crate::retention::Policy;

/// The kind of a store: decides how it is captured and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite database file, captured through the online backup API.
    Sqlite,
    /// One `.jsonl` file, or a folder of them (recursive).
    Jsonl,
    /// A directory tree, copied file by file.
    Dir,
    /// A Chroma persist directory: its database and each vector segment
    /// captured as a set that must agree with itself (see `format::chroma`).
    Chroma,
    /// A LanceDB database folder: each `*.lance` table's newest committed
    /// version, the files it needs and nothing newer (see `format::lance`).
    Lancedb,
}

impl StoreKind {
    /// The lowercase name used in configs and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Jsonl => "jsonl",
            StoreKind::Dir => "dir",
            StoreKind::Chroma => "chroma",
            StoreKind::Lancedb => "lancedb",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One store as configured: a name, a kind and a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Unique name, `[a-z0-9_-]+`; also the store's folder inside a bundle.
    pub name: String,
    /// How the store is captured.
    pub kind: StoreKind,
    /// Where the store lives (absolute once the config is loaded).
    pub path: PathBuf,
    /// For JSONL: the field that identifies a record (used by merge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// This store's own [`Config::shrink_alarm`], when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink_alarm: Option<f64>,
    /// For dir stores: glob patterns of paths left out of bundles (and left
    /// alone by restore); see [`crate::store::exclude`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A shell command that proves a restored copy opens (`{path}`: the
    /// copy's folder or file); run by `drill` and after `restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// The raw shape of `bundle.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    destination: Option<PathBuf>,
    #[serde(default)]
    full_check: bool,
    #[serde(default)]
    stores: Vec<StoreSpec>,
    hook_timeout: Option<String>,
    shrink_alarm: Option<f64>,
    retention: Option<Policy>,
    hooks: Option<RawHooks>,
    #[serde(default)]
    remotes: Vec<RemoteSpec>,
}

/// The raw `[hooks]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    pre_create: Option<String>,
    post_create: Option<String>,
    pre_restore: Option<String>,
    post_restore: Option<String>,
    hook_timeout: Option<String>,
}

/// Shell commands run around create and restore (`sh -c`), and their time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Run before a create writes anything; failing aborts it.
    pub pre_create: Option<String>,
    /// Run after a create whose pre hook ran, whether it worked or not.
    pub post_create: Option<String>,
    /// Run before a restore writes to the live stores; failing aborts it.
    pub pre_restore: Option<String>,
    /// Run after a restore whose pre hook ran, whether it worked or not.
    pub post_restore: Option<String>,
    /// A hook still running after this long is killed and counts as failed.
    pub timeout: Duration,
}

/// Hooks that run longer than this are killed unless the config says otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            pre_create: None,
            post_create: None,
            pre_restore: None,
            post_restore: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

/// A loaded, validated configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file it came from, if any.
    pub file: Option<PathBuf>,
    /// Where bundles are written; `None` when neither config nor flags set one.
    pub destination: Option<PathBuf>,
    /// Run the full `integrity_check` at create instead of `quick_check`.
    pub full_check: bool,
    /// The stores, in config order.
    pub stores: Vec<StoreSpec>,
    /// The `[retention]` policy for `prune` and `create --prune` (empty when absent).
    pub retention: Policy,
    /// The `[hooks]`.
    pub hooks: Hooks,
    /// The fraction of a store's rows (sqlite), lines (jsonl) or bytes (dir)
    /// whose loss since the last healthy bundle makes a new bundle
    /// suspicious (see [`crate::shrink`]).
    pub shrink_alarm: f64,
    /// Where bundles go offsite (`[[remotes]]`), by name.
    pub remotes: Vec<RemoteSpec>,
}

/// The default [`Config::shrink_alarm`]: losing more than half is suspicious.
pub const DEFAULT_SHRINK_ALARM: f64 = 0.5;

impl Default for Config {
    fn default() -> Self {
        Config {
            file: None,
            destination: None,
            full_check: false,
            stores: Vec::new(),
            retention: Policy::default(),
            hooks: Hooks::default(),
            shrink_alarm: DEFAULT_SHRINK_ALARM,
            remotes: Vec::new(),
        }
    }
}

impl Config {
    /// The remote named `name`.
    pub fn remote(&self, name: &str) -> Result<&RemoteSpec> {
        self.remotes.iter().find(|r| r.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.remotes.iter().map(|r| r.name.as_str()).collect();
            Error::Usage(match known.is_empty() {
                true => format!("no remote named \"{name}\": the config has no [[remotes]]"),
                false => format!(
                    "no remote named \"{name}\"; the config has {}",
                    known.join(", ")
                ),
            })
        })
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = absolute(path)?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self::parse(&text, path, &base)
    }

    /// Parses config text; relative paths resolve against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config> {
        // toml's own message keeps the line, column and a snippet.
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut stores = raw.stores;
        for store in &mut stores {
            store.path = base.join(&store.path);
        }
        let retention = raw.retention.unwrap_or_default();
        let raw_hooks = raw.hooks.unwrap_or_default();
        let timeout_text = match (raw.hook_timeout, raw_hooks.hook_timeout) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "hook_timeout is set twice (top level and [hooks]); keep one".into(),
                ))
            }
            (a, b) => a.or(b),
        };
        let timeout = match timeout_text {
            None => DEFAULT_HOOK_TIMEOUT,
            Some(t) => parse_duration(&t).map_err(|e| invalid(format!("hook_timeout: {e}")))?,
        };
        let hooks = Hooks {
            pre_create: raw_hooks.pre_create,
            post_create: raw_hooks.post_create,
            pre_restore: raw_hooks.pre_restore,
            post_restore: raw_hooks.post_restore,
            timeout,
        };
        let config = Config {
            file: Some(path.to_path_buf()),
            destination: raw.destination.map(|d| base.join(d)),
            full_check: raw.full_check,
            stores,
            retention,
            hooks,
            shrink_alarm: raw.shrink_alarm.unwrap_or(DEFAULT_SHRINK_ALARM),
            remotes: raw
                .remotes
                .into_iter()
                .map(|mut r| {
                    r.recipients_file = r.recipients_file.map(|f| base.join(f));
                    r
                })
                .collect(),
        };
        config.validate().map_err(|reason| Error::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Adds stores given on the command line (already absolute).
    pub fn add_stores(&mut self, extra: Vec<StoreSpec>) -> Result<()> {
        self.stores.extend(extra);
        self.validate().map_err(Error::Usage)
    }

    /// Checks names and uniqueness; returns a message on failure.
    fn validate(&self) -> std::result::Result<(), String> {
        check_fraction("shrink_alarm", self.shrink_alarm)?;
        let mut remote_names = BTreeSet::new();
        for remote in &self.remotes {
            validate_store_name(&remote.name).map_err(|e| format!("remote: {e}"))?;
            if !remote_names.insert(remote.name.as_str()) {
                return Err(format!("remote name \"{}\" is used twice", remote.name));
            }
            remote.validate()?;
        }
        let mut seen = BTreeSet::new();
        for store in &self.stores {
            validate_store_name(&store.name)?;
            if !seen.insert(store.name.as_str()) {
                return Err(format!("store name \"{}\" is used twice", store.name));
            }
            if let Some(alarm) = store.shrink_alarm {
                check_fraction(&format!("store \"{}\": shrink_alarm", store.name), alarm)?;
            }
            if !store.exclude.is_empty() {
                if store.kind != StoreKind::Dir {
                    return Err(format!(
                        "store \"{}\": `exclude` applies only to dir stores",
                        store.name
                    ));
                }
                crate::store::exclude::Exclude::new(&store.exclude)
                    .map_err(|e| format!("store \"{}\": {e}", store.name))?;
            }
            if store.key.is_some() && store.kind != StoreKind::Jsonl {
                return Err(format!(
                    "store \"{}\": `key` applies only to jsonl stores",
                    store.name
                ));
            }
        }
        Ok(())
    }

    /// The shrink alarm of `store`: its own, else the config's.
    pub fn shrink_alarm_of(&self, store: &StoreSpec) -> f64 {
        store.shrink_alarm.unwrap_or(self.shrink_alarm)
    }

    /// The stores to work on: all, or those named in `only` (each must exist).
    pub fn select(&self, only: &[String]) -> Result<Vec<StoreSpec>> {
        if only.is_empty() {
            return Ok(self.stores.clone());
        }
        let mut picked = Vec::new();
        for name in only {
            match self.stores.iter().find(|s| &s.name == name) {
                Some(s) if !picked.contains(s) => picked.push(s.clone()),
                Some(_) => {}
                None => {
                    return Err(Error::Usage(format!(
                        "no store named \"{name}\" (configured: {})",
                        self.store_names()
                    )))
                }
            }
        }
        Ok(picked)
    }

    fn store_names(&self) -> String {
        if self.stores.is_empty() {
            return "none".into();
        }
        self.stores
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks a store name against `[a-z0-9_-]+`.
pub fn validate_store_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "store name \"{name}\" is invalid: use lowercase letters, digits, '_' and '-'"
        ))
    }
}

/// Parses an ad-hoc `NAME=PATH` flag value into a store of `kind`.
pub fn parse_store_flag(kind: StoreKind, value: &str) -> Result<StoreSpec> {
    let (name, path) = value.split_once('=').ok_or_else(|| {
        Error::Usage(format!(
            "--{kind} expects NAME=PATH, got \"{value}\" (for example --{kind} memory=data/memory.db)"
        ))
    })?;
    validate_store_name(name).map_err(Error::Usage)?;
    if path.is_empty() {
        return Err(Error::Usage(format!("--{kind} {name}=: the path is empty")));
    }
    Ok(StoreSpec {
        name: name.to_string(),
        kind,
        path: absolute(Path::new(path))?,
        key: None,
        shrink_alarm: None,
        exclude: Vec::new(),
        check: None,
    })
}

pub use crate::retention::parse_span;

/// Parses a fixed-length duration (units up to weeks; days are 24 hours).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let span = parse_span(text)?;
    let fixed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| format!("\"{text}\" has no fixed length; use s, m, h, d or w"))?;
    Duration::try_from(fixed).map_err(|e| format!("\"{text}\": {e}"))
}

/// Makes `path` absolute against the working directory without touching the disk.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("could not resolve", path, e))
}

/// Refuses a fraction outside 0 to 1 (`what` names the key).
fn check_fraction(what: &str, value: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "{what} = {value}: write a fraction from 0 to 1 (0.5: losing more than half of a store is suspicious)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let text = r#"
            destination = "backups"
            [[stores]]
            name = "memory"
            kind = "sqlite"
            path = "data/memory.db"
            [[stores]]
            name = "kb"
            kind = "jsonl"
            path = "/abs/kb"
            key = "id"
        "#;
        let c = Config::parse(text, Path::new("x.toml"), Path::new("/cfg")).unwrap();
        assert_eq!(c.destination, Some(PathBuf::from("/cfg/backups")));
        assert_eq!(c.stores[0].path, PathBuf::from("/cfg/data/memory.db"));
        assert_eq!(c.stores[1].path, PathBuf::from("/abs/kb"));
        assert_eq!(c.stores[1].key.as_deref(), Some("id"));
    }

    #[test]
    fn bad_names_duplicates_and_unknown_keys_are_rejected() {
        for text in [
            "[[stores]]\nname = \"Bad\"\nkind = \"dir\"\npath = \"x\"",
            "[[stores]]\nname = \"a\"\nkind = \"dir\"\npath = \"x\"\n[[stores]]\nname = \"a\"\nkind = \"dir\"\npath = \"y\"",
            "[[stores]]\nname = \"a\"\nkind = \"tape\"\npath = \"x\"",
            "destinaton = \"typo\"",
            "[[stores]]\nname = \"a\"\nkind = \"dir\"\npath = \"x\"\nkey = \"id\"",
        ] {
            let err = Config::parse(text, Path::new("c.toml"), Path::new("/")).unwrap_err();
            assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{text}");
        }
    }

    #[test]
    fn retention_and_hooks_are_read_with_their_durations() {
        let text = r#"
            hook_timeout = "90s"
            [retention]
            keep_last = 3
            keep_within = "2w"
            keep_safety_days = 10
            [hooks]
            pre_create = "systemctl --user stop app"
        "#;
        let c = Config::parse(text, Path::new("c.toml"), Path::new("/")).unwrap();
        assert_eq!(c.retention.keep_last, Some(3));
        assert_eq!(
            c.retention.keep_within.map(|s| s.fieldwise()),
            Some(jiff::Span::new().weeks(2).fieldwise())
        );
        assert_eq!(c.retention.keep_safety_days, Some(10));
        assert_eq!(c.hooks.timeout, Duration::from_secs(90));
        assert_eq!(
            c.hooks.pre_create.as_deref(),
            Some("systemctl --user stop app")
        );
        assert_eq!(Config::default().hooks.timeout, DEFAULT_HOOK_TIMEOUT);
        for bad in [
            "[retention]\nkeep_within = \"soon\"",
            "[retention]\nkeep_everything = true",
            "[hooks]\nhook_timeout = \"1 month\"",
            "hook_timeout = \"1m\"\n[hooks]\nhook_timeout = \"2m\"",
            "[hooks]\npre_prune = \"x\"",
        ] {
            let err = Config::parse(bad, Path::new("c.toml"), Path::new("/")).unwrap_err();
            assert_eq!(err.exit_code(), crate::ExitCode::Usage, "{bad}");
        }
    }

    #[test]
    fn store_flags_need_name_and_path() {
        let s = parse_store_flag(StoreKind::Dir, "vectors=/data/chroma").unwrap();
        assert_eq!(
            (s.name.as_str(), s.path.as_path()),
            ("vectors", Path::new("/data/chroma"))
        );
        assert!(parse_store_flag(StoreKind::Dir, "/data/chroma").is_err());
        assert!(parse_store_flag(StoreKind::Dir, "v=").is_err());
        assert!(parse_store_flag(StoreKind::Dir, "V=x").is_err());
    }

    #[test]
    fn select_rejects_unknown_names() {
        let mut c = Config::default();
        c.add_stores(vec![parse_store_flag(StoreKind::Dir, "a=/x").unwrap()])
            .unwrap();
        assert_eq!(c.select(&["a".into()]).unwrap().len(), 1);
        let err = c.select(&["b".into()]).unwrap_err().to_string();
        assert!(err.contains("no store named \"b\""), "{err}");
    }
}
