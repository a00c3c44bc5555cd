//! Forged bundles and look-alikes: verify refuses every bundle that restore
//! would refuse, SQLite copies are checked the way a writable open would,
//! output cannot be forged through a label, and prune, list and verify never
//! take a look-alike for their own.

use std::path::Path;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::support::{copy_tree, demo_stores, forge, make_writable, store, Workspace};

#[test]
fn verify_refuses_every_layout_restore_would_refuse() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "sqlite file without its facts",
            Box::new(|m| {
                store(m, "memory")["files"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("sqlite");
            }),
            "has no SQLite facts",
        ),
        (
            "a symlink on the path of a file",
            Box::new(|m| {
                store(m, "vectors")["symlinks"] =
                    json!([{"path": "vectors/seg-1/data_level0.bin", "target": "x"}]);
            }),
            "recorded both as a file and as a symlink",
        ),
        (
            "a file under a recorded symlink",
            Box::new(|m| {
                store(m, "vectors")["symlinks"] = json!([{"path": "vectors/seg-1", "target": "."}]);
            }),
            "lies under the recorded symlink vectors/seg-1",
        ),
        (
            "a single file that climbs out",
            Box::new(|m| store(m, "memory")["single_file"] = json!("../../etc/passwd")),
            "is not a plain file name",
        ),
        (
            "a jsonl file without its facts",
            Box::new(|m| {
                store(m, "kb")["files"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("jsonl");
            }),
            "has no JSONL facts",
        ),
        (
            "symlinks in a jsonl store",
            Box::new(|m| {
                store(m, "kb")["symlinks"] = json!([{"path": "kb/l", "target": "b.jsonl"}])
            }),
            "only dir stores record symlinks",
        ),
    ];
    for (what, edit, expected) in cases {
        let bundle = ws.path("case");
        copy_tree(&good, &bundle);
        forge(&bundle, edit);
        let verify = ws.run(&["verify", bundle.to_str().unwrap()]);
        verify.code(1);
        assert!(
            verify.stdout.contains(expected),
            "{what}: {}",
            verify.stdout
        );
        let mut drill = ws.cmd();
        drill.args(["drill", bundle.to_str().unwrap()]);
        let drill: crate::support::Run = drill.output().unwrap().into();
        assert_eq!(
            drill.code, 1,
            "{what}: drill must refuse too: {}",
            drill.stderr
        );
    }
}

/// A bundle whose copy of `data/memory.db` has a row changed by `sql`, with
/// the manifest's size and hash fixed to match, as a forger would.
fn tamper_database(ws: &Workspace, good: &Path, sql: &str) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let bundle = ws.path("tampered");
    copy_tree(good, &bundle);
    let copy = bundle.join("memory/memory.db");
    Connection::open(&copy).unwrap().execute_batch(sql).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    forge(&bundle, |m| {
        let f = &mut store(m, "memory")["files"][0];
        f["bytes"] = json!(bytes.len());
        f["sha256"] = json!(hex::encode(Sha256::digest(&bytes)));
    });
    bundle
}

#[test]
fn verify_checks_check_and_foreign_key_constraints_like_a_writable_open() {
    let ws = Workspace::new();
    ws.sqlite(
        "data/memory.db",
        "PRAGMA foreign_keys=ON;
         CREATE TABLE p(id INTEGER PRIMARY KEY);
         CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id), n INTEGER CHECK (n > 0));
         INSERT INTO p VALUES (1);
         INSERT INTO c VALUES (1, 1, 5), (2, 1, 6);",
    );
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n",
    );
    let good = ws.create(&[]);
    let manifest = ws.manifest(&good);
    assert_eq!(
        manifest["stores"][0]["files"][0]["sqlite"]["foreign_key_violations"],
        0
    );
    ws.run(&["verify", good.to_str().unwrap()]).code(0);

    let bad_check = tamper_database(
        &ws,
        &good,
        "PRAGMA ignore_check_constraints=ON; UPDATE c SET n = -1 WHERE id = 2;",
    );
    let verify = ws.run(&["verify", bad_check.to_str().unwrap()]);
    verify.code(1);
    assert!(
        verify
            .stdout
            .contains("rows of table c violate its CHECK constraints"),
        "{}",
        verify.stdout
    );
    let bad_fk = tamper_database(
        &ws,
        &good,
        "PRAGMA foreign_keys=OFF; UPDATE c SET pid = 99 WHERE id = 2;",
    );
    let verify = ws.run(&["verify", bad_fk.to_str().unwrap()]);
    verify.code(1);
    assert!(
        verify
            .stdout
            .contains("1 row(s) violate foreign keys, the manifest says 0"),
        "{}",
        verify.stdout
    );
}

