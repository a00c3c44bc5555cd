//! Crash consistency and concurrency: kill -9 at random moments of create,
//! restore and prune; two operations on one destination at once.
//!
//! Loop sizes: 20 kills each by default (CI), 100 for each restore mode; `BUNDLE_LONG=1` runs 200 (see
//! docs/reliability.md). Delays come from a seeded generator whose seed is
//! printed, so a failing run can be replayed with `BUNDLE_SEED=<seed>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;

use crate::support::{copy_tree, make_writable, Workspace, DEMO_CONFIG};

/// How many kills each loop does.
pub fn loop_runs(ci: usize, long: usize) -> usize {
    if std::env::var_os("BUNDLE_LONG").is_some() {
        long
    } else {
        ci
    }
}

/// A small xorshift generator: no dependency, reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(test: &str) -> Rng {
        let seed = std::env::var("BUNDLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{test}: BUNDLE_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Builds stores big enough that create and restore take a noticeable time:
/// a WAL database with blobs, JSONL files and a folder of segments.
pub fn big_stores(ws: &Workspace, variant: &str) {
    let db = ws.path("data/memory.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS mem(id INTEGER PRIMARY KEY, kind TEXT, body BLOB);
         CREATE INDEX IF NOT EXISTS mem_kind ON mem(kind);",
    )
    .unwrap();
    conn.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO mem(kind, body) SELECT '{variant}' || (i % 7), randomblob(384) FROM n;"
    ))
    .unwrap();
    drop(conn);
    for f in 0..3 {
        let mut text = String::new();
        for i in 0..20000 {
            text.push_str(&format!(
                "{{\"id\":\"{variant}-{f}-{i}\",\"text\":\"some remembered thing number {i}\"}}\n"
            ));
        }
        ws.write(&format!("data/kb/{f}.jsonl"), &text);
    }
    for s in 0..8 {
        let bytes: Vec<u8> = (0..(1 << 20))
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8 ^ variant.as_bytes()[0])
            .collect();
        std::fs::create_dir_all(ws.path("data/vectors/seg")).unwrap();
        std::fs::write(ws.path(&format!("data/vectors/seg/{s}.bin")), bytes).unwrap();
    }
    ws.write("bundle.toml", DEMO_CONFIG);
}

/// Starts `bundle ARGS` in the workspace.
fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    ws.cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits up to `delay`, then kills the child with SIGKILL if it still runs.
/// Returns whether it was killed (false: it finished first).
fn kill_after(child: &mut Child, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    killed
}

/// How long `bundle ARGS` takes when left alone.
fn duration_of(ws: &Workspace, args: &[&str]) -> Duration {
    let t = Instant::now();
    ws.run(args).code(0);
    t.elapsed()
}

/// Visible bundle folders of the destination.
pub fn visible_bundles(dest: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dest)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

pub fn hidden_leftovers(dest: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dest)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_during_create_never_leaves_a_bundle_that_is_not_whole() {
    let ws = Workspace::new();
    big_stores(&ws, "a");
    kill_create_loop(&ws, &["create", "--no-reuse"], "kill_9_during_create", 6);
}

#[test]
fn kill_9_during_a_create_of_many_files_never_leaves_a_bundle_that_is_not_whole() {
    // More files and folders than one `syncfs` replaces file-by-file fsyncs
    // for: the manifest is written beside the first sync, and the bundle
    // published after the last.
    let ws = Workspace::new();
    for folder in 0..300 {
        for file in 0..2 {
            ws.write(
                &format!("data/files/d{folder:03}/f{file}.txt"),
                &format!("{folder}-{file}"),
            );
        }
    }
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n[[stores]]\nname = \"files\"\nkind = \"dir\"\npath = \"data/files\"\n",
    );
    // The loop's runs link what the first create copied; a run after a
    // killed one first removes what that left, so the delays reach twice an
    // undisturbed run.
    ws.run(&["create"]).code(0);
    kill_create_loop(&ws, &["create"], "kill_9_during_a_create_of_many_files", 10);
}

