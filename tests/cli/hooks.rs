//! Hooks around create and restore: order, environment, failures, timeouts.

use crate::support::{count, demo_stores, Workspace};

/// A workspace with one JSONL store, an SQLite store and the given `[hooks]` lines.
fn with_hooks(hooks: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("data/notes.jsonl", "{\"id\":1}\n");
    ws.sqlite(
        "data/memory.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    ws.write(
        "bundle.toml",
        &format!(
            "destination = \"backups\"\n\
             [[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"data/notes.jsonl\"\n\
             [[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n\
             [hooks]\n{hooks}\n"
        ),
    );
    ws
}

/// Lines the hooks appended to `hook.log`.
fn log(ws: &Workspace) -> Vec<String> {
    std::fs::read_to_string(ws.path("hook.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Bundle folders in the destination.
fn bundles(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.path("backups"))
        .map(|d| {
            d.filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
        })
        .unwrap_or(0)
}

const LOG_PRE: &str = r#"pre_create = "echo \"pre id=$BUNDLE_ID path=$BUNDLE_PATH status=$BUNDLE_STATUS dest=$BUNDLE_DESTINATION bundles=$(ls \"$BUNDLE_DESTINATION\" 2>/dev/null | wc -l)\" >> hook.log""#;
const LOG_POST: &str = r#"post_create = "echo \"post id=$BUNDLE_ID path=$BUNDLE_PATH status=$BUNDLE_STATUS\" >> hook.log""#;

#[test]
fn create_hooks_run_in_order_with_the_bundle_in_their_environment() {
    let ws = with_hooks(&format!(
        "{LOG_PRE}\n{LOG_POST}\npost_restore = \"echo never >> hook.log\""
    ));
    let run = ws.run(&["--json", "create"]);
    run.code(0);
    let out = run.json();
    let (id, path) = (out["id"].as_str().unwrap(), out["path"].as_str().unwrap());
    let dest = ws.path("backups");
    assert_eq!(
        log(&ws),
        [
            format!("pre id= path= status=ok dest={} bundles=0", dest.display()),
            format!("post id={id} path={path} status=ok"),
        ]
    );
}

#[test]
fn a_failing_pre_hook_aborts_before_anything_is_written_and_post_still_runs() {
    let ws = with_hooks(&format!(
        "pre_create = \"echo stopping the app; exit 7\"\n{LOG_POST}"
    ));
    let run = ws.run(&["--json", "create"]);
    run.code(1);
    assert!(
        run.stderr.contains("pre_create hook failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("status 7"), "{}", run.stderr);
    assert!(
        run.stderr.contains("stopping the app"),
        "hook output goes to stderr: {}",
        run.stderr
    );
    // stdout holds only the JSON error document, never the hook's output.
    let doc = run.json();
    assert_eq!(doc["error"]["kind"], "hook", "{doc}");
    assert_eq!(doc["exit_code"], 1);
    assert!(!run.stdout.contains("stopping the app"), "{}", run.stdout);
    assert_eq!(bundles(&ws), 0);
    assert!(!ws.path("backups").exists(), "not even the destination");
    assert_eq!(log(&ws), ["post id= path= status=failed"]);
}

#[test]
fn post_hook_runs_with_failed_status_when_the_create_fails() {
    let ws = with_hooks(&format!("{LOG_PRE}\n{LOG_POST}"));
    // A corrupt database makes its store fail: the other stores are still
    // published (exit 1), and the post hook is told the create failed.
    std::fs::write(ws.path("data/memory.db"), b"SQLite format 3\0garbage").unwrap();
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr.contains("published without store \"memory\""),
        "{}",
        run.stderr
    );
    let lines = log(&ws);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], "post id= path= status=failed");
    assert_eq!(bundles(&ws), 1);
    // With every store failing, nothing is published and the store's own
    // error decides the exit code.
    let ws = with_hooks(&format!("{LOG_PRE}\n{LOG_POST}"));
    std::fs::write(ws.path("data/memory.db"), b"SQLite format 3\0garbage").unwrap();
    let run = ws.run(&["create", "--store", "memory"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_ne!(run.code, 1, "the create's own error decides the exit code");
    assert_eq!(log(&ws)[1], "post id= path= status=failed");
    assert_eq!(bundles(&ws), 0);
}

#[test]
fn a_failing_post_hook_makes_the_exit_non_zero_but_keeps_the_bundle() {
    let ws = with_hooks("post_create = \"exit 3\"");
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr.contains("post_create hook failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the create itself succeeded"),
        "{}",
        run.stderr
    );
    assert_eq!(bundles(&ws), 1);
    ws.run(&["verify", "latest"]).code(0);
}

#[test]
fn a_hook_that_runs_too_long_is_killed() {
    let ws = with_hooks(&format!(
        "hook_timeout = \"1s\"\npre_create = \"sleep 30; echo late >> hook.log\"\n{LOG_POST}"
    ));
    let run = ws.run(&["create"]);
    run.code(1);
    assert!(
        run.stderr.contains("did not finish within 1s"),
        "{}",
        run.stderr
    );
    assert_eq!(bundles(&ws), 0);
    assert_eq!(log(&ws), ["post id= path= status=failed"]);
}

#[test]
fn restore_hooks_surround_the_write_and_a_failing_pre_restore_changes_nothing() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    let hooks = "[hooks]\n\
         pre_create = \"echo pre_create >> hook.log\"\n\
         pre_restore = \"echo pre_restore $BUNDLE_ID $BUNDLE_STATUS >> hook.log\"\n\
         post_restore = \"echo post_restore $BUNDLE_ID $BUNDLE_STATUS >> hook.log\"\n";
    ws.write("bundle.toml", &format!("{config}{hooks}"));
    rusqlite::Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch("DELETE FROM notes;")
        .unwrap();

    // A dry run runs no hook.
    ws.run(&["restore", &id, "--mode", "merge", "--dry-run"])
        .code(0);
    assert!(log(&ws).is_empty());

    let run = ws.run(&["restore", &id, "--mode", "merge"]);
    run.code(0);
    assert_eq!(count(&ws.path("data/memory.db"), "notes"), 3);
    assert_eq!(
        log(&ws),
        [
            format!("pre_restore {id} ok"),
            format!("post_restore {id} ok")
        ],
        "the safety snapshot runs no create hooks"
    );

    // A failing pre_restore: nothing written, no safety snapshot, post still runs.
    std::fs::remove_file(ws.path("hook.log")).unwrap();
    ws.write(
        "bundle.toml",
        &format!(
            "{config}[hooks]\npre_restore = \"exit 5\"\npost_restore = \"echo post_restore $BUNDLE_STATUS >> hook.log\"\n"
        ),
    );
    rusqlite::Connection::open(ws.path("data/memory.db"))
        .unwrap()
        .execute_batch("DELETE FROM notes;")
        .unwrap();
    let before = bundles(&ws);
    let run = ws.run(&["restore", &id, "--mode", "merge"]);
    run.code(1);
    assert!(
        run.stderr.contains("pre_restore hook failed"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&ws.path("data/memory.db"), "notes"), 0);
    assert_eq!(bundles(&ws), before, "no safety snapshot either");
    assert_eq!(log(&ws), ["post_restore failed"]);
}

/// Holds a write transaction on `db` until killed (a stand-in for a running service).
const HOLDER: &str = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO projects VALUES (7, 'uncommitted')")
open(sys.argv[2], "w").write("locked")
time.sleep(120)
"#;

#[test]
fn pre_restore_runs_before_the_in_use_check_so_it_can_stop_the_service() {
    let Some(python) = crate::support::python_with("sqlite3") else {
        return;
    };
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let mut holder = std::process::Command::new(python)
        .args(["-c", HOLDER])
        .arg(ws.path("data/memory.db"))
        .arg(ws.path("locked"))
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if ws.path("locked").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ws.path("locked").exists(), "the holder never took its lock");

    // Without a hook the busy database is refused.
    ws.run(&["restore", &id, "--mode", "merge"]).code(3);

    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &format!(
            "{config}[hooks]\npre_restore = \"kill {}; sleep 0.2\"\n",
            holder.id()
        ),
    );
    let run = ws.run(&["restore", &id, "--mode", "merge"]);
    let _ = holder.kill();
    let _ = holder.wait();
    run.code(0);
    assert_eq!(count(&ws.path("data/memory.db"), "projects"), 2);
}