#[test]
fn labels_cannot_forge_list_rows_or_reach_the_terminal() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let label = "nightly\n20990101T000000Z     2099-01-01T00:00:00Z  1 B  forged\u{1b}[2J\u{7}";
    ws.run(&["create", "--label", label]).code(0);
    let list = ws.run(&["list"]);
    list.code(0);
    assert_eq!(list.stdout.lines().count(), 2, "{}", list.stdout);
    assert!(!list.stdout.contains('\u{1b}') && !list.stdout.contains('\u{7}'));
    assert!(
        list.stdout.contains("nightly\\n20990101T000000Z"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("\\u{1b}[2J\\u{7}"), "{}", list.stdout);
    // JSON stays exact.
    let json = ws.run(&["--json", "list"]).json();
    assert_eq!(json[0]["label"], label);
}

#[test]
fn prune_removes_only_its_own_leftovers() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let dest = ws.path("backups");
    let id = bundle.file_name().unwrap().to_str().unwrap().to_string();
    // Look-alikes holding a user's files.
    for name in [
        ".deleting-my-notes".to_string(),
        ".staging-important".to_string(),
        format!(".deleting-{id}x"),
        format!(".staging-{id}-12a"),
    ] {
        ws.write(&format!("backups/{name}/mine.txt"), "the user's own file");
    }
    // Right names, but content that is not a bundle's (a symlink inside).
    let odd = dest.join(format!(".deleting-{id}-5"));
    std::fs::create_dir_all(odd.join("memory")).unwrap();
    std::os::unix::fs::symlink("/etc", odd.join("memory/link")).unwrap();
    // A real leftover of a crashed delete.
    let real = dest.join(".deleting-20200101T000000Z");
    copy_tree(&bundle, &real);
    let prune = ws.run(&["--json", "prune", "--keep-last", "1", "--apply"]);
    prune.code(0);
    assert_eq!(
        prune.json()["leftovers"],
        json!([".deleting-20200101T000000Z"])
    );
    assert!(!real.exists());
    for name in [".deleting-my-notes", ".staging-important"] {
        assert!(
            dest.join(name).join("mine.txt").exists(),
            "{name} was deleted"
        );
    }
    assert!(dest.join(format!(".deleting-{id}x/mine.txt")).exists());
    assert!(dest.join(format!(".staging-{id}-12a/mine.txt")).exists());
    assert!(odd.join("memory/link").symlink_metadata().is_ok());
    // Create's own cleanup is as careful.
    ws.run(&["create"]).code(0);
    assert!(dest.join(".staging-important/mine.txt").exists());
}

#[test]
fn system_folders_are_refused_as_destinations() {
    let ws = Workspace::new();
    demo_stores(&ws);
    for dest in ["/etc", "/usr/share/bundle-test-destination", "/"] {
        let run = ws.run(&["create", "--dest", dest, "--sqlite", "m=data/memory.db"]);
        run.code(3);
        assert!(run.stderr.contains("is a system folder"), "{}", run.stderr);
    }
    assert!(!Path::new("/etc/.bundle.lock").exists());
    assert!(!Path::new("/usr/share/bundle-test-destination").exists());
    let prune = ws.run(&["prune", "--dest", "/etc", "--keep-last", "1", "--apply"]);
    prune.code(3);
}

