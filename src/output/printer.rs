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

    /// A result that is a failure (a refused plan, a failed verification, a
    /// suspicious bundle): with `--json` the result's document with `ok:
    /// false`, `exit_code` and `error` added (the shape of every failure's
    /// document, see docs/cli.md); else the human text on stdout and
    /// `error: message` on stderr. Returns `code`.
    pub fn failure<T: Serialize>(
        &self,
        value: &T,
        code: bundle::ExitCode,
        kind: &'static str,
        message: &str,
        human: impl FnOnce() -> String,
    ) -> bundle::ExitCode {
        if self.json {
            let mut doc = serde_json::to_value(value).expect("output serializes");
            if let Some(object) = doc.as_object_mut() {
                object.insert("ok".into(), false.into());
                object.insert("exit_code".into(), (code as i32).into());
                object.insert(
                    "error".into(),
                    serde_json::json!({ "kind": kind, "message": message, "causes": [] }),
                );
            }
            super::json(&doc);
        } else {
            super::stdout(&human());
        }
        eprintln!("error: {}", super::escape(message));
        code
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