/// Kills `bundle ARGS` (a create) at random instants up to `fifths` fifths
/// of its undisturbed duration, over and over: every visible bundle folder
/// must be a listed, readable bundle that passes the quick check, and the
/// next create succeeds and removes what was left.
fn kill_create_loop(ws: &Workspace, args: &[&str], name: &str, fifths: u64) {
    let dest = ws.path("backups");
    let typical = duration_of(ws, args);
    let mut rng = Rng::new(name);
    let runs = loop_runs(20, 200);
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..runs {
        let before = visible_bundles(&dest).len();
        let delay = Duration::from_micros(rng.below(typical.as_micros() as u64 * fifths / 5));
        let mut child = spawn(ws, args);
        let killed = kill_after(&mut child, delay);
        let after = visible_bundles(&dest).len();
        let phase = match (
            killed,
            after > before,
            hidden_leftovers(&dest, ".staging-") > 0,
        ) {
            (false, _, _) => "finished before the kill",
            (true, true, _) => "killed after the commit (bundle complete)",
            (true, false, true) => "killed while capturing (staging left)",
            (true, false, false) => "killed before staging",
        };
        *outcome.entry(phase).or_default() += 1;
        // list shows only bundles whose manifest reads back whole.
        let listed = ws.run(&["--json", "list"]);
        listed.code(0);
        assert_eq!(
            listed.json().as_array().unwrap().len(),
            after,
            "every visible bundle folder is a listed, readable bundle"
        );
    }
    eprintln!("{name}, {runs} runs: {outcome:?}");
    for bundle in visible_bundles(&dest) {
        ws.run(&["verify", "--quick", bundle.to_str().unwrap()])
            .code(0);
    }
    // The next create succeeds and removes what the killed ones left.
    ws.run(&["create"]).code(0);
    assert_eq!(hidden_leftovers(&dest, ".staging-"), 0);
}

/// A fingerprint of the live database's content: row count and a digest of
/// every row, in id order; also asserts integrity_check passes.
fn db_fingerprint(path: &Path) -> (i64, String) {
    let conn = Connection::open(path).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{} fails integrity_check", path.display());
    let mut stmt = conn
        .prepare("SELECT id, kind, hex(body) FROM mem ORDER BY id")
        .unwrap();
    let mut digest = String::new();
    let mut rows = 0;
    let mut it = stmt.query([]).unwrap();
    while let Some(r) = it.next().unwrap() {
        let (id, kind, body): (i64, String, String) =
            (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap());
        digest = bundle::hash::sha256_hex(format!("{digest}{id}{kind}{body}").as_bytes());
        rows += 1;
    }
    (rows, digest)
}

/// Temp files a restore left anywhere under `root`.
fn temp_leftovers(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_name().to_string_lossy().contains("bundle-tmp"))
        .map(|e| e.into_path())
        .collect()
}

