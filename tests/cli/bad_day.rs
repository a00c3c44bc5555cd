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
    let rec = store_entry(&manifest, "memory");
    assert_eq!(rec["status"], "damaged");
    assert!(
        rec["error"].as_str().unwrap().contains("malformed"),
        "{rec}"
    );
    assert_eq!(
        std::fs::read(snapshot.join("memory/memory.db")).unwrap(),
        damaged
    );
    assert_eq!(store_entry(&manifest, "kb")["status"], "ok");
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
    assert_eq!(store_entry(&manifest, "vectors")["status"], "damaged");
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

/// The demo config with a retention policy that keeps only the newest two.
fn nightly(ws: &Workspace) {
    ws.write(
        "bundle.toml",
        &format!("{DEMO_CONFIG}[retention]\nkeep_last = 2\n"),
    );
}

#[test]
fn a_week_of_nightly_bundles_of_a_wiped_store_never_rotates_the_good_one_out() {
    let ws = Workspace::new();
    demo_stores(&ws);
    nightly(&ws);
    let good = ws.create(&["--prune"]);
    let good_id = good.file_name().unwrap().to_str().unwrap().to_string();
    // The bad day nobody noticed: the JSONL folder is wiped, the database gutted.
    std::fs::remove_dir_all(ws.path("data/kb")).unwrap();
    ws.sqlite(
        "data/memory.db",
        "DELETE FROM notes; DELETE FROM projects; DELETE FROM notes_fts;",
    );
    for night in 0..7 {
        let run = ws.run(&["--json", "create", "--prune"]);
        run.code(1);
        let doc = run.json();
        assert_eq!(doc["ok"], false, "night {night}: {doc}");
        assert_eq!(doc["suspicious"], true);
        let reasons = doc["suspicious_reasons"].to_string();
        assert!(
            reasons.contains("store \\\"kb\\\" had 3 lines"),
            "{reasons}"
        );
        assert!(reasons.contains("is now absent"), "{reasons}");
        assert!(reasons.contains("store \\\"memory\\\" lost"), "{reasons}");
        assert!(
            reasons.contains(&good_id),
            "compared with the good bundle: {reasons}"
        );
        // The bundle is published as evidence, and says so itself.
        let bundle = Path::new(doc["path"].as_str().unwrap()).to_path_buf();
        assert_eq!(ws.manifest(&bundle)["suspicious"], true);
    }
    let human = ws.run(&["create"]);
    human.code(1);
    assert!(human.stderr.contains("is suspicious"), "{}", human.stderr);
    assert!(human.stderr.contains("--accept-shrink"), "{}", human.stderr);
    assert!(
        human.stdout.contains('\t'),
        "the id and path are still printed"
    );

    // A prune keeps only the newest two, and the good bundle for its stores.
    let pruned = ws.run(&["--json", "prune", "--apply"]);
    pruned.code(0);
    let report = pruned.json();
    let kept = report["kept"].as_array().unwrap();
    let good_kept = kept
        .iter()
        .find(|k| k["id"] == good_id.as_str())
        .unwrap_or_else(|| panic!("the good bundle is kept: {report}"));
    assert!(good_kept["reasons"].to_string().contains("last-healthy"));
    assert_eq!(
        good_kept["last_healthy"],
        serde_json::json!(["kb", "memory", "vectors"])
    );
    assert_eq!(kept.len(), 3, "{report}");
    assert!(good.join("kb").is_dir(), "the data is still there");
    let human = ws.run(&["prune"]);
    assert!(
        human.stdout.contains("last-healthy: kb, memory, vectors"),
        "{}",
        human.stdout
    );

    // list and verify show it.
    let list = ws.run(&["list"]);
    assert!(list.stdout.contains("SUSPICIOUS"), "{}", list.stdout);
    let newest = kept[0]["id"].as_str().unwrap();
    let verify = ws.run(&["verify", newest]);
    verify.code(0);
    assert!(
        verify.stdout.contains("suspicious: store"),
        "{}",
        verify.stdout
    );

    // The shrink was intended after all: accept it; the next night is normal,
    // and the old good bundle may now rotate out.
    let accepted = ws.run(&["--json", "create", "--accept-shrink"]);
    accepted.code(0);
    let doc = accepted.json();
    assert_eq!(doc["suspicious"], false);
    assert!(doc["accepted_shrink"].to_string().contains("kb"), "{doc}");
    ws.run(&["create", "--prune"]).code(0);
    assert!(
        !good.exists(),
        "rotated out once a newer healthy bundle exists"
    );
}

