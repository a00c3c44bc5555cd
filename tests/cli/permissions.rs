//! Permissions: a bundle is never more readable than its sources (checked as
//! another user), and restore gives the files it writes the live file's owner
//! and mode, or for a new file the recorded ones.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::faults::sh;
use crate::support::Workspace;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether this run can act as user nobody (it runs as root and setpriv works).
fn can_be_nobody(ws: &Workspace) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("\n!!!!!!!! not root: the checks as another user are not exercised !!!!!!!!\n");
        return false;
    }
    let ok = sh(
        ws,
        "setpriv --reuid=65534 --regid=65534 --clear-groups true",
    )
    .code
        == 0;
    if !ok {
        eprintln!("\n!!!!!!!! setpriv cannot switch to nobody here: the checks as another user are not exercised !!!!!!!!\n");
    }
    ok
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("data/vault/secret.txt", "api key");
    ws.write("data/vault/public.txt", "hello");
    ws.write("data/notes.jsonl", "{\"id\":1}\n");
    set_mode(&ws.path("data/vault/secret.txt"), 0o600);
    set_mode(&ws.path("data/vault/public.txt"), 0o644);
    set_mode(&ws.path("data/vault"), 0o700);
    set_mode(&ws.path("data/notes.jsonl"), 0o640);
    ws.write(
        "bundle.toml",
        "destination = \"backups\"\n\
         [[stores]]\nname = \"vault\"\nkind = \"dir\"\npath = \"data/vault\"\n\
         [[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"data/notes.jsonl\"\n",
    );
    // Everyone may reach the workspace itself, so only the bundle's own
    // modes decide what another user can read.
    set_mode(ws.root(), 0o755);
    set_mode(&ws.path("data"), 0o755);
    ws
}

#[test]
fn bundles_are_never_more_readable_than_their_sources() {
    let ws = workspace();
    let bundle = ws.create(&[]);
    assert_eq!(
        mode(&ws.path("backups")),
        0o700,
        "a new destination is private"
    );
    assert_eq!(mode(&bundle), 0o700);
    assert_eq!(mode(&bundle.join("vault/secret.txt")), 0o400);
    assert_eq!(mode(&bundle.join("vault/public.txt")), 0o444);
    assert_eq!(mode(&bundle.join("notes/notes.jsonl")), 0o440);
    let manifest = ws.manifest(&bundle);
    let secret = crate::support::file_record(&manifest, "vault/secret.txt");
    let meta = std::fs::metadata(ws.path("data/vault/secret.txt")).unwrap();
    assert_eq!(secret["mode"], 0o600);
    assert_eq!(secret["uid"], meta.uid());
    assert_eq!(secret["gid"], meta.gid());
    if !can_be_nobody(&ws) {
        return;
    }
    // Even with the destination opened up, the bundle folder keeps others out.
    set_mode(&ws.path("backups"), 0o755);
    for file in ["vault/secret.txt", "vault/public.txt", "notes/notes.jsonl"] {
        let run = sh(
            &ws,
            &format!(
                "setpriv --reuid=65534 --regid=65534 --clear-groups cat '{}'",
                bundle.join(file).display()
            ),
        );
        assert_ne!(run.code, 0, "nobody read {file}: {}", run.stdout);
        assert!(run.stderr.contains("Permission denied"), "{}", run.stderr);
    }
}

#[test]
fn restore_keeps_the_live_owner_and_mode_and_gives_new_files_the_recorded_ones() {
    let ws = workspace();
    let root = rustix::process::geteuid().is_root();
    let app = if root {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    if root {
        for p in [
            "data/vault",
            "data/vault/secret.txt",
            "data/vault/public.txt",
            "data/notes.jsonl",
        ] {
            std::os::unix::fs::chown(ws.path(p), Some(app), Some(app)).unwrap();
        }
    }
    let bundle = ws.create(&[]);
    // The live files change; one is lost.
    std::fs::write(ws.path("data/vault/secret.txt"), "rotated key").unwrap();
    std::fs::remove_file(ws.path("data/vault/public.txt")).unwrap();
    std::fs::write(ws.path("data/notes.jsonl"), "{\"id\":2}\n").unwrap();
    set_mode(&ws.path("data/vault/secret.txt"), 0o600);
    ws.replace(&bundle, &[]);
    let owner = |p: &str| {
        let m = std::fs::metadata(ws.path(p)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(
        std::fs::read_to_string(ws.path("data/vault/secret.txt")).unwrap(),
        "api key"
    );
    assert_eq!(
        owner("data/vault/secret.txt"),
        (app, app, 0o600),
        "replaced file"
    );
    assert_eq!(
        owner("data/vault/public.txt"),
        (app, app, 0o644),
        "recreated file"
    );
    assert_eq!(
        owner("data/notes.jsonl"),
        (app, app, 0o640),
        "replaced jsonl file"
    );
    // A merge that appends keeps them too.
    std::fs::write(ws.path("data/notes.jsonl"), "{\"id\":3}\n").unwrap();
    ws.run(&["restore", bundle.to_str().unwrap(), "--mode", "merge"])
        .code(0);
    assert_eq!(
        std::fs::read_to_string(ws.path("data/notes.jsonl")).unwrap(),
        "{\"id\":3}\n{\"id\":1}\n"
    );
    assert_eq!(
        owner("data/notes.jsonl"),
        (app, app, 0o640),
        "merged jsonl file"
    );
    if root {
        // The app can still write its own store.
        let run = sh(
            &ws,
            &format!(
                "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo more >> \"{}\"'",
                ws.path("data/vault/secret.txt").display()
            ),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}
