//! Resource faults: a destination that fills up part-way, a read-only
//! destination, an unreadable source, a source deleted mid-run, and special
//! files (FIFO, socket, device node, symlink loop) inside a directory store.

use std::path::Path;
use std::time::Duration;

use crate::faults::{namespaces_work, sh};
use crate::support::{demo_stores, Workspace};

/// Every file under `root` with its bytes: to prove sources are untouched.
fn fingerprint(root: &Path) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn with_big_segment(ws: &Workspace) {
    demo_stores(ws);
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(ws.path("data/vectors/seg-1/big.bin"), bytes).unwrap();
}

#[test]
fn a_destination_that_fills_up_part_way_fails_cleanly() {
    let ws = Workspace::new();
    with_big_segment(&ws);
    let sources = fingerprint(&ws.path("data"));
    std::fs::create_dir(ws.path("backups")).unwrap();
    // The file system has room (the preflight passes), but no file may grow
    // past 1 MB: the 3 MB segment fails part-way, like a disk filling up.
    // SIGXFSZ is ignored so the write fails with EFBIG instead of killing us.
    let run = sh(
        &ws,
        "prlimit --fsize=1000000 sh -c 'trap \"\" XFSZ; exec \"$BUNDLE\" create'; echo \"exit=$?\"
         echo left:; ls -A backups",
    );
    let out = &run.stdout;
    assert!(
        out.contains("exit=4"),
        "exit 4 expected: {out}\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("File too large"), "{}", run.stderr);
    let left: Vec<&str> = out
        .split("left:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        left,
        [".bundle.lock"],
        "no bundle and no staging may be left"
    );
    assert_eq!(fingerprint(&ws.path("data")), sources, "sources untouched");
}

#[test]
fn the_free_space_preflight_refuses_before_writing() {
    if !namespaces_work() {
        eprintln!("\n!!!!!!!! SKIPPED: no user namespaces to mount a small tmpfs !!!!!!!!\n");
        return;
    }
    let ws = Workspace::new();
    with_big_segment(&ws);
    std::fs::create_dir(ws.path("backups")).unwrap();
    let run = sh(
        &ws,
        "unshare --user --map-root-user --mount sh -c '
           mount -t tmpfs -o size=1m tmpfs backups || exit 99
           \"$BUNDLE\" create; echo \"exit=$?\"
           echo left:; ls -A backups'",
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
    // In units people read (the exact bytes follow in parentheses).
    assert!(run.stderr.contains("MiB needed"), "{}", run.stderr);
    assert!(run.stderr.contains("1.00 MiB available"), "{}", run.stderr);
    let left = run.stdout.split("left:").nth(1).unwrap().trim().to_string();
    assert_eq!(left, ".bundle.lock", "nothing but the lock file");
}

#[test]
fn a_read_only_destination_is_an_io_error_with_nothing_written() {
    if !namespaces_work() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: no user namespaces to mount a read-only file system !!!!!!!!\n"
        );
        return;
    }
    let ws = Workspace::new();
    demo_stores(&ws);
    std::fs::create_dir(ws.path("backups")).unwrap();
    let run = sh(
        &ws,
        "unshare --user --map-root-user --mount sh -c '
           mount -t tmpfs -o size=10m,ro tmpfs backups || exit 99
           \"$BUNDLE\" create; echo \"exit=$?\"'",
    );
    assert!(
        run.stdout.contains("exit=4"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreadable_source_file_fails_only_its_store_and_names_it() {
    let ws = Workspace::new();
    demo_stores(&ws);
    ws.write("data/vectors/secret.bin", "private");
    std::fs::set_permissions(
        ws.path("data/vectors/secret.bin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // Root reads anything: run as nobody then, with a destination it may write.
    let root = rustix::process::geteuid().is_root();
    if root
        && sh(
            &ws,
            "setpriv --reuid=65534 --regid=65534 --clear-groups \"$BUNDLE\" --version",
        )
        .code
            != 0
    {
        eprintln!("\n!!!!!!!! SKIPPED: running as root and user nobody cannot run the test binary here !!!!!!!!\n");
        return;
    }
    std::fs::create_dir(ws.path("backups")).unwrap();
    if root {
        for dir in [ws.root(), ws.path("backups").as_path()] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        for entry in walkdir::WalkDir::new(ws.path("data")) {
            let entry = entry.unwrap();
            if entry.path().ends_with("secret.bin") {
                continue;
            }
            let mode = if entry.file_type().is_dir() {
                0o777
            } else {
                0o666
            };
            std::fs::set_permissions(
                entry.path(),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
    }
    let prefix = if root {
        "setpriv --reuid=65534 --regid=65534 --clear-groups "
    } else {
        ""
    };
    let run = sh(
        &ws,
        &format!("{prefix}\"$BUNDLE\" create; echo \"exit=$?\"; echo left:; ls -A backups"),
    );
    assert!(
        run.stdout.contains("exit=1"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("secret.bin"), "{}", run.stderr);
    assert!(run.stderr.contains("Permission denied"), "{}", run.stderr);
    assert!(
        run.stderr.contains("published without store \"vectors\""),
        "{}",
        run.stderr
    );
    // The bundle holds the other stores; the failed one is recorded, empty.
    let left: Vec<&str> = run
        .stdout
        .split("left:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the lock and one bundle, no staging: {left:?}"
    );
    let bundle = ws
        .path("backups")
        .join(left.iter().find(|n| !n.starts_with('.')).unwrap());
    let m = ws.manifest(&bundle);
    let status: Vec<(&str, &str)> = m["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [("kb", "ok"), ("memory", "ok"), ("vectors", "failed")]
    );
    assert!(m["stores"][2]["error"]
        .as_str()
        .unwrap()
        .contains("secret.bin"));
    assert!(!bundle.join("vectors").exists());
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    // Prune never counts it as a kept backup nor deletes it.
    let prune = ws.run(&["--json", "prune", "--keep-last", "1"]);
    prune.code(0);
    assert!(prune.json()["damaged"]
        .to_string()
        .contains(bundle.file_name().unwrap().to_str().unwrap()));
}

#[test]
fn a_source_deleted_mid_run_ends_in_a_whole_bundle_or_a_clean_failure() {
    let ws = Workspace::new();
    demo_stores(&ws);
    for i in 0..200 {
        ws.write(
            &format!("data/vectors/many/{i:03}.bin"),
            &"v".repeat(20_000),
        );
    }
    let child = ws
        .cmd()
        .args(["create", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::remove_dir_all(ws.path("data/vectors")).unwrap();
    let out = child.wait_with_output().unwrap();
    let dest = ws.path("backups");
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".bundle.lock")
        .collect();
    match out.status.code() {
        Some(0) => {
            assert_eq!(names.len(), 1, "{names:?}");
            ws.run(&["verify", &names[0], "--dest", "backups"]).code(0);
        }
        Some(1) => {
            // The vanished store failed alone: the bundle holds the others.
            assert_eq!(names.len(), 1, "one bundle, no staging: {names:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("published without store \"vectors\""),
                "{stderr}"
            );
            ws.run(&["verify", &names[0], "--dest", "backups"]).code(0);
        }
        other => panic!(
            "unexpected exit {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn special_files_in_a_directory_store_are_skipped_or_recorded_never_followed() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let dir = ws.path("data/vectors");
    let fifo = sh(&ws, "mkfifo data/vectors/pipe");
    assert_eq!(fifo.code, 0, "{}", fifo.stderr);
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    std::os::unix::fs::symlink("loop-b", dir.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", dir.join("loop-b")).unwrap();
    let device = sh(&ws, "mknod data/vectors/null c 1 3").code == 0;
    if !device {
        eprintln!(
            "\n!!!!!!!! mknod not permitted here: the device-node case is not exercised !!!!!!!!\n"
        );
    }
    let run = ws.run(&["--json", "create"]);
    run.code(0);
    let out = run.json();
    let warnings = out["warnings"].to_string();
    for name in ["pipe", "sock"] {
        assert!(warnings.contains(&format!("vectors/{name}")), "{warnings}");
    }
    if device {
        assert!(warnings.contains("vectors/null"), "{warnings}");
    }
    let bundle = std::path::PathBuf::from(out["path"].as_str().unwrap());
    let m = ws.manifest(&bundle);
    let links = m["stores"][2]["symlinks"].to_string();
    assert!(
        links.contains("loop-a") && links.contains("loop-b"),
        "{links}"
    );
    ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
    ws.run(&["drill", bundle.to_str().unwrap()]).code(0);
}