fn kill_restore_loop(mode: &str) {
    let ws = Workspace::new();
    big_stores(&ws, "n");
    let new_bundle = ws.create(&[]);
    let new_fp = db_fingerprint(&ws.path("data/memory.db"));
    // The old live state: other rows, other files.
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    big_stores(&ws, "o");
    // The old live database has committed transactions still in its WAL: a
    // restore must fold them in before the swap (the safety snapshot holds
    // them) and never let that WAL be replayed onto the restored file.
    let wal_holder = Connection::open(ws.path("data/memory.db")).unwrap();
    wal_holder
        .execute_batch(
            "PRAGMA wal_autocheckpoint=0;
             UPDATE mem SET kind = 'wal-' || kind WHERE id % 3 = 0;",
        )
        .unwrap();
    assert!(ws.path("data/memory.db-wal").metadata().unwrap().len() > 0);
    let old_fp = db_fingerprint(&ws.path("data/memory.db"));
    copy_tree(&ws.path("data"), &ws.path("pristine"));
    drop(wal_holder);
    // The old segments differ from the bundle's: a finished merge keeps them
    // and says so (incomplete, exit 1); a finished replace exits 0.
    let finished = if mode == "merge" { 1 } else { 0 };
    let merged_fp = if mode == "merge" {
        ws.run(&[
            "restore",
            new_bundle.to_str().unwrap(),
            "--mode",
            "merge",
            "--no-safety-snapshot",
        ])
        .code(finished);
        let fp = db_fingerprint(&ws.path("data/memory.db"));
        copy_tree(&ws.path("pristine"), &ws.path("data"));
        fp
    } else {
        new_fp.clone()
    };
    let bundle = new_bundle.to_str().unwrap().to_string();
    let mut args = vec!["restore", bundle.as_str(), "--mode", mode];
    let token;
    if mode == "replace" {
        token = ws.replace_token(&new_bundle, &[]);
        args.extend(["--confirm-token", token.as_str()]);
    }
    let typical = {
        let t = Instant::now();
        ws.run(&args).code(finished);
        copy_tree(&ws.path("pristine"), &ws.path("data"));
        t.elapsed()
    };
    let dest = ws.path("backups");
    let keep = new_bundle.file_name().unwrap().to_owned();
    let mut rng = Rng::new(&format!("kill_9_during_restore_{mode}"));
    let runs = loop_runs(100, 200);
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut interrupted, mut undone) = (0, 0);
    for i in 0..runs {
        // Start every iteration from the old state with only the new bundle.
        copy_tree(&ws.path("pristine"), &ws.path("data"));
        for b in visible_bundles(&dest) {
            if b.file_name().unwrap() != keep {
                make_writable(&b);
                std::fs::remove_dir_all(&b).unwrap();
            }
        }
        let _ = std::fs::remove_file(dest.join(".restore-journal.json"));
        let delay = Duration::from_micros(rng.below(typical.as_micros() as u64 * 6 / 5));
        let mut child = spawn(&ws, &args);
        let killed = kill_after(&mut child, delay);

        let fp = db_fingerprint(&ws.path("data/memory.db"));
        assert!(
            fp == old_fp || fp == merged_fp,
            "run {i}: the database holds neither the old nor the restored content"
        );
        let journal = dest.join(".restore-journal.json");
        let phase = match (killed, journal.exists(), fp == old_fp) {
            (false, _, _) => "finished before the kill",
            (true, false, true) => "killed before writing (no journal)",
            (true, true, true) => "killed while applying, database still old",
            (true, true, false) => "killed while applying, database already new",
            (true, false, false) => "killed after finishing",
        };
        *outcome.entry(phase).or_default() += 1;
        if !journal.exists() {
            continue;
        }
        // The interrupted restore is detected: create refuses until it is finished.
        let refused = ws.run(&["create"]);
        refused.code(3);
        assert!(refused.stderr.contains("interrupted"), "{}", refused.stderr);
        let j: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
        let snapshot = j["safety_snapshot"].as_str().map(PathBuf::from);
        interrupted += 1;
        // Every other interrupted replace is undone right away, while its
        // journal is still there: the safety snapshot the journal names may
        // be restored (its dry run prints the token).
        if let Some(snapshot) = snapshot.as_ref().filter(|_| interrupted % 2 == 0) {
            undone += 1;
            ws.replace(snapshot, &["--no-safety-snapshot"]);
            assert_eq!(db_fingerprint(&ws.path("data/memory.db")), old_fp);
            assert_eq!(
                std::fs::read(ws.path("data/kb/0.jsonl")).unwrap(),
                std::fs::read(ws.path("pristine/kb/0.jsonl")).unwrap()
            );
            assert!(!journal.exists());
            assert_eq!(
                temp_leftovers(&ws.path("data")),
                Vec::<PathBuf>::new(),
                "run {i}: undo"
            );
            continue;
        }
        // Re-running it completes.
        let mut rerun_args = vec!["--json"];
        rerun_args.extend(&args);
        let rerun = ws.run(&rerun_args);
        rerun.code(finished);
        assert_eq!(
            rerun.json()["resumed"],
            true,
            "the re-run finishes the interrupted restore"
        );
        assert_eq!(db_fingerprint(&ws.path("data/memory.db")), merged_fp);
        assert!(!journal.exists());
        assert_eq!(
            temp_leftovers(&ws.path("data")),
            Vec::<PathBuf>::new(),
            "run {i}: resume"
        );
    }
    eprintln!(
        "kill -9 during restore --mode {mode}, {runs} runs: {outcome:?}; {interrupted} interrupted: {} finished by a re-run, {undone} undone from the safety snapshot while the journal was there; 0 temp files left",
        interrupted - undone
    );
}

#[test]
fn kill_9_during_restore_replace_leaves_old_or_new_and_can_be_finished_or_undone() {
    kill_restore_loop("replace");
}

#[test]
fn kill_9_during_restore_merge_leaves_old_or_merged_and_can_be_finished() {
    kill_restore_loop("merge");
}

