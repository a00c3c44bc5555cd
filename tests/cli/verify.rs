//! `bundle verify`: a good bundle passes; every kind of tampering is reported.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{demo_stores, forge, make_writable, store, Workspace};

/// A fresh demo bundle, made writable so tests can damage it.
fn tamperable() -> (Workspace, PathBuf) {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    make_writable(&bundle);
    (ws, bundle)
}

/// Runs verify --json; asserts exit 1 and a problem at `path` containing `text`.
#[track_caller]
fn assert_problem(ws: &Workspace, bundle: &Path, path: Option<&str>, text: &str) -> Value {
    let run = ws.run(&["--json", "verify", bundle.to_str().unwrap()]);
    run.code(1);
    let out = run.json();
    assert_eq!(out["ok"], false);
    let problems = out["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["path"].as_str() == path && p["problem"].as_str().unwrap().contains(text)),
        "no problem {text:?} at {path:?} in {problems:#?}"
    );
    out
}

#[test]
fn good_bundle_verifies_by_path_id_and_latest() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&[]);
    let id = bundle.file_name().unwrap().to_str().unwrap().to_string();
    for arg in [bundle.to_str().unwrap(), id.as_str(), "latest"] {
        let run = ws.run(&["--json", "verify", arg]);
        run.code(0);
        let out = run.json();
        assert_eq!(out["ok"], true);
        assert_eq!(out["problems"], serde_json::json!([]));
        assert_eq!(out["files_checked"], 5);
    }
    let run = ws.run(&["verify", "--quick", "latest"]);
    run.code(0);
    assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);
    let run = ws.run(&["verify", "20200101T000000Z"]);
    run.code(2);
    assert!(
        run.stderr.contains("no bundle \"20200101T000000Z\""),
        "{}",
        run.stderr
    );
}

#[test]
fn changed_byte_is_a_hash_mismatch() {
    let (ws, bundle) = tamperable();
    let f = bundle.join("vectors/seg-1/data_level0.bin");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    assert_problem(
        &ws,
        &bundle,
        Some("vectors/seg-1/data_level0.bin"),
        "sha256 does not match",
    );
}

#[test]
fn truncated_and_missing_files_are_reported_together() {
    let (ws, bundle) = tamperable();
    let f = bundle.join("kb/b.jsonl");
    std::fs::write(&f, "").unwrap();
    std::fs::remove_file(bundle.join("kb/2026/a.jsonl")).unwrap();
    let out = assert_problem(
        &ws,
        &bundle,
        Some("kb/b.jsonl"),
        "size is 0 bytes, manifest says 9",
    );
    assert!(
        out["problems"].to_string().contains("file is missing"),
        "verify collects every problem"
    );
    assert!(out["problems"].to_string().contains("has 0 lines"));
}

#[test]
fn unlisted_files_and_symlinks_are_reported() {
    let (ws, bundle) = tamperable();
    std::fs::write(bundle.join("vectors/extra.bin"), "smuggled").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", bundle.join("kb/link")).unwrap();
    assert_problem(
        &ws,
        &bundle,
        Some("vectors/extra.bin"),
        "not listed in the manifest",
    );
    assert_problem(&ws, &bundle, Some("kb/link"), "symlink inside the bundle");
}

#[test]
fn a_listed_path_through_a_symlinked_folder_is_rejected() {
    let (ws, bundle) = tamperable();
    let real = ws.path("elsewhere");
    std::fs::rename(bundle.join("vectors/seg-1"), &real).unwrap();
    std::os::unix::fs::symlink(&real, bundle.join("vectors/seg-1")).unwrap();
    // The folder is named within the bundle, not by where the bundle is.
    assert_problem(
        &ws,
        &bundle,
        Some("vectors/seg-1/data_level0.bin"),
        "path goes through a symlink at vectors/seg-1",
    );
}

#[test]
fn unsafe_and_duplicate_manifest_paths_are_rejected() {
    for (bad, text) in [
        ("kb/../../../etc/passwd", "\"..\" segment"),
        ("/etc/passwd", "absolute"),
        ("kb/a\u{0}b", "NUL"),
    ] {
        let (ws, bundle) = tamperable();
        forge(&bundle, |m| {
            store(m, "kb")["files"][0]["path"] = Value::from(bad);
        });
        let run = ws.run(&["--json", "verify", bundle.to_str().unwrap()]);
        run.code(1);
        let problems: Vec<String> = run.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["problem"].as_str().unwrap().to_string())
            .collect();
        assert!(
            problems.iter().any(|p| p.contains(text)),
            "{bad}: {problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("not listed in the manifest")),
            "the real file is now unlisted: {problems:?}"
        );
    }
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| {
        let kb = store(m, "kb");
        let first = kb["files"][0].clone();
        kb["files"].as_array_mut().unwrap().push(first);
    });
    assert_problem(&ws, &bundle, Some("kb/2026/a.jsonl"), "listed twice");
}

