//! `kind = "lancedb"` with the real `lancedb` client: each table's newest
//! committed version captured with exactly the files it needs, re-checked
//! by verify and drill, restored by replace, merged table by table, and
//! consistent under a live writer.
//!
//! Skips loudly without `lancedb`; mandatory in `.ci/run`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{copy_tree, forge, python_with, spawn_until, store, Workspace};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lance_helper.py")
}

/// Runs one action of `tests/support/lance_helper.py`; its stdout.
fn helper(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lance helper {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn query(python: &Path, dir: &Path) -> Value {
    serde_json::from_str(&helper(python, &["query", dir.to_str().unwrap()])).unwrap()
}

/// The recorded facts of table `name` in store `db`.
fn table(manifest: &Value, name: &str) -> Value {
    let store = manifest["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "db")
        .unwrap();
    store["lancedb"]["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no lancedb facts: {store}"))
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no table {name}: {store}"))
        .clone()
}

#[test]
fn a_lancedb_store_captures_each_tables_version_and_verify_rechecks_it() {
    let Some(python) = python_with("lancedb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("lance");
    helper(&python, &["make", live.to_str().unwrap()]);
    let before = query(&python, &live);
    let bundle = ws.create(&["--dest", "b", "--lancedb", "db=lance"]);
    let m = ws.manifest(&bundle);
    let notes = table(&m, "notes");
    assert_eq!(notes["rows"], 14, "{notes}");
    assert_eq!(notes["version"], before["notes"]["version"], "{notes}");
    assert_eq!(table(&m, "other")["rows"], 1);
    let errors: Vec<String> = crate::schema::schema("bundle-meta.schema.json")
        .iter_errors(&m)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Only the captured version's manifest, and its index.
    let files: Vec<&str> = m["stores"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let manifests = files.iter().filter(|p| p.ends_with(".manifest")).count();
    assert_eq!(manifests, 2, "{files:?}");
    assert!(files.iter().any(|p| p.contains("/_indices/")), "{files:?}");
    assert!(
        !files.iter().any(|p| p.contains("_transactions")),
        "{files:?}"
    );
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    let drill = ws.run(&["--json", "drill", bundle.to_str().unwrap()]);
    drill.code(0);
    assert_eq!(drill.json()["stores"][0]["check"], "ok", "{}", drill.stdout);

    // A recorded row count the copy does not hold is caught.
    let forged = ws.path("forged");
    copy_tree(&bundle, &forged);
    forge(&forged, |m| {
        store(m, "db")["lancedb"]["tables"][0]["rows"] = 15.into();
    });
    let run = ws.run(&["verify", forged.to_str().unwrap()]);
    run.code(1);
    assert!(run.stdout.contains("recorded version"), "{}", run.stdout);

    // Replace brings back exactly the captured version, newer ones removed.
    helper(&python, &["grow", live.to_str().unwrap()]);
    assert_ne!(query(&python, &live), before);
    ws.write("stray.txt", "not a table\n");
    std::fs::copy(ws.path("stray.txt"), live.join("notes.txt")).unwrap();
    ws.replace(&bundle, &["--lancedb", "db=lance"]);
    let after = query(&python, &live);
    assert_eq!(after["notes"]["rows"], before["notes"]["rows"]);
    assert_eq!(after["notes"]["ids"], before["notes"]["ids"]);
    assert_eq!(after["other"], before["other"]);
    assert!(
        live.join("notes.txt").exists(),
        "replace removed a file that is not a table"
    );
}

#[test]
fn merge_adds_missing_tables_whole_and_leaves_out_the_others() {
    let Some(python) = python_with("lancedb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("lance");
    helper(&python, &["make", live.to_str().unwrap()]);
    let bundle = ws.create(&["--dest", "b", "--lancedb", "db=lance"]);
    helper(&python, &["drop", live.to_str().unwrap(), "other"]);
    helper(&python, &["grow", live.to_str().unwrap()]);
    let grown = query(&python, &live)["notes"].clone();
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
        "--lancedb",
        "db=lance",
    ]);
    run.code(1);
    let json = run.json();
    assert_eq!(json["ok"], false, "{}", run.stdout);
    assert_eq!(json["outcome"], "incomplete", "{}", run.stdout);
    let left_out = json["stores"][0]["left_out"].as_array().unwrap();
    assert_eq!(left_out.len(), 1, "{left_out:?}");
    assert!(
        left_out[0].as_str().unwrap().contains("notes.lance"),
        "{left_out:?}"
    );
    let now = query(&python, &live);
    assert_eq!(now["notes"], grown, "merge changed a table present live");
    assert_eq!(
        now["other"]["rows"], 1,
        "the missing table was not restored"
    );
}

#[test]
fn under_a_live_writer_every_bundle_holds_one_committed_version() {
    let Some(python) = python_with("lancedb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("lance");
    let mut writer = spawn_until(
        Command::new(&python)
            .arg(script())
            .args(["write", live.to_str().unwrap()]),
        "ready",
    );
    let mut published = Vec::new();
    for _ in 0..30 {
        let run = ws.run(&["--json", "create", "--dest", "b", "--lancedb", "db=lance"]);
        run.code(0);
        published.push(PathBuf::from(run.json()["path"].as_str().unwrap()));
    }
    let _ = writer.kill();
    let _ = writer.wait();
    let mut copies = Vec::new();
    let mut facts = Vec::new();
    for (i, bundle) in published.iter().enumerate() {
        ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
        facts.push(table(&ws.manifest(bundle), "stress"));
        let scratch = ws.path(&format!("scratch-{i}"));
        copy_tree(&bundle.join("db"), &scratch);
        copies.push(scratch);
    }
    let versions: std::collections::BTreeSet<String> =
        facts.iter().map(|f| f["version"].to_string()).collect();
    eprintln!(
        "lancedb writer stress: 30 of 30 published, {} distinct versions",
        versions.len()
    );
    assert!(
        versions.len() > 1,
        "the writer did not write during the creates"
    );
    let mut args = vec!["check-stress"];
    args.extend(copies.iter().map(|c| c.to_str().unwrap()));
    let out = helper(&python, &args);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), copies.len());
    for (line, fact) in lines.iter().zip(&facts) {
        assert_eq!(line["version"], fact["version"], "{line}");
        assert_eq!(line["rows"], fact["rows"], "{line}");
        assert_eq!(line["found"], 10, "{line}");
    }
}

/// The LanceDB `check` exactly as docs/restore.md shows it, with `python`
/// for `python3`.
fn documented_check(python: &Path) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/restore.md"))
            .unwrap();
    let from = doc
        .find("A LanceDB database")
        .expect("docs/restore.md shows a LanceDB check");
    let block = &doc[from..];
    let start = block.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + block[start..].find("```").unwrap();
    block[start..end].replacen("python3", &python.display().to_string(), 1)
}

#[test]
fn the_documented_lancedb_check_opens_the_drilled_store_and_torn_copies_are_refused() {
    let Some(python) = python_with("lancedb") else {
        return;
    };
    let ws = Workspace::new();
    helper(&python, &["make", ws.path("lance").to_str().unwrap()]);
    ws.write(
        "bundle.toml",
        &format!(
            "destination = \"b\"\n[[stores]]\nname = \"db\"\nkind = \"lancedb\"\npath = \"lance\"\n{}",
            documented_check(&python)
        ),
    );
    let bundle = ws.create(&[]);
    let drill = ws.run(&["--json", "drill", bundle.to_str().unwrap()]);
    drill.code(0);
    assert_eq!(drill.json()["stores"][0]["check"], "ok", "{}", drill.stderr);

    // A data file the version needs, left out of a forged bundle.
    let torn = ws.path("torn");
    copy_tree(&bundle, &torn);
    let mut gone = String::new();
    forge(&torn, |m| {
        let files = store(m, "db")["files"].as_array_mut().unwrap();
        let at = files
            .iter()
            .position(|f| f["path"].as_str().unwrap().contains("notes.lance/data/"))
            .unwrap();
        gone = files.remove(at)["path"].as_str().unwrap().to_string();
    });
    std::fs::remove_file(torn.join(&gone)).unwrap();
    let run = ws.run(&["verify", torn.to_str().unwrap()]);
    run.code(1);
    assert!(run.stdout.contains("which is missing"), "{}", run.stdout);
}