#[test]
fn bundles_named_by_id_are_never_followed_through_links_and_a_missing_manifest_is_a_problem() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let elsewhere = ws.path("elsewhere/20300101T000000Z");
    copy_tree(&bundle, &elsewhere);
    std::os::unix::fs::symlink(&elsewhere, ws.path("backups/20300101T000000Z")).unwrap();
    let run = ws.run(&["verify", "20300101T000000Z"]);
    run.code(3);
    assert!(run.stderr.contains("is a symlink"), "{}", run.stderr);
    // A bundle folder whose manifest was deleted fails verification (exit 1).
    make_writable(&elsewhere);
    std::fs::remove_file(elsewhere.join("bundle-meta.json")).unwrap();
    let run = ws.run(&["verify", elsewhere.to_str().unwrap()]);
    run.code(1);
    assert!(run.stdout.contains("bundle-meta.json"), "{}", run.stdout);
}

#[test]
fn a_failing_hook_is_named_never_echoed() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &format!(
            "{config}[hooks]\npre_create = \"curl -s -u admin:hunter2-secret http://127.0.0.1:9/stop >/dev/null 2>&1; exit 7\"\n"
        ),
    );
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("the pre_create hook failed: its command exited with status 7"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

/// One change a forger could make to a manifest.
#[derive(Debug, Clone)]
enum Mutation {
    AddLink(String, String),
    MoveFile(usize, String),
    SingleFile(String),
    DropFacts(usize),
    Duplicate(usize),
    Kind(String),
}

fn piece() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::strategy::Strategy;
    proptest::sample::select(vec![
        "a",
        "b",
        "..",
        ".",
        "seg-1",
        "data_level0.bin",
        "chroma.sqlite3",
        "",
        "/",
        "/etc",
    ])
    .prop_map(str::to_string)
}

fn rel_path() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::strategy::Strategy;
    proptest::collection::vec(piece(), 1..4).prop_map(|p| p.join("/"))
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    let link_name = proptest::collection::vec(
        proptest::sample::select(vec!["l1", "l2", "l3", "seg-1", "d"]),
        1..3,
    )
    .prop_map(|p| p.join("/"));
    prop_oneof![
        6 => (link_name, rel_path()).prop_map(|(p, t)| Mutation::AddLink(format!("vectors/{p}"), t)),
        1 => (rel_path(), rel_path()).prop_map(|(p, t)| Mutation::AddLink(format!("vectors/{p}"), t)),
        1 => (0usize..8, rel_path()).prop_map(|(i, p)| Mutation::MoveFile(i, format!("vectors/{p}"))),
        1 => rel_path().prop_map(Mutation::SingleFile),
        1 => (0usize..8).prop_map(Mutation::DropFacts),
        1 => (0usize..8).prop_map(Mutation::Duplicate),
        1 => proptest::sample::select(vec!["sqlite", "jsonl", "dir"]).prop_map(|k| Mutation::Kind(k.into())),
    ]
}