#[test]
fn manifest_claims_are_checked_against_the_bytes() {
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| {
        let mem = store(m, "memory");
        mem["files"][0]["sqlite"]["tables"]["notes"] = Value::from(99);
        let kb = store(m, "kb");
        kb["files"][0]["jsonl"]["lines"] = Value::from(7);
    });
    assert_problem(&ws, &bundle, Some("memory/memory.db"), "row counts differ");
    assert_problem(&ws, &bundle, Some("kb/2026/a.jsonl"), "has 2 lines");
}

#[test]
fn corrupt_sqlite_page_fails_the_integrity_check() {
    let (ws, bundle) = tamperable();
    let db = bundle.join("memory/memory.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Scribble over the second page (a table b-tree page).
    let page = 4096;
    for b in &mut bytes[page + 8..page + 64] {
        *b = 0xAB;
    }
    std::fs::write(&db, &bytes).unwrap();
    // Keep the hash and size consistent so only SQLite's own check can notice.
    let sha = bundle::hash::sha256_hex(&bytes);
    forge(&bundle, |m| {
        store(m, "memory")["files"][0]["sha256"] = Value::from(sha);
    });
    let run = ws.run(&["--json", "verify", bundle.to_str().unwrap()]);
    run.code(1);
    let problems = run.json()["problems"].to_string();
    assert!(
        problems.contains("integrity_check")
            || problems.contains("malformed")
            || problems.contains("cannot count"),
        "{problems}"
    );
}

#[test]
fn any_change_to_the_manifest_is_caught_by_its_checksum() {
    let (ws, bundle) = tamperable();
    let path = bundle.join("bundle-meta.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // A change no other check could see: the host name.
    let host = serde_json::from_str::<Value>(&text).unwrap()["host"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        &path,
        text.replacen(&format!("\"{host}\""), "\"elsewhere\"", 1),
    )
    .unwrap();
    assert_problem(
        &ws,
        &bundle,
        Some("bundle-meta.json.sha256"),
        "does not match its recorded sha256",
    );
    std::fs::write(&path, &text).unwrap();
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    std::fs::remove_file(bundle.join("bundle-meta.json.sha256")).unwrap();
    assert_problem(&ws, &bundle, Some("bundle-meta.json.sha256"), "is missing");
}

#[test]
fn unknown_format_and_garbage_manifests_are_never_trusted() {
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| m["format_version"] = Value::from(2));
    assert_problem(
        &ws,
        &bundle,
        Some("bundle-meta.json"),
        "format_version 2 is not supported",
    );
    std::fs::write(bundle.join("bundle-meta.json"), "{ not json").unwrap();
    assert_problem(&ws, &bundle, Some("bundle-meta.json"), "not valid JSON");
    std::fs::write(
        bundle.join("bundle-meta.json"),
        "{\"format_version\": 1, \"stores\": \"x\"}",
    )
    .unwrap();
    assert_problem(
        &ws,
        &bundle,
        Some("bundle-meta.json"),
        "does not match format 1",
    );
}

#[test]
fn topology_and_store_folder_claims_are_checked() {
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| store(m, "kb")["kind"] = Value::from("dir"));
    assert_problem(
        &ws,
        &bundle,
        Some("bundle-meta.json"),
        "topology does not match",
    );
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| {
        let f = store(m, "kb")["files"][0]["path"].clone();
        store(m, "vectors")["files"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "path": f, "bytes": 1, "sha256": "0".repeat(64)
            }));
    });
    assert_problem(
        &ws,
        &bundle,
        Some("kb/2026/a.jsonl"),
        "outside the store's folder",
    );
    // A sha256 that is not 64 lowercase hex digits: the manifest itself is refused.
    let (ws, bundle) = tamperable();
    forge(&bundle, |m| {
        store(m, "kb")["files"][0]["sha256"] = Value::from("00")
    });
    assert_problem(
        &ws,
        &bundle,
        Some("bundle-meta.json"),
        "64 lowercase hex digits",
    );
}

#[test]
fn human_output_lists_problems_and_exits_1() {
    let (ws, bundle) = tamperable();
    std::fs::write(bundle.join("vectors/seg-1/data_level0.bin"), "x").unwrap();
    let run = ws.run(&["verify", bundle.to_str().unwrap()]);
    run.code(1);
    assert!(
        run.stdout
            .contains("problem: vectors/seg-1/data_level0.bin: size is 1 bytes"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("failed verification"), "{}", run.stderr);
}

/// What `verify --json` finds in `bundle`, sorted, with its exit code (a
/// parse error's place in the manifest left out: it depends on the layout).
fn problems_found(ws: &Workspace, bundle: &Path) -> (i32, Vec<String>) {
    let run = ws.run(&["--json", "verify", bundle.to_str().unwrap()]);
    let out = run.json();
    let mut found: Vec<String> = out["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let text = p["problem"].as_str().unwrap();
            let text = text.split(" at line ").next().unwrap();
            format!("{} {} {text}", p["store"], p["path"])
        })
        .collect();
    found.sort();
    (run.code, found)
}

