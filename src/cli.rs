//! Command-line interface types (clap); nothing else lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  verification failed, or the operation failed its own checks
  2  usage or configuration error
  3  refused by a safety check
  4  I/O or other runtime error
  130, 143  interrupted by SIGINT, SIGTERM (what was being built is removed)";

/// Back up an application's SQLite, JSONL and directory stores into one verified bundle.
#[derive(Debug, Parser)]
#[command(name = "bundle", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Config file [default: $BUNDLE_CONFIG, else the nearest bundle.toml here or in a parent folder]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print exactly one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Silence progress and summaries on stderr (results on stdout, warnings and errors stay)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Draw no progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Secret key (age identity file) to read an encrypted remote's bundles
    /// with: pull, restore --remote, verify --remote --read-data [default: $BUNDLE_IDENTITY_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture the stores into a new bundle in the destination
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// Prove a bundle is whole: hashes, sizes, SQLite integrity and counts, JSONL lines
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// List the bundles in the destination, oldest first
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Restore a bundle into the live stores (merge or replace), or into a scratch folder
    #[command(after_help = EXIT_CODES)]
    Restore(RestoreArgs),
    /// Restore a bundle into a temp folder, check everything, clean up, report
    #[command(after_help = EXIT_CODES)]
    Drill(DrillArgs),
    /// Delete the bundles the retention policy no longer keeps (dry run unless --apply)
    #[command(after_help = EXIT_CODES)]
    Prune(PruneArgs),
    /// Copy local bundles to a remote (default: every good one not yet complete there)
    #[command(after_help = EXIT_CODES)]
    Push(PushArgs),
    /// Copy a remote bundle into the local destination
    #[command(after_help = EXIT_CODES)]
    Pull(PullArgs),
    /// Run `create --prune` on a timer (systemd user timer, else cron)
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Make keys for encrypted remotes
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `bundle man | man -l -`
    Man,
}

/// `bundle key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new age identity (secret key) to FILE, mode 0600, and print
    /// its public key (for `recipients`) on stdout
    #[command(after_help = EXIT_CODES)]
    New(KeyNewArgs),
}

/// `bundle key new`.
#[derive(Debug, Args)]
pub struct KeyNewArgs {
    /// Where to write the identity (never overwritten)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `bundle push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Bundle folders, ids in the destination, or `latest` [default: every
    /// good local bundle not yet complete on the remote, oldest first]
    pub bundles: Vec<String>,
    /// The `[[remotes]]` entry [default: the only one]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Up to N files at once [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Folder holding the bundles (overrides the config's `destination`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Then rewrite the remote's bundles not yet encrypted to its current
    /// `recipients` (needs the identity that reads them: --identity)
    #[arg(long)]
    pub reencrypt: bool,
}

/// `bundle pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// A bundle id on the remote, or `latest`
    pub bundle: String,
    /// The `[[remotes]]` entry [default: the only one]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Up to N files at once [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Folder holding the bundles (overrides the config's `destination`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
}

/// `bundle completions <SHELL>`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `bundle prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The rules (the config's `[retention]` when none is given)
    #[command(flatten)]
    pub policy: bundle::retention::Policy,
    /// Delete; without it prune only reports what it would delete
    #[arg(long)]
    pub apply: bool,
    /// Prune this remote instead (its `[remotes.retention]`, else `[retention]`)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Evaluate the policy at this time instead of the clock (RFC 3339)
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Folder holding the bundles (overrides the config's `destination`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
}

/// `bundle schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Install (or replace) a timer that runs `bundle --config <config> create --prune --quiet`
    #[command(after_help = EXIT_CODES)]
    Install(ScheduleInstallArgs),
    /// Remove the timer installed under a name
    #[command(after_help = EXIT_CODES)]
    Remove(ScheduleNameArgs),
    /// Show the installed timers and, for systemd, the last run's result
    #[command(after_help = EXIT_CODES)]
    Status,
}

