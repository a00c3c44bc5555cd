//! The binary's commands: each turns its parsed arguments into the library's
//! options, calls the library, and hands the result to its renderer in
//! [`crate::output`]. Nothing here does the work itself.

pub mod create;
pub mod drill;
pub mod list;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod verify;

use std::path::PathBuf;

use bundle::config::{absolute, parse_store_flag, Config, StoreKind};
use bundle::{Error, Result};

use crate::cli::{Cli, TargetArgs};

/// The config file in use: `--config`, else `./bundle.toml` when present.
pub fn config_file(cli: &Cli) -> Option<PathBuf> {
    cli.config.clone().or_else(|| {
        let default = PathBuf::from("bundle.toml");
        default.is_file().then_some(default)
    })
}

/// Loads the config file in use, else an empty config.
pub fn load_config(cli: &Cli) -> Result<Config> {
    match config_file(cli) {
        Some(path) => Config::load(&path),
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
    config.destination.clone().ok_or_else(|| {
        Error::Usage(
            "no destination for bundles: set `destination = \"backups\"` in bundle.toml (or point --config at one), or pass --dest DIR"
                .into(),
        )
    })
}
