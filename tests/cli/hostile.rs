//! Damaged and malicious bundles: verify reports every damage, restore refuses
//! before writing, nothing panics, nothing is written outside the targets.
//!
//! The bit-flip loop runs 100 cases by default (CI) and 500 with `BUNDLE_LONG=1`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::faults::{loop_runs, Rng};
use crate::support::{copy_tree, demo_stores, make_writable, tree, Workspace};

#[test]
fn random_bit_flips_and_truncations_are_all_caught_and_restore_refuses_before_writing() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    // Every live file differs from the bundle's, so a replace writes (and
    // so reads and checks) every bundle file: a damaged one must be found.
    // (A file live already holds as the bundle has it is not read.)
    for rel in [
        "kb/2026/a.jsonl",
        "kb/b.jsonl",
        "kb/README.txt",
        "vectors/seg-1/data_level0.bin",
    ] {
        let path = ws.path(&format!("data/{rel}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"live\":1}\n");
        std::fs::write(&path, bytes).unwrap();
    }
    ws.sqlite(
        "data/vectors/chroma.sqlite3",
        "INSERT INTO embeddings(v) VALUES (x'03');",
    );
    let token = ws.replace_token(&good, &[]);
    let files: Vec<PathBuf> = tree(&good).into_iter().map(|(p, _)| p).collect();
    let live_before = tree(&ws.path("data"));
    let case = ws.path("case");
    let mut rng = Rng::new("bit_flips");
    let runs = loop_runs(100, 500);
    let (mut flips, mut cuts) = (0, 0);
    for i in 0..runs {
        copy_tree(&good, &case);
        let victim = case.join(&files[rng.below(files.len() as u64) as usize]);
        let mut bytes = std::fs::read(&victim).unwrap();
        let what = if bytes.is_empty() || rng.below(4) == 0 {
            let keep = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(keep);
            cuts += 1;
            format!("truncated to {keep}")
        } else {
            let at = rng.below(bytes.len() as u64) as usize;
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            flips += 1;
            format!("bit {bit} of byte {at} flipped")
        };
        std::fs::write(&victim, &bytes).unwrap();
        let name = victim.strip_prefix(&case).unwrap().display().to_string();

        let verify = ws.run(&["verify", case.to_str().unwrap()]);
        assert_eq!(
            verify.code, 1,
            "case {i}: {name} {what}: verify must fail\n{}{}",
            verify.stdout, verify.stderr
        );
        assert!(
            verify.stdout.contains("problem:"),
            "case {i}: {}",
            verify.stdout
        );
        // Merge, and replace with the token of the undamaged plan: both refuse
        // (exit 1 when the manifest still parses, else 4) before writing.
        for mode in [
            &["--mode", "merge"][..],
            &["--mode", "replace", "--confirm-token", &token][..],
        ] {
            let mut args = vec!["restore", case.to_str().unwrap()];
            args.extend_from_slice(mode);
            let restore = ws.run(&args);
            assert!(
                restore.code == 1 || restore.code == 4 || restore.code == 2,
                "case {i}: {name} {what}: restore must refuse, got {}\n{}",
                restore.code,
                restore.stderr
            );
            assert!(!restore.stderr.contains("panicked"), "{}", restore.stderr);
        }
        assert!(
            tree(&ws.path("data")) == live_before,
            "case {i}: live stores changed"
        );
    }
    eprintln!("damaged bundles: {runs} cases ({flips} bit flips, {cuts} truncations), all caught, live stores unchanged");
}

/// A bundle whose manifest is `manifest` (the checksum file made to match, as a
/// forger would), with the good bundle's data files.
fn forged(ws: &Workspace, good: &Path, name: &str, manifest: &[u8]) -> PathBuf {
    let path = ws.path(name);
    copy_tree(good, &path);
    std::fs::write(path.join("bundle-meta.json"), manifest).unwrap();
    std::fs::write(
        path.join("bundle-meta.json.sha256"),
        bundle::manifest::manifest_sum(manifest),
    )
    .unwrap();
    path
}