#[test]
fn kill_9_during_prune_never_leaves_a_bundle_that_looks_whole_but_is_not() {
    let ws = Workspace::new();
    ws.write("data/notes.jsonl", "{\"id\":1}\n");
    for i in 0..300 {
        ws.write(&format!("data/dir/{i:03}.bin"), &"x".repeat(2048));
    }
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n\
         [[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"data/notes.jsonl\"\n\
         [[stores]]\nname = \"dir\"\nkind = \"dir\"\npath = \"data/dir\"\n",
    );
    let dest = ws.path("backups");
    let mut rng = Rng::new("kill_9_during_prune");
    let runs = loop_runs(20, 200);
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..runs {
        while visible_bundles(&dest).len() < 6 {
            ws.run(&["create", "--no-reuse"]).code(0);
        }
        let before = visible_bundles(&dest).len();
        let delay = Duration::from_micros(rng.below(40_000));
        let mut child = spawn(&ws, &["prune", "--keep-last", "1", "--apply"]);
        let killed = kill_after(&mut child, delay);
        let after = visible_bundles(&dest).len();
        let phase = match (killed, after, hidden_leftovers(&dest, ".deleting-") > 0) {
            (false, _, _) => "finished before the kill",
            (true, n, true) if n < before => "killed while deleting (hidden leftover)",
            (true, n, _) if n == before => "killed before deleting",
            (true, _, _) => "killed between deletions",
        };
        *outcome.entry(phase).or_default() += 1;
        // Every bundle still visible is whole.
        for bundle in visible_bundles(&dest) {
            ws.run(&["verify", "--quick", bundle.to_str().unwrap()])
                .code(0);
        }
    }
    eprintln!("kill -9 during prune --apply, {runs} runs: {outcome:?}");
    ws.run(&["prune", "--keep-last", "1", "--apply"]).code(0);
    assert_eq!(hidden_leftovers(&dest, ".deleting-"), 0);
    assert_eq!(visible_bundles(&dest).len(), 1);
}

#[test]
fn two_creates_at_once_one_proceeds_the_other_fails_fast() {
    let ws = Workspace::new();
    big_stores(&ws, "a");
    let mut first = ws
        .cmd()
        .args(["create", "--no-reuse"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first one holds the lock (its staging folder appears).
    let dest = ws.path("backups");
    let t = Instant::now();
    while hidden_leftovers(&dest, ".staging-") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "first create never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    let second = ws.run(&["create"]);
    let waited = t.elapsed();
    second.code(3);
    assert!(
        second
            .stderr
            .contains("another bundle operation is running"),
        "{}",
        second.stderr
    );
    assert!(
        waited < Duration::from_secs(5),
        "it must fail fast, took {waited:?}"
    );
    // prune --apply meanwhile: refused the same way, nothing touched.
    let prune = ws.run(&["prune", "--keep-last", "1", "--apply"]);
    prune.code(3);
    assert!(first.wait().unwrap().success());
    let bundles = visible_bundles(&dest);
    assert_eq!(bundles.len(), 1);
    ws.run(&["verify", bundles[0].to_str().unwrap()]).code(0);
    // A dry-run prune does not need the lock and never interferes.
    ws.run(&["prune", "--keep-last", "1"]).code(0);
}

/// The binary, for commands wrapped in other programs (prlimit, unshare, setpriv).
pub fn bin() -> String {
    assert_cmd::cargo::cargo_bin!("bundle")
        .display()
        .to_string()
}

/// Runs a shell script in the workspace with a cleared environment.
pub fn sh(ws: &Workspace, script: &str) -> crate::support::Run {
    Command::new("sh")
        .args(["-c", script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BUNDLE", bin())
        .current_dir(ws.root())
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into()
}

/// Whether this machine lets us mount a tmpfs in a user namespace.
pub fn namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn a_restore_refuses_while_the_destination_is_busy() {
    let ws = Workspace::new();
    crate::support::demo_stores(&ws);
    let bundle = ws.create(&[]);
    Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch("DELETE FROM notes;")
        .unwrap();
    let before = std::fs::read(ws.path("data/memory.db")).unwrap();
    // Another bundle operation (a create, a prune) holds the destination.
    let lock = std::fs::File::options()
        .write(true)
        .open(ws.path("backups/.bundle.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let b = bundle.to_str().unwrap();
    let run = ws.run(&["restore", b, "--mode", "merge"]);
    run.code(3);
    assert!(
        run.stderr.contains("another bundle operation is running"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(ws.path("data/memory.db")).unwrap(), before);
    // Looking at the plan needs no lock.
    ws.run(&["restore", b, "--mode", "merge", "--dry-run"])
        .code(0);
    drop(lock);
    ws.run(&["restore", b, "--mode", "merge"]).code(0);
    assert_eq!(
        crate::support::count(&ws.path("data/memory.db"), "notes"),
        3
    );
}
