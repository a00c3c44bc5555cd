//! `bundle restore` and `bundle drill`: the runbook as tests, on real rows,
//! real bytes and real exit codes.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rusqlite::Connection;
use serde_json::Value;

use crate::support::{count, demo_stores, make_writable, store_entry, tree, Workspace};

fn sql(ws: &Workspace, batch: &str) {
    Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch(batch)
        .unwrap();
}

fn notes(ws: &Workspace) -> Vec<String> {
    let conn = Connection::open(ws.path("data/memory.db")).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM notes ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn read(ws: &Workspace, rel: &str) -> String {
    std::fs::read_to_string(ws.path(rel)).unwrap()
}

fn mutate_everything(ws: &Workspace) {
    sql(
        ws,
        "INSERT INTO notes(project_id, body) VALUES (2, 'added later');
             DELETE FROM notes WHERE body = 'basil';
             UPDATE notes SET body = 'TOMATOES' WHERE body = 'tomatoes';",
    );
    ws.write(
        "data/kb/b.jsonl",
        "{\"id\":3,\"changed\":true}\n{\"id\":4}\n",
    );
    std::fs::remove_file(ws.path("data/kb/2026/a.jsonl")).unwrap();
    ws.write("data/kb/new.jsonl", "{\"id\":9}\n");
    ws.write("data/vectors/seg-1/data_level0.bin", "rewritten segment");
    ws.write("data/vectors/seg-2/extra.bin", "new segment");
}

#[test]
fn drill_story_replace_then_undo_with_the_safety_snapshot() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let baseline = ws.create(&[]);
    let baseline_notes = notes(&ws);
    let inode = std::fs::metadata(ws.path("data/vectors")).unwrap().ino();

    mutate_everything(&ws);
    let mutated_notes = notes(&ws);
    assert_ne!(mutated_notes, baseline_notes);

    let out = ws.replace(&baseline, &[]);
    assert_eq!(out["ok"], true);
    assert_eq!(out["mode"], "replace");
    // Baseline back, mutations gone, in every kind.
    assert_eq!(notes(&ws), baseline_notes);
    assert_eq!(read(&ws, "data/kb/b.jsonl"), "{\"id\":3}\n");
    assert_eq!(
        read(&ws, "data/kb/2026/a.jsonl"),
        "{\"id\":1,\"t\":\"x\"}\n{\"id\":2,\"t\":\"y\"}\n"
    );
    assert!(!ws.path("data/kb/new.jsonl").exists());
    assert_eq!(
        read(&ws, "data/kb/README.txt"),
        "not a jsonl file\n",
        "non-jsonl files are not the store's"
    );
    assert_eq!(
        read(&ws, "data/vectors/seg-1/data_level0.bin"),
        "binary-ish segment bytes"
    );
    assert!(!ws.path("data/vectors/seg-2").exists());
    assert_eq!(
        std::fs::metadata(ws.path("data/vectors")).unwrap().ino(),
        inode,
        "same directory"
    );
    let stores = out["stores"].as_array().unwrap();
    let kb = stores.iter().find(|s| s["name"] == "kb").unwrap();
    assert_eq!(kb["action"], "replace");
    assert_eq!(kb["removed"], 1);
    for key in ["inserted", "appended", "written", "removed", "kept"] {
        assert!(kb[key].is_u64(), "{key} in {kb}");
    }

    // The safety snapshot holds the mutations and undoes the restore.
    let snapshot = PathBuf::from(out["safety_snapshot"].as_str().unwrap());
    let m = ws.manifest(&snapshot);
    assert_eq!(m["reason"], "pre-restore");
    assert_eq!(
        m["restoring"],
        baseline.file_name().unwrap().to_str().unwrap()
    );
    ws.run(&["verify", snapshot.to_str().unwrap()]).code(0);
    ws.replace(&snapshot, &[]);
    assert_eq!(notes(&ws), mutated_notes);
    assert_eq!(read(&ws, "data/kb/new.jsonl"), "{\"id\":9}\n");
    assert_eq!(read(&ws, "data/vectors/seg-2/extra.bin"), "new segment");
    assert!(!ws.path("data/kb/2026/a.jsonl").exists());
    // Restoring A then B left both safety snapshots.
    let listed = ws.run(&["--json", "list"]).json();
    let reasons: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["reason"])
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "pre-restore").count(),
        2,
        "{reasons:?}"
    );
}