#[test]
fn shrink_alarm_is_a_fraction_per_store_and_a_label_acknowledges() {
    let ws = Workspace::new();
    demo_stores(&ws);
    // Losing 2 of 3 lines (67%) is under this store's own alarm of 0.8.
    ws.write(
        "bundle.toml",
        &DEMO_CONFIG.replace("key = \"id\"\n", "key = \"id\"\nshrink_alarm = 0.8\n"),
    );
    ws.create(&[]);
    std::fs::remove_file(ws.path("data/kb/2026/a.jsonl")).unwrap();
    ws.run(&["create"]).code(0);
    // The top-level alarm applies to the others: 0 means any loss.
    ws.write("bundle.toml", &format!("shrink_alarm = 0.0\n{DEMO_CONFIG}"));
    ws.write("data/vectors/seg-1/data_level0.bin", "short");
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr.contains("store \"vectors\" lost"),
        "{}",
        run.stderr
    );
    // A labelled create is a deliberate one: the shrink is recorded as accepted.
    let labelled = ws.run(&["--json", "create", "--label", "trimmed the index"]);
    labelled.code(0);
    assert!(labelled.json()["accepted_shrink"]
        .to_string()
        .contains("vectors"));
    // Not a fraction: a config error with the key's name.
    ws.write("bundle.toml", &format!("shrink_alarm = 2\n{DEMO_CONFIG}"));
    let bad = ws.run(&["create"]);
    bad.code(2);
    assert!(bad.stderr.contains("shrink_alarm = 2"), "{}", bad.stderr);
}

#[test]
fn a_forged_damaged_store_outside_a_safety_snapshot_fails_verify() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    forge(&bundle, |m| {
        let s = store(m, "memory");
        s["status"] = "damaged".into();
        s["error"] = "forged".into();
    });
    let run = ws.run(&["verify", bundle.to_str().unwrap()]);
    run.code(1);
    assert!(
        run.stdout
            .contains("status damaged outside a safety snapshot"),
        "{}",
        run.stdout
    );
    // And a restore refuses it before writing anything.
    ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"])
        .code(1);
}

#[test]
fn a_create_after_a_restore_is_judged_against_the_bundle_before_its_safety_snapshot() {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.write("bundle.toml", &format!("shrink_alarm = 0.0\n{DEMO_CONFIG}"));
    let good = ws.create(&[]);
    let good_arg = good.to_str().unwrap();
    let good_id = good.file_name().unwrap().to_str().unwrap();
    // A replace leaves its safety snapshot as the newest bundle: not a
    // baseline (it captures whatever was live), though a create may reuse
    // from it.
    ws.write(
        "data/vectors/seg-1/data_level0.bin",
        "changed since the bundle",
    );
    let plan = ws.run(&[
        "--json",
        "restore",
        good_arg,
        "--mode",
        "replace",
        "--dry-run",
    ]);
    let token = plan.json()["confirm_token"].as_str().unwrap().to_string();
    let restored = ws.run(&[
        "--json",
        "restore",
        good_arg,
        "--mode",
        "replace",
        "--confirm-token",
        &token,
    ]);
    restored.code(0);
    let snapshot = restored.json()["safety_snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!snapshot.ends_with(good_id));
    // The store then shrinks: judged against the bundle before the snapshot.
    ws.write("data/vectors/seg-1/data_level0.bin", "short");
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr.contains("store \"vectors\" lost")
            && run.stderr.contains(&format!("since bundle {good_id}")),
        "{}",
        run.stderr
    );
}
