//! `bundle create`: what lands on disk, and what is refused.

use std::path::Path;

use rusqlite::Connection;

use crate::support::{count, demo_stores, file_record, Workspace};

#[test]
fn create_captures_every_store_kind_with_real_bytes_and_counts() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&["--label", "nightly"]);
    assert_eq!(
        bundle.parent().unwrap(),
        ws.path("backups").canonicalize().unwrap()
    );
    let m = ws.manifest(&bundle);
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["id"], bundle.file_name().unwrap().to_str().unwrap());
    assert_eq!(m["label"], "nightly");

    let db = file_record(&m, "memory/memory.db");
    assert_eq!(db["sqlite"]["tables"]["notes"], 3);
    assert_eq!(db["sqlite"]["tables"]["projects"], 2);
    assert_eq!(db["sqlite"]["virtual_tables"][0], "notes_fts");
    assert_eq!(db["sqlite"]["integrity"], "ok");
    assert_eq!(db["sqlite"]["check"], "quick_check");
    assert_eq!(count(&bundle.join("memory/memory.db"), "notes"), 3);

    let a = file_record(&m, "kb/2026/a.jsonl");
    assert_eq!(a["jsonl"]["lines"], 2);
    assert_eq!(
        std::fs::read(bundle.join("kb/2026/a.jsonl")).unwrap(),
        std::fs::read(ws.path("data/kb/2026/a.jsonl")).unwrap()
    );
    assert!(
        !bundle.join("kb/README.txt").exists(),
        "only *.jsonl files belong to a jsonl store"
    );

    let seg = file_record(&m, "vectors/seg-1/data_level0.bin");
    assert_eq!(seg["bytes"], 24);
    assert_eq!(
        std::fs::read(bundle.join("vectors/seg-1/data_level0.bin")).unwrap(),
        b"binary-ish segment bytes"
    );
    let inner = file_record(&m, "vectors/chroma.sqlite3");
    assert_eq!(inner["sqlite"]["tables"]["embeddings"], 1);

    // Bundle files are read-only; nothing but the bundle and the lock is in the destination.
    let meta = std::fs::metadata(bundle.join("memory/memory.db")).unwrap();
    assert!(meta.permissions().readonly());
    let names: Vec<String> = std::fs::read_dir(ws.path("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The manifest: indented down to the lists of records, and each file
    // record on a line of its own that parses as that record.
    let text = std::fs::read_to_string(bundle.join("bundle-meta.json")).unwrap();
    assert!(text.starts_with("{\n  \"format_version\": 1,\n"), "{text}");
    let files = m["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["files"].as_array().unwrap());
    let mut records = 0;
    for file in files {
        let path = file["path"].as_str().unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{{\"path\":\"{path}\",")))
            .unwrap_or_else(|| panic!("no line of its own for {path}"));
        let line = line.trim().trim_end_matches(',');
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(&parsed, file);
        records += 1;
    }
    assert!(records >= 5, "{records}");
}

#[test]
fn rows_that_live_only_in_the_wal_are_captured() {
    let ws = Workspace::new();
    let db = ws.path("live.db");
    let writer = Connection::open(&db).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
             INSERT INTO t(v) SELECT 'row ' || i FROM n;",
        )
        .unwrap();
    // The main file has not seen the rows yet: a raw copy would miss them.
    assert!(ws.path("live.db-wal").metadata().unwrap().len() > 0);
    let raw = ws.path("raw.db");
    std::fs::copy(&db, &raw).unwrap();
    let raw_rows = Connection::open(&raw)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 't'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(
        raw_rows, 0,
        "precondition: the table exists only in the WAL"
    );

    let bundle = ws.create(&["--dest", "b", "--sqlite", "live=live.db"]);
    assert_eq!(count(&bundle.join("live/live.db"), "t"), 500);
    assert!(!bundle.join("live/live.db-wal").exists());
    // The copy is self-contained: rollback-journal mode.
    let header = std::fs::read(bundle.join("live/live.db")).unwrap();
    assert_eq!(&header[18..20], &[1, 1]);
    drop(writer);
}