/// `bundle schedule install`.
#[derive(Debug, Args)]
pub struct ScheduleInstallArgs {
    /// Name of this schedule (one per config)
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub name: String,
    /// Run every day at this time (local time, 24-hour)
    #[arg(
        long,
        value_name = "HH:MM",
        conflicts_with = "every",
        required_unless_present = "every"
    )]
    pub at: Option<String>,
    /// Run at this interval (e.g. 30m, 6h, 1d)
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Show what would be installed; change nothing
    #[arg(long)]
    pub print: bool,
}

/// `bundle schedule remove`.
#[derive(Debug, Args)]
pub struct ScheduleNameArgs {
    /// Name of the schedule
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub name: String,
}

/// How `restore` treats live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Keep live data; add the bundle's records that live lacks
    Merge,
    /// Make the live stores exactly the bundle's (needs --confirm-token)
    Replace,
}

/// `bundle restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A bundle folder, a bundle id in the destination, or `latest`
    pub bundle: String,
    /// merge keeps live data and adds what is missing; replace makes live equal the bundle
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Restore only this store (repeatable) [default: every store in the bundle]
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
    /// Restore into this new or empty folder instead of the live stores
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// Print the plan (and the confirm token); change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restore the bundle from this remote (BUNDLE: an id there, or `latest`):
    /// pulled into a temporary folder in the destination, then restored as usual
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// The token printed by --dry-run that approves this exact replace plan
    #[arg(long, value_name = "TOKEN")]
    pub confirm_token: Option<String>,
    /// Do not snapshot the live stores before writing (the restore cannot be undone)
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// Restore although the config's stores differ from the bundle's
    #[arg(long)]
    pub force_topology_mismatch: bool,
}

/// `bundle drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// A bundle folder, a bundle id in the destination, or `latest`
    pub bundle: String,
    /// Folder holding the bundles (for ids and `latest`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
}

/// Stores and destination given on the command line instead of (or on top of) a config.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Folder holding the bundles (overrides the config's `destination`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// An SQLite store, NAME=PATH (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub sqlite: Vec<String>,
    /// A JSONL store: a .jsonl file or a folder of them, NAME=PATH (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub jsonl: Vec<String>,
    /// A directory store, NAME=PATH (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub dir: Vec<String>,
    /// A Chroma persist directory, NAME=PATH (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub chroma: Vec<String>,
    /// A LanceDB database folder, NAME=PATH (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub lancedb: Vec<String>,
}

/// `bundle create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Capture only this store (repeatable) [default: all]
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
    /// Free text recorded in the bundle's manifest
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Run SQLite's full integrity_check on each copy instead of quick_check
    #[arg(long)]
    pub full_check: bool,
    /// After a successful create, apply the config's [retention] policy (prune --apply)
    #[arg(long)]
    pub prune: bool,
    /// Then push the new bundle to the remote (the only one, or --remote);
    /// the local bundle stays either way
    #[arg(long)]
    pub push: bool,
    /// With --push: the `[[remotes]]` entry
    #[arg(long, value_name = "NAME", requires = "push")]
    pub remote: Option<String>,
    /// Capture up to N files at once [default: the number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Copy every file, even those unchanged since the previous bundle
    #[arg(long)]
    pub no_reuse: bool,
    /// A store is meant to have shrunk (or gone): record it as accepted
    /// instead of marking the bundle suspicious (a --label does the same)
    #[arg(long)]
    pub accept_shrink: bool,
}

/// `bundle verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A bundle folder, a bundle id in the destination, or `latest`
    pub bundle: String,
    /// Use SQLite's quick_check instead of the full integrity_check
    #[arg(long)]
    pub quick: bool,
    /// Folder holding the bundles (for ids and `latest`)
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Check the bundle on this remote instead (BUNDLE: an id there, or `latest`)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// With --remote: also read every object back, decompress it and hash it
    #[arg(long, requires = "remote")]
    pub read_data: bool,
}

/// `bundle list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Folder holding the bundles
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// List this remote's bundles instead (and say which are also local)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}