fn apply(m: &mut Value, mutation: &Mutation) {
    let files = |m: &mut Value| -> Vec<Value> {
        m["stores"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["files"].as_array().unwrap().clone())
            .collect()
    };
    let n = files(m).len();
    let store_of = |m: &mut Value, i: usize| -> (usize, usize) {
        let mut k = i % n;
        for (si, s) in m["stores"].as_array().unwrap().iter().enumerate() {
            let len = s["files"].as_array().unwrap().len();
            if k < len {
                return (si, k);
            }
            k -= len;
        }
        unreachable!()
    };
    match mutation {
        Mutation::AddLink(path, target) => {
            let s = store(m, "vectors");
            let links = s
                .as_object_mut()
                .unwrap()
                .entry("symlinks")
                .or_insert(json!([]));
            links
                .as_array_mut()
                .unwrap()
                .push(json!({"path": path, "target": target}));
        }
        Mutation::MoveFile(i, path) => {
            let (s, f) = store_of(m, *i);
            m["stores"][s]["files"][f]["path"] = json!(path);
        }
        Mutation::SingleFile(name) => store(m, "memory")["single_file"] = json!(name),
        Mutation::DropFacts(i) => {
            let (s, f) = store_of(m, *i);
            let file = m["stores"][s]["files"][f].as_object_mut().unwrap();
            file.remove("sqlite");
            file.remove("jsonl");
        }
        Mutation::Duplicate(i) => {
            let (s, f) = store_of(m, *i);
            let copy = m["stores"][s]["files"][f].clone();
            m["stores"][s]["files"].as_array_mut().unwrap().push(copy);
        }
        Mutation::Kind(kind) => {
            store(m, "vectors")["kind"] = json!(kind);
            // Keep the topology consistent so that only the layout is in question.
            let mut lines: Vec<String> = m["stores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s["name"].as_str().unwrap(),
                        s["kind"].as_str().unwrap()
                    )
                })
                .collect();
            lines.sort();
            use sha2::{Digest, Sha256};
            m["topology"] = json!(hex::encode(Sha256::digest(lines.join("\n").as_bytes())));
        }
    }
}

#[test]
fn whatever_verify_passes_drill_restores() {
    use proptest::test_runner::{Config, TestRunner};
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.write("data/canary.txt", "outside every store");
    let good = ws.create(&[]);
    std::fs::create_dir_all(ws.path("tmp")).unwrap();
    let cases = crate::faults::loop_runs(96, 1000) as u32;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let passed_verify = std::cell::Cell::new(0);
    let total = std::cell::Cell::new(0);
    runner
        .run(&proptest::collection::vec(mutation(), 1..4), |mutations| {
            total.set(total.get() + 1);
            let bundle = ws.path("case");
            copy_tree(&good, &bundle);
            forge(&bundle, |m| mutations.iter().for_each(|x| apply(m, x)));
            let verify = ws.run(&["verify", bundle.to_str().unwrap()]);
            proptest::prop_assert!(verify.code == 0 || verify.code == 1, "verify: {:?}", verify);
            if verify.code == 0 {
                passed_verify.set(passed_verify.get() + 1);
                let mut drill = ws.cmd();
                drill
                    .env("TMPDIR", ws.path("tmp"))
                    .args(["drill", bundle.to_str().unwrap()]);
                let drill: crate::support::Run = drill.output().unwrap().into();
                proptest::prop_assert_eq!(
                    drill.code,
                    0,
                    "verify passed {:?} but drill failed: {}",
                    mutations,
                    drill.stderr
                );
            }
            proptest::prop_assert_eq!(
                std::fs::read_to_string(ws.path("data/canary.txt")).unwrap(),
                "outside every store"
            );
            proptest::prop_assert_eq!(std::fs::read_dir(ws.path("tmp")).unwrap().count(), 0);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "verify ok => drill ok: {} forged manifests, {} passed verify",
        total.get(),
        passed_verify.get()
    );
}

#[test]
fn checking_a_bundle_database_runs_nothing_from_it() {
    let ws = Workspace::new();
    ws.sqlite(
        "data/memory.db",
        "CREATE TABLE c(n INTEGER CHECK (n > 0));
         CREATE TABLE log(x);
         CREATE TRIGGER c_log AFTER INSERT ON c BEGIN INSERT INTO log VALUES (new.n); END;
         INSERT INTO c VALUES (1), (2);",
    );
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n",
    );
    let good = ws.create(&[]);
    // A forger appends a statement to the table's schema text (SQLite itself
    // ignores what follows the first statement) that would create a file.
    let pwned = ws.path("pwned.db");
    let sql = format!(
        "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = 'CREATE TABLE c(n INTEGER CHECK (n > 0)); ATTACH DATABASE ''{}'' AS p' WHERE name = 'c';",
        pwned.display()
    );
    let bundle = tamper_database(&ws, &good, &sql);
    let verify = ws.run(&["verify", bundle.to_str().unwrap()]);
    assert_ne!(verify.code, 101, "{}", verify.stderr);
    let mut drill = ws.cmd();
    drill.args(["drill", bundle.to_str().unwrap()]);
    let _ = drill.output().unwrap();
    ws.run(&["verify", good.to_str().unwrap()]).code(0);
    assert!(!pwned.exists(), "a statement from the bundle ran");
    // The trigger never ran either: the live log is as it was.
    assert_eq!(crate::support::count(&ws.path("data/memory.db"), "log"), 2);
}

