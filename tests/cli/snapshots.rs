//! Snapshot tests of what people read: the human output and the error
//! messages of every command, at least one per exit code, so that a change
//! of any word shows in review. Temp paths, ids, times, tokens and hashes
//! are filtered out; the snapshots live in `tests/cli/snapshots/`.

use crate::support::{demo_stores, Run, Workspace};

/// The run as one text: exit code, stdout, stderr, with what varies filtered.
fn shown(ws: &Workspace, run: &Run) -> String {
    let root = ws.root().display().to_string();
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
    .replace(&root, "[TMP]");
    text
}

/// Filters for what differs between runs.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    for (pattern, replacement) in [
        (r"\d{8}T\d{6}Z(-\d+)?", "[ID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{12}\b", "[TOKEN]"),
        (r"sandbox: [^\n]*", "sandbox: [SANDBOX]"),
        (r"\(os error \d+\)", "(os error [N])"),
    ] {
        s.add_filter(pattern, replacement);
    }
    s
}

fn check(name: &str, ws: &Workspace, run: &Run) {
    settings().bind(|| insta::assert_snapshot!(name, shown(ws, run)));
}

fn demo() -> Workspace {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws
}

#[test]
fn create_verify_list_and_drill_read_as_they_should() {
    let ws = demo();
    check("create_ok", &ws, &ws.run(&["create", "--label", "nightly"]));
    check("verify_ok", &ws, &ws.run(&["verify", "latest"]));
    check("list_ok", &ws, &ws.run(&["list"]));
    check("drill_ok", &ws, &ws.run(&["drill", "latest"]));
    check(
        "prune_dry_run",
        &ws,
        &ws.run(&["prune", "--keep-last", "1"]),
    );
}

#[test]
fn restore_plans_tokens_and_results_read_as_they_should() {
    let ws = demo();
    ws.run(&["create"]).code(0);
    ws.write("data/kb/b.jsonl", "{\"id\":4}\n");
    check(
        "restore_replace_dry_run",
        &ws,
        &ws.run(&["restore", "latest", "--mode", "replace", "--dry-run"]),
    );
    check(
        "restore_replace_without_token",
        &ws,
        &ws.run(&["restore", "latest", "--mode", "replace"]),
    );
    check(
        "restore_merge_applied",
        &ws,
        &ws.run(&[
            "restore",
            "latest",
            "--mode",
            "merge",
            "--no-safety-snapshot",
        ]),
    );
}

#[test]
fn every_exit_code_has_its_message() {
    let ws = demo();
    // 1: verification failed.
    let bundle = ws.create(&[]);
    crate::support::make_writable(&bundle);
    std::fs::write(bundle.join("kb/b.jsonl"), "{\"id\":30}\n").unwrap();
    check(
        "verify_damaged",
        &ws,
        &ws.run(&["verify", bundle.to_str().unwrap()]),
    );
    // 1: a store could not be captured.
    std::fs::write(ws.path("data/memory.db"), b"SQLite format 3\0garbage").unwrap();
    check("create_store_failed", &ws, &ws.run(&["create"]));
    // 2: usage and config errors.
    check(
        "create_no_stores",
        &ws,
        &ws.run(&["create", "--config", "missing.toml"]),
    );
    ws.write(
        "bad.toml",
        "destination = \"b\"\n[retention]\nkeep_everything = true\n",
    );
    check(
        "config_invalid",
        &ws,
        &ws.run(&["--config", "bad.toml", "list"]),
    );
    check(
        "schedule_install_without_config",
        &ws,
        &ws.run(&[
            "--config",
            "missing.toml",
            "schedule",
            "install",
            "--at",
            "02:30",
        ]),
    );
    // 3: refused.
    check(
        "create_system_destination",
        &ws,
        &ws.run(&["create", "--dest", "/etc", "--jsonl", "notes=data/kb"]),
    );
    // 4: an I/O error (the destination is a file).
    ws.write("not-a-folder", "x");
    check(
        "create_destination_is_a_file",
        &ws,
        &ws.run(&[
            "create",
            "--dest",
            "not-a-folder",
            "--jsonl",
            "notes=data/kb",
        ]),
    );
}
