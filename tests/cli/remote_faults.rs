//! Remote faults the way they happen: a push killed in the middle of a
//! multipart upload, a server that dies mid-push, a pull that runs out of
//! room. Each must end in a clear error with nothing lost and nothing
//! half-written, and the next run must clean up after it.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::faults::{namespaces_work, sh};
use crate::remote::{
    file_remote, incompressible, make_bucket, own_server, run_with, s3_remote, server, setup, ENV,
};
use crate::support::Workspace;

/// The body of an unsigned GET of `path` on the test server (moto takes them).
fn http_get(port: u16, path: &str) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

/// How many multipart uploads are in progress in `bucket`.
fn uploads_in_progress(port: u16, bucket: &str) -> usize {
    http_get(port, &format!("/{bucket}?uploads"))
        .matches("<UploadId>")
        .count()
}

/// Starts `bundle push` on the workspace (with test credentials), and
/// waits until its first multipart upload has begun on the server.
fn push_until_an_upload_starts(ws: &Workspace, port: u16, bucket: &str) -> std::process::Child {
    let mut push = ws
        .cmd()
        .envs(ENV)
        .env("BUNDLE_REMOTE_RETRY_SECS", "2")
        .args(["push"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while uploads_in_progress(port, bucket) == 0 {
        assert!(
            push.try_wait().unwrap().is_none(),
            "the push ended before any multipart upload was seen"
        );
        assert!(Instant::now() < deadline, "no multipart upload began");
        std::thread::sleep(Duration::from_millis(10));
    }
    push
}

/// A workspace whose stores hold a file of many parts, created into a bundle.
fn with_a_big_file(ws: &Workspace, remote: &str) {
    setup(ws, remote);
    std::fs::write(
        ws.path("data/vectors/big.bin"),
        incompressible(48 * 1024 * 1024),
    )
    .unwrap();
    ws.create(&[]);
}

#[test]
fn a_push_killed_mid_upload_leaves_no_upload_behind_once_the_next_push_runs() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    with_a_big_file(&ws, &s3_remote(port, "killed"));
    let mut push = push_until_an_upload_starts(&ws, port, "killed");
    push.kill().unwrap();
    push.wait().unwrap();
    // What the kill left: an upload the bucket keeps (and bills), and its marker.
    assert_eq!(uploads_in_progress(port, "killed"), 1);
    let markers = http_get(port, "/killed?list-type=2&prefix=bundles/laptop/uploads/");
    assert!(
        markers.contains("<Key>bundles/laptop/uploads/"),
        "{markers}"
    );

    let again = run_with(&ws, &ENV, &["--json", "push"]);
    again.code(0);
    assert_eq!(again.json()[0]["outcome"], "pushed", "{}", again.stdout);
    assert_eq!(
        uploads_in_progress(port, "killed"),
        0,
        "the next push aborts it"
    );
    let markers = http_get(port, "/killed?list-type=2&prefix=bundles/laptop/uploads/");
    assert!(!markers.contains("<Key>"), "{markers}");
    run_with(
        &ws,
        &ENV,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
}

#[test]
fn a_server_that_dies_mid_push_fails_the_push_and_the_local_bundle_stays() {
    let Some(mut s3) = own_server() else { return };
    let port = s3.port;
    let ws = Workspace::new();
    with_a_big_file(&ws, &s3_remote(port, "dies"));
    let push = push_until_an_upload_starts(&ws, port, "dies");
    s3.child.kill().unwrap();
    s3.child.wait().unwrap();
    let out = push.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("remote \"offsite\""), "{stderr}");
    assert!(!stderr.contains("do-not-print"), "{stderr}");
    ws.run(&["verify", "latest"]).code(0);

    // Another server where the old one was: the re-run pushes it whole.
    drop(s3);
    let Some(fresh) = own_server() else { return };
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &config.replace(&format!(":{port}\""), &format!(":{}\"", fresh.port)),
    );
    make_bucket(fresh.port, "dies");
    run_with(&ws, &ENV, &["push"]).code(0);
    run_with(
        &ws,
        &ENV,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
}

/// A workspace with a 3 MB file, pushed to a `file://` remote, with an
/// empty folder `pulled` to pull into.
fn pushed_to_a_folder(ws: &Workspace) {
    let (remote, _) = file_remote(ws);
    setup(ws, &remote);
    std::fs::write(ws.path("data/vectors/big.bin"), incompressible(3_000_000)).unwrap();
    ws.create(&[]);
    run_with(ws, &[], &["push"]).code(0);
    std::fs::create_dir(ws.path("pulled")).unwrap();
}

#[test]
fn a_pull_that_runs_out_of_room_part_way_leaves_no_partial_bundle() {
    let ws = Workspace::new();
    pushed_to_a_folder(&ws);
    // Room on the file system, but no file may grow past 1 MB: the 3 MB
    // file fails part-way, like a disk filling up.
    let run = sh(
        &ws,
        "prlimit --fsize=1000000 sh -c 'trap \"\" XFSZ; exec \"$BUNDLE\" pull latest --dest pulled'; echo \"exit=$?\"
         echo left:; ls -A pulled",
    );
    assert!(
        run.stdout.contains("exit=4"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("File too large"), "{}", run.stderr);
    assert!(run.stderr.contains("big.bin"), "{}", run.stderr);
    let left = run.stdout.split("left:").nth(1).unwrap().trim().to_string();
    assert_eq!(left, ".bundle.lock", "nothing but the lock file");
    // With room, the same pull works.
    let pull = run_with(&ws, &[], &["--json", "pull", "latest", "--dest", "pulled"]);
    pull.code(0);
    let path = pull.json()["path"].as_str().unwrap().to_string();
    ws.run(&["verify", &path]).code(0);
}

#[test]
fn a_pull_that_cannot_fit_is_refused_before_writing() {
    if !namespaces_work() {
        eprintln!("\n!!!!!!!! SKIPPED: no user namespaces to mount a small tmpfs !!!!!!!!\n");
        return;
    }
    let ws = Workspace::new();
    pushed_to_a_folder(&ws);
    let run = sh(
        &ws,
        "unshare --user --map-root-user --mount sh -c '
           mount -t tmpfs -o size=1m tmpfs pulled || exit 99
           \"$BUNDLE\" pull latest --dest pulled; echo \"exit=$?\"
           echo left:; ls -A pulled'",
    );
    assert!(
        run.stdout.contains("exit=4"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("not enough free space"),
        "{}",
        run.stderr
    );
    let left = run.stdout.split("left:").nth(1).unwrap().trim().to_string();
    assert_eq!(left, ".bundle.lock", "nothing but the lock file");
}

#[test]
fn a_second_push_to_the_same_remote_waits_its_turn() {
    let ws = Workspace::new();
    let (remote, dir) = file_remote(&ws);
    setup(&ws, &remote);
    ws.create(&[]);
    // Another push holds the remote's lock.
    let held = std::fs::File::create(ws.path("backups/.push-offsite.lock")).unwrap();
    held.lock().unwrap();
    let run = run_with(&ws, &[], &["push"]);
    run.code(3);
    assert!(run.stderr.contains(".push-offsite.lock"), "{}", run.stderr);
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
    drop(held);
    run_with(&ws, &[], &["push"]).code(0);
}