#[test]
fn replace_checks_a_forged_database_copy_in_full_before_anything_live_changes() {
    let ws = Workspace::new();
    ws.sqlite(
        "data/memory.db",
        "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0));
         INSERT INTO c VALUES (1, 5), (2, 6);",
    );
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n",
    );
    let good = ws.create(&[]);
    Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch("INSERT INTO c VALUES (3, 7);")
        .unwrap();
    let live = std::fs::read(ws.path("data/memory.db")).unwrap();
    // Hash and size match the forged manifest, so only the full check of
    // the staged copy can refuse it.
    let forged = tamper_database(
        &ws,
        &good,
        "PRAGMA ignore_check_constraints=ON; UPDATE c SET n = -1 WHERE id = 2;",
    );
    let token = ws.replace_token(&forged, &[]);
    let run = ws.run(&[
        "restore",
        forged.to_str().unwrap(),
        "--mode",
        "replace",
        "--confirm-token",
        &token,
    ]);
    run.code(1);
    assert!(
        run.stderr.contains("memory/memory.db")
            && run.stderr.contains("violate its CHECK constraints"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(ws.path("data/memory.db")).unwrap(), live);
    let left: Vec<_> = std::fs::read_dir(ws.path("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "memory.db")
        .collect();
    assert!(left.is_empty(), "staged files left: {left:?}");
    assert!(!ws.path("backups/.restore-journal.json").exists());
}

#[test]
fn a_manifest_changed_during_a_restore_is_refused_before_anything_is_written() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    // Live moves on, so the replace would write (and remove) files.
    ws.write("data/kb/b.jsonl", "{\"id\":4}\n");
    ws.write("data/vectors/seg-1/extra.bin", "live only");
    let token = ws.replace_token(&bundle, &[]);
    // The pre_restore hook runs after the first plan and before the plan is
    // made again: it changes the manifest under the restore (one byte more,
    // still valid JSON in the tool's layout).
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &format!(
            "{config}[hooks]\npre_restore = \"chmod u+w \\\"$BUNDLE_PATH\\\"/bundle-meta.json && printf '\\\\n' >> \\\"$BUNDLE_PATH\\\"/bundle-meta.json\"\n"
        ),
    );
    let live = crate::support::tree(&ws.path("data"));
    let bundles_before = std::fs::read_dir(ws.path("backups")).unwrap().count();
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--confirm-token",
        &token,
    ]);
    run.code(3);
    let out = run.json();
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("changed while it was being restored"),
        "{out}"
    );
    // The hook did run (the manifest has the byte more), and nothing live
    // changed: no file written or removed, no snapshot, no journal.
    assert!(std::fs::read(bundle.join("bundle-meta.json"))
        .unwrap()
        .ends_with(b"\n\n"));
    assert_eq!(crate::support::tree(&ws.path("data")), live);
    assert_eq!(
        std::fs::read_dir(ws.path("backups")).unwrap().count(),
        bundles_before
    );
    assert!(!ws.path("backups/.restore-journal.json").exists());
}
