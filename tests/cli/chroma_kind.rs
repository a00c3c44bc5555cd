//! `kind = "chroma"` with the real `chromadb` client: collections recorded
//! and re-checked by verify, the torn shapes seen under a live writer
//! rejected, merge refused, and a live writer never yielding a published
//! bundle that the client cannot use.
//!
//! Skips loudly without `chromadb`; mandatory in `.ci/run`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chroma::helper;
use crate::support::{copy_tree, forge, make_writable, python_with, spawn_until, store, Workspace};

/// The recorded facts of collection `name` in store `vectors`.
fn collection(manifest: &Value, name: &str) -> Value {
    let store = manifest["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "vectors")
        .unwrap();
    store["chroma"]["collections"]
        .as_array()
        .unwrap_or_else(|| panic!("no chroma facts: {store}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no collection {name}: {store}"))
        .clone()
}

/// The bundle file ending in `suffix` of store `vectors`: its path on disk.
fn bundle_file(bundle: &Path, suffix: &str) -> PathBuf {
    walkdir::WalkDir::new(bundle.join("vectors"))
        .into_iter()
        .flatten()
        .find(|e| e.path().to_string_lossy().ends_with(suffix))
        .map(|e| e.into_path())
        .unwrap_or_else(|| panic!("no {suffix} in {}", bundle.display()))
}

/// Makes the manifest agree with whatever the bundle's files now hold, as
/// a tool that did not check the set would have written it.
fn rehash(bundle: &Path) {
    let root = bundle.to_path_buf();
    forge(bundle, |m| {
        for f in store(m, "vectors")["files"].as_array_mut().unwrap() {
            let bytes = std::fs::read(root.join(f["path"].as_str().unwrap())).unwrap();
            f["bytes"] = bytes.len().into();
            f["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
        }
    });
}

#[test]
fn a_chroma_store_records_its_collections_and_verify_rechecks_them() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("chroma");
    helper(&python, "make", &live);
    let before = helper(&python, "query", &live);
    let bundle = ws.create(&["--dest", "b", "--chroma", "vectors=chroma"]);
    let m = ws.manifest(&bundle);
    let notes = collection(&m, "notes");
    assert_eq!(notes["embeddings"], 120, "{notes}");
    assert_eq!(notes["dimension"], 8, "{notes}");
    assert_eq!(notes["index_elements"], 120, "{notes}");
    let errors: Vec<String> = crate::schema::schema("bundle-meta.schema.json")
        .iter_errors(&m)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    let drill = ws.run(&["--json", "drill", bundle.to_str().unwrap()]);
    drill.code(0);
    assert_eq!(drill.json()["stores"][0]["check"], "ok", "{}", drill.stdout);

    // Deletions leave marked elements in the index: still consistent.
    helper(&python, "mutate", &live);
    let second = ws.create(&["--dest", "b", "--chroma", "vectors=chroma"]);
    assert_eq!(collection(&ws.manifest(&second), "notes")["embeddings"], 81);
    ws.run(&["verify", second.to_str().unwrap()]).code(0);

    // A recorded count the copy does not hold is caught.
    let forged = ws.path("forged");
    copy_tree(&bundle, &forged);
    forge(&forged, |m| {
        store(m, "vectors")["chroma"]["collections"][0]["embeddings"] = 121.into();
    });
    let run = ws.run(&["verify", forged.to_str().unwrap()]);
    run.code(1);
    assert!(
        run.stdout.contains("recorded 121 embeddings"),
        "{}",
        run.stdout
    );

    ws.replace(&bundle, &["--chroma", "vectors=chroma"]);
    assert_eq!(helper(&python, "query", &live), before);
}

#[test]
fn verify_rejects_the_two_torn_shapes_seen_under_a_live_writer() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("chroma");
    helper(&python, "make", &live);
    let good = ws.create(&["--dest", "b", "--chroma", "vectors=chroma"]);

    // Shape 1: the id map emptied mid-write; the client fails to open it.
    let empty_map = ws.path("empty-map");
    copy_tree(&good, &empty_map);
    make_writable(&empty_map);
    std::fs::write(bundle_file(&empty_map, "/index_metadata.pickle"), b"").unwrap();
    rehash(&empty_map);
    let run = ws.run(&["verify", empty_map.to_str().unwrap()]);
    run.code(1);
    assert!(
        run.stdout.contains("index_metadata.pickle is empty"),
        "{}",
        run.stdout
    );
    let scratch = ws.path("scratch-empty");
    copy_tree(&empty_map.join("vectors"), &scratch);
    let client = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chroma_helper.py"))
        .args(["query", scratch.to_str().unwrap()])
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .unwrap();
    assert!(
        !client.status.success(),
        "the real client opened the torn copy"
    );

    // Shape 2: the index files of a later persist beside the earlier id map.
    helper(&python, "grow", &live);
    let torn = ws.path("torn");
    copy_tree(&good, &torn);
    make_writable(&torn);
    for name in [
        "header.bin",
        "data_level0.bin",
        "length.bin",
        "link_lists.bin",
    ] {
        let in_bundle = bundle_file(&torn, &format!("/{name}"));
        let segment = in_bundle.parent().unwrap().file_name().unwrap();
        std::fs::copy(live.join(segment).join(name), &in_bundle).unwrap();
    }
    rehash(&torn);
    let run = ws.run(&["verify", torn.to_str().unwrap()]);
    run.code(1);
    assert!(
        run.stdout.contains("does not map to an id"),
        "{}",
        run.stdout
    );
    ws.run(&["verify", good.to_str().unwrap()]).code(0);

    // A forged database cannot send the checks outside the bundle.
    let forged = ws.path("forged");
    copy_tree(&good, &forged);
    make_writable(&forged);
    let db = rusqlite::Connection::open(forged.join("vectors/chroma.sqlite3")).unwrap();
    db.execute(
        "UPDATE segments SET id = '../../../../etc' WHERE scope = 'VECTOR'",
        [],
    )
    .unwrap();
    drop(db);
    rehash(&forged);
    let run = ws.run(&["verify", forged.to_str().unwrap()]);
    run.code(1);
    assert!(run.stdout.contains("is not a UUID"), "{}", run.stdout);
}

