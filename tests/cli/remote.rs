//! Remotes: push, list, verify, pull and restore against a real
//! S3-protocol server (moto in server mode, started by the tests on
//! 127.0.0.1, one bucket per test) and against `file://` remotes.
//!
//! The S3 tests skip loudly without moto; `.ci/run` installs it (in
//! `.venv-s3`) and sets `BUNDLE_REQUIRE_MOTO=1`.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::{count, demo_stores, tree, Run, Workspace};

/// An S3 server started by a test: its port (it stops when dropped, or
/// when this process exits).
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();

/// The Python with moto, or `None` (after a loud message) when moto is not
/// installed and not required.
fn moto_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("BUNDLE_TEST_S3_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-s3/bin/python"));
    let has_moto = Command::new(&python)
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_moto {
        if std::env::var_os("BUNDLE_REQUIRE_MOTO").is_some() {
            panic!(
                "BUNDLE_REQUIRE_MOTO is set but {} cannot import moto",
                python.display()
            );
        }
        eprintln!("\n!!!!!!!! SKIPPED: no Python with `moto[server]` (python3 -m venv .venv-s3 && .venv-s3/bin/pip install 'moto[server]', or set BUNDLE_TEST_S3_PYTHON) !!!!!!!!\n");
        return None;
    }
    Some(python)
}

/// A new S3 server of this test's own (to kill, say); `None` without moto.
pub(crate) fn own_server() -> Option<Server> {
    let python = moto_python()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&python)
        .arg(root.join("tests/support/s3_server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    Some(Server { port, child })
}

/// The shared S3 server, started on first use; `None` without moto.
pub(crate) fn server() -> Option<u16> {
    SERVER.get_or_init(own_server).as_ref().map(|s| s.port)
}

/// Creates bucket `name` on the server (moto takes an unsigned request).
pub(crate) fn make_bucket(port: u16, name: &str) {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// Test credentials: the server accepts any.
pub(crate) const ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "testing-key-id"),
    ("AWS_SECRET_ACCESS_KEY", "testing-secret-do-not-print"),
];

/// Runs `bundle ARGS` with `env` added.
pub(crate) fn run_with(ws: &Workspace, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = ws.cmd();
    cmd.envs(env.iter().copied())
        .env("BUNDLE_REMOTE_RETRY_SECS", "2");
    cmd.args(args).output().unwrap().into()
}

/// The demo stores with a config whose remote "offsite" is `remote` (a TOML table body).
pub(crate) fn setup(ws: &Workspace, remote: &str) {
    demo_stores(ws);
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &format!("{config}[[remotes]]\nname = \"offsite\"\n{remote}"),
    );
}

/// An S3 remote on the test server, in a fresh bucket.
pub(crate) fn s3_remote(port: u16, bucket: &str) -> String {
    make_bucket(port, bucket);
    format!(
        "url = \"s3://{bucket}/bundles/laptop\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nencryption = \"none\"\n"
    )
}