#[test]
fn torn_jsonl_tail_is_left_out_and_warned_about() {
    let ws = Workspace::new();
    ws.write(
        "log.jsonl",
        "{\"id\":1}\n{\"id\":2}\nnot json\n{\"id\":3,\"par",
    );
    let run = ws.run(&[
        "--json",
        "create",
        "--dest",
        "b",
        "--jsonl",
        "log=log.jsonl",
    ]);
    run.code(0);
    let out = run.json();
    let warnings = out["warnings"].to_string();
    assert!(warnings.contains("incomplete line"), "{warnings}");
    assert!(warnings.contains("not valid JSON"), "{warnings}");
    let bundle = Path::new(out["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(bundle.join("log/log.jsonl")).unwrap(),
        "{\"id\":1}\n{\"id\":2}\nnot json\n"
    );
    let rec = file_record(&ws.manifest(bundle), "log/log.jsonl").clone();
    assert_eq!(rec["jsonl"]["lines"], 3);
    assert_eq!(rec["jsonl"]["invalid_lines"], 1);
    assert!(
        run.stderr.contains("warning: store \"log\""),
        "{}",
        run.stderr
    );
}

#[test]
fn absent_and_empty_stores_are_recorded_and_warned() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("empty-dir")).unwrap();
    ws.write("empty.jsonl", "");
    let run = ws.run(&[
        "--json",
        "create",
        "--dest",
        "b",
        "--dir",
        "gone=nowhere",
        "--dir",
        "hollow=empty-dir",
        "--jsonl",
        "log=empty.jsonl",
    ]);
    run.code(0);
    let out = run.json();
    let m = ws.manifest(Path::new(out["path"].as_str().unwrap()));
    let status = |name: &str| crate::support::store_entry(&m, name)["status"].clone();
    assert_eq!(status("gone"), "absent");
    assert_eq!(status("hollow"), "empty");
    assert_eq!(status("log"), "empty");
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(run.stderr.contains("holds nothing"), "{}", run.stderr);
    assert!(
        !ws.path("nowhere").exists(),
        "create must not make the absent source"
    );
}