#[test]
fn merge_into_a_live_chroma_store_is_refused_before_any_write() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("chroma");
    helper(&python, "make", &live);
    let bundle = ws.create(&["--dest", "b", "--chroma", "vectors=chroma"]);
    helper(&python, "mutate", &live);
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
            .collect()
    };
    let before = snapshot(&live);
    let bundles_before = ws.path("b").read_dir().unwrap().count();
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
        "--chroma",
        "vectors=chroma",
    ]);
    run.code(3);
    let json = run.json();
    assert_eq!(json["ok"], false, "{}", run.stdout);
    assert_eq!(json["error"]["kind"], "refused", "{}", run.stdout);
    assert!(run.stdout.contains("--into"), "{}", run.stdout);
    assert_eq!(snapshot(&live), before, "merge wrote to the live store");
    assert_eq!(
        ws.path("b").read_dir().unwrap().count(),
        bundles_before,
        "no safety snapshot either"
    );

    // Into an empty folder there is nothing to combine: it is a copy.
    let into = ws.path("restored");
    ws.run(&[
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "merge",
        "--into",
        into.to_str().unwrap(),
    ])
    .code(0);
    assert!(helper(&python, "query", &into.join("vectors")).contains("\"count\": 120"));
}

#[test]
fn under_a_live_writer_every_published_bundle_opens_with_the_client() {
    let Some(python) = python_with("chromadb") else {
        return;
    };
    let ws = Workspace::new();
    let live = ws.path("chroma");
    std::fs::create_dir(&live).unwrap();
    let mut writer = spawn_until(
        Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chroma_helper.py"))
            .args(["write", live.to_str().unwrap()])
            .env("ANONYMIZED_TELEMETRY", "False"),
        "ready",
    );
    let mut published = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let run = ws.run(&[
            "--json",
            "create",
            "--dest",
            "b",
            "--chroma",
            "vectors=chroma",
        ]);
        match run.code {
            0 => published.push(PathBuf::from(run.json()["path"].as_str().unwrap())),
            1 => {
                let said = format!("{}{}", run.stdout, run.stderr);
                assert!(said.contains("did not hold still"), "{said}");
                refused += 1;
                eprintln!(
                    "refused: {}",
                    said.lines()
                        .find(|l| l.contains("did not hold"))
                        .unwrap_or("")
                );
            }
            other => panic!("create exited {other}: {}{}", run.stdout, run.stderr),
        }
    }
    let _ = writer.kill();
    let _ = writer.wait();
    eprintln!(
        "chroma writer stress: {} of 30 creates published, {refused} refused",
        published.len()
    );
    assert!(
        published.len() > 15,
        "only {} of 30 creates succeeded",
        published.len()
    );

    let mut copies = Vec::new();
    let mut counts = Vec::new();
    for (i, bundle) in published.iter().enumerate() {
        ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
        counts.push(collection(&ws.manifest(bundle), "stress")["embeddings"].clone());
        let scratch = ws.path(&format!("scratch-{i}"));
        copy_tree(&bundle.join("vectors"), &scratch);
        copies.push(scratch);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chroma_helper.py");
    let out = Command::new(&python)
        .arg(script)
        .arg("check-stress")
        .args(&copies)
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), copies.len());
    for (line, count) in lines.iter().zip(&counts) {
        assert_eq!(&line["count"], count, "{line}");
        assert_eq!(line["found"], 10, "{line}");
    }
}

/// The kept torn bundles (fixtures/make_torn.py made them from a real store):
/// verify rejects both, naming the tear, with no Python needed.
#[test]
fn verify_rejects_the_kept_torn_fixtures() {
    let ws = Workspace::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/torn");
    for (shape, says) in [
        ("empty-id-map", "index_metadata.pickle is empty"),
        ("index-torn-across-files", "does not map to an id"),
    ] {
        let bundle = std::fs::read_dir(fixtures.join(shape))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let copy = ws.path(&format!(
            "{shape}/{}",
            bundle.file_name().unwrap().to_str().unwrap()
        ));
        copy_tree(&bundle, &copy);
        let run = ws.run(&["--json", "verify", copy.to_str().unwrap()]);
        run.code(1);
        assert!(run.stdout.contains(says), "{shape}: {}", run.stdout);
        let drill = ws.run(&["drill", copy.to_str().unwrap()]);
        assert_ne!(drill.code, 0, "{shape}: drill passed a torn bundle");
    }
}
