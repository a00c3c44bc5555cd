//! Hooks: shell commands run around `create` and `restore`, so that a service
//! can be stopped before its stores are read or written and started again after.
//!
//! A failing pre hook aborts before anything is written. Once a pre hook has
//! run (even if it failed part-way), its post hook always runs, also when the
//! operation failed, so a stopped service is started again. Hooks run with
//! `sh -c`, stdin closed, their output passed through to our stderr, and are
//! killed (with everything they started) after the configured timeout.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::config::Hooks;
use crate::error::{Error, Result};

/// Which operation the hooks surround.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `bundle create`.
    Create,
    /// `bundle restore` into the live stores.
    Restore,
}

/// What the hooks are told about the operation, as environment variables.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `BUNDLE_ID`: the bundle created or restored (empty before a create).
    pub id: Option<String>,
    /// `BUNDLE_PATH`: its folder (empty before a create).
    pub path: Option<PathBuf>,
    /// `BUNDLE_DESTINATION`: the folder holding the bundles.
    pub destination: PathBuf,
}

/// Runs `operation` between the pre and post hooks `hooks` configures for `op`.
///
/// `before` is the environment of the pre hook (and of the post hook when the
/// operation failed); `after` builds the post hook's from a success. Hooks that are not configured are skipped.
pub fn around<T>(
    hooks: &Hooks,
    op: Operation,
    before: &HookEnv,
    operation: impl FnOnce() -> Result<T>,
    after: impl FnOnce(&T) -> HookEnv,
) -> Result<T> {
    let (pre_name, pre, post_name, post) = match op {
        Operation::Create => (
            "pre_create",
            &hooks.pre_create,
            "post_create",
            &hooks.post_create,
        ),
        Operation::Restore => (
            "pre_restore",
            &hooks.pre_restore,
            "post_restore",
            &hooks.post_restore,
        ),
    };
    let outcome = match pre {
        Some(command) => run(command, before, true, hooks.timeout)
            .map_err(|reason| Error::Hook {
                hook: pre_name,
                reason: format!("{reason}; nothing was written"),
            })
            .and_then(|()| operation()),
        None => operation(),
    };
    let Some(command) = post else {
        return outcome;
    };
    let env = match &outcome {
        Ok(value) => after(value),
        Err(_) => before.clone(),
    };
    match (run(command, &env, outcome.is_ok(), hooks.timeout), outcome) {
        (Ok(()), outcome) => outcome,
        (Err(reason), Ok(_)) => Err(Error::Hook {
            hook: post_name,
            reason: format!(
                "{reason}; the {} itself succeeded",
                match op {
                    Operation::Create => "create",
                    Operation::Restore => "restore",
                }
            ),
        }),
        (Err(reason), Err(operation)) => Err(Error::PostHookAlsoFailed {
            operation: Box::new(operation),
            hook: post_name,
            reason,
        }),
    }
}

/// Runs one hook command; `Err` says how it failed.
fn run(
    command: &str,
    env: &HookEnv,
    ok: bool,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let to_stderr = || {
        use std::os::fd::AsFd;
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .map_err(|e| format!("could not pass on stderr: {e}"))
    };
    let path_text = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_default()
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("BUNDLE_ID", env.id.as_deref().unwrap_or(""))
        .env("BUNDLE_PATH", path_text(&env.path))
        .env("BUNDLE_DESTINATION", &env.destination)
        .env("BUNDLE_STATUS", if ok { "ok" } else { "failed" })
        .stdin(Stdio::null())
        .stdout(to_stderr()?)
        .stderr(to_stderr()?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start its command with sh: {e}"))?;
    // Its own process group: a timeout or an interruption kills the whole
    // command, children included.
    let _running = crate::interrupt::process_group(child.id());
    match child.wait_timeout(timeout) {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => Err(match status.code() {
            Some(code) => format!("its command exited with status {code}"),
            None => "its command was killed by a signal".to_string(),
        }),
        Ok(None) => {
            let pid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "its command did not finish within {}s and was killed (raise hook_timeout if it needs longer)",
                timeout.as_secs_f64()
            ))
        }
        Err(e) => Err(format!("could not wait for its command: {e}")),
    }
}

/// How long a store's `check` command may run.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a store's `check` command on its restored copy at `path`: `{path}`
/// in the command stands for that path (passed as `$BUNDLE_PATH`, quoted, so
/// any name is safe). `Err` says how it failed.
pub fn run_store_check(command: &str, path: &std::path::Path) -> std::result::Result<(), String> {
    let command = command.replace("{path}", "\"$BUNDLE_PATH\"");
    let env = HookEnv {
        id: None,
        path: Some(path.to_path_buf()),
        destination: PathBuf::new(),
    };
    run(&command, &env, true, CHECK_TIMEOUT).map_err(|e| {
        format!(
            "its check command failed: {}",
            e.replace("its command ", "")
        )
    })
}