#[test]
fn merge_brings_back_deleted_rows_keeps_new_ones_and_is_idempotent() {
    let ws = Workspace::new();
    demo_stores(&ws);
    sql(
        &ws,
        "CREATE TABLE log(msg TEXT, n INTEGER); INSERT INTO log VALUES ('a', 1), ('b', 2);",
    );
    let bundle = ws.create(&[]);
    sql(
        &ws,
        "DELETE FROM notes WHERE body = 'basil';
              UPDATE notes SET body = 'TOMATOES (live)' WHERE body = 'tomatoes';
              INSERT INTO notes(project_id, body) VALUES (2, 'added later');
              DELETE FROM log WHERE msg = 'a'; INSERT INTO log VALUES ('c', 3);",
    );
    ws.write(
        "data/kb/b.jsonl",
        "{\"id\":3,\"v\":\"live wins\"}\n{\"id\":5}\n",
    );

    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
    ]);
    run.code(0);
    let out = run.json();
    assert!(out["safety_snapshot"].is_string());
    let mem = out["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "memory")
        .unwrap()
        .clone();
    assert_eq!(mem["inserted"], 2, "basil and log 'a': {mem}");
    let mut got = notes(&ws);
    got.sort();
    assert_eq!(got, ["TOMATOES (live)", "added later", "basil", "trains"]);
    assert_eq!(
        count(&ws.path("data/memory.db"), "log"),
        3,
        "no-key table: no duplicates"
    );
    // JSONL merge by key: live record 3 wins, the bundle's missing records are appended.
    assert_eq!(
        read(&ws, "data/kb/b.jsonl"),
        "{\"id\":3,\"v\":\"live wins\"}\n{\"id\":5}\n"
    );

    ws.write("data/kb/2026/a.jsonl", "{\"id\":2,\"t\":\"edited\"}\n");
    ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"])
        .code(0);
    assert_eq!(
        read(&ws, "data/kb/2026/a.jsonl"),
        "{\"id\":2,\"t\":\"edited\"}\n{\"id\":1,\"t\":\"x\"}\n"
    );
    let again = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
    ]);
    again.code(0);
    for store in again.json()["stores"].as_array().unwrap() {
        assert_eq!(store["inserted"], 0, "{store}");
        assert_eq!(store["appended"], 0, "{store}");
        assert_eq!(store["written"], 0, "{store}");
    }
    assert_eq!(count(&ws.path("data/memory.db"), "notes"), 4);
    // The FTS index was rebuilt and still answers.
    let hits: i64 = Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'trains'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hits, 1);
}

#[test]
fn replace_is_refused_without_the_right_token() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let first = ws.create(&[]);
    let second = ws.create(&[]);
    sql(
        &ws,
        "INSERT INTO notes(project_id, body) VALUES (1, 'keep me')",
    );
    let before = std::fs::read(ws.path("data/memory.db")).unwrap();
    let b1 = first.to_str().unwrap();

    let run = ws.run(&["restore", b1, "--mode", "replace"]);
    run.code(3);
    assert!(
        run.stdout.contains("confirm token: "),
        "plan and token are printed: {}",
        run.stdout
    );
    assert!(run.stderr.contains("--confirm-token"), "{}", run.stderr);

    let other_bundle = ws.replace_token(&second, &[]);
    let run = ws.run(&[
        "restore",
        b1,
        "--mode",
        "replace",
        "--confirm-token",
        &other_bundle,
    ]);
    run.code(3);
    assert!(
        run.stderr.contains("does not approve this plan"),
        "{}",
        run.stderr
    );

    let other_stores = ws.replace_token(&first, &["--store", "kb"]);
    let run = ws.run(&[
        "restore",
        b1,
        "--mode",
        "replace",
        "--confirm-token",
        &other_stores,
    ]);
    run.code(3);

    assert_eq!(
        std::fs::read(ws.path("data/memory.db")).unwrap(),
        before,
        "nothing written"
    );
    assert!(notes(&ws).contains(&"keep me".to_string()));
    let listed = ws.run(&["--json", "list"]).json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "no safety snapshot for a refused plan"
    );
}

