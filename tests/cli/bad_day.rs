//! Story tests of the bad day: the live store is corrupt and the user wants
//! the last good bundle back.

use std::path::Path;

use crate::support::*;

/// Overwrites every page but the first of `path` with garbage, as a bad disk
/// or a stray `dd` would; returns the damaged bytes.
fn corrupt(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 4096, "a database of more than one page");
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A store's record in a manifest.
fn record<'a>(manifest: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    manifest["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[test]
fn replace_over_a_corrupt_database_keeps_its_raw_bytes_and_restores() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    let db = ws.path("data/memory.db");
    // Make the database span several pages, then wreck them.
    ws.sqlite(
        "data/memory.db",
        "INSERT INTO notes(project_id, body) SELECT 1, hex(randomblob(500)) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 40) SELECT x FROM c);",
    );
    let damaged = corrupt(&db);
    // A normal create refuses the store (exit 1), as before.
    ws.run(&["create"]).code(1);

    let report = ws.replace(&good, &[]);
    assert_eq!(report["outcome"], "applied", "{report}");
    assert_eq!(count(&db, "notes"), 3, "the good bundle's rows are back");
    let memory = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "memory")
        .unwrap();
    assert!(
        memory["notes"].to_string().contains("recorded as damaged"),
        "{memory}"
    );
    // The safety snapshot holds the exact damaged bytes, recorded as such.
    let snapshot = Path::new(report["safety_snapshot"].as_str().unwrap()).to_path_buf();
    let manifest = ws.manifest(&snapshot);
    let rec = record(&manifest, "memory");
    assert_eq!(rec["status"], "damaged");
    assert!(
        rec["error"].as_str().unwrap().contains("malformed"),
        "{rec}"
    );
    assert_eq!(
        std::fs::read(snapshot.join("memory/memory.db")).unwrap(),
        damaged
    );
    assert_eq!(record(&manifest, "kb")["status"], "ok");
    // verify calls it whole and says it is damaged.
    let verify = ws.run(&["verify", snapshot.to_str().unwrap()]);
    verify.code(0);
    assert!(
        verify.stdout.contains("damaged: store \"memory\""),
        "{}",
        verify.stdout
    );
    // Undo puts the damaged bytes back exactly.
    ws.replace(&snapshot, &[]);
    assert_eq!(std::fs::read(&db).unwrap(), damaged);
}

#[test]
fn replace_over_a_dir_store_with_a_corrupt_database_inside() {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.sqlite(
        "data/vectors/chroma.sqlite3",
        "INSERT INTO embeddings(v) SELECT randomblob(600) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 40) SELECT x FROM c);",
    );
    let good = ws.create(&[]);
    let damaged = corrupt(&ws.path("data/vectors/chroma.sqlite3"));
    ws.write("data/vectors/seg-1/data_level0.bin", "changed since");

    let human = {
        let token = ws.replace_token(&good, &[]);
        ws.run(&[
            "restore",
            good.to_str().unwrap(),
            "--mode",
            "replace",
            "--confirm-token",
            &token,
        ])
    };
    human.code(0);
    assert!(
        human.stdout.contains("recorded as damaged"),
        "{}",
        human.stdout
    );
    assert_eq!(
        count(&ws.path("data/vectors/chroma.sqlite3"), "embeddings"),
        41
    );
    let snapshot = ws
        .path("backups")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != &good && p.is_dir())
        .max()
        .unwrap();
    let manifest = ws.manifest(&snapshot);
    assert_eq!(record(&manifest, "vectors")["status"], "damaged");
    assert_eq!(
        std::fs::read(snapshot.join("vectors/chroma.sqlite3")).unwrap(),
        damaged
    );
    assert_eq!(
        std::fs::read_to_string(snapshot.join("vectors/seg-1/data_level0.bin")).unwrap(),
        "changed since"
    );
    ws.run(&["verify", snapshot.to_str().unwrap()]).code(0);
}
