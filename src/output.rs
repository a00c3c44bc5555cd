//! What the binary prints: human text or one JSON document on stdout, progress
//! bars and messages on stderr.

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

/// Prints an error and its causes on stderr, one per line.
pub fn error(err: &(dyn std::error::Error + 'static)) {
    eprintln!("error: {}", escape(&err.to_string()));
    let mut source = err.source();
    while let Some(s) = source {
        eprintln!("  caused by: {}", escape(&s.to_string()));
        source = s.source();
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
                    "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
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

/// The human form of a restore plan or result.
pub fn restore_plan(report: &bundle::restore::RestoreReport) -> String {
    use bundle::restore::Outcome;
    let verb = match report.outcome {
        Outcome::Applied => "restored",
        _ => "plan",
    };
    let mut text = format!(
        "{verb}: {} bundle {} ({})\n",
        report.mode.as_str(),
        escape(&report.bundle_id),
        escape_path(&report.bundle)
    );
    for s in &report.stores {
        let c = &s.counts;
        text.push_str(&format!(
            "  {} ({}) -> {}: {}; inserted {}, appended {}, written {}, removed {}, kept {}, conflicts {}\n",
            escape(&s.name),
            s.kind,
            escape_path(&s.target),
            s.action,
            c.inserted,
            c.appended,
            c.written,
            c.removed,
            c.kept,
            c.conflicts
        ));
        for note in &s.notes {
            text.push_str(&format!("    note: {}\n", escape(note)));
        }
    }
    if let Some(sandbox) = report.sandbox {
        text.push_str(&format!("sandbox: {}\n", sandbox.describe()));
    }
    if let Some(snapshot) = &report.safety_snapshot {
        text.push_str(&format!(
            "safety snapshot: {} (restore it with --mode replace to undo)\n",
            escape_path(snapshot)
        ));
    }
    if report.outcome != Outcome::Applied {
        text.push_str(&format!("confirm token: {}\n", report.confirm_token));
    }
    text
}

/// The human summary of a prune: one line per bundle, then what to do next.
pub fn prune_summary(report: &bundle::prune::PruneReport) -> String {
    let mut text = String::new();
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for kept in &report.kept {
        let reasons: Vec<&str> = kept.reasons.iter().map(|r| r.as_str()).collect();
        text.push_str(&format!(
            "keep     {}  ({})\n",
            escape(&kept.id),
            escape(&reasons.join(", "))
        ));
    }
    for id in &report.deleted {
        text.push_str(&format!("{verb:<8} {}\n", escape(id)));
    }
    let problem = |name: &String| report.problems.get(name).map(String::as_str).unwrap_or("");
    for id in &report.damaged {
        text.push_str(&format!(
            "damaged  {id}: {}  (left in place: run `bundle verify {id}`, and delete it by hand once you no longer need it)\n",
            escape(problem(id)),
            id = escape(id)
        ));
    }
    for name in &report.unparseable {
        text.push_str(&format!(
            "skipped  {}: {}  (not a bundle prune understands; left in place)\n",
            escape(name),
            escape(problem(name))
        ));
    }
    for name in &report.leftovers {
        let done = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        text.push_str(&format!("{done} leftover {}\n", escape(name)));
    }
    if report.dry_run {
        text.push_str(&format!(
            "dry run: {} bundle(s) kept, {} would be deleted; nothing was changed (add --apply to delete)\n",
            report.kept.len(),
            report.deleted.len()
        ));
    } else {
        text.push_str(&format!(
            "{} bundle(s) kept, {} deleted\n",
            report.kept.len(),
            report.deleted.len()
        ));
    }
    text
}

/// What `schedule install` wrote (or, with `--print`, would write).
pub fn schedule_installed(done: &bundle::schedule::Installed) -> String {
    let mut text = String::new();
    let verb = if done.changed { "wrote" } else { "would write" };
    for (path, body) in &done.files {
        text.push_str(&format!("# {verb} {}\n{body}\n", path.display()));
    }
    if let Some(line) = &done.cron_line {
        let verb = if done.changed {
            "installed"
        } else {
            "would install"
        };
        text.push_str(&format!("# {verb} this crontab line\n{line}\n"));
    }
    let verb = if done.changed { "ran" } else { "would run" };
    for command in &done.commands {
        text.push_str(&format!("# {verb}: {command}\n"));
    }
    if done.changed {
        text.push_str(&format!("schedule \"{}\" installed\n", done.name));
    }
    text
}
