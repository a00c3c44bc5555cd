//! Output a script can rely on: one JSON document on stdout for failures
//! too, `-q` that never drops data lines, configs found the way cargo finds
//! `Cargo.toml`, config errors with a place, completions and a man page.

use crate::support::*;

#[test]
fn every_failure_under_json_prints_one_error_document() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    // A refusal (exit 3): replace without the token.
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--confirm-token",
        "wrong",
    ]);
    run.code(3);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["error"]["kind"], "refused");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("token"),
        "{doc}"
    );
    assert!(doc["error"]["causes"].is_array());
    assert!(
        run.stderr.contains("error: "),
        "stderr still says it: {}",
        run.stderr
    );
    // A usage error (exit 2) and an I/O error with causes (exit 4).
    let unknown = ws.run(&["--json", "create", "--store", "nope"]);
    unknown.code(2);
    assert_eq!(unknown.json()["error"]["kind"], "usage");
    std::fs::create_dir_all(ws.path("backups/20260101T000000Z")).unwrap();
    let broken = ws.run(&["--json", "verify", "backups/20260101T000000Z/missing"]);
    assert_eq!(broken.json()["exit_code"], broken.code);
    assert_eq!(broken.json()["ok"], false);
}

#[test]
fn quiet_silences_stderr_chatter_but_never_the_data_lines() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let run = ws.run(&["-q", "create"]);
    run.code(0);
    let line = run.stdout.trim_end();
    let (id, path) = line.split_once('\t').expect("id<TAB>path on stdout");
    assert!(path.ends_with(id), "{line}");
    // Warnings stay; the summary and the config line are chatter.
    assert!(!run.stderr.contains("created bundle"), "{}", run.stderr);
    assert!(!run.stderr.contains("config: "), "{}", run.stderr);
    assert!(
        run.stderr.lines().all(|l| l.starts_with("warning: ")),
        "{}",
        run.stderr
    );
    let verify = ws.run(&["-q", "verify", path]);
    verify.code(0);
    assert!(verify.stdout.starts_with("ok: "), "{}", verify.stdout);
}

#[test]
fn the_config_is_found_from_a_flag_the_environment_or_a_parent_folder() {
    let ws = Workspace::new();
    demo_stores(&ws);
    std::fs::create_dir_all(ws.path("deep/er")).unwrap();
    // From a sub-folder: the nearest bundle.toml above, and it says which.
    let run = ws
        .cmd()
        .current_dir(ws.path("deep/er"))
        .arg("create")
        .output()
        .unwrap();
    let run: Run = run.into();
    run.code(0);
    let used = ws.path("bundle.toml");
    assert!(
        run.stderr.contains(&format!("config: {}", used.display())),
        "{}",
        run.stderr
    );
    // $BUNDLE_CONFIG wins over the folder search.
    ws.write("other/bundle.toml", "destination = \"elsewhere\"\n");
    let run: Run = ws
        .cmd()
        .env("BUNDLE_CONFIG", ws.path("other/bundle.toml"))
        .args(["list"])
        .output()
        .unwrap()
        .into();
    assert!(run.stderr.contains("other/bundle.toml"), "{}", run.stderr);
    // None anywhere: says so, and how to pass one.
    let empty = Workspace::new();
    let run = empty.run(&["list"]);
    run.code(2);
    assert!(run.stderr.contains("no bundle.toml in "), "{}", run.stderr);
    assert!(run.stderr.contains("--config PATH"), "{}", run.stderr);
}

#[test]
fn toml_errors_keep_their_line_column_and_snippet() {
    let ws = Workspace::new();
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"a\"\nkind = \"sqlite\npath = \"x\"\n",
    );
    let run = ws.run(&["list"]);
    run.code(2);
    assert!(run.stderr.contains("line 4, column"), "{}", run.stderr);
    assert!(
        run.stderr.contains("  4 | kind = \"sqlite"),
        "{}",
        run.stderr
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_real_flags() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = ws.run(&["completions", shell]);
        run.code(0);
        assert!(
            run.stdout.contains("accept-shrink"),
            "{shell}: {}",
            run.stdout
        );
    }
    let man = ws.run(&["man"]);
    man.code(0);
    assert!(man.stdout.starts_with(".ie"), "{}", &man.stdout[..40]);
    assert!(man.stdout.contains(".TH bundle 1"), "roff with a title");
    ws.run(&["completions", "tcsh"]).code(2);
}

#[test]
fn a_command_line_clap_refuses_still_gives_a_json_document() {
    let ws = Workspace::new();
    let run = ws.run(&["--json", "create", "--bogus"]);
    run.code(2);
    let doc = run.json();
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--bogus"),
        "{doc}"
    );
    assert!(run.stderr.contains("Usage:"), "{}", run.stderr);
    // Help is not a failure.
    ws.run(&["--json", "create", "--help"]).code(0);
}
