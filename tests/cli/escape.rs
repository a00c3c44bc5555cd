//! Restore and drill write only inside the stores they were asked to restore:
//! forged symlink chains in a bundle and symlinks planted in live stores never
//! redirect a write. A canary tree around the stores must hash the same after
//! every attempt.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::forge;
use crate::support::Workspace;

/// sha256 of every file, link and folder under `root` (paths, link targets,
/// contents), skipping the named top-level entries.
fn tree_digest(root: &Path, skip: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for entry in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            e.depth() != 1
                || !skip
                    .iter()
                    .any(|s| e.file_name() == std::ffi::OsStr::new(s))
        })
    {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap();
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        if entry.file_type().is_symlink() {
            h.update(b"L");
            h.update(
                std::fs::read_link(entry.path())
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if entry.file_type().is_file() {
            h.update(b"F");
            h.update(std::fs::read(entry.path()).unwrap());
        } else {
            h.update(b"D");
        }
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A workspace with a dir store `data/vectors`, a canary file beside it and a
/// canary folder above it, and a private temp folder for drill.
fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("data/vectors/seg/a.bin", "segment a");
    ws.write("data/vectors/top.bin", "top");
    ws.write("data/canary.txt", "the store's parent must not change");
    ws.write("canary/victim.txt", "nothing may write here");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n",
    );
    std::fs::create_dir_all(ws.path("tmp")).unwrap();
    ws
}

/// Every restore a user could run on `bundle`: drill, `--into`, merge, replace.
fn every_restore(ws: &Workspace, bundle: &Path) -> Vec<(String, crate::support::Run)> {
    let b = bundle.to_str().unwrap();
    let mut runs = Vec::new();
    let mut drill = ws.cmd();
    drill.env("TMPDIR", ws.path("tmp")).args(["drill", b]);
    runs.push(("drill".to_string(), drill.output().unwrap().into()));
    let into = ws.path(&format!("into-{}", runs.len()));
    runs.push((
        "into".into(),
        ws.run(&[
            "restore",
            b,
            "--mode",
            "replace",
            "--into",
            into.to_str().unwrap(),
        ]),
    ));
    runs.push(("merge".into(), ws.run(&["restore", b, "--mode", "merge"])));
    let dry = ws.run(&["--json", "restore", b, "--mode", "replace", "--dry-run"]);
    if dry.code == 0 {
        let token = dry.json()["confirm_token"].as_str().unwrap().to_string();
        runs.push((
            "replace".into(),
            ws.run(&["restore", b, "--mode", "replace", "--confirm-token", &token]),
        ));
    } else {
        runs.push(("replace dry run".into(), dry));
    }
    runs
}

/// A chain of `n` recorded links that each look inside on their own; the last
/// one climbs out of the store: `l1 -> .`, `lk -> l(k-1)`, `ln -> l(n-1)/..`.
fn chain(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|k| {
            let target = match k {
                1 if n == 1 => "..".to_string(),
                1 => ".".to_string(),
                k if k == n => format!("l{}/..", k - 1),
                k => format!("l{}", k - 1),
            };
            json!({"path": format!("vectors/l{k}"), "target": target})
        })
        .collect()
}