/// `len` bytes that zstd cannot shrink (xorshift).
pub(crate) fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn create_push_wipe_everything_and_restore_from_s3() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    setup(&ws, &s3_remote(port, "story"));
    let bundle = ws.create(&[]);
    let jsonl = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        tree(dir)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "jsonl"))
            .collect()
    };
    let before_kb = jsonl(&ws.path("data/kb"));
    let push = run_with(&ws, &ENV, &["--json", "push"]);
    push.code(0);
    let doc = push.json();
    assert_eq!(doc[0]["outcome"], "pushed", "{}", push.stdout);
    assert!(doc[0]["bytes_stored"].as_u64().unwrap() > 0);
    assert!(!push.stdout.contains("do-not-print") && !push.stderr.contains("do-not-print"));

    let list = run_with(&ws, &ENV, &["--json", "list", "--remote", "offsite"]);
    list.code(0);
    assert_eq!(list.json()[0]["local"], true, "{}", list.stdout);
    let id = list.json()[0]["id"].as_str().unwrap().to_string();
    run_with(&ws, &ENV, &["verify", "--remote", "offsite", &id]).code(0);
    run_with(
        &ws,
        &ENV,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);

    // The bad day: the local destination and every live store are gone.
    crate::support::make_writable(&ws.path("backups"));
    std::fs::remove_dir_all(ws.path("backups")).unwrap();
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    std::fs::create_dir_all(ws.path("backups")).unwrap();
    let dry = run_with(
        &ws,
        &ENV,
        &[
            "--json",
            "restore",
            "--remote",
            "offsite",
            &id,
            "--mode",
            "replace",
            "--dry-run",
        ],
    );
    dry.code(0);
    let token = dry.json()["confirm_token"].as_str().unwrap().to_string();
    run_with(
        &ws,
        &ENV,
        &[
            "restore",
            "--remote",
            "offsite",
            &id,
            "--mode",
            "replace",
            "--confirm-token",
            &token,
        ],
    )
    .code(0);
    assert_eq!(count(&ws.path("data/memory.db"), "notes"), 3);
    assert_eq!(jsonl(&ws.path("data/kb")), before_kb);
    // The temporary pull is gone; nothing but the safety snapshot was added.
    let left: Vec<String> = std::fs::read_dir(ws.path("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".remote-restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // pull gives back an ordinary local bundle that verifies (into another
    // folder: the safety snapshot may have taken the same id, to the second).
    let pull = run_with(&ws, &ENV, &["--json", "pull", &id, "--dest", "pulled"]);
    pull.code(0);
    let pulled = PathBuf::from(pull.json()["path"].as_str().unwrap());
    assert_eq!(pulled.file_name(), bundle.file_name());
    ws.run(&["verify", pulled.to_str().unwrap()]).code(0);
}

#[test]
fn an_unchanged_push_copies_on_the_server_and_moves_only_the_index() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    setup(&ws, &s3_remote(port, "unchanged"));
    ws.create(&[]);
    run_with(&ws, &ENV, &["push"]).code(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ws.create(&[]);
    let push = run_with(&ws, &ENV, &["--json", "push"]);
    push.code(0);
    let doc = push.json();
    assert_eq!(
        doc.as_array().unwrap().len(),
        1,
        "only the new bundle: {}",
        push.stdout
    );
    assert_eq!(doc[0]["uploaded"], 0, "{}", push.stdout);
    assert!(doc[0]["copied"].as_u64().unwrap() >= 4, "{}", push.stdout);
    run_with(
        &ws,
        &ENV,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
    // Nothing left to push.
    let again = run_with(&ws, &ENV, &["--json", "push"]);
    again.code(0);
    assert_eq!(
        again.json().as_array().unwrap().len(),
        0,
        "{}",
        again.stdout
    );
}

#[test]
fn bad_remote_settings_fail_clearly_without_printing_secrets() {
    let ws = Workspace::new();
    setup(
        &ws,
        "url = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9\"\nencryption = \"none\"\n",
    );
    ws.create(&[]);
    let run = run_with(&ws, &[("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")], &["push"]);
    run.code(2);
    assert!(
        run.stderr.contains("AWS_ACCESS_KEY_ID is not set"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cr3t-value"), "{}", run.stderr);
    let run = run_with(&ws, &ENV, &["push", "--remote", "elsewhere"]);
    run.code(2);
    assert!(
        run.stderr.contains("no remote named \"elsewhere\""),
        "{}",
        run.stderr
    );
    // Unreachable server: exit 4, the local bundle intact.
    let run = run_with(&ws, &ENV, &["--json", "push"]);
    run.code(4);
    assert_eq!(run.json()["error"]["kind"], "remote", "{}", run.stdout);
    assert!(!run.stdout.contains("do-not-print"), "{}", run.stdout);

    for (body, says) in [
        ("url = \"s3://b/p\"\n", "`encryption` must be written out"),
        (
            "url = \"s3://b/p\"\nencryption = \"aes\"\n",
            "not supported",
        ),
        (
            "url = \"gs://b/p\"\nencryption = \"none\"\n",
            "gs:// is not supported",
        ),
    ] {
        let ws = Workspace::new();
        setup(&ws, body);
        let run = run_with(&ws, &ENV, &["list"]);
        run.code(2);
        assert!(run.stderr.contains(says), "{body}: {}", run.stderr);
    }
}

#[test]
fn a_missing_bucket_is_an_error_naming_the_remote() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    setup(
        &ws,
        &format!("url = \"s3://no-such-bucket/x\"\nendpoint = \"http://127.0.0.1:{port}\"\nencryption = \"none\"\n"),
    );
    ws.create(&[]);
    let run = run_with(&ws, &ENV, &["push"]);
    run.code(4);
    assert!(run.stderr.contains("remote \"offsite\""), "{}", run.stderr);
}

/// A `file://` remote in the workspace.
pub(crate) fn file_remote(ws: &Workspace) -> (String, PathBuf) {
    let dir = ws.path("offsite");
    (
        format!(
            "url = \"file://{}\"\nencryption = \"none\"\n",
            dir.display()
        ),
        dir,
    )
}

#[test]
fn damaged_remote_objects_are_named_and_never_restored() {
    let ws = Workspace::new();
    let (remote, dir) = file_remote(&ws);
    setup(&ws, &remote);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let id = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let id = id.to_str().unwrap().to_string();
    run_with(
        &ws,
        &[],
        &["verify", "--remote", "offsite", &id, "--read-data"],
    )
    .code(0);

    // Same size, altered bytes: only --read-data can see it.
    let object = dir.join(&id).join("f/0");
    let mut bytes = std::fs::read(&object).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    run_with(&ws, &[], &["verify", "--remote", "offsite", &id]).code(0);
    let run = run_with(
        &ws,
        &[],
        &["verify", "--remote", "offsite", &id, "--read-data"],
    );
    run.code(1);
    assert!(run.stdout.contains("f/0"), "{}", run.stdout);
    let live_before = tree(&ws.path("data"));
    let run = run_with(
        &ws,
        &[],
        &["restore", "--remote", "offsite", &id, "--mode", "merge"],
    );
    run.code(3);
    assert!(run.stderr.contains("not intact"), "{}", run.stderr);
    assert_eq!(tree(&ws.path("data")), live_before, "live data was touched");
    crate::support::make_writable(&ws.path("backups"));
    std::fs::remove_dir_all(ws.path("backups")).unwrap();
    let run = run_with(&ws, &[], &["pull", &id]);
    run.code(3);
    let local: Vec<_> = std::fs::read_dir(ws.path("backups"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        local
            .iter()
            .all(|e| !e.file_name().to_string_lossy().starts_with('2')),
        "a partial bundle was left"
    );

    // Truncated, then deleted: the cheap verify names it.
    std::fs::write(&object, &bytes[..10]).unwrap();
    let run = run_with(&ws, &[], &["verify", "--remote", "offsite", &id]);
    run.code(1);
    assert!(run.stdout.contains("the index says"), "{}", run.stdout);
    std::fs::remove_file(&object).unwrap();
    let run = run_with(&ws, &[], &["verify", "--remote", "offsite", &id]);
    run.code(1);
    assert!(run.stdout.contains("object is missing"), "{}", run.stdout);
}

#[test]
fn an_interrupted_push_is_finished_by_the_next_one() {
    let ws = Workspace::new();
    let (remote, dir) = file_remote(&ws);
    setup(&ws, &remote);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let id = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let id = id.to_str().unwrap().to_string();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&id).join("index.json")).unwrap()).unwrap();
    let errors: Vec<String> = crate::schema::schema("remote-index.schema.json")
        .iter_errors(&index)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // As if killed before the end: no index, one object missing.
    std::fs::remove_file(dir.join(&id).join("index.json")).unwrap();
    std::fs::remove_file(dir.join(&id).join("f/1")).unwrap();
    // And the staging file of an upload it had under way.
    let staged = dir.join(&id).join("f/1#2");
    std::fs::write(&staged, b"part of an upload").unwrap();
    let run = run_with(&ws, &[], &["--json", "list", "--remote", "offsite"]);
    run.code(0);
    assert_eq!(
        run.json().as_array().unwrap().len(),
        0,
        "an unfinished bundle is listed"
    );
    let push = run_with(&ws, &[], &["--json", "push"]);
    push.code(0);
    let doc = push.json();
    assert_eq!(doc[0]["uploaded"], 1, "{}", push.stdout);
    assert!(doc[0]["resumed"].as_u64().unwrap() >= 3, "{}", push.stdout);
    assert!(
        !staged.exists(),
        "the killed upload's staging file is removed"
    );
    run_with(
        &ws,
        &[],
        &["verify", "--remote", "offsite", &id, "--read-data"],
    )
    .code(0);

    // Another bundle under the same id on the remote is refused.
    let forged = dir.join(&id).join("m");
    let other = zstd::stream::encode_all(&b"{\"format_version\": 1}"[..], 3).unwrap();
    std::fs::write(&forged, other).unwrap();
    std::fs::remove_file(dir.join(&id).join("index.json")).unwrap();
    let run = run_with(&ws, &[], &["push", &id]);
    run.code(1);
    assert!(run.stderr.contains("different manifest"), "{}", run.stderr);
}

#[test]
fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    setup(&ws, &s3_remote(port, "parts"));
    // Incompressible, so that it stays above one part once compressed.
    let big = incompressible(9 * 1024 * 1024 + 77);
    std::fs::write(ws.path("data/vectors/big.bin"), &big).unwrap();
    ws.create(&[]);
    let push = run_with(&ws, &ENV, &["--json", "push", "--jobs", "2"]);
    push.code(0);
    assert!(push.json()[0]["bytes_stored"].as_u64().unwrap() > 9 * 1024 * 1024);
    run_with(
        &ws,
        &ENV,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
    crate::support::make_writable(&ws.path("backups"));
    std::fs::remove_dir_all(ws.path("backups")).unwrap();
    let pull = run_with(&ws, &ENV, &["--json", "pull", "latest"]);
    pull.code(0);
    let pulled = PathBuf::from(pull.json()["path"].as_str().unwrap());
    assert_eq!(std::fs::read(pulled.join("vectors/big.bin")).unwrap(), big);
    ws.run(&["verify", pulled.to_str().unwrap()]).code(0);
}

#[test]
fn create_push_then_prune_the_remote_by_its_own_retention() {
    let ws = Workspace::new();
    let (remote, dir) = file_remote(&ws);
    setup(
        &ws,
        &format!("{remote}[remotes.retention]\nkeep_last = 1\n"),
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = run_with(&ws, &[], &["--json", "create", "--push"]);
        run.code(0);
        assert_eq!(run.json()["push"]["outcome"], "pushed", "{}", run.stdout);
        ids.push(run.json()["id"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let dry = run_with(&ws, &[], &["--json", "prune", "--remote", "offsite"]);
    dry.code(0);
    assert_eq!(
        dry.json()["deleted"].as_array().unwrap().len(),
        2,
        "{}",
        dry.stdout
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        3,
        "a dry run deleted something"
    );

    // A prune stopped part-way: the marker and some objects are left.
    std::fs::write(dir.join(&ids[0]).join("deleting"), b"").unwrap();
    std::fs::remove_file(dir.join(&ids[0]).join("index.json")).unwrap();
    let run = run_with(&ws, &[], &["push", &ids[0]]);
    run.code(1);
    assert!(run.stderr.contains("being deleted"), "{}", run.stderr);

    let apply = run_with(
        &ws,
        &[],
        &["--json", "prune", "--remote", "offsite", "--apply"],
    );
    apply.code(0);
    let doc = apply.json();
    assert_eq!(
        doc["deleted"],
        serde_json::json!([ids[1]]),
        "{}",
        apply.stdout
    );
    assert_eq!(
        doc["leftovers"],
        serde_json::json!([ids[0]]),
        "{}",
        apply.stdout
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![ids[2].clone()], "only the newest stays");
    // Locally nothing was pruned.
    let local = run_with(&ws, &[], &["--json", "list"]);
    assert_eq!(local.json().as_array().unwrap().len(), 3);
    // And a plain push does not send back what the remote's prune removed.
    let push = run_with(&ws, &[], &["--json", "push"]);
    push.code(0);
    assert_eq!(push.json().as_array().unwrap().len(), 0, "{}", push.stdout);
    // Named, it goes.
    let push = run_with(&ws, &[], &["--json", "push", &ids[1]]);
    push.code(0);
    assert_eq!(push.json()[0]["outcome"], "pushed", "{}", push.stdout);
}

#[test]
fn credentials_from_a_profile_of_the_shared_credentials_file() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    setup(&ws, &s3_remote(port, "profile"));
    ws.create(&[]);
    ws.write(
        "aws/credentials",
        "[default]\naws_access_key_id = nope\n[bench]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret-do-not-print\n",
    );
    let file = ws.path("aws/credentials");
    let file = file.to_str().unwrap();
    let with = |profile: &str| {
        run_with(
            &ws,
            &[
                ("AWS_SHARED_CREDENTIALS_FILE", file),
                ("AWS_PROFILE", profile),
            ],
            &["--json", "push"],
        )
    };
    let run = with("missing");
    run.code(2);
    assert!(
        run.stdout.contains("profile \\\"missing\\\""),
        "{}",
        run.stdout
    );
    let run = with("bench");
    run.code(0);
    assert_eq!(run.json()[0]["outcome"], "pushed", "{}", run.stdout);
    assert!(!run.stdout.contains("do-not-print") && !run.stderr.contains("do-not-print"));
}
