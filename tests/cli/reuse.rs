//! Reuse of unchanged files and parallel capture: what is shared is exactly
//! what did not change, and the manifest does not depend on scheduling.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{demo_stores, file_record, Workspace};

/// Sources must be older than the freshness window before a copy may be reused.
fn let_sources_settle() {
    std::thread::sleep(Duration::from_millis(2100));
}

fn inode(bundle: &Path, rel: &str) -> u64 {
    std::fs::metadata(bundle.join(rel)).unwrap().ino()
}

fn reused(manifest: &Value, rel: &str) -> bool {
    file_record(manifest, rel)["reused"].as_bool().unwrap()
}

const FILES: [&str; 5] = [
    "memory/memory.db",
    "kb/2026/a.jsonl",
    "kb/b.jsonl",
    "vectors/seg-1/data_level0.bin",
    "vectors/chroma.sqlite3",
];

/// Fails on any regular file under `bundle` with a write bit, and on a
/// bundle without its manifest.
fn assert_no_writable_files(bundle: &Path) {
    let mut files = 0;
    for entry in walkdir::WalkDir::new(bundle) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            files += 1;
            let mode = entry.metadata().unwrap().mode();
            assert_eq!(
                mode & 0o222,
                0,
                "{} is writable ({mode:o})",
                entry.path().display()
            );
        }
    }
    assert!(bundle.join("bundle-meta.json").is_file());
    assert!(files > FILES.len(), "{files} files in {}", bundle.display());
}

#[test]
fn unchanged_files_are_shared_changed_ones_copied_and_all_verify() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let_sources_settle();
    let first = ws.create(&[]);
    let second = ws.create(&[]);
    let m2 = ws.manifest(&second);
    for rel in FILES {
        assert!(reused(&m2, rel), "{rel} should be reused");
        assert_eq!(
            inode(&first, rel),
            inode(&second, rel),
            "{rel} is one inode"
        );
    }
    let m1 = ws.manifest(&first);
    for rel in FILES {
        assert!(!reused(&m1, rel), "the first bundle copies {rel}");
        assert_eq!(
            file_record(&m1, rel)["sha256"],
            file_record(&m2, rel)["sha256"]
        );
    }

    // Change one JSONL file, one segment (same size, mtime put back), one row.
    ws.write("data/kb/b.jsonl", "{\"id\":3}\n{\"id\":4}\n");
    crate::support::rewrite_keeping_mtime(
        &ws.path("data/vectors/seg-1/data_level0.bin"),
        b"BINARY-ish segment bytes",
    );
    rusqlite::Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch("INSERT INTO projects VALUES (3, 'new');")
        .unwrap();
    let third = ws.create(&[]);
    let m3 = ws.manifest(&third);
    for rel in [
        "kb/b.jsonl",
        "vectors/seg-1/data_level0.bin",
        "memory/memory.db",
    ] {
        assert!(!reused(&m3, rel), "{rel} changed and must be copied");
        assert_ne!(inode(&second, rel), inode(&third, rel));
    }
    assert_eq!(
        std::fs::read_to_string(third.join("vectors/seg-1/data_level0.bin")).unwrap(),
        "BINARY-ish segment bytes",
        "same size and mtime, but the ctime tells"
    );
    assert_eq!(
        file_record(&m3, "memory/memory.db")["sqlite"]["tables"]["projects"],
        3
    );
    for rel in ["kb/2026/a.jsonl", "vectors/chroma.sqlite3"] {
        assert!(reused(&m3, rel), "{rel} did not change");
    }
    // Copied, shared or written (the manifest): no file of any bundle can be written to.
    for bundle in [&first, &second, &third] {
        assert_no_writable_files(bundle);
    }
    for bundle in [&first, &second, &third] {
        ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    }

    // Deleting the bundle that first held the shared files leaves the others whole.
    ws.run(&["prune", "--keep-last", "2", "--apply"]).code(0);
    assert!(!first.exists());
    ws.run(&["verify", second.to_str().unwrap()]).code(0);
    ws.run(&["verify", third.to_str().unwrap()]).code(0);
}

