//! `bundle list`: only complete bundles, oldest first, staging ignored.

use crate::support::{demo_stores, Workspace};

#[test]
fn list_shows_complete_bundles_and_ignores_staging_and_strangers() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let first = ws.create(&["--label", "one"]);
    let second = ws.create(&[]);
    std::fs::create_dir_all(ws.path("backups/.staging-20990101T000000Z-1/memory")).unwrap();
    std::fs::create_dir_all(ws.path("backups/holiday-photos")).unwrap();
    std::fs::create_dir_all(ws.path("backups/20990101T000000Z")).unwrap(); // no manifest
    let run = ws.run(&["--json", "list"]);
    run.code(0);
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["path"], first.to_str().unwrap());
    assert_eq!(rows[1]["path"], second.to_str().unwrap());
    assert_eq!(
        rows[0]["stores"],
        serde_json::json!(["kb", "memory", "vectors"])
    );
    assert_eq!(rows[0]["label"], "one");
    assert!(rows[0]["bytes"].as_u64().unwrap() > 0);
    assert!(rows[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        run.stderr
            .contains("20990101T000000Z looks like a bundle but cannot be read"),
        "{}",
        run.stderr
    );

    let human = ws.run(&["list"]);
    human.code(0);
    assert!(
        human.stdout.contains("kb,memory,vectors  \"one\""),
        "{}",
        human.stdout
    );
    // `latest` is the newest complete bundle, never the manifest-less folder.
    let run = ws.run(&["--json", "verify", "latest"]);
    run.code(0);
}

#[test]
fn list_of_missing_destination_is_empty() {
    let ws = Workspace::new();
    let run = ws.run(&["--json", "list", "--dest", "nothing-here"]);
    run.code(0);
    assert_eq!(run.json(), serde_json::json!([]));
    assert!(!ws.path("nothing-here").exists());
}