#[test]
fn malicious_manifests_are_refused_without_panics_or_writes_outside_targets() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(good.join("bundle-meta.json")).unwrap()).unwrap();
    std::fs::create_dir(ws.path("outside")).unwrap();
    let live_before = tree(&ws.path("data"));

    let edit = |f: &dyn Fn(&mut Value)| {
        let mut m = manifest.clone();
        f(&mut m);
        serde_json::to_vec_pretty(&m).unwrap()
    };
    let first_file = |m: &mut Value| -> Value { m["stores"][1]["files"][0].clone() };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            edit(&|m| m["stores"][1]["files"][0]["path"] = json!("kb/../../outside/evil.jsonl")),
        ),
        (
            "absolute",
            edit(&|m| m["stores"][1]["files"][0]["path"] = json!("/tmp/evil.jsonl")),
        ),
        (
            "nul",
            edit(&|m| m["stores"][1]["files"][0]["path"] = json!("kb/a\u{0}.jsonl")),
        ),
        (
            "other store's folder",
            edit(&|m| m["stores"][1]["files"][0]["path"] = json!("vectors/x.jsonl")),
        ),
        (
            "duplicate path",
            edit(&|m| {
                let f = first_file(m);
                m["stores"][1]["files"].as_array_mut().unwrap().push(f);
            }),
        ),
        (
            "enormous size",
            edit(&|m| m["stores"][1]["files"][0]["bytes"] = json!(u64::MAX)),
        ),
        (
            "enormous count",
            edit(&|m| {
                m["stores"][0]["files"][0]["sqlite"]["tables"]["notes"] = json!(u64::MAX);
            }),
        ),
        (
            "unknown format_version",
            edit(&|m| m["format_version"] = json!(2)),
        ),
        (
            "wrong type",
            edit(&|m| m["stores"][1]["files"][0]["bytes"] = json!("twelve")),
        ),
        (
            "unknown field",
            edit(&|m| m["stores"][0]["run_on_restore"] = json!("rm -rf ~")),
        ),
        (
            "bad store name",
            edit(&|m| m["stores"][1]["name"] = json!("../kb")),
        ),
        ("not json", b"{\"format_version\": 1, ".to_vec()),
        ("empty", Vec::new()),
    ];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    cases.push(("deep nesting", deep.into_bytes()));
    let mut big = b"{\"format_version\": 1, \"label\": \"".to_vec();
    big.resize(100 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    cases.push(("100 MB manifest", big));

    for (name, bytes) in &cases {
        let bundle = forged(
            &ws,
            &good,
            &format!("case-{}", name.replace(' ', "-")),
            bytes,
        );
        let verify = ws.run(&["verify", bundle.to_str().unwrap()]);
        assert_eq!(
            verify.code, 1,
            "{name}: verify must fail\n{}{}",
            verify.stdout, verify.stderr
        );
        for mode in ["merge", "replace"] {
            let restore = ws.run(&[
                "restore",
                bundle.to_str().unwrap(),
                "--mode",
                mode,
                "--confirm-token",
                "000000000000",
            ]);
            assert!(
                [1, 2, 3, 4].contains(&restore.code),
                "{name}: restore --mode {mode} must refuse, got {}: {}",
                restore.code,
                restore.stderr
            );
            assert!(
                !restore.stderr.contains("panicked"),
                "{name}: {}",
                restore.stderr
            );
            let into = ws.path(&format!("into-{}-{mode}", name.replace(' ', "-")));
            let scratch = ws.run(&[
                "restore",
                bundle.to_str().unwrap(),
                "--mode",
                mode,
                "--into",
                into.to_str().unwrap(),
            ]);
            assert!(
                [1, 2, 3, 4].contains(&scratch.code),
                "{name}: --into must refuse too"
            );
        }
        make_writable(&bundle);
        std::fs::remove_dir_all(&bundle).unwrap();
    }
    // A recorded symlink that points out of its store is consistent metadata,
    // so verify passes; restore must never create it.
    let escaping = edit(&|m| {
        m["stores"][2]["symlinks"] =
            json!([{"path": "vectors/escape", "target": "../../../outside"}]);
    });
    let bundle = forged(&ws, &good, "case-escaping-symlink", &escaping);
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    let into = ws.path("into-escaping");
    let run = ws.run(&[
        "--json",
        "restore",
        bundle.to_str().unwrap(),
        "--mode",
        "replace",
        "--into",
        into.to_str().unwrap(),
    ]);
    run.code(0);
    assert!(
        std::fs::symlink_metadata(into.join("vectors/escape")).is_err(),
        "the escaping link was created"
    );
    assert!(
        run.stdout.contains("leaves the store; not restored"),
        "{}",
        run.stdout
    );

    assert!(
        tree(&ws.path("outside")).is_empty(),
        "nothing may be written outside the targets"
    );
    assert_eq!(tree(&ws.path("data")), live_before, "live stores unchanged");
    assert!(!Path::new("/tmp/evil.jsonl").exists());
    eprintln!(
        "malicious manifests: {} cases refused by verify and restore",
        cases.len()
    );
}

#[test]
fn a_path_through_a_symlink_placed_in_the_bundle_is_refused() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let good = ws.create(&[]);
    let case = ws.path("case");
    copy_tree(&good, &case);
    // Replace the kb folder with a symlink to a folder outside holding the same files.
    std::fs::create_dir(ws.path("outside")).unwrap();
    copy_tree(&case.join("kb"), &ws.path("outside/kb"));
    std::fs::remove_dir_all(case.join("kb")).unwrap();
    std::os::unix::fs::symlink(ws.path("outside/kb"), case.join("kb")).unwrap();
    let verify = ws.run(&["verify", case.to_str().unwrap()]);
    verify.code(1);
    assert!(verify.stdout.contains("symlink"), "{}", verify.stdout);
    ws.run(&["restore", case.to_str().unwrap(), "--mode", "merge"])
        .code(1);
}
