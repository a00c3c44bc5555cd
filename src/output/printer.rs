//! Where output goes, decided once per run: under `--json` stdout holds
//! exactly one JSON document and nothing else; `--quiet` only silences the
//! chatter on stderr (summaries, notes, progress), never the result on
//! stdout, which scripts read; progress bars are drawn only on a terminal
//! and never with `--json`, `--quiet` or `--no-progress`.

use serde::Serialize;

use super::Bar;

/// The output policy of one run.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
    quiet: bool,
    no_progress: bool,
}

impl Printer {
    /// The policy for `--json`, `--quiet` and `--no-progress`.
    pub fn new(json: bool, quiet: bool, no_progress: bool) -> Printer {
        Printer {
            json,
            quiet,
            no_progress,
        }
    }

    /// Whether `--json` is on.
    pub fn json(&self) -> bool {
        self.json
    }

    /// A progress bar (hidden unless it may be drawn).
    pub fn bar(&self) -> Bar {
        Bar::new(self.json || self.quiet || self.no_progress)
    }

    /// The command's result on stdout: `value` as JSON with `--json`, else
    /// the human text (under `--quiet` too: it is the data asked for).
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            super::json(value);
        } else {
            super::stdout(&human());
        }
    }

    /// A human summary line on stderr (never with `--json` or `--quiet`).
    pub fn note(&self, text: &str) {
        if !self.json && !self.quiet {
            eprintln!("{text}");
        }
    }

    /// A message on stderr that is shown even under `--quiet` (not with `--json`).
    pub fn notice(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
}