#[test]
fn a_forged_manifest_read_line_by_line_is_refused_as_one_parsed_whole() {
    // A manifest in this tool's layout is checked as its records stream by;
    // any other is parsed whole. Both must find the same problems.
    use crate::support::{copy_tree, forge_laid_out, Layout};
    use serde_json::json;
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    type Edit = Box<dyn Fn(&mut Value)>;
    fn files<'m>(m: &'m mut Value, name: &str) -> &'m mut Vec<Value> {
        store(m, name)["files"].as_array_mut().unwrap()
    }
    let empty_file = move |path: &str| json!({"path": path, "bytes": 0, "sha256": empty});
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("nothing", "", Box::new(|_| {})),
        (
            "a path listed twice",
            "path listed twice",
            Box::new(move |m| {
                let again = files(m, "kb")[0].clone();
                files(m, "kb").push(again);
            }),
        ),
        (
            "a record beneath a file recorded after it",
            "lies under the recorded file vectors/seg-1/data_level0.bin",
            Box::new(move |m| {
                let child = empty_file("vectors/seg-1/data_level0.bin/x");
                files(m, "vectors").insert(0, child);
            }),
        ),
        (
            "a file recorded where a folder of files is",
            "lies under the recorded file vectors/seg-1",
            Box::new(move |m| {
                files(m, "vectors").push(empty_file("vectors/seg-1"));
            }),
        ),
        (
            "a symlink on the path of a file",
            "recorded both as a file and as a symlink",
            Box::new(|m| {
                store(m, "vectors")["symlinks"] =
                    json!([{"path": "vectors/seg-1/data_level0.bin", "target": "x"}]);
            }),
        ),
        (
            "a file beneath a symlink",
            "lies under the recorded symlink vectors/seg-1",
            Box::new(|m| {
                store(m, "vectors")["symlinks"] = json!([{"path": "vectors/seg-1", "target": "."}]);
            }),
        ),
        (
            "facts missing",
            "has no JSONL facts",
            Box::new(|m| {
                store(m, "memory")["files"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("sqlite");
                store(m, "kb")["files"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("jsonl");
            }),
        ),
        (
            "paths that climb out or stray",
            "outside the store's folder",
            Box::new(|m| {
                store(m, "kb")["files"][0]["path"] = json!("kb/../../etc/passwd");
                store(m, "kb")["files"][1]["path"] = json!("vectors/seg-1/data_level0.bin");
            }),
        ),
        (
            "a size and a digest changed",
            "sha256 does not match",
            Box::new(move |m| {
                let bytes = store(m, "kb")["files"][1]["bytes"].as_u64().unwrap();
                store(m, "kb")["files"][1]["bytes"] = json!(bytes + 1);
                store(m, "kb")["files"][0]["sha256"] = json!(empty);
            }),
        ),
        (
            "an empty store listing files",
            "but files are listed",
            Box::new(|m| store(m, "kb")["status"] = json!("empty")),
        ),
        (
            "a single-file store listing another file",
            "lists a file other than its own",
            Box::new(move |m| {
                files(m, "memory").push(empty_file("memory/other.db"));
            }),
        ),
        (
            "a record with a field format 1 lacks",
            "unknown field `extra`",
            Box::new(|m| {
                store(m, "kb")["files"][0]["extra"] = json!(1);
            }),
        ),
        (
            "a record that is not one",
            "does not match format 1",
            Box::new(|m| store(m, "kb")["files"][1] = json!(5)),
        ),
    ];
    for (what, expected, edit) in cases {
        let mut found = Vec::new();
        for layout in [Layout::Tool, Layout::Pretty] {
            let bundle = ws.path("case");
            copy_tree(&good, &bundle);
            forge_laid_out(&bundle, layout, &edit);
            if layout == Layout::Tool {
                let text = std::fs::read_to_string(bundle.join("bundle-meta.json")).unwrap();
                assert!(text.contains("\"files\": [\n        {"), "{what}: {text}");
            }
            found.push(problems_found(&ws, &bundle));
            std::fs::remove_dir_all(&bundle).unwrap();
        }
        assert_eq!(found[0], found[1], "{what}");
        let (code, problems) = &found[0];
        match what {
            "nothing" => assert_eq!((*code, problems.len()), (0, 0), "{problems:?}"),
            _ => assert!(
                *code == 1 && problems.iter().any(|p| p.contains(expected)),
                "{what}: {problems:?}"
            ),
        }
    }
}