#[test]
fn no_reuse_copies_everything_and_a_damaged_previous_bundle_is_not_reused() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let_sources_settle();
    let first = ws.create(&[]);
    let copied = ws.create(&["--no-reuse"]);
    let m = ws.manifest(&copied);
    for rel in FILES {
        assert!(!reused(&m, rel));
        assert_ne!(inode(&first, rel), inode(&copied, rel));
    }
    // The newest bundle loses a file: the next create reuses from no damaged bundle.
    std::fs::remove_file(copied.join("kb/b.jsonl")).unwrap();
    let next = ws.create(&[]);
    let m = ws.manifest(&next);
    for rel in FILES {
        assert!(
            reused(&m, rel),
            "{rel} comes from the older, whole bundle: {} vs {}",
            file_record(&ws.manifest(&first), rel),
            file_record(&m, rel)
        );
        assert_eq!(inode(&first, rel), inode(&next, rel));
    }
}

#[test]
fn fresh_sources_are_copied_and_not_trusted_for_reuse() {
    let ws = Workspace::new();
    demo_stores(&ws);
    // Written just now: a change in the same clock tick could hide, so no stat is kept.
    let first = ws.create(&[]);
    let m = ws.manifest(&first);
    assert!(file_record(&m, "kb/b.jsonl")["source_stat"].is_null());
    let second = ws.create(&[]);
    assert!(!reused(&ws.manifest(&second), "kb/b.jsonl"));
}

#[test]
fn the_manifest_does_not_depend_on_the_number_of_jobs() {
    let ws = Workspace::new();
    demo_stores(&ws);
    for i in 0..12 {
        ws.write(
            &format!("data/vectors/many/{i:02}.bin"),
            &"x".repeat(i * 100),
        );
    }
    let stores = |bundle: &Path| ws.manifest(bundle)["stores"].clone();
    let one = ws.create(&["--jobs", "1", "--no-reuse"]);
    let four = ws.create(&["--jobs", "4", "--no-reuse"]);
    assert_eq!(stores(&one), stores(&four));
    ws.run(&["create", "--jobs", "0"]).code(2);
}

#[test]
fn capturing_a_wal_database_leaves_its_files_alone_and_the_next_create_reuses_it() {
    let ws = Workspace::new();
    let db = ws.path("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t(v) VALUES ('a'), ('b'), ('c');",
        )
        .unwrap();
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
    }
    let wal = ws.path("app.db-wal");
    let main_before = std::fs::read(&db).unwrap();
    let wal_before = std::fs::read(&wal).unwrap();
    assert!(!wal_before.is_empty(), "the rows live in the WAL");
    let_sources_settle();

    let first = ws.create(&["--dest", "backups", "--sqlite", "app=app.db"]);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        main_before,
        "no checkpoint into the source"
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        wal_before,
        "its WAL is left as it was"
    );
    let m = ws.manifest(&first);
    assert_eq!(file_record(&m, "app/app.db")["sqlite"]["tables"]["t"], 3);

    let second = ws.create(&["--dest", "backups", "--sqlite", "app=app.db"]);
    assert!(reused(&ws.manifest(&second), "app/app.db"));
    assert_eq!(inode(&first, "app/app.db"), inode(&second, "app/app.db"));
}

#[test]
fn capturing_a_closed_wal_database_leaves_no_wal_or_shm_behind() {
    let ws = Workspace::new();
    ws.sqlite(
        "app.db",
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('a');",
    );
    assert!(!ws.path("app.db-wal").exists());
    let before = std::fs::read(ws.path("app.db")).unwrap();
    ws.create(&["--dest", "backups", "--sqlite", "app=app.db"]);
    assert!(
        !ws.path("app.db-wal").exists(),
        "a -wal was left beside the source"
    );
    assert!(
        !ws.path("app.db-shm").exists(),
        "a -shm was left beside the source"
    );
    assert_eq!(std::fs::read(ws.path("app.db")).unwrap(), before);
}
