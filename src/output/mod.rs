//! What the binary prints: human text or one JSON document on stdout, progress
//! bars and messages on stderr. The [`Printer`] decides once, from `--json`,
//! `--quiet` and `--no-progress`, what goes where; one module per command
//! renders its human text and holds its JSON document's shape.

pub mod create;
pub mod drill;
pub mod list;
mod printer;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod schedule;
pub mod verify;

pub use printer::Printer;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use bundle::progress::Progress;

/// Writes `text` to stdout; a closed pipe ends the process quietly with 0.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes one JSON document (and a newline) to stdout.
pub fn json(value: &impl Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("output serializes");
    text.push('\n');
    stdout(&text);
}

/// `text` with every control character (newline, ESC, BEL, DEL, C1 …)
/// escaped (`\n`, `\u{1b}`), so that a label, name or path from a bundle can
/// neither forge an output line nor reach the terminal. JSON output is exact
/// and never passes through here.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`escape`] for a path.
pub fn escape_path(path: &std::path::Path) -> String {
    escape(&path.to_string_lossy())
}

/// Prints a warning on stderr.
pub fn warn(text: &str) {
    eprintln!("warning: {}", escape(text));
}

/// Prints an error and its causes on stderr, one per line; with `--json`
/// also its [`ErrorJson`] document on stdout.
pub fn error(err: &bundle::Error, json_too: bool) {
    let causes = causes(err);
    if json_too {
        json(&ErrorJson::new(
            err.exit_code() as i32,
            err.kind(),
            err.to_string(),
            causes.clone(),
        ));
    }
    // A multi-line message (toml's snippet) keeps its lines, each indented
    // so none can pass for a line of its own.
    let message = err.to_string();
    let mut lines = message.lines();
    eprintln!("error: {}", escape(lines.next().unwrap_or("")));
    for line in lines {
        eprintln!("  {}", escape(line));
    }
    for cause in causes {
        eprintln!("  caused by: {}", escape(&cause));
    }
}

/// The messages of `err`'s causes, outermost first.
fn causes(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut source = err.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out
}

/// The `--json` document of a command line that could not be parsed.
pub fn usage_json(message: &str) {
    json(&ErrorJson::new(
        bundle::ExitCode::Usage as i32,
        "usage",
        message.to_string(),
        Vec::new(),
    ));
}

/// Prints what an interrupting signal left (one line on stderr; with
/// `--json` also an error document of kind `interrupted` on stdout).
pub fn interrupted(signal: &str, exit_code: i32, said: &str, json_too: bool) {
    let message = format!("interrupted by {signal}: {said}");
    if json_too {
        json(&ErrorJson::new(
            exit_code,
            "interrupted",
            message.clone(),
            Vec::new(),
        ));
    }
    eprintln!("{}", escape(&message));
}

/// The `--json` document of every failure:
/// `{"ok": false, "exit_code": N, "error": {"kind", "message", "causes"}}`.
#[derive(Serialize)]
pub struct ErrorJson {
    ok: bool,
    exit_code: i32,
    error: ErrorBody,
}

/// The `error` object of [`ErrorJson`].
#[derive(Serialize)]
struct ErrorBody {
    kind: &'static str,
    message: String,
    causes: Vec<String>,
}

impl ErrorJson {
    fn new(exit_code: i32, kind: &'static str, message: String, causes: Vec<String>) -> ErrorJson {
        ErrorJson {
            ok: false,
            exit_code,
            error: ErrorBody {
                kind,
                message,
                causes,
            },
        }
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar, hidden when `hidden` or when stderr is not a terminal.
    pub fn new(hidden: bool) -> Bar {
        let bar = if hidden || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        Bar { bar }
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total_bytes: Option<u64>) {
        let style = match total_bytes {
            Some(total) => {
                self.bar.set_length(total);
                ProgressStyle::with_template(
                    "{msg:32!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
            }
            None => ProgressStyle::with_template("{spinner} {msg:40!} {bytes} {bytes_per_sec}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_position(0);
        self.bar.set_message(label.to_string());
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.disable_steady_tick();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Formats a byte count for people (`1.5 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
