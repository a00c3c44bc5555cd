//! The binary's commands: each turns its parsed arguments into the library's
//! options, calls the library, and hands the result to its renderer in
//! [`crate::output`]. Nothing here does the work itself.

pub mod create;
pub mod docs;
pub mod drill;
pub mod key;
pub mod list;
pub mod passphrase;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod schedule;
pub mod verify;

use std::path::PathBuf;

use bundle::config::{absolute, parse_store_flag, Config, StoreKind};
use bundle::{Error, Result};

use crate::cli::{Cli, TargetArgs};

/// The config file in use: `--config`, else `$BUNDLE_CONFIG`, else the
/// nearest `bundle.toml` in the working folder or a parent folder (as cargo
/// finds `Cargo.toml`).
pub fn config_file(cli: &Cli) -> Option<PathBuf> {
    if let Some(path) = &cli.config {
        return Some(path.clone());
    }
    if let Some(path) = std::env::var_os("BUNDLE_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| dir.join(CONFIG_NAME))
        .find(|candidate| candidate.is_file())
}

/// The name of the config file looked for.
const CONFIG_NAME: &str = "bundle.toml";

/// Loads the config file in use (saying which on stderr), else an empty config.
pub fn load_config(cli: &Cli) -> Result<Config> {
    match config_file(cli) {
        Some(path) => {
            let config = Config::load(&path)?;
            let shown = absolute(&path).unwrap_or(path);
            crate::output::Printer::new(cli.json, cli.quiet, cli.no_progress)
                .note(&format!("config: {}", crate::output::escape_path(&shown)));
            Ok(config)
        }
        None => Ok(Config::default()),
    }
}

/// The config with command-line stores and destination applied.
pub fn effective_config(cli: &Cli, targets: &TargetArgs) -> Result<Config> {
    let mut config = load_config(cli)?;
    let mut extra = Vec::new();
    for (kind, values) in [
        (StoreKind::Sqlite, &targets.sqlite),
        (StoreKind::Jsonl, &targets.jsonl),
        (StoreKind::Dir, &targets.dir),
        (StoreKind::Chroma, &targets.chroma),
        (StoreKind::Lancedb, &targets.lancedb),
    ] {
        for value in values {
            extra.push(parse_store_flag(kind, value)?);
        }
    }
    config.add_stores(extra)?;
    if let Some(dest) = &targets.dest {
        config.destination = Some(absolute(dest)?);
    }
    Ok(config)
}

/// The destination: `--dest`, else the config's.
pub fn destination_of(config: &Config, dest_flag: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(dest) = dest_flag {
        return absolute(dest);
    }
    if config.file.is_none() && config.destination.is_none() {
        let here = std::env::current_dir().unwrap_or_default();
        return Err(Error::Usage(format!(
            "no {CONFIG_NAME} in {} or its parent folders: pass --config PATH (or set BUNDLE_CONFIG=PATH), or give the destination with --dest DIR",
            here.display()
        )));
    }
    config.destination.clone().ok_or_else(|| {
        Error::Usage(
            "no destination for bundles: set `destination = \"backups\"` in bundle.toml, or pass --dest DIR"
                .into(),
        )
    })
}