#[test]
fn tampered_bundle_is_refused_before_any_write() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    make_writable(&bundle);
    std::fs::write(bundle.join("kb/b.jsonl"), "{\"id\":666}\n").unwrap();
    std::fs::remove_file(ws.path("data/kb/b.jsonl")).unwrap();
    let before = std::fs::read(ws.path("data/memory.db")).unwrap();
    for mode in ["merge", "replace"] {
        let run = ws.run(&[
            "restore",
            bundle.to_str().unwrap(),
            "--mode",
            mode,
            "--confirm-token",
            "x",
        ]);
        run.code(1);
        assert!(run.stderr.contains("failed verification"), "{}", run.stderr);
    }
    assert!(!ws.path("data/kb/b.jsonl").exists());
    assert_eq!(std::fs::read(ws.path("data/memory.db")).unwrap(), before);
    let run = ws.run(&["drill", bundle.to_str().unwrap()]);
    run.code(1);
}

#[test]
fn a_database_held_by_a_writer_is_refused() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let writer = Connection::open(ws.path("data/memory.db")).unwrap();
    writer
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO projects VALUES (7, 'open');")
        .unwrap();
    let run = ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"]);
    run.code(3);
    assert!(run.stderr.contains("store \"memory\""), "{}", run.stderr);
    assert!(run.stderr.contains("stop the service"), "{}", run.stderr);
    writer.execute_batch("COMMIT").unwrap();
    drop(writer);
    ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"])
        .code(0);
}

#[test]
fn stale_wal_beside_the_target_does_not_survive_replace() {
    let ws = Workspace::new();
    ws.sqlite(
        "db/app.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('bundle');",
    );
    let bundle = ws.create(&["--dest", "b", "--sqlite", "app=db/app.db"]);
    ws.sqlite("db/app.db", "INSERT INTO t(v) VALUES ('later');");
    std::fs::write(
        ws.path("db/app.db-wal"),
        "MARKER stale wal from another life",
    )
    .unwrap();
    ws.replace(&bundle, &["--sqlite", "app=db/app.db"]);
    let wal = std::fs::read(ws.path("db/app.db-wal")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&wal).contains("MARKER"));
    assert_eq!(count(&ws.path("db/app.db"), "t"), 1);
}

#[test]
fn wal_target_with_another_page_size_is_replaced_atomically() {
    let ws = Workspace::new();
    ws.sqlite(
        "db/app.db",
        "PRAGMA page_size=8192; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    );
    let bundle = ws.create(&["--dest", "b", "--sqlite", "app=db/app.db"]);
    std::fs::remove_file(ws.path("db/app.db")).unwrap();
    ws.sqlite("db/app.db", "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE other(y); INSERT INTO other VALUES (9);");
    ws.replace(&bundle, &["--sqlite", "app=db/app.db"]);
    assert_eq!(count(&ws.path("db/app.db"), "t"), 2);
    let conn = Connection::open(ws.path("db/app.db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let others: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'other'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(others, 0);
}

#[test]
fn into_restores_anywhere_but_only_into_an_empty_folder() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    ws.write("scratch-full/keep.txt", "mine");
    let run = ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--into",
        "scratch-full",
    ]);
    run.code(3);
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    assert_eq!(read(&ws, "scratch-full/keep.txt"), "mine");

    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--into",
        "scratch",
    ]);
    run.code(0);
    assert!(run.json()["safety_snapshot"].is_null());
    assert_eq!(count(&ws.path("scratch/memory/memory.db"), "notes"), 3);
    assert_eq!(read(&ws, "scratch/kb/b.jsonl"), "{\"id\":3}\n");
    assert_eq!(
        read(&ws, "scratch/vectors/seg-1/data_level0.bin"),
        "binary-ish segment bytes"
    );
}

#[test]
fn a_refused_restore_into_a_folder_leaves_no_file_and_no_folder_in_it() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    // A nested segment altered, its size kept: found only as it is staged,
    // after staging made its folder in the new tree.
    make_writable(&bundle);
    let victim = bundle.join("vectors/seg-1/data_level0.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    let into_scratch = || {
        let b = bundle.to_str().unwrap();
        ws.run(&[
            "--json", "restore", b, "--mode", "replace", "--into", "scratch",
        ])
    };
    let run = into_scratch();
    run.code(1);
    assert_eq!(run.json()["error"]["kind"], "bundle_invalid");
    // Only the store folders themselves, empty: no staged file, no folder
    // staging made beneath them.
    let left: Vec<PathBuf> = walkdir::WalkDir::new(ws.path("scratch"))
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir() || e.depth() > 1)
        .map(|e| e.into_path())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Mended, the same folder (its empty store folders removed) restores whole.
    std::fs::write(&victim, b"binary-ish segment bytes").unwrap();
    std::fs::remove_dir_all(ws.path("scratch")).unwrap();
    into_scratch().code(0);
    assert_eq!(
        read(&ws, "scratch/vectors/seg-1/data_level0.bin"),
        "binary-ish segment bytes"
    );
    let staged = tree(&ws.path("scratch"))
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("bundle-tmp"))
        .count();
    assert_eq!(staged, 0);
}

