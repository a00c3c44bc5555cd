//! `bundle prune` and `create --prune` over real bundles: what is reported is
//! exactly what is deleted, and the good bundles never go.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::Workspace;

/// A workspace with one JSONL store and `n` bundles; returns their ids, oldest first.
fn with_bundles(n: usize, retention: &str) -> (Workspace, Vec<String>) {
    let ws = Workspace::new();
    ws.write("data/notes.jsonl", "{\"id\":1}\n");
    ws.write(
        "bundle.toml",
        &format!(
            "destination = \"backups\"\n{retention}\n[[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"data/notes.jsonl\"\n"
        ),
    );
    let ids = (0..n)
        .map(|_| {
            let path = ws.create(&[]);
            path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    (ws, ids)
}

/// Every entry of the destination folder (hidden ones too), sorted.
fn entries(ws: &Workspace) -> BTreeSet<String> {
    std::fs::read_dir(ws.path("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every file under the destination with its bytes: a fingerprint of the folder.
fn snapshot(ws: &Workspace) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(ws.path("backups"))
        .sort_by_file_name()
        .into_iter()
        .map(Result::unwrap)
        .map(|e| {
            let bytes = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.path().display().to_string(), bytes)
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn kept_ids(report: &Value) -> Vec<String> {
    report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

fn reasons(report: &Value, id: &str) -> Vec<String> {
    let kept = report["kept"].as_array().unwrap();
    let entry = kept.iter().find(|k| k["id"] == id).unwrap();
    strings(&entry["reasons"])
}

#[test]
fn dry_run_changes_nothing_and_apply_deletes_exactly_what_it_reported() {
    let (ws, ids) = with_bundles(4, "");
    let before = snapshot(&ws);

    let dry = ws.run(&["--json", "prune", "--keep-last", "2"]);
    dry.code(0);
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(kept_ids(&dry), [ids[3].clone(), ids[2].clone()]);
    assert_eq!(strings(&dry["deleted"]), [ids[1].clone(), ids[0].clone()]);
    assert_eq!(snapshot(&ws), before, "a dry run must not touch anything");

    let text = ws.run(&["prune", "--keep-last", "2"]);
    text.code(0);
    assert!(
        text.stdout.contains("add --apply to delete"),
        "{}",
        text.stdout
    );

    let applied = ws.run(&["--json", "prune", "--keep-last", "2", "--apply"]);
    applied.code(0);
    let applied = applied.json();
    assert_eq!(applied["dry_run"], false);
    assert_eq!(applied["deleted"], dry["deleted"]);
    assert_eq!(applied["kept"], dry["kept"]);
    let visible: Vec<String> = entries(&ws)
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .collect();
    assert_eq!(visible, [ids[2].clone(), ids[3].clone()]);
    assert!(
        !entries(&ws).iter().any(|e| e.starts_with(".deleting-")),
        "deleted bundles must be gone entirely"
    );
    for id in &ids[2..] {
        ws.run(&["verify", id, "--dest", "backups"]).code(0);
    }
}

#[test]
fn the_newest_good_bundle_survives_keep_last_zero() {
    let (ws, ids) = with_bundles(3, "");
    let run = ws.run(&["--json", "prune", "--keep-last", "0", "--apply"]);
    run.code(0);
    let report = run.json();
    assert_eq!(kept_ids(&report), [ids[2].clone()]);
    assert_eq!(reasons(&report, &ids[2]), ["newest-good", "last-healthy"]);
    assert!(ws
        .path("backups")
        .join(&ids[2])
        .join("bundle-meta.json")
        .is_file());
    assert!(!ws.path("backups").join(&ids[0]).exists());
}

#[test]
fn a_damaged_newest_bundle_is_reported_kept_and_does_not_push_out_good_ones() {
    let (ws, ids) = with_bundles(3, "");
    // Damage the newest bundle: its data file goes missing.
    std::fs::remove_file(ws.path("backups").join(&ids[2]).join("notes/notes.jsonl")).unwrap();
    let run = ws.run(&["--json", "prune", "--keep-last", "1", "--apply"]);
    run.code(0);
    let report = run.json();
    assert_eq!(strings(&report["damaged"]), [ids[2].clone()]);
    assert!(
        report["problems"][&ids[2]]
            .as_str()
            .unwrap()
            .contains("file is missing"),
        "{report}"
    );
    assert_eq!(kept_ids(&report), [ids[1].clone()]);
    assert_eq!(
        reasons(&report, &ids[1]),
        ["newest-good", "last-healthy", "last"]
    );
    assert_eq!(strings(&report["deleted"]), [ids[0].clone()]);
    assert!(
        ws.path("backups").join(&ids[2]).is_dir(),
        "damaged bundles are left for the user"
    );
    assert!(ws.path("backups").join(&ids[1]).is_dir());

    let text = ws.run(&["prune", "--keep-last", "1"]);
    text.code(0);
    assert!(
        text.stdout.contains(&format!("damaged  {}", ids[2])),
        "{}",
        text.stdout
    );
}

#[test]
fn unparseable_folders_and_other_files_are_never_touched() {
    let (ws, ids) = with_bundles(2, "");
    ws.write("backups/notes/keep-me.txt", "mine");
    ws.write("backups/20250101T000000Z/bundle-meta.json", "{ not json");
    ws.write("backups/README", "my notes about these backups");
    let run = ws.run(&["--json", "prune", "--keep-last", "0", "--apply"]);
    run.code(0);
    let report = run.json();
    assert_eq!(
        strings(&report["unparseable"]),
        ["20250101T000000Z", "notes"]
    );
    assert_eq!(strings(&report["deleted"]), [ids[0].clone()]);
    assert_eq!(
        std::fs::read_to_string(ws.path("backups/notes/keep-me.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("backups/20250101T000000Z/bundle-meta.json")).unwrap(),
        "{ not json"
    );
    assert!(ws.path("backups/README").is_file());
}

fn age(path: &Path, ago: &str) {
    let ok = std::process::Command::new("touch")
        .args(["-d", ago])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch -d {ago}");
}

#[test]
fn old_staging_and_half_deleted_leftovers_are_removed_by_apply_only() {
    let (ws, ids) = with_bundles(1, "");
    ws.write(
        "backups/.staging-20250101T000000Z-4242/notes/x.jsonl",
        "{}\n",
    );
    age(
        &ws.path("backups/.staging-20250101T000000Z-4242"),
        "2 hours ago",
    );
    ws.write(
        "backups/.staging-20250102T000000Z-4343/notes/x.jsonl",
        "{}\n",
    );
    ws.write("backups/.deleting-20240101T000000Z/notes/x.jsonl", "{}\n");

    let dry = ws.run(&["--json", "prune", "--keep-last", "5"]);
    dry.code(0);
    assert_eq!(
        strings(&dry.json()["leftovers"]),
        [
            ".deleting-20240101T000000Z",
            ".staging-20250101T000000Z-4242"
        ]
    );
    assert!(ws.path("backups/.deleting-20240101T000000Z").exists());

    ws.run(&["prune", "--keep-last", "5", "--apply"]).code(0);
    let left = entries(&ws);
    assert!(!left.contains(".deleting-20240101T000000Z"), "{left:?}");
    assert!(!left.contains(".staging-20250101T000000Z-4242"), "{left:?}");
    assert!(
        left.contains(".staging-20250102T000000Z-4343"),
        "a staging folder younger than an hour may belong to a running create"
    );
    assert!(left.contains(&ids[0]));
}

#[test]
fn young_safety_bundles_survive_and_expire_after_keep_safety_days() {
    let ws = Workspace::new();
    crate::support::demo_stores(&ws);
    let first = ws.create(&[]);
    // A line lost live, so the merge has something to add (and takes its
    // safety snapshot).
    ws.write("data/kb/b.jsonl", "");
    let merged = ws.run(&[
        "--json",
        "restore",
        first.to_str().unwrap(),
        "--mode",
        "merge",
    ]);
    merged.code(0);
    let safety = merged.json()["safety_snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let safety_id = Path::new(&safety)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let newest = ws.create(&[]);
    let newest_id = newest.file_name().unwrap().to_string_lossy().into_owned();

    let now = ws.run(&["--json", "prune", "--keep-last", "0"]);
    now.code(0);
    let report = now.json();
    assert_eq!(reasons(&report, &safety_id), ["safety"]);
    assert_eq!(
        reasons(&report, &newest_id),
        ["newest-good", "last-healthy"]
    );

    let later = ws.run(&[
        "--json",
        "prune",
        "--keep-last",
        "0",
        "--now",
        "2099-01-01T00:00:00Z",
    ]);
    later.code(0);
    assert!(strings(&later.json()["deleted"]).contains(&safety_id));
}

#[test]
fn create_prune_applies_the_config_policy_and_needs_one() {
    let (ws, ids) = with_bundles(2, "[retention]\nkeep_last = 2\n");
    let run = ws.run(&["--json", "create", "--prune"]);
    run.code(0);
    let out = run.json();
    let new_id = out["id"].as_str().unwrap().to_string();
    assert_eq!(strings(&out["prune"]["deleted"]), [ids[0].clone()]);
    let visible: Vec<String> = entries(&ws)
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .collect();
    assert_eq!(visible, [ids[1].clone(), new_id]);

    let (bare, _) = with_bundles(1, "");
    let before = entries(&bare);
    let refused = bare.run(&["create", "--prune"]);
    refused.code(2);
    assert!(refused.stderr.contains("[retention]"), "{}", refused.stderr);
    assert_eq!(entries(&bare), before, "nothing may be created");
}

#[test]
fn prune_without_any_policy_is_a_usage_error() {
    let (ws, _) = with_bundles(2, "");
    let before = snapshot(&ws);
    let run = ws.run(&["prune", "--apply"]);
    run.code(2);
    assert!(run.stderr.contains("no retention policy"), "{}", run.stderr);
    assert_eq!(snapshot(&ws), before);
    ws.run(&["prune", "--keep-within", "soon"]).code(2);
    ws.run(&["prune", "--keep-last", "1", "--now", "yesterday"])
        .code(2);
}
