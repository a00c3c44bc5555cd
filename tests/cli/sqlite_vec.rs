//! A real sqlite-vec database (a `vec0` virtual table, written through the
//! `sqlite-vec` package): bundled and replaced it answers nearest-neighbour
//! queries as before; a merge that cannot bring its vectors back says so.
//!
//! Skips loudly without `sqlite_vec` (and `apsw`, whose SQLite loads
//! extensions); `.ci/run` installs both and sets `BUNDLE_REQUIRE_SQLITE_VEC=1`.

use std::path::Path;
use std::process::Command;

use crate::support::{count, python_with, spawn_until, Workspace};

fn helper(python: &Path, action: &str, db: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/vec_helper.py");
    let out = Command::new(python)
        .arg(script)
        .arg(action)
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vec helper {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_vec0_database_round_trips_and_merge_reports_the_vectors_it_cannot_add() {
    let Some(python) = python_with("sqlite_vec") else {
        return;
    };
    let ws = Workspace::new();
    let db = ws.path("data/memory.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    helper(&python, "make", &db);
    let before = helper(&python, "query", &db);
    assert!(before.contains("\"notes\": 10"), "{before}");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n",
    );
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    ws.run(&["verify", b]).code(0);
    let facts = &ws.manifest(&bundle)["stores"][0]["files"][0]["sqlite"];
    assert_eq!(facts["virtual_tables"], serde_json::json!(["notes_vec"]));

    // Three notes and their vectors are lost live. Merge brings the notes
    // back, cannot add vectors to a vec0 table row by row, and says so.
    helper(&python, "delete", &db);
    let run = ws.run(&["--json", "restore", b, "--mode", "merge"]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["outcome"], "incomplete");
    let left = doc["stores"][0]["left_out"].to_string();
    assert!(
        left.contains("notes_vec (vec0): 3 bundle row(s) live lacks"),
        "{left}"
    );
    assert_eq!(count(&db, "notes"), 10, "the plain rows came back");

    // Replace brings everything back; the real extension answers as before.
    ws.replace(&bundle, &[]);
    assert_eq!(helper(&python, "query", &db), before);
}

#[test]
fn under_a_live_writer_every_bundle_holds_notes_and_vectors_of_one_transaction() {
    let Some(python) = python_with("sqlite_vec") else {
        return;
    };
    let ws = Workspace::new();
    let db = ws.path("data/memory.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/vec_helper.py");
    let mut writer = spawn_until(
        Command::new(&python).arg(&script).arg("write").arg(&db),
        "ready",
    );
    let mut published = Vec::new();
    for _ in 0..30 {
        let run = ws.run(&[
            "--json",
            "create",
            "--dest",
            "b",
            "--sqlite",
            "memory=data/memory.db",
        ]);
        run.code(0);
        published.push(std::path::PathBuf::from(
            run.json()["path"].as_str().unwrap(),
        ));
    }
    let _ = writer.kill();
    let _ = writer.wait();
    let mut seen = std::collections::BTreeSet::new();
    for (i, bundle) in published.iter().enumerate() {
        ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
        let recorded = ws.manifest(bundle)["stores"][0]["files"][0]["sqlite"]["tables"]["notes"]
            .as_u64()
            .unwrap();
        seen.insert(recorded);
        // The client writes to what it opens: check a restored copy.
        let into = ws.path(&format!("restored-{i}"));
        ws.run(&[
            "restore",
            bundle.to_str().unwrap(),
            "--mode",
            "replace",
            "--into",
            into.to_str().unwrap(),
        ])
        .code(0);
        let check: serde_json::Value =
            serde_json::from_str(&helper(&python, "check", &into.join("memory/memory.db")))
                .unwrap();
        assert_eq!(check["notes"], recorded, "{check}");
        assert_eq!(check["vectors"], recorded, "{check}");
        assert_eq!(check["found"], 10, "{check}");
    }
    eprintln!(
        "sqlite-vec writer stress: 30 of 30 published, {} distinct row counts",
        seen.len()
    );
    assert!(
        seen.len() > 1,
        "the writer did not write during the creates"
    );
}