#[test]
fn targets_come_from_the_config_and_topology_must_match() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    // The config loses the kb store: the whole bundle no longer matches.
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n\
         [[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n",
    );
    let run = ws.run(&["restore", b, "--mode", "merge"]);
    run.code(3);
    assert!(
        run.stderr.contains("differ from the config"),
        "{}",
        run.stderr
    );
    let run = ws.run(&["restore", b, "--mode", "merge", "--store", "kb"]);
    run.code(3);
    assert!(run.stderr.contains("not in the config"), "{}", run.stderr);
    ws.run(&["restore", b, "--mode", "merge", "--store", "memory"])
        .code(0);
    // Another kind under the same name is refused.
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"dir\"\npath = \"data/x\"\n",
    );
    let run = ws.run(&["restore", b, "--mode", "merge", "--store", "memory"]);
    run.code(3);
    assert!(
        run.stderr.contains("not restoring across kinds"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_interrupted_restore_blocks_create_until_it_is_finished() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let id = bundle.file_name().unwrap().to_str().unwrap();
    let journal = serde_json::json!({
        "bundle": bundle, "bundle_id": id, "mode": "merge",
        "stores": ["kb", "memory", "vectors"], "token": "abc", "safety_snapshot": null,
        "started_at": "2026-11-23T00:00:00Z"
    });
    std::fs::write(
        ws.path("backups/.restore-journal.json"),
        journal.to_string(),
    )
    .unwrap();
    let run = ws.run(&["create"]);
    run.code(3);
    assert!(run.stderr.contains("was interrupted"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("bundle restore {}", bundle.display())),
        "{}",
        run.stderr
    );
    let run = ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
        "--store",
        "kb",
    ]);
    run.code(3);
    // Re-running the same restore finishes it.
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
    ]);
    run.code(0);
    assert_eq!(run.json()["resumed"], true);
    assert!(!ws.path("backups/.restore-journal.json").exists());
    ws.run(&["create"]).code(0);
}

#[test]
fn drill_passes_on_a_good_bundle_and_leaves_nothing_behind() {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.create(&[]);
    let before = std::fs::read(ws.path("data/memory.db")).unwrap();
    let run = ws.run(&["--json", "drill", "latest"]);
    run.code(0);
    let out = run.json();
    assert_eq!(out["ok"], true);
    assert_eq!(out["stores"].as_array().unwrap().len(), 3);
    assert_eq!(std::fs::read(ws.path("data/memory.db")).unwrap(), before);
    let listed = ws.run(&["--json", "list"]).json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "a drill takes no snapshot"
    );
}

#[test]
fn merge_never_runs_triggers_or_views_from_the_bundle() {
    let ws = Workspace::new();
    ws.sqlite(
        "db/app.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE audit(msg TEXT);
         INSERT INTO t(v) VALUES ('one');",
    );
    let bundle = ws.create(&["--dest", "b", "--sqlite", "app=db/app.db"]);
    // Forge a bundle whose copy carries a trigger and a new table with a view.
    make_writable(&bundle);
    let copy = bundle.join("app/app.db");
    Connection::open(&copy)
        .unwrap()
        .execute_batch(
            "CREATE TABLE extra(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO extra(x) VALUES ('e');
             CREATE TRIGGER evil AFTER INSERT ON t BEGIN INSERT INTO audit VALUES ('pwned'); END;
             CREATE VIEW v AS SELECT * FROM t;",
        )
        .unwrap();
    // Re-seal the manifest as a forger would (sizes, hashes, counts).
    let mpath = bundle.join("bundle-meta.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    let file = &mut m["stores"][0]["files"][0];
    file["bytes"] = Value::from(bytes.len());
    file["sha256"] = Value::from(bundle::hash::sha256_hex(&bytes));
    file["sqlite"]["tables"]["extra"] = Value::from(1);
    let sealed = serde_json::to_vec(&m).unwrap();
    std::fs::write(&mpath, &sealed).unwrap();
    // Without the matching manifest checksum, verify already refuses it.
    ws.run(&["verify", bundle.to_str().unwrap()]).code(1);
    std::fs::write(
        bundle.join("bundle-meta.json.sha256"),
        bundle::manifest::manifest_sum(&sealed),
    )
    .unwrap();
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);

    ws.sqlite("db/app.db", "DELETE FROM t;");
    ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
        "--sqlite",
        "app=db/app.db",
    ])
    .code(0);
    let live = Connection::open(ws.path("db/app.db")).unwrap();
    let n = |q: &str| live.query_row(q, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(n("SELECT count(*) FROM t"), 1);
    assert_eq!(
        n("SELECT count(*) FROM extra"),
        1,
        "missing tables are created"
    );
    assert_eq!(
        n("SELECT count(*) FROM audit"),
        0,
        "the bundle's trigger never ran"
    );
    assert_eq!(
        n("SELECT count(*) FROM sqlite_schema WHERE type IN ('trigger', 'view')"),
        0
    );
    drop(live);

    // Replace makes the live database the bundle's, schema included, but runs
    // nothing while doing so: the trigger fires on no write of the restore.
    ws.sqlite(
        "db/app.db",
        "DELETE FROM t; INSERT INTO t(v) VALUES ('live');",
    );
    let token = ws.replace_token(&bundle, &["--sqlite", "app=db/app.db"]);
    ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--sqlite",
        "app=db/app.db",
        "--confirm-token",
        &token,
    ])
    .code(0);
    let live = Connection::open(ws.path("db/app.db")).unwrap();
    let n = |q: &str| live.query_row(q, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(n("SELECT count(*) FROM t WHERE v = 'one'"), 1);
    assert_eq!(
        n("SELECT count(*) FROM audit"),
        0,
        "nothing ran during replace"
    );
}