#[test]
fn destination_inside_a_store_or_store_inside_destination_is_refused() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let run = ws.run(&[
        "create",
        "--dest",
        "data/vectors/backups",
        "--store",
        "vectors",
    ]);
    run.code(3);
    assert!(
        run.stderr.contains("inside store \"vectors\""),
        "{}",
        run.stderr
    );
    assert!(!ws.path("data/vectors/backups").exists());

    let run = ws.run(&["create", "--dest", "data"]);
    run.code(3);
    assert!(
        run.stderr.contains("is inside the destination"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_destination_is_a_usage_error_that_says_how_to_set_one() {
    let ws = Workspace::new();
    ws.write("a.jsonl", "{}\n");
    let run = ws.run(&["create", "--jsonl", "a=a.jsonl"]);
    run.code(2);
    assert!(run.stderr.contains("--dest DIR"), "{}", run.stderr);
    assert!(run.stderr.contains("destination"), "{}", run.stderr);
}

#[test]
fn config_errors_exit_2_with_the_reason() {
    let ws = Workspace::new();
    ws.write(
        "bundle.toml",
        "destination = \"b\"\n[[stores]]\nname = \"Bad Name\"\nkind = \"dir\"\npath = \"x\"\n",
    );
    let run = ws.run(&["create"]);
    run.code(2);
    assert!(
        run.stderr.contains("store name \"Bad Name\" is invalid"),
        "{}",
        run.stderr
    );
    let run = ws.run(&["--config", "missing.toml", "create"]);
    run.code(2);
    assert!(run.stderr.contains("missing.toml"), "{}", run.stderr);
    std::fs::remove_file(ws.path("bundle.toml")).unwrap();
    let run = ws.run(&["create", "--dest", "b", "--sqlite", "noequals"]);
    run.code(2);
    assert!(run.stderr.contains("NAME=PATH"), "{}", run.stderr);
}

#[test]
fn store_selection_and_unknown_store() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&["--store", "kb"]);
    let m = ws.manifest(&bundle);
    assert_eq!(m["stores"].as_array().unwrap().len(), 1);
    assert!(!bundle.join("memory").exists());
    let run = ws.run(&["create", "--store", "nope"]);
    run.code(2);
    assert!(
        run.stderr.contains("no store named \"nope\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_second_create_on_a_locked_destination_fails_fast() {
    let ws = Workspace::new();
    demo_stores(&ws);
    std::fs::create_dir_all(ws.path("backups")).unwrap();
    let lock = std::fs::File::create(ws.path("backups/.bundle.lock")).unwrap();
    lock.try_lock().unwrap();
    let run = ws.run(&["create"]);
    run.code(3);
    assert!(
        run.stderr.contains("another bundle operation is running"),
        "{}",
        run.stderr
    );
    drop(lock);
    ws.run(&["create"]).code(0);
}

#[test]
fn same_second_creates_get_suffixed_ids() {
    let ws = Workspace::new();
    ws.write("a.jsonl", "{}\n");
    // Occupy the plain ids of the next few seconds: create must suffix.
    let now = jiff::Timestamp::now();
    for s in 0..5 {
        let t = now + jiff::SignedDuration::from_secs(s);
        std::fs::create_dir_all(ws.path(&format!("b/{}", t.strftime("%Y%m%dT%H%M%SZ")))).unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let b = ws.create(&["--dest", "b", "--jsonl", "a=a.jsonl"]);
        ids.push(b.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(
        ids.iter()
            .all(|id| id.ends_with("-1") || id.ends_with("-2") || id.ends_with("-3")),
        "{ids:?}"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids must be unique: {ids:?}");
}

#[test]
fn dir_store_records_symlinks_skips_sidecars_and_backs_up_inner_databases() {
    let ws = Workspace::new();
    let inner = ws.path("vec/index.sqlite3");
    std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
    let writer = Connection::open(&inner).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE q(id INTEGER PRIMARY KEY); INSERT INTO q VALUES (1), (2);",
        )
        .unwrap();
    ws.write("outside/secret.txt", "not part of the store");
    std::os::unix::fs::symlink("../outside", ws.path("vec/escape")).unwrap();
    std::os::unix::fs::symlink("index.sqlite3", ws.path("vec/alias")).unwrap();
    let bundle = ws.create(&["--dest", "b", "--dir", "vec=vec"]);
    let m = ws.manifest(&bundle);
    let store = &m["stores"][0];
    let paths: Vec<&str> = store["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["vec/index.sqlite3"],
        "sidecars and symlinks are not copied as files"
    );
    assert_eq!(
        count(&bundle.join("vec/index.sqlite3"), "q"),
        2,
        "rows in the WAL are captured"
    );
    let links = store["symlinks"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    assert!(links
        .iter()
        .any(|l| l["path"] == "vec/escape" && l["target"] == "../outside"));
    assert!(!bundle.join("vec/escape").exists() && !bundle.join("vec/alias").exists());
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    drop(writer);
}

#[test]
fn git_provenance_is_recorded_for_a_config_in_a_repository() {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.write(".gitignore", "backups/\n");
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(ws.root())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "git {args:?}");
    };
    let no_repo = ws.create(&[]);
    assert!(ws.manifest(&no_repo)["git"].is_null());
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "seed"]);
    let clean = ws.manifest(&ws.create(&[]));
    assert_eq!(clean["git"]["sha"].as_str().unwrap().len(), 40);
    assert_eq!(clean["git"]["dirty"], false);
    ws.write("bundle.toml.bak", "x");
    let dirty = ws.manifest(&ws.create(&[]));
    assert_eq!(dirty["git"]["dirty"], true);
}

#[test]
fn killed_create_leaves_no_bundle_and_the_next_create_cleans_up() {
    let ws = Workspace::new();
    // Enough bytes that the kill lands while the staging folder is being filled.
    let chunk = vec![7u8; 1 << 20];
    for i in 0..40 {
        std::fs::create_dir_all(ws.path("big")).unwrap();
        std::fs::write(ws.path(&format!("big/seg-{i:02}.bin")), &chunk).unwrap();
    }
    let mut child = ws
        .cmd()
        .args(["create", "--dest", "b", "--dir", "big=big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging_seen = wait_for(|| {
        std::fs::read_dir(ws.path("b"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
            })
            .unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(staging_seen, "create never started staging");
    let listed = ws.run(&["--json", "list", "--dest", "b"]);
    listed.code(0);
    let entries = listed.json();
    // The kill may have landed after the rename: then the bundle is complete.
    for entry in entries.as_array().unwrap() {
        ws.run(&["verify", entry["path"].as_str().unwrap()]).code(0);
    }
    let run = ws.run(&["--json", "create", "--dest", "b", "--dir", "big=big"]);
    run.code(0);
    let leftovers: Vec<String> = std::fs::read_dir(ws.path("b"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(20) {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

#[test]
fn a_dir_store_that_keeps_changing_fails_with_advice() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let ws = Workspace::new();
    // Big enough that each copy takes a while, so the writer (which may be
    // scheduled rarely on a busy machine) always gets in during one.
    ws.write("vec/segment.bin", &"x".repeat(16 << 20));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let path = ws.path("vec/segment.bin");
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"more").unwrap();
                std::thread::yield_now();
            }
        })
    };
    let run = ws.run(&["create", "--dest", "b", "--dir", "vec=vec"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    run.code(1);
    assert!(run.stderr.contains("kept changing"), "{}", run.stderr);
    assert!(
        run.stderr.contains("stop the application"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(ws.path("b"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the lock file remains: {left:?}");
}

#[test]
fn exclude_patterns_leave_paths_out_of_the_bundle_and_alone_on_replace() {
    let ws = Workspace::new();
    ws.write("data/vectors/keep.bin", "kept");
    ws.write("data/vectors/a.tmp", "scratch");
    ws.write("data/vectors/sub/b.tmp", "scratch");
    ws.write("data/vectors/cache/blob", "cached");
    ws.write("data/vectors/sub/cache/blob", "cached");
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\nexclude = [\"*.tmp\", \"cache/\"]\n",
    );
    let bundle = ws.create(&[]);
    let manifest = ws.manifest(&bundle);
    let store = &manifest["stores"][0];
    assert_eq!(store["exclude"], serde_json::json!(["*.tmp", "cache/"]));
    let paths: Vec<&str> = store["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["vectors/keep.bin"]);
    // Replace puts keep.bin back and removes what is the store's, but leaves
    // what the store was captured without.
    ws.write("data/vectors/keep.bin", "changed");
    ws.write("data/vectors/stray.bin", "not in the bundle");
    ws.replace(&bundle, &[]);
    let read = |rel: &str| std::fs::read_to_string(ws.path(rel)).ok();
    assert_eq!(read("data/vectors/keep.bin").as_deref(), Some("kept"));
    assert_eq!(read("data/vectors/stray.bin"), None);
    assert_eq!(read("data/vectors/a.tmp").as_deref(), Some("scratch"));
    assert_eq!(read("data/vectors/sub/b.tmp").as_deref(), Some("scratch"));
    assert_eq!(read("data/vectors/cache/blob").as_deref(), Some("cached"));
    assert_eq!(
        read("data/vectors/sub/cache/blob").as_deref(),
        Some("cached")
    );
    // A pattern that is not a glob, or on another kind, is a config error.
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\nexclude = [\"[\"]\n",
    );
    let bad = ws.run(&["create"]);
    bad.code(2);
    assert!(
        bad.stderr.contains("exclude pattern \"[\""),
        "{}",
        bad.stderr
    );
}

#[test]
fn sparse_files_keep_their_holes_in_the_bundle_and_on_restore() {
    use std::os::unix::fs::MetadataExt;
    let ws = Workspace::new();
    ws.write("data/vectors/small.bin", "x");
    let sparse = ws.path("data/vectors/prealloc.bin");
    {
        let f = std::fs::File::create(&sparse).unwrap();
        f.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"header", 0).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"middle", 40 << 20).unwrap();
    }
    let allocated = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    if allocated(&sparse) >= 1 << 20 {
        eprintln!("\n!!!!!!!! SKIPPED: this file system does not make sparse files !!!!!!!!\n");
        return;
    }
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n",
    );
    let bundle = ws.create(&[]);
    let copy = bundle.join("vectors/prealloc.bin");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), 64 << 20);
    assert!(
        allocated(&copy) < 1 << 20,
        "{} bytes allocated",
        allocated(&copy)
    );
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    std::fs::remove_file(&sparse).unwrap();
    ws.replace(&bundle, &[]);
    assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 64 << 20);
    assert!(
        allocated(&sparse) < 1 << 20,
        "{} bytes allocated",
        allocated(&sparse)
    );
    let f = std::fs::File::open(&sparse).unwrap();
    let mut buf = [0u8; 6];
    std::os::unix::fs::FileExt::read_at(&f, &mut buf, 40 << 20).unwrap();
    assert_eq!(&buf, b"middle");
}

#[test]
fn a_dir_store_that_is_a_chroma_or_lancedb_store_is_warned_about() {
    let ws = Workspace::new();
    ws.sqlite("data/chroma/chroma.sqlite3", "CREATE TABLE t(x);");
    ws.write("data/lance/notes.lance/_versions/1.manifest", "m");
    ws.write("data/plain/a.bin", "a");
    let run = ws.run(&[
        "create",
        "--dest",
        "backups",
        "--dir",
        "c=data/chroma",
        "--dir",
        "l=data/lance",
        "--dir",
        "p=data/plain",
    ]);
    run.code(0);
    assert!(
        run.stderr
            .contains("store \"c\" looks like a Chroma persist directory"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("store \"l\" looks like a LanceDB database"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("store \"p\" looks"), "{}", run.stderr);
}
