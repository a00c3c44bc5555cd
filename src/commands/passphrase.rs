//! Asking for the passphrase of a protected identity file: from
//! `BUNDLE_IDENTITY_PASSPHRASE`, else typed on the terminal without echo;
//! never when there is no terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// The passphrase of identity file `path`, or `None` when none can be had.
pub fn ask(path: &Path) -> Option<String> {
    if let Ok(p) = std::env::var("BUNDLE_IDENTITY_PASSPHRASE") {
        return Some(p);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    eprint!("passphrase for {}: ", path.display());
    let _ = std::io::stderr().flush();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    }
    eprintln!();
    read.ok()?;
    Some(line.trim_end_matches(['\n', '\r']).to_string())
}