#[test]
fn a_restore_that_changes_nothing_asks_no_token_and_takes_no_snapshot() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    let bundles = |ws: &Workspace| std::fs::read_dir(ws.path("backups")).unwrap().count();
    // The first merge adds what live lacks (here: nothing is lacking in the
    // JSONL and database stores, one dir file differs), the second is identical.
    ws.run(&["restore", b, "--mode", "merge"]).code(0);
    let before = bundles(&ws);
    let again = ws.run(&["--json", "restore", b, "--mode", "merge"]);
    again.code(0);
    let report = again.json();
    assert_eq!(report["outcome"], "applied");
    assert_eq!(report["safety_snapshot"], serde_json::Value::Null);
    assert!(report.to_string().contains("nothing to change"), "{report}");
    assert_eq!(bundles(&ws), before, "no safety snapshot was taken");
    // A bundle whose stores were all absent: replace changes nothing, so no
    // token is needed and live data is left alone.
    let empty = Workspace::new();
    empty.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"kb\"\nkind = \"jsonl\"\npath = \"data/kb\"\n",
    );
    let absent = empty.create(&[]);
    empty.write("data/kb/live.jsonl", "{\"id\":1}\n");
    let run = empty.run(&["restore", absent.to_str().unwrap(), "--mode", "replace"]);
    run.code(0);
    assert_eq!(
        std::fs::read_to_string(empty.path("data/kb/live.jsonl")).unwrap(),
        "{\"id\":1}\n"
    );
    assert_eq!(
        std::fs::read_dir(empty.path("backups")).unwrap().count(),
        2,
        "the bundle and the lock only"
    );
}

/// Records every progress event.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(String, Option<u64>, u64)>>);

impl bundle::progress::Progress for Recorded {
    fn start(&self, label: &str, total: Option<u64>) {
        self.0.lock().unwrap().push((label.to_string(), total, 0));
    }
    fn advance(&self, bytes: u64) {
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 += bytes;
        }
    }
    fn finish(&self) {}
}

#[test]
fn the_restore_write_phase_reports_a_total_and_reaches_it() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let files: u64 = ws.manifest(&bundle)["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["files"].as_array().unwrap())
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    let recorded = Recorded::default();
    let opts = bundle::restore::RestoreOptions {
        bundle: bundle.clone(),
        mode: bundle::plan::Mode::Replace,
        only: Vec::new(),
        config: bundle::config::Config::default(),
        into: Some(ws.path("scratch")),
        dry_run: false,
        confirm_token: None,
        safety_snapshot: false,
        force_topology_mismatch: true,
    };
    bundle::restore::restore(&opts, &recorded).unwrap();
    let events = recorded.0.lock().unwrap();
    let restoring = events.iter().find(|e| e.0 == "restoring").unwrap();
    assert_eq!(restoring.1, Some(files), "{events:?}");
    assert_eq!(restoring.2, files, "{events:?}");
}