#[test]
fn forged_symlink_chains_of_any_length_never_lead_a_write_outside_the_store() {
    let ws = workspace();
    let good = ws.create(&[]);
    let mut cases = 0;
    for n in 1..=20 {
        for with_file in [false, true] {
            let bundle = ws.path(&format!("forged-{n}-{with_file}"));
            crate::support::copy_tree(&good, &bundle);
            if with_file {
                // A file recorded under the last link: restore would write it
                // into the store's parent, replacing data/canary.txt.
                let dir = bundle.join(format!("vectors/l{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("canary.txt"), "overwritten").unwrap();
            }
            let sha = {
                use sha2::{Digest, Sha256};
                hex::encode(Sha256::digest(b"overwritten"))
            };
            forge(&bundle, |m| {
                let store = &mut m["stores"][0];
                store["symlinks"] = Value::Array(chain(n));
                if with_file {
                    store["files"].as_array_mut().unwrap().push(json!({
                        "path": format!("vectors/l{n}/canary.txt"),
                        "bytes": 11, "sha256": sha, "reused": false
                    }));
                }
            });
            let skip = ["backups", "tmp", "data", "into-1"];
            let before = tree_digest(ws.root(), &skip);
            let outside = |ws: &Workspace| {
                (
                    std::fs::read_to_string(ws.path("data/canary.txt")).unwrap(),
                    tree_digest(&ws.path("canary"), &[]),
                )
            };
            let canary_before = outside(&ws);
            let verify = ws.run(&["verify", bundle.to_str().unwrap()]);
            if with_file {
                verify.code(1);
                assert!(
                    verify.stdout.contains("lies under the recorded symlink"),
                    "{}",
                    verify.stdout
                );
            } else {
                verify.code(0);
            }
            for (what, run) in every_restore(&ws, &bundle) {
                cases += 1;
                assert_ne!(run.code, 101, "{what} panicked: {}", run.stderr);
                assert_eq!(
                    outside(&ws),
                    canary_before,
                    "chain {n} ({what}) wrote outside"
                );
                if !with_file && (what == "merge" || what == "replace") {
                    // A merge that leaves the escaping link out says so (exit 1).
                    run.code(if what == "merge" { 1 } else { 0 });
                    // The escaping link is never created; the harmless ones are.
                    let last = ws.path(&format!("data/vectors/l{n}"));
                    assert!(
                        std::fs::symlink_metadata(&last).is_err(),
                        "{what}: l{n} created"
                    );
                }
            }
            // Only the store itself (and the destination, drill's temp and
            // --into folders) may differ.
            assert_eq!(
                tree_digest(ws.root(), &skip),
                before,
                "chain {n} wrote outside"
            );
            let left: Vec<_> = std::fs::read_dir(ws.path("tmp")).unwrap().collect();
            assert!(left.is_empty(), "drill left {left:?} in its temp folder");
            // Put the live store back for the next case.
            ws.replace(&good, &[]);
            let _ = std::fs::remove_dir_all(ws.path("into-1"));
        }
    }
    assert!(cases >= 160, "{cases} cases");
}

/// Plants a symlink to the canary folder (or, for a database, to a canary
/// database) at `rel` inside the live store, moving what was there aside.
fn plant(ws: &Workspace, store: &str, rel: &str) -> PathBuf {
    let at = ws.path(store).join(rel);
    if at.is_dir() {
        std::fs::remove_dir_all(&at).unwrap();
    } else {
        let _ = std::fs::remove_file(&at);
    }
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    let to = match rel.ends_with(".db") {
        true => ws.path("canary/other.db"),
        false => ws.path("canary"),
    };
    std::os::unix::fs::symlink(to, &at).unwrap();
    at
}

#[test]
fn symlinks_planted_in_live_stores_at_every_depth_are_never_followed() {
    let ws = Workspace::new();
    ws.write("data/vectors/a/b/c/deep.bin", "deep");
    ws.write("data/vectors/a/b/mid.bin", "mid");
    ws.write("data/vectors/a/top.bin", "top");
    ws.write("data/kb/x/y/notes.jsonl", "{\"id\":1}\n");
    ws.write("data/kb/x/first.jsonl", "{\"id\":2}\n");
    ws.sqlite(
        "data/memory.db",
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    ws.write("canary/victim.txt", "nothing may write here");
    ws.write("canary/notes.jsonl", "{\"id\":9}\n");
    ws.sqlite("canary/other.db", "CREATE TABLE t(x);");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n\
         [[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n\
         [[stores]]\nname = \"kb\"\nkind = \"jsonl\"\npath = \"data/kb\"\n\
         [[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n",
    );
    let good = ws.create(&[]);
    let b = good.to_str().unwrap();
    let canary = tree_digest(&ws.path("canary"), &[]);
    let plants = [
        ("data/vectors", "a"),
        ("data/vectors", "a/b"),
        ("data/vectors", "a/b/c"),
        ("data/vectors", "a/b/c/deep.bin"),
        ("data/kb", "x"),
        ("data/kb", "x/y"),
        ("data/kb", "x/y/notes.jsonl"),
        ("data", "memory.db"),
    ];
    for (store, rel) in plants {
        let link = plant(&ws, store, rel);
        let merge = ws.run(&["--json", "restore", b, "--mode", "merge"]);
        // Nothing to merge (each bundle file is kept or a conflict): nothing
        // applied, and what the link hides is reported left out (exit 1).
        merge.code(1);
        let merged = merge.json();
        assert!(merged["safety_snapshot"].is_null(), "{merged}");
        assert_eq!(merged["error"]["kind"], "incomplete", "{merged}");
        assert_eq!(
            tree_digest(&ws.path("canary"), &[]),
            canary,
            "merge through {rel}"
        );
        assert!(
            merge.stdout.contains("not followed"),
            "merge must report the link at {rel}: {}",
            merge.stdout
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let replaced = ws.replace(&good, &[]);
        let sandbox = bundle::sandbox::probe();
        assert_eq!(replaced["sandbox"], serde_json::to_value(sandbox).unwrap());
        assert_eq!(
            tree_digest(&ws.path("canary"), &[]),
            canary,
            "replace through {rel}"
        );
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "replace leaves the store as the bundle has it: {rel} is no longer a link"
        );
        ws.run(&["verify", b]).code(0);
    }
    assert_eq!(
        std::fs::read_to_string(ws.path("data/vectors/a/b/c/deep.bin")).unwrap(),
        "deep"
    );
    assert_eq!(crate::support::count(&ws.path("data/memory.db"), "t"), 1);
}

#[test]
fn odd_and_255_byte_names_round_trip() {
    let ws = Workspace::new();
    let long = "n".repeat(255);
    let near = format!("{}.jsonl", "j".repeat(249));
    ws.write(&format!("data/vectors/{long}"), "longest name");
    ws.write("data/vectors/back\\slash", "backslash");
    ws.write("data/vectors/sp ace%20and\ttab", "odd");
    // Names and a link target that are not UTF-8 (two that look alike once
    // made readable), in a folder that is not UTF-8 either.
    {
        use std::os::unix::ffi::OsStrExt;
        let raw = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
        let dir = ws.path("data/vectors").join(raw(b"caf\xe9"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(raw(b"n\xffme")), "latin-1 ff").unwrap();
        std::fs::write(dir.join(raw(b"n\xfeme")), "latin-1 fe").unwrap();
        std::os::unix::fs::symlink(raw(b"n\xffme"), dir.join("link")).unwrap();
    }
    ws.write(&format!("data/kb/{near}"), "{\"id\":1}\n");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n\
         [[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n\
         [[stores]]\nname = \"kb\"\nkind = \"jsonl\"\npath = \"data/kb\"\n",
    );
    let before = tree_digest(&ws.path("data"), &[]);
    let bundle = ws.create(&[]);
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    let manifest = ws.manifest(&bundle);
    let hexes: Vec<&str> = manifest["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["files"].as_array().unwrap())
        .filter_map(|f| f["path_hex"].as_str())
        .collect();
    assert_eq!(hexes.len(), 2, "{manifest}");
    let link = &manifest["stores"][1]["symlinks"][0];
    assert_eq!(link["target"], "n\u{fffd}me");
    assert_eq!(link["target_hex"], "6eff6d65");
    let mut drill = ws.cmd();
    std::fs::create_dir_all(ws.path("tmp")).unwrap();
    drill
        .env("TMPDIR", ws.path("tmp"))
        .args(["drill", bundle.to_str().unwrap()]);
    crate::support::Run::from(drill.output().unwrap()).code(0);
    let into = ws.path("into");
    ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--into",
        into.to_str().unwrap(),
    ])
    .code(0);
    assert_eq!(
        std::fs::read(into.join("vectors").join(&long)).unwrap(),
        b"longest name"
    );
    // Replace over the live stores after they changed: every name comes back.
    std::fs::write(ws.path(&format!("data/vectors/{long}")), "changed").unwrap();
    std::fs::write(ws.path(&format!("data/kb/{near}")), "{\"id\":2}\n").unwrap();
    ws.replace(&bundle, &[]);
    assert_eq!(tree_digest(&ws.path("data"), &[]), before);
}

#[test]
fn restoring_a_store_that_was_absent_creates_nothing() {
    let ws = Workspace::new();
    ws.write("data/kept.jsonl", "{\"id\":1}\n");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n\
         [[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"data/notes.jsonl\"\n\
         [[stores]]\nname = \"kept\"\nkind = \"jsonl\"\npath = \"data/kept.jsonl\"\n",
    );
    let bundle = ws.create(&[]);
    ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"])
        .code(0);
    ws.replace(&bundle, &[]);
    assert!(
        std::fs::symlink_metadata(ws.path("data/notes.jsonl")).is_err(),
        "nothing may appear where an absent store was"
    );
    ws.run(&["drill", bundle.to_str().unwrap()]).code(0);
}
