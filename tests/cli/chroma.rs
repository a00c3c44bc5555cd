//! A real Chroma persist directory, written by the `chromadb` client, survives a
//! bundle: a scratch copy of the bundled directory answers queries as the original.
//!
//! Skips loudly without `chromadb`; `.ci/run` installs it and sets
//! `BUNDLE_REQUIRE_CHROMADB=1` so the test is mandatory there.

use std::path::Path;
use std::process::Command;

use crate::support::{copy_tree, python_with, spawn_until, Workspace};

/// Runs one action of `tests/support/chroma_helper.py` on `dir`; its stdout.
pub fn helper(python: &Path, action: &str, dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chroma_helper.py");
    let out = Command::new(python)
        .arg(script)
        .arg(action)
        .arg(dir)
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chroma helper {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bundled_chroma_directory_answers_queries_like_the_original() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let store = ws.path("chroma");
    helper(&python, "make", &store);
    let before = helper(&python, "query", &store);
    assert!(before.contains("\"count\": 120"), "{before}");

    let bundle = ws.create(&["--dest", "b", "--dir", "vectors=chroma"]);
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    let m = ws.manifest(&bundle);
    let files = m["stores"][0]["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["path"] == "vectors/chroma.sqlite3" && f["sqlite"].is_object()));
    assert!(files
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with("/data_level0.bin")));

    // Chroma writes to a store it opens: query a scratch copy, never the bundle.
    let scratch = ws.path("scratch");
    copy_tree(&bundle.join("vectors"), &scratch);
    let after = helper(&python, "query", &scratch);
    assert_eq!(after, before);
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
}

#[test]
fn chroma_directory_restored_by_replace_answers_as_before() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let store = ws.path("chroma");
    helper(&python, "make", &store);
    let before = helper(&python, "query", &store);
    let bundle = ws.create(&["--dest", "b", "--dir", "vectors=chroma"]);
    helper(&python, "mutate", &store);
    let changed = helper(&python, "query", &store);
    assert_ne!(changed, before);

    ws.replace(&bundle, &["--dir", "vectors=chroma"]);
    assert_eq!(helper(&python, "query", &store), before);
}

/// The Chroma `check` of docs/restore.md, with `python` for `python3`.
fn chroma_check(python: &Path) -> String {
    format!(
        "check = '''ANONYMIZED_TELEMETRY=False {} -c '\nimport sys, chromadb\nclient = chromadb.PersistentClient(path=sys.argv[1])\nfor c in client.list_collections():\n    col = client.get_collection(getattr(c, \"name\", c))\n    if col.count(): col.query(query_embeddings=[col.peek(1)[\"embeddings\"][0]], n_results=1)\n' {{path}}'''\n",
        python.display()
    )
}

#[test]
fn the_documented_chroma_check_opens_the_drilled_store_with_the_real_client() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    helper(&python, "make", &ws.path("chroma"));
    ws.write(
        "bundle.toml",
        &format!(
            "destination = \"b\"\n[[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"chroma\"\n{}",
            chroma_check(&python)
        ),
    );
    let bundle = ws.create(&[]);
    let drill = ws.run(&["--json", "drill", bundle.to_str().unwrap()]);
    drill.code(0);
    assert_eq!(drill.json()["stores"][0]["check"], "ok", "{}", drill.stderr);
    // A store the client cannot open fails the check: a bundle of a folder
    // whose index metadata was emptied (one of the torn shapes seen live).
    let torn = ws.path("chroma");
    let pickle = walkdir::WalkDir::new(&torn)
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "index_metadata.pickle")
        .map(|e| e.into_path())
        .expect("the client wrote index_metadata.pickle");
    std::fs::write(&pickle, b"").unwrap();
    let bad = ws.create(&[]);
    let drill = ws.run(&["--json", "drill", bad.to_str().unwrap()]);
    drill.code(1);
    assert!(
        drill.json()["stores"][0]["check"]
            .as_str()
            .unwrap()
            .contains("its check command failed"),
        "{}",
        drill.stdout
    );
}

#[test]
fn replace_into_a_chroma_store_a_client_holds_open_is_refused_naming_it() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let store = ws.path("chroma");
    helper(&python, "make", &store);
    let bundle = ws.create(&["--dest", "b", "--chroma", "vectors=chroma"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chroma_helper.py");
    let mut app = spawn_until(
        Command::new(&python)
            .arg(script)
            .arg("hold")
            .arg(&store)
            .env("ANONYMIZED_TELEMETRY", "False"),
        "open",
    );
    let args = ["--dest", "b", "--chroma", "vectors=chroma"];
    let token = ws.replace_token(&bundle, &args);
    let mut run_args = vec!["restore", bundle.to_str().unwrap(), "--mode", "replace"];
    run_args.extend(["--confirm-token", &token]);
    run_args.extend(args);
    let run = ws.run(&run_args);
    let _ = app.kill();
    let _ = app.wait();
    run.code(3);
    assert!(
        run.stderr
            .contains(&format!("is open in process {}", app.id())),
        "{}",
        run.stderr
    );
}