#[test]
fn a_store_any_process_holds_open_is_refused_naming_the_process() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    let held = ws.path("data/vectors/seg-1/data_level0.bin");
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .stdin(std::fs::File::open(&held).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = holder.id().to_string();
    let token = ws.replace_token(&bundle, &[]);
    let run = ws.run(&["restore", b, "--mode", "replace", "--confirm-token", &token]);
    // The dry run above still printed its plan (it got the token).
    let plan = ws.run(&["--json", "restore", b, "--mode", "replace", "--dry-run"]);
    let merge = ws.run(&["restore", b, "--mode", "merge"]);
    let _ = holder.kill();
    let _ = holder.wait();
    run.code(3);
    assert!(
        run.stderr
            .contains(&format!("open in process {pid} (sleep)")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("store \"vectors\""), "{}", run.stderr);
    merge.code(3);
    plan.code(0);
    assert!(
        plan.stdout.contains("a restore now would be refused"),
        "{}",
        plan.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&held).unwrap(),
        "binary-ish segment bytes",
        "nothing was written"
    );
    // Once the process is gone, the same restore goes through.
    ws.run(&["restore", b, "--mode", "replace", "--confirm-token", &token])
        .code(0);
}

#[test]
fn a_merge_that_cannot_bring_everything_back_says_what_it_left_out() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    // A dir file that differs live, and full-text rows live lost (a
    // standalone FTS table is not merged row by row).
    ws.write("data/vectors/seg-1/data_level0.bin", "rewritten live");
    ws.sqlite("data/memory.db", "DELETE FROM notes_fts;");
    let run = ws.run(&["--json", "restore", b, "--mode", "merge"]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["outcome"], "incomplete");
    assert_eq!(doc["error"]["kind"], "incomplete");
    let store = |name: &str| crate::support::store_entry(&doc, name);
    let vectors = store("vectors")["left_out"].to_string();
    assert!(vectors.contains("data_level0.bin"), "{vectors}");
    let memory = store("memory")["left_out"].to_string();
    assert!(
        memory.contains("notes_fts (fts5): 3 bundle row(s) live lacks"),
        "{memory}"
    );
    assert!(store("kb")["left_out"].as_array().unwrap().is_empty());
    // The live data was kept.
    assert_eq!(
        std::fs::read_to_string(ws.path("data/vectors/seg-1/data_level0.bin")).unwrap(),
        "rewritten live"
    );
    // The human output lists them too, and says what to do.
    let human = ws.run(&["restore", b, "--mode", "merge"]);
    human.code(1);
    assert!(human.stdout.contains("left out: "), "{}", human.stdout);
    assert!(human.stderr.contains("--mode replace"), "{}", human.stderr);
    // A dry run shows the same before anything is written.
    let plan = ws.run(&["--json", "restore", b, "--mode", "merge", "--dry-run"]);
    plan.code(0);
    assert!(plan.stdout.contains("data_level0.bin"), "{}", plan.stdout);
}

#[test]
fn a_stores_own_check_runs_in_drill_and_after_restore() {
    let ws = Workspace::new();
    ws.write("data/my kb/a.jsonl", "{\"id\":1}\n{\"id\":2}\n");
    let config = |check: &str| {
        format!(
            "destination = \"backups\"\n[[stores]]\nname = \"kb\"\nkind = \"jsonl\"\npath = \"data/my kb\"\ncheck = '{check}'\n"
        )
    };
    // {path} is the restored copy, quoted: a name with a space is safe.
    ws.write(
        "bundle.toml",
        &config("test \"$(wc -l < {path}/a.jsonl)\" -eq 2"),
    );
    let bundle = ws.create(&[]);
    let b = bundle.to_str().unwrap();
    let drill = ws.run(&["--json", "drill", b]);
    drill.code(0);
    assert_eq!(drill.json()["stores"][0]["check"], "ok", "{}", drill.stdout);
    let human = ws.run(&["drill", b]);
    assert!(human.stdout.contains("check: ok"), "{}", human.stdout);

    // A check that fails: the drill is not ok (exit 1) and says how it failed.
    ws.write("bundle.toml", &config("test -e {path}/missing.jsonl"));
    let drill = ws.run(&["--json", "drill", b]);
    drill.code(1);
    let doc = drill.json();
    assert_eq!(doc["ok"], false);
    assert!(
        doc["stores"][0]["check"]
            .as_str()
            .unwrap()
            .contains("status 1"),
        "{doc}"
    );

    // After a restore, a failing check stops it with the journal kept and
    // says how to undo; once it passes, the same restore finishes.
    ws.write("data/my kb/a.jsonl", "{\"id\":1}\n");
    let run = ws.run(&["restore", b, "--mode", "merge"]);
    run.code(1);
    assert!(
        run.stderr.contains("its check command failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--mode replace"), "{}", run.stderr);
    assert!(ws.path("backups/.restore-journal.json").exists());
    ws.write("bundle.toml", &config("test -s {path}/a.jsonl"));
    ws.run(&["restore", b, "--mode", "merge"]).code(0);
    assert!(!ws.path("backups/.restore-journal.json").exists());
}

