//! Ctrl-C and SIGTERM: the process removes what it was building, says in
//! one line what it left, and exits 130 / 143; a restore keeps its journal.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{big_stores, hidden_leftovers, visible_bundles};
use crate::support::{count, Workspace};

/// Starts `bundle ARGS` with its output captured.
fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    ws.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `ready()` holds, then sends `signal`; `None` when the child
/// finished first.
fn signal_when(child: Child, signal: i32, ready: impl Fn() -> bool) -> Option<crate::support::Run> {
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let out: crate::support::Run = child.wait_with_output().unwrap().into();
            eprintln!("finished first (exit {}): {}", out.code, out.stderr);
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let sig = rustix::process::Signal::from_named_raw(signal).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
    Some(child.wait_with_output().unwrap().into())
}

fn staging_exists(dest: &Path) -> bool {
    hidden_leftovers(dest, ".staging-") > 0
}

#[test]
fn ctrl_c_during_create_removes_its_staging_folder_and_exits_130() {
    let ws = Workspace::new();
    big_stores(&ws, "a");
    let dest = ws.path("backups");
    let mut hit = 0;
    for _ in 0..10 {
        let child = spawn(&ws, &["create", "--no-reuse"]);
        let Some(run) = signal_when(child, 2, || staging_exists(&dest)) else {
            continue;
        };
        if run.code == 0 {
            continue; // the signal came after the commit
        }
        run.code(130);
        hit += 1;
        let left: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            !staging_exists(&dest),
            "the staging folder is gone: {left:?}; {}",
            run.stderr
        );
        let said: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.starts_with("config: "))
            .collect();
        assert_eq!(said.len(), 1, "one line: {}", run.stderr);
        assert!(
            run.stderr
                .contains("interrupted by SIGINT: removed the unfinished bundle"),
            "{}",
            run.stderr
        );
        assert!(visible_bundles(&dest).is_empty());
        // The lock was released: the next create runs.
        ws.run(&["create"]).code(0);
        break;
    }
    assert_eq!(hit, 1, "a create was interrupted while capturing");
}

#[test]
fn sigterm_during_restore_keeps_the_journal_and_says_how_to_finish() {
    let ws = Workspace::new();
    big_stores(&ws, "a");
    let bundle = ws.create(&["--no-reuse"]);
    let b = bundle.to_str().unwrap();
    let journal = ws.path("backups/.restore-journal.json");
    let mut hit = false;
    for _ in 0..10 {
        big_stores(&ws, "b");
        let token = ws.replace_token(&bundle, &[]);
        let child = spawn(
            &ws,
            &[
                "--json",
                "restore",
                b,
                "--mode",
                "replace",
                "--confirm-token",
                &token,
            ],
        );
        let Some(run) = signal_when(child, 15, || journal.exists()) else {
            continue;
        };
        if run.code == 0 {
            eprintln!("finished before the signal");
            continue;
        }
        run.code(143);
        hit = true;
        let doc = run.json();
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["exit_code"], 143);
        assert_eq!(doc["error"]["kind"], "interrupted");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains("run the same restore again"), "{message}");
        assert!(message.contains("--mode replace"), "{message}");
        assert!(journal.exists(), "the journal is kept");
        // Running the same restore again finishes it.
        let again = ws.run(&["restore", b, "--mode", "replace", "--confirm-token", &token]);
        again.code(0);
        assert!(!journal.exists());
        assert_eq!(count(&ws.path("data/memory.db"), "mem"), 20000);
        break;
    }
    assert!(hit, "a restore was interrupted while writing");
}