#[test]
fn replace_reads_each_file_once_and_a_same_size_alteration_changes_nothing_live() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    // Live differs from the bundle in every store, so the replace writes
    // (and stages) files of each.
    ws.write("data/kb/b.jsonl", "{\"id\":4}\n");
    ws.write(
        "data/vectors/seg-1/data_level0.bin",
        "other segment bytes!!!!!",
    );
    sql(
        &ws,
        "INSERT INTO notes(project_id, body) VALUES (2, 'live only');",
    );
    // One byte of the bundle's JSONL file flipped, its size kept: only the
    // hash as it is staged can find it.
    make_writable(&bundle);
    let victim = bundle.join("kb/b.jsonl");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    let token = ws.replace_token(&bundle, &["--no-safety-snapshot"]);
    let before = tree(&ws.path("data"));

    let replace = || {
        ws.run(&[
            "--json",
            "restore",
            bundle.to_str().unwrap(),
            "--mode",
            "replace",
            "--no-safety-snapshot",
            "--confirm-token",
            &token,
        ])
    };
    let run = replace();
    run.code(1);
    let out = run.json();
    assert_eq!(out["error"]["kind"], "bundle_invalid", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("kb/b.jsonl: sha256 does not match the manifest")
            && message.contains("nothing was changed"),
        "{message}"
    );
    // Every live byte as it was, no staged file left, no journal: the next
    // create is not refused as after an interrupted restore.
    assert_eq!(tree(&ws.path("data")), before);
    assert!(!ws.path("backups/.restore-journal.json").exists());
    ws.run(&["create"]).code(0);

    // Mended, the same token restores every store and leaves nothing staged.
    let mut good = bytes.clone();
    good[1] ^= 0x20;
    std::fs::write(&victim, &good).unwrap();
    replace().code(0);
    assert_eq!(read(&ws, "data/kb/b.jsonl"), "{\"id\":3}\n");
    assert_eq!(
        read(&ws, "data/vectors/seg-1/data_level0.bin"),
        "binary-ish segment bytes"
    );
    assert_eq!(notes(&ws), ["tomatoes", "basil", "trains"]);
    let staged: Vec<_> = tree(&ws.path("data"))
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("bundle-tmp"))
        .collect();
    assert!(staged.is_empty(), "{:?}", staged.len());
}

#[test]
fn a_replaced_wal_database_gets_the_new_rows_and_never_the_old_wal() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    // The live database moves on, with its last transactions only in its WAL
    // (a connection stays open until the moment before the restore).
    let holder = Connection::open(ws.path("data/memory.db")).unwrap();
    holder
        .execute_batch(
            "PRAGMA wal_autocheckpoint=0;
             DELETE FROM notes WHERE body = 'basil';
             INSERT INTO notes(project_id, body) VALUES (1, 'in the wal');",
        )
        .unwrap();
    // Keep the WAL and its index as a crashed writer would leave them.
    let wal = std::fs::read(ws.path("data/memory.db-wal")).unwrap();
    assert!(!wal.is_empty());
    let main = std::fs::read(ws.path("data/memory.db")).unwrap();
    drop(holder);
    std::fs::write(ws.path("data/memory.db"), &main).unwrap();
    std::fs::write(ws.path("data/memory.db-wal"), &wal).unwrap();
    let snapshot = ws.replace(&bundle, &[]);
    assert_eq!(snapshot["ok"], true, "{snapshot}");
    // Had the old WAL been replayed onto the restored file, it would hold
    // 'in the wal' and lack 'basil' (or fail to open).
    assert_eq!(notes(&ws), ["tomatoes", "basil", "trains"]);
    let conn = Connection::open(ws.path("data/memory.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mode, "wal",
        "the restored database keeps the source's journal mode"
    );
    drop(conn);
    // The safety snapshot holds the live rows, the WAL's included.
    let taken = PathBuf::from(snapshot["safety_snapshot"].as_str().unwrap());
    ws.replace(&taken, &["--no-safety-snapshot"]);
    assert_eq!(notes(&ws), ["tomatoes", "trains", "in the wal"]);
}

#[test]
fn replace_still_restores_a_file_changed_in_place_with_its_size_and_mtime_put_back() {
    let ws = Workspace::new();
    demo_stores(&ws);
    // Old enough for the create to record (and a replace to trust) each
    // source's identity.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let bundle = ws.create(&[]);
    let manifest = ws.manifest(&bundle);
    let record = crate::support::file_record(&manifest, "vectors/seg-1/data_level0.bin");
    assert!(record["source_stat"].is_object(), "{record}");

    // Other bytes, same size, the old mtime.
    crate::support::rewrite_keeping_mtime(
        &ws.path("data/vectors/seg-1/data_level0.bin"),
        b"BINARY-ISH SEGMENT BYTES",
    );

    let out = ws.replace(&bundle, &["--no-safety-snapshot"]);
    assert_eq!(
        read(&ws, "data/vectors/seg-1/data_level0.bin"),
        "binary-ish segment bytes",
        "{out}"
    );
    // The files left as the create read them are kept, the altered one written.
    let store = |name: &str| crate::support::store_entry(&out, name);
    assert_eq!(store("kb")["kept"], 2, "{out}");
    let bin = store("vectors")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["target"].as_str().unwrap().ends_with("data_level0.bin"))
        .unwrap()
        .clone();
    assert_eq!(bin["step"], "write", "{out}");
    // Both of its paths shown whole: the bundle's copy and the live file.
    let source = bundle.join("vectors/seg-1/data_level0.bin");
    assert_eq!(bin["source"], source.to_str().unwrap(), "{out}");
    let target = ws.path("data/vectors/seg-1/data_level0.bin");
    assert_eq!(bin["target"], target.to_str().unwrap(), "{out}");
    assert_eq!(
        std::fs::read(&source).unwrap(),
        std::fs::read(&target).unwrap()
    );
}

#[test]
fn a_replace_with_its_safety_snapshot_applies_and_reports_the_plan_it_showed() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::new();
    demo_stores(&ws);
    // Files left as they are (parked while the snapshot is taken), one with
    // a name that is not UTF-8, in folders of their own.
    for n in 0..40 {
        ws.write(
            &format!("data/vectors/seg-2/part-{n:02}.bin"),
            &format!("part {n}"),
        );
    }
    let odd = ws
        .path("data/vectors/seg-2")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.bin"));
    std::fs::write(&odd, "latin-1 name").unwrap();
    let bundle = ws.create(&[]);
    // Live moves on: a file changed, one added (to remove), one removed.
    ws.write("data/vectors/seg-2/part-07.bin", "changed");
    ws.write("data/vectors/seg-2/extra.bin", "live only");
    std::fs::remove_file(ws.path("data/vectors/seg-2/part-30.bin")).unwrap();

    let planned = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--dry-run",
    ]);
    planned.code(0);
    let steps_of = |report: &serde_json::Value| store_entry(report, "vectors")["steps"].clone();
    let planned_steps = steps_of(&planned.json());
    let applied = ws.replace(&bundle, &[]);

    // The plan applied and reported is the one shown, step for step (its
    // `keep` steps put back as they were, the odd name too).
    assert_eq!(steps_of(&applied), planned_steps);
    let kinds = |step: &str| {
        planned_steps
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == step)
            .count()
    };
    assert!(kinds("keep") >= 40, "{planned_steps}");
    assert_eq!((kinds("write"), kinds("remove")), (2, 1), "{planned_steps}");
    assert_eq!(read(&ws, "data/vectors/seg-2/part-07.bin"), "part 7");
    assert_eq!(read(&ws, "data/vectors/seg-2/part-30.bin"), "part 30");
    assert!(!ws.path("data/vectors/seg-2/extra.bin").exists());
    assert_eq!(std::fs::read(&odd).unwrap(), b"latin-1 name");

    // The snapshot holds the live store as it was.
    let snapshot = PathBuf::from(applied["safety_snapshot"].as_str().unwrap());
    assert_eq!(
        std::fs::read(snapshot.join("vectors/seg-2/extra.bin")).unwrap(),
        b"live only"
    );
    assert_eq!(
        std::fs::read(snapshot.join("vectors/seg-2/part-07.bin")).unwrap(),
        b"changed"
    );
}
